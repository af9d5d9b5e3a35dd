//! Client verbs against a session cluster's REST API (`--cluster URL`):
//! `run`, `list`, `info`, `cancel`, `stop`, `savepoint`, `checkpoints`.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How to reach the cluster and how to print answers.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterOptions {
    /// REST address of the session cluster (Flink's -m); with standby
    /// sessions, each one's, separated by commas (the leader is the one
    /// that answers).
    #[arg(
        long,
        short = 'm',
        global = true,
        env = "WEIR_CLUSTER",
        default_value = "http://localhost:8081",
        value_name = "URL"
    )]
    pub cluster: String,
    /// Output format of client verbs.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// API token, for sessions with tenants (`weir token` makes one).
    #[arg(long, global = true, env = "WEIR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

/// A REST client for one cluster.
pub struct Client {
    base: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    pub output: OutputFormat,
}

impl Client {
    pub fn new(opts: &ClusterOptions) -> Result<Client> {
        let bases: Vec<String> = weir_runtime::url_list(&opts.cluster)
            .into_iter()
            .map(|b| match b.contains("://") {
                true => b,
                false => format!("http://{b}"),
            })
            .collect();
        let mut base = bases.first().cloned().unwrap_or_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &opts.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the API token has characters a header cannot carry")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot create the HTTP client")?;
        if bases.len() > 1 {
            // Sessions standing by do not answer: the leader is the one
            // that does.
            base = rt
                .block_on(async {
                    for b in &bases {
                        let r = http
                            .get(format!("{b}/config"))
                            .timeout(Duration::from_secs(3))
                            .send()
                            .await;
                        if r.is_ok_and(|r| r.status().is_success()) {
                            return Some(b.clone());
                        }
                    }
                    None
                })
                .with_context(|| {
                    format!(
                        "none of the sessions {} answers; is one of them leading?",
                        bases.join(", ")
                    )
                })?;
        }
        Ok(Client {
            base,
            http,
            rt,
            output: opts.output,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn answer(&self, what: &str, r: reqwest::Result<reqwest::Response>) -> Result<Value> {
        let r = r.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the session cluster at {} ({what}): {e}; start one with `weir \
                 session`, or point --cluster (or WEIR_CLUSTER) at it",
                self.base
            )
        })?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let errors = body["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| status.to_string());
            bail!("{what} failed ({}): {errors}", status.as_u16());
        }
        Ok(body)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.rt.block_on(async {
            let r = self.http.get(self.url(path)).send().await;
            self.answer(&format!("GET {path}"), r).await
        })
    }

    pub fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value> {
        self.rt.block_on(async {
            let r = self
                .http
                .request(method.clone(), self.url(path))
                .json(&body)
                .send()
                .await;
            self.answer(&format!("{method} {path}"), r).await
        })
    }

    /// Uploads a module with a progress line; returns the jar id.
    pub fn upload(&self, file: &Path) -> Result<String> {
        let bytes = std::fs::read(file)
            .with_context(|| format!("cannot read the job file {}", file.display()))?;
        let total = bytes.len();
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "job.wasm".into());
        let tty = std::io::stderr().is_terminal();
        let started = Instant::now();
        let label = name.clone();
        let chunks: Vec<bytes::Bytes> = bytes::Bytes::from(bytes)
            .chunks(256 * 1024)
            .map(bytes::Bytes::copy_from_slice)
            .collect();
        let mut sent = 0usize;
        let stream = futures_util_stream(chunks, move |n| {
            sent += n;
            if tty {
                eprint!(
                    "\rUploading {label}: {:>3}% ({} of {})",
                    sent * 100 / total.max(1),
                    human_bytes(sent as u64),
                    human_bytes(total as u64)
                );
                let _ = std::io::stderr().flush();
            }
        });
        let part = reqwest::multipart::Part::stream_with_length(
            reqwest::Body::wrap_stream(stream),
            total as u64,
        )
        .file_name(name.clone())
        .mime_str("application/wasm")?;
        let form = reqwest::multipart::Form::new().part("jarfile", part);
        let body = self.rt.block_on(async {
            let r = self
                .http
                .post(self.url("/jars/upload"))
                .multipart(form)
                .send()
                .await;
            self.answer("uploading the job", r).await
        });
        if tty {
            eprintln!();
        }
        let body = body?;
        eprintln!(
            "Uploaded {name} ({}) in {} ms",
            human_bytes(total as u64),
            started.elapsed().as_millis()
        );
        body["id"]
            .as_str()
            .map(str::to_owned)
            .context("the cluster answered the upload without a jar id")
    }
}

