//! Exactly once under crashes, for every exactly-once sink: a streaming
//! count (every record makes one distinct line or row) at parallelism 2
//! and 3 is SIGKILLed at random points, each time restarted from the
//! latest checkpoint of the run before, and the committed output must
//! hold every expected record exactly once, also after the last run
//! rescales. Also: a savepoint between two
//! checkpoints commits nothing; two jobs with the same sink uid on one
//! database never touch each other's transactions.
//!
//! Kill points come from `WEIR_TEST_SEED` (random when unset; printed, so
//! that a failure can be replayed).

use crate::weir;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weir_tests::process::{Running, latest_checkpoints, newest_checkpoint};
use weir_tests::servers::{Kafka, MariaDb, Postgres};
use weir_tests::{EXACTLY_ONCE_WASM, temp_dir};

const LIMIT: Duration = Duration::from_secs(120);

/// Every line the job writes for `records` numbers over `keys` keys.
pub(crate) fn expected(records: u64, keys: u64) -> BTreeMap<String, usize> {
    let mut counts = vec![0u64; keys as usize];
    let mut out = BTreeMap::new();
    for i in 0..records {
        let k = i % keys;
        counts[k as usize] += 1;
        out.insert(format!("{k},{}", counts[k as usize]), 1);
    }
    out
}

/// The arguments of the exactly-once job writing files under `out`.
pub(crate) fn file_sink_args(out: &Path, records: u64, rate: u64, keys: u64) -> Vec<String> {
    vec![
        "--sink".to_owned(),
        "file".to_owned(),
        "--output".to_owned(),
        out.display().to_string(),
        "--records".to_owned(),
        records.to_string(),
        "--rate".to_owned(),
        rate.to_string(),
        "--keys".to_owned(),
        keys.to_string(),
    ]
}

/// Lines lost and duplicated in `got`, against `want`.
pub(crate) fn compare(
    want: &BTreeMap<String, usize>,
    got: &[String],
) -> (usize, usize, Vec<String>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for l in got {
        *seen.entry(l.as_str()).or_default() += 1;
    }
    let lost: Vec<String> = want
        .keys()
        .filter(|k| !seen.contains_key(k.as_str()))
        .cloned()
        .collect();
    let dup: usize = seen.values().map(|n| n - 1).sum();
    let unexpected: Vec<String> = seen
        .keys()
        .filter(|k| !want.contains_key(**k))
        .map(|k| k.to_string())
        .collect();
    assert!(
        unexpected.is_empty(),
        "lines no run could write: {unexpected:?}"
    );
    (lost.len(), dup, lost.into_iter().take(5).collect())
}

pub(crate) fn seed() -> u64 {
    let seed = std::env::var("WEIR_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("WEIR_TEST_SEED={seed}");
    seed
}

/// Where the job writes, and how to read what it committed.
pub(crate) enum Sink<'a> {
    File(PathBuf),
    Sql {
        url: String,
        query: &'a dyn Fn(&str) -> String,
    },
    Kafka {
        kafka: &'a Kafka,
        topic: String,
    },
}

impl Sink<'_> {
    fn args(&self) -> Vec<String> {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match self {
            Sink::File(p) => v(&["--sink", "file", "--output", &p.display().to_string()]),
            Sink::Sql { url, .. } => v(&["--sink", "jdbc", "--url", url, "--table", "counts"]),
            Sink::Kafka { kafka, topic } => v(&[
                "--sink",
                "kafka",
                "--topic",
                topic,
                "--bootstrap-servers",
                kafka.servers(),
            ]),
        }
    }

    /// The committed output, one entry per line or row.
    pub(crate) fn committed(&self) -> Vec<String> {
        match self {
            Sink::File(dir) => {
                let mut lines = Vec::new();
                for e in std::fs::read_dir(dir).unwrap().flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') {
                        continue; // in progress or pending: not committed
                    }
                    let text = std::fs::read_to_string(e.path()).unwrap();
                    lines.extend(text.lines().map(str::to_owned));
                }
                lines
            }
            Sink::Sql { query, .. } => query("SELECT k, n FROM counts")
                .lines()
                .map(|l| l.replace(['|', '\t'], ","))
                .collect(),
            Sink::Kafka { kafka, topic } => kafka
                .read(topic)
                .into_iter()
                .map(|(v, _)| String::from_utf8_lossy(&v).into_owned())
                .collect(),
        }
    }
}

