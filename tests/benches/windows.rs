//! The click-event-count job (15 s tumbling event-time windows per page),
//! whole process at `-p 1`, in one run:
//!
//! 1. events/s with 10 000 pages;
//! 2. events/s with 1 million pages (keys), with the default key cache and
//!    with one holding every key;
//! 3. the size of its state (checkpoints) over an hour of event time.
//!
//! Run with `cargo bench -p weir-tests --bench windows`.

use std::process::Command;
use std::time::{Duration, Instant};
use weir_tests::CLICK_EVENT_COUNT_WASM;
use weir_tests::process::Running;

const RUNS: usize = 3;

fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir-under-test"));
    c.env("WEIR_LOG", "error");
    c
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median time of running the job over `events` clicks.
fn time(events: u64, pages: u64, per_window: u64, flags: &[&str]) -> Duration {
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let mut c = weir();
        c.args(["run", "--local", "-p", "1"])
            .args(flags)
            .arg(CLICK_EVENT_COUNT_WASM)
            .arg("--")
            .args(["--events", &events.to_string()])
            .args(["--pages", &pages.to_string()])
            .args(["--clicks-per-window", &per_window.to_string()])
            .arg("--discard");
        let t = Instant::now();
        let o = c.output().expect("spawn weir");
        times.push(t.elapsed());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    median(times)
}

fn throughput(label: &str, events: u64, pages: u64, per_window: u64, flags: &[&str]) {
    let d = time(events, pages, per_window, flags);
    let windows = events / (pages * per_window).max(1);
    println!(
        "  {label:<44} {events:>9} events, {windows:>3} windows: {:>6.2} s  {:>9.0} events/s",
        d.as_secs_f64(),
        events as f64 / d.as_secs_f64()
    );
}

/// State sizes of the checkpoints of a run over `hours` of event time.
fn state_over_time(pages: u64, per_window: u64, minutes: u64) {
    let events = minutes * 4 * pages * per_window;
    let dir = tempfile::tempdir().unwrap();
    let mut c = weir();
    c.env("WEIR_LOG", "warn,weir=info")
        .args(["run", "--local", "-p", "1"])
        .args(["-D", "execution.checkpointing.interval=2s"])
        .arg("-D")
        .arg(format!("state.checkpoints.dir={}", dir.path().display()))
        .arg(CLICK_EVENT_COUNT_WASM)
        .arg("--")
        .args(["--events", &events.to_string()])
        .args(["--pages", &pages.to_string()])
        .args(["--clicks-per-window", &per_window.to_string()])
        .arg("--discard");
    let started = Instant::now();
    let mut job = Running::start(&mut c);
    assert!(job.wait(Duration::from_secs(3600)), "{}", job.stderr());
    let took = started.elapsed();
    let sizes: Vec<u64> = job
        .seen_err
        .iter()
        .filter(|l| l.contains("completed file://"))
        .filter_map(|l| {
            let rest = &l[l.find(" ms (")? + 5..];
            rest.split(' ').next()?.parse().ok()
        })
        .collect();
    // The last checkpoint is the final one, after every window fired.
    let periodic = &sizes[..sizes.len().saturating_sub(1)];
    assert!(periodic.len() >= 3, "too few checkpoints: {sizes:?}");
    let at = |f: f64| periodic[((periodic.len() - 1) as f64 * f) as usize];
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "  {pages} pages, {minutes} min of event time ({events} events, {:.1} s): state at a quarter {:.2} MiB, \
         half {:.2} MiB, the end {:.2} MiB; largest {:.2} MiB ({} checkpoints)",
        took.as_secs_f64(),
        mib(at(0.25)),
        mib(at(0.5)),
        mib(at(1.0)),
        mib(*periodic.iter().max().unwrap()),
        periodic.len()
    );
}

fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let want = |n: &str| only.as_deref().is_none_or(|o| o == n);
    // Warm the compile cache.
    time(1_000, 6, 10, &[]);
    if want("throughput") {
        println!("click-event-count, -p 1, whole process, median of {RUNS} runs");
        throughput("10 000 pages", 5_000_000, 10_000, 10, &[]);
        throughput(
            "1 000 000 pages (keys), default key cache",
            5_000_000,
            1_000_000,
            1,
            &[],
        );
        throughput(
            "1 000 000 pages, weir.state.cached-keys=2000000",
            5_000_000,
            1_000_000,
            1,
            &["-D", "weir.state.cached-keys=2000000"],
        );
    }
    if want("state") {
        println!("state size (checkpoints every 2 s) as event time passes");
        state_over_time(10_000, 10, 60);
        state_over_time(1_000_000, 1, 2);
    }
}
