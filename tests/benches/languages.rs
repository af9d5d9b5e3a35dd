//! Jobs in Python and JavaScript against the same job in Rust, in one run:
//!
//! 1. words per second of each language's word count on the same input
//!    (`weir run --local -p 1`, the job's own runtime, median of 3);
//! 2. the size of each component;
//! 3. the time from `weir run -d` (upload, compile, plan, deploy) to RUNNING
//!    on a session, for a module new to the session and a cached one.
//!
//! Needs the tool chains `./scripts/test.sh` installs. Run with
//! `cargo bench -p weir-tests --bench languages`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use weir_tests::WORDCOUNT_WASM;
use weir_tests::cluster::SessionProcess;
use weir_tests::guests::{Language, build};

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");
const WORDS: usize = 1_000_000;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the word count once and returns the job's runtime as `weir` reports it.
fn count(job: &Path, input: &Path, output: &Path) -> Duration {
    let o = Command::new(WEIR)
        .env("WEIR_LOG", "error")
        .args(["run", "--local", "-p", "1"])
        .arg(job)
        .arg("--")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stderr);
    let runtime = out
        .lines()
        .find_map(|l| l.strip_prefix("Job Runtime: "))
        .and_then(|v| v.trim_end_matches(" ms").parse::<u64>().ok())
        .expect("weir reports the job's runtime");
    Duration::from_millis(runtime)
}

/// `weir run -d` of a socket word count against the session, until RUNNING.
fn run_to_running(s: &SessionProcess, job: &Path, port: u16) -> Duration {
    let port = port.to_string();
    s.time_to_running(
        Path::new(WEIR),
        job,
        &["--hostname", "127.0.0.1", "--port", &port],
    )
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let jobs: Vec<(&str, PathBuf)> = vec![
        ("Rust", PathBuf::from(WORDCOUNT_WASM)),
        (
            "Python",
            build(Language::Python, "examples/python-wordcount/job.py"),
        ),
        (
            "JavaScript",
            build(Language::JavaScript, "examples/js-wordcount/job.js"),
        ),
    ];
    let input = dir.path().join("words.txt");
    weir_tests::write_corpus(&input, WORDS / 10, 10, 10_000, 3).unwrap();

    println!("1. word count, {WORDS} words, p1 (job runtime, median of 3, interleaved)");
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); jobs.len()];
    let outputs: Vec<PathBuf> = (0..jobs.len())
        .map(|i| dir.path().join(format!("out-{i}.txt")))
        .collect();
    for (i, (_, job)) in jobs.iter().enumerate() {
        count(job, &input, &outputs[i]); // compiles and caches the module
    }
    for _ in 0..3 {
        for (i, (_, job)) in jobs.iter().enumerate() {
            times[i].push(count(job, &input, &outputs[i]));
        }
    }
    let rust_out = std::fs::read(&outputs[0]).unwrap();
    let rust = median(times[0].clone());
    for (i, (name, _)) in jobs.iter().enumerate() {
        assert!(
            std::fs::read(&outputs[i]).unwrap() == rust_out,
            "{name}: output differs from Rust's"
        );
        let t = median(times[i].clone());
        println!(
            "  {name:<11} {:>9.0} ms {:>11.0} words/s   {:.3} of Rust",
            ms(t),
            WORDS as f64 / t.as_secs_f64(),
            rust.as_secs_f64() / t.as_secs_f64()
        );
    }

    println!("2. component size");
    for (name, job) in &jobs {
        let size = std::fs::metadata(job).unwrap().len();
        println!("  {name:<11} {:>9.2} MiB", size as f64 / (1 << 20) as f64);
    }

    println!("3. weir run -d (socket word count) -> RUNNING on a session, median of 3");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    for (i, (name, job)) in jobs.iter().enumerate() {
        let mut new = Vec::new();
        for r in 0..3 {
            // A fresh data directory: nothing compiled yet.
            let data = dir.path().join(format!("new-{i}-{r}"));
            let s = SessionProcess::start(Path::new(WEIR), &data, 4, &[]);
            new.push(run_to_running(&s, job, port));
        }
        let s = SessionProcess::start(Path::new(WEIR), &dir.path().join(format!("c{i}")), 4, &[]);
        run_to_running(&s, job, port);
        let cached: Vec<Duration> = (0..3).map(|_| run_to_running(&s, job, port)).collect();
        println!(
            "  {name:<11} new module {:>8.1} ms   cached {:>7.1} ms",
            ms(median(new)),
            ms(median(cached))
        );
    }
}