/// What a crash loop did.
#[derive(Debug, Default)]
pub(crate) struct LoopResult {
    pub kills: usize,
    pub restores: usize,
    pub lost: usize,
    pub duplicated: usize,
}

struct CrashLoop<'a> {
    sink: Sink<'a>,
    checkpoints: PathBuf,
    parallelism: u32,
    records: u64,
    rate: u64,
    keys: u64,
}

impl CrashLoop<'_> {
    fn command(&self, restore: Option<&Path>, parallelism: u32) -> std::process::Command {
        let mut c = weir();
        c.env("WEIR_LOG", "warn,weir=info");
        c.args(["run", "--local", "-p", &parallelism.to_string()])
            .args(["-D", "execution.checkpointing.interval=150ms"])
            .args(["-D", "restart-strategy.type=none"])
            .arg("-D")
            .arg(format!(
                "state.checkpoints.dir={}",
                self.checkpoints.display()
            ));
        if let Some(r) = restore {
            c.arg("-s").arg(r);
        }
        c.arg(EXACTLY_ONCE_WASM)
            .arg("--")
            .args(self.sink.args())
            .args(["--records", &self.records.to_string()])
            .args(["--rate", &self.rate.to_string()])
            .args(["--keys", &self.keys.to_string()]);
        c
    }

    /// The newest checkpoint (`chk-<n>`) of the newest run that completed
    /// one.
    fn latest(&self) -> Option<PathBuf> {
        newest_checkpoint(&latest_checkpoints(&self.checkpoints)?)
    }

    /// Kills the job `kills` times at random points, each run restoring the
    /// latest checkpoint of the one before, then lets it finish at one more
    /// subtask (a rescale).
    fn run(&self, kills: usize, rng: &mut rand::rngs::StdRng) -> LoopResult {
        let mut r = LoopResult::default();
        let mut finished = false;
        for _ in 0..kills {
            let from = self.latest();
            let mut job = Running::start(&mut self.command(from.as_deref(), self.parallelism));
            if from.is_none() {
                // A job killed before its first checkpoint completes starts
                // afresh, leaving what it prepared to the database's
                // administrator: the loop starts from a checkpoint.
                job.wait_for_logs("completed file://", 1, LIMIT);
            }
            // A random point: before the first checkpoint, between two,
            // in the middle of one, or while the sinks commit.
            let delay = Duration::from_millis(rng.random_range(150..1000));
            let start = Instant::now();
            let mut exited = None;
            while start.elapsed() < delay {
                if let Ok(Some(s)) = job.child.try_wait() {
                    exited = Some(s);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if exited.is_none() {
                job.signal("KILL");
                r.kills += 1;
            }
            let ok = job.wait(LIMIT);
            if restored(&job) {
                r.restores += 1;
            }
            if exited.is_some() {
                assert!(ok, "a run failed: {}", job.stderr());
                finished = true;
                break;
            }
        }
        if !finished {
            // The last run rescales.
            let p = self.parallelism + 1;
            let mut job = Running::start(&mut self.command(self.latest().as_deref(), p));
            assert!(job.wait(LIMIT), "the last run failed: {}", job.stderr());
            if restored(&job) {
                r.restores += 1;
            }
        }
        let want = expected(self.records, self.keys);
        let (lost, duplicated, _) = compare(&want, &self.sink.committed());
        r.lost = lost;
        r.duplicated = duplicated;
        r
    }
}

fn restored(job: &Running) -> bool {
    job.seen_err.iter().any(|l| l.contains("restoring from"))
}

/// Runs a crash loop at parallelism 2 and 3 into fresh sinks `make(p)`
/// gives, and asserts exactly once.
fn crash_loop<'a>(what: &str, exact: bool, make: impl Fn(u32, &Path) -> Sink<'a>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    for p in [2, 3] {
        let dir = temp_dir();
        let l = CrashLoop {
            sink: make(p, dir.path()),
            checkpoints: dir.path().join("checkpoints"),
            parallelism: p,
            records: 45_000,
            rate: 5_000,
            keys: 37,
        };
        let r = l.run(10, &mut rng);
        eprintln!("crash loop, {what} sink, p{p}: {r:?}");
        assert!(
            r.kills >= 8,
            "{what} p{p}: too few kills to mean anything: {r:?}"
        );
        assert!(r.restores >= 8, "{what} p{p}: too few restores: {r:?}");
        assert_eq!(
            r.lost, 0,
            "{what} p{p}: committed output lost records: {r:?}"
        );
        if exact {
            assert_eq!(r.duplicated, 0, "{what} p{p}: duplicated records: {r:?}");
        }
    }
}

