//! Timers in keyed state: event-time and processing-time timers of keyed
//! operators, checkpointed and rescaled with the rest of their state.
//!
//! A timer service is a column family of its own whose raw keys are
//! `key group (u16 BE) | timestamp (i64, sign bit flipped, BE) | key length
//! (u32 BE) | key | namespace`, so that within a key group timers sort by
//! time and the due ones are a prefix. Timers bypass the write-back cache:
//! they are written once per (key, namespace) and read only when due.

use crate::backend::{KeyedStateBackend, StateError, StateId};
use rocksdb::{Direction, IteratorMode, WriteBatch};
use weir_core::KeyGroup;

/// A timer that came due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub timestamp: i64,
    pub key: Vec<u8>,
    pub namespace: Vec<u8>,
}

fn flip(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn unflip(b: &[u8]) -> i64 {
    let mut a = [0; 8];
    a.copy_from_slice(b);
    (u64::from_be_bytes(a) ^ (1 << 63)) as i64
}

fn encode(out: &mut Vec<u8>, group: KeyGroup, ts: i64, key: &[u8], ns: &[u8]) {
    out.clear();
    out.reserve(14 + key.len() + ns.len());
    out.extend_from_slice(&group.to_be_bytes());
    out.extend_from_slice(&flip(ts));
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(ns);
}

fn decode(raw: &[u8]) -> Option<Timer> {
    if raw.len() < 14 {
        return None;
    }
    let timestamp = unflip(&raw[2..10]);
    let len = u32::from_be_bytes(raw[10..14].try_into().ok()?) as usize;
    let rest = &raw[14..];
    if rest.len() < len {
        return None;
    }
    Some(Timer {
        timestamp,
        key: rest[..len].to_vec(),
        namespace: rest[len..].to_vec(),
    })
}

impl KeyedStateBackend {
    fn timer_key(&mut self, key: &[u8], ns: &[u8], ts: i64) -> Vec<u8> {
        let mut raw = std::mem::take(&mut self.raw);
        encode(
            &mut raw,
            KeyGroup::of(key, self.max_parallelism),
            ts,
            key,
            ns,
        );
        raw
    }

    /// Registers a timer of service `s` (registering it again is harmless).
    pub fn put_timer(
        &mut self,
        s: StateId,
        key: &[u8],
        ns: &[u8],
        ts: i64,
    ) -> Result<(), StateError> {
        let raw = self.timer_key(key, ns, ts);
        let r = self
            .db
            .put_cf_opt(self.cf(s)?, &raw, [], &self.write_opts)
            .map_err(|e| self.err(e));
        self.raw = raw;
        r
    }

    /// Deletes a timer of service `s`, if it exists.
    pub fn delete_timer(
        &mut self,
        s: StateId,
        key: &[u8],
        ns: &[u8],
        ts: i64,
    ) -> Result<(), StateError> {
        let raw = self.timer_key(key, ns, ts);
        let r = self
            .db
            .delete_cf_opt(self.cf(s)?, &raw, &self.write_opts)
            .map_err(|e| self.err(e));
        self.raw = raw;
        r
    }

    /// Removes every timer of service `s` due at `until` (timestamp at most
    /// `until`), appending them to `due` in timestamp order. `from` is at
    /// most the earliest timer (the scan starts there, past the deletions
    /// of timers fired before). Returns the earliest timer left, if any.
    pub fn take_due_timers(
        &mut self,
        s: StateId,
        from: i64,
        until: i64,
        due: &mut Vec<Timer>,
    ) -> Result<Option<i64>, StateError> {
        let first = due.len();
        let mut next: Option<i64> = None;
        let mut batch = WriteBatch::default();
        {
            let cf = self.cf(s)?;
            let mut seek = [0u8; 10];
            for g in self.range.start..self.range.end {
                let start = g.to_be_bytes();
                seek[..2].copy_from_slice(&start);
                seek[2..10].copy_from_slice(&flip(from));
                let iter = self
                    .db
                    .iterator_cf(cf, IteratorMode::From(&seek, Direction::Forward));
                for item in iter {
                    let (k, _) = item.map_err(|e| self.err(e))?;
                    if !k.starts_with(&start) {
                        break;
                    }
                    let t = decode(&k).ok_or_else(|| self.err("malformed timer key"))?;
                    if t.timestamp > until {
                        next = Some(next.map_or(t.timestamp, |n| n.min(t.timestamp)));
                        break;
                    }
                    batch.delete_cf(cf, &k);
                    due.push(t);
                }
            }
        }
        if !batch.is_empty() {
            self.db
                .write_opt(batch, &self.write_opts)
                .map_err(|e| self.err(e))?;
        }
        due[first..].sort_by_key(|t| t.timestamp);
        Ok(next)
    }

    /// The earliest timer of service `s`.
    pub fn next_timer(&mut self, s: StateId) -> Result<Option<i64>, StateError> {
        let cf = self.cf(s)?;
        let mut next: Option<i64> = None;
        for g in self.range.start..self.range.end {
            let start = g.to_be_bytes();
            let mut iter = self
                .db
                .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward));
            if let Some(item) = iter.next() {
                let (k, _) = item.map_err(|e| self.err(e))?;
                if k.starts_with(&start) {
                    let t = decode(&k).ok_or_else(|| self.err("malformed timer key"))?;
                    next = Some(next.map_or(t.timestamp, |n| n.min(t.timestamp)));
                }
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::KeyGroupRange;
    use weir_core::plan::StateKind;

    #[test]
    fn due_timers_come_in_time_order_and_once() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b =
            KeyedStateBackend::open(tmp.path(), 128, KeyGroupRange { start: 0, end: 128 }, 16)
                .unwrap();
        let s = b
            .register("win", "weir.timers.event", StateKind::Value)
            .unwrap();
        for (k, ts) in [("a", 30), ("b", 10), ("c", -5), ("a", 10), ("d", 100)] {
            b.put_timer(s, k.as_bytes(), b"w", ts).unwrap();
        }
        b.put_timer(s, b"a", b"w", 30).unwrap(); // again: still one timer
        b.delete_timer(s, b"d", b"w", 100).unwrap();
        assert_eq!(b.next_timer(s).unwrap(), Some(-5));
        let mut due = Vec::new();
        let next = b.take_due_timers(s, i64::MIN, 10, &mut due).unwrap();
        let got: Vec<(i64, &[u8])> = due
            .iter()
            .map(|t| (t.timestamp, t.key.as_slice()))
            .collect();
        assert_eq!(got[0], (-5, &b"c"[..]));
        assert_eq!(got.len(), 3);
        assert!(got[1..].iter().all(|(ts, _)| *ts == 10));
        assert_eq!(next, Some(30));
        due.clear();
        assert_eq!(b.take_due_timers(s, 30, 1000, &mut due).unwrap(), None);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].namespace, b"w");
        assert_eq!(b.next_timer(s).unwrap(), None);
    }
}
