//! The `weir` command, built inside the test package so that end-to-end
//! tests and benchmarks can run it as a process.

fn main() -> std::process::ExitCode {
    weir_cli::main()
}