#[test]
fn file_sink_parts_hold_every_record_once_across_crashes() {
    crash_loop("file", true, |_, dir| Sink::File(dir.join("out")));
}

#[test]
fn postgres_sink_holds_every_record_once_across_crashes() {
    let pg = Postgres::start();
    let query = |s: &str| pg.sql(s);
    crash_loop("PostgreSQL", true, |_, _| {
        pg.sql("DROP TABLE IF EXISTS counts; CREATE TABLE counts (k bigint NOT NULL, n bigint NOT NULL)");
        Sink::Sql {
            url: pg.url(),
            query: &query,
        }
    });
    assert_eq!(pg.sql("SELECT count(*) FROM pg_prepared_xacts").trim(), "0");
}

#[test]
fn mariadb_sink_holds_every_record_once_across_crashes() {
    let db = MariaDb::start();
    let query = |s: &str| db.sql(s);
    crash_loop("MariaDB", true, |_, _| {
        db.sql("DROP TABLE IF EXISTS counts; CREATE TABLE counts (k BIGINT NOT NULL, n BIGINT NOT NULL) ENGINE=InnoDB");
        Sink::Sql {
            url: db.url(),
            query: &query,
        }
    });
    assert_eq!(db.sql("XA RECOVER").trim(), "");
}

/// Restoring a snapshot that an earlier run already went on from (and
/// committed past) would write that run's rows again: the sink refuses,
/// says what to restore instead, and the newer checkpoint still gives
/// exact output.
#[test]
fn restoring_a_snapshot_twice_past_a_commit_is_refused() {
    let pg = Postgres::start();
    pg.sql(
        "DROP TABLE IF EXISTS counts; CREATE TABLE counts (k bigint NOT NULL, n bigint NOT NULL)",
    );
    let query = |s: &str| pg.sql(s);
    let dir = temp_dir();
    let l = CrashLoop {
        sink: Sink::Sql {
            url: pg.url(),
            query: &query,
        },
        checkpoints: dir.path().join("checkpoints"),
        parallelism: 2,
        records: 20_000,
        rate: 5_000,
        keys: 13,
    };
    let mut first = Running::start(&mut l.command(None, 2));
    assert!(
        first.wait_for_logs("completed file://", 2, LIMIT),
        "{}",
        first.stderr()
    );
    first.signal("KILL");
    first.wait(LIMIT);
    let snapshot = l.latest().expect("a checkpoint");

    let mut second = Running::start(&mut l.command(Some(&snapshot), 2));
    assert!(
        second.wait_for_logs("completed file://", 4, LIMIT),
        "{}",
        second.stderr()
    );
    second.signal("KILL");
    second.wait(LIMIT);
    assert!(restored(&second), "the second run restored nothing");
    let newer = l.latest().expect("a checkpoint");
    assert_ne!(newer, snapshot);
    let before = l.sink.committed().len();

    let mut again = Running::start(&mut l.command(Some(&snapshot), 2));
    assert!(!again.wait(LIMIT), "the replay ran: {}", again.stderr());
    assert!(
        again
            .stderr()
            .contains("an earlier run restored from the same snapshot"),
        "{}",
        again.stderr()
    );
    assert_eq!(
        l.sink.committed().len(),
        before,
        "the refused run wrote rows"
    );

    let mut last = Running::start(&mut l.command(Some(&newer), 2));
    assert!(last.wait(LIMIT), "{}", last.stderr());
    assert!(restored(&last), "the last run restored nothing");
    let (lost, duplicated, _) = compare(&expected(l.records, l.keys), &l.sink.committed());
    assert_eq!((lost, duplicated), (0, 0));
}

