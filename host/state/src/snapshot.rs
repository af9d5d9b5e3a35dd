//! Local snapshots of a backend, and restoring from them.
//!
//! A snapshot is a RocksDB checkpoint: SST files hard-linked from the live
//! database plus its small metadata files. SST files never change once
//! written, so an uploader needs to send only the ones it has not sent
//! before; that makes checkpoints incremental.

use crate::backend::{KeyedStateBackend, StateError, StateInfo, cf_options, db_options};
use crate::layout;
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, WriteBatch, checkpoint::Checkpoint,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use weir_core::KeyGroupRange;
use weir_core::plan::StateKind;

/// A file of a local snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// File name inside the snapshot directory.
    pub name: String,
    pub size: u64,
    /// SST files are immutable and can be shared between checkpoints.
    pub immutable: bool,
}

/// A state as recorded in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDescriptorInfo {
    pub uid: String,
    pub name: String,
    pub kind: StateKind,
    /// RocksDB column family holding it.
    pub column_family: String,
}

/// A checkpoint of a backend on local disk.
#[derive(Debug, Clone)]
pub struct LocalSnapshot {
    pub dir: PathBuf,
    pub files: Vec<SnapshotFile>,
    pub states: Vec<StateDescriptorInfo>,
    pub key_groups: KeyGroupRange,
}

/// A snapshot to restore from, downloaded into `dir`.
#[derive(Debug, Clone)]
pub struct RestoreSource {
    pub dir: PathBuf,
    pub key_groups: KeyGroupRange,
    pub states: Vec<StateDescriptorInfo>,
}

