//! The task side of checkpoints: what a task snapshots at a barrier, how
//! the snapshot is uploaded (asynchronously, so the task goes on), and how a
//! restored task loads its state.

use crate::events::TaskId;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use weir_checkpoint::metadata::{
    FileRef, InFlightHandle, KeyedStateHandle, MemoryImageHandle, SavedStateHandle, TaskSnapshot,
};
use weir_checkpoint::protocol::SnapshotKind;
use weir_checkpoint::{Storage, image, paths};
use weir_core::guest::MemoryImage;
use weir_core::{CheckpointId, Failure};
use weir_state::LocalSnapshot;

/// Where the snapshot of one checkpoint or savepoint goes.
#[derive(Debug)]
pub struct SnapshotTarget {
    pub id: CheckpointId,
    pub kind: SnapshotKind,
    pub storage: Storage,
    /// Directory of this snapshot, relative to the storage root.
    pub dir: String,
    /// Directory for files shared between checkpoints; savepoints have
    /// none (they are self-contained).
    pub shared: Option<String>,
}

/// What a task captured at a barrier, before uploading.
#[derive(Debug)]
pub(crate) struct LocalTaskSnapshot {
    pub operators: Vec<String>,
    pub subtask: u32,
    pub parallelism: u32,
    pub keyed: Option<LocalSnapshot>,
    pub memory: Option<(String, MemoryImage)>,
    pub saved: Option<(String, Vec<u8>)>,
    pub operator_state: BTreeMap<String, serde_json::Value>,
    /// Files operators keep beside their state (uid -> name -> local path).
    pub operator_files: BTreeMap<String, weir_connectors::SinkFiles>,
    /// Records in flight at an unaligned checkpoint, as in-flight files
    /// (`unaligned::append`): input and output.
    pub in_flight: (Vec<u8>, Vec<u8>),
    /// The task's output edges by name (`execution::edge_name`), in the
    /// order the in-flight output numbers them.
    pub outputs: Vec<String>,
}

/// Where a file was uploaded (relative to the storage root), its size and
/// its CRC-32C.
pub(crate) type UploadedFile = (String, u64, u32);

/// Uploads the snapshots of one task, remembering which immutable files
/// (SSTs) it already uploaded so that checkpoints are incremental.
#[derive(Debug, Clone)]
pub(crate) struct Uploader {
    task_index: usize,
    /// Distinguishes this backend's files from other tasks' and runs'.
    instance: String,
    /// SST name -> where it was uploaded (relative to the storage root),
    /// size and checksum.
    uploaded: Arc<Mutex<HashMap<String, UploadedFile>>>,
    /// The last memory image, once uploaded: its buffers take the next
    /// copy, which then costs no page faults.
    spare: Arc<Mutex<Option<MemoryImage>>>,
}

fn storage_failure(e: weir_checkpoint::StorageError) -> Failure {
    Failure::external(format!(
        "{}; check the checkpoint storage (state.checkpoints.dir) and its credentials",
        e.message
    ))
}

impl Uploader {
    pub fn new(task_index: usize) -> Self {
        let random: u64 = rand::random();
        Uploader {
            task_index,
            instance: format!("{random:016x}"),
            uploaded: Arc::default(),
            spare: Arc::default(),
        }
    }

    /// An uploader that knows `files` (name -> where, size, checksum) are
    /// in the checkpoint storage already: a restored checkpoint's, when
    /// the job owns it.
    pub fn with_files(task_index: usize, files: Vec<(String, UploadedFile)>) -> Self {
        let u = Uploader::new(task_index);
        u.uploaded.lock().expect("lock").extend(files);
        u
    }

    /// An uploaded memory image whose buffers can be reused.
    pub fn spare_image(&self) -> Option<MemoryImage> {
        self.spare.lock().expect("lock").take()
    }

    /// Uploads `bytes` to `path` in the snapshot's storage, as the file
    /// `name` of the snapshot (`what` names it in errors).
    async fn put(
        target: &SnapshotTarget,
        path: &str,
        name: &str,
        what: &str,
        bytes: Vec<u8>,
    ) -> Result<FileRef, Failure> {
        let size = bytes.len() as u64;
        let crc = crc32c::crc32c(&bytes);
        target
            .storage
            .put(path, bytes.into())
            .await
            .map_err(storage_failure)
            .map_err(|f| f.context(format!("uploading {what}")))?;
        Ok(FileRef {
            name: name.to_owned(),
            path: paths::relative(&target.dir, path),
            size,
            crc32c: crc,
        })
    }

