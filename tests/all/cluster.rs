//! The session cluster: every REST route's success and failure answers,
//! the CLI against a real `weir session`, HA across a SIGKILL, and the web
//! UI in headless Chromium.

use crate::checkpoints::streaming_updates;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use weir_tests::browser::Browser;
use weir_tests::cluster::{SessionProcess, error_of};
use weir_tests::process::Feed;
use weir_tests::{
    CLICK_EVENT_COUNT_WASM, COUNTER_WASM, HOSTILE_WASM, NOT_A_JOB_WASM, WORDCOUNT_WASM, file,
    temp_dir, write_corpus,
};

const LIMIT: Duration = Duration::from_secs(60);
const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

fn session(dir: &Path, slots: u32, extra: &[&str]) -> SessionProcess {
    SessionProcess::start(Path::new(WEIR), dir, slots, extra)
}

/// An unbounded job: generated clicks, counted in windows, discarded.
fn clicks_body(parallelism: u32) -> Value {
    json!({
        "programArgsList": ["--rate", "500", "--discard"],
        "parallelism": parallelism,
        "flinkConfiguration": {"execution.checkpointing.interval": "100ms"},
    })
}

fn assert_error(answer: (u16, Value), status: u16, needle: &str) {
    let (s, v) = answer;
    assert_eq!(s, status, "{v}");
    let msg = error_of(&v);
    assert!(msg.contains(needle), "{msg:?} does not mention {needle:?}");
}

