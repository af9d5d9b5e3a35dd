//! Running `weir` as a process the test talks to: its output line by line,
//! signals, and a socket it reads from.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// A running `weir` process.
pub struct Running {
    pub child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    pub seen_out: Vec<String>,
    pub seen_err: Vec<String>,
}

fn lines(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    rx
}

impl Running {
    pub fn start(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Running {
            child,
            stdout,
            stderr,
            seen_out: vec![],
            seen_err: vec![],
        }
    }

    fn drain_err(&mut self) {
        while let Ok(l) = self.stderr.try_recv() {
            self.seen_err.push(l);
        }
    }

    /// Waits until standard output has a line equal to `want`.
    pub fn wait_for_output(&mut self, want: &str, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.seen_out.iter().any(|l| l == want) {
                return;
            }
            if let Ok(l) = self.stdout.recv_timeout(Duration::from_millis(50)) {
                self.seen_out.push(l);
            }
            self.drain_err();
        }
        panic!(
            "no line {want:?} on stdout within {limit:?}\nstdout: {:#?}\nstderr: {:#?}",
            self.seen_out, self.seen_err
        );
    }

    /// Whether standard output has a line within `limit`.
    pub fn output_within(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if !self.seen_out.is_empty() {
                return true;
            }
            if let Ok(l) = self.stdout.recv_timeout(Duration::from_millis(50)) {
                self.seen_out.push(l);
            }
            self.drain_err();
        }
        !self.seen_out.is_empty()
    }

    /// Waits until standard error has a line containing `want`; returns it.
    pub fn wait_for_log(&mut self, want: &str, limit: Duration) -> String {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(l) = self.seen_err.iter().find(|l| l.contains(want)) {
                return l.clone();
            }
            if let Ok(l) = self.stderr.recv_timeout(Duration::from_millis(50)) {
                self.seen_err.push(l);
            }
        }
        panic!(
            "no log line with {want:?} within {limit:?}: {:#?}",
            self.seen_err
        );
    }

    /// Waits until standard error has had `count` lines containing `want`;
    /// false if the process closes its output first.
    pub fn wait_for_logs(&mut self, want: &str, count: usize, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.seen_err.iter().filter(|l| l.contains(want)).count() >= count {
                return true;
            }
            match self.stderr.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => self.seen_err.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if start.elapsed() < limit => {}
                Err(_) => panic!(
                    "no {count} log lines with {want:?} within {limit:?}: {:#?}",
                    self.seen_err
                ),
            }
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit; returns whether it succeeded.
    pub fn wait(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Collect the rest of the output.
                std::thread::sleep(Duration::from_millis(50));
                while let Ok(l) = self.stdout.try_recv() {
                    self.seen_out.push(l);
                }
                self.drain_err();
                return status.success();
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                self.drain_err();
                panic!("weir did not exit within {limit:?}: {:#?}", self.seen_err);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        self.seen_err.join("\n")
    }

    /// The path printed after "Savepoint completed. Path: ".
    pub fn savepoint_path(&self) -> String {
        self.seen_err
            .iter()
            .find_map(|l| l.strip_prefix("Savepoint completed. Path: "))
            .unwrap_or_else(|| panic!("no savepoint path in: {:#?}", self.seen_err))
            .to_owned()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP server a job's socket source connects to.
pub struct Feed {
    listener: TcpListener,
    conn: Option<TcpStream>,
}

impl Feed {
    #[allow(clippy::new_without_default)] // binds a port: not a default
    pub fn new() -> Feed {
        Feed {
            listener: TcpListener::bind("127.0.0.1:0").unwrap(),
            conn: None,
        }
    }

    pub fn port(&self) -> String {
        self.listener.local_addr().unwrap().port().to_string()
    }

    /// Waits for the job to connect.
    pub fn accept(&mut self, limit: Duration) {
        self.listener.set_nonblocking(true).unwrap();
        let start = Instant::now();
        loop {
            match self.listener.accept() {
                Ok((c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    self.conn = Some(c);
                    return;
                }
                Err(_) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("the job did not connect within {limit:?}: {e}"),
            }
        }
    }

    pub fn send(&mut self, line: &str) {
        let c = self.conn.as_mut().expect("accepted");
        c.write_all(line.as_bytes()).unwrap();
        c.write_all(b"\n").unwrap();
        c.flush().unwrap();
    }
}

/// A moto S3 server on loopback with a bucket `checkpoints`, stopped when
/// dropped. `scripts/test.sh` installs moto.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    /// Whether `moto_server` is on the PATH.
    pub fn available() -> bool {
        Command::new("moto_server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn start() -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "moto_server (the S3 server the tests use) is not installed: run the tests \
                 with scripts/test.sh, which installs it",
            );
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if server
                .request("PUT", "/checkpoints")
                .is_some_and(|s| s.starts_with("HTTP/1.1 200"))
            {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto_server did not start on {}", server.endpoint);
    }

    /// The `-D` flags that point Weir at this server.
    pub fn flags(&self) -> Vec<String> {
        [
            format!("s3.endpoint={}", self.endpoint),
            "s3.path.style.access=true".into(),
            "s3.access-key=test".into(),
            "s3.secret-key=test".into(),
        ]
        .into_iter()
        .flat_map(|kv| ["-D".to_owned(), kv])
        .collect()
    }

    /// Creates bucket `name`.
    pub fn create_bucket(&self, name: &str) {
        let answer = self.request("PUT", &format!("/{name}"));
        assert!(
            answer
                .as_deref()
                .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
            "cannot create bucket {name}: {answer:?}"
        );
    }

    /// A bare HTTP request (creating a bucket needs nothing more).
    fn request(&self, method: &str, path: &str) -> Option<String> {
        use std::io::Read;
        let addr = self.endpoint.strip_prefix("http://")?;
        let mut s = TcpStream::connect(addr).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }
}

/// The checkpoint directory of the newest job under `checkpoints` that
/// completed a checkpoint (what `weir run -s` restarts from). Checkpoint
/// numbers continue across restores, so the newest run is the one with
/// the highest completed checkpoint (directory times are too coarse on
/// some file systems to order runs a few hundred milliseconds apart).
pub fn latest_checkpoints(checkpoints: &std::path::Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(checkpoints)
        .ok()?
        .flatten()
        .filter_map(|e| Some((completed_checkpoint(&e.path())?.0, e.path())))
        .max()
        .map(|(_, p)| p)
}

/// The highest-numbered `chk-<n>` of a job's checkpoint directory that has
/// its `_metadata`.
fn completed_checkpoint(job_dir: &std::path::Path) -> Option<(u64, std::path::PathBuf)> {
    std::fs::read_dir(job_dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let n: u64 = e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()?;
            e.path().join("_metadata").exists().then_some((n, e.path()))
        })
        .max()
}

/// The newest `chk-<n>` directory (with its `_metadata`) of a job's
/// checkpoint directory.
pub fn newest_checkpoint(job_dir: &std::path::Path) -> Option<std::path::PathBuf> {
    completed_checkpoint(job_dir).map(|(_, p)| p)
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}
