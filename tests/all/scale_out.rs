//! A session with task managers on other processes: jobs spread over
//! them, their output as in one process, and a lost task manager's job
//! waiting for slots, then resuming exactly once.

use crate::exactly_once::{
    Sink, assert_switched_exactly, compare, expected, file_sink_args, wait_checkpoints,
};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use weir_tests::cluster::{Api, SessionProcess, WorkerProcess};
use weir_tests::{
    EXACTLY_ONCE_WASM, WORDCOUNT_WASM, count_words, file, format_counts, temp_dir, write_corpus,
};

const LIMIT: Duration = Duration::from_secs(120);

/// A coordinator that notices a lost task manager in 2 s and restarts its
/// jobs.
const RECOVERING: &[&str] = &[
    "-Dheartbeat.interval=200ms",
    "-Dheartbeat.timeout=2s",
    "-Drestart-strategy.type=fixed-delay",
    "-Drestart-strategy.fixed-delay.attempts=1000",
    "-Drestart-strategy.fixed-delay.delay=200ms",
];
const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

fn coordinator(dir: &Path, extra: &[&str]) -> SessionProcess {
    let mut args = vec!["--cluster-port", "0"];
    args.extend_from_slice(extra);
    SessionProcess::start(Path::new(WEIR), dir, 0, &args)
}

/// Two task managers of `slots` slots each, joined to `join`, once the
/// session at `api` lists both; `global` are their options before the
/// command.
fn two_workers(join: &str, api: &Api, slots: u32, global: &[&str]) -> Vec<WorkerProcess> {
    let workers = (0..2)
        .map(|_| WorkerProcess::start(Path::new(WEIR), join, slots, global))
        .collect();
    wait_for_taskmanagers(api, 2);
    workers
}

