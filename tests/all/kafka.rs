//! Kafka and databases end to end: a Kafka topic -> word count ->
//! PostgreSQL / MariaDB job killed with SIGKILL at several points and
//! restored from its latest checkpoint, rescaled, fed poison records; and
//! Kafka-to-Kafka with transactions. The broker is librdkafka's mock
//! cluster, or a real one at `WEIR_KAFKA_BOOTSTRAP`.

use crate::weir;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use weir_tests::process::{Running, latest_checkpoints};
use weir_tests::servers::{Kafka, MariaDb, Postgres};
use weir_tests::{KAFKA_JOBS_WASM, KAFKA_WORDCOUNT_WASM, count_words, temp_dir, word};

const LIMIT: Duration = Duration::from_secs(180);

/// `n` lines of 8 words from a vocabulary of 300.
fn lines(n: usize, seed: u64) -> Vec<Vec<u8>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            (0..8)
                .map(|_| word(rng.random_range(0..300)))
                .collect::<Vec<_>>()
                .join(" ")
                .into_bytes()
        })
        .collect()
}

fn truth(lines: &[Vec<u8>]) -> BTreeMap<String, u64> {
    let text: String = lines
        .iter()
        .filter_map(|l| std::str::from_utf8(l).ok())
        .map(|l| format!("{l}\n"))
        .collect();
    count_words(&text)
}

fn table(rows: &str) -> BTreeMap<String, u64> {
    rows.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (w, n) = l.split_once(['|', '\t']).expect("two columns");
            (w.to_owned(), n.trim().parse().expect("a count"))
        })
        .collect()
}

/// Runs the job, killing it right after checkpoints complete (`kills`:
/// how many checkpoints, then how long to wait) and restoring it each
/// time, the last run at `last_p`; returns how many runs restored.
fn crash_and_finish(
    command: &dyn Fn(u32, Option<&Path>) -> Command,
    checkpoints: &Path,
    kills: &[(usize, u64, u32)],
    last_p: u32,
) -> usize {
    let restored = |job: &Running| job.seen_err.iter().any(|l| l.contains("restoring from"));
    let mut restores = 0;
    for &(n, delay, p) in kills {
        let from = latest_checkpoints(checkpoints);
        let mut job = Running::start(&mut command(p, from.as_deref()));
        if job.wait_for_logs("completed file://", n, LIMIT) {
            std::thread::sleep(Duration::from_millis(delay));
            job.signal("KILL");
        }
        if job.wait(LIMIT) {
            // It finished before the kill: nothing more to restore.
            return restores + usize::from(restored(&job));
        }
        restores += usize::from(restored(&job));
    }
    let from = latest_checkpoints(checkpoints);
    let mut job = Running::start(&mut command(last_p, from.as_deref()));
    assert!(job.wait(LIMIT), "the last run failed: {}", job.stderr());
    restores + usize::from(restored(&job))
}

fn wordcount_command(
    kafka: &Kafka,
    topic: &str,
    db_url: &str,
    checkpoints: &Path,
) -> impl Fn(u32, Option<&Path>) -> Command + use<> {
    let (servers, topic, db_url, checkpoints) = (
        kafka.servers().to_owned(),
        topic.to_owned(),
        db_url.to_owned(),
        checkpoints.to_owned(),
    );
    move |p, restore| {
        let mut c = weir();
        c.env("WEIR_LOG", "warn,weir=info")
            .args(["run", "--local", "-p", &p.to_string()])
            .args(["-D", "execution.checkpointing.interval=150ms"])
            .arg("-D")
            .arg(format!("state.checkpoints.dir={}", checkpoints.display()));
        if let Some(r) = restore {
            c.arg("-s").arg(r);
        }
        c.arg(KAFKA_WORDCOUNT_WASM)
            .args(["--", "--bootstrap-servers", &servers, "--topic", &topic])
            .args(["--bounded", "--db-url", &db_url]);
        c
    }
}

#[test]
fn kafka_to_postgres_exactly_once_through_sigkills() {
    let kafka = Kafka::start();
    let pg = Postgres::start();
    pg.sql("CREATE TABLE word_counts (word text PRIMARY KEY, count bigint NOT NULL)");
    let topic = kafka.topic("words", 6);
    let input = lines(40_000, 1);
    kafka.produce(&topic, &input, 6);
    let dir = temp_dir();
    let cp = dir.path().join("checkpoints");
    let command = wordcount_command(&kafka, &topic, &pg.url(), &cp);
    let restores = crash_and_finish(&command, &cp, &[(1, 0, 2), (1, 20, 2), (2, 50, 2)], 2);
    assert!(restores >= 2, "only {restores} runs restored a checkpoint");
    let got = table(&pg.sql("SELECT word, count FROM word_counts"));
    assert!(
        got == truth(&input),
        "the table differs from the true counts"
    );
    assert_eq!(pg.sql("SELECT count(*) FROM pg_prepared_xacts").trim(), "0");
}

