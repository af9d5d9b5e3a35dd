//! End-to-end tests: real components, run by the real `weir` command.

mod checkpoints;
mod cluster;
mod deploy;
mod errors;
mod exactly_once;
mod flink_clients;
mod hostile;
mod kafka;
mod languages;
mod nexmark;
mod openapi;
mod savepoints;
mod scale_out;
mod sql;
mod tenants;
mod unaligned;
mod windows;
mod wordcount;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// The `weir` command under test.
pub fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir-under-test"));
    c.env("WEIR_LOG", "warn");
    c
}

/// Runs a command with a time limit, so that a hang fails the test.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    use std::io::Read;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).ok();
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        stderr.read_to_end(&mut v).ok();
        v
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command did not finish within {limit:?}: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

/// Runs `weir run --local` on a job with a time limit.
pub fn run_local(job: &Path, flags: &[&str], args: &[&str]) -> Output {
    let mut c = weir();
    c.arg("run")
        .arg("--local")
        .args(flags)
        .arg(job)
        .arg("--")
        .args(args);
    run_with_timeout(&mut c, Duration::from_secs(120))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `job` locally reading a socket (`args` come before `--port P`),
/// sends `lines`, waits for `last` on standard output, stops the job with a
/// savepoint into `sp_dir`; returns the savepoint and the output lines.
pub fn run_on_socket_and_stop(
    job: &Path,
    restore: Option<&str>,
    sp_dir: &Path,
    args: &[&str],
    lines: &[&str],
    last: &str,
) -> (String, Vec<String>) {
    let limit = Duration::from_secs(60);
    let mut feed = weir_tests::process::Feed::new();
    let mut cmd = weir();
    cmd.args(["run", "--local", "--stop-with-savepoint", "--savepoint-dir"])
        .arg(sp_dir);
    if let Some(sp) = restore {
        cmd.args(["-s", sp]);
    }
    cmd.arg(job)
        .arg("--")
        .args(args)
        .args(["--port", &feed.port()]);
    let mut run = weir_tests::process::Running::start(&mut cmd);
    feed.accept(limit);
    for l in lines {
        feed.send(l);
    }
    run.wait_for_output(last, limit);
    run.signal("TERM");
    assert!(
        run.wait(limit),
        "stop with savepoint failed: {}",
        run.stderr()
    );
    (run.savepoint_path(), run.seen_out.clone())
}
