//! Zero-copy decoding of batches.

use crate::{
    FLAG_KEY, FLAG_NAMESPACE, FLAG_PORT, FLAG_TIMESTAMP, FLAG_TOMBSTONE, KNOWN_FLAGS, Record,
};
use std::fmt;

/// A batch that does not follow the framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The batch ends inside a record.
    Truncated { offset: usize },
    /// A record uses flag bits this version does not know.
    UnknownFlags { offset: usize, flags: u8 },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated { offset } => {
                write!(f, "batch is truncated inside the record at byte {offset}")
            }
            FrameError::UnknownFlags { offset, flags } => write!(
                f,
                "record at byte {offset} has unknown flags {flags:#04x}; \
                 the host and the guest SDK disagree on the batch framing"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Iterates over the records of a batch.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Reader<'a> {
    /// Reads `batch` from the start.
    pub fn new(batch: &'a [u8]) -> Self {
        Reader {
            buf: batch,
            pos: 0,
            failed: false,
        }
    }

    /// Byte offset of the next record.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn record(&mut self) -> Result<Record<'a>, FrameError> {
        let start = self.pos;
        let mut rest = &self.buf[start..];
        let (flags, rec) = parse(&mut rest).ok_or(FrameError::Truncated { offset: start })?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(FrameError::UnknownFlags {
                offset: start,
                flags,
            });
        }
        self.pos = self.buf.len() - rest.len();
        Ok(rec)
    }
}

/// Calls `f(key, namespace)` for every record of a batch, skipping values;
/// faster than a [`Reader`] when only keys are needed.
#[inline]
pub fn for_each_key<'a>(
    batch: &'a [u8],
    mut f: impl FnMut(Option<&'a [u8]>, Option<&'a [u8]>),
) -> Result<(), FrameError> {
    let mut rest = batch;
    while !rest.is_empty() {
        let offset = batch.len() - rest.len();
        let flags = rest[0];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(FrameError::UnknownFlags { offset, flags });
        }
        rest = &rest[1..];
        let mut parse = || {
            let key = if flags & FLAG_KEY != 0 {
                Some(bytes(&mut rest)?)
            } else {
                None
            };
            let ns = if flags & FLAG_NAMESPACE != 0 {
                Some(bytes(&mut rest)?)
            } else {
                None
            };
            let skip = if flags & FLAG_TIMESTAMP != 0 { 8 } else { 0 }
                + if flags & FLAG_PORT != 0 { 4 } else { 0 };
            take(&mut rest, skip)?;
            bytes(&mut rest)?;
            Some((key, ns))
        };
        let (key, ns) = parse().ok_or(FrameError::Truncated { offset })?;
        f(key, ns);
    }
    Ok(())
}

#[inline]
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, tail) = rest.split_at_checked(n)?;
    *rest = tail;
    Some(head)
}

#[inline]
fn word<const N: usize>(rest: &mut &[u8]) -> Option<[u8; N]> {
    take(rest, N)?.try_into().ok()
}

#[inline]
fn bytes<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = u32::from_le_bytes(word::<4>(rest)?) as usize;
    take(rest, n)
}

/// Parses one record; None when the input ends inside it.
#[inline]
fn parse<'a>(rest: &mut &'a [u8]) -> Option<(u8, Record<'a>)> {
    let flags = take(rest, 1)?[0];
    let key = if flags & FLAG_KEY != 0 {
        Some(bytes(rest)?)
    } else {
        None
    };
    let namespace = if flags & FLAG_NAMESPACE != 0 {
        Some(bytes(rest)?)
    } else {
        None
    };
    let timestamp = if flags & FLAG_TIMESTAMP != 0 {
        Some(i64::from_le_bytes(word::<8>(rest)?))
    } else {
        None
    };
    let port = if flags & FLAG_PORT != 0 {
        u32::from_le_bytes(word::<4>(rest)?)
    } else {
        0
    };
    let value = bytes(rest)?;
    Some((
        flags,
        Record {
            key,
            namespace,
            timestamp,
            port,
            tombstone: flags & FLAG_TOMBSTONE != 0,
            value,
        },
    ))
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Record<'a>, FrameError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = self.record();
        self.failed = r.is_err();
        Some(r)
    }
}