#[test]
fn kafka_to_mariadb_exactly_once_rescaled_from_2_to_3() {
    let kafka = Kafka::start();
    let db = MariaDb::start();
    db.sql("CREATE TABLE word_counts (word VARCHAR(64) PRIMARY KEY, count BIGINT NOT NULL) ENGINE=InnoDB");
    let topic = kafka.topic("words", 6);
    let input = lines(40_000, 2);
    kafka.produce(&topic, &input, 6);
    let dir = temp_dir();
    let cp = dir.path().join("checkpoints");
    let command = wordcount_command(&kafka, &topic, &db.url(), &cp);
    let restores = crash_and_finish(&command, &cp, &[(1, 10, 2), (1, 30, 2)], 3);
    assert!(restores >= 1, "no run restored a checkpoint");
    let got = table(&db.sql("SELECT word, count FROM word_counts"));
    assert!(
        got == truth(&input),
        "the table differs from the true counts"
    );
    assert_eq!(db.sql("XA RECOVER").trim(), "");
}

/// Runs the word count over a topic with one record that is not UTF-8,
/// writing counts to a file, under a decode-errors policy.
fn poison(policy: &str) -> (bool, String, BTreeMap<String, u64>, Kafka, Vec<Vec<u8>>) {
    let kafka = Kafka::start();
    let topic = kafka.topic("poison", 3);
    let mut input = lines(300, 3);
    input.insert(150, vec![0xff, 0xfe, b'x']);
    kafka.produce(&topic, &input, 3);
    let dir = temp_dir();
    let out = dir.path().join("counts.txt");
    let mut c = weir();
    c.args(["run", "--local", "-p", "2"])
        .arg(KAFKA_WORDCOUNT_WASM)
        .args([
            "--",
            "--bootstrap-servers",
            kafka.servers(),
            "--topic",
            &topic,
        ])
        .args(["--bounded", "--decode-errors", policy, "--output"])
        .arg(&out);
    let o = crate::run_with_timeout(&mut c, LIMIT);
    // Every running count is written; the largest is the final one.
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for l in std::fs::read_to_string(&out).unwrap_or_default().lines() {
        let (w, n) = l.split_once('\t').unwrap();
        let n: u64 = n.parse().unwrap();
        let c = counts.entry(w.to_owned()).or_default();
        *c = (*c).max(n);
    }
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        counts,
        kafka,
        input,
    )
}

#[test]
fn a_poison_record_fails_the_job_by_default() {
    let (ok, err, _, _, _) = poison("fail");
    assert!(!ok, "the job succeeded");
    assert!(
        err.contains("cannot decode") && err.contains("decode-errors"),
        "{err}"
    );
}

#[test]
fn a_poison_record_is_skipped() {
    let (ok, err, counts, _, input) = poison("skip");
    assert!(ok, "{err}");
    assert!(counts == truth(&input));
}

#[test]
fn a_poison_record_goes_to_the_dead_letter_topic() {
    let kafka_dlq = "dead-letters";
    let (ok, err, counts, kafka, input) = poison(&format!("dead-letter:{kafka_dlq}"));
    assert!(ok, "{err}");
    assert!(counts == truth(&input));
    let dead = kafka.read(kafka_dlq);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, vec![0xff, 0xfe, b'x']);
    let error = dead[0]
        .1
        .iter()
        .find(|(k, _)| k == "weir.error")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .expect("the reason header");
    assert!(error.contains("UTF-8"), "{error}");
}

#[test]
fn kafka_to_kafka_with_transactions() {
    let kafka = Kafka::start();
    let input_topic = kafka.topic("in", 4);
    let output_topic = kafka.topic("out", 2);
    let input: Vec<Vec<u8>> = (0..5_000)
        .map(|i| format!("r{i:05}").into_bytes())
        .collect();
    kafka.produce(&input_topic, &input, 4);
    let mut c = weir();
    c.args(["run", "--local", "-p", "2"])
        .args(["-D", "execution.checkpointing.interval=200ms"])
        .arg(KAFKA_JOBS_WASM)
        .args(["--", "--bootstrap-servers", kafka.servers()])
        .args(["--in", &input_topic, "--out", &output_topic])
        .args(["--guarantee", "exactly-once", "--bounded"]);
    let o = crate::run_with_timeout(&mut c, LIMIT);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut got: Vec<Vec<u8>> = kafka
        .read(&output_topic)
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    got.sort();
    assert_eq!(got, input);
}
