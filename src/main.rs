//! The `purser` binary: a thin shell over the library's CLI.

/// mimalloc: the proxy allocates many small, short-lived buffers per request on every
/// worker thread, where glibc's allocator spent a fifth of the paid path's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    purser::cli::main()
}
