//! The `purser` binary: a thin shell over the library's CLI.

fn main() -> std::process::ExitCode {
    purser::cli::main()
}
