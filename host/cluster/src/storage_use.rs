//! What each tenant keeps in checkpoint and savepoint storage, held to its
//! `storage-quota`: the state of its running jobs' latest checkpoints plus
//! its savepoints (listed now and then).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weir_checkpoint::{S3Options, Storage, block_on};
use weir_core::{Failure, JobId};

/// How long a listing of a tenant's savepoints is trusted.
const SAVEPOINTS_FRESH: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct TenantUse {
    checkpoints: HashMap<JobId, u64>,
    savepoints: Option<(Instant, u64)>,
}

/// Storage use of every tenant with a quota.
#[derive(Debug, Default)]
pub struct StorageUse {
    tenants: Mutex<HashMap<String, TenantUse>>,
}

/// Where a tenant's savepoints are and how much it may keep.
#[derive(Debug, Clone)]
pub struct StorageQuota {
    pub tenant: String,
    pub bytes: u64,
    pub savepoints_dir: Option<String>,
    pub s3: S3Options,
}

fn savepoint_bytes(q: &StorageQuota) -> u64 {
    let Some(dir) = &q.savepoints_dir else {
        return 0;
    };
    match Storage::open(dir, &q.s3).map(|s| block_on(s.size_of(""))) {
        Ok(Ok(n)) => n,
        Ok(Err(e)) | Err(e) => {
            // Nothing there yet, or unreadable: nothing counted.
            if !e.not_found {
                tracing::warn!("cannot measure the savepoints of tenant {}: {e}", q.tenant);
            }
            0
        }
    }
}

fn fmt_bytes(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
}

impl StorageUse {
    fn savepoints(&self, q: &StorageQuota, fresh: bool) -> u64 {
        {
            let t = self.tenants.lock().expect("storage use");
            if let Some((at, n)) = t.get(&q.tenant).and_then(|u| u.savepoints)
                && !fresh
                && at.elapsed() < SAVEPOINTS_FRESH
            {
                return n;
            }
        }
        let n = savepoint_bytes(q);
        self.tenants
            .lock()
            .expect("storage use")
            .entry(q.tenant.clone())
            .or_default()
            .savepoints = Some((Instant::now(), n));
        n
    }

    /// Job `job` completed a checkpoint of `bytes`: Errs (a limit) when the
    /// tenant's storage is then over its quota.
    pub fn checkpoint(&self, q: &StorageQuota, job: JobId, bytes: u64) -> Result<(), Failure> {
        let savepoints = self.savepoints(q, false);
        let mut t = self.tenants.lock().expect("storage use");
        let u = t.entry(q.tenant.clone()).or_default();
        u.checkpoints.insert(job, bytes);
        let checkpoints: u64 = u.checkpoints.values().sum();
        let total = checkpoints + savepoints;
        if total > q.bytes {
            u.checkpoints.remove(&job);
            return Err(Failure::limit(format!(
                "tenant {}'s checkpoints ({}) and savepoints ({}) take {}, over its quota of {} \
                 (weir.tenants.{}.storage-quota); dispose of savepoints or keep less state",
                q.tenant,
                fmt_bytes(checkpoints),
                fmt_bytes(savepoints),
                fmt_bytes(total),
                fmt_bytes(q.bytes),
                q.tenant
            )));
        }
        Ok(())
    }

    /// Whether the tenant may take another savepoint.
    pub fn savepoint_allowed(&self, q: &StorageQuota) -> Result<(), String> {
        let savepoints = self.savepoints(q, true);
        let checkpoints: u64 = self
            .tenants
            .lock()
            .expect("storage use")
            .get(&q.tenant)
            .map_or(0, |u| u.checkpoints.values().sum());
        if checkpoints + savepoints >= q.bytes {
            return Err(format!(
                "tenant {}'s checkpoints ({}) and savepoints ({}) use its quota of {} \
                 (weir.tenants.{}.storage-quota); dispose of savepoints first",
                q.tenant,
                fmt_bytes(checkpoints),
                fmt_bytes(savepoints),
                fmt_bytes(q.bytes),
                q.tenant
            ));
        }
        Ok(())
    }

    /// A job ended: its checkpoints no longer count.
    pub fn job_ended(&self, tenant: &str, job: JobId) {
        if let Some(u) = self.tenants.lock().expect("storage use").get_mut(tenant) {
            u.checkpoints.remove(&job);
        }
    }
}
