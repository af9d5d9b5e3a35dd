//! Tenants sharing a session, measured in one run:
//!
//! 1. the throughput of a quiet tenant's CPU-bound job while a noisy tenant
//!    runs an endless CPU-bound job beside it, as a ratio to running alone
//!    (one task slot each);
//! 2. what the sandbox's limits cost guest code: the same job with the
//!    session's defaults, under a tenant's quotas (memory, CPU per call),
//!    and with fuel metering.
//!
//! Run with `cargo bench -p weir-tests --bench tenants`.

use serde_json::json;
use std::path::Path;
use std::time::Duration;
use weir_cluster::tenancy::hash_token;
use weir_tests::HOSTILE_WASM;
use weir_tests::cluster::{Api, SessionProcess};

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");
const RECORDS: u64 = 1_500_000;
const WORK: &str = "2000";
const LIMIT: Duration = Duration::from_secs(300);

fn session(dir: &Path, name: &str, tenants: &str) -> SessionProcess {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, tenants).unwrap();
    let config = config.display().to_string();
    SessionProcess::start(Path::new(WEIR), &dir.join(name), 4, &["--config", &config])
}

fn tenant(name: &str, extra: &str) -> String {
    format!(
        "weir.tenants.{name}.token-sha256: {}\nweir.tenants.{name}.slots: 1\n{extra}",
        hex::encode(hash_token(name))
    )
}

/// Runs the bounded CPU-bound job to the end; returns records per second
/// by the job's own duration.
fn quiet_run(api: &Api, jar: &str) -> f64 {
    let job = api.run(
        jar,
        json!({"entryClass": "burn", "parallelism": 1,
               "programArgsList": ["--records", RECORDS.to_string(), "--work", WORK]}),
    );
    api.wait_for_state(&job, "FINISHED", LIMIT);
    let (_, v) = api.get(&format!("/jobs/{job}"));
    let ms = v["duration"].as_f64().unwrap();
    RECORDS as f64 / (ms / 1000.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    println!(
        "1. quiet tenant's job ({RECORDS} records x {WORK} rounds, p1) beside a noisy tenant's \
         endless CPU-bound job; one slot each; median of 3"
    );
    let s = session(
        dir.path(),
        "shared",
        &(tenant("quiet", "") + &tenant("noisy", "")),
    );
    let (quiet, noisy) = (s.api_as("quiet"), s.api_as("noisy"));
    let jar = quiet.upload_file(HOSTILE_WASM);
    let noisy_jar = noisy.upload_file(HOSTILE_WASM);
    quiet_run(&quiet, &jar); // warm-up
    let alone = median((0..3).map(|_| quiet_run(&quiet, &jar)).collect());
    let burner = noisy.run(
        &noisy_jar,
        json!({"entryClass": "burn", "parallelism": 1, "programArgsList": ["--work", WORK]}),
    );
    noisy.wait_for_state(&burner, "RUNNING", LIMIT);
    let beside = median((0..3).map(|_| quiet_run(&quiet, &jar)).collect());
    let (_, v) = noisy.get("/usage");
    let noisy_records = v["tenants"][0]["records-in"].as_u64().unwrap_or(0);
    let noisy_busy = v["tenants"][0]["busy-seconds"].as_f64().unwrap_or(0.0);
    noisy.patch(&format!("/jobs/{burner}?mode=cancel"));
    println!("  alone                    {alone:>12.0} records/s");
    println!("  beside the noisy tenant  {beside:>12.0} records/s");
    println!("  ratio: {:.3} (goal >= 0.8)", beside / alone);
    println!("  (the noisy tenant meanwhile: {noisy_records} records, {noisy_busy:.1} s busy)");
    drop(s);

    println!("2. the limits' cost: the same job, median of 3");
    let plain = session(dir.path(), "plain", "");
    let jar = plain.api().upload_file(HOSTILE_WASM);
    quiet_run(&plain.api(), &jar);
    let base = median((0..3).map(|_| quiet_run(&plain.api(), &jar)).collect());
    drop(plain);
    let limited = session(
        dir.path(),
        "limited",
        &tenant(
            "t",
            "weir.tenants.t.memory-per-instance: 64mb\nweir.tenants.t.cpu-per-call: 1s\n",
        ),
    );
    let api = limited.api_as("t");
    let jar = api.upload_file(HOSTILE_WASM);
    quiet_run(&api, &jar);
    let quota = median((0..3).map(|_| quiet_run(&api, &jar)).collect());
    drop(limited);
    let fueled = session(
        dir.path(),
        "fuel",
        &tenant("t", "weir.tenants.t.fuel-per-call: 100000000000\n"),
    );
    let api = fueled.api_as("t");
    let jar = api.upload_file(HOSTILE_WASM);
    quiet_run(&api, &jar);
    let fuel = median((0..3).map(|_| quiet_run(&api, &jar)).collect());
    println!("  session defaults (epoch deadline 10s, 1 GiB)  {base:>12.0} records/s");
    println!(
        "  tenant quotas (1s per call, 64 MiB)           {quota:>12.0} records/s  {:.3}",
        quota / base
    );
    println!(
        "  tenant with fuel metering                     {fuel:>12.0} records/s  {:.3}",
        fuel / base
    );
}
