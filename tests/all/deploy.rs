//! The Kubernetes manifests and the image: the manifests validate against
//! Kubernetes' schemas, the image builds with the README's steps, and the
//! processes the manifests start — their arguments, configuration file and
//! secrets — run a job on loopback, with S3 (moto) in MinIO's place.

use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use weir_tests::process::{Running, S3Server};
use weir_tests::{WORDCOUNT_WASM, count_words, file, format_counts, temp_dir, write_corpus};

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");
const LIMIT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn manifests() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

/// Every document of every manifest.
fn documents() -> Vec<Value> {
    let mut docs = Vec::new();
    for m in manifests() {
        let text = std::fs::read_to_string(&m).unwrap();
        for part in text.split("\n---\n") {
            let v: Value =
                serde_yaml_ng::from_str(part).unwrap_or_else(|e| panic!("{}: {e}", m.display()));
            if !v.is_null() {
                docs.push(v);
            }
        }
    }
    docs
}

fn kind<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The validator, from the test tools `scripts/test.sh` installs.
fn validator() -> PathBuf {
    let tools = std::env::var_os("WEIR_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var("HOME").unwrap()).join(".cache/weir-tools"));
    let venv = tools.join("venv/bin/kubernetes-validate");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("kubernetes-validate")
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let out = Command::new(validator())
        .arg("--strict")
        .args(manifests())
        .output()
        .expect("kubernetes-validate is not installed: run the tests with scripts/test.sh");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = documents();
    for (k, n) in [
        ("Deployment", "weir-coordinator"),
        ("Deployment", "weir-worker"),
        ("Deployment", "weir-minio"),
        ("Service", "weir-rest"),
        ("Service", "weir-cluster"),
        ("ConfigMap", "weir-config"),
        ("Secret", "weir-secrets"),
    ] {
        kind(&docs, k, n);
    }
    assert_eq!(
        kind(&docs, "Service", "weir-rest")["spec"]["ports"][0]["port"],
        8081
    );
}

#[test]
fn the_image_builds_with_the_readme_s_steps() {
    let docker = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let quick = std::fs::read_to_string(repo().join("scripts/quickstart.sh")).unwrap();
    assert!(quick.contains("install_build_deps") && quick.contains("cargo build -p weir-cli"));
    assert!(docker.contains("source scripts/env.sh && install_build_deps"));
    assert!(docker.contains("cargo build -p weir-cli"));
    assert_eq!(
        docker.matches("FROM ").count(),
        2,
        "a build stage and a runtime stage"
    );
    assert!(docker.contains("ENTRYPOINT [\"/usr/local/bin/weir\"]"));
}

/// A process a manifest's container starts, on loopback: its arguments,
/// with the configuration file and directories moved into `dir`, its
/// secrets as environment, and `extra` (`-D` flags) first.
fn container(doc: &Value, dir: &Path, config: &Path, extra: &[String]) -> Command {
    let c = &doc["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = strings(&c["args"])
        .into_iter()
        .map(|a| match a.as_str() {
            "/etc/weir/weir.yaml" => config.display().to_string(),
            a if a.starts_with("/var/lib/weir") => dir.join(&a[1..]).display().to_string(),
            _ => a,
        })
        .collect();
    let mut cmd = Command::new(WEIR);
    cmd.env("WEIR_LOG", "warn,weir=info").args(extra).args(args);
    let docs = documents();
    let secret = kind(&docs, "Secret", "weir-secrets");
    for (k, v) in secret["stringData"].as_mapping().unwrap() {
        cmd.env(k.as_str().unwrap(), v.as_str().unwrap());
    }
    cmd
}

fn endpoint(p: &mut Running, what: &str) -> String {
    let line = p.wait_for_log(what, LIMIT);
    line.split(what)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned()
}

/// The coordinator and two task managers as the manifests start them,
/// with their configuration and secrets: a word count at parallelism 4
/// runs over the task managers, checkpointing to S3.
#[test]
fn the_manifests_processes_run_a_job_on_loopback() {
    let s3 = S3Server::start();
    s3.create_bucket("weir");
    let dir = temp_dir();
    let docs = documents();
    let config = dir.path().join("weir.yaml");
    let data = kind(&docs, "ConfigMap", "weir-config")["data"]["weir.yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(data.contains("high-availability.storageDir: s3://"));
    assert!(data.contains("high-availability.type: lease"));
    assert_eq!(
        kind(&docs, "Deployment", "weir-coordinator")["spec"]["replicas"],
        2,
        "a leader and a standby"
    );
    std::fs::write(&config, data).unwrap();
    let endpoint_flag = |k: &str, v: &str| vec!["-D".to_owned(), format!("{k}={v}")];
    let mut loopback: Vec<String> = Vec::new();
    for (k, v) in [
        ("rest.address", "127.0.0.1"),
        ("weir.cluster.bind-address", "127.0.0.1"),
        ("s3.endpoint", &s3.endpoint),
    ] {
        loopback.extend(endpoint_flag(k, v));
    }
    let mut coordinator_flags = loopback.clone();
    coordinator_flags.extend(endpoint_flag("rest.port", "0"));
    coordinator_flags.extend(endpoint_flag("weir.cluster.port", "0"));
    let mut c = container(
        kind(&docs, "Deployment", "weir-coordinator"),
        dir.path(),
        &config,
        &coordinator_flags,
    );
    let mut coordinator = Running::start(&mut c);
    coordinator.wait_for_log("Leading the sessions", LIMIT);
    let rest = endpoint(&mut coordinator, "REST endpoint: ");
    let join = endpoint(&mut coordinator, "Cluster endpoint: ");
    let worker = kind(&docs, "Deployment", "weir-worker");
    let mut workers: Vec<Running> = (0..2)
        .map(|i| {
            let mut cmd = container(
                worker,
                &dir.path().join(format!("w{i}")),
                &config,
                &loopback,
            );
            let args: Vec<String> = cmd
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let mut fixed = Command::new(WEIR);
            fixed.envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
            let mut prev = String::new();
            for a in args {
                let a = match prev.as_str() {
                    "--join" => join.clone(),
                    "--port" => "0".to_owned(),
                    _ => a,
                };
                prev = a.clone();
                fixed.arg(&a);
            }
            cmd = fixed;
            Running::start(&mut cmd)
        })
        .collect();
    for w in &mut workers {
        w.wait_for_log("joined the coordinator", LIMIT);
    }

    let input = file(&dir, "input.txt");
    write_corpus(&input, 5_000, 8, 300, 3).unwrap();
    let output = file(&dir, "out.txt");
    let mut run = crate::weir();
    run.args(["--cluster", &rest, "run", "-p", "4", WORDCOUNT_WASM, "--"])
        .args(["--input", input.to_str().unwrap()])
        .args(["--output", output.to_str().unwrap()]);
    let o = crate::run_with_timeout(&mut run, LIMIT);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        format_counts(&count_words(&std::fs::read_to_string(&input).unwrap()))
    );
    for w in &mut workers {
        w.wait_for_log("tasks of job", Duration::from_secs(5));
    }
    for mut p in workers.into_iter().chain([coordinator]) {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
}
