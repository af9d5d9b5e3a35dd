//! End-to-end tests: real components, run by the real `weir` command.

mod checkpoints;
mod cluster;
mod errors;
mod kafka;
mod languages;
mod savepoints;
mod sql;
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
