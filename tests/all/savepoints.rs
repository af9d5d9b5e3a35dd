//! Savepoints and upgrades: state carries over by operator uid, memory
//! images restore into the identical module, saved state migrates through
//! the job's hooks into new versions, and unclaimed state is an error
//! unless allowed.

use crate::{run_on_socket_and_stop, weir};
use std::path::Path;
use std::time::Duration;
use weir_tests::process::{Feed, Running};
use weir_tests::{COUNTER_WASM, temp_dir};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs a counter version on a socket, sends `lines`, waits for `last`,
/// stops it with a savepoint into `sp_dir` and returns the savepoint.
fn run_and_stop(
    version: usize,
    restore: Option<&str>,
    sp_dir: &Path,
    lines: &[&str],
    last: &str,
) -> String {
    let job = Path::new(COUNTER_WASM[version - 1]);
    run_on_socket_and_stop(job, restore, sp_dir, &[], lines, last).0
}

#[test]
fn hello_six_times_across_a_new_version() {
    let dir = temp_dir();
    let sp_dir = dir.path().join("savepoints");
    let hellos = ["Hello"; 5];
    let sp = run_and_stop(1, None, &sp_dir, &hellos, "(\"Hello\", 5, 5, 25)");

    // The identical module: the memory image carries both counters.
    run_and_stop(1, Some(&sp), &sp_dir, &["Hello"], "(\"Hello\", 6, 6, 30)");

    // A new version: keyed state by uid, LINES through the hooks; CHARS,
    // kept only in memory, starts over.
    run_and_stop(2, Some(&sp), &sp_dir, &["Hello"], "(\"Hello\", 6, 6, 5)");
}

#[test]
fn dropped_operator_needs_allow_non_restored_state() {
    let dir = temp_dir();
    let sp_dir = dir.path().join("savepoints");
    let sp = run_and_stop(1, None, &sp_dir, &["a b", "a"], "(\"a\", 2, 2, 4)");

    // The pre-flight check says what would happen.
    let out = weir()
        .args([
            "savepoint",
            "check",
            &sp,
            COUNTER_WASM[2],
            "--",
            "--port",
            "1",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("REJECTED") && report.contains("counts"),
        "{report}"
    );
    assert!(report.contains("migrated"), "{report}");

    // Without -n the new version refuses to start, naming the operator.
    let mut feed = Feed::new();
    let mut job = Running::start(weir().args([
        "run",
        "--local",
        "-s",
        &sp,
        COUNTER_WASM[2],
        "--",
        "--port",
        &feed.port(),
    ]));
    assert!(!job.wait(LIMIT), "started without -n");
    let err = job.stderr();
    assert!(err.contains("counts") && err.contains("-n"), "{err}");

    // With -n it starts; the counters in memory migrate through the hooks.
    let mut job = Running::start(weir().args([
        "run",
        "--local",
        "-n",
        "-s",
        &sp,
        COUNTER_WASM[2],
        "--",
        "--port",
        &feed.port(),
    ]));
    feed.accept(LIMIT);
    feed.send("a");
    job.wait_for_output("(\"a\", 1, 3, 1)", LIMIT);
}

#[test]
fn savepoints_are_disposed() {
    let dir = temp_dir();
    let sp_dir = dir.path().join("savepoints");
    let sp = run_and_stop(1, None, &sp_dir, &["x"], "(\"x\", 1, 1, 1)");
    let local = sp.strip_prefix("file://").unwrap();
    assert!(Path::new(local).join("_metadata").exists());
    let out = weir()
        .args(["savepoint", "--dispose", &sp])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!Path::new(local).exists());
    let out = weir()
        .args(["savepoint", "--dispose", &sp])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
