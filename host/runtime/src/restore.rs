//! Starting a job from a snapshot: finding it, checking it, matching its
//! state to the job, and downloading what the tasks will load.

use crate::context::JobContext;
use crate::execution::{ExecutionGraph, edge_name};
use crate::snapshot::{Prefetched, prefetch};
use std::path::Path;
use std::sync::Arc;
use weir_checkpoint::metadata::{FileRef, SnapshotMetadata};
use weir_checkpoint::protocol::{
    Decision, RestorePlan, TargetJob, TargetOperator, TaskRestore, plan_restore,
};
use weir_checkpoint::storage::split_location;
use weir_checkpoint::{S3Options, Storage, block_on, paths};
use weir_core::{Failure, GuestFactory};

/// A snapshot matched to the job and downloaded.
#[derive(Debug)]
pub(crate) struct Restored {
    /// Where the snapshot is.
    pub location: String,
    pub storage: Storage,
    /// Its directory in `storage`.
    pub dir: String,
    pub metadata: SnapshotMetadata,
    pub plan: RestorePlan,
    pub files: Arc<Prefetched>,
    /// The job owns the snapshot: its tasks' next checkpoints may refer to
    /// its shared files rather than upload them again.
    pub reusable: bool,
}

fn storage_failure(e: weir_checkpoint::StorageError) -> Failure {
    Failure::external(e.message)
}

/// The snapshots a location names, newest first: one `chk-<n>` or
/// savepoint directory, or every checkpoint in a job's checkpoint directory.
pub fn candidates(location: &str, s3: &S3Options) -> Result<Vec<(Storage, String)>, Failure> {
    let (root, rel) = split_location(location).map_err(storage_failure)?;
    let storage = Storage::open(&root, s3).map_err(storage_failure)?;
    let metadata = format!("{rel}/{}", paths::METADATA);
    if block_on(storage.exists(&metadata)).map_err(storage_failure)? {
        // A checkpoint named itself: should it be unusable, older retained
        // checkpoints of the same job follow it.
        let mut out = vec![(storage.clone(), rel.clone())];
        if let Some((job_dir, name)) = rel.rsplit_once('/')
            && let Some(id) = paths::parse_checkpoint_dir(name)
        {
            out.extend(
                checkpoints_in(&storage, job_dir)?
                    .into_iter()
                    .filter(|(n, _)| *n < id.0)
                    .map(|(_, d)| (storage.clone(), d)),
            );
        }
        return Ok(out);
    }
    let found = checkpoints_in(&storage, &rel)?;
    if found.is_empty() {
        return Err(Failure::user(format!(
            "no snapshot at {location}: give a chk-<n> or savepoint directory (with a \
             _metadata file), or a job's checkpoint directory"
        )));
    }
    Ok(found
        .into_iter()
        .map(|(_, d)| (storage.clone(), d))
        .collect())
}

