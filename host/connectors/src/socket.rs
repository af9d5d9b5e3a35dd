//! A text socket source, as Flink's `socketTextStream` (try `nc -lk 9999`).

use crate::{Poll, SourceContext, SourceReader};
use serde::Deserialize;
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::Duration;
use weir_core::Failure;
use weir_core::options::parsed;
use weir_frame::{Record, Writer};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketOptions {
    hostname: String,
    #[serde(deserialize_with = "parsed")]
    port: u16,
}

/// Reads lines from a TCP connection until the peer closes it.
#[derive(Debug)]
pub struct SocketSource {
    endpoint: String,
    stream: TcpStream,
    buf: Vec<u8>,
    batch_size: usize,
    closed: bool,
}

impl SocketSource {
    pub fn open(o: SocketOptions, ctx: &SourceContext) -> Result<Self, Failure> {
        let endpoint = format!("{}:{}", o.hostname, o.port);
        let stream = TcpStream::connect(&endpoint).map_err(|e| {
            Failure::external(format!(
                "cannot connect to the socket source at {endpoint}: {e}; is a server \
                 listening there (for example `nc -lk {}`)?",
                o.port
            ))
        })?;
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| Failure::external(format!("socket {endpoint}: {e}")))?;
        Ok(SocketSource {
            endpoint,
            stream,
            buf: Vec::new(),
            batch_size: ctx.batch_size,
            closed: false,
        })
    }

    fn drain_lines(&mut self, out: &mut Writer) -> usize {
        let mut start = 0;
        let mut n = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = &self.buf[start..start + nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            out.push(&Record::value(line));
            start += nl + 1;
            n += 1;
            if n >= self.batch_size {
                break;
            }
        }
        self.buf.drain(..start);
        n
    }
}

impl SourceReader for SocketSource {
    fn poll(&mut self, out: &mut Writer) -> Result<Poll, Failure> {
        let n = self.drain_lines(out);
        if n > 0 {
            return Ok(Poll::Ready);
        }
        if self.closed {
            if !self.buf.is_empty() {
                out.push(&Record::value(&self.buf));
                self.buf.clear();
                return Ok(Poll::Ready);
            }
            return Ok(Poll::Finished);
        }
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.closed = true;
                Ok(Poll::Idle)
            }
            Ok(k) => {
                self.buf.extend_from_slice(&chunk[..k]);
                Ok(if self.drain_lines(out) > 0 {
                    Poll::Ready
                } else {
                    Poll::Idle
                })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                Ok(Poll::Idle)
            }
            Err(e) => Err(Failure::external(format!(
                "reading the socket source at {}: {e}",
                self.endpoint
            ))),
        }
    }
}
