//! Scale-out figures, measured in one run:
//!
//! 1. one channel's throughput, between two threads of a process and over
//!    an HTTP/2 stream on loopback TCP (the path between task managers);
//! 2. word count at `-p 2` over two task managers of one slot each, against
//!    `-p 2` on one session process (the job's own runtime, median of 3);
//! 3. the time from a task manager's SIGKILL to the job RUNNING again, with
//!    a spare task manager waiting;
//! 4. the time from the leading session's SIGKILL to its standby running
//!    every job (lease 2 s, heartbeat timeout 2 s);
//! 5. checkpoint durations of the exactly-once counts job with a slow map
//!    that holds its source back: idle, aligned under backpressure, and
//!    unaligned under backpressure (from the start, and after 500 ms
//!    aligned), in one process and over two task managers.
//!
//! Run with `cargo bench -p weir-tests --bench scale_out`.

use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use weir_runtime::exchange;
use weir_tests::cluster::{Api, SessionProcess, WorkerProcess};
use weir_tests::{CLICK_EVENT_COUNT_WASM, EXACTLY_ONCE_WASM, WORDCOUNT_WASM, write_corpus};

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");
const RUNS: usize = 3;

fn job_runtime(session: &str, input: &Path, output: &Path) -> Duration {
    let o = Command::new(WEIR)
        .env("WEIR_LOG", "error")
        .args(["--cluster", session, "run", "-p", "2", WORDCOUNT_WASM, "--"])
        .args(["--input", input.to_str().unwrap()])
        .args(["--output", output.to_str().unwrap()])
        .output()
        .expect("spawn weir");
    let said =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    let ms: u64 = said
        .split("Job Runtime: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the CLI prints the job's runtime");
    Duration::from_millis(ms)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn coordinator(dir: &Path) -> (SessionProcess, String) {
    let mut s = SessionProcess::start(
        Path::new(WEIR),
        dir,
        0,
        &["--cluster-port", "0", "-Dheartbeat.timeout=5s"],
    );
    let join = s.cluster_url();
    (s, join)
}

fn wait_for(api: &Api, job: &str, state: &str) -> Duration {
    let t = Instant::now();
    while api.state(job) != state {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{job} never {state}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    t.elapsed()
}

/// One configuration of the checkpoint-duration figures.
struct Case {
    name: &'static str,
    /// Microseconds each count takes (0: no backpressure).
    slow_us: u64,
    rate: u64,
    config: &'static [(&'static str, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        name: "idle",
        slow_us: 0,
        rate: 20_000,
        config: &[],
    },
    Case {
        name: "backpressure, aligned",
        slow_us: 100,
        rate: 10_000_000,
        config: &[],
    },
    Case {
        name: "backpressure, unaligned",
        slow_us: 100,
        rate: 10_000_000,
        config: &[("execution.checkpointing.unaligned", "true")],
    },
    Case {
        name: "backpressure, unaligned after 500 ms",
        slow_us: 100,
        rate: 10_000_000,
        config: &[
            ("execution.checkpointing.unaligned", "true"),
            (
                "execution.checkpointing.aligned-checkpoint-timeout",
                "500ms",
            ),
        ],
    },
];

/// Runs the counts job with checkpoints every 200 ms until five completed
/// (or 30 s passed); returns the median duration of the completed ones
/// after the first (which starts before backpressure builds up) — or,
/// when none did, how long the one in progress has run, as a lower bound
/// (true) — how many completed, and the bytes in flight in the last one.
fn checkpoint_durations(api: &Api, jar: &str, out: &Path, case: &Case) -> (u64, bool, u64, u64) {
    let mut config = serde_json::Map::new();
    config.insert("execution.checkpointing.interval".into(), "200ms".into());
    for (k, v) in case.config {
        config.insert((*k).into(), (*v).into());
    }
    let job = api.run(
        jar,
        json!({
            "programArgsList": [
                "--sink", "file", "--output", out.display().to_string(),
                "--records", "100000000", "--rate", case.rate.to_string(),
                "--keys", "1000", "--slow-us", case.slow_us.to_string(),
            ],
            "parallelism": 2,
            "flinkConfiguration": config,
        }),
    );
    wait_for(api, &job, "RUNNING");
    let start = Instant::now();
    let v = loop {
        std::thread::sleep(Duration::from_millis(200));
        let (_, v) = api.get(&format!("/jobs/{job}/checkpoints"));
        if v["counts"]["completed"].as_u64() >= Some(5) || start.elapsed() > Duration::from_secs(30)
        {
            break v;
        }
    };
    api.patch(&format!("/jobs/{job}?mode=cancel"));
    wait_for(api, &job, "CANCELED");
    let history = v["history"].as_array().unwrap();
    let mut completed: Vec<u64> = history
        .iter()
        .filter(|c| c["status"] == "COMPLETED" && c["id"].as_u64() > Some(1))
        .map(|c| c["end_to_end_duration"].as_u64().unwrap())
        .collect();
    completed.sort();
    // An unfinished checkpoint has run since it was triggered (its
    // duration is only set when it ends).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let running = history
        .iter()
        .filter(|c| c["status"] == "IN_PROGRESS")
        .filter_map(|c| c["trigger_timestamp"].as_u64())
        .map(|t| now_ms.saturating_sub(t))
        .max();
    let (median, at_least) = match completed.is_empty() {
        false => (completed[completed.len() / 2], false),
        true => (running.unwrap_or(0), true),
    };
    let in_flight = weir_tests::cluster::latest_checkpoint(api, &job)
        .map(|c| {
            let (input, output) = weir_tests::cluster::in_flight(&c);
            input + output
        })
        .unwrap_or(0);
    let done = v["counts"]["completed"].as_u64().unwrap_or(0);
    (median, at_least, done, in_flight)
}

fn checkpoints_under_backpressure(dir: &Path) {
    println!(
        "Checkpoint duration, counts job -p 2, checkpoints every 200 ms until 5 completed (30 s \
         at most), the first left out:"
    );
    println!("  where              case                                   median  done  in flight");
    let one = SessionProcess::start(Path::new(WEIR), &dir.join("cp-one"), 2, &[]);
    let (two, join) = coordinator(&dir.join("cp-two"));
    let _workers: Vec<WorkerProcess> = (0..2)
        .map(|_| WorkerProcess::start(Path::new(WEIR), &join, 1, &[]))
        .collect();
    for (where_, session) in [("one process", &one), ("two task managers", &two)] {
        let api = session.api();
        let jar = api.upload_file(EXACTLY_ONCE_WASM);
        let mut medians = Vec::new();
        for (i, case) in CASES.iter().enumerate() {
            let out = dir.join(format!("cp-out-{where_}-{i}").replace(' ', "-"));
            let (median, at_least, n, in_flight) = checkpoint_durations(&api, &jar, &out, case);
            println!(
                "  {where_:<18} {:<36} {}{median:>6} ms {n:>4} {:>7} KiB",
                case.name,
                if at_least { ">" } else { " " },
                in_flight / 1024
            );
            medians.push((median.max(1) as f64, at_least));
        }
        // A lower bound on the aligned duration bounds the ratio too.
        let at_least = |m: (f64, bool)| if m.1 { ">" } else { "" };
        println!(
            "  {where_}: aligned / unaligned under backpressure: {}{:.1}; unaligned / idle: {}{:.1}",
            at_least(medians[1]),
            medians[1].0 / medians[2].0,
            at_least(medians[2]),
            medians[2].0 / medians[0].0
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "checkpoints") {
        let dir = tempfile::tempdir().unwrap();
        checkpoints_under_backpressure(dir.path());
        return;
    }
    // 1. One channel.
    let total = 1u64 << 30;
    println!("One channel, 1 GiB of 100-byte records in 64 KiB batches:");
    println!("  path                          MB/s     records/s");
    let local = exchange::exchange_in_process(total, 100);
    let net = exchange::exchange_over_network(total, 100);
    for (name, f) in [("in process", local), ("HTTP/2 over loopback", net)] {
        println!(
            "  {name:<26} {:>8.0} {:>13.0}",
            f.mb_per_s(),
            f.records_per_s()
        );
    }
    println!(
        "  network / in process: {:.2}",
        net.mb_per_s() / local.mb_per_s()
    );

    // 2. Word count at -p 2.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txt");
    write_corpus(&input, 600_000, 10, 10_000, 5).unwrap();
    let output = dir.path().join("out.txt");
    let one = SessionProcess::start(Path::new(WEIR), &dir.path().join("one"), 2, &[]);
    let alone: Vec<Duration> = (0..RUNS)
        .map(|_| job_runtime(&one.url, &input, &output))
        .collect();
    let expected = std::fs::read(&output).unwrap();
    drop(one);
    let (two, join) = coordinator(&dir.path().join("two"));
    let _workers: Vec<WorkerProcess> = (0..2)
        .map(|_| WorkerProcess::start(Path::new(WEIR), &join, 1, &[]))
        .collect();
    let spread: Vec<Duration> = (0..RUNS)
        .map(|_| job_runtime(&two.url, &input, &output))
        .collect();
    assert_eq!(std::fs::read(&output).unwrap(), expected, "outputs differ");
    drop(two);
    let (a, b) = (median(alone), median(spread));
    println!("Word count -p 2, 6 M words (job runtime, median of {RUNS}):");
    println!("  one process                 {:>6} ms", a.as_millis());
    println!("  two task managers           {:>6} ms", b.as_millis());
    println!(
        "  throughput, two task managers / one process: {:.2}",
        a.as_secs_f64() / b.as_secs_f64()
    );

    // 3. Failover to a spare task manager.
    let (s, join) = coordinator(&dir.path().join("failover"));
    let api = s.api();
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|_| WorkerProcess::start(Path::new(WEIR), &join, 1, &[]))
        .collect();
    let jar = api.upload_file(CLICK_EVENT_COUNT_WASM);
    let job = api.run(
        &jar,
        json!({
            "programArgsList": ["--rate", "2000", "--discard"],
            "parallelism": 2,
            "flinkConfiguration": {
                "execution.checkpointing.interval": "500ms",
                "restart-strategy.type": "fixed-delay",
                "restart-strategy.fixed-delay.attempts": "100",
                "restart-strategy.fixed-delay.delay": "0ms",
            },
        }),
    );
    wait_for(&api, &job, "RUNNING");
    let mut took = Vec::new();
    for round in 0..RUNS {
        std::thread::sleep(Duration::from_secs(2));
        // A task manager with a task: one without a free slot.
        let (_, tms) = api.get("/taskmanagers");
        let busy: Vec<String> = tms["taskmanagers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["freeSlots"] == 0)
            .map(|t| t["path"].as_str().unwrap().to_owned())
            .collect();
        let victim = workers
            .iter()
            .position(|w| {
                w.process
                    .seen_err
                    .iter()
                    .any(|l| busy.iter().any(|b| l.contains(b.as_str())))
            })
            .expect("a busy task manager");
        let killed = Instant::now();
        workers[victim].process.signal("KILL");
        let t = Instant::now();
        while api.state(&job) == "RUNNING" {
            assert!(t.elapsed() < Duration::from_secs(60), "not noticed");
            std::thread::sleep(Duration::from_millis(2));
        }
        wait_for(&api, &job, "RUNNING");
        took.push(killed.elapsed());
        workers.remove(victim);
        workers.push(WorkerProcess::start(Path::new(WEIR), &join, 1, &[]));
        println!(
            "  round {}: SIGKILL to RUNNING in {} ms",
            round + 1,
            took[round].as_millis()
        );
    }
    println!(
        "Task manager SIGKILL to RUNNING with a spare waiting: median {} ms",
        median(took).as_millis()
    );
    drop(workers);
    drop(s);

    // 4. Failover to a standby session.
    let shared = dir.path().join("ha-shared");
    let port = weir_tests::servers::free_port;
    let (pa, pb) = (port(), port());
    let flags = |p: u16| -> Vec<String> {
        vec![
            format!(
                "-Dhigh-availability.storageDir=file://{}/ha",
                shared.display()
            ),
            format!(
                "-Dstate.checkpoints.dir=file://{}/checkpoints",
                shared.display()
            ),
            "-Dhigh-availability.type=lease".into(),
            "-Dhigh-availability.lease.duration=2s".into(),
            "-Dheartbeat.interval=200ms".into(),
            "-Dheartbeat.timeout=2s".into(),
            "--cluster-port".into(),
            p.to_string(),
        ]
    };
    let fa = flags(pa);
    let a = SessionProcess::start(
        Path::new(WEIR),
        &dir.path().join("leader"),
        0,
        &fa.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut b = {
        let mut cmd = Command::new(WEIR);
        cmd.env("WEIR_LOG", "warn,weir=info")
            .args(["session", "--data-dir"])
            .arg(dir.path().join("standby"))
            .args(["--port", "0", "--slots", "0"])
            .args(flags(pb));
        weir_tests::process::Running::start(&mut cmd)
    };
    b.wait_for_log("Standby:", Duration::from_secs(60));
    let joins = format!("http://127.0.0.1:{pa},http://127.0.0.1:{pb}");
    let _workers: Vec<WorkerProcess> = (0..2)
        .map(|_| WorkerProcess::start(Path::new(WEIR), &joins, 2, &[]))
        .collect();
    let api = a.api();
    let jar = api.upload_file(CLICK_EVENT_COUNT_WASM);
    let jobs: Vec<String> = (0..4)
        .map(|_| {
            api.run(
                &jar,
                json!({
                    "programArgsList": ["--rate", "500", "--discard"],
                    "parallelism": 1,
                    "flinkConfiguration": {"execution.checkpointing.interval": "500ms"},
                }),
            )
        })
        .collect();
    for j in &jobs {
        wait_for(&api, j, "RUNNING");
    }
    std::thread::sleep(Duration::from_secs(2));
    a.process.signal("KILL");
    let killed = Instant::now();
    let line = b.wait_for_log("REST endpoint: ", Duration::from_secs(60));
    let url = line
        .split("REST endpoint: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    let standby = Api::new(&url);
    for j in &jobs {
        wait_for(&standby, j, "RUNNING");
    }
    println!(
        "Leader SIGKILL to the standby running all {} jobs: {} ms (lease 2 s, heartbeat timeout 2 s)",
        jobs.len(),
        killed.elapsed().as_millis()
    );
    drop(a);
    let _ = b.child.kill();
    let _ = b.child.wait();

    // 5. Checkpoints under backpressure.
    checkpoints_under_backpressure(dir.path());
}
