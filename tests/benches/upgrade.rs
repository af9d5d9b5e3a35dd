//! Upgrading a running job, measured in one run: an exactly-once job
//! (generated records counted per key, every running count one line in a
//! transactional file sink, checkpoints every 100 ms) is upgraded while it
//! runs, with `POST /jobs/:id/upgrade` in place (a hot swap at a barrier)
//! and with a restart (`"restart": true`: stop with a savepoint and start
//! again), and as a Flink user does it by hand (stop with a savepoint, then
//! run the new module from it).
//! Printed for each: the longest time between two commits of output around
//! the upgrade (beside the longest in steady state), and the records per
//! second committed in the 5 s around it against steady state.
//!
//! Run with `cargo bench -p weir-tests --bench upgrade`.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weir_tests::EXACTLY_ONCE_WASM;
use weir_tests::cluster::{Api, SessionProcess};

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");
const LIMIT: Duration = Duration::from_secs(120);
const RATE: u64 = 20_000;

/// Committed lines of the file sink's output directory.
fn committed(out: &Path) -> usize {
    let Ok(dir) = std::fs::read_dir(out) else {
        return 0;
    };
    dir.flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| std::fs::read(e.path()).map(|b| bytecount(&b)).unwrap_or(0))
        .sum()
}

fn bytecount(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

/// (time, committed lines) samples every 5 ms for `span`.
fn sample(out: &Path, span: Duration, samples: &mut Vec<(Instant, usize)>) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        samples.push((Instant::now(), committed(out)));
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The longest time between two increases of the committed count within
/// [from, to].
fn longest_gap(samples: &[(Instant, usize)], from: Instant, to: Instant) -> Duration {
    let mut last: Option<(Instant, usize)> = None;
    let mut gap = Duration::ZERO;
    for &(t, n) in samples.iter().filter(|(t, _)| *t >= from && *t <= to) {
        match last {
            Some((lt, ln)) if n > ln => {
                gap = gap.max(t - lt);
                last = Some((t, n));
            }
            None => last = Some((t, n)),
            _ => {}
        }
    }
    gap
}

/// Lines committed per second within [from, to].
fn rate(samples: &[(Instant, usize)], from: Instant, to: Instant) -> f64 {
    let within: Vec<_> = samples
        .iter()
        .filter(|(t, _)| *t >= from && *t <= to)
        .collect();
    let (Some(a), Some(b)) = (within.first(), within.last()) else {
        return 0.0;
    };
    (b.1 - a.1) as f64 / (b.0 - a.0).as_secs_f64().max(1e-9)
}

fn args(out: &Path) -> Vec<String> {
    [
        "--sink",
        "file",
        "--output",
        &out.display().to_string(),
        "--records",
        "100000000",
        "--rate",
        &RATE.to_string(),
        "--keys",
        "1000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start(api: &Api, jar: &str, out: &Path, savepoint: Option<&str>) -> String {
    let mut body = json!({
        "programArgsList": args(out),
        "parallelism": 2,
        "flinkConfiguration": {"execution.checkpointing.interval": "100ms"},
    });
    if let Some(sp) = savepoint {
        body["savepointPath"] = json!(sp);
    }
    let job = api.run(jar, body);
    api.wait_for_state(&job, "RUNNING", LIMIT);
    job
}

struct Figures {
    /// From the request to the new version running.
    took: Duration,
    steady_gap: Duration,
    gap: Duration,
    steady_rate: f64,
    rate: f64,
}

/// Runs the job, samples 4 s of steady state, upgrades it with `upgrade`
/// and samples 5 s more (sampling goes on while the upgrade runs).
fn measure(api: &Api, jar: &str, out: PathBuf, upgrade: impl FnOnce(&str)) -> Figures {
    let job = start(api, jar, &out, None);
    let sampler = {
        let out = out.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            sample(&out, Duration::from_secs(10), &mut samples);
            samples
        })
    };
    std::thread::sleep(Duration::from_secs(4));
    let began = Instant::now();
    upgrade(&job);
    let took = began.elapsed();
    let samples = sampler.join().unwrap();
    let first = samples[0].0 + Duration::from_millis(500);
    Figures {
        took,
        steady_gap: longest_gap(&samples, first, began),
        gap: longest_gap(
            &samples,
            began - Duration::from_millis(200),
            began + Duration::from_secs(5),
        ),
        steady_rate: rate(&samples, first, began),
        rate: rate(&samples, began, began + Duration::from_secs(5)),
    }
}

fn print(what: &str, f: &Figures) {
    println!(
        "  {what:<34} took {:>5.0} ms   gap {:>6.0} ms (steady {:>4.0} ms)   {:>7.0} lines/s over 5 s (steady {:>7.0}, {:.2}x)",
        f.took.as_secs_f64() * 1000.0,
        f.gap.as_secs_f64() * 1000.0,
        f.steady_gap.as_secs_f64() * 1000.0,
        f.rate,
        f.steady_rate,
        f.rate / f.steady_rate.max(1e-9)
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let s = SessionProcess::start(Path::new(WEIR), &dir.path().join("data"), 8, &[]);
    let api = s.api();
    let jar = api.upload_file(EXACTLY_ONCE_WASM);
    let new_jar = api.upload_file(EXACTLY_ONCE_WASM);
    println!(
        "Upgrading a running exactly-once job (p2, {RATE} records/s, checkpoints every 100 ms), \
         committed output sampled every 5 ms"
    );
    let upgrade = |job: &str, restart: bool| {
        let (_, op) = api.upgrade(job, json!({"jarId": new_jar, "restart": restart}), LIMIT);
        assert_eq!(op["result"], "UPGRADED", "{op}");
        let mode = if restart { "restart" } else { "hot-swap" };
        assert_eq!(op["mode"], mode, "{op}");
    };
    let swapped = measure(&api, &jar, dir.path().join("out-swap"), |job| {
        upgrade(job, false);
    });
    let upgraded = measure(&api, &jar, dir.path().join("out-upgrade"), |job| {
        upgrade(job, true);
    });
    let by_hand = measure(&api, &jar, dir.path().join("out-by-hand"), |job| {
        let (status, t) = api.post(&format!("/jobs/{job}/stop"), json!({}));
        assert_eq!(status, 202, "{t}");
        let sp = api
            .wait_for_savepoint(job, t["request-id"].as_str().unwrap(), LIMIT)
            .unwrap();
        api.wait_for_state(job, "FINISHED", LIMIT);
        let out = dir.path().join("out-by-hand");
        start(&api, &new_jar, &out, Some(&sp));
    });
    print("weir upgrade (hot swap)", &swapped);
    print("weir upgrade --restart", &upgraded);
    print("stop with savepoint, then run -s", &by_hand);
    let gap = |f: &Figures| f.gap.as_secs_f64().max(1e-9);
    println!(
        "  output gap, hot swap / restart: {:.2}   hot swap / by hand: {:.2}   restart / by \
         hand: {:.2}",
        gap(&swapped) / gap(&upgraded),
        gap(&swapped) / gap(&by_hand),
        gap(&upgraded) / gap(&by_hand)
    );
}
