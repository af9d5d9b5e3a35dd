//! Nexmark on Weir, measured in one run: every query of `examples/nexmark`
//! over the same generated events (10 M unless `WEIR_NEXMARK_EVENTS` says
//! otherwise, event time at the standard 10 M events per second) at
//! parallelism 1 and 2, once without checkpoints and once with exactly-once
//! checkpoints every 10 s on RocksDB. Printed per run: events per second,
//! the CPU seconds used (user + system, the whole process), events per
//! CPU-second and the peak memory (RSS). `WEIR_NEXMARK_QUERIES=q4,q5`
//! runs some queries only.
//!
//! Beside them, Apache Flink 2.3 SQL on the same queries: run here when
//! `WEIR_FLINK_NEXMARK` names a directory holding a Flink Nexmark program
//! (`Nexmark.java`, taking `query events parallelism`) and `WEIR_FLINK_LIB`
//! (or the Flink client the tests install) holds Flink's jars; otherwise the
//! figures measured on a 2-core machine like this project's (p=1, 10 M
//! events, heap state, no checkpoints) are printed, marked as such.
//!
//! Run with `cargo bench -p weir-tests --bench nexmark`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use weir_tests::NEXMARK_WASM;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");
const QUERIES: [&str; 9] = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q9"];
/// The queries the Flink program runs.
const FLINK_QUERIES: [&str; 8] = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8"];
/// Flink 2.3 SQL, p=1, 10 M events: events per CPU-second and peak memory
/// in MB, measured on a 2-core machine of this project.
const FLINK_MEASURED: [(&str, f64, f64); 8] = [
    ("q0", 367e3, 1200.0),
    ("q1", 353e3, 1200.0),
    ("q2", 363e3, 1500.0),
    ("q3", 223e3, 1800.0),
    ("q4", 128e3, 5800.0),
    ("q5", 195e3, 3200.0),
    ("q7", 100e3, 6800.0),
    ("q8", 258e3, 1500.0),
];

/// What one run cost.
#[derive(Debug, Clone, Copy)]
struct Run {
    seconds: f64,
    cpu: f64,
    peak_mb: f64,
}

impl Run {
    fn per_cpu(&self, events: u64) -> f64 {
        events as f64 / self.cpu.max(1e-9)
    }
}

/// Runs `cmd` under GNU time; its wall time, CPU time and peak RSS.
fn measure(cmd: &mut Command) -> Run {
    let time = Path::new("/usr/bin/time");
    assert!(
        time.exists(),
        "the benchmark measures CPU and memory with GNU time: apt-get install time"
    );
    let mut c = Command::new(time);
    c.arg("-f")
        .arg("weir-bench %U %S %M")
        .arg(cmd.get_program());
    c.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let start = Instant::now();
    let out = c.output().expect("running the job");
    let seconds = start.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed: {err}");
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with("weir-bench "))
        .expect("GNU time's line");
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    Run {
        seconds,
        cpu: f[0] + f[1],
        peak_mb: f[2] / 1024.0,
    }
}

fn weir(query: &str, events: u64, p: u32, checkpoints: Option<&Path>) -> Run {
    let mut c = Command::new(WEIR);
    c.env("WEIR_LOG", "warn")
        .args(["run", "--local", "-p", &p.to_string()]);
    if let Some(dir) = checkpoints {
        let _ = std::fs::remove_dir_all(dir);
        c.arg("-D")
            .arg("execution.checkpointing.interval=10s")
            .arg("-D")
            .arg("execution.checkpointing.mode=EXACTLY_ONCE")
            .arg("-D")
            .arg(format!("state.checkpoints.dir=file://{}", dir.display()));
    }
    c.arg(NEXMARK_WASM)
        .arg("--")
        .args(["--query", query, "--events", &events.to_string()]);
    measure(&mut c)
}

