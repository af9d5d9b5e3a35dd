//! Word count over 10 million words (1 million lines of 10 words, 10 000
//! distinct), whole process, three ways, in one run:
//!
//! - `wasm`: `weir run --local -p 1` with the word count component;
//! - `native`: the same pipeline as native closures on the same engine;
//! - `handwritten`: one thread, a `HashMap`, no engine — the floor.
//!
//! Prints time and words/s of each and the ratios. Run with
//! `cargo bench -p weir-tests --bench wordcount`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use weir_tests::{WORDCOUNT_WASM, write_corpus};

const LINES: usize = 1_000_000;
const PER_LINE: usize = 10;
const DISTINCT: usize = 10_000;
const RUNS: usize = 11;

fn time(mut cmd: Command) -> Duration {
    let t = Instant::now();
    let out = cmd.output().expect("spawn");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn min(v: &[Duration]) -> Duration {
    *v.iter().min().expect("runs")
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("words.txt");
    write_corpus(&input, LINES, PER_LINE, DISTINCT, 42).unwrap();
    let words = (LINES * PER_LINE) as f64;
    let out = |n: &str| dir.path().join(n);
    let input_s = input.to_str().unwrap().to_owned();

    let wasm = |o: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_weir-under-test"));
        c.args([
            "run",
            "--local",
            "-p",
            "1",
            WORDCOUNT_WASM,
            "--",
            "--input",
            &input_s,
            "--output",
        ])
        .arg(o)
        .env("WEIR_LOG", "error");
        c
    };
    let native = |o: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wordcount-native"));
        c.arg(&input_s).arg(o).arg("1");
        c
    };
    let hand = |o: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wordcount-handwritten"));
        c.arg(&input_s).arg(o);
        c
    };
    // Warm up: fills the compile cache and the page cache.
    time(wasm(&out("warm.txt")));

    let mut t_wasm = Vec::new();
    let mut t_native = Vec::new();
    let mut t_hand = Vec::new();
    for _ in 0..RUNS {
        t_wasm.push(time(wasm(&out("wasm.txt"))));
        t_native.push(time(native(&out("native.txt"))));
        t_hand.push(time(hand(&out("hand.txt"))));
    }
    let reference = std::fs::read(out("hand.txt")).unwrap();
    assert_eq!(
        std::fs::read(out("wasm.txt")).unwrap(),
        reference,
        "wasm output differs"
    );
    assert_eq!(
        std::fs::read(out("native.txt")).unwrap(),
        reference,
        "native output differs"
    );

    let (wm, nm, hm) = (min(&t_wasm), min(&t_native), min(&t_hand));
    let (w, n, h) = (median(t_wasm), median(t_native), median(t_hand));
    println!(
        "word count, {} words ({LINES} lines x {PER_LINE}, {DISTINCT} distinct), whole process, \
         {RUNS} interleaved runs",
        words as u64
    );
    println!(
        "  {:<32} {:>10} {:>10} {:>14}",
        "", "median", "best", "words/s (med)"
    );
    for (name, d, b) in [
        ("wasm (weir run --local -p 1)", w, wm),
        ("native closures, same engine", n, nm),
        ("hand-written single thread", h, hm),
    ] {
        println!(
            "  {name:<32} {:>8.3} s {:>8.3} s {:>14.0}",
            d.as_secs_f64(),
            b.as_secs_f64(),
            words / d.as_secs_f64()
        );
    }
    println!(
        "  wasm throughput / native closures: {:.2} median, {:.2} best  (goal >= 0.8)",
        n.as_secs_f64() / w.as_secs_f64(),
        nm.as_secs_f64() / wm.as_secs_f64()
    );
    println!(
        "  wasm time / hand-written time:     {:.2} median, {:.2} best  (goal <= 3)",
        w.as_secs_f64() / h.as_secs_f64(),
        wm.as_secs_f64() / hm.as_secs_f64()
    );
}
