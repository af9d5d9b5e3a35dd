//! The `weir` command line: run stream jobs written as WebAssembly
//! components, locally or on a session cluster; shaped like Flink's `flink`.
//!
//! The binary is a thin wrapper around [`main`], so that end-to-end tests
//! can build the same command.

mod local;
mod savepoint;
mod settings;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "weir",
    version,
    about = "Weir: stream processing with WebAssembly jobs",
    long_about = "Runs stream jobs written as WebAssembly components. \
                  `weir run --local job.wasm -- ARGS` runs a job in this process."
)]
struct Cli {
    /// Configuration file (YAML with Flink-like keys).
    #[arg(long, global = true, env = "WEIR_CONFIG")]
    config: Option<PathBuf>,
    /// Sets a configuration key, as Flink's -D (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE", global = true)]
    define: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs a job.
    Run(local::RunArgs),
    /// Disposes of savepoints, or checks one against a new job version.
    Savepoint(savepoint::SavepointArgs),
}

/// Runs the command line with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Run(args) => local::run(&settings::Sources::new(cli.config, cli.define), args),
        Command::Savepoint(args) => {
            savepoint::run(&settings::Sources::new(cli.config, cli.define), args)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new("warn,weir=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