/// Flink's jars: `WEIR_FLINK_LIB`, or the client the tests install.
fn flink_lib() -> Option<PathBuf> {
    if let Some(l) = std::env::var_os("WEIR_FLINK_LIB") {
        return Some(PathBuf::from(l));
    }
    let home = std::env::var_os("HOME")?;
    let l = Path::new(&home).join(".cache/weir-tools/flink-2.3.0/pyflink/lib");
    l.exists().then_some(l)
}

/// Compiles the Flink program in `WEIR_FLINK_NEXMARK`; the classpath to
/// run it with.
fn flink_program(work: &Path) -> Option<String> {
    let dir = PathBuf::from(std::env::var_os("WEIR_FLINK_NEXMARK")?);
    let lib = flink_lib()?;
    let classes = work.join("flink-classes");
    std::fs::create_dir_all(&classes).unwrap();
    let cp = format!("{}/*", lib.display());
    let status = Command::new("javac")
        .args(["-cp", &cp, "-d"])
        .arg(&classes)
        .arg(dir.join("Nexmark.java"))
        .status()
        .expect("javac (apt-get install default-jdk-headless)");
    assert!(status.success(), "compiling the Flink program failed");
    Some(format!("{}:{cp}", classes.display()))
}

fn main() {
    let events: u64 = std::env::var("WEIR_NEXMARK_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let work = tempfile::tempdir().unwrap();
    let checkpoints = work.path().join("checkpoints");
    let flink = flink_program(work.path());
    println!(
        "Nexmark, {events} events (event time at 10 M/s), `weir run --local`; events/s, CPU \
         seconds (user+sys), events per CPU-second, peak RSS"
    );
    println!(
        "{:<4} {:<22} {:>10} {:>8} {:>12} {:>9}   {:>12} {:>9} {:>9}",
        "",
        "run",
        "events/s",
        "CPU s",
        "ev/CPU-s",
        "RSS MB",
        "Flink ev/CPU",
        "Weir/Flink",
        "memory"
    );
    let only: Option<Vec<String>> = std::env::var("WEIR_NEXMARK_QUERIES")
        .ok()
        .map(|v| v.split(',').map(|q| q.trim().to_owned()).collect());
    for q in QUERIES {
        if only.as_ref().is_some_and(|o| !o.iter().any(|x| x == q)) {
            continue;
        }
        let (flink_rate, flink_mb, measured_here) = match &flink {
            Some(cp) if FLINK_QUERIES.contains(&q) => {
                let mut c = Command::new("java");
                c.args(["-cp", cp, "Nexmark", q, &events.to_string(), "1"]);
                let r = measure(&mut c);
                (Some(r.per_cpu(events)), Some(r.peak_mb), true)
            }
            _ => match FLINK_MEASURED.iter().find(|(n, _, _)| *n == q) {
                Some((_, rate, mb)) => (Some(*rate), Some(*mb), false),
                None => (None, None, false),
            },
        };
        for (label, p, cp) in [
            ("p1", 1, None),
            ("p2", 2, None),
            ("p1 checkpoints 10s", 1, Some(checkpoints.as_path())),
            ("p2 checkpoints 10s", 2, Some(checkpoints.as_path())),
        ] {
            let r = weir(q, events, p, cp);
            let per_cpu = r.per_cpu(events);
            let flink = match (flink_rate, flink_mb) {
                (Some(rate), Some(mb)) => format!(
                    "{rate:>12.0} {:>9.2} {:>8.3}x",
                    per_cpu / rate,
                    r.peak_mb / mb
                ),
                _ => format!("{:>12} {:>9} {:>9}", "-", "-", "-"),
            };
            println!(
                "{q:<4} {label:<22} {:>10.0} {:>8.2} {:>12.0} {:>9.0}   {flink}",
                events as f64 / r.seconds,
                r.cpu,
                per_cpu,
                r.peak_mb,
            );
        }
        if flink_rate.is_none() {
            println!("     (the Flink program has no {q})");
        } else if !measured_here {
            println!("     (Flink figures: measured on this machine type, not in this run)");
        }
    }
}
