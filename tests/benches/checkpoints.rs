//! What checkpoints cost, measured in one run:
//!
//! 1. keyed state of 1 million keys: checkpoint duration and bytes
//!    uploaded, full (`execution.checkpointing.incremental: false`) vs
//!    incremental;
//! 2. recovery: from SIGKILL of a `weir run --local` process to a new one
//!    running again from the last checkpoint of that state;
//! 3. throughput of a streaming word count (10 million words, exactly-once
//!    file sink) without checkpoints, with a 1 s interval, and with a 1 s
//!    interval plus guest memory snapshots;
//! 4. a guest holding 64 MiB: time to snapshot its memory and to restore
//!    an instance from the image, and its memory after many snapshots.
//!
//! Run with `cargo bench -p weir-tests --bench checkpoints`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_core::{Config, GuestFactory, JobGraph};
use weir_tests::process::{Running, S3Server};
use weir_tests::{STATE_BENCH_WASM, WORDCOUNT_WASM, write_corpus};
use weir_wasm::{EngineOptions, InstanceLimits, JobModule, WasmEngine, WasmJob};

const LIMIT: Duration = Duration::from_secs(600);
const KEYS: u64 = 1_000_000;

fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir-under-test"));
    c.env("WEIR_LOG", "warn,weir=info");
    c
}

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    v[v.len() / 2]
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// One completed checkpoint, from the job's log.
#[derive(Debug, Clone, Copy)]
struct Completed {
    id: u64,
    ms: u64,
    size: u64,
    uploaded: u64,
}

/// Parses "completed .../chk-N in D ms (S bytes of state, U bytes uploaded)".
fn completed(line: &str) -> Option<Completed> {
    let rest = &line[line.find("/chk-")? + 5..];
    let (id, rest) = rest.split_once(" in ")?;
    let (ms, rest) = rest.split_once(" ms (")?;
    let (size, rest) = rest.split_once(" bytes of state, ")?;
    let (uploaded, _) = rest.split_once(" bytes uploaded")?;
    Some(Completed {
        id: id.parse().ok()?,
        ms: ms.parse().ok()?,
        size: size.parse().ok()?,
        uploaded: uploaded.parse().ok()?,
    })
}

/// Where checkpoints go: a local directory, or S3 with its flags.
struct Storage {
    dir: String,
    flags: Vec<String>,
}

fn keyed_job(storage: &Storage, incremental: bool, updates: u64, restore: Option<&str>) -> Command {
    let mut c = weir();
    c.args(["run", "--local", "-p", "2"]).args(&storage.flags);
    if let Some(r) = restore {
        c.arg("-s").arg(r);
    }
    c.args(["-D", "execution.checkpointing.interval=1s"])
        .arg("-D")
        .arg(format!("execution.checkpointing.incremental={incremental}"))
        .arg("-D")
        .arg(format!("state.checkpoints.dir={}", storage.dir))
        .arg(STATE_BENCH_WASM)
        .args(["--", "--keys", &KEYS.to_string(), "--updates"])
        .arg(updates.to_string())
        .args(["--rate", "20000"]);
    c
}

/// Checkpoints of a run of the 1M-keys job from the first that holds all
/// keys on.
fn keyed_checkpoints(storage: &Storage, incremental: bool) -> Vec<Completed> {
    let mut job = Running::start(&mut keyed_job(storage, incremental, 160_000, None));
    assert!(
        job.wait(LIMIT),
        "the keyed-state job failed: {}",
        job.stderr()
    );
    let all: Vec<Completed> = job.seen_err.iter().filter_map(|l| completed(l)).collect();
    let full = all.iter().map(|c| c.size).max().unwrap_or(0);
    // The state grows while the keys load; compactions shrink it later.
    let loaded = all
        .iter()
        .position(|c| c.size * 10 >= full * 9)
        .unwrap_or(0);
    all[loaded..].to_vec()
}

fn bench_keyed_state(name: &str, storage: &Storage) {
    println!("1. keyed state on {name}: {KEYS} keys (sum per key, -p 2), then 20 000 updates/s");
    println!(
        "  {:<12} {:>5} {:>12} {:>15} {:>16}",
        "mode", "chk", "duration", "state (MiB)", "uploaded (MiB)"
    );
    let mut summary = Vec::new();
    for incremental in [false, true] {
        let mode = if incremental { "incremental" } else { "full" };
        let cps = keyed_checkpoints(storage, incremental);
        assert!(
            cps.len() >= 2,
            "{mode}: too few checkpoints after the load: {cps:?}"
        );
        for c in &cps {
            println!(
                "  {mode:<12} {:>5} {:>9} ms {:>15.1} {:>16.1}",
                c.id,
                c.ms,
                mib(c.size),
                mib(c.uploaded)
            );
        }
        // The first checkpoint with all keys uploads them in both modes;
        // the steady state is what follows.
        let steady = &cps[1..];
        summary.push((
            mode,
            median(steady.iter().map(|c| c.ms).collect()),
            median(steady.iter().map(|c| c.uploaded).collect()),
        ));
    }
    for (mode, ms, up) in &summary {
        println!(
            "  {mode:<12} steady state: median {ms} ms, {:.1} MiB uploaded per checkpoint",
            mib(*up)
        );
    }
    let (_, full_ms, full_up) = summary[0];
    let (_, inc_ms, inc_up) = summary[1];
    println!(
        "  incremental / full: {:.2} of the duration, {:.3} of the bytes uploaded",
        inc_ms as f64 / full_ms.max(1) as f64,
        inc_up as f64 / full_up.max(1) as f64
    );
}

