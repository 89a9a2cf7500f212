//! The `purser` binary: a thin shell over the library's CLI.

/// mimalloc: the proxy allocates many small, short-lived buffers per request on every
/// worker thread, where glibc's allocator spent a fifth of the paid path's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    return_freed_memory_promptly();
    purser::cli::main()
}

/// A proxy's memory is mostly per connection and goes idle in bulk (a burst ends, held
/// payments are decided). By default mimalloc keeps freed pages for later and retains full
/// pages per size class; for a long-running proxy whose footprint operators watch, RSS
/// that follows the live load matters more than the last few percent of allocation speed.
/// The `MIMALLOC_*` environment variables still win when set.
#[allow(unsafe_code)] // the one FFI call into the allocator; see SAFETY below
fn return_freed_memory_promptly() {
    // Option numbers of the mimalloc v3 C API (`mi_option_e` in mimalloc.h), bundled by
    // libmimalloc-sys 0.1.49 (pinned in Cargo.lock).
    const PURGE_DELAY: i32 = 15;
    const PAGE_FULL_RETAIN: i32 = 36;
    extern "C" {
        fn mi_option_set(option: i32, value: std::ffi::c_long);
    }
    for (option, variable) in [
        (PURGE_DELAY, "MIMALLOC_PURGE_DELAY"),
        (PAGE_FULL_RETAIN, "MIMALLOC_PAGE_FULL_RETAIN"),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mi_option_set only stores an integer in mimalloc's option table; it is
            // called before any thread is started.
            unsafe { mi_option_set(option, 0) };
        }
    }
}
