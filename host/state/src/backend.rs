//! The keyed state backend of one task.

use crate::cache::Cache;
use crate::layout::{self, encode_state_key};
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, MergeOperands, Options, WriteBatch,
    WriteOptions,
};
use std::path::{Path, PathBuf};
use weir_core::plan::StateKind;
use weir_core::{KeyGroup, KeyGroupRange};
use weir_frame::{Reader, Record, Writer};

/// A registered state of the task: index into the backend's state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateId(pub u32);

/// A RocksDB failure, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("keyed state at {dir}: {message}")]
pub struct StateError {
    pub dir: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub(crate) struct StateInfo {
    pub uid: String,
    pub name: String,
    pub kind: StateKind,
    pub cf: String,
}

/// One RocksDB instance holding the keyed state of one task.
pub struct KeyedStateBackend {
    pub(crate) db: DB,
    pub(crate) dir: PathBuf,
    pub(crate) max_parallelism: u32,
    pub(crate) range: KeyGroupRange,
    pub(crate) states: Vec<StateInfo>,
    pub(crate) cache: Cache,
    pub(crate) raw: Vec<u8>,
    ck: Vec<u8>,
    pub(crate) write_opts: WriteOptions,
}

impl std::fmt::Debug for KeyedStateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStateBackend")
            .field("dir", &self.dir)
            .field("range", &self.range)
            .field("states", &self.states.len())
            .finish()
    }
}

/// Concatenates framed list elements.
fn append_merge(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut out = existing.map(<[u8]>::to_vec).unwrap_or_default();
    for op in operands {
        out.extend_from_slice(op);
    }
    Some(out)
}

/// Most bytes of list elements kept in memory for a list the cache does
/// not hold before they are appended in RocksDB.
const MAX_PENDING_APPEND: usize = 64 << 10;

/// Bytes of cached entries written to RocksDB in one batch.
const FLUSH_BATCH_BYTES: usize = 2 << 20;

/// Most bytes a column family's memtable holds before it is flushed.
const WRITE_BUFFER_BYTES: usize = 4 << 20;

/// Options of a state's column family.
pub(crate) fn cf_options() -> Options {
    let mut o = base_options();
    // Most reads of a new key (a first record, a new window) find nothing:
    // bloom filters answer those without touching the data. A memtable's
    // filter is allocated (and zeroed) with the memtable: 2 % of the write
    // buffer, about 80 KiB per state.
    o.set_memtable_whole_key_filtering(true);
    o.set_memtable_prefix_bloom_ratio(0.02);
    o
}

/// What every column family shares: the format, the merge operator, the
/// process-wide block cache and write buffer budget.
fn base_options() -> Options {
    let shared = crate::memory::shared();
    let mut o = Options::default();
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o.set_merge_operator_associative("weir-append", append_merge);
    o.set_write_buffer_size(WRITE_BUFFER_BYTES);
    let mut t = rocksdb::BlockBasedOptions::default();
    t.set_bloom_filter(10.0, false);
    t.set_whole_key_filtering(true);
    t.set_block_cache(&shared.cache);
    o.set_block_based_table_factory(&t);
    o
}

/// Options of a task's database (its default column family holds nothing).
pub(crate) fn db_options() -> Options {
    let mut o = base_options();
    o.set_write_buffer_manager(&crate::memory::shared().write_buffers);
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    // The WAL is never replayed: recovery restores from checkpoints.
    o.set_manual_wal_flush(true);
    o.set_max_open_files(256);
    o.set_keep_log_file_num(2);
    o
}

/// Column family name of a state.
pub(crate) fn cf_name(uid: &str, name: &str) -> String {
    format!("{uid}/{name}")
}

impl KeyedStateBackend {
    pub(crate) fn err(&self, e: impl std::fmt::Display) -> StateError {
        StateError {
            dir: self.dir.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Opens an empty backend in `dir` (which is cleared) for the key groups
    /// `range` of `max_parallelism`.
    pub fn open(
        dir: &Path,
        max_parallelism: u32,
        range: KeyGroupRange,
        cache_capacity: usize,
    ) -> Result<Self, StateError> {
        let mk_err = |e: &dyn std::fmt::Display| StateError {
            dir: dir.display().to_string(),
            message: e.to_string(),
        };
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| mk_err(&e))?;
        }
        std::fs::create_dir_all(dir).map_err(|e| mk_err(&e))?;
        let db = DB::open(&db_options(), dir).map_err(|e| mk_err(&e))?;
        Ok(Self::from_db(
            db,
            dir,
            max_parallelism,
            range,
            cache_capacity,
            vec![],
        ))
    }