#[test]
fn rest_routes_answer_success_and_failure() {
    let dir = temp_dir();
    let s = session(dir.path(), 4, &[]);
    let api = s.api();

    // Cluster routes.
    let (st, cfg) = api.get("/config");
    assert_eq!(st, 200);
    assert!(cfg["flink-version"].as_str().unwrap().starts_with("weir"));
    let (_, o) = api.get("/overview");
    assert_eq!(
        (o["slots-total"].as_u64(), o["slots-available"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(api.get("/jobs").1, json!({"jobs": []}));
    assert_eq!(api.get("/jars").1["files"], json!([]));
    let (st, conf) = api.get("/jobmanager/config");
    assert_eq!(st, 200);
    assert!(
        conf.as_array()
            .unwrap()
            .iter()
            .any(|e| e["key"] == "rest.port")
    );
    assert_error(api.get("/no/such/route"), 404, "no route");

    // Uploads: malformed, not wasm, not a job, then real ones.
    assert_error(
        api.post_raw("/jars/upload", "text/plain", b"hello".to_vec()),
        400,
        "multipart",
    );
    assert_error(
        api.post_raw(
            "/jars/upload",
            "multipart/form-data; boundary=X",
            b"--X\r\nContent-Disposition: form-data; name=\"jarfile\"; filename=\"a.wasm\"\r\n\r\nabc".to_vec(),
        ),
        400,
        "malformed",
    );
    assert_error(
        api.upload("notes.txt", b"not a module".to_vec()),
        400,
        "not WebAssembly",
    );
    let not_a_job = std::fs::read(NOT_A_JOB_WASM).unwrap();
    assert_error(
        api.upload("not_a_job.wasm", not_a_job),
        400,
        "not a Weir job",
    );
    let clicks = api.upload_file(CLICK_EVENT_COUNT_WASM);
    let hostile = api.upload_file(HOSTILE_WASM);
    let (_, jars) = api.get("/jars");
    let files = jars["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let h = files.iter().find(|f| f["id"] == hostile.as_str()).unwrap();
    let entries: Vec<&str> = h["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        entries.contains(&"trap") && entries.contains(&"panic_in_map"),
        "{entries:?}"
    );

    // Run: unknown jar, bad bodies, bad arguments, a missing savepoint.
    assert_error(api.post("/jars/nope/run", json!({})), 404, "not known");
    assert_error(
        api.post_raw(
            &format!("/jars/{clicks}/run"),
            "application/json",
            b"{".to_vec(),
        ),
        400,
        "not valid",
    );
    assert_error(
        api.post(&format!("/jars/{clicks}/run"), json!({"parallelism": 0})),
        400,
        "parallelism",
    );
    assert_error(
        api.post(&format!("/jars/{clicks}/run"), json!({"bogus": 1})),
        400,
        "bogus",
    );
    assert_error(
        api.post(
            &format!("/jars/{clicks}/run"),
            json!({"programArgsList": ["--rate", "fast"]}),
        ),
        400,
        "--rate",
    );
    assert_error(
        api.post(
            &format!("/jars/{clicks}/run"),
            json!({"entryClass": "nope"}),
        ),
        400,
        "nope",
    );
    assert_error(
        api.post(
            &format!("/jars/{clicks}/run"),
            json!({"savepointPath": dir.path().join("missing").display().to_string()}),
        ),
        400,
        "cannot restore from savepoint",
    );
    assert_error(
        api.post(
            &format!("/jars/{clicks}/run"),
            json!({"allowNonRestoredState": true}),
        ),
        400,
        "savepointPath",
    );
    assert_error(
        api.post(&format!("/jars/{clicks}/run"), clicks_body(5)),
        409,
        "task slots",
    );

    // A running job and its routes.
    let job = api.run(&clicks, clicks_body(2));
    api.wait_for_state(&job, "RUNNING", LIMIT);
    let (_, jobs) = api.get("/jobs");
    assert_eq!(jobs["jobs"][0]["id"], job.as_str());
    let (_, ov) = api.get("/jobs/overview");
    assert_eq!(ov["jobs"][0]["name"], "Click Event Count");
    assert_eq!(ov["jobs"][0]["state"], "RUNNING");
    assert_eq!(api.get("/overview").1["slots-available"], 2);
    // Records flow: the source vertex writes records.
    let deadline = std::time::Instant::now() + LIMIT;
    let details = loop {
        let (st, d) = api.get(&format!("/jobs/{job}"));
        assert_eq!(st, 200);
        if d["vertices"][0]["metrics"]["write-records"]
            .as_u64()
            .unwrap_or(0)
            > 0
            && api.get(&format!("/jobs/{job}/checkpoints")).1["counts"]["completed"]
                .as_u64()
                .unwrap_or(0)
                >= 2
        {
            break d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no records or checkpoints: {d}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        details["vertices"].as_array().unwrap().len(),
        details["plan"]["nodes"].as_array().unwrap().len()
    );
    assert!(
        details["plan"]["nodes"][1]["inputs"][0]["ship_strategy"] == "HASH",
        "{}",
        details["plan"]
    );
    let (_, cps) = api.get(&format!("/jobs/{job}/checkpoints"));
    let latest = cps["latest"]["completed"]["id"].as_u64().unwrap();
    assert!(
        cps["latest"]["completed"]["external_path"]
            .as_str()
            .unwrap()
            .contains("/chk-")
    );
    let (st, d) = api.get(&format!("/jobs/{job}/checkpoints/details/{latest}"));
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["status"], "COMPLETED");
    assert_error(
        api.get(&format!("/jobs/{job}/checkpoints/details/999999")),
        404,
        "999999",
    );
    assert_error(
        api.get(&format!("/jobs/{job}/checkpoints/details/x")),
        400,
        "not a checkpoint id",
    );
    assert_eq!(
        api.get(&format!("/jobs/{job}/checkpoints/config")).1["interval"],
        100
    );
    assert_eq!(
        api.get(&format!("/jobs/{job}/exceptions")).1["root-exception"],
        Value::Null
    );
    assert_error(
        api.get(&format!("/jobs/{}", "0".repeat(32))),
        404,
        "not known",
    );
    assert_error(api.get("/jobs/xyz"), 400, "not a job id");

    // Metrics of the running job.
    let (st, metrics) = api.get_text("/metrics");
    assert_eq!(st, 200);
    assert!(
        metrics.contains(&format!(
            "weir_operator_records_out_total{{job_id=\"{job}\""
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_job_last_checkpoint_duration_seconds"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_operator_watermark_lag_seconds"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nweir_cluster_slots_available 2.0\n"),
        "{metrics}"
    );
    let memory = metrics
        .lines()
        .find(|l| l.starts_with("weir_job_guest_memory_peak_bytes{") && l.contains(&job))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(memory.is_some_and(|m| m > 0.0), "{metrics}");

    // Savepoints: trigger, poll, unknown trigger; then stop with one.
    let sp_dir = dir.path().join("sp").display().to_string();
    let (st, t) = api.post(
        &format!("/jobs/{job}/savepoints"),
        json!({"target-directory": sp_dir}),
    );
    assert_eq!(st, 202, "{t}");
    let sp = api
        .wait_for_savepoint(&job, t["request-id"].as_str().unwrap(), LIMIT)
        .unwrap();
    assert!(
        Path::new(sp.trim_start_matches("file://"))
            .join("_metadata")
            .exists(),
        "{sp}"
    );
    assert_error(
        api.get(&format!("/jobs/{job}/savepoints/nope")),
        404,
        "no savepoint operation",
    );
    assert_error(
        api.post(&format!("/jobs/{job}/stop"), json!({"drain": "yes"})),
        400,
        "not valid",
    );
    let (st, t) = api.post(
        &format!("/jobs/{job}/stop"),
        json!({"targetDirectory": sp_dir, "drain": true}),
    );
    assert_eq!(st, 202, "{t}");
    let stopped = api
        .wait_for_savepoint(&job, t["request-id"].as_str().unwrap(), LIMIT)
        .unwrap();
    api.wait_for_state(&job, "FINISHED", LIMIT);
    assert_eq!(
        api.get(&format!("/jobs/{job}")).1["stopped-with-savepoint"],
        stopped.as_str()
    );
    assert_error(api.patch(&format!("/jobs/{job}")), 409, "already FINISHED");
    assert_error(
        api.post(&format!("/jobs/{job}/savepoints"), json!({})),
        409,
        "RUNNING",
    );

    // Restore from the savepoint; cancel; a bad mode.
    let job2 = api.run(&clicks, json!({"savepointPath": stopped, "parallelism": 2, "programArgsList": ["--rate", "100", "--discard"]}));
    api.wait_for_state(&job2, "RUNNING", LIMIT);
    let (_, cps) = api.get(&format!("/jobs/{job2}/checkpoints"));
    assert_eq!(cps["latest"]["restored"]["external_path"], stopped.as_str());
    assert_error(
        api.request("PATCH", &format!("/jobs/{job2}?mode=stop")),
        400,
        "mode=stop",
    );
    let (st, _) = api.patch(&format!("/jobs/{job2}?mode=cancel"));
    assert_eq!(st, 202);
    api.wait_for_state(&job2, "CANCELED", LIMIT);

    // A failing job: its exception names the cause and the task.
    let failing = api.run(
        &hostile,
        json!({"entryClass": "trap", "programArgsList": ["--records", "100"]}),
    );
    api.wait_for_state(&failing, "FAILED", LIMIT);
    let (_, ex) = api.get(&format!("/jobs/{failing}/exceptions"));
    let root = ex["root-exception"].as_str().unwrap();
    assert!(root.contains("unreachable"), "{ex}");
    assert!(
        ex["exceptionHistory"]["entries"][0]["taskName"].is_string()
            || ex["all-exceptions"].as_array().unwrap().len() == 1,
        "{ex}"
    );
    let (_, o) = api.get("/overview");
    assert_eq!(
        (
            o["jobs-finished"].as_u64(),
            o["jobs-cancelled"].as_u64(),
            o["jobs-failed"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );

    // Delete a jar; it is gone.
    assert_eq!(api.delete(&format!("/jars/{hostile}")).0, 200);
    assert_error(api.delete(&format!("/jars/{hostile}")), 404, "not known");
    assert_eq!(api.get("/jars").1["files"].as_array().unwrap().len(), 1);

    // The versioned prefix answers too.
    assert_eq!(api.get("/v1/overview").0, 200);

    // The OpenAPI document describes routes the session has: none of its
    // operations hits the fallback.
    let (st, doc) = api.get("/openapi.json");
    assert_eq!(st, 200);
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{jobid}", &job)
            .replace("{jarid}", &clicks)
            .replace("{triggerid}", "x")
            .replace("{checkpointid}", "1");
        for method in ops.as_object().unwrap().keys() {
            if method == "post" || method == "delete" || method == "patch" {
                continue; // exercised above
            }
            let (st, v) = api.request(method, &concrete);
            let fallback = v["errors"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|m| m.as_str().unwrap_or("").starts_with("no route"))
            });
            assert!(
                !fallback,
                "{method} {path} is documented but not routed ({st})"
            );
        }
    }
}

#[test]
fn oversized_upload_is_refused_with_the_limit_named() {
    let dir = temp_dir();
    let s = session(
        dir.path(),
        1,
        &["-D", "rest.server.max-content-length=64kb"],
    );
    let big = std::fs::read(WORDCOUNT_WASM).unwrap();
    assert!(big.len() > 64 * 1024);
    assert_error(
        s.api().upload("wordcount.wasm", big),
        413,
        "rest.server.max-content-length",
    );
    assert_eq!(s.api().get("/jars").1["files"], json!([]));
}

fn cli(s: &SessionProcess, args: &[&str]) -> std::process::Output {
    let mut c = crate::weir();
    c.args(["--cluster", &s.url]).args(args);
    crate::run_with_timeout(&mut c, LIMIT)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The value after `prefix` on a line of `text`.
fn after<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.split(prefix).nth(1))
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
        .trim()
}

/// Runs counter version 1 through the CLI on `feed` and counts "a b", "a";
/// returns the job id.
fn run_counter(s: &mut SessionProcess, feed: &mut Feed) -> String {
    let o = cli(
        s,
        &[
            "run",
            "-d",
            "-p",
            "1",
            COUNTER_WASM[0],
            "--",
            "--port",
            &feed.port(),
        ],
    );
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert!(
        crate::stderr(&o).contains("Uploaded"),
        "{}",
        crate::stderr(&o)
    );
    let job = after(&stdout(&o), "submitted with JobID").to_owned();
    feed.accept(LIMIT);
    feed.send("a b");
    feed.send("a");
    s.process.wait_for_output("(\"a\", 2, 2, 4)", LIMIT);
    job
}

#[test]
fn cli_runs_lists_savepoints_stops_and_upgrades_against_a_session() {
    let dir = temp_dir();
    let mut s = session(dir.path(), 2, &[]);
    let sp_dir = dir.path().join("savepoints").display().to_string();

    let mut feed = Feed::new();
    let job = run_counter(&mut s, &mut feed);

    let list = stdout(&cli(&s, &["list"]));
    assert!(list.contains(&job) && list.contains("(RUNNING)"), "{list}");
    let json_list: Value =
        serde_json::from_str(&stdout(&cli(&s, &["--output", "json", "list"]))).unwrap();
    assert_eq!(json_list["jobs"][0]["jid"], job.as_str());
    let info = stdout(&cli(&s, &["info", &job]));
    assert!(
        info.contains("RUNNING") && info.contains("RECORDS IN"),
        "{info}"
    );

    let o = cli(&s, &["savepoint", &job, &sp_dir]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let first = after(&stdout(&o), "Savepoint completed. Path:").to_owned();
    let cps = stdout(&cli(&s, &["checkpoints", &job]));
    assert!(cps.contains("SAVEPOINT") && cps.contains(&first), "{cps}");

    let o = cli(&s, &["stop", &job, "--savepoint-dir", &sp_dir]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let stopped = after(&stdout(&o), "Savepoint completed. Path:").to_owned();
    s.api().wait_for_state(&job, "FINISHED", LIMIT);
    assert!(stdout(&cli(&s, &["list"])).contains("No running"));
    assert!(stdout(&cli(&s, &["list", "-a"])).contains("(FINISHED)"));

    // Version 3 drops the keyed counts: without -n it fails, naming them.
    let feed3 = Feed::new();
    let o = cli(
        &s,
        &[
            "run",
            "-s",
            &stopped,
            COUNTER_WASM[2],
            "--",
            "--port",
            &feed3.port(),
        ],
    );
    assert!(!o.status.success());
    let err = crate::stderr(&o);
    assert!(err.contains("counts") && err.contains("-n"), "{err}");

    // With -n it starts, and the counter in memory migrates.
    let mut feed3 = Feed::new();
    let o = cli(
        &s,
        &[
            "run",
            "-d",
            "-n",
            "-s",
            &stopped,
            COUNTER_WASM[2],
            "--",
            "--port",
            &feed3.port(),
        ],
    );
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let job3 = after(&stdout(&o), "submitted with JobID").to_owned();
    feed3.accept(LIMIT);
    feed3.send("a");
    s.process.wait_for_output("(\"a\", 1, 3, 1)", LIMIT);

    let o = cli(&s, &["cancel", &job3]);
    assert!(stdout(&o).contains("Cancelled job"), "{}", stdout(&o));
    assert_eq!(s.api().state(&job3), "CANCELED");

    // Errors: an unknown job, no cluster.
    let o = cli(&s, &["cancel", &"0".repeat(32)]);
    assert!(
        !o.status.success() && crate::stderr(&o).contains("not known"),
        "{}",
        crate::stderr(&o)
    );
    let mut c = crate::weir();
    c.args(["--cluster", "http://127.0.0.1:1", "list"]);
    let o = crate::run_with_timeout(&mut c, LIMIT);
    assert!(
        crate::stderr(&o).contains("weir session"),
        "{}",
        crate::stderr(&o)
    );
}

#[test]
fn a_running_job_upgrades_refuses_what_would_not_restore_and_rolls_back() {
    let dir = temp_dir();
    let mut s = session(dir.path(), 2, &["-Dweir.upgrade.probation=1min"]);
    let api = s.api();
    let mut feed = Feed::new();
    let job = run_counter(&mut s, &mut feed);

    // Version 3 drops the keyed counts: refused without -n, with the
    // pre-flight report; the job keeps running on the same connection.
    let o = cli(&s, &["upgrade", &job, COUNTER_WASM[2]]);
    let err = crate::stderr(&o);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        err.contains("refused") && err.contains("counts") && err.contains("REJECTED"),
        "{err}"
    );
    assert_eq!(api.state(&job), "RUNNING");
    feed.send("a");
    s.process.wait_for_output("(\"a\", 3, 3, 5)", LIMIT);
    // Bad requests: no jar, an unknown jar, unknown fields.
    assert_error(
        api.post(&format!("/jobs/{job}/upgrade"), json!({})),
        400,
        "jarId",
    );
    assert_error(
        api.post(
            &format!("/jobs/{job}/upgrade"),
            json!({"jarId": "nope.wasm"}),
        ),
        404,
        "nope.wasm",
    );
    assert_error(
        api.post(
            &format!("/jobs/{job}/upgrade"),
            json!({"jarId": "x", "color": 1}),
        ),
        400,
        "color",
    );

    // Version 2 (adds an operator) changes the job's shape: the job stops
    // with a savepoint and the new module starts from it, under the same
    // id, and the report says why. Keyed counts carry over, LINES migrates
    // through the hooks, CHARS (memory only) restarts.
    let o = cli(&s, &["upgrade", &job, COUNTER_WASM[1]]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", crate::stderr(&o));
    assert!(
        out.contains("Savepoint completed. Path:")
            && out.contains("restart: the new plan has")
            && out.contains("stopped with a savepoint and restarted"),
        "{out}"
    );
    feed.accept(LIMIT);
    feed.send("a");
    s.process.wait_for_output("(\"a\", 4, 4, 1)", LIMIT);
    api.wait_for_state(&job, "RUNNING", LIMIT);
    assert_eq!(api.versions(&job).0, ["submitted", "upgraded"]);

    // Version 2 crashes on "crash" within its probation: the job goes back
    // to the previous module (version 1) from the upgrade's savepoint.
    // First back to version 1, then to version 2 again through the API.
    let o = cli(&s, &["upgrade", "-n", &job, COUNTER_WASM[0]]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    feed.accept(LIMIT);
    feed.send("b");
    s.process.wait_for_output("(\"b\", 2, 5, 1)", LIMIT);
    let jar2 = api.upload_file(COUNTER_WASM[1]);
    let (status, t) = api.post(&format!("/jobs/{job}/upgrade"), json!({"jarId": jar2}));
    assert_eq!(status, 202, "{t}");
    let trigger = t["request-id"].as_str().unwrap().to_owned();
    let completed = |op: &Value| op.get("result").is_some();
    let op = api.wait_for_upgrade(&job, &trigger, completed, LIMIT);
    assert_eq!(op["result"], "UPGRADED", "{op}");
    let savepoint = op["location"].as_str().unwrap().to_owned();
    feed.accept(LIMIT);
    feed.send("crash");
    let op = api.wait_for_upgrade(&job, &trigger, |op| op["result"] != "UPGRADED", LIMIT);
    assert_eq!(op["result"], "ROLLED_BACK", "{op}");
    let cause = op["failure-cause"]["stack-trace"].as_str().unwrap();
    assert!(cause.contains("crash"), "{cause}");
    // Version 1 again, from the savepoint: its memory image holds CHARS.
    feed.accept(LIMIT);
    feed.send("b");
    s.process.wait_for_output("(\"b\", 3, 6, 2)", LIMIT);
    // Its tasks run; the coordinator says so a moment later.
    api.wait_for_state(&job, "RUNNING", LIMIT);
    let (how, v) = api.versions(&job);
    assert_eq!(
        how,
        [
            "submitted",
            "upgraded",
            "upgraded",
            "upgraded",
            "rolled-back"
        ]
    );
    assert_eq!(v[4]["from"], savepoint.as_str(), "{v}");
    assert_eq!(v[4]["module-hash"], v[0]["module-hash"], "{v}");
    assert_eq!(v[3]["module-hash"], v[1]["module-hash"], "{v}");
    // A session that dies now resumes the job on the module it runs.
    s.process.signal("KILL");
    let _ = s.process.wait(LIMIT);
    drop(s);
    let mut s = session(dir.path(), 2, &["-Dweir.upgrade.probation=1min"]);
    s.process.wait_for_log("resuming", LIMIT);
    feed.accept(LIMIT);
    feed.send("b");
    s.process.wait_for_output("(\"b\", 3, 6, 2)", LIMIT);
    assert_eq!(s.api().versions(&job).0.len(), 5);
}

/// A module that keeps the job's shape replaces the running one at a
/// barrier: the socket source keeps its connection, keyed counts carry
/// over in RocksDB, LINES migrates through the state hooks; other keyed
/// state needs -n; a version that panics rolls back.
#[test]
fn a_running_job_swaps_its_module_in_place() {
    let dir = temp_dir();
    let mut s = session(dir.path(), 2, &["-Dweir.upgrade.probation=1min"]);
    let api = s.api();
    let mut feed = Feed::new();
    let job = run_counter(&mut s, &mut feed);

    // Version 4 prints in upper case. No restart: the source keeps reading
    // the same connection; the count goes on from 2, LINES from 2, CHARS
    // (memory only) starts again.
    let o = cli(&s, &["upgrade", &job, COUNTER_WASM[3]]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", crate::stderr(&o));
    assert!(
        out.contains("in place: the new plan keeps the job's shape")
            && out.contains("changed in place, without a restart"),
        "{out}"
    );
    feed.send("a");
    s.process.wait_for_output("(\"A\", 3, 3, 1)", LIMIT);
    assert_eq!(api.versions(&job).0, ["submitted", "swapped"]);
    let (_, details) = api.get(&format!("/jobs/{job}"));
    assert_eq!(details["restarts"], 0, "{details}");

    // Counts under another uid are other keyed state: refused without -n
    // (the job untouched), then swapped with -n: the new counts start
    // empty, the old ones are dropped.
    let port = feed.port();
    let v1_tally = [
        COUNTER_WASM[0],
        "--",
        "--port",
        &port,
        "--counts-uid",
        "tally",
    ];
    let o = cli(&s, &[&["upgrade", &job][..], &v1_tally].concat());
    let err = crate::stderr(&o);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(err.contains("refused") && err.contains("counts"), "{err}");
    feed.send("a");
    s.process.wait_for_output("(\"A\", 4, 4, 2)", LIMIT);
    let o = cli(&s, &[&["upgrade", "-n", &job][..], &v1_tally].concat());
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert!(stdout(&o).contains("changed in place"), "{}", stdout(&o));
    feed.send("a");
    s.process.wait_for_output("(\"a\", 1, 5, 1)", LIMIT);

    // Version 4 again, through the API; it panics on "crash" during its
    // probation, and the job goes back to version 1 from the swap's
    // savepoint (the job takes no checkpoints), memory image and all.
    let jar4 = api.upload_file(COUNTER_WASM[3]);
    let (trigger, op) = api.upgrade(
        &job,
        json!({"jarId": jar4, "programArgsList": ["--port", port, "--counts-uid", "tally"]}),
        LIMIT,
    );
    assert_eq!(
        (&op["result"], &op["mode"]),
        (&json!("UPGRADED"), &json!("hot-swap")),
        "{op}"
    );
    let swapped_at = op["location"].as_str().unwrap().to_owned();
    feed.send("a");
    s.process.wait_for_output("(\"A\", 2, 6, 1)", LIMIT);
    feed.send("crash");
    let op = api.wait_for_upgrade(&job, &trigger, |op| op["result"] != "UPGRADED", LIMIT);
    assert_eq!(op["result"], "ROLLED_BACK", "{op}");
    assert!(
        op["failure-cause"]["stack-trace"]
            .as_str()
            .unwrap()
            .contains("crash"),
        "{op}"
    );
    feed.accept(LIMIT);
    feed.send("a");
    s.process.wait_for_output("(\"a\", 2, 6, 2)", LIMIT);
    let (how, v) = api.versions(&job);
    assert_eq!(
        how,
        ["submitted", "swapped", "swapped", "swapped", "rolled-back"]
    );
    assert_eq!(v[4]["from"], swapped_at.as_str(), "{v}");
    assert_eq!(v[4]["module-hash"], v[0]["module-hash"], "{v}");
}

#[test]
fn a_killed_session_resumes_its_jobs_with_exact_output() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let input = file(&dir, "input.txt");
    let output = file(&dir, "out.txt");
    write_corpus(&input, 200_000, 10, 500, 7).unwrap();
    let expected = streaming_updates(&std::fs::read_to_string(&input).unwrap());

    let mut s = session(&data, 2, &[]);
    let jar = s.api().upload_file(WORDCOUNT_WASM);
    let body = json!({
        "programArgsList": ["--input", input.display().to_string(), "--output", output.display().to_string()],
        "parallelism": 2,
        "flinkConfiguration": {
            "execution.checkpointing.interval": "40ms",
            "execution.runtime-mode": "STREAMING",
        },
    });
    let job = s.api().run(&jar, body);
    let mut resumed = 0;
    for _ in 0..2 {
        if !s.process.wait_for_logs("completed file://", 2, LIMIT) {
            break;
        }
        if s.api().state(&job) == "FINISHED" {
            break;
        }
        s.process.signal("KILL");
        let _ = s.process.wait(LIMIT);
        drop(s);
        s = session(&data, 2, &[]);
        s.process.wait_for_log("resuming", LIMIT);
        resumed += 1;
        let (st, d) = s.api().get(&format!("/jobs/{job}"));
        assert_eq!(st, 200, "the job is not back after the restart: {d}");
    }
    assert!(
        resumed >= 1,
        "the job finished before the session could be killed"
    );
    s.api()
        .wait_for_state(&job, "FINISHED", Duration::from_secs(120));
    let (_, cps) = s.api().get(&format!("/jobs/{job}/checkpoints"));
    assert!(
        cps["latest"]["restored"]["external_path"]
            .as_str()
            .is_some_and(|p| p.contains("/chk-")),
        "the last run did not restore a checkpoint: {cps}"
    );
    let got = std::fs::read_to_string(&output).unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "output after the restarts differs from an uninterrupted run"
    );
    // The job ended, so the HA store forgets it: a new session resumes nothing.
    drop(s);
    let s = session(&data, 2, &[]);
    assert_eq!(s.api().get("/jobs").1["jobs"], json!([]));
}

#[test]
fn web_ui_uploads_and_runs_a_job_in_chromium() {
    let dir = temp_dir();
    let s = session(dir.path(), 2, &[]);
    let mut b = Browser::start().expect(
        "chromium is needed for the web UI test; scripts/test.sh installs it (apt-get install chromium)",
    );
    b.navigate(&format!("{}/#/submit", s.url));
    b.wait_until("document.querySelector('#jarfile') !== null", LIMIT);
    b.set_file("#jarfile", CLICK_EVENT_COUNT_WASM);
    b.eval("document.querySelector('#args').value = '--rate 200 --discard'; true");
    b.eval("document.querySelector('#submit').click(); true");
    b.wait_until(
        "location.hash.startsWith('#/jobs/') && document.querySelector('#job-state') !== null \
         && document.querySelector('#job-state').textContent === 'RUNNING'",
        LIMIT,
    );
    let hash = b.eval("location.hash").as_str().unwrap().to_owned();
    let job = hash.trim_start_matches("#/jobs/").to_owned();
    assert_eq!(s.api().state(&job), "RUNNING");
    // The job page shows the graph and checkpoints; the overview lists it.
    assert!(
        b.eval("document.querySelectorAll('svg rect').length")
            .as_u64()
            >= Some(2)
    );
    // Its Upgrade button: the same job as a new upload, checked and
    // swapped in place (the plan keeps its shape).
    b.wait_until("document.querySelector('#upgrade') !== null", LIMIT);
    b.eval("document.querySelector('#upgrade').click(); true");
    b.wait_until("document.querySelector('#upgrade-form') !== null", LIMIT);
    b.set_file("#jarfile", CLICK_EVENT_COUNT_WASM);
    b.eval("document.querySelector('#submit').click(); true");
    b.wait_until(
        "document.querySelector('#upgrade-result').innerText.startsWith('UPGRADED from')",
        LIMIT,
    );
    assert!(
        b.eval("document.querySelector('#upgrade-result').innerText")
            .as_str()
            .unwrap()
            .contains("in place"),
    );
    s.api().wait_for_state(&job, "RUNNING", LIMIT);
    assert_eq!(s.api().versions(&job).0, ["submitted", "swapped"]);
    b.navigate(&format!("{}/#/", s.url));
    b.wait_until(
        &format!("!!document.querySelector('#jobs') && document.querySelector('#jobs').innerText.includes('{job}') && document.querySelector('#jobs').innerText.includes('RUNNING')"),
        LIMIT,
    );
    // An upload the cluster refuses shows its message.
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"nope").unwrap();
    b.navigate(&format!("{}/#/submit", s.url));
    b.wait_until("document.querySelector('#jarfile') !== null", LIMIT);
    b.set_file("#jarfile", bad.to_str().unwrap());
    b.eval("document.querySelector('#submit').click(); true");
    b.wait_until(
        "document.querySelector('#submit-result').innerText.includes('not WebAssembly')",
        LIMIT,
    );
}

/// Pixels of a screenshot within `tolerance` of colour `rgb`.
fn pixels_like(rgba: &[u8], rgb: [u8; 3], tolerance: i32) -> usize {
    rgba.chunks(4)
        .filter(|p| (0..3).all(|i| (i32::from(p[i]) - i32::from(rgb[i])).abs() <= tolerance))
        .count()
}

#[test]
fn the_web_ui_draws_charts_over_time_and_lists_task_managers() {
    let dir = temp_dir();
    let s = session(dir.path(), 4, &[]);
    let api = s.api();
    let jar = api.upload_file(CLICK_EVENT_COUNT_WASM);
    let job = api.run(
        &jar,
        json!({
            "programArgsList": ["--rate", "2000", "--discard"],
            "parallelism": 2,
            "flinkConfiguration": {"execution.checkpointing.interval": "300ms"},
        }),
    );
    api.wait_for_state(&job, "RUNNING", LIMIT);
    let mut b = Browser::start().expect(
        "chromium is needed for the web UI test; scripts/test.sh installs it (apt-get install chromium)",
    );
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
    );
    b.navigate(&format!("{}/#/jobs/{job}", s.url));
    // Lines appear once the page has two samples of the counters.
    for chart in [
        "chart-records-out",
        "chart-busy",
        "chart-backpressure",
        "chart-checkpoint-duration",
        "chart-checkpoint-size",
    ] {
        b.wait_until(
            &format!(
                "document.querySelectorAll('#{chart} polyline.series').length >= 1 && \
                 document.querySelector('#{chart} polyline.series').getAttribute('points').split(' ').length >= 3"
            ),
            LIMIT,
        );
    }
    assert!(
        b.eval("document.querySelectorAll('#chart-records-out .legend span').length")
            .as_u64()
            >= Some(2),
        "a line per vertex"
    );
    // The records-out chart draws the first series' colour (#1f6feb), the
    // checkpoint-size chart its second one (#d9480f): a screenshot shows them.
    for (chart, rgb) in [
        ("#chart-records-out svg", [0x1f, 0x6f, 0xeb]),
        ("#chart-checkpoint-duration svg", [0x1f, 0x6f, 0xeb]),
        ("#chart-checkpoint-size svg", [0xd9, 0x48, 0x0f]),
    ] {
        let (w, h, rgba) = b.screenshot(chart);
        assert!(w >= 400 && h >= 150, "{chart}: {w}x{h}");
        let drawn = pixels_like(&rgba, rgb, 40);
        assert!(
            drawn >= 40,
            "{chart}: only {drawn} pixels of the line colour"
        );
        let blank = pixels_like(&rgba, [255, 255, 255], 2);
        assert!(blank < rgba.len() / 4, "{chart} is not blank");
    }
    // Long names wrap inside their boxes.
    assert_eq!(
        b.eval("wrap('Source: ' + 'generated_click_events_'.repeat(8), 32, 2).map((l) => l.length <= 32).join()"),
        json!("true,true")
    );
    assert_eq!(
        b.eval(
            "[...document.querySelectorAll('#job-graph g.vertex')].every((g) => { \
               const r = g.querySelector('rect').getBBox(); \
               return [...g.querySelectorAll('text')].every((t) => t.getBBox().x + t.getBBox().width <= r.x + r.width); })"
        ),
        json!(true)
    );
    // The task managers page: the session's slots, two of them used.
    b.navigate(&format!("{}/#/taskmanagers", s.url));
    b.wait_until(
        "!!document.querySelector('#taskmanagers') && document.querySelector('#taskmanagers').innerText.includes('local')",
        LIMIT,
    );
    let row = b.eval("document.querySelector('#taskmanagers tr:nth-child(2)').innerText");
    let cells: Vec<String> = row
        .as_str()
        .unwrap()
        .split('\t')
        .map(|c| c.trim().to_owned())
        .collect();
    assert_eq!(&cells[1..4], &["4", "2", "2"], "{row}");
    api.patch(&format!("/jobs/{job}"));
}