/// librdkafka's mock cluster accepts transactions without enforcing them
/// (aborted records stay visible, transactional offsets are not kept), so
/// on it the loop checks that nothing is lost; against a real broker
/// (`WEIR_KAFKA_BOOTSTRAP`) it checks exactly once.
#[test]
fn kafka_sink_loses_nothing_across_crashes() {
    let kafka = Kafka::start();
    let real = kafka.real();
    let topics: Vec<String> = (0..2)
        .map(|i| kafka.topic(&format!("counts-{i}"), 3))
        .collect();
    let next = std::cell::Cell::new(0);
    crash_loop("Kafka", real, |_, _| {
        let topic = topics[next.get()].clone();
        next.set(next.get() + 1);
        Sink::Kafka {
            kafka: &kafka,
            topic,
        }
    });
}

/// Flink's savepoint semantics: a savepoint between two checkpoints
/// commits nothing (recovery never restores from it), so a failure after
/// it and a restore from the checkpoint before it duplicate nothing.
#[test]
fn a_savepoint_between_checkpoints_commits_nothing() {
    let dir = temp_dir();
    let out = dir.path().join("out");
    let checkpoints = dir.path().join("checkpoints");
    let (records, keys) = (30_000, 11);
    let command = |restore: Option<&Path>| {
        let mut c = weir();
        c.env("WEIR_LOG", "warn,weir=info");
        c.args(["run", "--local", "-p", "2"])
            .args(["-D", "execution.checkpointing.interval=2s"])
            .arg("-D")
            .arg(format!("state.checkpoints.dir={}", checkpoints.display()))
            .arg("--savepoint-dir")
            .arg(dir.path().join("savepoints"));
        if let Some(r) = restore {
            c.arg("-s").arg(r);
        }
        c.arg(EXACTLY_ONCE_WASM)
            .arg("--")
            .args(file_sink_args(&out, records, 5000, keys));
        c
    };
    let mut job = Running::start(&mut command(None));
    job.wait_for_logs("completed file://", 1, LIMIT);
    job.signal("USR1");
    job.wait_for_log("Savepoint completed", LIMIT);
    job.signal("KILL");
    job.wait(LIMIT);
    let job_dir = latest_checkpoints(&checkpoints).expect("a checkpoint completed");
    let mut job = Running::start(&mut command(Some(&job_dir)));
    assert!(job.wait(LIMIT), "{}", job.stderr());
    assert!(restored(&job), "the second run restored nothing");
    let mut got = Vec::new();
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        if !e.file_name().to_string_lossy().starts_with('.') {
            got.extend(
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(str::to_owned),
            );
        }
    }
    let (lost, dup, sample) = compare(&expected(records, keys), &got);
    assert_eq!((lost, dup), (0, 0), "lost {sample:?}");
}

