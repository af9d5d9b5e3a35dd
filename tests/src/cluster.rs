//! A real `weir session` for tests, and a small client for its REST API.

use crate::process::Running;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A `weir session` process on a free loopback port.
pub struct SessionProcess {
    pub process: Running,
    pub url: String,
    pub data_dir: PathBuf,
}

impl SessionProcess {
    /// Starts `weir session` with its data in `data_dir`; `extra` are more
    /// arguments (`-D key=value`).
    pub fn start(weir: &Path, data_dir: &Path, slots: u32, extra: &[&str]) -> SessionProcess {
        Self::start_with_env(weir, data_dir, slots, extra, &[])
    }

    /// As [`SessionProcess::start`], with more environment variables.
    pub fn start_with_env(
        weir: &Path,
        data_dir: &Path,
        slots: u32,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> SessionProcess {
        let mut cmd = Command::new(weir);
        // Its working directory is its data directory, so that a test sees
        // anything written relative to it.
        std::fs::create_dir_all(data_dir).unwrap();
        cmd.current_dir(data_dir)
            .envs(env.iter().copied())
            .env("WEIR_LOG", "warn,weir=info")
            .arg("session")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--port", "0", "--slots", &slots.to_string()])
            .args(extra);
        let mut process = Running::start(&mut cmd);
        let line = process.wait_for_log("REST endpoint: ", Duration::from_secs(60));
        let url = line
            .split("REST endpoint: ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("the session prints its REST endpoint")
            .to_owned();
        SessionProcess {
            process,
            url,
            data_dir: data_dir.to_owned(),
        }
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url)
    }

    /// `weir run -d -p 1 job -- args` against this session, then polls
    /// until the job is RUNNING; cancels it and returns the time taken.
    pub fn time_to_running(&self, weir: &Path, job: &Path, args: &[&str]) -> Duration {
        let started = Instant::now();
        let o = Command::new(weir)
            .env("WEIR_LOG", "error")
            .args(["--cluster", &self.url, "run", "-d", "-p", "1"])
            .arg(job)
            .arg("--")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        let id = out
            .split("JobID ")
            .nth(1)
            .map(str::trim)
            .expect("a job id")
            .to_owned();
        let api = self.api();
        loop {
            if api.state(&id) == "RUNNING" {
                let d = started.elapsed();
                api.patch(&format!("/jobs/{id}?mode=cancel"));
                api.wait_for_state(&id, "CANCELED", Duration::from_secs(30));
                return d;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The cluster endpoint task managers join (a session started with
    /// `--cluster-port`).
    pub fn cluster_url(&mut self) -> String {
        let line = self
            .process
            .wait_for_log("Cluster endpoint: ", Duration::from_secs(10));
        line.split("Cluster endpoint: ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("the session prints its cluster endpoint")
            .to_owned()
    }

    /// A client that sends `token` with every call.
    pub fn api_as(&self, token: &str) -> Api {
        let mut api = Api::new(&self.url);
        api.token = Some(token.to_owned());
        api
    }
}

impl Drop for SessionProcess {
    fn drop(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
    }
}

/// A `weir worker` (task manager) process.
pub struct WorkerProcess {
    pub process: Running,
}

impl WorkerProcess {
    /// Starts `weir [global...] worker --join URL --slots N` and waits until
    /// it joined; `global` are options before the command (`-D k=v`).
    pub fn start(weir: &Path, join: &str, slots: u32, global: &[&str]) -> WorkerProcess {
        let mut w = Self::spawn(weir, join, slots, global);
        w.process
            .wait_for_log("joined the coordinator", Duration::from_secs(60));
        w
    }

    /// Starts it without waiting for it to join.
    pub fn spawn(weir: &Path, join: &str, slots: u32, global: &[&str]) -> WorkerProcess {
        let mut cmd = Command::new(weir);
        cmd.env("WEIR_LOG", "warn,weir=info").args(global).args([
            "worker",
            "--join",
            join,
            "--slots",
            &slots.to_string(),
        ]);
        WorkerProcess {
            process: Running::start(&mut cmd),
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

impl Drop for WorkerProcess {
    /// SIGTERM, so that it removes its working files; SIGKILL if it is
    /// still there after a while.
    fn drop(&mut self) {
        if matches!(self.process.child.try_wait(), Ok(None)) {
            // A stopped one (SIGSTOP) takes the TERM once continued.
            let pid = self.pid().to_string();
            for sig in ["-TERM", "-CONT"] {
                let _ = Command::new("kill").args([sig, &pid]).status();
            }
            self.process.wait(Duration::from_secs(5));
        }
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
    }
}

/// A blocking client for the REST API: every call returns the status
/// and the JSON body.
pub struct Api {
    pub base: String,
    /// Sent as `Authorization: Bearer` when set.
    pub token: Option<String>,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Api {
            base: base.trim_end_matches('/').to_owned(),
            token: None,
            http: reqwest::Client::new(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn call(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        self.rt.block_on(async {
            let r = req.send().await.expect("the session answers");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (status, v)
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call(self.http.get(self.url(path)))
    }

    pub fn get_text(&self, path: &str) -> (u16, String) {
        self.rt.block_on(async {
            let mut req = self.http.get(self.url(path));
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(self.http.post(self.url(path)).json(&body))
    }

    pub fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        self.call(
            self.http
                .post(self.url(path))
                .header("content-type", content_type)
                .body(body),
        )
    }

    pub fn patch(&self, path: &str) -> (u16, Value) {
        self.call(self.http.patch(self.url(path)))
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.call(self.http.delete(self.url(path)))
    }

    pub fn request(&self, method: &str, path: &str) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        self.call(self.http.request(m, self.url(path)))
    }

    /// A request with a JSON body.
    pub fn request_json(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        self.call(self.http.request(m, self.url(path)).json(&body))
    }

    /// Any request, answered as (status, content type, body).
    pub fn raw(
        &self,
        method: &str,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, String, Vec<u8>) {
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = self.http.request(m, self.url(path_and_query));
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        if !body.is_empty() {
            req = req.body(body);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        self.rt.block_on(async {
            let r = req.send().await.expect("the session answers");
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            (status, ct, r.bytes().await.unwrap_or_default().to_vec())
        })
    }

    /// Uploads `bytes` as the multipart field `jarfile`.
    pub fn upload(&self, name: &str, bytes: Vec<u8>) -> (u16, Value) {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
        let form = reqwest::multipart::Form::new().part("jarfile", part);
        self.call(self.http.post(self.url("/jars/upload")).multipart(form))
    }

    /// Uploads a file and returns its jar id.
    pub fn upload_file(&self, path: &str) -> String {
        let bytes = std::fs::read(path).unwrap();
        let name = Path::new(path).file_name().unwrap().to_string_lossy();
        let (status, v) = self.upload(&name, bytes);
        assert_eq!(status, 200, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    /// Runs an uploaded jar; returns the job id.
    pub fn run(&self, jar: &str, body: Value) -> String {
        let (status, v) = self.post(&format!("/jars/{jar}/run"), body);
        assert_eq!(status, 200, "{v}");
        v["jobid"].as_str().unwrap().to_owned()
    }

    pub fn state(&self, job: &str) -> String {
        let (_, v) = self.get(&format!("/jobs/{job}"));
        v["state"].as_str().unwrap_or("").to_owned()
    }

    /// Waits until `job` is in `state`; panics with the job's exceptions
    /// if it ends otherwise.
    pub fn wait_for_state(&self, job: &str, state: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            let s = self.state(job);
            if s == state {
                return;
            }
            let ended = ["FINISHED", "CANCELED", "FAILED"].contains(&s.as_str());
            if ended || start.elapsed() > limit {
                let (_, e) = self.get(&format!("/jobs/{job}/exceptions"));
                panic!("job {job} is {s}, not {state}: {e}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls an upgrade until `done` holds for its operation (or it
    /// completes, without `done`); returns the operation.
    pub fn wait_for_upgrade(
        &self,
        job: &str,
        trigger: &str,
        done: impl Fn(&Value) -> bool,
        limit: Duration,
    ) -> Value {
        let start = Instant::now();
        loop {
            let (status, v) = self.get(&format!("/jobs/{job}/upgrade/{trigger}"));
            assert_eq!(status, 200, "{v}");
            if done(&v["operation"]) {
                return v["operation"].clone();
            }
            assert!(
                start.elapsed() < limit,
                "the upgrade did not get there: {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Upgrades `job` (`POST /jobs/:id/upgrade` with `body`) and waits for
    /// the operation's first result; its trigger and the operation.
    pub fn upgrade(&self, job: &str, body: Value, limit: Duration) -> (String, Value) {
        let (status, t) = self.post(&format!("/jobs/{job}/upgrade"), body);
        assert_eq!(status, 202, "{t}");
        let trigger = t["request-id"].as_str().expect("a request id").to_owned();
        let op = self.wait_for_upgrade(job, &trigger, |op| op.get("result").is_some(), limit);
        (trigger, op)
    }

    /// How the job came to run each of its modules (`submitted`,
    /// `swapped`, `upgraded`, `rolled-back`), oldest first; and the
    /// versions' list.
    pub fn versions(&self, job: &str) -> (Vec<String>, Value) {
        let (status, v) = self.get(&format!("/jobs/{job}/versions"));
        assert_eq!(status, 200, "{v}");
        let how = v["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["how"].as_str().unwrap().to_owned())
            .collect();
        (how, v["versions"].clone())
    }

    /// Waits for a savepoint operation; returns its location or failure.
    pub fn wait_for_savepoint(
        &self,
        job: &str,
        trigger: &str,
        limit: Duration,
    ) -> Result<String, String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let (status, v) = self.get(&format!("/jobs/{job}/savepoints/{trigger}"));
            assert_eq!(status, 200, "{v}");
            if v["status"]["id"] == "COMPLETED" {
                return match v["operation"]["location"].as_str() {
                    Some(l) => Ok(l.to_owned()),
                    None => Err(v["operation"]["failure-cause"]["stack-trace"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned()),
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("savepoint {trigger} did not complete within {limit:?}");
    }
}

/// The message of a JSON error answer.
/// The directory of a job's latest completed checkpoint.
pub fn latest_checkpoint(api: &Api, job: &str) -> Option<PathBuf> {
    let (_, v) = api.get(&format!("/jobs/{job}/checkpoints"));
    let path = v["latest"]["completed"]["external_path"].as_str()?;
    Some(PathBuf::from(path.strip_prefix("file://").unwrap_or(path)))
}

/// The bytes of records in flight a checkpoint holds, over its tasks:
/// (input, output).
pub fn in_flight(checkpoint: &Path) -> (u64, u64) {
    let Ok(bytes) = std::fs::read(checkpoint.join("_metadata")) else {
        return (0, 0);
    };
    // A header line, then the JSON body.
    let nl = bytes.iter().position(|&b| b == b'\n').unwrap_or(0);
    let body: Value = serde_json::from_slice(&bytes[nl + 1..]).expect("metadata body");
    let mut sizes = (0, 0);
    for t in body["tasks"].as_array().expect("tasks") {
        sizes.0 += t["in_flight"]["input"]["size"].as_u64().unwrap_or(0);
        sizes.1 += t["in_flight"]["output"]["size"].as_u64().unwrap_or(0);
    }
    sizes
}

pub fn error_of(v: &Value) -> String {
    v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|| panic!("not a JSON error: {v}"))
}