impl KeyedStateBackend {
    /// Flushes the cache and checkpoints RocksDB into `into` (which must not
    /// exist). Cheap: SST files are hard links.
    pub fn snapshot(&mut self, into: &Path) -> Result<LocalSnapshot, StateError> {
        self.flush()?;
        if into.exists() {
            std::fs::remove_dir_all(into).map_err(|e| self.err(e))?;
        }
        if let Some(parent) = into.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.err(e))?;
        }
        let cp = Checkpoint::new(&self.db).map_err(|e| self.err(e))?;
        cp.create_checkpoint(into).map_err(|e| self.err(e))?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(into).map_err(|e| self.err(e))? {
            let entry = entry.map_err(|e| self.err(e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let size = entry.metadata().map_err(|e| self.err(e))?.len();
            let immutable = name.ends_with(".sst") || name.ends_with(".blob");
            files.push(SnapshotFile {
                name,
                size,
                immutable,
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(LocalSnapshot {
            dir: into.to_owned(),
            files,
            states: self.state_descriptors(),
            key_groups: self.range,
        })
    }

    /// The states of this backend as a snapshot records them.
    pub fn state_descriptors(&self) -> Vec<StateDescriptorInfo> {
        self.states
            .iter()
            .map(|s| StateDescriptorInfo {
                uid: s.uid.clone(),
                name: s.name.clone(),
                kind: s.kind,
                column_family: s.cf.clone(),
            })
            .collect()
    }

    /// Builds a backend in `dir` for key groups `range` from snapshots of
    /// earlier backends. States for which `keep(uid, name)` is false are
    /// left behind. When one snapshot covers exactly `range`, its files are
    /// used as they are; otherwise the entries of `range` are copied out of
    /// every overlapping snapshot (rescaling).
    pub fn restore(
        dir: &Path,
        max_parallelism: u32,
        range: KeyGroupRange,
        cache_capacity: usize,
        sources: &[RestoreSource],
        keep: impl Fn(&str, &str) -> bool,
    ) -> Result<Self, StateError> {
        let err = |e: &dyn std::fmt::Display| StateError {
            dir: dir.display().to_string(),
            message: e.to_string(),
        };
        let overlapping: Vec<&RestoreSource> = sources
            .iter()
            .filter(|s| s.key_groups.overlaps(&range))
            .collect();
        if let [only] = overlapping.as_slice()
            && only.key_groups == range
        {
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(|e| err(&e))?;
            }
            std::fs::rename(&only.dir, dir)
                .or_else(|_| copy_dir(&only.dir, dir))
                .map_err(|e| err(&e))?;
            let states: Vec<StateInfo> = only
                .states
                .iter()
                .map(|s| StateInfo {
                    uid: s.uid.clone(),
                    name: s.name.clone(),
                    kind: s.kind,
                    cf: s.column_family.clone(),
                })
                .collect();
            let mut b = KeyedStateBackend::open_existing(
                dir,
                max_parallelism,
                range,
                cache_capacity,
                states,
            )?;
            b.drop_unkept(&keep)?;
            return Ok(b);
        }

        let mut b = KeyedStateBackend::open(dir, max_parallelism, range, cache_capacity)?;
        for src in overlapping {
            let cfs = src
                .states
                .iter()
                .map(|s| ColumnFamilyDescriptor::new(s.column_family.clone(), cf_options()));
            let old = DB::open_cf_descriptors_read_only(&db_options(), &src.dir, cfs, false)
                .map_err(|e| err(&format!("opening snapshot {}: {e}", src.dir.display())))?;
            for s in src.states.iter().filter(|s| keep(&s.uid, &s.name)) {
                let id = b.register(&s.uid, &s.name, s.kind)?;
                let target =
                    b.db.cf_handle(&b.states[id.0 as usize].cf)
                        .expect("registered");
                let from = old.cf_handle(&s.column_family).ok_or_else(|| {
                    err(&format!("snapshot lacks column family {}", s.column_family))
                })?;
                let start = layout::group_start(range.start);
                let mut batch = WriteBatch::default();
                for item in old.iterator_cf(from, IteratorMode::From(&start, Direction::Forward)) {
                    let (k, v) = item.map_err(|e| err(&e))?;
                    // Every layout (values, timers) starts with the key group.
                    let Some(group) = layout::key_group_of(&k) else {
                        return Err(err(&"malformed key in snapshot"));
                    };
                    if group >= range.end {
                        break;
                    }
                    batch.put_cf(target, &k, &v);
                    if batch.len() >= 10_000 {
                        b.db.write(std::mem::take(&mut batch))
                            .map_err(|e| err(&e))?;
                    }
                }
                b.db.write(batch).map_err(|e| err(&e))?;
            }
        }
        Ok(b)
    }

    /// Keeps only the states for which `keep(uid, name)` is true, dropping
    /// the others' column families (a running job that changes modules).
    /// State ids change: states are registered again afterwards.
    pub fn retain_states(&mut self, keep: impl Fn(&str, &str) -> bool) -> Result<(), StateError> {
        self.flush()?;
        self.cache.clear();
        self.drop_unkept(&keep)
    }

    fn drop_unkept(&mut self, keep: &impl Fn(&str, &str) -> bool) -> Result<(), StateError> {
        let (kept, dropped): (Vec<StateInfo>, Vec<StateInfo>) = std::mem::take(&mut self.states)
            .into_iter()
            .partition(|s| keep(&s.uid, &s.name));
        for s in &dropped {
            self.db.drop_cf(&s.cf).map_err(|e| self.err(e))?;
        }
        self.states = kept;
        Ok(())
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(b: &mut KeyedStateBackend, n: u32) {
        let s = b.register("counts", "acc", StateKind::Value).unwrap();
        let d = b.register("dropped", "acc", StateKind::Value).unwrap();
        for i in 0..n {
            let k = format!("key{i}");
            b.put(s, k.as_bytes(), b"", &i.to_le_bytes()).unwrap();
            b.put(d, k.as_bytes(), b"", b"x").unwrap();
        }
    }

    fn all(b: &mut KeyedStateBackend) -> Vec<(Vec<u8>, Vec<u8>)> {
        let s = b.register("counts", "acc", StateKind::Value).unwrap();
        let mut out = Vec::new();
        b.for_each(s, |k, _, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        out.sort();
        out
    }

    #[test]
    fn snapshot_restore_same_range() {
        let tmp = tempfile::tempdir().unwrap();
        let full = KeyGroupRange { start: 0, end: 128 };
        let mut b = KeyedStateBackend::open(&tmp.path().join("db"), 128, full, 16).unwrap();
        fill(&mut b, 500);
        let before = all(&mut b);
        let snap = b.snapshot(&tmp.path().join("snap")).unwrap();
        assert!(snap.files.iter().any(|f| f.immutable), "{:?}", snap.files);
        drop(b);
        let src = RestoreSource {
            dir: snap.dir.clone(),
            key_groups: full,
            states: snap.states.clone(),
        };
        let mut r =
            KeyedStateBackend::restore(&tmp.path().join("db2"), 128, full, 16, &[src], |uid, _| {
                uid != "dropped"
            })
            .unwrap();
        assert_eq!(all(&mut r), before);
        assert!(r.states().all(|(uid, _, _)| uid != "dropped"));
    }

    #[test]
    fn rescale_two_to_three() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sources = Vec::new();
        let mut expected = Vec::new();
        for i in 0..2 {
            let range = KeyGroupRange::for_subtask(128, 2, i);
            let mut b =
                KeyedStateBackend::open(&tmp.path().join(format!("old{i}")), 128, range, 16)
                    .unwrap();
            let s = b.register("counts", "acc", StateKind::Value).unwrap();
            for k in 0..300u32 {
                let key = format!("key{k}");
                if range.contains(weir_core::KeyGroup::of(key.as_bytes(), 128)) {
                    b.put(s, key.as_bytes(), b"", &k.to_le_bytes()).unwrap();
                    expected.push((key.into_bytes(), k.to_le_bytes().to_vec()));
                }
            }
            let snap = b.snapshot(&tmp.path().join(format!("snap{i}"))).unwrap();
            sources.push(RestoreSource {
                dir: snap.dir,
                key_groups: range,
                states: snap.states,
            });
        }
        expected.sort();
        let mut got = Vec::new();
        for i in 0..3 {
            let range = KeyGroupRange::for_subtask(128, 3, i);
            let mut b = KeyedStateBackend::restore(
                &tmp.path().join(format!("new{i}")),
                128,
                range,
                16,
                &sources,
                |_, _| true,
            )
            .unwrap();
            for (k, v) in all(&mut b) {
                assert!(range.contains(weir_core::KeyGroup::of(&k, 128)));
                got.push((k, v));
            }
        }
        got.sort();
        assert_eq!(got, expected);
    }
}
