//! What a hostile tenant tries against a session's secrets, files, native
//! libraries and resources, and a job that prints: each is refused with
//! the option or limit named, or contained, and the session carries on.

use crate::weir;
use serde_json::{Value, json};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};
use weir_cluster::tenancy::hash_token;
use weir_tests::cluster::{Api, SessionProcess, error_of};
use weir_tests::{HOSTILE_WASM, KAFKA_WORDCOUNT_WASM, temp_dir};

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");
const LIMIT: Duration = Duration::from_secs(60);
const A: &str = "token-of-hostile-tenant";
const SESSION_SECRET: &str = "session-env-secret-4242";
const TENANT_SECRET: &str = "tenant-a-db-password-77";

fn start(dir: &Path, extra: &str) -> SessionProcess {
    let files = dir.join("a-files");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, files.join("escape")).unwrap();
    let config = dir.join("session.yaml");
    std::fs::write(
        &config,
        format!(
            "weir.tenants.a.token-sha256: {}\n\
             weir.tenants.a.files: {}\n\
             weir.tenants.a.secrets.db: {TENANT_SECRET}\n\
             weir.tenants.a.checkpoint-min-interval: 1s\n{extra}",
            hex::encode(hash_token(A)),
            files.display(),
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    SessionProcess::start_with_env(
        Path::new(WEIR),
        &dir.join("data"),
        4,
        &["--config", &config],
        &[("WEIR_TEST_SESSION_SECRET", SESSION_SECRET)],
    )
}

/// A listener standing for a database the tenant controls: keeps what
/// every connection sends first.
fn fake_database() -> (String, std::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            conn.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).unwrap_or(0);
            buf.truncate(n);
            if tx.send(buf).is_err() {
                break;
            }
        }
    });
    (addr, rx)
}

fn run(a: &Api, jar: &str, args: &[&str], config: Value) -> (u16, Value) {
    a.post(
        &format!("/jars/{jar}/run"),
        json!({
            "programArgsList": args,
            "flinkConfiguration": config,
        }),
    )
}

fn refused(status: u16, v: &Value, words: &[&str]) {
    let e = error_of(v);
    assert!((400..500).contains(&status), "{status}: {e}");
    for w in words {
        assert!(e.contains(w), "{w:?} is not in: {e}");
    }
}

