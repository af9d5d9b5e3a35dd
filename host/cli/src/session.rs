//! `weir session`: a session cluster in this process — REST API, web UI,
//! metrics and task slots — until SIGTERM or Ctrl-C. Jobs that run when it
//! stops resume from their latest checkpoints when it starts again.

use crate::settings::Sources;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use weir_cluster::{Session, SessionOptions};

#[derive(clap::Args, Debug)]
pub struct SessionArgs {
    /// Directory for modules, HA data, checkpoints and savepoints
    /// (weir.data-dir; default ~/.local/share/weir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// REST port (rest.port; 0 picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Task slots of this process (taskmanager.numberOfTaskSlots); 0
    /// leaves every task to task managers (with --cluster-port).
    #[arg(long)]
    pub slots: Option<u32>,
    /// Port where task managers join and exchange data
    /// (weir.cluster.port; 0 picks a free one).
    #[arg(long)]
    pub cluster_port: Option<u16>,
}

pub fn run(sources: &Sources, args: SessionArgs) -> Result<ExitCode> {
    let mut flags: weir_core::config::ConfigLayer = sources.defines()?.into_iter().collect();
    if let Some(d) = &args.data_dir {
        flags.insert("weir.data-dir".into(), d.display().to_string());
    }
    if let Some(p) = args.port {
        flags.insert("rest.port".into(), p.to_string());
    }
    if let Some(s) = args.slots {
        flags.insert("taskmanager.numberOfTaskSlots".into(), s.to_string());
    }
    if let Some(p) = args.cluster_port {
        flags.insert("weir.cluster.port".into(), p.to_string());
    }
    let session = Session::open(SessionOptions {
        file: sources.file_keys()?,
        flags,
        // Uploads compile in a child process of this same program.
        compiler: std::env::current_exe().ok(),
        connectors: crate::connectors(),
    })?;
    let c = session.config().clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("weir-rest")
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let addr = format!("{}:{}", c.rest_address, c.rest_port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {addr}; is another session running? Set rest.port (or --port)"
                )
            })?;
        let local = listener.local_addr()?;
        eprintln!(
            "Weir session cluster: data in {}",
            session.data_dir().display()
        );
        eprintln!(
            "REST endpoint: http://{local} ({} task slots; web UI at http://{local}/)",
            session.slots_total()
        );
        session.set_rest_endpoint(&format!("http://{local}"));
        if let Some(a) = session.cluster_address() {
            eprintln!("Cluster endpoint: {a} (weir worker --join {a})");
        }
        axum::serve(listener, weir_cluster::rest::router(session))
            .with_graceful_shutdown(shutdown())
            .await
            .context("the REST server failed")
    })?;
    eprintln!("Session stopped; running jobs resume when it starts again.");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