    /// Uploads a local snapshot; returns the task's part of the metadata.
    pub async fn upload(
        &self,
        target: &SnapshotTarget,
        local: LocalTaskSnapshot,
    ) -> Result<TaskSnapshot, Failure> {
        let task_dir = format!("{}/task-{}", target.dir, self.task_index);
        let rel = |p: &str| paths::relative(&target.dir, p);
        if let SnapshotKind::Manual { full: true } = target.kind {
            // A full checkpoint refers to no shared file, so retention may
            // delete the ones earlier checkpoints uploaded: later
            // checkpoints upload their files again.
            self.uploaded.lock().expect("lock").clear();
        }
        let mut keyed = None;
        if let Some(snap) = &local.keyed {
            let mut files = Vec::new();
            for f in &snap.files {
                let src = snap.dir.join(&f.name);
                let shared = target.shared.as_ref().filter(|_| f.immutable);
                let known =
                    shared.and_then(|_| self.uploaded.lock().expect("lock").get(&f.name).cloned());
                let path = match (shared, known) {
                    (Some(_), Some((path, size, crc))) => {
                        // Uploaded by an earlier checkpoint: only referenced.
                        files.push(FileRef {
                            name: f.name.clone(),
                            path: rel(&path),
                            size,
                            crc32c: crc,
                        });
                        continue;
                    }
                    (Some(dir), None) => format!("{dir}/{}-{}", self.instance, f.name),
                    (None, _) => format!("{task_dir}/{}", f.name),
                };
                let (size, crc) = target
                    .storage
                    .put_file(&path, &src)
                    .await
                    .map_err(storage_failure)
                    .map_err(|e| e.context(format!("uploading {}", f.name)))?;
                if shared.is_some() {
                    self.uploaded
                        .lock()
                        .expect("lock")
                        .insert(f.name.clone(), (path.clone(), size, crc));
                }
                files.push(FileRef {
                    name: f.name.clone(),
                    path: rel(&path),
                    size,
                    crc32c: crc,
                });
            }
            keyed = Some(KeyedStateHandle {
                key_groups: snap.key_groups,
                states: snap.states.clone(),
                files,
            });
        }
        let mut memory = None;
        if let Some((module_hash, img)) = local.memory {
            let mut files = Vec::new();
            for (i, m) in img.memories.iter().enumerate() {
                let name = format!("memory-{i}");
                let path = format!("{task_dir}/{name}");
                files.push(Self::put(target, &path, &name, &name, image::encode(m)).await?);
            }
            *self.spare.lock().expect("lock") = Some(img);
            memory = Some(MemoryImageHandle { module_hash, files });
        }
        let mut saved = None;
        if let Some((version, bytes)) = local.saved {
            let path = format!("{task_dir}/saved");
            saved = Some(SavedStateHandle {
                version,
                file: Self::put(target, &path, "saved", "saved state", bytes).await?,
            });
        }
        let mut operator_files = BTreeMap::new();
        for (uid, files) in &local.operator_files {
            let mut refs = Vec::new();
            let dir = weir_core::fs::safe_name(uid);
            for (name, src) in files {
                let bytes = tokio::fs::read(src)
                    .await
                    .map_err(|e| Failure::internal(format!("reading {}: {e}", src.display())))?;
                let path = format!("{task_dir}/{dir}/{name}");
                refs.push(Self::put(target, &path, name, name, bytes).await?);
            }
            operator_files.insert(uid.clone(), refs);
        }
        let mut in_flight = None;
        let (input, output) = local.in_flight;
        if !input.is_empty() || !output.is_empty() {
            let put = async |name: &str, bytes: Vec<u8>| -> Result<Option<FileRef>, Failure> {
                if bytes.is_empty() {
                    return Ok(None);
                }
                let path = format!("{task_dir}/{name}");
                Self::put(target, &path, name, name, bytes).await.map(Some)
            };
            in_flight = Some(InFlightHandle {
                input: put("in-flight-input", input).await?,
                outputs: if output.is_empty() {
                    Vec::new()
                } else {
                    local.outputs
                },
                output: put("in-flight-output", output).await?,
            });
        }
        if let Some(snap) = &local.keyed {
            let _ = tokio::fs::remove_dir_all(&snap.dir).await;
        }
        Ok(TaskSnapshot {
            operators: local.operators,
            subtask: local.subtask,
            parallelism: local.parallelism,
            keyed,
            memory,
            saved,
            operator_state: local.operator_state,
            operator_files,
            in_flight,
        })
    }
}