/// Waits until `job` has completed `n` checkpoints in its current run.
pub(crate) fn wait_checkpoints(api: &weir_tests::cluster::Api, job: &str, n: u64) {
    let start = Instant::now();
    loop {
        let (_, v) = api.get(&format!("/jobs/{job}/checkpoints"));
        if v["counts"]["completed"].as_u64().unwrap_or(0) >= n {
            return;
        }
        assert!(start.elapsed() < LIMIT, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An exactly-once job upgraded twice while it runs, through the session
/// (both times in place): once to the same module, once to a version that
/// fails on probation and rolls back from its own latest checkpoint. Every
/// record is in the output exactly once.
#[test]
fn upgrades_and_a_rollback_keep_the_output_exact() {
    use serde_json::json;
    let dir = temp_dir();
    let out = dir.path().join("out");
    let s = weir_tests::cluster::SessionProcess::start(
        Path::new(env!("CARGO_BIN_EXE_weir-under-test")),
        &dir.path().join("data"),
        2,
        &[],
    );
    let api = s.api();
    let jar = api.upload_file(EXACTLY_ONCE_WASM);
    let (records, keys) = (40_000u64, 20u64);
    let args = |extra: &[&str]| {
        let mut a = file_sink_args(&out, records, 4000, keys);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let job = api.run(
        &jar,
        json!({
            "programArgsList": args(&[]),
            "parallelism": 2,
            "flinkConfiguration": {"execution.checkpointing.interval": "150ms"},
        }),
    );
    let upgrade = |body: serde_json::Value| api.upgrade(&job, body, LIMIT);
    let wait_checkpoints = |n: u64| wait_checkpoints(&api, &job, n);
    wait_checkpoints(3);
    let (_, op) = upgrade(json!({"jarId": jar}));
    assert_eq!(op["result"], "UPGRADED", "{op}");
    wait_checkpoints(3);
    // A version that fails at its 3000th record, after checkpoints.
    let (trigger, op) =
        upgrade(json!({"jarId": jar, "programArgsList": args(&["--fail-after", "3000"])}));
    assert_eq!(op["result"], "UPGRADED", "{op}");
    let op = api.wait_for_upgrade(&job, &trigger, |op| op["result"] != "UPGRADED", LIMIT);
    assert_eq!(op["result"], "ROLLED_BACK", "{op}");
    assert!(
        op["failure-cause"]["stack-trace"]
            .as_str()
            .unwrap()
            .contains("--fail-after"),
        "{op}"
    );
    api.wait_for_state(&job, "FINISHED", LIMIT);
    let (how, v) = api.versions(&job);
    assert_eq!(how, ["submitted", "swapped", "swapped", "rolled-back"]);
    // The rollback started from a checkpoint of the failed version.
    let from = v[3]["from"].as_str().unwrap();
    assert!(from.contains("chk-"), "{v}");
    let got = Sink::File(out.clone()).committed();
    let (lost, dup, sample) = compare(&expected(records, keys), &got);
    assert_eq!((lost, dup), (0, 0), "lost or duplicated {sample:?}");
}

/// A running exactly-once job rescaled 2 -> 4 -> 3 -> 2 on a session:
/// through Flink's `PATCH /jobs/:id/rescaling`, `weir rescale` and Flink's
/// `PUT /jobs/:id/resource-requirements`. Each stops
/// with a savepoint and restarts from it under the same job id, its keyed
/// counts carried over to the new key group ranges; every record is in the
/// output exactly once. Rescales that cannot be done are refused up front
/// and leave the job running.
#[test]
fn rescaling_2_4_3_2_keeps_keyed_state_and_the_output_exact() {
    use serde_json::json;
    let dir = temp_dir();
    let out = dir.path().join("out");
    let s = weir_tests::cluster::SessionProcess::start(
        Path::new(env!("CARGO_BIN_EXE_weir-under-test")),
        &dir.path().join("data"),
        4,
        &[],
    );
    let api = s.api();
    let jar = api.upload_file(EXACTLY_ONCE_WASM);
    let (records, keys) = (60_000u64, 40u64);
    let job = api.run(
        &jar,
        json!({
            "programArgsList": file_sink_args(&out, records, 2000, keys),
            "parallelism": 2,
            "flinkConfiguration": {"execution.checkpointing.interval": "150ms"},
        }),
    );
    api.wait_for_state(&job, "RUNNING", LIMIT);
    let widest = |job: &str| {
        let (_, v) = api.get(&format!("/jobs/{job}"));
        v["vertices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["parallelism"].as_u64().unwrap())
            .max()
            .unwrap()
    };
    assert_eq!(widest(&job), 2);

    // Refused before anything stops: more slots than the session has, no
    // parallelism, vertices asking for two different ones.
    let (status, v) = api.patch(&format!("/jobs/{job}/rescaling?parallelism=5"));
    assert_eq!(status, 409, "{v}");
    assert!(
        weir_tests::cluster::error_of(&v).contains("task slots"),
        "{v}"
    );
    for bad in [
        "",
        "?parallelism=0",
        "?parallelism=-1",
        "?parallelism=x",
        "?parallelism=70000",
    ] {
        let (status, v) = api.patch(&format!("/jobs/{job}/rescaling{bad}"));
        assert_eq!(status, 400, "{bad}: {v}");
    }
    let (status, v) = api.patch(&format!("/jobs/{job}/rescaling?parallelism=2"));
    assert_eq!(status, 400, "the parallelism it has: {v}");
    let (_, req) = api.get(&format!("/jobs/{job}/resource-requirements"));
    let vertices: Vec<String> = req.as_object().unwrap().keys().cloned().collect();
    assert!(vertices.len() >= 2, "{req}");
    let mut mixed = serde_json::Map::new();
    for (i, v) in vertices.iter().enumerate() {
        let upper = 3 + (i as u64 % 2);
        mixed.insert(
            v.clone(),
            json!({"parallelism": {"lowerBound": 1, "upperBound": upper}}),
        );
    }
    let (status, v) = api.request_json(
        "PUT",
        &format!("/jobs/{job}/resource-requirements"),
        json!(mixed),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(api.state(&job), "RUNNING");

    // 2 -> 4 through Flink's route.
    let (status, t) = api.patch(&format!("/jobs/{job}/rescaling?parallelism=4"));
    assert_eq!(status, 202, "{t}");
    let trigger = t["request-id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    let op = loop {
        let (status, v) = api.get(&format!("/jobs/{job}/rescaling/{trigger}"));
        assert_eq!(status, 200, "{v}");
        if v["status"]["id"] == "COMPLETED" {
            break v["operation"].clone();
        }
        assert!(start.elapsed() < LIMIT, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(op["result"], "UPGRADED", "{op}");
    assert_eq!(op["kind"], "rescale", "{op}");
    api.wait_for_state(&job, "RUNNING", LIMIT);
    assert_eq!(widest(&job), 4);
    let (_, req) = api.get(&format!("/jobs/{job}/resource-requirements"));
    assert!(
        req.as_object()
            .unwrap()
            .values()
            .any(|v| v["parallelism"]["upperBound"] == 4),
        "{req}"
    );

    // 4 -> 3 with the CLI, once the new run has checkpointed.
    wait_checkpoints(&api, &job, 2);
    let mut c = crate::weir();
    c.args(["--cluster", &s.url, "rescale", &job, "-p", "3"]);
    let o = crate::run_with_timeout(&mut c, LIMIT);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && said.contains("runs at parallelism 3"),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(widest(&job), 3);
    api.wait_for_state(&job, "RUNNING", LIMIT);

    // 3 -> 2 through Flink's resource requirements: the vertices at 3 ask
    // for 2, the others for what they run.
    let (_, req) = api.get(&format!("/jobs/{job}/resource-requirements"));
    let mut asks = serde_json::Map::new();
    for (v, r) in req.as_object().unwrap() {
        let p = r["parallelism"]["upperBound"].as_u64().unwrap();
        let upper = if p == 3 { 2 } else { p };
        asks.insert(
            v.clone(),
            json!({"parallelism": {"lowerBound": 1, "upperBound": upper}}),
        );
    }
    let (status, t) = api.request_json(
        "PUT",
        &format!("/jobs/{job}/resource-requirements"),
        json!(asks),
    );
    assert_eq!(status, 200, "{t}");
    let trigger = t["request-id"].as_str().unwrap().to_owned();
    let op = api.wait_for_upgrade(&job, &trigger, |op| op.get("result").is_some(), LIMIT);
    assert_eq!(op["result"], "UPGRADED", "{op}");
    api.wait_for_state(&job, "RUNNING", LIMIT);
    assert_eq!(widest(&job), 2);

    api.wait_for_state(&job, "FINISHED", LIMIT);
    let (how, v) = api.versions(&job);
    assert_eq!(
        how,
        ["submitted", "rescaled", "rescaled", "rescaled"],
        "{v}"
    );
    // Each run started from the savepoint that stopped the one before.
    assert!((1..4).all(|i| v[i]["from"].is_string()), "{v}");
    let got = Sink::File(out.clone()).committed();
    let (lost, dup, sample) = compare(&expected(records, keys), &got);
    assert_eq!((lost, dup), (0, 0), "lost or duplicated {sample:?}");
}

/// A module swap while records flow into an exactly-once sink: every line
/// before the swap's barrier is the old version's, every line after it the
/// new one's (tagged), per key in count order; nothing lost or repeated,
/// and the job neither restarted nor restored (its source never went
/// back). Then the session is SIGKILLed: the next one resumes the job on
/// the new module.
#[test]
fn a_hot_swap_changes_the_output_at_the_barrier_exactly_once() {
    use serde_json::json;
    let dir = temp_dir();
    let out = dir.path().join("out");
    let start_session = || {
        weir_tests::cluster::SessionProcess::start(
            Path::new(env!("CARGO_BIN_EXE_weir-under-test")),
            &dir.path().join("data"),
            2,
            &[],
        )
    };
    let mut s = start_session();
    let api = s.api();
    let jar = api.upload_file(EXACTLY_ONCE_WASM);
    let (records, keys) = (30_000u64, 20u64);
    let mut args = file_sink_args(&out, records, 5000, keys);
    let job = api.run(
        &jar,
        json!({
            "programArgsList": args,
            "parallelism": 2,
            "flinkConfiguration": {"execution.checkpointing.interval": "150ms"},
        }),
    );
    // Some output first.
    let start = Instant::now();
    while !out.exists() || Sink::File(out.clone()).committed().len() < 2_000 {
        assert!(start.elapsed() < LIMIT, "no output");
        std::thread::sleep(Duration::from_millis(50));
    }
    args.extend(["--tag".to_owned(), "v2:".to_owned()]);
    let (_, op) = api.upgrade(&job, json!({"jarId": jar, "programArgsList": args}), LIMIT);
    assert_eq!(
        (&op["result"], &op["mode"]),
        (&json!("UPGRADED"), &json!("hot-swap")),
        "{op}"
    );
    assert!(op["location"].as_str().unwrap().contains("chk-"), "{op}");
    let (_, details) = api.get(&format!("/jobs/{job}"));
    assert_eq!(details["restarts"], 0, "{details}");
    let (_, cps) = api.get(&format!("/jobs/{job}/checkpoints"));
    assert!(cps["latest"]["restored"].is_null(), "{cps}");
    assert_eq!(api.versions(&job).0, ["submitted", "swapped"]);
    // Some of the new version's output, then the session dies.
    let tagged = || {
        Sink::File(out.clone())
            .committed()
            .iter()
            .filter(|l| l.starts_with("v2:"))
            .count()
    };
    while tagged() < 1_000 {
        assert!(start.elapsed() < LIMIT, "no output of the new version");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.process.signal("KILL");
    let _ = s.process.wait(LIMIT);
    drop(s);
    let s = start_session();
    let api = s.api();
    api.wait_for_state(&job, "FINISHED", LIMIT);
    assert_eq!(api.versions(&job).0, ["submitted", "swapped"]);

    let last_old = assert_switched_exactly(&Sink::File(out.clone()).committed(), records, keys);
    assert!(last_old.iter().sum::<u64>() >= 2_000);
}

/// Checks the output of a counts job whose module changed to one that
/// tags its lines `v2:`: every record exactly once, and per key the old
/// version's counts and then the new one's, as a switch at one barrier
/// gives. Returns each key's last count of the old version.
pub(crate) fn assert_switched_exactly(got: &[String], records: u64, keys: u64) -> Vec<u64> {
    let untagged: Vec<String> = got
        .iter()
        .map(|l| l.strip_prefix("v2:").unwrap_or(l).to_owned())
        .collect();
    let (lost, dup, sample) = compare(&expected(records, keys), &untagged);
    assert_eq!((lost, dup), (0, 0), "lost or duplicated {sample:?}");
    let mut last_old = vec![0u64; keys as usize];
    let mut first_new = vec![u64::MAX; keys as usize];
    for l in got {
        let (tagged, l) = match l.strip_prefix("v2:") {
            Some(rest) => (true, rest),
            None => (false, l.as_str()),
        };
        let (k, n) = l.split_once(',').unwrap();
        let (k, n): (usize, u64) = (k.parse().unwrap(), n.parse().unwrap());
        if tagged {
            first_new[k] = first_new[k].min(n);
        } else {
            last_old[k] = last_old[k].max(n);
        }
    }
    for k in 0..keys as usize {
        assert_eq!(
            first_new[k],
            last_old[k] + 1,
            "key {k}: old up to {}, new from {}",
            last_old[k],
            first_new[k]
        );
    }
    last_old
}