/// The checkpoints (with `_metadata`) in a job's checkpoint directory,
/// newest first.
fn checkpoints_in(storage: &Storage, rel: &str) -> Result<Vec<(u64, String)>, Failure> {
    let mut found: Vec<(u64, String)> = block_on(storage.list(rel))
        .map_err(storage_failure)?
        .into_iter()
        .filter_map(|p| {
            let dir = p.strip_suffix(&format!("/{}", paths::METADATA))?;
            let name = dir.rsplit('/').next()?;
            paths::parse_checkpoint_dir(name).map(|id| (id.0, dir.to_owned()))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.dedup();
    Ok(found)
}

/// How the job being started looks to the restore matching.
pub fn target_job(factory: &dyn GuestFactory) -> TargetJob {
    let graph = factory.graph();
    let exec = ExecutionGraph::build(graph);
    let uids: Vec<String> = graph.operators.iter().map(|o| o.uid.0.clone()).collect();
    TargetJob {
        module_hash: factory.code_hash(),
        instance_hash: factory.instance_hash(),
        has_state_hooks: graph.has_state_hooks,
        max_parallelism: graph.max_parallelism,
        operators: graph
            .operators
            .iter()
            .map(|o| TargetOperator {
                uid: o.uid.0.clone(),
                name: o.name.clone(),
                keyed: o.is_keyed(),
                parallelism: o.parallelism,
            })
            .collect(),
        chains: exec
            .chains
            .iter()
            .map(|c| {
                (
                    c.ops.iter().map(|&o| uids[o as usize].clone()).collect(),
                    c.parallelism,
                )
            })
            .collect(),
        chain_outputs: exec
            .chains
            .iter()
            .map(|c| {
                exec.outputs(c.id)
                    .map(|(_, e)| edge_name(&uids, e.from_op, e.port, e.to_op))
                    .collect()
            })
            .collect(),
    }
}

/// Deletes the savepoint at `location` (a savepoint directory or its
/// `_metadata`) and returns its URL. Checkpoints are refused: their job
/// manages them.
pub fn dispose_savepoint(location: &str, s3: &S3Options) -> Result<String, Failure> {
    let (root, dir) = split_location(location).map_err(|e| Failure::user(e.message))?;
    let storage = Storage::open(&root, s3).map_err(|e| Failure::user(e.message))?;
    let url = storage.url_of(&dir);
    let metadata = format!("{dir}/{}", paths::METADATA);
    if !block_on(storage.exists(&metadata)).map_err(storage_failure)? {
        return Err(Failure::user(format!(
            "{url} is not a savepoint: it has no {}",
            paths::METADATA
        )));
    }
    let meta = read_metadata(&storage, &dir)?;
    if meta.kind != weir_checkpoint::metadata::Kind::Savepoint {
        return Err(Failure::user(format!(
            "{url} is a checkpoint, which its job manages; only savepoints are disposed"
        )));
    }
    block_on(storage.delete_dir(&dir)).map_err(storage_failure)?;
    Ok(url)
}

/// Reads and verifies the metadata of a snapshot directory.
pub fn read_metadata(storage: &Storage, dir: &str) -> Result<SnapshotMetadata, Failure> {
    let path = format!("{dir}/{}", paths::METADATA);
    let bytes = block_on(storage.get(&path)).map_err(storage_failure)?;
    SnapshotMetadata::decode(&bytes).map_err(|e| {
        Failure::external(format!(
            "the snapshot metadata {} cannot be used: {e}",
            storage.url_of(&path)
        ))
    })
}

/// The files tasks load.
pub(crate) fn needed<'a>(tasks: impl Iterator<Item = &'a TaskRestore>) -> Vec<FileRef> {
    let mut files = Vec::new();
    for t in tasks {
        for k in &t.keyed {
            files.extend(k.files.iter().cloned());
        }
        if let Some(m) = &t.memory {
            files.extend(m.files.iter().cloned());
        }
        for s in &t.saved {
            files.push(s.file.clone());
        }
        files.extend(t.operator_files.values().flatten().cloned());
        files.extend(t.in_flight.iter().map(|f| f.file.clone()));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    files
}

/// Loads the first usable snapshot of `candidates`: a corrupt or incomplete
/// one is reported and skipped in favour of the next (older) one. State the
/// job does not claim is an error unless `allow_non_restored`.
pub(crate) fn load(
    ctx: &JobContext,
    candidates: &[(Storage, String)],
    allow_non_restored: bool,
    into: &Path,
) -> Result<Restored, Failure> {
    let target = target_job(ctx.factory().as_ref());
    let mut problems = Vec::new();
    for (i, (storage, dir)) in candidates.iter().enumerate() {
        let url = storage.url_of(dir);
        let metadata = match read_metadata(storage, dir) {
            Ok(m) => m,
            Err(f) => {
                tracing::error!(job = %ctx.job_id, "{}; trying an older checkpoint", f.message);
                problems.push(f.message);
                continue;
            }
        };
        let plan = plan_restore(&metadata, &target, allow_non_restored);
        if let Some(err) = plan.error() {
            return Err(Failure::user(format!("cannot restore from {url}: {err}")));
        }
        for line in &plan.report {
            if let Decision::Skipped(why) = &line.decision {
                tracing::warn!(
                    job = %ctx.job_id,
                    "not restoring {} of operator(s) {}: {why}",
                    line.what,
                    line.uids.join(", ")
                );
            }
        }
        let files = needed(plan.tasks.values());
        let local = into.join(format!("snapshot-{i}"));
        match block_on(prefetch(storage, dir, files.iter(), &local))? {
            Ok(files) => {
                tracing::info!(job = %ctx.job_id, "restoring from {url}");
                return Ok(Restored {
                    location: url,
                    storage: storage.clone(),
                    dir: dir.clone(),
                    metadata,
                    plan,
                    files: Arc::new(files),
                    reusable: false,
                });
            }
            Err(corrupt) => {
                let msg = format!(
                    "snapshot {url} is corrupt: file {} {}",
                    corrupt.url, corrupt.reason
                );
                tracing::error!(job = %ctx.job_id, "{msg}; trying an older checkpoint");
                problems.push(msg);
            }
        }
    }
    Err(Failure::external(format!(
        "no usable snapshot to restore from: {}",
        problems.join("; ")
    )))
}