/// A stream over `chunks` that reports each chunk's size as it is sent.
fn futures_util_stream(
    chunks: Vec<bytes::Bytes>,
    mut progress: impl FnMut(usize) + Send + 'static,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    futures::stream::iter(chunks).map(move |c| {
        progress(c.len());
        Ok(c)
    })
}

use futures::StreamExt as _;

pub fn human_bytes(n: u64) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / 1048576.0),
    }
}

fn time(ms: u64) -> String {
    if ms == 0 {
        return String::new();
    }
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Prints rows as a table with aligned columns.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// What `weir run` submits to a cluster.
pub struct Submission<'a> {
    pub job: &'a Path,
    pub entry: Option<String>,
    pub args: Vec<String>,
    pub parallelism: Option<u32>,
    pub savepoint: Option<String>,
    pub allow_non_restored: bool,
    pub detached: bool,
    pub config: Vec<(String, String)>,
}

const TERMINAL: [&str; 3] = ["FINISHED", "CANCELED", "FAILED"];

pub fn run(client: &Client, s: Submission<'_>) -> Result<ExitCode> {
    let jar = client.upload(s.job)?;
    let mut body = json!({
        "programArgsList": s.args,
        "allowNonRestoredState": s.allow_non_restored,
    });
    if let Some(e) = s.entry {
        body["entryClass"] = json!(e);
    }
    if let Some(p) = s.parallelism {
        body["parallelism"] = json!(p);
    }
    if let Some(sp) = s.savepoint {
        body["savepointPath"] = json!(sp);
    }
    if !s.config.is_empty() {
        body["flinkConfiguration"] = Value::Object(
            s.config
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        );
    }
    let started = Instant::now();
    let r = client.send(reqwest::Method::POST, &format!("/jars/{jar}/run"), body)?;
    let job = r["jobid"]
        .as_str()
        .context("no job id in the answer")?
        .to_owned();
    if client.output == OutputFormat::Json {
        print_json(&r);
    } else {
        println!("Job has been submitted with JobID {job}");
    }
    if s.detached {
        return Ok(ExitCode::SUCCESS);
    }
    let mut shown_running = false;
    loop {
        let d = client.get(&format!("/jobs/{job}"))?;
        let state = d["state"].as_str().unwrap_or("").to_owned();
        if state == "RUNNING" && !shown_running {
            eprintln!(
                "Job {job} is RUNNING ({} ms after submission)",
                started.elapsed().as_millis()
            );
            shown_running = true;
        }
        if TERMINAL.contains(&state.as_str()) {
            return Ok(match state.as_str() {
                "FINISHED" => {
                    println!("Job with JobID {job} has finished.");
                    println!("Job Runtime: {} ms", d["duration"].as_u64().unwrap_or(0));
                    ExitCode::SUCCESS
                }
                "CANCELED" => {
                    println!("Job with JobID {job} was cancelled.");
                    ExitCode::from(130)
                }
                _ => {
                    let e = client.get(&format!("/jobs/{job}/exceptions"))?;
                    eprintln!(
                        "error: job {job} failed: {}",
                        e["root-exception"]
                            .as_str()
                            .unwrap_or("(no cause recorded)")
                    );
                    ExitCode::FAILURE
                }
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn list(client: &Client, all: bool) -> Result<ExitCode> {
    let o = client.get("/jobs/overview")?;
    let jobs: Vec<&Value> = o["jobs"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let shown: Vec<&Value> = jobs
        .into_iter()
        .filter(|j| all || !TERMINAL.contains(&j["state"].as_str().unwrap_or("")))
        .collect();
    if client.output == OutputFormat::Json {
        print_json(&json!({ "jobs": shown }));
        return Ok(ExitCode::SUCCESS);
    }
    if shown.is_empty() {
        println!("No {}jobs.", if all { "" } else { "running or scheduled " });
        return Ok(ExitCode::SUCCESS);
    }
    println!("------------------ Running/Restarted Jobs -------------------");
    for j in &shown {
        println!(
            "{} : {} : {} ({})",
            time(j["start-time"].as_u64().unwrap_or(0)),
            j["jid"].as_str().unwrap_or(""),
            j["name"].as_str().unwrap_or(""),
            j["state"].as_str().unwrap_or("")
        );
    }
    println!("--------------------------------------------------------------");
    Ok(ExitCode::SUCCESS)
}

pub fn info(client: &Client, job: &str) -> Result<ExitCode> {
    let d = client.get(&format!("/jobs/{job}"))?;
    if client.output == OutputFormat::Json {
        print_json(&d);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} ({})  {}",
        d["name"].as_str().unwrap_or(""),
        d["jid"].as_str().unwrap_or(""),
        d["state"].as_str().unwrap_or("")
    );
    println!(
        "started {}, running for {} s, {} restarts",
        time(d["start-time"].as_u64().unwrap_or(0)),
        d["duration"].as_u64().unwrap_or(0) / 1000,
        d["restarts"].as_u64().unwrap_or(0)
    );
    let rows: Vec<Vec<String>> = d["vertices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let m = &v["metrics"];
            vec![
                v["name"].as_str().unwrap_or("").to_owned(),
                v["parallelism"].to_string(),
                v["status"].as_str().unwrap_or("").to_owned(),
                m["read-records"].to_string(),
                m["write-records"].to_string(),
                format!("{}%", m["busyTimeMsPerSecond"].as_u64().unwrap_or(0) / 10),
                format!(
                    "{}%",
                    m["backPressuredTimeMsPerSecond"].as_u64().unwrap_or(0) / 10
                ),
            ]
        })
        .collect();
    table(
        &[
            "VERTEX",
            "PARALLELISM",
            "STATUS",
            "RECORDS IN",
            "RECORDS OUT",
            "BUSY",
            "BACKPRESSURED",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub fn cancel(client: &Client, job: &str) -> Result<ExitCode> {
    println!("Cancelling job {job}.");
    client.send(
        reqwest::Method::PATCH,
        &format!("/jobs/{job}?mode=cancel"),
        json!({}),
    )?;
    // Wait for the job to end, as Flink's CLI does.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let d = client.get(&format!("/jobs/{job}"))?;
        if TERMINAL.contains(&d["state"].as_str().unwrap_or("")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("Cancelled job {job}.");
    Ok(ExitCode::SUCCESS)
}

/// Waits for a savepoint operation, showing how long it has taken.
fn await_savepoint(client: &Client, job: &str, trigger: &str) -> Result<String> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    loop {
        let s = client.get(&format!("/jobs/{job}/savepoints/{trigger}"))?;
        if s["status"]["id"] == "COMPLETED" {
            if tty {
                eprintln!();
            }
            if let Some(loc) = s["operation"]["location"].as_str() {
                return Ok(loc.to_owned());
            }
            bail!(
                "the savepoint failed: {}",
                s["operation"]["failure-cause"]["stack-trace"]
                    .as_str()
                    .unwrap_or("no cause given")
            );
        }
        if tty {
            eprint!(
                "\rWaiting for response... ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn stop(client: &Client, job: &str, dir: Option<String>, drain: bool) -> Result<ExitCode> {
    println!("Suspending job \"{job}\" with a savepoint.");
    let mut body = json!({ "drain": drain });
    if let Some(d) = dir {
        body["targetDirectory"] = json!(d);
    }
    let r = client.send(reqwest::Method::POST, &format!("/jobs/{job}/stop"), body)?;
    let trigger = r["request-id"]
        .as_str()
        .context("no request id")?
        .to_owned();
    let location = await_savepoint(client, job, &trigger)?;
    if client.output == OutputFormat::Json {
        print_json(&json!({ "job": job, "savepoint": location }));
    } else {
        println!("Savepoint completed. Path: {location}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What `weir upgrade` asks for besides the job and the module.
#[derive(Debug, Default)]
pub struct UpgradeArgs {
    pub allow_non_restored: bool,
    pub entry: Option<String>,
    pub savepoint_dir: Option<String>,
    pub restart: bool,
    pub args: Vec<String>,
}

pub fn upgrade(client: &Client, job: &str, module: &Path, a: UpgradeArgs) -> Result<ExitCode> {
    let jar = client.upload(module)?;
    let mut body = json!({ "jarId": jar, "allowNonRestoredState": a.allow_non_restored });
    if let Some(e) = a.entry {
        body["entryClass"] = json!(e);
    }
    if let Some(d) = a.savepoint_dir {
        body["targetDirectory"] = json!(d);
    }
    if !a.args.is_empty() {
        body["programArgsList"] = json!(a.args);
    }
    if a.restart {
        body["restart"] = json!(true);
    }
    println!("Upgrading job \"{job}\" to {}.", module.display());
    let r = client.send(reqwest::Method::POST, &format!("/jobs/{job}/upgrade"), body)?;
    let trigger = r["request-id"]
        .as_str()
        .context("no request id")?
        .to_owned();
    let started = Instant::now();
    let op = wait_operation(client, &format!("/jobs/{job}/upgrade/{trigger}"))?;
    if client.output == OutputFormat::Json {
        print_json(&op);
    } else {
        for line in op["report"].as_array().into_iter().flatten() {
            println!("  {}", line.as_str().unwrap_or_default());
        }
        match op["location"].as_str() {
            Some(loc) if op["mode"] == "hot-swap" => {
                println!("Changed modules at the barrier of checkpoint {loc}");
            }
            Some(loc) => println!("Savepoint completed. Path: {loc}"),
            None => {}
        }
    }
    let cause = op["failure-cause"]["stack-trace"]
        .as_str()
        .unwrap_or("no cause given");
    match op["result"].as_str() {
        Some("UPGRADED") => {
            let how = if op["mode"] == "hot-swap" {
                "changed in place, without a restart, in"
            } else {
                "stopped with a savepoint and restarted in"
            };
            println!(
                "Job \"{job}\" runs the new version ({how} {:.1} s); it is on probation for \
                 weir.upgrade.probation.",
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some("ROLLED_BACK") => bail!("the upgrade was rolled back: {cause}"),
        _ => bail!("the upgrade failed: {cause}"),
    }
}

/// Polls an asynchronous operation until it completes; its `operation`.
fn wait_operation(client: &Client, route: &str) -> Result<Value> {
    loop {
        let s = client.get(route)?;
        if s["status"]["id"] == "COMPLETED" {
            return Ok(s["operation"].clone());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `weir rescale ID -p N`: a savepoint, and a restart from it at
/// parallelism N under the same job id.
pub fn rescale(
    client: &Client,
    job: &str,
    parallelism: u32,
    savepoint_dir: Option<String>,
) -> Result<ExitCode> {
    let mut query = reqwest::Url::parse("http://weir/").expect("a valid URL");
    query
        .query_pairs_mut()
        .append_pair("parallelism", &parallelism.to_string());
    if let Some(d) = savepoint_dir {
        query.query_pairs_mut().append_pair("targetDirectory", &d);
    }
    let route = format!(
        "/jobs/{job}/rescaling?{}",
        query.query().unwrap_or_default()
    );
    println!("Rescaling job \"{job}\" to parallelism {parallelism}.");
    let r = client.send(reqwest::Method::PATCH, &route, json!({}))?;
    let trigger = r["request-id"]
        .as_str()
        .context("no request id")?
        .to_owned();
    let started = Instant::now();
    let op = wait_operation(client, &format!("/jobs/{job}/rescaling/{trigger}"))?;
    if client.output == OutputFormat::Json {
        print_json(&op);
    } else if let Some(loc) = op["location"].as_str() {
        println!("Savepoint completed. Path: {loc}");
    }
    let cause = op["failure-cause"]["stack-trace"]
        .as_str()
        .unwrap_or("no cause given");
    match op["result"].as_str() {
        Some("UPGRADED") => {
            println!(
                "Job \"{job}\" runs at parallelism {parallelism} (stopped with a savepoint and \
                 restarted in {:.1} s).",
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some("ROLLED_BACK") => bail!(
            "the rescale was rolled back, and the job runs at its previous parallelism: {cause}"
        ),
        _ => bail!("the rescale failed: {cause}"),
    }
}

pub fn savepoint(client: &Client, job: &str, dir: Option<String>) -> Result<ExitCode> {
    println!("Triggering savepoint for job {job}.");
    let mut body = json!({ "cancel-job": false });
    if let Some(d) = dir {
        body["target-directory"] = json!(d);
    }
    let r = client.send(
        reqwest::Method::POST,
        &format!("/jobs/{job}/savepoints"),
        body,
    )?;
    let trigger = r["request-id"]
        .as_str()
        .context("no request id")?
        .to_owned();
    println!("Waiting for response...");
    let location = await_savepoint(client, job, &trigger)?;
    if client.output == OutputFormat::Json {
        print_json(&json!({ "job": job, "savepoint": location }));
    } else {
        println!("Savepoint completed. Path: {location}");
        println!("You can resume your program from this savepoint with the run command.");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn checkpoints(client: &Client, job: &str) -> Result<ExitCode> {
    let c = client.get(&format!("/jobs/{job}/checkpoints"))?;
    if client.output == OutputFormat::Json {
        print_json(&c);
        return Ok(ExitCode::SUCCESS);
    }
    let counts = &c["counts"];
    println!(
        "{} completed, {} failed, {} in progress",
        counts["completed"], counts["failed"], counts["in_progress"]
    );
    if let Some(p) = c["latest"]["completed"]["external_path"].as_str() {
        println!("latest completed: {p}");
    }
    if let Some(p) = c["latest"]["restored"]["external_path"].as_str() {
        println!("restored from: {p}");
    }
    let rows: Vec<Vec<String>> = c["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            vec![
                h["id"].to_string(),
                h["checkpoint_type"].as_str().unwrap_or("").to_owned(),
                h["status"].as_str().unwrap_or("").to_owned(),
                time(h["trigger_timestamp"].as_u64().unwrap_or(0)),
                format!("{} ms", h["end_to_end_duration"].as_u64().unwrap_or(0)),
                human_bytes(h["state_size"].as_u64().unwrap_or(0)),
                human_bytes(h["checkpointed_size"].as_u64().unwrap_or(0)),
                h["external_path"]
                    .as_str()
                    .or(h["failure_message"].as_str())
                    .unwrap_or("")
                    .to_owned(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "TYPE",
            "STATUS",
            "TRIGGERED",
            "DURATION",
            "STATE",
            "UPLOADED",
            "PATH",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc() {
        assert_eq!(super::time(0), "");
        assert_eq!(super::time(86_400_000), "1970-01-02T00:00:00Z");
    }
}
