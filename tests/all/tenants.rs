//! A session with tenants: every route needs a token and shows a tenant
//! only its own modules, jobs and savepoints; hostile modules fail alone
//! with the limit they hit while another tenant's exactly-once job stays
//! exact; quotas, import and connector policies answer with what to do.

use crate::weir;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use weir_cluster::tenancy::hash_token;
use weir_tests::cluster::{Api, SessionProcess, error_of};
use weir_tests::{CLICK_EVENT_COUNT_WASM, HOSTILE_WASM, NOT_A_JOB_WASM, flaky_sums, temp_dir};

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");
const LIMIT: Duration = Duration::from_secs(60);
const ADMIN: &str = "admin-token";
const A: &str = "token-of-tenant-a";
const B: &str = "token-of-tenant-b";
const C: &str = "token-of-tenant-c";

/// A session with tenants `a` (tight quotas), `b`, `c` (fuel metering) and
/// an admin.
fn start(dir: &Path) -> SessionProcess {
    let h = |t: &str| hex::encode(hash_token(t));
    let a_files = dir.join("a-files");
    let b_files = dir.join("b-files");
    std::fs::create_dir_all(&a_files).unwrap();
    std::fs::create_dir_all(&b_files).unwrap();
    let config = dir.join("session.yaml");
    std::fs::write(
        &config,
        format!(
            "weir.admin.token-sha256: {}\n\
             weir.tenants.a.token-sha256: {}\n\
             weir.tenants.a.slots: 3\n\
             weir.tenants.a.jobs: 2\n\
             weir.tenants.a.max-module-size: 8mb\n\
             weir.tenants.a.memory-per-instance: 64mb\n\
             weir.tenants.a.cpu-per-call: 500ms\n\
             weir.tenants.a.files: {}\n\
             weir.tenants.b.token-sha256: {}\n\
             weir.tenants.b.slots: 2\n\
             weir.tenants.b.files: {}\n\
             weir.tenants.c.token-sha256: {}\n\
             weir.tenants.c.fuel-per-call: 50000000\n",
            h(ADMIN),
            h(A),
            a_files.display(),
            h(B),
            b_files.display(),
            h(C)
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    SessionProcess::start(
        Path::new(WEIR),
        &dir.join("data"),
        8,
        &["--config", &config],
    )
}

fn fails_with(status: u16, v: &Value, want_status: u16, words: &[&str]) {
    let e = error_of(v);
    assert_eq!(status, want_status, "{e}");
    for w in words {
        assert!(e.contains(w), "{w:?} is not in: {e}");
    }
}

/// Runs `entry` of the hostile module as a tenant, with no restarts.
fn run_a(a: &Api, jar: &str, entry: &str, args: &[&str]) -> (u16, Value) {
    a.post(
        &format!("/jars/{jar}/run"),
        json!({
            "entryClass": entry,
            "programArgsList": args,
            "flinkConfiguration": {"restart-strategy.type": "none"},
        }),
    )
}

fn root_cause(api: &Api, job: &str) -> String {
    let (_, e) = api.get(&format!("/jobs/{job}/exceptions"));
    e["root-exception"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn hostile_modules_fail_alone_while_another_tenants_job_stays_exact() {
    let dir = temp_dir();
    let s = start(dir.path());
    let (a, b) = (s.api_as(A), s.api_as(B));

    // Tenant b: an exactly-once job that runs through everything below.
    let records = 20_000u64;
    let out = dir.path().join("b-files/sums.txt");
    let b_jar = b.upload_file(HOSTILE_WASM);
    let b_job = b.run(
        &b_jar,
        json!({
            "entryClass": "flaky",
            "programArgsList": ["--fail-until", "0", "--records", records.to_string(),
                "--rate", "1000", "--output", out.display().to_string()],
            "flinkConfiguration": {"execution.checkpointing.interval": "200ms"},
        }),
    );
    b.wait_for_state(&b_job, "RUNNING", LIMIT);
    // Running (or, on a slow machine, already done), never failed.
    let b_running = || {
        let state = b.state(&b_job);
        assert!(
            state == "RUNNING" || state == "FINISHED",
            "tenant b's job was disturbed: {state}"
        );
    };

    let a_jar = a.upload_file(HOSTILE_WASM);
    // Functions that fail their job with the cause, and only their job.
    let memory = "memory reached its limit of 64.0 MiB";
    let cpu = "ran longer than 500ms (weir.guest.call-timeout)";
    for (entry, causes) in [
        ("loop_in_map", [cpu].as_slice()),
        // Whichever limit they reach first, depending on the machine (a
        // busy one may stop a memory bomb on time before it fills 64 MiB).
        ("memory_bomb", &[memory, cpu]),
        ("huge_output", &[memory, cpu]),
        ("recursion", &["overflowed the stack"]),
        ("trap", &["unreachable"]),
        ("panic_in_map", &["record 7 is poisoned"]),
    ] {
        let (status, v) = run_a(&a, &a_jar, entry, &[]);
        assert_eq!(status, 200, "{entry}: {v}");
        let job = v["jobid"].as_str().unwrap().to_owned();
        a.wait_for_state(&job, "FAILED", LIMIT);
        let cause_got = root_cause(&a, &job);
        assert!(
            causes.iter().any(|c| cause_got.contains(c)),
            "{entry}: {cause_got}"
        );
        b_running();
    }
    // A plan that raises its own limits is held to the session's (tenant b
    // has no memory quota of its own).
    let (status, v) = run_a(&b, &b_jar, "escape", &[]);
    assert_eq!(status, 200, "{v}");
    let escaped = v["jobid"].as_str().unwrap().to_owned();
    b.wait_for_state(&escaped, "FAILED", LIMIT);
    let cause = root_cause(&b, &escaped);
    assert!(
        cause.contains("memory reached its limit of 1 GiB"),
        "{cause}"
    );
    b_running();

    // Deterministic metering: tenant c's calls get a fixed amount of fuel.
    let c = s.api_as(C);
    let c_jar = c.upload_file(HOSTILE_WASM);
    let (status, v) = run_a(&c, &c_jar, "loop_in_map", &[]);
    assert_eq!(status, 200, "{v}");
    let metered = v["jobid"].as_str().unwrap().to_owned();
    c.wait_for_state(&metered, "FAILED", LIMIT);
    let cause = root_cause(&c, &metered);
    assert!(
        cause.contains("used more than 50000000 fuel (weir.guest.fuel-per-call)"),
        "{cause}"
    );
    b_running();

    // Plans that are refused with the reason.
    let (status, v) = run_a(&a, &a_jar, "loop_in_plan", &[]);
    fails_with(status, &v, 400, &["ran longer than 500ms"]);
    let (status, v) = run_a(&a, &a_jar, "many_operators", &[]);
    fails_with(status, &v, 400, &["10004 operators", "at most 2000"]);
    b_running();

    // Uploads that are refused with the reason.
    let upload = |name: &str, bytes: Vec<u8>| a.upload(name, bytes);
    let (status, v) = upload("notes.wasm", b"these are notes, not a module".to_vec());
    fails_with(status, &v, 400, &["not WebAssembly"]);
    let (status, v) = upload("core.wasm", wat::parse_str("(module)").unwrap());
    fails_with(status, &v, 400, &["core WebAssembly module", "component"]);
    let (status, v) = upload("greeter.wasm", std::fs::read(NOT_A_JOB_WASM).unwrap());
    fails_with(
        status,
        &v,
        400,
        &["not a Weir job", "weir:stream/job@0.1.0"],
    );
    let newer = wat::parse_str(
        r#"(component (instance $i) (export "weir:stream/job@0.2.0" (instance $i)))"#,
    )
    .unwrap();
    let (status, v) = upload("newer.wasm", newer);
    fails_with(status, &v, 400, &["weir:stream/job@0.2.0", "rebuild"]);
    let http = wat::parse_str(
        r#"(component
            (import "wasi:http/outgoing-handler@0.2.0" (instance))
            (import "wasi:io/streams@0.2.0" (instance))
            (import "evil:net/raw" (instance)))"#,
    )
    .unwrap();
    let (status, v) = upload("fetcher.wasm", http);
    fails_with(
        status,
        &v,
        403,
        &[
            "wasi:http/outgoing-handler@0.2.0, evil:net/raw",
            "weir.tenants.a.imports",
        ],
    );
    assert!(!error_of(&v).contains("wasi:io/streams"), "{v}");
    let mut big = b"\0asm\x0d\0\x01\0".to_vec();
    big.resize(9 << 20, 0);
    let (status, v) = upload("big.wasm", big);
    fails_with(
        status,
        &v,
        413,
        &["weir.tenants.a.max-module-size", "9437184 bytes"],
    );
    b_running();

    // The sandbox: no host files, no environment, no network.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let (status, v) = run_a(&a, &a_jar, "sandbox_probe", &["--connect", &target]);
    assert_eq!(status, 200, "{v}");
    let probe = v["jobid"].as_str().unwrap().to_owned();
    a.wait_for_state(&probe, "FINISHED", LIMIT);
    let mut session = s;
    session
        .process
        .wait_for_output("\"fs=denied env=0 net=denied\"", LIMIT);
    assert!(listener.accept().is_err(), "the guest reached the network");
    let s = session;

    // Quotas and policies.
    let burn = |a: &Api, p: u32| {
        a.post(
            &format!("/jars/{a_jar}/run"),
            json!({"entryClass": "burn", "parallelism": p}),
        )
    };
    let (status, v) = burn(&a, 4);
    fails_with(status, &v, 409, &["needs 4", "weir.tenants.a.slots"]);
    let (_, first) = burn(&a, 1);
    let (_, second) = burn(&a, 1);
    let (status, v) = burn(&a, 1);
    fails_with(status, &v, 409, &["runs 2 jobs", "weir.tenants.a.jobs"]);
    for j in [&first, &second] {
        let id = j["jobid"].as_str().unwrap();
        a.patch(&format!("/jobs/{id}?mode=cancel"));
        a.wait_for_state(id, "CANCELED", LIMIT);
    }
    let (status, v) = a.post(
        &format!("/jars/{a_jar}/run"),
        json!({"entryClass": "burn", "flinkConfiguration": {"weir.guest.memory-limit": "4gb"}}),
    );
    fails_with(status, &v, 403, &["cannot set weir.guest.memory-limit"]);
    let (status, v) = a.post(
        &format!("/jars/{a_jar}/run"),
        json!({"entryClass": "burn", "savepointPath": dir.path().join("data/savepoints/b").display().to_string()}),
    );
    fails_with(status, &v, 403, &["restores only from its own savepoints"]);
    let (status, v) = run_a(
        &a,
        &a_jar,
        "flaky",
        &["--fail-until", "0", "--output", &out.display().to_string()],
    );
    fails_with(
        status,
        &v,
        403,
        &["outside tenant a's folder", "weir.tenants.a.files"],
    );
    b_running();

    // Tenant b's job ends exactly as it would alone.
    b.wait_for_state(&b_job, "FINISHED", Duration::from_secs(120));
    let got = std::fs::read_to_string(&out).unwrap();
    assert!(
        got == flaky_sums(records),
        "tenant b's exactly-once output differs"
    );

    // Usage, per tenant, for billing.
    let (_, u) = b.get("/usage");
    let tenants = u["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 1, "b sees only itself: {u}");
    assert_eq!(tenants[0]["tenant"], "b");
    // The exactly-once job and the one that hit the memory limit on its
    // first record (its source read one batch of at most 100).
    assert_eq!(tenants[0]["jobs-total"], json!(2));
    let read = tenants[0]["records-in"].as_u64().unwrap();
    assert!((records + 1..=records + 100).contains(&read), "{u}");
    assert_eq!(tenants[0]["records-out"], json!(records));
    assert!(tenants[0]["busy-seconds"].as_f64().unwrap() > 0.0, "{u}");
    assert!(
        tenants[0]["guest-memory-peak-bytes"].as_u64().unwrap() >= 512 << 20,
        "the failed job's memory (up to its 1 GiB limit) is b's high-water mark: {u}"
    );
    let (_, u) = s.api_as(ADMIN).get("/usage");
    let names: Vec<&str> = u["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    let a_usage = &u["tenants"][0];
    assert!(a_usage["jobs-total"].as_u64().unwrap() >= 9, "{u}");
    assert_eq!(a_usage["quota"]["memory-per-instance"], json!(64u64 << 20));
    let (status, metrics) = b.get_text("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!(
            "weir_tenant_records_total{{tenant=\"b\",direction=\"in\"}} {read}"
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains("tenant=\"a\""),
        "b's metrics show tenant a"
    );
    assert!(metrics.contains(&b_job) && !metrics.contains(&probe));
    let (_, all) = s.api_as(ADMIN).get_text("/metrics");
    assert!(all.contains("tenant=\"a\"") && all.contains(&probe));
}

/// Every route of the API, with the ids of tenant a's resources.
fn routes(job: &str, jar: &str, trigger: &str) -> Vec<(&'static str, String, Value)> {
    let p = |s: &str| {
        s.replace("{job}", job)
            .replace("{jar}", jar)
            .replace("{trigger}", trigger)
            .replace("{vertex}", "0000000000000000000000000000abcd")
    };
    vec![
        ("GET", p("/config"), Value::Null),
        ("GET", p("/overview"), Value::Null),
        ("GET", p("/jobmanager/config"), Value::Null),
        ("GET", p("/jars"), Value::Null),
        ("POST", p("/jars/upload"), Value::Null),
        ("POST", p("/jars/{jar}/run"), json!({})),
        ("DELETE", p("/jars/{jar}"), Value::Null),
        ("GET", p("/jobs"), Value::Null),
        ("GET", p("/jobs/overview"), Value::Null),
        ("GET", p("/jobs/{job}"), Value::Null),
        ("POST", p("/jobs/{job}/savepoints"), json!({})),
        ("GET", p("/jobs/{job}/savepoints/{trigger}"), Value::Null),
        ("GET", p("/jobs/{job}/checkpoints"), Value::Null),
        ("GET", p("/jobs/{job}/checkpoints/config"), Value::Null),
        ("GET", p("/jobs/{job}/checkpoints/details/1"), Value::Null),
        ("GET", p("/jobs/{job}/exceptions"), Value::Null),
        ("POST", p("/jobs/{job}/checkpoints"), json!({})),
        ("GET", p("/jobs/{job}/checkpoints/{trigger}"), Value::Null),
        ("GET", p("/jobs/{job}/config"), Value::Null),
        ("GET", p("/jobs/{job}/plan"), Value::Null),
        ("GET", p("/jobs/{job}/execution-result"), Value::Null),
        ("GET", p("/jobs/{job}/accumulators"), Value::Null),
        ("GET", p("/jobs/metrics"), Value::Null),
        ("GET", p("/taskmanagers/local"), Value::Null),
        ("GET", p("/jobs/{job}/metrics"), Value::Null),
        ("GET", p("/jobs/{job}/vertices/{vertex}"), Value::Null),
        (
            "GET",
            p("/jobs/{job}/vertices/{vertex}/metrics"),
            Value::Null,
        ),
        (
            "GET",
            p("/jobs/{job}/vertices/{vertex}/watermarks"),
            Value::Null,
        ),
        (
            "GET",
            p("/jobs/{job}/vertices/{vertex}/backpressure"),
            Value::Null,
        ),
        (
            "POST",
            p("/savepoint-disposal"),
            json!({"savepoint-path": "{savepoint}"}),
        ),
        ("GET", p("/savepoint-disposal/{trigger}"), Value::Null),
        ("GET", p("/jobmanager/metrics"), Value::Null),
        ("GET", p("/taskmanagers"), Value::Null),
        ("POST", p("/jobs/{job}/stop"), json!({})),
        ("POST", p("/jobs/{job}/upgrade"), json!({"jarId": jar})),
        ("GET", p("/jobs/{job}/upgrade/{trigger}"), Value::Null),
        ("GET", p("/jobs/{job}/versions"), Value::Null),
        ("PATCH", p("/jobs/{job}/rescaling"), Value::Null),
        ("GET", p("/jobs/{job}/rescaling/{trigger}"), Value::Null),
        ("GET", p("/jobs/{job}/resource-requirements"), Value::Null),
        ("PUT", p("/jobs/{job}/resource-requirements"), json!({})),
        ("PATCH", p("/jobs/{job}"), Value::Null),
        ("GET", p("/usage"), Value::Null),
        ("GET", p("/metrics"), Value::Null),
    ]
}

#[test]
fn every_route_needs_a_token_and_shows_a_tenant_only_its_own() {
    let dir = temp_dir();
    let s = start(dir.path());
    let a = s.api_as(A);
    let jar = a.upload_file(CLICK_EVENT_COUNT_WASM);
    let job = a.run(
        &jar,
        json!({"programArgsList": ["--rate", "20", "--discard"],
               "flinkConfiguration": {"execution.checkpointing.interval": "200ms"}}),
    );
    a.wait_for_state(&job, "RUNNING", LIMIT);
    let (status, v) = a.post(&format!("/jobs/{job}/savepoints"), json!({}));
    assert_eq!(status, 202, "{v}");
    let trigger = v["request-id"].as_str().unwrap().to_owned();
    let savepoint = a.wait_for_savepoint(&job, &trigger, LIMIT).unwrap();
    assert!(
        savepoint.contains("/savepoints/a/"),
        "a's savepoints go to its own folder: {savepoint}"
    );
    std::thread::sleep(Duration::from_millis(500)); // a completed checkpoint

    // The table covers every route the OpenAPI document lists.
    let table: Vec<_> = routes("{jobid}", "{jarid}", "{triggerid}")
        .into_iter()
        .map(|(m, p, b)| {
            (
                m,
                p.replace("0000000000000000000000000000abcd", "{vertexid}")
                    .replace("/taskmanagers/local", "/taskmanagers/{taskmanagerid}"),
                b,
            )
        })
        .collect();
    let doc: Value = serde_json::from_str(weir_cluster::rest::OPENAPI).unwrap();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let path = path.replace("{checkpointid}", "1");
            let covered = path == "/openapi.json"
                || table
                    .iter()
                    .any(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path);
            assert!(covered, "{method} {path} is not in the route table");
        }
    }

    let secret = [job.as_str(), jar.as_str(), &savepoint, "\"a\""];
    let reveals = |v: &Value| {
        let text = v.to_string();
        secret
            .iter()
            .find(|x| text.contains(*x))
            .map(|x| x.to_string())
    };
    let anonymous = s.api();
    let stranger = s.api_as("not-a-token");
    let b = s.api_as(B);
    for prefix in ["", "/v1"] {
        for (method, path, body) in routes(&job, &jar, &trigger) {
            let body = match body["savepoint-path"].as_str() {
                Some("{savepoint}") => json!({"savepoint-path": savepoint}),
                _ => body,
            };
            if prefix == "/v1" && path == "/metrics" {
                continue; // Prometheus scrapes /metrics only
            }
            let path = format!("{prefix}{path}");
            for (who, api) in [("no token", &anonymous), ("a wrong token", &stranger)] {
                let (status, v) = api.request_json(method, &path, body.clone());
                assert_eq!(status, 401, "{method} {path} with {who}: {v}");
                assert_eq!(reveals(&v), None, "{method} {path} with {who}: {v}");
            }
            let (status, v) = if path.ends_with("/jars/upload") {
                b.upload("b.wasm", std::fs::read(CLICK_EVENT_COUNT_WASM).unwrap())
            } else if method == "GET" && path == "/metrics" {
                let (status, text) = b.get_text(&path);
                (status, Value::String(text))
            } else {
                b.request_json(method, &path, body.clone())
            };
            if path.contains(&job) || path.contains(&jar) {
                // Exactly the answer for ids that never existed.
                let (fake_job, fake_jar) = ("0123456789abcdef0123456789abcdef", "no-such-jar.wasm");
                let unknown = path.replace(&job, fake_job).replace(&jar, fake_jar);
                let (status_unknown, v_unknown) = b.request_json(method, &unknown, body.clone());
                assert_eq!(status, 404, "{method} {path} as tenant b: {v}");
                assert_eq!(status, status_unknown, "{method} {path}");
                assert_eq!(
                    v_unknown
                        .to_string()
                        .replace(fake_job, &job)
                        .replace(fake_jar, &jar),
                    v.to_string(),
                    "{method} {path}: tenant b can tell a's resource from a missing one"
                );
                continue;
            }
            let want =
                if path.ends_with("/jobmanager/config") || path.ends_with("/savepoint-disposal") {
                    403
                } else if path.contains("/savepoint-disposal/") {
                    404 // a's savepoint trigger is no disposal of b's
                } else {
                    200
                };
            assert_eq!(status, want, "{method} {path} as tenant b: {v}");
            assert_eq!(reveals(&v), None, "{method} {path} as tenant b: {v}");
        }
    }
    // Nothing b did touched a's job or module.
    assert_eq!(a.state(&job), "RUNNING");
    let (_, jars) = a.get("/jars");
    assert_eq!(jars["files"].as_array().unwrap().len(), 1, "{jars}");
    // What a and the admin see.
    let (status, v) = a.get(&format!("/jobs/{job}/checkpoints"));
    assert_eq!(status, 200, "{v}");
    let (_, jobs) = s.api_as(ADMIN).get("/jobs");
    assert!(jobs.to_string().contains(&job));
    let (status, v) = s.api_as(ADMIN).get("/jobmanager/config");
    assert_eq!(status, 200, "{v}");

    // The CLI: a token made by `weir token`, given with --token.
    let o = weir().args(["token", "--tenant", "c"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap();
    let hash = text
        .lines()
        .find_map(|l| l.strip_prefix("weir.tenants.c.token-sha256: "))
        .unwrap();
    assert_eq!(hash, hex::encode(hash_token(token)));
    let list = |token: Option<&str>| {
        let mut c = weir();
        c.args(["--cluster", &s.url, "list"]);
        if let Some(t) = token {
            c.args(["--token", t]);
        }
        c.output().unwrap()
    };
    let o = list(None);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("API token"),
        "{o:?}"
    );
    let o = list(Some(A));
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains(&job));
    let o = list(Some(B));
    assert!(!String::from_utf8_lossy(&o.stdout).contains(&job));
}

#[test]
fn the_web_ui_asks_for_a_token_and_shows_the_tenants_own_jobs() {
    let dir = temp_dir();
    let s = start(dir.path());
    let a = s.api_as(A);
    let jar = a.upload_file(CLICK_EVENT_COUNT_WASM);
    let job = a.run(
        &jar,
        json!({"programArgsList": ["--rate", "20", "--discard"]}),
    );
    a.wait_for_state(&job, "RUNNING", LIMIT);
    let mut browser = weir_tests::browser::Browser::start().expect(
        "chromium is needed for the web UI test; scripts/test.sh installs it (apt-get install chromium)",
    );
    let sign_in = |browser: &mut weir_tests::browser::Browser, token: &str| {
        browser.navigate(&format!("{}/#/", s.url));
        browser.eval("sessionStorage.clear(); true");
        browser.navigate(&format!("{}/#/?again", s.url));
        browser.wait_until("document.querySelector('#token-form') !== null", LIMIT);
        browser.eval(&format!(
            "document.querySelector('#token').value = '{token}'; \
             document.querySelector('#token-form button').click(); true"
        ));
    };
    sign_in(&mut browser, "wrong");
    browser.wait_until(
        "document.querySelector('#login') !== null && document.querySelector('#login').innerText.includes('not valid')",
        LIMIT,
    );
    sign_in(&mut browser, B);
    browser.wait_until("document.querySelector('#jobs') !== null", LIMIT);
    let shown = browser.eval("document.querySelector('#main').innerText");
    assert!(
        !shown.as_str().unwrap().contains(&job),
        "b sees a's job: {shown}"
    );
    // The metrics page is fetched with the token too, and shows b's own.
    browser.eval("location.hash = '#/metrics'; true");

    browser.wait_until(
        "!!document.querySelector('#metrics') && document.querySelector('#metrics').innerText.includes('weir_cluster_slots_total')",
        LIMIT,
    );
    let metrics = browser.eval("document.querySelector('#metrics').innerText");
    assert!(
        !metrics.as_str().unwrap().contains(&job),
        "b's metrics show a's job"
    );
    sign_in(&mut browser, A);
    browser.wait_until(
        &format!(
            "!!document.querySelector('#jobs') && document.querySelector('#jobs').innerText.includes('{job}')"
        ),
        LIMIT,
    );
}
