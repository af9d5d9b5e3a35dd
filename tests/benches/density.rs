//! Many idle jobs on one session, measured in one run: jobs are submitted
//! with `POST /jars/:id/run` up to 50, 500 and 1 000 (`WEIR_DENSITY_STEPS`
//! changes the steps), each a generator at 1 record/s into a keyed count
//! (click-event-count, p1). At each step: the jobs per second the session
//! accepted, the time from `weir run -d` to RUNNING for one more job, and
//! the session's resident memory per idle job once all are RUNNING, and the
//! CPU the session uses while they idle (100 % is one core). Stops
//! early, saying so, if the session passes `WEIR_DENSITY_MAX_GIB` (default
//! 12) of resident memory.
//!
//! Run with `cargo bench -p weir-tests --bench density`.

use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use weir_tests::CLICK_EVENT_COUNT_WASM;
use weir_tests::cluster::SessionProcess;
use weir_tests::process::rss_kib;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn main() {
    let steps: Vec<usize> = std::env::var("WEIR_DENSITY_STEPS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![50, 500, 1000]);
    let max_kib = std::env::var("WEIR_DENSITY_MAX_GIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(12)
        * 1024
        * 1024;
    let most = steps.iter().copied().max().unwrap_or(0);
    let dir = tempfile::tempdir().unwrap();
    let s = SessionProcess::start(
        Path::new(WEIR),
        &dir.path().join("data"),
        most as u32 + 2,
        &[],
    );
    let api = s.api();
    let jar = api.upload_file(CLICK_EVENT_COUNT_WASM);
    let pid = s.process.child.id();
    std::thread::sleep(Duration::from_secs(2));
    let base = rss_kib(pid);
    println!(
        "Idle jobs on one session (click-event-count at 1 record/s, p1); session alone {:.1} MiB",
        base as f64 / 1024.0
    );
    println!(
        "{:>6} {:>12} {:>16} {:>12} {:>14} {:>14}",
        "jobs", "accepted/s", "run -> RUNNING", "RSS MiB", "MiB per job", "idle CPU %"
    );
    let body = json!({"programArgsList": ["--rate", "1", "--discard"], "parallelism": 1});
    let mut jobs: Vec<String> = Vec::new();
    for target in steps {
        let started = Instant::now();
        let mut batch = Vec::new();
        while jobs.len() + batch.len() < target {
            batch.push(api.run(&jar, body.clone()));
        }
        let took = started.elapsed();
        let accepted = batch.len() as f64 / took.as_secs_f64().max(1e-9);
        for j in &batch {
            api.wait_for_state(j, "RUNNING", Duration::from_secs(300));
        }
        jobs.extend(batch);
        let next = s.time_to_running(
            Path::new(WEIR),
            Path::new(CLICK_EVENT_COUNT_WASM),
            &["--rate", "1", "--discard"],
        );
        let cpu = cpu_seconds(pid);
        std::thread::sleep(Duration::from_secs(5));
        let idle_cpu = (cpu_seconds(pid) - cpu) / 5.0 * 100.0;
        let rss = rss_kib(pid);
        println!(
            "{:>6} {:>12.1} {:>13.0} ms {:>12.1} {:>14.2} {:>14.0}",
            jobs.len(),
            accepted,
            next.as_secs_f64() * 1000.0,
            rss as f64 / 1024.0,
            rss.saturating_sub(base) as f64 / 1024.0 / jobs.len() as f64,
            idle_cpu
        );
        if rss > max_kib {
            println!(
                "stopped: the session holds {:.1} GiB, over WEIR_DENSITY_MAX_GIB",
                rss as f64 / 1024.0 / 1024.0
            );
            break;
        }
    }
}
