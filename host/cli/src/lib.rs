//! The `weir` command line: run stream jobs written as WebAssembly
//! components, locally or on a session cluster; shaped like Flink's `flink`.
//!
//! The binary is a thin wrapper around [`main`], so that end-to-end tests
//! can build the same command.

mod client;
mod local;
mod savepoint;
mod session;
mod settings;
mod worker;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "weir",
    version,
    about = "Weir: stream processing with WebAssembly jobs",
    long_about = "Runs stream jobs written as WebAssembly components. \
                  `weir run --local job.wasm -- ARGS` runs a job in this process; \
                  `weir session` starts a session cluster, and `weir run job.wasm` \
                  submits to it."
)]
struct Cli {
    #[command(flatten)]
    cluster: client::ClusterOptions,
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
    /// Runs a job: on the session cluster, or in this process with --local.
    Run(local::RunArgs),
    /// Lists the jobs of the cluster.
    List {
        /// Also jobs that ended.
        #[arg(short = 'a', long)]
        all: bool,
    },
    /// Shows a job: state, vertices, records in and out.
    Info { job_id: String },
    /// Cancels a job.
    Cancel { job_id: String },
    /// Stops a job with a savepoint.
    Stop {
        job_id: String,
        /// Where the savepoint goes (default: state.savepoints.dir).
        #[arg(long, short = 'p', value_name = "DIR")]
        savepoint_dir: Option<String>,
        /// Emit the final watermark first, so that every event-time window
        /// fires before the job stops.
        #[arg(long, short = 'd')]
        drain: bool,
    },
    /// Upgrades a running job to a new module: checks it against the job's
    /// latest checkpoint, then changes the module in place at a checkpoint's
    /// barrier when the new plan keeps the job's shape, or else stops the
    /// job with a savepoint and starts the new module from it under the same
    /// job id; rolls back by itself if the new version fails within
    /// weir.upgrade.probation.
    Upgrade {
        job_id: String,
        /// The new version of the job (a .wasm component).
        module: PathBuf,
        /// Drop state the new version does not claim.
        #[arg(short = 'n', long = "allowNonRestoredState")]
        allow_non_restored: bool,
        /// The job in the module (default: the current one's, else the only one).
        #[arg(long, short = 'c')]
        entry: Option<String>,
        /// Where the upgrade's savepoint goes (default: state.savepoints.dir).
        #[arg(long, short = 'p', value_name = "DIR")]
        savepoint_dir: Option<String>,
        /// Stop with a savepoint and restart even where the module could
        /// change in place (the job's configuration then changes too).
        #[arg(long)]
        restart: bool,
        /// The job's arguments (default: the current ones).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Rescales a running job: it stops with a savepoint and starts again
    /// from it at the new parallelism, under the same job id.
    Rescale {
        job_id: String,
        /// The new parallelism.
        #[arg(long, short = 'p', value_name = "N")]
        parallelism: u32,
        /// Where the rescale's savepoint goes (default: state.savepoints.dir).
        #[arg(long, value_name = "DIR")]
        savepoint_dir: Option<String>,
    },
    /// Takes a savepoint of a job (`savepoint ID [DIR]`), disposes of one
    /// (`--dispose PATH`), or checks one against a new job version.
    Savepoint(savepoint::SavepointArgs),
    /// Shows a job's recent checkpoints.
    Checkpoints { job_id: String },
    /// Starts a session cluster: REST API, web UI and task slots.
    Session(session::SessionArgs),
    /// Starts a task manager that offers its slots to a session
    /// (`--join http://SESSION:CLUSTER-PORT`).
    Worker(worker::WorkerArgs),
    /// Makes a new API token and prints it with the line that gives it to
    /// a tenant (or the admin) in the session's configuration.
    Token {
        /// The tenant the token is for (the admin without).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Compiles the component on standard input into a compile cache (a
    /// session runs this in a child process for every upload).
    #[command(hide = true)]
    CompileModule {
        #[arg(long)]
        cache_dir: PathBuf,
        /// The cache's bound in bytes (weir.compile-cache.max-size).
        #[arg(long)]
        cache_max_size: Option<u64>,
        /// For an engine that meters fuel.
        #[arg(long)]
        fuel: bool,
    },
}

/// Caps glibc's malloc at two arenas unless `MALLOC_ARENA_MAX` says
/// otherwise. By default every thread that meets a busy arena gets its own,
/// up to eight per core; RocksDB's memtables and the tasks' batches then
/// spread over a dozen arenas whose free space no other thread reuses, which
/// cost 15–25 % of a state-heavy job's peak memory for no measurable speed.
fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in `main`, before any thread starts or
        // allocates; mallopt only sets a limit for arenas made later.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// The connectors this program's jobs may use: the built-in ones, Kafka
/// and JDBC.
pub fn connectors() -> weir_runtime::Connectors {
    weir_runtime::Connectors::builtin()
        .with(std::sync::Arc::new(weir_kafka::KafkaConnectors))
        .with(std::sync::Arc::new(weir_sql::JdbcConnectors))
}

/// Runs the command line with the process's arguments.
pub fn main() -> ExitCode {
    few_malloc_arenas();
    let cli = Cli::parse();
    init_logging();
    let sources = settings::Sources::new(cli.config, cli.define);
    let client = || client::Client::new(&cli.cluster);
    let result = match cli.command {
        Command::Run(args) if args.local => local::run(&sources, args),
        Command::Run(args) => client().and_then(|c| local::submit(&c, &sources, args)),
        Command::List { all } => client().and_then(|c| client::list(&c, all)),
        Command::Info { job_id } => client().and_then(|c| client::info(&c, &job_id)),
        Command::Cancel { job_id } => client().and_then(|c| client::cancel(&c, &job_id)),
        Command::Stop {
            job_id,
            savepoint_dir,
            drain,
        } => client().and_then(|c| client::stop(&c, &job_id, savepoint_dir, drain)),
        Command::Rescale {
            job_id,
            parallelism,
            savepoint_dir,
        } => client().and_then(|c| client::rescale(&c, &job_id, parallelism, savepoint_dir)),
        Command::Upgrade {
            job_id,
            module,
            allow_non_restored,
            entry,
            savepoint_dir,
            restart,
            args,
        } => client().and_then(|c| {
            client::upgrade(
                &c,
                &job_id,
                &module,
                client::UpgradeArgs {
                    allow_non_restored,
                    entry,
                    savepoint_dir,
                    restart,
                    args,
                },
            )
        }),
        Command::Checkpoints { job_id } => client().and_then(|c| client::checkpoints(&c, &job_id)),
        Command::Savepoint(args) => match args.job_id.clone() {
            Some(job) if args.command.is_none() && args.dispose.is_none() => {
                client().and_then(|c| client::savepoint(&c, &job, args.target_dir.clone()))
            }
            _ => savepoint::run(&sources, args),
        },
        Command::Session(args) => session::run(&sources, args),
        Command::Worker(args) => worker::run(&sources, args),
        Command::CompileModule {
            cache_dir,
            cache_max_size,
            fuel,
        } => compile_module(&cache_dir, cache_max_size, fuel),
        Command::Token { tenant } => {
            let token = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            let hash = hex::encode(weir_cluster::tenancy::hash_token(&token));
            let key = match tenant {
                Some(t) => format!("weir.tenants.{t}.token-sha256"),
                None => "weir.admin.token-sha256".to_owned(),
            };
            println!("token: {token}");
            println!("{key}: {hash}");
            println!(
                "Give the token to its user (WEIR_TOKEN or --token); put the second line in the \
                 session's configuration. The session keeps only the hash."
            );
            Ok(ExitCode::SUCCESS)
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

fn compile_module(
    cache_dir: &std::path::Path,
    max_size: Option<u64>,
    fuel: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes)?;
    let engine = weir_wasm::WasmEngine::new(weir_wasm::EngineOptions { fuel })?;
    let mut cache = weir_wasm::CompileCache::new(cache_dir);
    if let Some(max) = max_size {
        cache = cache.with_max_size(max);
    }
    weir_wasm::compile_to_cache(&engine, &bytes, &cache)?;
    Ok(ExitCode::SUCCESS)
}

/// Standard error with every secret a job resolved masked: a log line
/// never shows one, whatever printed it.
struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let shown = weir_core::secrets::redact(&text);
        std::io::stderr().write_all(shown.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new("warn,weir=info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingStderr)
        .with_target(false);
    // WEIR_LOG_FORMAT=json: one JSON object per line, for log collectors.
    if std::env::var("WEIR_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        fmt.json().init();
    } else {
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}
