//! Text files read line by line.

use crate::{Poll, SourceContext, SourceReader};
use serde::Deserialize;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use weir_core::Failure;
use weir_frame::{Record, Writer};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceOptions {
    path: String,
}

/// Reads a text file line by line; lines end with `\n` (a `\r` before it
/// is dropped). The position is the byte offset of the next line.
pub struct FileSource {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
    batch_size: usize,
    partial: Vec<u8>,
    done: bool,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.path)
            .finish()
    }
}

impl FileSource {
    pub fn open(o: FileSourceOptions, ctx: &SourceContext) -> Result<Self, Failure> {
        let path = PathBuf::from(o.path);
        crate::confine(&ctx.owner, "path", &path)?;
        let file = File::open(&path).map_err(|e| {
            Failure::user(format!("cannot open input file {}: {e}", path.display()))
        })?;
        Ok(FileSource {
            path,
            reader: BufReader::with_capacity(1 << 20, file),
            offset: 0,
            batch_size: ctx.batch_size,
            partial: Vec::new(),
            done: false,
        })
    }

    fn push_line(out: &mut Writer, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.push(&Record::value(line));
    }
}

impl SourceReader for FileSource {
    fn poll(&mut self, out: &mut Writer) -> Result<Poll, Failure> {
        if self.done {
            return Ok(Poll::Finished);
        }
        let mut n = 0;
        while n < self.batch_size {
            let buf = self
                .reader
                .fill_buf()
                .map_err(|e| Failure::external(format!("reading {}: {e}", self.path.display())))?;
            if buf.is_empty() {
                if !self.partial.is_empty() {
                    Self::push_line(out, &self.partial);
                    self.partial.clear();
                    n += 1;
                }
                self.done = true;
                break;
            }
            let mut consumed = 0;
            let mut full = false;
            loop {
                if n >= self.batch_size {
                    full = true;
                    break;
                }
                let rest = &buf[consumed..];
                let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                    break;
                };
                if self.partial.is_empty() {
                    Self::push_line(out, &rest[..nl]);
                } else {
                    self.partial.extend_from_slice(&rest[..nl]);
                    Self::push_line(out, &self.partial);
                    self.partial.clear();
                }
                consumed += nl + 1;
                n += 1;
            }
            if !full {
                // The rest of the buffer holds the start of a line.
                self.partial.extend_from_slice(&buf[consumed..]);
                consumed = buf.len();
            }
            self.reader.consume(consumed);
            self.offset += consumed as u64;
        }
        Ok(if n > 0 {
            Poll::Ready
        } else if self.done {
            Poll::Finished
        } else {
            Poll::Idle
        })
    }

    fn position(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "offset": self.offset - self.partial.len() as u64 }))
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), Failure> {
        let offset = position
            .get("offset")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| Failure::user("file source position has no offset"))?;
        self.reader.seek(SeekFrom::Start(offset)).map_err(|e| {
            Failure::external(format!("seeking {} to {offset}: {e}", self.path.display()))
        })?;
        self.offset = offset;
        self.partial.clear();
        self.done = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_frame::Reader;

    fn lines(batch: &[u8]) -> Vec<String> {
        Reader::new(batch)
            .map(|r| String::from_utf8(r.unwrap().value.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn reads_lines_in_batches_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.txt");
        std::fs::write(&p, "a b\r\nc\n\nlast").unwrap();
        let ctx = SourceContext::new(0, 1, 2);
        let mut s = FileSource::open(
            FileSourceOptions {
                path: p.display().to_string(),
            },
            &ctx,
        )
        .unwrap();
        let mut w = Writer::new();
        assert_eq!(s.poll(&mut w).unwrap(), Poll::Ready);
        assert_eq!(lines(w.as_bytes()), vec!["a b", "c"]);
        let pos = s.position().unwrap();
        assert_eq!(pos["offset"], 7);
        let mut w = Writer::new();
        s.poll(&mut w).unwrap();
        assert_eq!(lines(w.as_bytes()), vec!["", "last"]);
        assert_eq!(s.poll(&mut Writer::new()).unwrap(), Poll::Finished);

        s.seek(&pos).unwrap();
        let mut w = Writer::new();
        s.poll(&mut w).unwrap();
        assert_eq!(lines(w.as_bytes()), vec!["", "last"]);
    }

    #[test]
    fn long_lines_span_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.txt");
        let long = "x".repeat(3 << 20);
        std::fs::write(&p, format!("{long}\nshort\n")).unwrap();
        let ctx = SourceContext::new(0, 1, 10);
        let mut s = FileSource::open(
            FileSourceOptions {
                path: p.display().to_string(),
            },
            &ctx,
        )
        .unwrap();
        let mut w = Writer::new();
        while s.poll(&mut w).unwrap() != Poll::Finished {}
        let got = lines(w.as_bytes());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), long.len());
        assert_eq!(s.position().unwrap()["offset"], (long.len() + 7) as u64);
    }
}