/// Files of a snapshot downloaded (and checked) before tasks start, by
/// their path relative to the snapshot directory.
#[derive(Debug, Default)]
pub struct Prefetched {
    pub files: HashMap<String, PathBuf>,
}

impl Prefetched {
    fn local(&self, f: &FileRef) -> Result<&Path, Failure> {
        self.files
            .get(&f.path)
            .map(PathBuf::as_path)
            .ok_or_else(|| {
                Failure::internal(format!("snapshot file {} was not downloaded", f.path))
            })
    }

    /// A directory holding a keyed state handle's files, for RocksDB.
    pub(crate) fn keyed_dir(&self, handle: &KeyedStateHandle, into: &Path) -> Result<(), Failure> {
        std::fs::create_dir_all(into)
            .map_err(|e| Failure::internal(format!("creating {}: {e}", into.display())))?;
        for f in &handle.files {
            let src = self.local(f)?;
            let dst = into.join(&f.name);
            std::fs::hard_link(src, &dst)
                .or_else(|_| std::fs::copy(src, &dst).map(|_| ()))
                .map_err(|e| Failure::internal(format!("preparing {}: {e}", dst.display())))?;
        }
        Ok(())
    }

    pub(crate) fn memory(&self, handle: &MemoryImageHandle) -> Result<MemoryImage, Failure> {
        let mut memories = Vec::new();
        for f in &handle.files {
            let bytes = std::fs::read(self.local(f)?)
                .map_err(|e| Failure::internal(format!("reading a memory image: {e}")))?;
            memories.push(image::decode(&bytes).map_err(Failure::internal)?);
        }
        Ok(MemoryImage { memories })
    }

    /// Local copies of operator files, by name.
    pub(crate) fn named(&self, files: &[FileRef]) -> Result<weir_connectors::SinkFiles, Failure> {
        files
            .iter()
            .map(|f| Ok((f.name.clone(), self.local(f)?.to_owned())))
            .collect()
    }

    pub(crate) fn bytes(&self, f: &FileRef) -> Result<Vec<u8>, Failure> {
        std::fs::read(self.local(f)?)
            .map_err(|e| Failure::internal(format!("reading saved state: {e}")))
    }
}

/// A file of a snapshot failed its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptFile {
    pub url: String,
    pub reason: String,
}

/// Downloads the files a restore needs into `into`, checking sizes and
/// checksums. A missing or damaged file is reported as corrupt, so that the
/// caller can fall back to an older checkpoint.
pub async fn prefetch(
    storage: &Storage,
    dir: &str,
    files: impl IntoIterator<Item = &FileRef>,
    into: &Path,
) -> Result<Result<Prefetched, CorruptFile>, Failure> {
    let mut out = Prefetched::default();
    std::fs::create_dir_all(into)
        .map_err(|e| Failure::internal(format!("creating {}: {e}", into.display())))?;
    for (n, f) in files.into_iter().enumerate() {
        if out.files.contains_key(&f.path) {
            continue;
        }
        let Some(full) = paths::join(dir, &f.path) else {
            return Ok(Err(CorruptFile {
                url: storage.url_of(dir),
                reason: format!("file path {} leaves the storage root", f.path),
            }));
        };
        let bytes = match storage.get(&full).await {
            Ok(b) => b,
            Err(e) if e.not_found => {
                return Ok(Err(CorruptFile {
                    url: storage.url_of(&full),
                    reason: "the file is missing".into(),
                }));
            }
            Err(e) => return Err(storage_failure(e)),
        };
        if bytes.len() as u64 != f.size {
            return Ok(Err(CorruptFile {
                url: storage.url_of(&full),
                reason: format!(
                    "it has {} bytes, the checkpoint recorded {}",
                    bytes.len(),
                    f.size
                ),
            }));
        }
        if crc32c::crc32c(&bytes) != f.crc32c {
            return Ok(Err(CorruptFile {
                url: storage.url_of(&full),
                reason: "its checksum does not match".into(),
            }));
        }
        let local = into.join(format!("{n}-{}", f.name));
        std::fs::write(&local, &bytes)
            .map_err(|e| Failure::internal(format!("writing {}: {e}", local.display())))?;
        out.files.insert(f.path.clone(), local);
    }
    Ok(Ok(out))
}

/// The global index of a task, as the coordinator counts acks.
pub(crate) fn task_index(chains: &[crate::Chain], id: TaskId) -> usize {
    chains[..id.chain]
        .iter()
        .map(|c| c.parallelism as usize)
        .sum::<usize>()
        + id.subtask as usize
}