fn bench_recovery(dir: &Path) {
    let storage = Storage {
        dir: dir.join("recovery").display().to_string(),
        flags: vec![],
    };
    println!(
        "2. recovery: SIGKILL -> a new process running from the last checkpoint ({KEYS} keys)"
    );
    let mut totals = Vec::new();
    for round in 0..3 {
        let mut job = Running::start(&mut keyed_job(&storage, true, 10_000_000, None));
        let id_line = job.wait_for_log("JobID", LIMIT);
        let job_dir = format!("{}/{}", storage.dir, id_line.rsplit(' ').next().unwrap());
        // Wait until a checkpoint holds all the keys.
        let start = Instant::now();
        loop {
            let sizes: Vec<u64> = job
                .seen_err
                .iter()
                .filter_map(|l| completed(l))
                .map(|c| c.size)
                .collect();
            if sizes.len() >= 3 && sizes[sizes.len() - 1] * 10 < sizes[sizes.len() - 2] * 11 {
                break;
            }
            assert!(start.elapsed() < LIMIT, "the state never settled");
            assert!(
                job.wait_for_logs("completed file://", sizes.len() + 1, LIMIT),
                "the job ended: {}",
                job.stderr()
            );
        }
        job.signal("KILL");
        let killed = Instant::now();
        job.wait(LIMIT);
        let mut again = Running::start(&mut keyed_job(&storage, true, 10_000_000, Some(&job_dir)));
        let line = again.wait_for_log("running: ", LIMIT);
        let total = killed.elapsed();
        assert!(
            again.seen_err.iter().any(|l| l.contains("restoring from")),
            "the new run did not restore: {}",
            again.stderr()
        );
        again.signal("KILL");
        again.wait(LIMIT);
        let inside: u64 = line
            .split("started in ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        println!(
            "  round {}: {:>6.0} ms from SIGKILL to running (restore and task start: {inside} ms)",
            round + 1,
            total.as_secs_f64() * 1e3
        );
        totals.push(total);
    }
    println!("  median: {:.0} ms", median(totals).as_secs_f64() * 1e3);
}

fn bench_throughput(dir: &Path) {
    const LINES: usize = 1_000_000;
    const RUNS: usize = 5;
    let input = dir.join("words.txt");
    write_corpus(&input, LINES, 10, 10_000, 42).unwrap();
    println!(
        "3. streaming word count, {} words, -p 2, exactly-once file sink, {RUNS} interleaved runs",
        LINES * 10
    );
    let run = |mode: &str, n: usize| {
        let mut c = weir();
        c.env("WEIR_LOG", "error").args([
            "run",
            "--local",
            "-p",
            "2",
            "-D",
            "execution.runtime-mode=STREAMING",
        ]);
        if mode != "none" {
            c.args(["-D", "execution.checkpointing.interval=1s"])
                .arg("-D")
                .arg(format!(
                    "state.checkpoints.dir={}",
                    dir.join("cp").display()
                ));
        }
        if mode == "memory" {
            c.args(["-D", "weir.state.memory-snapshots=true"]);
        }
        let out = dir.join(format!("out-{mode}-{n}.txt"));
        c.arg(WORDCOUNT_WASM)
            .arg("--")
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&out);
        let t = Instant::now();
        let o = c.output().expect("spawn weir");
        let d = t.elapsed();
        assert!(
            o.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let len = std::fs::metadata(&out).unwrap().len();
        std::fs::remove_file(&out).unwrap();
        (d, len)
    };
    run("none", 0); // warm the compile and page caches
    let modes = ["none", "interval", "memory"];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); modes.len()];
    let mut sizes = vec![0u64; modes.len()];
    for n in 0..RUNS {
        for (i, m) in modes.iter().enumerate() {
            let (d, len) = run(m, n);
            times[i].push(d);
            sizes[i] = len;
        }
    }
    assert!(
        sizes.iter().all(|s| *s == sizes[0]),
        "outputs differ: {sizes:?}"
    );
    let med: Vec<f64> = times.into_iter().map(|t| median(t).as_secs_f64()).collect();
    for (m, label) in modes.iter().zip([
        "no checkpoints",
        "checkpoint every 1 s",
        "every 1 s + memory snapshots",
    ]) {
        let i = modes.iter().position(|x| x == m).unwrap();
        println!(
            "  {label:<30} {:>7.3} s  {:>10.0} words/s",
            med[i],
            (LINES * 10) as f64 / med[i]
        );
    }
    println!(
        "  throughput with 1 s checkpoints / without: {:.3} (goal >= 0.90)",
        med[0] / med[1]
    );
    println!(
        "  throughput with memory snapshots too / without checkpoints: {:.3}; / checkpoints only: {:.3}",
        med[0] / med[2],
        med[1] / med[2]
    );
}

