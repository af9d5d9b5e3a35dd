//! The HA store (Flink's `high-availability.storageDir`): uploaded modules,
//! the jobs the session runs, and each job's latest completed checkpoint.
//! A session that starts over the same store resumes those jobs.
//!
//! Layout, under the store's URL:
//! - `modules/<sha256>.wasm`: module bytes, shared by jars and jobs;
//! - `jars/<jar-id>.json`: an uploaded jar ([`JarInfo`]);
//! - `jobs/<job-id>.json`: a submitted job that has not ended ([`JobRecord`]);
//! - `jobs/<job-id>.checkpoint`: the location of its latest completed
//!   checkpoint, written before the job's sinks commit it.

use anyhow::{Context, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weir_checkpoint::{S3Options, Storage, block_on};
use weir_core::JobId;

/// An uploaded job module (Flink's jar).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JarInfo {
    pub id: String,
    pub name: String,
    /// Upload time (ms since the epoch).
    pub uploaded: u64,
    pub size: u64,
    pub module_hash: String,
    /// The jobs the component holds (entry names).
    pub entries: Vec<String>,
    /// Tenant that owns it (empty without tenancy).
    #[serde(default)]
    pub tenant: String,
}

/// A submitted job: enough to plan and start it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub name: String,
    pub module_hash: String,
    pub jar_id: Option<String>,
    pub entry: Option<String>,
    pub args: Vec<String>,
    pub parallelism: Option<u32>,
    pub savepoint_path: Option<String>,
    pub allow_non_restored: bool,
    /// Configuration given with the submission.
    pub config: BTreeMap<String, String>,
    pub submitted: u64,
    #[serde(default)]
    pub tenant: String,
    /// The modules the job has run, oldest first.
    #[serde(default)]
    pub versions: Vec<ModuleVersion>,
}

/// One module a job ran: since when, and how it came to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleVersion {
    pub module_hash: String,
    pub jar_id: Option<String>,
    /// The version the job's plan gives itself (`set_version`).
    pub version: String,
    pub since: u64,
    /// `submitted`, `swapped` (changed in place at a barrier), `upgraded`
    /// (stop with a savepoint and a restart) or `rolled-back`.
    pub how: String,
    /// The snapshot it started from, if any.
    pub from: Option<String>,
}

/// The HA store.
#[derive(Debug, Clone)]
pub struct HaStore {
    storage: Storage,
    /// With leader election: this session's lease, checked before every
    /// write, so that a deposed leader changes nothing.
    lease: Option<std::sync::Arc<crate::leader::Lease>>,
}

pub(crate) fn err(e: weir_checkpoint::storage::StorageError) -> anyhow::Error {
    anyhow::anyhow!(e.message)
}

impl HaStore {
    pub fn open(url: &str, s3: &S3Options) -> Result<HaStore> {
        let storage = Storage::open(url, s3)
            .map_err(err)
            .context("high-availability.storageDir")?;
        Ok(HaStore {
            storage,
            lease: None,
        })
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Fences every later write with `lease`.
    pub fn set_lease(&mut self, lease: std::sync::Arc<crate::leader::Lease>) {
        self.lease = Some(lease);
    }

    /// An error once this session no longer leads.
    pub fn fenced(&self) -> Result<()> {
        match &self.lease {
            Some(l) => l.check().context("refusing to write to the HA store"),
            None => Ok(()),
        }
    }

    pub fn url(&self) -> &str {
        self.storage.url()
    }

    fn put(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.fenced()?;
        block_on(self.storage.put(path, Bytes::from(bytes))).map_err(err)
    }

    fn get(&self, path: &str) -> Result<Option<Bytes>> {
        match block_on(self.storage.get(path)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.not_found => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.fenced()?;
        block_on(self.storage.delete(path)).map_err(err)
    }

    fn list_json<T: for<'de> Deserialize<'de>>(&self, dir: &str) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for p in block_on(self.storage.list(dir)).map_err(err)? {
            if !p.ends_with(".json") {
                continue;
            }
            let Some(bytes) = self.get(&p)? else { continue };
            match serde_json::from_slice(&bytes) {
                Ok(v) => out.push(v),
                Err(e) => tracing::warn!("skipping {}: {e}", self.storage.url_of(&p)),
            }
        }
        Ok(out)
    }

    pub fn put_module(&self, hash: &str, bytes: &[u8]) -> Result<()> {
        let path = format!("modules/{hash}.wasm");
        if block_on(self.storage.exists(&path)).map_err(err)? {
            return Ok(());
        }
        self.put(&path, bytes.to_vec())
    }

    pub fn module(&self, hash: &str) -> Result<Option<Bytes>> {
        self.get(&format!("modules/{hash}.wasm"))
    }

    pub fn delete_module(&self, hash: &str) -> Result<()> {
        self.delete(&format!("modules/{hash}.wasm"))
    }

    pub fn put_jar(&self, jar: &JarInfo) -> Result<()> {
        self.put(&format!("jars/{}.json", jar.id), serde_json::to_vec(jar)?)
    }

    pub fn delete_jar(&self, id: &str) -> Result<()> {
        self.delete(&format!("jars/{id}.json"))
    }

    pub fn jars(&self) -> Result<Vec<JarInfo>> {
        self.list_json("jars")
    }

    pub fn put_job(&self, job: &JobRecord) -> Result<()> {
        self.put(
            &format!("jobs/{}.json", job.job_id),
            serde_json::to_vec(job)?,
        )
    }

    pub fn jobs(&self) -> Result<Vec<JobRecord>> {
        self.list_json("jobs")
    }

    /// Forgets a job that ended.
    pub fn remove_job(&self, id: JobId) -> Result<()> {
        self.delete(&format!("jobs/{id}.checkpoint"))?;
        self.delete(&format!("jobs/{id}.json"))
    }

    /// Records the job's latest completed checkpoint. An error keeps the
    /// job's sinks from committing that checkpoint (see
    /// `JobListener::checkpoint_completed`).
    pub fn set_latest_checkpoint(&self, id: JobId, location: &str) -> Result<()> {
        self.put(
            &format!("jobs/{id}.checkpoint"),
            location.as_bytes().to_vec(),
        )
        .context("recording the latest checkpoint in the HA store")
    }

    pub fn latest_checkpoint(&self, id: JobId) -> Result<Option<String>> {
        Ok(self
            .get(&format!("jobs/{id}.checkpoint"))?
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .filter(|s| !s.is_empty()))
    }
}