#[test]
fn tenants_reach_no_secret_file_or_library_of_the_session() {
    let dir = temp_dir();
    let mut s = start(dir.path(), "");
    let a = s.api_as(A);
    let jar = a.upload_file(KAFKA_WORDCOUNT_WASM);
    let (db, seen) = fake_database();
    let wordcount = |user: &str| {
        vec![
            "--bootstrap-servers".to_owned(),
            "127.0.0.1:1".to_owned(),
            "--db-url".to_owned(),
            format!("postgres://{db}/app"),
            "--db-user".to_owned(),
            user.to_owned(),
        ]
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    // The session's environment is not the tenant's to read.
    let asks = wordcount("${WEIR_TEST_SESSION_SECRET}");
    let (status, v) = run(&a, &jar, &args(&asks), json!({}));
    refused(
        status,
        &v,
        &[
            "WEIR_TEST_SESSION_SECRET",
            "weir.tenants.a.secrets.WEIR_TEST_SESSION_SECRET",
        ],
    );
    assert!(!v.to_string().contains(SESSION_SECRET));
    assert!(
        seen.recv_timeout(Duration::from_millis(500)).is_err(),
        "the session connected to the tenant's listener"
    );

    // Its own secret works, and is shown nowhere.
    let uses = wordcount("${db}");
    let (status, v) = run(
        &a,
        &jar,
        &args(&uses),
        json!({"restart-strategy.type": "none"}),
    );
    assert_eq!(status, 200, "{v}");
    let job = v["jobid"].as_str().unwrap().to_owned();
    let first = seen.recv_timeout(LIMIT).expect("the sink connects");
    assert!(
        String::from_utf8_lossy(&first).contains(TENANT_SECRET),
        "the tenant's own secret is what its sink sends"
    );
    let start = Instant::now();
    while !["FAILED", "CANCELED"].contains(&a.state(&job).as_str()) {
        assert!(start.elapsed() < LIMIT, "the job never failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, exceptions) = a.get(&format!("/jobs/{job}/exceptions"));
    let (_, config) = a.get(&format!("/jobs/{job}/config"));
    for shown in [exceptions.to_string(), config.to_string()] {
        assert!(!shown.contains(TENANT_SECRET), "{shown}");
        assert!(!shown.contains(SESSION_SECRET), "{shown}");
    }

    // Native code, commands and the session's files through client
    // properties and URLs: refused, the key named.
    for (key, value, named) in [
        (
            "connector.kafka-source.properties.plugin.library.paths",
            "/tmp/evil.so",
            "plugin.library.paths",
        ),
        (
            "connector.kafka-source.properties.sasl.kerberos.kinit.cmd",
            "touch /tmp/pwned",
            "sasl.kerberos.kinit.cmd",
        ),
        (
            "connector.kafka-source.properties.ssl.key.location",
            "/etc/shadow",
            "ssl.key.location",
        ),
        (
            "connector.kafka-source.properties.sasl.mechanism",
            "GSSAPI",
            "sasl.mechanism",
        ),
        (
            "connector.db-sink.url",
            "postgres://127.0.0.1:5432/app?sslkey=/etc/shadow",
            "sslkey",
        ),
        (
            "connector.db-sink.url",
            "postgres:///app?host=/var/run/postgresql",
            "host",
        ),
    ] {
        let (status, v) = run(&a, &jar, &args(&uses), json!({ key: value }));
        refused(status, &v, &[named]);
    }
    assert!(!Path::new("/tmp/pwned").exists());

    // A link in the tenant's folder leads nowhere else.
    let hostile = a.upload_file(HOSTILE_WASM);
    let through_link = dir.path().join("a-files/escape/out.txt");
    let (status, v) = a.post(
        &format!("/jars/{hostile}/run"),
        json!({"entryClass": "flaky", "programArgsList": ["--fail-until", "0", "--output",
            through_link.display().to_string()]}),
    );
    refused(status, &v, &["outside tenant a's folder", "links resolved"]);
    assert!(!dir.path().join("elsewhere/out.txt").exists());

    // Checkpoints no more often than the tenant's minimum.
    let (status, v) = a.post(
        &format!("/jars/{hostile}/run"),
        json!({"entryClass": "burn", "flinkConfiguration":
            {"execution.checkpointing.interval": "1ms"}}),
    );
    refused(status, &v, &["weir.tenants.a.checkpoint-min-interval"]);

    // Nothing the session logged shows a secret.
    s.process.signal("TERM");
    s.process.wait(LIMIT);
    let log = s.process.stderr();
    assert!(
        !log.contains(TENANT_SECRET) && !log.contains(SESSION_SECRET),
        "{log}"
    );
}

#[test]
fn uploads_jobs_and_storage_are_bounded() {
    let dir = temp_dir();
    let s = start(
        dir.path(),
        "weir.tenants.a.max-module-size: 6mb\n\
         weir.tenants.a.storage-quota: 4kb\n\
         jobstore.max-capacity: 3\n",
    );
    let a = s.api_as(A);
    let hostile = std::fs::read(HOSTILE_WASM).unwrap();

    // An oversized upload is refused as it streams in.
    let started = Instant::now();
    let (status, v) = a.upload("big.wasm", vec![0u8; 12 << 20]);
    assert_eq!(status, 413, "{v}");
    assert!(
        error_of(&v).contains("weir.tenants.a.max-module-size"),
        "{v}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // An upload flood: at most two at once per tenant, the rest told to
    // wait; the session answers meanwhile.
    let results: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let api = s.api_as(A);
                let bytes = hostile.clone();
                scope.spawn(move || api.upload(&format!("flood-{i}.wasm"), bytes).0)
            })
            .collect();
        let (status, _) = a.get("/overview");
        assert_eq!(status, 200);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        results.iter().all(|s| [200, 429].contains(s)),
        "{results:?}"
    );
    assert!(results.contains(&200), "{results:?}");
    let jar = a.upload_file(HOSTILE_WASM);

    // A job flood: ended jobs beyond jobstore.max-capacity are forgotten,
    // and so are their metrics.
    let mut ids = Vec::new();
    for _ in 0..6 {
        let id = a.run(
            &jar,
            json!({"entryClass": "burn", "programArgsList": ["--records", "10"]}),
        );
        a.wait_for_state(&id, "FINISHED", LIMIT);
        ids.push(id);
    }
    let (_, overview) = a.get("/jobs/overview");
    let listed = overview["jobs"].as_array().unwrap().len();
    assert!(listed <= 3, "{overview}");
    let (status, _) = a.get(&format!("/jobs/{}", ids[0]));
    assert_eq!(status, 404, "the oldest ended job is forgotten");
    let (_, metrics) = a.get_text("/metrics");
    assert!(!metrics.contains(&ids[0]), "metrics of a forgotten job");

    // Checkpoints over the tenant's storage quota fail the job, naming it.
    let out = dir.path().join("a-files/sums.txt");
    let id = a.run(
        &jar,
        json!({"entryClass": "flaky",
            "programArgsList": ["--fail-until", "0", "--records", "100000", "--rate", "2000",
                "--output", out.display().to_string()],
            "flinkConfiguration": {"execution.checkpointing.interval": "1s",
                "restart-strategy.type": "none"}}),
    );
    let start = Instant::now();
    while a.state(&id) != "FAILED" {
        assert!(
            start.elapsed() < LIMIT,
            "the job outgrew its quota unnoticed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, e) = a.get(&format!("/jobs/{id}/exceptions"));
    assert!(
        e.to_string().contains("weir.tenants.a.storage-quota"),
        "{e}"
    );
}

#[test]
fn compiling_a_module_is_bounded_in_time() {
    let dir = temp_dir();
    let s = start(dir.path(), "weir.compile.timeout: 1ms\n");
    let (status, v) = s
        .api_as(A)
        .upload("job.wasm", std::fs::read(HOSTILE_WASM).unwrap());
    assert_eq!(status, 400, "{v}");
    assert!(
        error_of(&v).contains("weir.compile.timeout"),
        "{}",
        error_of(&v)
    );
    let (status, _) = s.api_as(A).get("/overview");
    assert_eq!(status, 200, "the session carries on");
}

#[test]
fn a_job_that_prints_runs_on_and_its_output_is_logged() {
    let mut c = weir();
    c.env("WEIR_LOG", "warn,weir=info")
        .args(["run", "--local", "--entry", "chatty"])
        .args(["-D", "weir.guest.output-lines-per-second=50"])
        .arg(HOSTILE_WASM)
        .args(["--", "--records", "20000"]);
    let o = crate::run_with_timeout(&mut c, LIMIT);
    let err = crate::stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("record          0 xxxx"), "stdout is logged");
    assert!(err.contains("checked record 0"), "stderr is logged");
    assert!(err.contains("task="), "the task is named");
    assert!(
        err.contains("weir.guest.output-lines-per-second"),
        "dropped lines are counted"
    );
    let logged = err.lines().filter(|l| l.contains("checked record")).count();
    assert!(logged < 2_000, "{logged} lines: the rate limit holds");
}
