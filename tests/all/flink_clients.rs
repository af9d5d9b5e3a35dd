//! Flink's own clients against a real `weir session`: Apache Flink 2.3's
//! CLI (Java, from the PyPI wheels) runs each verb that works over REST,
//! and the `flink-rest-client` package from PyPI reads and drives jobs.
//! `scripts/test.sh` installs both.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use weir_tests::cluster::{Api, SessionProcess};
use weir_tests::{CLICK_EVENT_COUNT_WASM, temp_dir};

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");
const LIMIT: Duration = Duration::from_secs(60);

fn tools() -> PathBuf {
    std::env::var_os("WEIR_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/weir-tools")
        })
}

fn installed(var: &str, default: PathBuf) -> PathBuf {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/test.sh, which installs Flink's clients (or set {var})",
        p.display()
    );
    p
}

/// Flink's CLI, talking to `api`'s session.
struct FlinkCli {
    exe: PathBuf,
    address: String,
}

impl FlinkCli {
    fn new(api: &Api) -> FlinkCli {
        let exe = installed(
            "WEIR_FLINK_CLI",
            tools().join("flink-2.3.0/pyflink/bin/flink"),
        );
        let address = api
            .url("")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        FlinkCli { exe, address }
    }

    /// Runs `flink VERB ARGS -m address`; returns (exit ok, stdout, stderr).
    fn run(&self, verb: &str, args: &[&str]) -> (bool, String, String) {
        let mut c = Command::new(&self.exe);
        c.arg(verb)
            .args(["-m", &self.address, "-Drest.retry.max-attempts=0"])
            .args(args)
            .env("TZ", "UTC");
        let o: Output = crate::run_with_timeout(&mut c, Duration::from_secs(120));
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        (o.status.success(), out, err)
    }

    fn ok(&self, verb: &str, args: &[&str]) -> String {
        let (ok, out, err) = self.run(verb, args);
        assert!(ok, "flink {verb} {args:?} failed:\n{out}\n{err}");
        out
    }
}

fn clicks(api: &Api, jar: &str, parallelism: u32) -> String {
    let job = api.run(
        jar,
        json!({
            "programArgsList": ["--rate", "500", "--discard"],
            "parallelism": parallelism,
            "flinkConfiguration": {
                "execution.checkpointing.interval": "1s",
                "execution.checkpointing.num-retained": "100",
            },
        }),
    );
    api.wait_for_state(&job, "RUNNING", LIMIT);
    job
}

fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

/// The number in "Checkpoint N for job" / "Checkpoint(FULL) N for job".
fn checkpoint_number(out: &str) -> u64 {
    let line = line_with(out, " completed.");
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no checkpoint number in {line:?}"))
}

