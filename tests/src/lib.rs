//! Support for Weir's end-to-end tests and benchmarks: the guest jobs
//! built to WebAssembly by `build.rs`, native instances of the same jobs,
//! and input generators with independent expected results.

pub mod browser;
pub mod cluster;
pub mod guests;
pub mod native;
pub mod process;
pub mod servers;

use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The word count example, built as a component.
pub const WORDCOUNT_WASM: &str = env!("WEIR_WASM_WORDCOUNT");
/// The Nexmark queries (see `examples/nexmark`).
pub const NEXMARK_WASM: &str = env!("WEIR_WASM_NEXMARK");
/// Jobs for the checkpoint benchmarks (see `tests/fixtures/state-bench`).
pub const STATE_BENCH_WASM: &str = env!("WEIR_WASM_STATE_BENCH");
/// Window, watermark and timer jobs (see `tests/fixtures/windows`).
pub const WINDOWS_WASM: &str = env!("WEIR_WASM_WINDOWS");
/// Flink's ClickEventCount (see `examples/click-event-count`).
pub const CLICK_EVENT_COUNT_WASM: &str = env!("WEIR_WASM_CLICK_EVENT_COUNT");
/// Kafka word count into a database (see `examples/kafka-wordcount-mysql`).
pub const KAFKA_WORDCOUNT_WASM: &str = env!("WEIR_WASM_KAFKA_WORDCOUNT_MYSQL");
/// Kafka-to-Kafka jobs (see `tests/fixtures/kafka-jobs`).
pub const KAFKA_JOBS_WASM: &str = env!("WEIR_WASM_KAFKA_JOBS");
/// A streaming count whose sinks show every loss and duplicate (see
/// `tests/fixtures/exactly-once`).
pub const EXACTLY_ONCE_WASM: &str = env!("WEIR_WASM_EXACTLY_ONCE");
/// Misbehaving jobs (see `tests/fixtures/hostile`).
pub const HOSTILE_WASM: &str = env!("WEIR_WASM_HOSTILE");
/// A component that is not a Weir job.
pub const NOT_A_JOB_WASM: &str = env!("WEIR_WASM_NOT_A_JOB");
/// The counter job, versions 1 to 4 (see `tests/fixtures/counter/job.rs`).
pub const COUNTER_WASM: [&str; 4] = [
    env!("WEIR_WASM_COUNTER_V1"),
    env!("WEIR_WASM_COUNTER_V2"),
    env!("WEIR_WASM_COUNTER_V3"),
    env!("WEIR_WASM_COUNTER_V4"),
];

/// Writes `lines` lines of `per_line` words drawn uniformly from `distinct`
/// distinct words to `path`, deterministically from `seed`.
pub fn write_corpus(
    path: &Path,
    lines: usize,
    per_line: usize,
    distinct: usize,
    seed: u64,
) -> std::io::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let vocab: Vec<String> = (0..distinct).map(word).collect();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    for _ in 0..lines {
        for j in 0..per_line {
            if j > 0 {
                out.write_all(b" ")?;
            }
            out.write_all(vocab[rng.random_range(0..distinct)].as_bytes())?;
        }
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// The i-th word of the synthetic vocabulary (letters only, varied length).
pub fn word(i: usize) -> String {
    let letters = b"etaoinshrdlucmfwypvbgkqjxz";
    let mut s = String::new();
    let mut n = i + 1;
    while n > 0 {
        s.push(letters[n % letters.len()] as char);
        n /= letters.len();
    }
    s
}

/// Counts words the simplest way, independently of Weir.
pub fn count_words(text: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for w in text.split_whitespace() {
        *m.entry(w.to_owned()).or_insert(0) += 1;
    }
    m
}

/// The word count example's output format for `counts`.
pub fn format_counts(counts: &BTreeMap<String, u64>) -> String {
    counts.iter().map(|(w, c)| format!("{w}\t{c}\n")).collect()
}

/// What the hostile module's `flaky` entry writes for `n` records: every
/// running sum of `i` per `i % 10`, sorted, each record counted once.
pub fn flaky_sums(n: u64) -> String {
    let mut sums = [0u64; 10];
    let mut lines: Vec<String> = (0..n)
        .map(|i| {
            sums[(i % 10) as usize] += i;
            format!("{}\t{}", i % 10, sums[(i % 10) as usize])
        })
        .collect();
    lines.sort();
    lines.join("\n") + "\n"
}

/// A fresh temporary directory kept for the test's duration.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("weir-test-")
        .tempdir()
        .expect("temp dir")
}

/// Path of a file in `dir`.
pub fn file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