fn bench_memory_image() {
    const MIB: usize = 64;
    const ROUNDS: usize = 10;
    println!("4. a guest holding {MIB} MiB of incompressible data, in process");
    let engine = WasmEngine::new(EngineOptions { fuel: false }).unwrap();
    let bytes = std::fs::read(STATE_BENCH_WASM).unwrap();
    let module = Arc::new(JobModule::load(&engine, &bytes, None).unwrap());
    let args: Vec<String> = ["--mib", &MIB.to_string()].map(str::to_owned).to_vec();
    let limits = InstanceLimits::default();
    let plan = weir_wasm::plan_job(&module, Some("memory"), &args, limits).unwrap();
    let graph = JobGraph::from_plan(plan, &Config::default()).unwrap();
    let output = weir_wasm::JobOutput::new("bench", 100);
    let job = WasmJob::new(module, Some("memory".into()), args, graph, limits, output);
    let mut guest = job.instantiate("bench", None).unwrap();
    let before = guest.memory_bytes();

    let (mut copy, mut encode, mut decode, mut restore) = (vec![], vec![], vec![], vec![]);
    let mut encoded_len = 0;
    // As a task does: each copy reuses the buffers of the previous image,
    // once that is uploaded.
    let mut spare = None;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let image = guest
            .memory_image(spare.take())
            .unwrap()
            .expect("wasm guests have images");
        copy.push(t.elapsed());
        let t = Instant::now();
        let enc: Vec<Vec<u8>> = image
            .memories
            .iter()
            .map(|m| weir_checkpoint::image::encode(m))
            .collect();
        encode.push(t.elapsed());
        encoded_len = enc.iter().map(Vec::len).sum::<usize>();
        let t = Instant::now();
        let dec = weir_core::guest::MemoryImage {
            memories: enc
                .iter()
                .map(|e| weir_checkpoint::image::decode(e).unwrap())
                .collect(),
        };
        decode.push(t.elapsed());
        assert!(dec == image, "the image does not round-trip");
        let t = Instant::now();
        let restored = job.instantiate("bench-restored", Some(&dec)).unwrap();
        restore.push(t.elapsed());
        assert_eq!(
            restored.memory_bytes(),
            image.memories.iter().map(|m| m.len() as u64).sum::<u64>()
        );
        spare = Some(image);
    }
    let after = guest.memory_bytes();
    let ms = |v: Vec<Duration>| median(v).as_secs_f64() * 1e3;
    println!(
        "  linear memory: {:.1} MiB; encoded image {:.1} MiB",
        mib(before),
        mib(encoded_len as u64)
    );
    println!(
        "  first snapshot (copy into new buffers): {:>6.1} ms",
        copy[0].as_secs_f64() * 1e3
    );
    println!(
        "  snapshot (copy, on the task thread):   {:>7.1} ms",
        ms(copy)
    );
    println!(
        "  encode for upload (background):        {:>7.1} ms",
        ms(encode)
    );
    println!(
        "  decode downloaded image:               {:>7.1} ms",
        ms(decode)
    );
    println!(
        "  restore (new instance + write image):  {:>7.1} ms",
        ms(restore)
    );
    println!(
        "  memory after {ROUNDS} snapshots: {:.1} MiB (before: {:.1} MiB)",
        mib(after),
        mib(before)
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().to_owned();
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let want = |n: &str| only.as_deref().is_none_or(|o| o == n);
    if want("keyed") {
        let local = Storage {
            dir: root.join("keyed").display().to_string(),
            flags: vec![],
        };
        bench_keyed_state("file://", &local);
        if S3Server::available() {
            let s3 = S3Server::start();
            let remote = Storage {
                dir: "s3://checkpoints/keyed".into(),
                flags: s3.flags(),
            };
            bench_keyed_state("S3 (moto on loopback)", &remote);
        } else {
            println!("  (moto_server is not installed: skipping S3; scripts/test.sh installs it)");
        }
    }
    if want("recovery") {
        bench_recovery(&root);
    }
    if want("throughput") {
        bench_throughput(&root);
    }
    if want("memory") {
        bench_memory_image();
    }
}
