//! What durability costs, measured in one run: the exactly-once streaming
//! count into the file sink, at parallelism 2 with a checkpoint every
//! 200 ms to `file://`, with `weir.io.fsync` on (files and the directories
//! naming them synced where a power loss could lose committed data) and
//! off, runs interleaved; records per second by the job's runtime, and the
//! ratio.
//!
//! Run with `cargo bench -p weir-tests --bench durability`.

use std::process::Command;
use std::time::Duration;
use weir_tests::EXACTLY_ONCE_WASM;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");
const RECORDS: u64 = 2_000_000;
const ROUNDS: usize = 5;

/// One run; returns records per second by the job's own runtime.
fn run(fsync: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(WEIR)
        .env("WEIR_LOG", "error")
        .args(["run", "--local", "-p", "2"])
        .args(["-D", "execution.checkpointing.interval=200ms"])
        .args(["-D", "execution.runtime-mode=STREAMING"])
        .arg("-D")
        .arg(format!("weir.io.fsync={fsync}"))
        .arg("-D")
        .arg(format!(
            "state.checkpoints.dir={}",
            dir.path().join("checkpoints").display()
        ))
        .arg(EXACTLY_ONCE_WASM)
        .arg("--")
        .args(["--sink", "file", "--output"])
        .arg(dir.path().join("out"))
        .args(["--records", &RECORDS.to_string(), "--rate", "1000000000"])
        .args(["--keys", "1000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let ms: f64 = err
        .lines()
        .find_map(|l| l.strip_prefix("Job Runtime: "))
        .and_then(|l| l.strip_suffix(" ms"))
        .and_then(|n| n.parse().ok())
        .expect("the job's runtime");
    let lines: usize = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| std::fs::read_to_string(e.path()).unwrap().lines().count())
        .sum();
    assert_eq!(lines as u64, RECORDS, "every record committed once");
    RECORDS as f64 / (ms / 1000.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    println!(
        "exactly-once count into the file sink, {RECORDS} records, p2, checkpoints every 200ms \
         on file://, {ROUNDS} interleaved runs each"
    );
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        off.push(run(false));
        on.push(run(true));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (on, off) = (median(on), median(off));
    println!("  weir.io.fsync=false   {off:>12.0} records/s (median)");
    println!("  weir.io.fsync=true    {on:>12.0} records/s (median)");
    println!("  with fsync / without: {:.3}", on / off);
}