fn completed_checkpoint(api: &Api, job: &str, n: u64) -> Value {
    let (status, v) = api.get(&format!("/jobs/{job}/checkpoints/details/{n}"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "COMPLETED", "{v}");
    v
}

#[test]
fn flink_cli_verbs_work_against_a_session() {
    let dir = temp_dir();
    let s = SessionProcess::start(Path::new(WEIR), &dir.path().join("data"), 4, &[]);
    let api = s.api();
    let flink = FlinkCli::new(&api);
    let jar = api.upload_file(CLICK_EVENT_COUNT_WASM);

    // No jobs yet.
    let out = flink.ok("list", &[]);
    assert!(out.contains("No running jobs."), "{out}");
    assert!(out.contains("No scheduled jobs."), "{out}");

    let job = clicks(&api, &jar, 2);
    for args in [&[][..], &["-r"][..]] {
        let out = flink.ok("list", args);
        assert!(out.contains("Running/Restarting Jobs"), "{out}");
        assert!(
            line_with(&out, &job).ends_with(": Click Event Count (RUNNING)"),
            "{out}"
        );
    }
    let out = flink.ok("list", &["-s"]);
    assert!(
        out.contains("No scheduled jobs.") && !out.contains(&job),
        "{out}"
    );

    // checkpoint: the number printed is a completed checkpoint of the job.
    let out = flink.ok("checkpoint", &[&job]);
    assert!(
        out.contains(&format!("Triggering checkpoint for job {job}.")),
        "{out}"
    );
    let line = line_with(&out, "completed.");
    assert!(
        line.starts_with("Checkpoint ") && line.ends_with(&format!("for job {job} completed."))
    );
    let n = checkpoint_number(&out);
    completed_checkpoint(&api, &job, n);

    // checkpoint -full: self-contained, so it uploaded all of its state.
    let out = flink.ok("checkpoint", &["-full", &job]);
    assert!(
        line_with(&out, "completed.").starts_with("Checkpoint(FULL) "),
        "{out}"
    );
    let full = checkpoint_number(&out);
    assert!(full > n);
    let c = completed_checkpoint(&api, &job, full);
    assert_eq!(c["checkpointed_size"], c["state_size"], "{c}");
    // Periodic checkpoints go on after it, and the job keeps running.
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, v) = api.get(&format!("/jobs/{job}/checkpoints"));
        if v["latest"]["completed"]["id"].as_u64().unwrap_or(0) > full {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint after the full one: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // savepoint, then its disposal.
    let sp_dir = dir.path().join("sp");
    let out = flink.ok("savepoint", &[&job, sp_dir.to_str().unwrap()]);
    let location = line_with(&out, "Savepoint completed. Path: ")
        .trim_start_matches("Savepoint completed. Path: ")
        .trim()
        .to_owned();
    let path = location.trim_start_matches("file://").to_owned();
    assert!(Path::new(&path).join("_metadata").exists(), "{out}");
    assert!(out.contains("You can resume your program from this savepoint"));
    let out = flink.ok("savepoint", &["-d", &path]);
    assert!(
        out.contains(&format!("Savepoint '{path}' disposed.")),
        "{out}"
    );
    assert!(!Path::new(&path).exists());

    // Failures reach the client quickly, with their cause; the job runs on.
    let cases: [(&str, Vec<String>, &str); 3] = [
        (
            "savepoint",
            vec![job.clone(), "/proc/weir-no-such-dir".into()],
            "weir.SavepointFailure",
        ),
        (
            "savepoint",
            vec![
                "-d".into(),
                dir.path().join("nothing").display().to_string(),
            ],
            "is not a savepoint",
        ),
        (
            "savepoint",
            vec![
                "-d".into(),
                format!(
                    "{}/chk-{n}",
                    s.data_dir.join("checkpoints").join(&job).display()
                ),
            ],
            "is a checkpoint, which its job manages",
        ),
    ];
    for (verb, args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let start = Instant::now();
        let (ok, out, err) = flink.run(verb, &args);
        assert!(!ok, "flink {verb} {args:?} should fail:\n{out}");
        assert!(
            err.contains(needle),
            "flink {verb} {args:?}: {needle:?} not in\n{err}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "flink {verb} {args:?} took {:?} to fail (a malformed answer makes it retry)",
            start.elapsed()
        );
    }
    assert_eq!(api.state(&job), "RUNNING");

    // cancel a second job.
    let other = clicks(&api, &jar, 1);
    let out = flink.ok("cancel", &[&other]);
    assert!(out.contains(&format!("Cancelled job {other}.")), "{out}");
    api.wait_for_state(&other, "CANCELED", LIMIT);

    // stop -p --drain: a savepoint, and the job ends.
    let stop_dir = dir.path().join("stopped");
    let out = flink.ok("stop", &["-p", stop_dir.to_str().unwrap(), "--drain", &job]);
    assert!(
        out.contains(&format!(
            "Draining job \"{job}\" with a CANONICAL savepoint."
        )),
        "{out}"
    );
    let location = line_with(&out, "Savepoint completed. Path: ")
        .trim_start_matches("Savepoint completed. Path: ")
        .trim()
        .trim_start_matches("file://")
        .to_owned();
    assert!(location.starts_with(stop_dir.to_str().unwrap()), "{out}");
    assert!(Path::new(&location).join("_metadata").exists());
    api.wait_for_state(&job, "FINISHED", LIMIT);

    // list -a shows both as terminated; the plain list none.
    let out = flink.ok("list", &["-a"]);
    assert!(out.contains("Terminated Jobs"), "{out}");
    assert!(line_with(&out, &job).ends_with("(FINISHED)"), "{out}");
    assert!(line_with(&out, &other).ends_with("(CANCELED)"), "{out}");
    let out = flink.ok("list", &[]);
    assert!(out.contains("No running jobs."), "{out}");

    // stop with a savepoint restores: a new job from it runs.
    let (status, v) = api.post(
        &format!("/jars/{jar}/run?savepointPath={location}&parallelism=2"),
        json!({"programArgsList": ["--rate", "500", "--discard"]}),
    );
    assert_eq!(status, 200, "{v}");
    let restored = v["jobid"].as_str().unwrap().to_owned();
    api.wait_for_state(&restored, "RUNNING", LIMIT);
    let (_, c) = api.get(&format!("/jobs/{restored}/checkpoints"));
    assert_eq!(
        c["latest"]["restored"]["external_path"]
            .as_str()
            .map(|p| p.contains(&location)),
        Some(true),
        "{c}"
    );
    let (_, d) = api.get(&format!("/jobs/{restored}"));
    assert_eq!(d["vertices"][0]["parallelism"], 2, "{d}");
    flink.ok("cancel", &[&restored]);
}

#[test]
fn flink_rest_client_from_pypi_drives_a_session() {
    let python = installed("WEIR_FLINK_REST_PYTHON", tools().join("venv/bin/python"));
    let dir = temp_dir();
    let s = SessionProcess::start(Path::new(WEIR), &dir.path().join("data"), 4, &[]);
    let api = s.api();
    let url = api.url("");
    let (host, port) = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .rsplit_once(':')
        .unwrap();
    let script = r#"
import json, sys, time
from flink_rest_client import FlinkRestClient
host, port, wasm, sp = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
c = FlinkRestClient.get(host=host, port=port)
out = {}
out["overview"] = c.overview()
up = c.jars.upload(wasm)
jar = up["filename"].split("/")[-1]
out["upload"] = up
job = c.jars.run(jar, arguments={"rate": 500, "discard": ""}, parallelism=2)
out["job"] = job
for _ in range(600):
    if c.jobs.get(job)["state"] == "RUNNING":
        break
    time.sleep(0.05)
out["ids"] = c.jobs.job_ids()
out["overview_jobs"] = c.jobs.overview()
out["details"] = c.jobs.get(job)
out["config"] = c.jobs.get_config(job)
out["exceptions"] = c.jobs.get_exceptions(job)
out["plan"] = c.jobs.get_plan(job)
out["checkpoint_config"] = c.jobs.get_checkpointing_configuration(job)
out["vertex_ids"] = c.jobs.get_vertex_ids(job)
v = c.jobs.get_vertex(job, out["vertex_ids"][-1])
out["vertex"] = v.details()
out["backpressure"] = v.backpressure()
out["watermarks"] = v.watermarks()
out["vertex_metrics"] = v.metrics(v.metric_names())
out["taskmanagers"] = c.taskmanagers.all()
out["taskmanager"] = c.taskmanagers.get(out["taskmanagers"][0]["id"])
out["job_metrics"] = c.jobs.get_metrics(job)
out["accumulators"] = c.jobs.get_accumulators(job)
out["result_running"] = c.jobs.get_execution_result(job)
out["jobmanager_metrics"] = c.jobmanager.metrics()
out["jobmanager_config_keys"] = sorted(c.jobmanager.config().keys())[:3]
trigger = c.jobs.create_savepoint(job, sp)
for _ in range(600):
    st = trigger.status
    if st["status"]["id"] == "COMPLETED":
        break
    time.sleep(0.05)
out["savepoint"] = st
out["cancelled"] = c.jobs.terminate(job)
for _ in range(600):
    if c.jobs.get(job)["state"] == "CANCELED":
        break
    time.sleep(0.05)
out["final_state"] = c.jobs.get(job)["state"]
out["result_ended"] = c.jobs.get_execution_result(job)
out["jar_deleted"] = c.jars.delete(jar)
print(json.dumps(out))
"#;
    let sp = dir.path().join("sp");
    let mut c = Command::new(python);
    c.args([
        "-c",
        script,
        host,
        port,
        CLICK_EVENT_COUNT_WASM,
        sp.to_str().unwrap(),
    ]);
    let o = crate::run_with_timeout(&mut c, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "the client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    let job = v["job"].as_str().unwrap();
    assert_eq!(v["upload"]["status"], "success", "{v}");
    assert!(v["ids"].as_array().unwrap().iter().any(|i| i == job), "{v}");
    assert_eq!(v["details"]["state"], "RUNNING");
    assert_eq!(v["config"]["jid"], job);
    assert_eq!(v["config"]["execution-config"]["job-parallelism"], 2);
    assert!(v["exceptions"]["exceptionHistory"]["entries"].is_array());
    assert_eq!(v["plan"]["jid"], job);
    assert_eq!(v["checkpoint_config"]["mode"], "exactly_once");
    let vertex = &v["vertex"];
    assert_eq!(vertex["parallelism"], 2, "{vertex}");
    assert_eq!(vertex["subtasks"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["backpressure"]["status"], "ok");
    assert!(v["watermarks"].is_array());
    assert!(
        v["vertex_metrics"]["numRecordsIn"].as_str().is_some(),
        "{}",
        v["vertex_metrics"]
    );
    assert_eq!(
        v["taskmanagers"][0]["slotsNumber"], 4,
        "{}",
        v["taskmanagers"]
    );
    assert_eq!(
        v["jobmanager_metrics"]["taskSlotsTotal"], "4",
        "{}",
        v["jobmanager_metrics"]
    );
    let sp_location = v["savepoint"]["operation"]["location"]
        .as_str()
        .unwrap_or("");
    assert!(sp_location.contains("savepoint-"), "{}", v["savepoint"]);
    assert!(
        Path::new(sp_location.trim_start_matches("file://"))
            .join("_metadata")
            .exists()
    );
    assert_eq!(v["taskmanager"]["id"], v["taskmanagers"][0]["id"]);
    assert!(
        v["job_metrics"]["numberOfCompletedCheckpoints"].is_string(),
        "{}",
        v["job_metrics"]
    );
    assert_eq!(v["accumulators"]["job-accumulators"], json!([]));
    assert_eq!(v["result_running"]["status"]["id"], "IN_PROGRESS");
    assert_eq!(
        v["result_ended"]["job-execution-result"]["application-status"], "CANCELED",
        "{}",
        v["result_ended"]
    );
    assert_eq!(v["cancelled"], true);
    assert_eq!(v["final_state"], "CANCELED");
    assert_eq!(v["jar_deleted"], true);
    assert_eq!(api.get("/jars").1["files"], json!([]));
}
