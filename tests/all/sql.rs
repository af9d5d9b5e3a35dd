//! The SQL upsert sink against real PostgreSQL and MariaDB servers:
//! batched upserts, and two-phase commit tied to checkpoints.

use weir_connectors::{SinkContext, SinkFiles, SinkWriter};
use weir_core::plan::Connector;
use weir_core::{CheckpointId, SubtaskState};
use weir_frame::connectors::SqlValue;
use weir_frame::{Record, Writer};
use weir_tests::servers::{MariaDb, Postgres, word_count_sink};

fn rows(rows: &[(&str, i64)]) -> Vec<u8> {
    let mut w = Writer::new();
    for (k, n) in rows {
        let v =
            postcard::to_allocvec(&vec![SqlValue::Text((*k).into()), SqlValue::Int(*n)]).unwrap();
        w.push(&Record::value(&v));
    }
    w.into_bytes()
}

fn sink(url: &str, exactly_once: bool) -> Box<dyn SinkWriter> {
    let c = word_count_sink(
        url,
        "counts",
        exactly_once,
        &[("sink.buffer-flush.max-rows", "3")],
    );
    let ctx = SinkContext::new(0, 1, "counts", std::env::temp_dir());
    weir_sql::open_sink(&c, &ctx).unwrap()
}

/// A state the single subtask took.
fn own(value: serde_json::Value) -> SubtaskState {
    SubtaskState {
        subtask: 0,
        parallelism: 1,
        value,
    }
}

/// The table's rows as `word=n`, sorted.
type Query<'a> = &'a dyn Fn(&str) -> String;

fn table(q: Query<'_>) -> Vec<String> {
    let mut v: Vec<String> = q("SELECT word, n FROM counts")
        .lines()
        .map(|l| l.replace(['|', '\t'], "="))
        .collect();
    v.sort();
    v
}

fn two_phase_commit(url: &str, q: Query<'_>) {
    let none = SinkFiles::new();
    // At least once: upserts, the last row of a key winning.
    let mut s = sink(url, false);
    s.restore(&[], &none).unwrap();
    s.write(&rows(&[("a", 1), ("b", 1), ("a", 2), ("c", 5)]))
        .unwrap();
    s.snapshot(CheckpointId(1)).unwrap();
    assert_eq!(table(q), vec!["a=2", "b=1", "c=5"]);
    drop(s);
    q("DELETE FROM counts");

    // Exactly once: nothing shows until the checkpoint completes.
    let mut s = sink(url, true);
    s.restore(&[], &none).unwrap();
    s.write(&rows(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]))
        .unwrap();
    let s1 = s.snapshot(CheckpointId(1)).unwrap().unwrap();
    assert!(table(q).is_empty(), "prepared, not committed");
    s.write(&rows(&[("a", 2)])).unwrap();
    s.commit(CheckpointId(1)).unwrap();
    assert_eq!(table(q), vec!["a=1", "b=1", "c=1", "d=1"]);
    let s2 = s.snapshot(CheckpointId(2)).unwrap().unwrap();
    // The process dies before checkpoint 2's commit, and after preparing
    // a third transaction that no checkpoint covers.
    s.write(&rows(&[("z", 9)])).unwrap();
    let _s3 = s.snapshot(CheckpointId(3)).unwrap();
    drop(s);
    assert_eq!(table(q), vec!["a=1", "b=1", "c=1", "d=1"]);
    // Restoring checkpoint 2 commits its transaction, rolls back the third.
    let mut r = sink(url, true);
    r.restore(&[own(s2)], &none).unwrap();
    assert_eq!(table(q), vec!["a=2", "b=1", "c=1", "d=1"]);
    // Restoring an old checkpoint again finds its transaction committed.
    let mut again = sink(url, true);
    again.restore(&[own(s1)], &none).unwrap();
    assert_eq!(table(q), vec!["a=2", "b=1", "c=1", "d=1"]);
}

#[test]
fn postgres_upserts_and_commits_in_two_phases() {
    let pg = Postgres::start();
    pg.sql("CREATE TABLE counts (word text PRIMARY KEY, n bigint NOT NULL)");
    let q = |s: &str| pg.sql(s);
    two_phase_commit(&pg.url(), &q);
    assert_eq!(pg.sql("SELECT count(*) FROM pg_prepared_xacts").trim(), "0");
}