fn taskmanagers(api: &Api) -> Vec<Value> {
    api.get("/taskmanagers").1["taskmanagers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn wait_for_taskmanagers(api: &Api, n: usize) {
    let start = Instant::now();
    while taskmanagers(api).len() != n {
        assert!(
            start.elapsed() < LIMIT,
            "not {n} task managers: {:?}",
            taskmanagers(api)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Uploads the exactly-once job and runs it at parallelism 2 with `args`
/// and checkpoints every `interval`; returns once it runs.
fn run_counts(api: &Api, args: Vec<String>, interval: &str) -> String {
    run_counts_with(
        api,
        args,
        json!({"execution.checkpointing.interval": interval}),
    )
}

/// As `run_counts`, with the job's configuration `config`.
fn run_counts_with(api: &Api, args: Vec<String>, config: Value) -> String {
    let jar = api.upload_file(EXACTLY_ONCE_WASM);
    let job = api.run(
        &jar,
        json!({
            "programArgsList": args,
            "parallelism": 2,
            "flinkConfiguration": config,
        }),
    );
    api.wait_for_state(&job, "RUNNING", LIMIT);
    job
}

/// A coordinator without slots and two task managers with two each: word
/// count at parallelism 4 spreads over both and writes what one process
/// writes, byte for byte. The cluster port refuses requests without the
/// cluster's secret, and a task manager with the wrong one never joins.
#[test]
fn word_count_over_two_task_managers_matches_one_process() {
    let dir = temp_dir();
    let secret = "-Dweir.cluster.secret=a-shared-secret";
    let mut s = coordinator(&dir.path().join("data"), &[secret]);
    let join = s.cluster_url();
    let api = s.api();
    assert_eq!(
        taskmanagers(&api).len(),
        0,
        "no slots of its own: {:?}",
        taskmanagers(&api)
    );

    // Without the secret, or with another one, nothing gets in.
    let (status, _) = Api::new(&join).post(
        "/v1/cluster/workers",
        json!({"id": "x", "address": "http://127.0.0.1:1", "slots": 64, "cores": 1, "memory": 0}),
    );
    assert_eq!(status, 401);
    let mut intruder = WorkerProcess::spawn(
        Path::new(WEIR),
        &join,
        8,
        &["-Dweir.cluster.secret=another-secret"],
    );
    intruder
        .process
        .wait_for_log("cannot join the coordinator", LIMIT);

    let workers = two_workers(&join, &api, 2, &[secret]);
    let tms = taskmanagers(&api);
    assert!(tms.iter().all(|t| t["slotsNumber"] == 2), "{tms:?}");
    assert_eq!(api.get("/overview").1["slots-total"], 4);

    let input = file(&dir, "input.txt");
    write_corpus(&input, 20_000, 10, 1_000, 11).unwrap();
    let expected = format_counts(&count_words(&std::fs::read_to_string(&input).unwrap()));
    let output = file(&dir, "out.txt");
    let mut c = crate::weir();
    c.args(["--cluster", &s.url, "run", "-p", "4", WORDCOUNT_WASM, "--"])
        .args(["--input", input.to_str().unwrap()])
        .args(["--output", output.to_str().unwrap()]);
    let o = crate::run_with_timeout(&mut c, LIMIT);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    // The task managers' counters reach the job's vertices.
    let said = String::from_utf8_lossy(&o.stdout).into_owned() + &crate::stderr(&o);
    let job = said
        .split("JobID ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("a job id")
        .to_owned();
    let (_, v) = api.get(&format!("/jobs/{job}"));
    let lines = std::fs::read_to_string(&input).unwrap().lines().count() as u64;
    let vertices = v["vertices"].as_array().unwrap();
    // The last reports may come just after the job ended.
    let start = Instant::now();
    loop {
        let (_, v) = api.get(&format!("/jobs/{job}"));
        if v["vertices"][0]["metrics"]["write-records"].as_u64() == Some(lines) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        vertices
            .iter()
            .skip(1)
            .all(|x| x["metrics"]["read-records"].as_u64() > Some(0)),
        "{v}"
    );
    let local = file(&dir, "local.txt");
    let l = crate::run_local(
        Path::new(WORDCOUNT_WASM),
        &["-p", "1"],
        &[
            "--input",
            input.to_str().unwrap(),
            "--output",
            local.to_str().unwrap(),
        ],
    );
    assert!(l.status.success(), "{}", crate::stderr(&l));
    let got = std::fs::read(&output).unwrap();
    assert_eq!(got, std::fs::read(&local).unwrap(), "not the local output");
    assert_eq!(String::from_utf8(got).unwrap(), expected);
    // Both task managers ran some of it.
    for mut w in workers {
        w.process
            .wait_for_log("tasks of job", Duration::from_secs(5));
    }
    assert_eq!(api.get("/overview").1["slots-available"], 4);
    assert!(
        taskmanagers(&api).iter().all(|t| t["freeSlots"] == 2),
        "{:?}",
        taskmanagers(&api)
    );
    drop(intruder);
    drop(s);
}

/// An exactly-once job over two task managers of one slot each. One is
/// SIGKILLed: the job waits for a slot (RESTARTING) until a new task
/// manager joins, then resumes from its latest checkpoint. Another stops
/// answering (SIGSTOP) past the heartbeat timeout: the same again; woken
/// up, it finds itself forgotten, cancels its tasks and joins again. Every
/// record is in the output exactly once.
#[test]
fn a_lost_task_manager_s_job_waits_for_slots_and_resumes_exactly_once() {
    let dir = temp_dir();
    let out = dir.path().join("out");
    let s = coordinator(&dir.path().join("data"), RECOVERING);
    let mut s = s;
    let join = s.cluster_url();
    let api = s.api();
    let start_worker = || WorkerProcess::start(Path::new(WEIR), &join, 1, &[]);
    let w1 = start_worker();
    let w2 = start_worker();
    wait_for_taskmanagers(&api, 2);
    let (records, keys) = (40_000u64, 30u64);
    let job = run_counts(&api, file_sink_args(&out, records, 2000, keys), "150ms");
    wait_checkpoints(&api, &job, 3);

    // A task manager is killed: too few slots, so the job waits.
    let killed_dir = std::env::temp_dir().join(format!("weir-tm-{}", w2.pid()));
    assert!(
        killed_dir.join("modules").is_dir(),
        "the task manager works in {}",
        killed_dir.display()
    );
    w2.process.signal("KILL");
    let waiting = |api: &Api| {
        let start = Instant::now();
        while api.state(&job) == "RUNNING" {
            assert!(start.elapsed() < LIMIT, "the job never noticed");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_secs(1));
        let state = api.state(&job);
        assert!(
            state == "RESTARTING" || state == "CREATED",
            "waits for slots, not {state}"
        );
    };
    waiting(&api);
    drop(w2);
    let w3 = start_worker();
    assert!(
        !killed_dir.exists(),
        "the next task manager removes the killed one's working files"
    );
    api.wait_for_state(&job, "RUNNING", LIMIT);
    wait_checkpoints(&api, &job, 3);

    // One stops answering: lost after the heartbeat timeout.
    w1.process.signal("STOP");
    waiting(&api);
    let w4 = start_worker();
    api.wait_for_state(&job, "RUNNING", LIMIT);
    w1.process.signal("CONT");
    let mut w1 = w1;
    w1.process
        .wait_for_log("the coordinator forgot this task manager", LIMIT);
    assert!(
        w1.process.wait_for_logs("joined the coordinator", 2, LIMIT),
        "{}",
        w1.process.stderr()
    );

    api.wait_for_state(&job, "FINISHED", Duration::from_secs(180));
    let restores = s
        .process
        .wait_for_logs("restoring from", 2, Duration::from_secs(5));
    assert!(restores, "the job restored twice: {}", s.process.stderr());
    let got = Sink::File(out.clone()).committed();
    let (lost, dup, sample) = compare(&expected(records, keys), &got);
    assert_eq!((lost, dup), (0, 0), "lost or duplicated {sample:?}");
    // Stopped with SIGTERM, a task manager removes its own.
    let stopped = std::env::temp_dir().join(format!("weir-tm-{}", w3.pid()));
    assert!(stopped.is_dir());
    w3.process.signal("TERM");
    let mut w3 = w3;
    assert!(w3.process.wait(LIMIT), "{}", w3.process.stderr());
    assert!(!stopped.exists(), "{} was left", stopped.display());
    drop((w4, w1));
}

/// Rescaling across task managers: an exactly-once job goes 2 -> 4 -> 3 on
/// two task managers of two slots each; its keyed counts carry over and
/// every record is in the output once.
#[test]
fn rescaling_across_task_managers_keeps_the_output_exact() {
    let dir = temp_dir();
    let out = dir.path().join("out");
    let mut s = coordinator(&dir.path().join("data"), &[]);
    let join = s.cluster_url();
    let api = s.api();
    let _workers = two_workers(&join, &api, 2, &[]);
    let (records, keys) = (40_000u64, 30u64);
    let job = run_counts(&api, file_sink_args(&out, records, 2000, keys), "150ms");
    wait_checkpoints(&api, &job, 2);
    let (status, v) = api.patch(&format!("/jobs/{job}/rescaling?parallelism=5"));
    assert_eq!(status, 409, "more than the cluster's slots: {v}");

    let (status, t) = api.patch(&format!("/jobs/{job}/rescaling?parallelism=4"));
    assert_eq!(status, 202, "{t}");
    let trigger = t["request-id"].as_str().unwrap().to_owned();
    let op = api.wait_for_upgrade(&job, &trigger, |op| op.get("result").is_some(), LIMIT);
    assert_eq!(op["result"], "UPGRADED", "{op}");
    api.wait_for_state(&job, "RUNNING", LIMIT);
    let tms = taskmanagers(&api);
    assert!(
        tms.iter().all(|t| t["freeSlots"] == 0),
        "4 slots over both: {tms:?}"
    );
    wait_checkpoints(&api, &job, 2);

    let mut c = crate::weir();
    c.args(["--cluster", &s.url, "rescale", &job, "-p", "3"]);
    let o = crate::run_with_timeout(&mut c, LIMIT);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    api.wait_for_state(&job, "RUNNING", LIMIT);
    assert_eq!(api.get("/overview").1["slots-available"], 1);

    api.wait_for_state(&job, "FINISHED", Duration::from_secs(180));
    let (how, v) = api.versions(&job);
    assert_eq!(how, ["submitted", "rescaled", "rescaled"], "{v}");
    let got = Sink::File(out.clone()).committed();
    let (lost, dup, sample) = compare(&expected(records, keys), &got);
    assert_eq!((lost, dup), (0, 0), "lost or duplicated {sample:?}");
}

/// Two sessions over one HA store with leader election, and two task
/// managers that know both. The leader stops answering (SIGSTOP): the
/// standby takes over by itself, the task managers join it, and the job
/// resumes from its latest checkpoint. The old leader, woken up, finds
/// itself deposed and exits without completing a checkpoint. Every
/// record is in the output exactly once.
#[test]
fn a_standby_session_takes_over_and_the_deposed_leader_cannot_commit() {
    let dir = temp_dir();
    let out = dir.path().join("out");
    let shared = dir.path().join("shared");
    let url = |sub: &str| format!("file://{}", shared.join(sub).display());
    let (pa, pb) = (
        weir_tests::servers::free_port(),
        weir_tests::servers::free_port(),
    );
    let flags = |cluster_port: u16| -> Vec<String> {
        vec![
            format!("-Dhigh-availability.storageDir={}", url("ha")),
            format!("-Dstate.checkpoints.dir={}", url("checkpoints")),
            format!("-Dstate.savepoints.dir={}", url("savepoints")),
            "-Dhigh-availability.type=lease".into(),
            "-Dhigh-availability.lease.duration=2s".into(),
            "-Dheartbeat.interval=200ms".into(),
            "-Dheartbeat.timeout=2s".into(),
            "-Drestart-strategy.type=fixed-delay".into(),
            "-Drestart-strategy.fixed-delay.attempts=1000".into(),
            "-Drestart-strategy.fixed-delay.delay=200ms".into(),
            "--cluster-port".into(),
            cluster_port.to_string(),
        ]
    };
    let a_flags = flags(pa);
    let a_args: Vec<&str> = a_flags.iter().map(String::as_str).collect();
    let mut a = SessionProcess::start(Path::new(WEIR), &dir.path().join("a"), 0, &a_args);
    a.process.wait_for_log("Leading the sessions", LIMIT);
    let mut b = {
        let mut cmd = std::process::Command::new(WEIR);
        cmd.env("WEIR_LOG", "warn,weir=info")
            .args(["session", "--data-dir"])
            .arg(dir.path().join("b"))
            .args(["--port", "0", "--slots", "0"])
            .args(flags(pb));
        weir_tests::process::Running::start(&mut cmd)
    };
    b.wait_for_log("Standby: the session at", LIMIT);
    let joins = format!("http://127.0.0.1:{pa},http://127.0.0.1:{pb}");
    let api = a.api();
    let workers = two_workers(&joins, &api, 1, &[]);
    let (records, keys) = (30_000u64, 30u64);
    let job = run_counts(&api, file_sink_args(&out, records, 2000, keys), "150ms");
    wait_checkpoints(&api, &job, 3);

    a.process.signal("STOP");
    let stopped = Instant::now();
    let line = b.wait_for_log("REST endpoint: ", LIMIT);
    let b_url = line
        .split("REST endpoint: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    let b_api = Api::new(&b_url);
    b_api.wait_for_state(&job, "RUNNING", LIMIT);
    eprintln!(
        "the standby ran the job {:?} after the leader stopped",
        stopped.elapsed()
    );
    // The CLI finds the leader among both.
    let mut list = crate::weir();
    list.args(["--cluster", &format!("{},{}", a.url, b_url), "list"]);
    let o = crate::run_with_timeout(&mut list, LIMIT);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&job),
        "{}",
        crate::stderr(&o)
    );

    // The old leader wakes up: deposed, it exits and commits nothing.
    a.process.signal("CONT");
    assert!(
        !a.process.wait(LIMIT),
        "a deposed leader exits with an error"
    );
    assert!(
        a.process.stderr().contains("lost its leadership"),
        "{}",
        a.process.stderr()
    );
    b_api.wait_for_state(&job, "FINISHED", Duration::from_secs(180));
    let restored = b.wait_for_log("restoring from", Duration::from_secs(5));
    assert!(
        restored.contains(&format!("{}/{job}/chk-", url("checkpoints"))),
        "the standby restores the job's latest checkpoint: {restored}"
    );
    let got = Sink::File(out.clone()).committed();
    let (lost, dup, sample) = compare(&expected(records, keys), &got);
    assert_eq!((lost, dup), (0, 0), "lost or duplicated {sample:?}");
    drop(workers);
    let _ = b.child.kill();
    let _ = b.child.wait();
}

/// Backpressure across task managers: counts that take 200 µs each, fed
/// over the network by a source that could go far faster, with 10 000
/// bytes of padding per record (300 MB over the exchange in all). The source is
/// held back (it reports time backpressured), the task managers' memory
/// stays far below what the exchange carries, and every record is in the
/// output once.
#[test]
fn backpressure_across_task_managers_holds_the_source_back_and_loses_nothing() {
    let dir = temp_dir();
    let out = dir.path().join("out");
    let mut s = coordinator(&dir.path().join("data"), &[]);
    let join = s.cluster_url();
    let api = s.api();
    let workers = two_workers(&join, &api, 1, &[]);
    let (records, keys) = (30_000u64, 30u64);
    let mut args = file_sink_args(&out, records, 10_000_000, keys);
    args.extend(["--slow-us", "200", "--pad", "10000"].map(String::from));
    let job = run_counts(&api, args, "200ms");
    let start = Instant::now();
    let mut peak_kib = 0;
    while api.state(&job) != "FINISHED" {
        assert!(start.elapsed() < Duration::from_secs(180), "never finished");
        for w in &workers {
            peak_kib = peak_kib.max(weir_tests::process::rss_kib(w.pid()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "task managers' peak resident memory: {} MiB",
        peak_kib / 1024
    );
    // 30 000 records at 200 µs over two subtasks take 3 s or more.
    assert!(
        start.elapsed() > Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let (_, v) = api.get(&format!("/jobs/{job}"));
    let source = &v["vertices"][0];
    assert!(
        source["metrics"]["accumulated-backpressured-time"].as_u64() > Some(500),
        "the source waited for the counts: {source}"
    );
    // Bounded, the task managers stay near 85 MiB here; with unbounded
    // channels (credits of 100 000) they grew past 210 MiB.
    assert!(
        peak_kib < 150 * 1024,
        "a task manager grew to {} MiB",
        peak_kib / 1024
    );
    let got = Sink::File(out.clone()).committed();
    let (lost, dup, sample) = compare(&expected(records, keys), &got);
    assert_eq!((lost, dup), (0, 0), "lost or duplicated {sample:?}");
}

/// Unaligned checkpoints across task managers, switching over from aligned
/// after 20 ms: a slow count holds the source back over the network, the
/// checkpoints hold the records in flight between the task managers, and
/// when one task manager is killed the job restores from such a checkpoint
/// on a new one and writes every record once.
#[test]
fn unaligned_checkpoints_across_task_managers_restore_exactly_after_a_loss() {
    use weir_tests::cluster::{in_flight, latest_checkpoint};
    let dir = temp_dir();
    let out = dir.path().join("out");
    let mut s = coordinator(&dir.path().join("data"), RECOVERING);
    let join = s.cluster_url();
    let api = s.api();
    let start_worker = || WorkerProcess::start(Path::new(WEIR), &join, 1, &[]);
    let w1 = start_worker();
    let w2 = start_worker();
    wait_for_taskmanagers(&api, 2);
    let (records, keys) = (300_000u64, 30u64);
    let mut args = file_sink_args(&out, records, 10_000_000, keys);
    args.extend(["--slow-us".to_owned(), "40".to_owned()]);
    let job = run_counts_with(
        &api,
        args,
        json!({
            "execution.checkpointing.interval": "100ms",
            "execution.checkpointing.unaligned": "true",
            "execution.checkpointing.aligned-checkpoint-timeout": "20ms",
        }),
    );
    let start = Instant::now();
    while latest_checkpoint(&api, &job).is_none_or(|c| in_flight(&c).0 == 0) {
        assert!(
            start.elapsed() < LIMIT && api.state(&job) == "RUNNING",
            "no checkpoint with records in flight: {}",
            api.get(&format!("/jobs/{job}/checkpoints")).1
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    w2.process.signal("KILL");
    let t = Instant::now();
    while api.state(&job) == "RUNNING" {
        assert!(t.elapsed() < LIMIT, "the job never noticed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let restored_from = latest_checkpoint(&api, &job).expect("a checkpoint");
    let (input, output) = in_flight(&restored_from);
    assert!(
        input > 0,
        "{} holds no records in flight",
        restored_from.display()
    );
    drop(w2);
    let w3 = start_worker();
    api.wait_for_state(&job, "FINISHED", Duration::from_secs(180));
    assert!(
        s.process
            .wait_for_logs("restoring from", 1, Duration::from_secs(5)),
        "{}",
        s.process.stderr()
    );
    let got = Sink::File(out.clone()).committed();
    let (lost, dup, sample) = compare(&expected(records, keys), &got);
    assert_eq!(
        (lost, dup),
        (0, 0),
        "lost or duplicated after restoring {} ({input} + {output} bytes in flight): {sample:?}",
        restored_from.display()
    );
    drop((w1, w3));
}

/// A module swap in place on task managers: each loads the new module
/// before the swap's barrier reaches its tasks, the job changes modules
/// without a restart, and its output stays exact.
#[test]
fn a_module_swap_in_place_reaches_the_task_managers() {
    let dir = temp_dir();
    let out = dir.path().join("out");
    let mut s = coordinator(&dir.path().join("data"), &[]);
    let join = s.cluster_url();
    let api = s.api();
    let mut workers = two_workers(&join, &api, 1, &[]);
    // 15 s of input, so that every key has counts after the swap too.
    let (records, keys) = (60_000u64, 20u64);
    let args = file_sink_args(&out, records, 4000, keys);
    let job = run_counts(&api, args.clone(), "150ms");
    wait_checkpoints(&api, &job, 3);
    let jar = api.upload_file(EXACTLY_ONCE_WASM);
    // The new version tags its output, so the switch shows in it.
    let mut new_args = args.clone();
    new_args.extend(["--tag".to_owned(), "v2:".to_owned()]);
    let (_, op) = api.upgrade(
        &job,
        json!({"jarId": jar, "programArgsList": new_args}),
        LIMIT,
    );
    assert_eq!(op["result"], "UPGRADED", "{op}");
    for w in &mut workers {
        w.process
            .wait_for_log("the job's tasks here change to module", LIMIT);
    }
    api.wait_for_state(&job, "FINISHED", LIMIT);
    let (how, _) = api.versions(&job);
    assert_eq!(how, ["submitted", "swapped"], "in place, no restart");
    let last_old = assert_switched_exactly(&Sink::File(out.clone()).committed(), records, keys);
    assert!(
        last_old.iter().sum::<u64>() > 0,
        "the old version wrote before the swap"
    );
}