    pub(crate) fn open_existing(
        dir: &Path,
        max_parallelism: u32,
        range: KeyGroupRange,
        cache_capacity: usize,
        states: Vec<StateInfo>,
    ) -> Result<Self, StateError> {
        let cfs = states
            .iter()
            .map(|s| ColumnFamilyDescriptor::new(s.cf.clone(), cf_options()));
        let db = DB::open_cf_descriptors(&db_options(), dir, cfs).map_err(|e| StateError {
            dir: dir.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Self::from_db(
            db,
            dir,
            max_parallelism,
            range,
            cache_capacity,
            states,
        ))
    }

    fn from_db(
        db: DB,
        dir: &Path,
        max_parallelism: u32,
        range: KeyGroupRange,
        cache_capacity: usize,
        states: Vec<StateInfo>,
    ) -> Self {
        let mut write_opts = WriteOptions::default();
        write_opts.disable_wal(true);
        KeyedStateBackend {
            db,
            dir: dir.to_owned(),
            max_parallelism,
            range,
            states,
            cache: Cache::new(cache_capacity),
            raw: Vec::new(),
            ck: Vec::new(),
            write_opts,
        }
    }

    pub fn key_groups(&self) -> KeyGroupRange {
        self.range
    }

    pub fn max_parallelism(&self) -> u32 {
        self.max_parallelism
    }

    /// Registers state `name` of operator `uid`, creating its column family
    /// if it does not exist (a restored backend already has it).
    pub fn register(
        &mut self,
        uid: &str,
        name: &str,
        kind: StateKind,
    ) -> Result<StateId, StateError> {
        if let Some(i) = self
            .states
            .iter()
            .position(|s| s.uid == uid && s.name == name)
        {
            if self.states[i].kind != kind {
                return Err(self.err(format!(
                    "state '{name}' of operator '{uid}' was {:?} state and is now declared {:?}; \
                     give the new state another name",
                    self.states[i].kind, kind
                )));
            }
            return Ok(StateId(i as u32));
        }
        let cf = cf_name(uid, name);
        if self.db.cf_handle(&cf).is_none() {
            self.db
                .create_cf(&cf, &cf_options())
                .map_err(|e| self.err(e))?;
        }
        self.states.push(StateInfo {
            uid: uid.to_owned(),
            name: name.to_owned(),
            kind,
            cf,
        });
        Ok(StateId(self.states.len() as u32 - 1))
    }

    /// The (uid, name, kind) of every registered state.
    pub fn states(&self) -> impl Iterator<Item = (&str, &str, StateKind)> {
        self.states
            .iter()
            .map(|s| (s.uid.as_str(), s.name.as_str(), s.kind))
    }

    pub(crate) fn cf(&self, s: StateId) -> Result<&rocksdb::ColumnFamily, StateError> {
        let info = self
            .states
            .get(s.0 as usize)
            .ok_or_else(|| self.err(format!("no state with id {}", s.0)))?;
        self.db
            .cf_handle(&info.cf)
            .ok_or_else(|| self.err(format!("column family {} is missing", info.cf)))
    }

    /// Builds the raw key and the cache key for (state, key, ns).
    #[inline]
    fn keys(&mut self, s: StateId, key: &[u8], ns: &[u8]) {
        let g = KeyGroup::of(key, self.max_parallelism);
        encode_state_key(&mut self.raw, g, key, ns);
        self.ck.clear();
        self.ck.extend_from_slice(&s.0.to_be_bytes());
        self.ck.extend_from_slice(&self.raw);
    }

    /// The value of (key, namespace) in state `s`.
    pub fn get(
        &mut self,
        s: StateId,
        key: &[u8],
        ns: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        self.keys(s, key, ns);
        let pending = match self.cache.get(&self.ck) {
            Some(e) if !e.appended => return Ok(e.value.clone()),
            Some(e) => e.value.clone(),
            None => None,
        };
        let mut v = self
            .db
            .get_cf(self.cf(s)?, &self.raw)
            .map_err(|e| self.err(e))?;
        let dirty = pending.is_some();
        if let Some(appended) = pending {
            // RocksDB's list and the elements appended since.
            v.get_or_insert_with(Vec::new).extend_from_slice(&appended);
        }
        self.make_room()?;
        // make_room may have written the pending elements: the entry is
        // then clean, and stays dirty only if they are still pending.
        let still_pending = dirty && self.cache.get(&self.ck).is_some();
        self.cache.put(&self.ck, v.clone(), still_pending);
        Ok(v)
    }

    pub fn put(
        &mut self,
        s: StateId,
        key: &[u8],
        ns: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        self.keys(s, key, ns);
        self.make_room()?;
        self.cache.put(&self.ck, Some(value.to_vec()), true);
        Ok(())
    }

    pub fn delete(&mut self, s: StateId, key: &[u8], ns: &[u8]) -> Result<(), StateError> {
        self.keys(s, key, ns);
        if let Some(e) = self.cache.get(&self.ck)
            && e.value.is_none()
            && !e.appended
        {
            // Absent already: read as absent, or deleted since. A clean
            // entry needs no tombstone in RocksDB.
            return Ok(());
        }
        self.make_room()?;
        self.cache.put(&self.ck, None, true);
        Ok(())
    }

    /// Appends an element to list state.
    pub fn append(
        &mut self,
        s: StateId,
        key: &[u8],
        ns: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        self.keys(s, key, ns);
        let mut framed = Writer::with_capacity(value.len() + 5);
        framed.push(&Record::value(value));
        let framed = framed.into_bytes();
        if let Some(e) = self.cache.get_mut(&self.ck) {
            let v = e.value.get_or_insert_with(Vec::new);
            // A long run of appends to a list the cache does not hold goes
            // to RocksDB rather than growing in memory.
            if !(e.appended && v.len() + framed.len() > MAX_PENDING_APPEND) {
                v.extend_from_slice(&framed);
                e.dirty = true;
                return Ok(());
            }
        }
        self.make_room()?;
        match self.cache.get_mut(&self.ck) {
            Some(e) => {
                // Too many pending elements: they and this one go now.
                let mut pending = e.value.take().unwrap_or_default();
                pending.extend_from_slice(&framed);
                self.cache.remove(&self.ck);
                let cf = self.cf(s)?;
                self.db
                    .merge_cf_opt(cf, &self.raw, &pending, &self.write_opts)
                    .map_err(|e| self.err(e))
            }
            None => {
                self.cache.append(&self.ck, &framed);
                Ok(())
            }
        }
    }

    /// Entries of `key` whose namespace starts with `prefix`, framed as
    /// records of (namespace suffix as key, value).
    pub fn scan(&mut self, s: StateId, key: &[u8], prefix: &[u8]) -> Result<Vec<u8>, StateError> {
        self.flush_state(s)?;
        self.keys(s, key, prefix);
        let start = self.raw.clone();
        let key_prefix_len = start.len() - prefix.len();
        let mut out = Writer::new();
        let cf = self.cf(s)?;
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(&start) {
                break;
            }
            out.push(&Record::keyed(&k[key_prefix_len + prefix.len()..], &v));
        }
        Ok(out.into_bytes())
    }