#[test]
fn mariadb_upserts_and_commits_in_two_phases() {
    let db = MariaDb::start();
    db.sql("CREATE TABLE counts (word VARCHAR(100) PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB");
    let q = |s: &str| db.sql(s);
    two_phase_commit(&db.url(), &q);
    assert_eq!(db.sql("XA RECOVER").trim(), "");
}

#[test]
fn unreachable_databases_are_named_without_the_password() {
    let c = Connector {
        kind: "jdbc".into(),
        options: vec![
            (
                "url".into(),
                "postgres://weir:hunter2@127.0.0.1:1/app".into(),
            ),
            ("table-name".into(), "t".into()),
            ("columns".into(), "k".into()),
            ("primary-key".into(), "k".into()),
        ],
    };
    let ctx = SinkContext {
        checkpointing: false,
        ..SinkContext::new(0, 1, "t", std::env::temp_dir())
    };
    let Err(e) = weir_sql::open_sink(&c, &ctx) else {
        panic!("connected to nothing")
    };
    assert!(e.message.contains("127.0.0.1:1/app"), "{e}");
    assert!(!e.message.contains("hunter2"), "{e}");
}

/// A sink subtask of job `job` (a job keeps its id across restarts).
fn job_sink(url: &str, job: &str) -> Box<dyn SinkWriter> {
    let c = word_count_sink(url, "counts", true, &[]);
    let mut ctx = SinkContext::new(0, 1, "counts", std::env::temp_dir());
    ctx.job_id = job.parse().unwrap();
    weir_sql::open_sink(&c, &ctx).unwrap()
}

const JOB_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const JOB_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// Two jobs with the same sink uid on one database: the one that starts
/// (and so cleans up after its own earlier runs) leaves the other's
/// prepared transactions alone; a transaction rolled back behind a job's
/// back fails that job instead of losing its rows in silence.
fn jobs_keep_to_their_own_transactions(url: &str, q: Query<'_>, prepared: Option<&str>) {
    let none = SinkFiles::new();
    let mut a = job_sink(url, JOB_A);
    a.restore(&[], &none).unwrap();
    a.write(&rows(&[("a", 1), ("b", 1)])).unwrap();
    a.snapshot(CheckpointId(1)).unwrap();
    // Job b starts while a's transaction waits for its checkpoint.
    let mut b = job_sink(url, JOB_B);
    b.restore(&[], &none).unwrap();
    b.write(&rows(&[("c", 1)])).unwrap();
    b.snapshot(CheckpointId(1)).unwrap();
    a.commit(CheckpointId(1)).unwrap();
    b.commit(CheckpointId(1)).unwrap();
    assert_eq!(
        table(q),
        vec!["a=1", "b=1", "c=1"],
        "job b took job a's rows"
    );

    // Someone rolls back a's next prepared transaction (MariaDB lets only
    // the connection that prepared it end it while that connection lives).
    let Some(prepared) = prepared else { return };
    a.write(&rows(&[("a", 2)])).unwrap();
    a.snapshot(CheckpointId(2)).unwrap();
    let gid = q(prepared).lines().next().unwrap_or_default().to_owned();
    assert!(gid.contains("weir-aaaaaaaaaaaaaaaa-counts-0-"), "{gid}");
    q(&format!("ROLLBACK PREPARED '{gid}'"));
    let e = a.commit(CheckpointId(2)).unwrap_err();
    assert!(
        e.message.contains("rolled it back") && e.message.contains("lost"),
        "{e}"
    );
    assert_eq!(table(q), vec!["a=1", "b=1", "c=1"]);
}

#[test]
fn postgres_jobs_keep_to_their_own_transactions() {
    let pg = Postgres::start();
    pg.sql("CREATE TABLE counts (word text PRIMARY KEY, n bigint NOT NULL)");
    let q = |s: &str| pg.sql(s);
    jobs_keep_to_their_own_transactions(&pg.url(), &q, Some("SELECT gid FROM pg_prepared_xacts"));
}

#[test]
fn mariadb_jobs_keep_to_their_own_transactions() {
    let db = MariaDb::start();
    db.sql("CREATE TABLE counts (word VARCHAR(100) PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB");
    let q = |s: &str| db.sql(s);
    jobs_keep_to_their_own_transactions(&db.url(), &q, None);
}
