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

/// Where a scan for due timers stands: the timers it takes are at or after
/// `from`, in key group `group` past the raw timer key `after` (empty: from
/// the group's start) and in the groups after it.
#[derive(Debug, Clone, Default)]
pub struct TimerScan {
    pub from: i64,
    pub group: u16,
    pub after: Vec<u8>,
    /// The earliest timer the scan saw that was not yet due.
    pub later: Option<i64>,
}

impl TimerScan {
    /// A scan over every key group from timestamp `from`.
    pub fn new(from: i64) -> TimerScan {
        TimerScan {
            from,
            ..TimerScan::default()
        }
    }
}

/// How many times its limit a round of due timers may take to end with a
/// key group.
const GROUP_OVERRUN: usize = 8;

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

    /// Whether a timer registered now lies behind `scan`: where the scan
    /// has been, or before the time it started from, so that it will not
    /// see it.
    pub fn timer_behind(&mut self, scan: &TimerScan, key: &[u8], ns: &[u8], ts: i64) -> bool {
        let group = KeyGroup::of(key, self.max_parallelism);
        if ts < scan.from || group.0 < scan.group {
            return true;
        }
        if group.0 > scan.group || scan.after.is_empty() {
            return false;
        }
        let raw = self.timer_key(key, ns, ts);
        let behind = raw.as_slice() <= scan.after.as_slice();
        self.raw = raw;
        behind
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

    /// Removes about `limit` timers of service `s` due at `until`
    /// (timestamp at most `until`) and appends them to `due`, resuming where
    /// `scan` stands. Key groups are taken in order, and each one's timers in
    /// timestamp order. A call ends with a key group, unless that group alone
    /// holds many times `limit` timers; the timers of one key at one
    /// timestamp are never split between two calls. Afterwards every due
    /// timer of the groups before `scan.group` has been taken. Returns true
    /// when the scan has passed the last key group; `scan.later` then holds
    /// the earliest timer left that the scan saw.
    ///
    /// Each call reads through a new iterator that starts just past the last
    /// timer taken, so the deletions of earlier calls are never read again,
    /// and timers registered since then ahead of that point are seen.
    pub fn take_due_timers(
        &mut self,
        s: StateId,
        scan: &mut TimerScan,
        until: i64,
        limit: usize,
        due: &mut Vec<Timer>,
    ) -> Result<bool, StateError> {
        let first = due.len();
        let mut batch = WriteBatch::default();
        let mut finished = true;
        {
            let cf = self.cf(s)?;
            let mut seek = Vec::with_capacity(64);
            let start_group = scan.group.max(self.range.start);
            'groups: for g in start_group..self.range.end {
                let prefix = g.to_be_bytes();
                seek.clear();
                if g == scan.group && !scan.after.is_empty() {
                    // Just past the last timer taken.
                    seek.extend_from_slice(&scan.after);
                    seek.push(0);
                } else {
                    seek.extend_from_slice(&prefix);
                    seek.extend_from_slice(&flip(scan.from));
                }
                scan.group = g;
                scan.after.clear();
                let iter = self
                    .db
                    .iterator_cf(cf, IteratorMode::From(&seek, Direction::Forward));
                for (taken_in_group, item) in iter.enumerate() {
                    let (k, _) = item.map_err(|e| self.err(e))?;
                    if !k.starts_with(&prefix) {
                        break;
                    }
                    let t = decode(&k).ok_or_else(|| self.err("malformed timer key"))?;
                    if t.timestamp > until {
                        scan.later = Some(scan.later.map_or(t.timestamp, |n| n.min(t.timestamp)));
                        break;
                    }
                    // Past the limit a round ends with its key group, or,
                    // for a group far larger than a round, with a key.
                    let taken = due.len() - first;
                    if taken >= limit
                        && (taken_in_group == 0
                            || taken >= limit.saturating_mul(GROUP_OVERRUN)
                                && !due
                                    .last()
                                    .is_some_and(|l| l.timestamp == t.timestamp && l.key == t.key))
                    {
                        finished = false;
                        break 'groups;
                    }
                    batch.delete_cf(cf, &k);
                    scan.after.clear();
                    scan.after.extend_from_slice(&k);
                    due.push(t);
                }
                scan.after.clear();
                scan.group = g.saturating_add(1);
            }
        }
        if !batch.is_empty() {
            self.db
                .write_opt(batch, &self.write_opts)
                .map_err(|e| self.err(e))?;
        }
        due[first..].sort_by_key(|t| t.timestamp);
        Ok(finished)
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
        let mut scan = TimerScan::new(i64::MIN);
        assert!(b.take_due_timers(s, &mut scan, 10, 100, &mut due).unwrap());
        let got: Vec<(i64, &[u8])> = due
            .iter()
            .map(|t| (t.timestamp, t.key.as_slice()))
            .collect();
        assert_eq!(got[0], (-5, &b"c"[..]));
        assert_eq!(got.len(), 3);
        assert!(got[1..].iter().all(|(ts, _)| *ts == 10));
        assert_eq!(scan.later, Some(30));
        due.clear();
        let mut scan = TimerScan::new(30);
        assert!(
            b.take_due_timers(s, &mut scan, 1000, 100, &mut due)
                .unwrap()
        );
        assert_eq!(scan.later, None);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].namespace, b"w");
        assert_eq!(b.next_timer(s).unwrap(), None);
    }

    #[test]
    fn due_timers_come_in_bounded_rounds_that_resume_and_keep_a_key_together() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b =
            KeyedStateBackend::open(tmp.path(), 16, KeyGroupRange { start: 0, end: 16 }, 16)
                .unwrap();
        let s = b
            .register("win", "weir.timers.event", StateKind::Value)
            .unwrap();
        // 500 keys with three timers each at time 7 (three namespaces), and
        // one timer each at 9.
        for k in 0..500u32 {
            for ns in [&b"a"[..], b"b", b"c"] {
                b.put_timer(s, &k.to_be_bytes(), ns, 7).unwrap();
            }
            b.put_timer(s, &k.to_be_bytes(), b"z", 9).unwrap();
        }
        let mut scan = TimerScan::new(0);
        let mut all = Vec::new();
        let mut rounds = 0;
        let mut mid_rounds = 0;
        loop {
            let mut due = Vec::new();
            let finished = b.take_due_timers(s, &mut scan, 8, 10, &mut due).unwrap();
            rounds += 1;
            // About 94 timers per key group: rounds end with a group, or
            // with a key once they pass 8 times the limit.
            assert!(due.len() <= 80 + 2, "a round stops soon after its limit");
            assert!(due.len() >= 10 || finished);
            // A round ends after the last namespace of a key.
            if !finished {
                assert_eq!(due.last().unwrap().namespace, b"c");
                // A timer registered behind the scan is reported as such;
                // one ahead of it is not.
                let last = due.last().unwrap().clone();
                assert!(b.timer_behind(&scan, &last.key, b"a", 7));
                // Mid-group, a timer after the last one taken is ahead; at a
                // group's end, its whole group is behind.
                let mid_group = !scan.after.is_empty();
                mid_rounds += usize::from(mid_group);
                assert_eq!(b.timer_behind(&scan, &last.key, b"d", 7), !mid_group);
                assert!(b.timer_behind(&scan, &last.key, b"x", -1));
            }
            all.extend(due);
            if finished {
                break;
            }
        }
        assert!(rounds >= 16, "{rounds} rounds");
        assert!(
            mid_rounds > 0 && mid_rounds < rounds,
            "{mid_rounds} of {rounds}"
        );
        assert_eq!(all.len(), 1500, "each timer due at 8 once");
        assert!(all.iter().all(|t| t.timestamp == 7));
        assert_eq!(scan.later, Some(9));
        let mut keys: Vec<&[u8]> = all.iter().map(|t| t.key.as_slice()).collect();
        keys.dedup();
        assert_eq!(keys.len(), 500, "the timers of a key come together");
        // A timer registered ahead of a scan under way is seen by it.
        let mut scan = TimerScan::new(9);
        let mut due = Vec::new();
        assert!(!b.take_due_timers(s, &mut scan, 20, 10, &mut due).unwrap());
        let key = (0..500u32)
            .map(|k| k.to_be_bytes())
            .find(|k| !b.timer_behind(&scan, k, b"later", 15))
            .expect("a key group not scanned yet");
        b.put_timer(s, &key, b"later", 15).unwrap();
        while !b.take_due_timers(s, &mut scan, 20, 10, &mut due).unwrap() {}
        assert_eq!(due.len(), 501);
        assert!(due.iter().any(|t| t.namespace == b"later"));
        assert_eq!(b.next_timer(s).unwrap(), None);
    }
}