    /// Applies framed puts and tombstones (key, namespace, value) to state `s`.
    pub fn write_framed(&mut self, s: StateId, writes: &[u8]) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        {
            let cf = self.cf(s)?;
            let mut raw = Vec::new();
            for rec in Reader::new(writes) {
                let rec = rec.map_err(|e| self.err(e))?;
                let key = rec
                    .key
                    .ok_or_else(|| self.err("a state write without a key"))?;
                let ns = rec.namespace.unwrap_or_default();
                encode_state_key(&mut raw, KeyGroup::of(key, self.max_parallelism), key, ns);
                if rec.tombstone {
                    batch.delete_cf(cf, &raw);
                } else {
                    batch.put_cf(cf, &raw, rec.value);
                }
            }
        }
        // Written straight to RocksDB; drop any cached copies so reads see them.
        for rec in Reader::new(writes).flatten() {
            if let Some(key) = rec.key {
                self.keys(s, key, rec.namespace.unwrap_or_default());
                let ck = std::mem::take(&mut self.ck);
                self.cache.remove(&ck);
                self.ck = ck;
            }
        }
        self.db
            .write_opt(batch, &self.write_opts)
            .map_err(|e| self.err(e))
    }

    /// Calls `f(key, namespace, value)` for every entry of state `s` in this
    /// backend's key groups, in key-group order.
    pub fn for_each(
        &mut self,
        s: StateId,
        mut f: impl FnMut(&[u8], &[u8], &[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        self.flush_state(s)?;
        let cf = self.cf(s)?;
        let start = layout::group_start(self.range.start);
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let Some(sk) = layout::decode_state_key(&k) else {
                return Err(self.err("malformed key in keyed state"));
            };
            if sk.group.0 >= self.range.end {
                break;
            }
            f(sk.key, sk.namespace, &v)?;
        }
        Ok(())
    }

    fn make_room(&mut self) -> Result<(), StateError> {
        if self.cache.is_full() {
            self.flush()?;
            self.cache.clear();
        }
        Ok(())
    }

    fn flush_state(&mut self, s: StateId) -> Result<(), StateError> {
        if self.cache.has_dirty(s.0) {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every dirty cached entry to RocksDB, in batches of about
    /// `FLUSH_BATCH_BYTES`: a full cache is tens of MiB, which a single
    /// batch would copy whole while the cache still holds it. Nothing needs
    /// the batches to be one: RocksDB's state counts only at snapshots,
    /// which follow a flush.
    pub fn flush(&mut self) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        let mut failed = None;
        {
            let db = &self.db;
            let states = &self.states;
            let opts = &self.write_opts;
            self.cache.for_each_dirty(|state, raw, value, appended| {
                if failed.is_some() {
                    return;
                }
                let Some(cf) = states.get(state as usize).and_then(|i| db.cf_handle(&i.cf)) else {
                    failed = Some(format!("state {state} has no column family"));
                    return;
                };
                match (value, appended) {
                    (Some(v), true) => batch.merge_cf(cf, raw, v),
                    (Some(v), false) => batch.put_cf(cf, raw, v),
                    (None, _) => batch.delete_cf(cf, raw),
                }
                if batch.size_in_bytes() >= FLUSH_BATCH_BYTES
                    && let Err(e) = db.write_opt(std::mem::take(&mut batch), opts)
                {
                    failed = Some(e.to_string());
                }
            });
        }
        if let Some(f) = failed {
            return Err(self.err(f));
        }
        if !batch.is_empty() {
            self.db
                .write_opt(batch, &self.write_opts)
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Number of cached entries (for metrics).
    pub fn cached_entries(&self) -> usize {
        self.cache.len()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(dir: &Path) -> KeyedStateBackend {
        KeyedStateBackend::open(dir, 128, KeyGroupRange { start: 0, end: 128 }, 4).unwrap()
    }

    #[test]
    fn values_survive_cache_eviction() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = backend(tmp.path());
        let s = b.register("op", "acc", StateKind::Value).unwrap();
        for i in 0..100u32 {
            b.put(s, &i.to_le_bytes(), b"", &(i * 2).to_le_bytes())
                .unwrap();
        }
        b.delete(s, &7u32.to_le_bytes(), b"").unwrap();
        for i in 0..100u32 {
            let v = b.get(s, &i.to_le_bytes(), b"").unwrap();
            if i == 7 {
                assert_eq!(v, None);
            } else {
                assert_eq!(v, Some((i * 2).to_le_bytes().to_vec()), "key {i}");
            }
        }
        let mut n = 0;
        b.for_each(s, |_, _, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 99);
    }

    #[test]
    fn lists_maps_and_framed_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = backend(tmp.path());
        let l = b.register("op", "elements", StateKind::List).unwrap();
        b.append(l, b"k", b"w1", b"a").unwrap();
        b.append(l, b"k", b"w1", b"b").unwrap();
        let list = b.get(l, b"k", b"w1").unwrap().unwrap();
        let values: Vec<_> = Reader::new(&list)
            .map(|r| r.unwrap().value.to_vec())
            .collect();
        assert_eq!(values, vec![b"a".to_vec(), b"b".to_vec()]);
        b.append(l, b"k", b"w1", b"c").unwrap();
        let list = b.get(l, b"k", b"w1").unwrap().unwrap();
        assert_eq!(weir_frame::count(&list).unwrap(), 3);

        let m = b.register("op", "map", StateKind::Map).unwrap();
        b.put(m, b"k", b"x1", b"1").unwrap();
        b.put(m, b"k", b"x2", b"2").unwrap();
        b.put(m, b"k", b"y1", b"3").unwrap();
        b.put(m, b"other", b"x1", b"4").unwrap();
        let scanned = b.scan(m, b"k", b"x").unwrap();
        let got: Vec<_> = Reader::new(&scanned)
            .map(|r| {
                let r = r.unwrap();
                (r.key.unwrap().to_vec(), r.value.to_vec())
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (b"1".to_vec(), b"1".to_vec()),
                (b"2".to_vec(), b"2".to_vec())
            ]
        );

        let a = b.register("agg", "acc", StateKind::Value).unwrap();
        b.put(a, b"k", b"", b"stale").unwrap();
        let mut w = Writer::new();
        w.push(&Record {
            key: Some(b"k"),
            namespace: Some(b""),
            value: b"fresh",
            ..Record::default()
        });
        w.push(&Record {
            key: Some(b"gone"),
            namespace: Some(b""),
            tombstone: true,
            ..Record::default()
        });
        b.write_framed(a, w.as_bytes()).unwrap();
        assert_eq!(b.get(a, b"k", b"").unwrap(), Some(b"fresh".to_vec()));
        assert!(b.register("agg", "acc", StateKind::List).is_err());
    }

    fn elements(b: &mut KeyedStateBackend, l: StateId, key: &[u8]) -> Vec<Vec<u8>> {
        match b.get(l, key, b"w").unwrap() {
            Some(list) => Reader::new(&list)
                .map(|r| r.unwrap().value.to_vec())
                .collect(),
            None => vec![],
        }
    }

    #[test]
    fn appends_to_lists_the_cache_does_not_hold_keep_every_element() {
        let tmp = tempfile::tempdir().unwrap();
        // A cache of 4 entries: the 20 lists come and go.
        let mut b = backend(tmp.path());
        let l = b.register("op", "elements", StateKind::List).unwrap();
        let mut want: Vec<Vec<Vec<u8>>> = vec![vec![]; 20];
        for round in 0..5u8 {
            for k in 0..20u8 {
                let e = vec![k, round];
                b.append(l, &[k], b"w", &e).unwrap();
                want[k as usize].push(e);
            }
            // Read some lists back between rounds: RocksDB's part and the
            // pending part together.
            for k in (0..20u8).step_by(3) {
                assert_eq!(elements(&mut b, l, &[k]), want[k as usize], "list {k}");
            }
        }
        // Cleared lists stay cleared; a list appended to again starts over.
        b.delete(l, &[1], b"w").unwrap();
        b.append(l, &[2], b"w", b"x").unwrap();
        b.delete(l, &[2], b"w").unwrap();
        b.append(l, &[2], b"w", b"y").unwrap();
        want[1].clear();
        want[2] = vec![b"y".to_vec()];
        // A long run of appends to one list spills to RocksDB as it goes.
        let big = vec![7u8; 1000];
        for _ in 0..200 {
            b.append(l, &[3], b"w", &big).unwrap();
            want[3].push(big.clone());
        }
        for k in 0..20u8 {
            assert_eq!(elements(&mut b, l, &[k]), want[k as usize], "list {k}");
        }
        // What a snapshot writes holds every element.
        b.flush().unwrap();
        let mut n = 0;
        b.for_each(l, |_, _, v| {
            n += weir_frame::count(v).unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(n, want.iter().map(Vec::len).sum::<usize>());
    }
}
