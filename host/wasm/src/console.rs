//! A guest's standard output and error: drained line by line into the
//! host's log with the job and task named, limited in rate per job, so
//! that a job that prints (as every job does while being debugged) never
//! fails or blocks because of it, and one that prints forever cannot flood
//! the session's log. The last few KiB are kept for error reports.

use bytes::Bytes;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept; longer ones are cut (the rest starts a new line).
const MAX_LINE: usize = 4096;
/// Output kept for error reports.
const TAIL: usize = 4096;

/// Lines per second one job may log; shared by its instances.
#[derive(Debug)]
pub struct OutputBudget {
    job: String,
    per_second: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    dropped: u64,
    last_report: Instant,
}

impl OutputBudget {
    /// A budget of `per_second` lines a second for job `job`, with bursts
    /// of as many.
    pub fn new(job: &str, per_second: u32) -> Arc<OutputBudget> {
        let now = Instant::now();
        Arc::new(OutputBudget {
            job: job.to_owned(),
            per_second: f64::from(per_second),
            state: Mutex::new(Bucket {
                tokens: f64::from(per_second),
                last: now,
                dropped: 0,
                last_report: now,
            }),
        })
    }

    /// Whether one more line may be logged; when lines were dropped, the
    /// number to report (at most once a second).
    fn take(&self) -> (bool, Option<u64>) {
        let mut b = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.last = now;
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.per_second.max(1.0));
        let mut report = None;
        if b.dropped > 0 && now.duration_since(b.last_report).as_secs() >= 1 {
            report = Some(b.dropped);
            b.dropped = 0;
            b.last_report = now;
        }
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            (true, report)
        } else {
            b.dropped += 1;
            (false, report)
        }
    }
}

fn report_dropped(job: &str, n: u64) {
    tracing::warn!(
        target: "weir::guest",
        job = %job,
        "{n} lines of the job's output were not logged (over weir.guest.output-lines-per-second)"
    );
}

impl Drop for OutputBudget {
    fn drop(&mut self) {
        let b = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if b.dropped > 0 {
            report_dropped(&self.job, b.dropped);
        }
    }
}

struct State {
    partial: Vec<u8>,
    tail: VecDeque<u8>,
}

/// One stream (stdout or stderr) of one instance.
#[derive(Clone)]
pub(crate) struct Console {
    job: Arc<str>,
    task: Arc<str>,
    stream: &'static str,
    budget: Arc<OutputBudget>,
    state: Arc<Mutex<State>>,
}

impl Console {
    pub fn new(job: &str, task: &str, stream: &'static str, budget: Arc<OutputBudget>) -> Self {
        Console {
            job: job.into(),
            task: task.into(),
            stream,
            budget,
            state: Arc::new(Mutex::new(State {
                partial: Vec::new(),
                tail: VecDeque::with_capacity(TAIL),
            })),
        }
    }

    /// The last output, for error reports.
    pub fn tail(&self) -> Vec<u8> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.tail.iter().copied().collect()
    }

    fn emit(&self, line: &[u8]) {
        let (ok, dropped) = self.budget.take();
        if let Some(n) = dropped {
            report_dropped(&self.job, n);
        }
        if !ok {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let text = weir_core::secrets::redact(text.trim_end_matches('\r'));
        match self.stream {
            "stderr" => {
                tracing::warn!(target: "weir::guest", job = %self.job, task = %self.task, "{text}")
            }
            _ => {
                tracing::info!(target: "weir::guest", job = %self.job, task = %self.task, "{text}")
            }
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut lines = Vec::new();
        {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            for &b in bytes {
                if s.tail.len() == TAIL {
                    s.tail.pop_front();
                }
                s.tail.push_back(b);
            }
            let mut rest = bytes;
            while let Some(i) = rest.iter().position(|&b| b == b'\n') {
                let mut line = std::mem::take(&mut s.partial);
                let room = MAX_LINE.saturating_sub(line.len());
                line.extend_from_slice(&rest[..i.min(room)]);
                lines.push(line);
                rest = &rest[i + 1..];
            }
            let room = MAX_LINE.saturating_sub(s.partial.len());
            s.partial.extend_from_slice(&rest[..rest.len().min(room)]);
            if s.partial.len() >= MAX_LINE {
                lines.push(std::mem::take(&mut s.partial));
            }
        }
        for l in lines {
            self.emit(&l);
        }
    }
}

impl IsTerminal for Console {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Console {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for Console {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: output is drained (or dropped) as it comes.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Console {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Console {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_drained_and_the_tail_kept() {
        let c = Console::new("job", "task", "stdout", OutputBudget::new("job", 10));
        for i in 0..100_000 {
            c.push(format!("line {i}\n").as_bytes());
        }
        c.push(b"partial");
        let tail = String::from_utf8(c.tail()).unwrap();
        assert!(tail.ends_with("line 99999\npartial"), "{tail}");
        assert!(tail.len() <= TAIL);
        c.push(&vec![b'x'; 3 * MAX_LINE]);
        assert!(c.state.lock().unwrap().partial.len() < MAX_LINE);
    }

    #[test]
    fn the_budget_limits_lines_per_second() {
        let b = OutputBudget::new("job", 5);
        let allowed = (0..100).filter(|_| b.take().0).count();
        assert!((5..=6).contains(&allowed), "{allowed}");
    }
}
