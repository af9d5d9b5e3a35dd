//! The session cluster, measured in one run:
//!
//! 1. time from `weir run -d job.wasm` (upload, plan, deploy) to RUNNING,
//!    for a module the session has compiled before and for a new one;
//! 2. jobs per second the REST API accepts (`POST /jars/:id/run`);
//! 3. the session's resident memory with 50 idle jobs.
//!
//! Run with `cargo bench -p weir-tests --bench session`.

use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use weir_tests::CLICK_EVENT_COUNT_WASM;
use weir_tests::cluster::SessionProcess;
use weir_tests::process::rss_kib;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `weir run -d` of an idle click-event-count until RUNNING.
fn run_to_running(s: &SessionProcess) -> Duration {
    s.time_to_running(
        Path::new(WEIR),
        Path::new(CLICK_EVENT_COUNT_WASM),
        &["--rate", "10", "--discard"],
    )
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    println!("1. weir run -d click_event_count.wasm -> RUNNING (p1; median of 5)");
    let mut new = Vec::new();
    for i in 0..5 {
        // A fresh data directory: nothing compiled yet.
        let s = SessionProcess::start(Path::new(WEIR), &dir.path().join(format!("new{i}")), 4, &[]);
        new.push(run_to_running(&s));
    }
    let s = SessionProcess::start(Path::new(WEIR), &dir.path().join("cached"), 64, &[]);
    run_to_running(&s);
    let cached: Vec<Duration> = (0..5).map(|_| run_to_running(&s)).collect();
    let (n, c) = (median(new), median(cached));
    println!("  new module (compiled on upload)    {:>8.1} ms", ms(n));
    println!("  cached module                      {:>8.1} ms", ms(c));
    println!("  new / cached: {:.1}x", ms(n) / ms(c));

    println!("2. POST /jars/:id/run, 50 jobs (p1, idle generator)");
    let api = s.api();
    let jar = api.upload_file(CLICK_EVENT_COUNT_WASM);
    let pid = s.process.child.id();
    std::thread::sleep(Duration::from_secs(1));
    let before = rss_kib(pid);
    let body = json!({"programArgsList": ["--rate", "1", "--discard"], "parallelism": 1});
    let started = Instant::now();
    let jobs: Vec<String> = (0..50).map(|_| api.run(&jar, body.clone())).collect();
    let took = started.elapsed();
    println!(
        "  accepted 50 jobs in {:.0} ms: {:.0} jobs/s",
        ms(took),
        50.0 / took.as_secs_f64()
    );
    for j in &jobs {
        api.wait_for_state(j, "RUNNING", Duration::from_secs(60));
    }
    let all_running = started.elapsed();
    println!("  all 50 RUNNING after {:.0} ms", ms(all_running));

    println!("3. session memory (VmRSS)");
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_kib(pid);
    println!(
        "  idle session, module uploaded      {:>8.1} MiB",
        before as f64 / 1024.0
    );
    println!(
        "  with 50 idle jobs                  {:>8.1} MiB",
        after as f64 / 1024.0
    );
    println!(
        "  per job                            {:>8.1} MiB",
        (after.saturating_sub(before)) as f64 / 1024.0 / 50.0
    );
}
