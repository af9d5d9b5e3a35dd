//! The session: module store, job manager and task slots in one process.

use crate::ha::{HaStore, JarInfo, JobRecord, ModuleVersion};
use crate::status::{ExceptionEntry, JobState, Operation, StatusCell, now_ms, remember};
use crate::storage_use::{StorageQuota, StorageUse};
use crate::tenancy::{Caller, Tenancy, Tenant, url_within};
use crate::{ApiError, ApiResult};
use anyhow::Context;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use weir_checkpoint::S3Options;
use weir_core::config::{self, ConfigLayer, JobOwner};
use weir_core::{Config, JobGraph, JobId};
use weir_runtime::{
    CommandSender, ExecutionGraph, JobCommand, JobMetrics, JobOutcome, JobSpec, RestoreRequest,
};
use weir_wasm::{CompileCache, EngineOptions, InstanceLimits, JobModule, WasmEngine, WasmJob};

/// How a session is configured: layers of Flink-like keys.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// From the configuration file.
    pub file: ConfigLayer,
    /// From `-D` flags and the command line.
    pub flags: ConfigLayer,
    /// A program with the `compile-module` command (this one, for `weir
    /// session`): uploads compile in a child process of it, stopped after
    /// `weir.compile.timeout`. Without one they compile in this process.
    pub compiler: Option<PathBuf>,
    /// The connectors jobs may use.
    pub connectors: weir_runtime::Connectors,
}

/// A job the session runs or ran.
#[derive(Debug)]
pub struct JobEntry {
    pub id: JobId,
    pub name: String,
    /// What the job runs; a module swap replaces it.
    record: std::sync::RwLock<JobRecord>,
    pub exec: ExecutionGraph,
    pub graph: JobGraph,
    pub config: Config,
    pub metrics: Arc<JobMetrics>,
    pub status: Arc<StatusCell>,
    pub slots: u32,
    commands: CommandSender,
    /// Set once the job has ended and the session has forgotten its run.
    ended: (Mutex<bool>, std::sync::Condvar),
    /// Set while an upgrade replaces the job's module: when this run ends,
    /// the job stays in the HA store for the next one.
    pub upgrading: std::sync::atomic::AtomicBool,
}

impl JobEntry {
    /// What the job runs now.
    pub fn record(&self) -> JobRecord {
        self.record.read().expect("record lock").clone()
    }

    /// Records the module the job changed to in place.
    pub(crate) fn set_record(&self, record: JobRecord) {
        *self.record.write().expect("record lock") = record;
    }

    pub fn tenant(&self) -> String {
        self.record.read().expect("record lock").tenant.clone()
    }

    pub fn state(&self) -> JobState {
        self.status.lock().state
    }

    pub fn send(&self, cmd: JobCommand) -> bool {
        self.commands.send(cmd).is_ok()
    }

    /// Waits up to `limit` for the job to end; whether it did.
    pub fn wait_ended(&self, limit: std::time::Duration) -> bool {
        let ended = self.ended.0.lock().expect("ended lock");
        let (ended, _) = self
            .ended
            .1
            .wait_timeout_while(ended, limit, |e| !*e)
            .expect("ended lock");
        *ended
    }
}

/// A job planned and not yet started.
pub(crate) struct Prepared {
    pub job_id: JobId,
    pub tenant: Option<Arc<Tenant>>,
    pub config: Config,
    pub graph: JobGraph,
    pub factory: Arc<WasmJob>,
}

/// What `POST /jars/:id/run` (or a resumed job) asks for.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub entry: Option<String>,
    pub args: Vec<String>,
    pub parallelism: Option<u32>,
    pub savepoint_path: Option<String>,
    pub allow_non_restored: bool,
    pub config: BTreeMap<String, String>,
}

pub(crate) struct Inner {
    options: SessionOptions,
    /// Defaults the session adds (directories under its data directory).
    session_defaults: ConfigLayer,
    pub config: Config,
    pub data_dir: PathBuf,
    /// Where tasks in this process keep their working files.
    work: weir_runtime::ScratchDir,
    engine: WasmEngine,
    cache: CompileCache,
    pub ha: HaStore,
    pub jars: RwLock<BTreeMap<String, JarInfo>>,
    modules: Mutex<HashMap<String, Arc<JobModule>>>,
    pub jobs: RwLock<BTreeMap<JobId, Arc<JobEntry>>>,
    pub started_ms: u64,
    /// Serializes submissions, so that slot accounting is exact.
    submit: Mutex<()>,
    pub tenancy: Tenancy,
    /// Bounds how many modules compile at once.
    compiling: Semaphore,
    /// Uploads in progress, by owner.
    uploading: Mutex<HashMap<String, u32>>,
    /// What each tenant keeps in checkpoint and savepoint storage.
    pub storage: Arc<StorageUse>,
    /// Savepoint disposals, with their owner.
    disposals: Mutex<indexmap::IndexMap<String, (String, Operation)>>,
    /// Upgrades, by trigger id.
    pub upgrades: Mutex<indexmap::IndexMap<String, crate::upgrade::UpgradeOperation>>,
    /// Slots held for jobs that stop to start again (a restart-mode upgrade
    /// or a rescale), so that no other job takes them in between.
    pub reserved: Mutex<HashMap<JobId, u32>>,
    /// Task managers and the cluster endpoint, with `weir.cluster.port`.
    pub cluster: Option<Arc<weir_runtime::Cluster>>,
    /// This session's leadership, with `high-availability.type: lease`.
    pub lease: Option<Arc<crate::leader::Lease>>,
}

/// A counting semaphore for blocking threads.
#[derive(Debug)]
pub(crate) struct Semaphore {
    free: Mutex<u32>,
    cv: std::sync::Condvar,
}

impl Semaphore {
    fn new(n: u32) -> Self {
        Semaphore {
            free: Mutex::new(n),
            cv: std::sync::Condvar::new(),
        }
    }

    fn acquire(&self) -> SemaphoreGuard<'_> {
        let mut free = self.free.lock().expect("semaphore");
        while *free == 0 {
            free = self.cv.wait(free).expect("semaphore");
        }
        *free -= 1;
        SemaphoreGuard(self)
    }
}

pub(crate) struct SemaphoreGuard<'a>(&'a Semaphore);

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().expect("semaphore") += 1;
        self.0.cv.notify_one();
    }
}

/// The session cluster.
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("data_dir", &self.inner.data_dir)
            .finish()
    }
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir)
        .join("weir")
}

/// Turns a file name into something safe in a jar id and a URL.
fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let s: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if s.is_empty() { "job.wasm".into() } else { s }
}

impl Session {
    /// Opens the session: its data directory, HA store and modules; jobs
    /// that were running when the session last stopped are resumed.
    pub fn open(mut options: SessionOptions) -> anyhow::Result<Session> {
        let tenancy = Tenancy::take(&mut [&mut options.file, &mut options.flags])
            .map_err(|e| anyhow::anyhow!(e))
            .context("in the session's tenants")?;
        let env = config::from_env(std::env::vars());
        let first = Config::from_layers(&[&options.file, &env, &options.flags])
            .context("in the session configuration")?;
        // Every job's RocksDB instances share the session's managed memory.
        weir_state::share_memory(first.managed_memory as usize, first.write_buffer_ratio);
        let data_dir = first
            .data_dir
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(default_data_dir);
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let data_dir = std::path::absolute(&data_dir)?;
        let url = |sub: &str| format!("file://{}", data_dir.join(sub).display());
        let session_defaults: ConfigLayer = [
            ("state.checkpoints.dir", url("checkpoints")),
            ("state.savepoints.dir", url("savepoints")),
            ("high-availability.storageDir", url("ha")),
            (
                "weir.compile-cache.dir",
                data_dir.join("compiled").display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let config = Config::from_layers(&[&session_defaults, &options.file, &env, &options.flags])
            .context("in the session configuration")?;
        let ha_url = config
            .ha_storage_dir
            .clone()
            .expect("the session sets a default HA directory");
        // The tasks' working files: the session's own setting, never a
        // job's, so a job does not choose where the session writes.
        let work_base = config
            .rocksdb_local_dir
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("work"));
        let work =
            weir_runtime::ScratchDir::claim(&work_base, "weir-session").with_context(|| {
                format!(
                    "cannot make a working directory under {}; set state.backend.rocksdb.localdir",
                    work_base.display()
                )
            })?;
        let mut ha = HaStore::open(&ha_url, &S3Options::from_config(&config))?;
        let lease = lead(&config, &mut ha)?;
        let engine = WasmEngine::new(EngineOptions {
            fuel: config.guest_fuel_per_call > 0 || tenancy.meters_fuel(),
        })?;
        let cache = CompileCache::new(
            config
                .compile_cache_dir
                .clone()
                .expect("the session sets a compile cache"),
        )
        .with_max_size(config.compile_cache_max_size);
        let jars = ha
            .jars()
            .context("reading uploaded modules from the HA store")?
            .into_iter()
            .map(|j| (j.id.clone(), j))
            .collect();
        let compiling = Semaphore::new(config.compile_max_concurrent);
        let cluster = start_cluster(&config, &ha)?;
        if let Some(l) = &lease {
            l.set_endpoints(None, cluster.as_ref().map(|c| c.address().to_owned()));
        }
        let session = Session {
            inner: Arc::new(Inner {
                compiling,
                uploading: Mutex::default(),
                storage: Arc::default(),
                options,
                session_defaults,
                config,
                data_dir,
                work,
                engine,
                cache,
                ha,
                jars: RwLock::new(jars),
                modules: Mutex::new(HashMap::new()),
                jobs: RwLock::new(BTreeMap::new()),
                started_ms: now_ms(),
                submit: Mutex::new(()),
                tenancy,
                disposals: Mutex::default(),
                upgrades: Mutex::default(),
                reserved: Mutex::default(),
                cluster,
                lease,
            }),
        };
        session.resume_jobs();
        Ok(session)
    }

    /// When the session started (ms since the epoch).
    pub fn started_ms(&self) -> u64 {
        self.inner.started_ms
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.data_dir
    }

    /// Slots of this process and of the task managers that joined.
    pub fn slots_total(&self) -> u32 {
        match &self.inner.cluster {
            Some(c) => c.total_slots(),
            None => self.inner.config.task_slots,
        }
    }

    /// Slots no job's current attempt holds (every slot not in use
    /// without a cluster).
    pub fn slots_free(&self) -> u64 {
        match &self.inner.cluster {
            Some(c) => c.free_slots().into(),
            None => self.slots_total().saturating_sub(self.slots_used()).into(),
        }
    }

    /// Tells the sessions standing by where this one's REST endpoint is.
    pub fn set_rest_endpoint(&self, url: &str) {
        if let Some(l) = &self.inner.lease {
            l.set_endpoints(
                Some(url.to_owned()),
                self.cluster_address().map(str::to_owned),
            );
        }
    }

    /// The cluster endpoint's URL, with `weir.cluster.port`.
    pub fn cluster_address(&self) -> Option<&str> {
        self.inner.cluster.as_deref().map(|c| c.address())
    }

    /// The task managers that joined.
    pub fn workers(&self) -> Vec<weir_runtime::WorkerView> {
        self.inner
            .cluster
            .as_ref()
            .map(|c| c.workers())
            .unwrap_or_default()
    }

    pub fn slots_used(&self) -> u32 {
        self.slots_used_besides(None)
    }

    /// Slots live jobs take, and those held for jobs that restart, but for
    /// the reservation of `job`.
    pub(crate) fn slots_used_besides(&self, job: Option<JobId>) -> u32 {
        let jobs = self.all_jobs();
        let live: u32 = jobs
            .iter()
            .filter(|j| !j.state().is_terminal())
            .map(|j| j.slots)
            .sum();
        let reserved = self.inner.reserved.lock().expect("reserved lock");
        let held: u32 = reserved
            .iter()
            .filter(|(id, _)| Some(**id) != job)
            // A job that runs again counts as itself.
            .filter(|(id, _)| {
                !jobs
                    .iter()
                    .any(|j| j.id == **id && !j.state().is_terminal())
            })
            .map(|(_, n)| *n)
            .sum();
        live + held
    }

    pub fn tenancy(&self) -> &Tenancy {
        &self.inner.tenancy
    }

    /// Every job, whoever owns it.
    pub fn all_jobs(&self) -> Vec<Arc<JobEntry>> {
        self.inner
            .jobs
            .read()
            .expect("jobs lock")
            .values()
            .cloned()
            .collect()
    }

    /// The jobs `caller` may see.
    pub fn jobs(&self, caller: &Caller) -> Vec<Arc<JobEntry>> {
        self.prune_ended_jobs();
        self.all_jobs()
            .into_iter()
            .filter(|j| caller.sees(&j.tenant()))
            .collect()
    }

    /// A job `caller` may see; other tenants' jobs are as unknown as jobs
    /// that never existed.
    pub fn job(&self, id: &str, caller: &Caller) -> ApiResult<Arc<JobEntry>> {
        let parsed: JobId = id.parse().map_err(ApiError::bad_request)?;
        self.inner
            .jobs
            .read()
            .expect("jobs lock")
            .get(&parsed)
            .filter(|j| caller.sees(&j.tenant()))
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "job {id} is not known to this session; `weir list` shows its jobs"
                ))
            })
    }

    /// The uploaded jobs `caller` may see.
    pub fn jars(&self, caller: &Caller) -> Vec<JarInfo> {
        self.inner
            .jars
            .read()
            .expect("jars lock")
            .values()
            .filter(|j| caller.sees(&j.tenant))
            .cloned()
            .collect()
    }

    pub(crate) fn jar(&self, id: &str, caller: &Caller) -> ApiResult<JarInfo> {
        self.inner
            .jars
            .read()
            .expect("jars lock")
            .get(id)
            .filter(|j| caller.sees(&j.tenant))
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "jar {id} is not known to this session; GET /jars lists the uploaded jobs"
                ))
            })
    }

    /// The tenant a job record belongs to (`None` outside tenancy).
    fn tenant_of(&self, owner: &str) -> ApiResult<Option<Arc<Tenant>>> {
        if owner.is_empty() {
            return Ok(None);
        }
        self.inner
            .tenancy
            .tenant(owner)
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                ApiError::forbidden(format!(
                    "tenant {owner} is no longer configured in this session"
                ))
            })
    }

    /// Where a tenant's checkpoints or savepoints go: `dir/<tenant>`.
    fn tenant_dir(dir: &str, tenant: &Tenant) -> String {
        format!("{}/{}", dir.trim_end_matches('/'), tenant.name)
    }

    fn tenant_savepoints(&self, tenant: &Tenant) -> Option<String> {
        self.inner
            .config
            .savepoints_dir
            .as_deref()
            .map(|d| Self::tenant_dir(d, tenant))
    }

    fn tenant_checkpoints(&self, tenant: &Tenant) -> Option<String> {
        self.inner
            .config
            .checkpoints_dir
            .as_deref()
            .map(|d| Self::tenant_dir(d, tenant))
    }

    /// What the session sets for every job of `tenant`, over anything the
    /// job asks for: its folders and its quota.
    fn tenant_layer(&self, t: &Tenant) -> ConfigLayer {
        let q = &t.quota;
        [
            ("state.checkpoints.dir", self.tenant_checkpoints(t)),
            ("state.savepoints.dir", self.tenant_savepoints(t)),
            (
                "weir.guest.memory-limit",
                q.memory_per_instance.map(|b| b.to_string()),
            ),
            (
                "weir.guest.call-timeout",
                q.cpu_per_call.map(|d| format!("{}ms", d.as_millis())),
            ),
            (
                "weir.guest.fuel-per-call",
                q.fuel_per_call.map(|f| f.to_string()),
            ),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v?)))
        .collect()
    }

    /// The session's configuration as it applies to the jobs of `tenant`
    /// (plus the tenant's layer).
    fn config_for(&self, tenant: Option<&Tenant>) -> ApiResult<Config> {
        let Some(t) = tenant else {
            return Ok(self.inner.config.clone());
        };
        let o = &self.inner.options;
        let env = config::from_env(std::env::vars());
        Config::from_layers(&[
            &self.inner.session_defaults,
            &o.file,
            &env,
            &o.flags,
            &self.tenant_layer(t),
        ])
        .map_err(|e| ApiError::internal(format!("tenant {}'s configuration: {e}", t.name)))
    }

    /// Compiles (or finds) the module with `bytes`: at most
    /// `weir.compile.max-concurrent` at once, each in a child process
    /// stopped after `weir.compile.timeout`.
    fn load_module(&self, bytes: &[u8]) -> ApiResult<Arc<JobModule>> {
        let hash = weir_wasm::module_hash(bytes);
        if let Some(m) = self.inner.modules.lock().expect("modules lock").get(&hash) {
            return Ok(m.clone());
        }
        let inner = &self.inner;
        let _permit = inner.compiling.acquire();
        let failed = |e: weir_wasm::WasmError| match e {
            weir_wasm::WasmError::Engine(_) => ApiError::internal(anyhow::anyhow!(e)),
            weir_wasm::WasmError::NotCompiled => ApiError::internal(anyhow::anyhow!(
                "{e}: other compiles removed it twice; raise weir.compile-cache.max-size"
            )),
            e => ApiError::bad_request(e.to_string()),
        };
        let module = match &inner.options.compiler {
            // An upload is compiled only in a child process, never here:
            // if the compiled copy went from the cache before it loaded
            // (another compile trimmed the cache), it is compiled again.
            Some(exe) => {
                let compile_then_load = || {
                    if !inner.cache.contains(bytes, &inner.engine)
                        && weir_wasm::classify(bytes) == weir_wasm::WasmKind::Component
                    {
                        weir_wasm::compile_isolated(
                            &inner.engine,
                            bytes,
                            &inner.cache,
                            exe,
                            inner.config.compile_timeout,
                        )?;
                    }
                    JobModule::load_precompiled(&inner.engine, bytes, &inner.cache)
                };
                match compile_then_load() {
                    Err(weir_wasm::WasmError::NotCompiled) => compile_then_load(),
                    r => r,
                }
                .map_err(failed)?
            }
            None => JobModule::load(&inner.engine, bytes, Some(&inner.cache)).map_err(failed)?,
        };
        let module = Arc::new(module);
        self.inner
            .modules
            .lock()
            .expect("modules lock")
            .insert(hash, module.clone());
        Ok(module)
    }

    fn module_by_hash(&self, hash: &str) -> ApiResult<Arc<JobModule>> {
        if let Some(m) = self.inner.modules.lock().expect("modules lock").get(hash) {
            return Ok(m.clone());
        }
        let bytes = self
            .inner
            .ha
            .module(hash)
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "module {hash} is missing from the HA store {}",
                    self.inner.ha.url()
                ))
            })?;
        self.load_module(&bytes)
    }

    /// A place among the uploads in progress: at most
    /// [`UPLOADS_PER_OWNER`] per tenant (and as many for the others
    /// together), so that an upload flood cannot take the session's memory.
    pub fn upload_slot(&self, caller: &Caller) -> ApiResult<UploadSlot> {
        let owner = caller.owner().to_owned();
        let mut u = self.inner.uploading.lock().expect("uploads lock");
        let n = u.entry(owner.clone()).or_default();
        if *n >= UPLOADS_PER_OWNER {
            return Err(ApiError::new(
                crate::ErrorKind::TooManyRequests,
                format!(
                    "{} uploads are in progress for {}; wait for one to finish",
                    n,
                    if owner.is_empty() {
                        "this session".to_owned()
                    } else {
                        format!("tenant {owner}")
                    }
                ),
            ));
        }
        *n += 1;
        Ok(UploadSlot {
            session: self.clone(),
            owner,
        })
    }

    /// Stores an uploaded module (blocking: compiles it).
    pub fn upload(&self, file_name: &str, bytes: &[u8], caller: &Caller) -> ApiResult<JarInfo> {
        if bytes.is_empty() {
            return Err(ApiError::bad_request(
                "the uploaded file is empty; send the job's .wasm component as the `jarfile` \
                 field of a multipart form",
            ));
        }
        if let Some(t) = caller.tenant() {
            check_module_policy(t, bytes)?;
        }
        let module = self.load_module(bytes)?;
        let limits = InstanceLimits::from_config(&self.config_for(caller.tenant())?);
        let entries = weir_wasm::job_entries(&module, limits).map_err(|f| {
            ApiError::bad_request(format!("the job's entries() failed: {}", f.message))
        })?;
        self.inner
            .ha
            .put_module(module.hash(), bytes)
            .map_err(ApiError::internal)?;
        let jar = JarInfo {
            id: format!("{}_{}", uuid::Uuid::new_v4(), safe_name(file_name)),
            name: safe_name(file_name),
            uploaded: now_ms(),
            size: bytes.len() as u64,
            module_hash: module.hash().to_owned(),
            entries,
            tenant: caller.owner().to_owned(),
        };
        self.inner.ha.put_jar(&jar).map_err(ApiError::internal)?;
        self.inner
            .jars
            .write()
            .expect("jars lock")
            .insert(jar.id.clone(), jar.clone());
        tracing::info!(jar = %jar.id, "uploaded {} ({} bytes)", jar.name, jar.size);
        Ok(jar)
    }

    pub fn delete_jar(&self, id: &str, caller: &Caller) -> ApiResult<()> {
        let jar = self.jar(id, caller)?;
        self.inner.ha.delete_jar(id).map_err(ApiError::internal)?;
        self.inner.jars.write().expect("jars lock").remove(id);
        let used = self
            .jars(&Caller::Admin)
            .iter()
            .any(|j| j.module_hash == jar.module_hash)
            || self
                .all_jobs()
                .iter()
                .any(|j| !j.state().is_terminal() && j.record().module_hash == jar.module_hash);
        if !used {
            self.inner
                .modules
                .lock()
                .expect("modules lock")
                .remove(&jar.module_hash);
            self.inner
                .ha
                .delete_module(&jar.module_hash)
                .map_err(ApiError::internal)?;
        }
        Ok(())
    }

    /// Plans and starts a job from an uploaded jar (blocking).
    pub fn run_jar(&self, jar_id: &str, req: RunRequest, caller: &Caller) -> ApiResult<JobId> {
        let jar = self.jar(jar_id, caller)?;
        if let Some(t) = caller.tenant() {
            self.check_request(t, &req)?;
        }
        if req.allow_non_restored && req.savepoint_path.is_none() {
            return Err(ApiError::bad_request(
                "allowNonRestoredState only applies with savepointPath",
            ));
        }
        let record = JobRecord {
            job_id: JobId::random().to_string(),
            name: jar.name.clone(),
            module_hash: jar.module_hash.clone(),
            jar_id: Some(jar.id.clone()),
            entry: req.entry,
            args: req.args,
            parallelism: req.parallelism,
            savepoint_path: req.savepoint_path,
            allow_non_restored: req.allow_non_restored,
            config: req.config,
            submitted: now_ms(),
            tenant: jar.tenant.clone(),
            versions: Vec::new(),
        };
        self.submit(record, None)
    }

    /// Plans `record`'s job and starts it, restoring from `resume` (a
    /// checkpoint of the same job) or else from its savepoint.
    pub(crate) fn submit(&self, record: JobRecord, resume: Option<String>) -> ApiResult<JobId> {
        self.start_job(record, resume, false)
    }

    /// As [`Session::submit`]; `resuming`: a job this session takes over
    /// from the HA store, which waits for task managers to offer its slots
    /// rather than being refused.
    fn start_job(
        &self,
        mut record: JobRecord,
        resume: Option<String>,
        resuming: bool,
    ) -> ApiResult<JobId> {
        self.prune_ended_jobs();
        let Prepared {
            job_id,
            tenant,
            config,
            graph,
            factory,
        } = self.prepare(&mut record)?;
        let restore_from = match resume {
            Some(location) => Some(location),
            None => match &record.savepoint_path {
                Some(path) => {
                    check_savepoint(path, &config)?;
                    Some(path.clone())
                }
                None => None,
            },
        };
        if record.versions.is_empty() {
            record.versions.push(ModuleVersion {
                module_hash: record.module_hash.clone(),
                jar_id: record.jar_id.clone(),
                version: graph.version.clone(),
                since: now_ms(),
                how: "submitted".into(),
                from: record.savepoint_path.clone(),
            });
        }
        let exec = ExecutionGraph::build(&graph);
        let slots = slots_needed(&exec);
        let _guard = self.inner.submit.lock().expect("submit lock");
        if let Some(t) = &tenant {
            self.check_quota(t, slots)?;
        }
        let used = self.slots_used_besides(Some(job_id));
        let total = self.slots_total();
        let waits = resuming && self.inner.cluster.is_some();
        if used + slots > total && !waits {
            return Err(ApiError::conflict(format!(
                "not enough task slots: the job needs {slots}, {} of {total} are free; cancel \
                 a job, lower its parallelism, or raise taskmanager.numberOfTaskSlots",
                total - used
            )));
        }
        self.inner
            .ha
            .put_job(&record)
            .map_err(|e| ApiError::internal(e.context("writing the job to the HA store")))?;
        let mut status = StatusCell::new(job_id, self.inner.ha.clone());
        if let Some(q) = tenant.as_deref().and_then(|t| self.storage_quota(t)) {
            status = status.with_quota(q, self.inner.storage.clone());
        }
        let status = Arc::new(status);
        let handle = weir_runtime::start(JobSpec {
            job_id,
            config: config.clone(),
            factory,
            work_dir: self.inner.work.path().to_owned(),
            lineage: record.savepoint_path.clone(),
            restore: restore_from.map(|location| RestoreRequest {
                location,
                allow_non_restored: record.allow_non_restored,
            }),
            listener: Some(status.clone()),
            connectors: self.inner.options.connectors.clone(),
            cluster: self.inner.cluster.clone(),
        })
        .map_err(|f| ApiError::internal(anyhow::anyhow!(f.message)))?;
        let name = record.name.clone();
        let entry = Arc::new(JobEntry {
            id: job_id,
            name: record.name.clone(),
            record: std::sync::RwLock::new(record),
            exec,
            graph,
            config,
            metrics: handle.metrics.clone(),
            status,
            slots,
            commands: handle.commands(),
            ended: Default::default(),
            upgrading: Default::default(),
        });
        self.inner
            .jobs
            .write()
            .expect("jobs lock")
            .insert(job_id, entry.clone());
        let ha = self.inner.ha.clone();
        let session = self.clone();
        std::thread::Builder::new()
            .name(format!("wait-{}", job_id.short()))
            .spawn(move || {
                let outcome = handle.wait();
                let mut s = entry.status.lock();
                match &outcome {
                    JobOutcome::Finished => s.set(JobState::Finished),
                    JobOutcome::Stopped { savepoint } => {
                        s.stopped_at = Some(savepoint.clone());
                        s.set(JobState::Finished);
                    }
                    JobOutcome::Cancelled => s.set(JobState::Canceled),
                    JobOutcome::Failed(f) => {
                        // The failing task reported it already, unless the
                        // job failed elsewhere.
                        if s.root_exception.as_ref().map(|e| &e.stacktrace) != Some(&f.message) {
                            s.add_exception(ExceptionEntry::new(f, None));
                        }
                        s.set(JobState::Failed);
                    }
                }
                drop(s);
                tracing::info!(job = %entry.id, "job {} ended: {outcome:?}", entry.name);
                let upgrading = entry.upgrading.load(std::sync::atomic::Ordering::SeqCst);
                if upgrading {
                    tracing::info!(job = %entry.id, "the job changes modules: it stays in the HA store");
                } else if let Err(e) = ha.remove_job(entry.id) {
                    tracing::warn!(job = %entry.id, "cannot remove the job from the HA store: {e}");
                }
                session
                    .inner
                    .storage
                    .job_ended(&entry.tenant(), entry.id);
                session.prune_ended_jobs();
                *entry.ended.0.lock().expect("ended lock") = true;
                entry.ended.1.notify_all();
            })
            .map_err(|e| ApiError::internal(anyhow::anyhow!("cannot start a thread: {e}")))?;
        tracing::info!(job = %job_id, "submitted {name}");
        Ok(job_id)
    }

    /// Plans `record`'s job: its configuration, graph and guest factory.
    pub(crate) fn prepare(&self, record: &mut JobRecord) -> ApiResult<Prepared> {
        if record.parallelism == Some(0) {
            return Err(ApiError::bad_request("parallelism must be at least 1"));
        }
        let job_id: JobId = record.job_id.parse().map_err(ApiError::bad_request)?;
        let tenant = self.tenant_of(&record.tenant)?;
        let module = self.module_by_hash(&record.module_hash)?;
        let plan = weir_wasm::plan_job(
            &module,
            record.entry.as_deref(),
            &record.args,
            InstanceLimits::from_config(&self.config_for(tenant.as_deref())?),
        )
        .map_err(|f| {
            ApiError::bad_request(format!("the job could not build its plan: {}", f.message))
        })?;
        let plan_layer: ConfigLayer = plan
            .config
            .iter()
            .filter(|(k, _)| {
                // A tenant's module cannot choose storage, credentials or limits.
                let dropped = tenant.is_some() && session_key(k);
                if dropped {
                    tracing::warn!(job = %job_id, "ignoring {k} from the job's plan: the session sets it");
                }
                !dropped
            })
            .cloned()
            .collect();
        let env = config::from_env(std::env::vars());
        let mut request: ConfigLayer = record
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(p) = record.parallelism {
            request.insert("parallelism.default".into(), p.to_string());
        }
        // A tenant's jobs keep their state under the tenant's own folders
        // and run within its quota, whatever the plan says.
        let tenant_layer = tenant
            .as_deref()
            .map(|t| self.tenant_layer(t))
            .unwrap_or_default();
        let o = &self.inner.options;
        let mut config = Config::from_layers(&[
            &self.inner.session_defaults,
            &o.file,
            &plan_layer,
            &env,
            &o.flags,
            &request,
            &tenant_layer,
        ])
        .map_err(|e| ApiError::bad_request(format!("in the job's configuration: {e}")))?;
        config.owner = match &tenant {
            Some(t) => JobOwner {
                tenant: Some(t.name.clone()),
                secrets: t.secrets(),
                restricted: true,
                files: t.files.clone(),
            },
            // A session never reads its own environment for a job.
            None => JobOwner {
                tenant: None,
                secrets: self.inner.tenancy.session_secrets(),
                restricted: false,
                files: None,
            },
        };
        if let (Some(t), Some(interval)) = (&tenant, config.checkpoint_interval) {
            let min = t
                .quota
                .checkpoint_min_interval
                .unwrap_or(DEFAULT_TENANT_CHECKPOINT_MIN_INTERVAL);
            if interval < min {
                return Err(ApiError::bad_request(format!(
                    "execution.checkpointing.interval is {interval:?}, below tenant {}'s minimum \
                     of {min:?} ({}); checkpoint less often",
                    t.name,
                    t.key("checkpoint-min-interval")
                )));
            }
        }
        let graph = JobGraph::from_plan(plan, &config)
            .map_err(|e| ApiError::bad_request(format!("the job's plan is not valid: {e}")))?;
        check_connectors(
            &self.inner.options.connectors,
            tenant.as_deref(),
            &graph,
            &config,
        )?;
        if config.memory_snapshots {
            module
                .check_memory_snapshots()
                .map_err(ApiError::bad_request)?;
        }
        if !graph.name.is_empty() {
            record.name = graph.name.clone();
        }
        let factory = Arc::new(WasmJob::new(
            module,
            record.entry.clone(),
            record.args.clone(),
            graph.clone(),
            InstanceLimits::from_config(&config),
            weir_wasm::JobOutput::new(job_id.to_string(), config.guest_output_lines),
        ));
        Ok(Prepared {
            job_id,
            tenant,
            config,
            graph,
            factory,
        })
    }

    /// A tenant's storage quota, if it has one.
    fn storage_quota(&self, t: &Tenant) -> Option<StorageQuota> {
        let bytes = t.quota.storage?;
        let config = self.config_for(Some(t)).ok()?;
        Some(StorageQuota {
            tenant: t.name.clone(),
            bytes,
            savepoints_dir: self.tenant_savepoints(t),
            s3: S3Options::from_config(&config),
        })
    }

    /// Forgets ended jobs past `jobstore.expiration-time`, and the oldest
    /// beyond `jobstore.max-capacity` (Flink's job store), so that the job
    /// table and the metrics do not grow with every job ever run.
    pub fn prune_ended_jobs(&self) {
        let c = &self.inner.config;
        let now = now_ms();
        let expiry = c.jobstore_expiration.as_millis() as u64;
        let mut jobs = self.inner.jobs.write().expect("jobs lock");
        let mut ended: Vec<(u64, JobId)> = jobs
            .values()
            .filter_map(|j| {
                let s = j.status.lock();
                s.state
                    .is_terminal()
                    .then(|| (s.end_ms.unwrap_or(now), j.id))
            })
            .collect();
        ended.sort();
        let over = ended.len().saturating_sub(c.jobstore_max_capacity);
        for (i, (end, id)) in ended.into_iter().enumerate() {
            if i < over || now.saturating_sub(end) > expiry {
                jobs.remove(&id);
            }
        }
    }

    /// Starts the jobs the HA store holds, from their latest checkpoints.
    fn resume_jobs(&self) {
        let records = match self.inner.ha.jobs() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot read jobs from the HA store: {e}");
                return;
            }
        };
        for record in records {
            let id = record.job_id.clone();
            let Ok(job_id) = id.parse::<JobId>() else {
                continue;
            };
            let pointer = match self.inner.ha.latest_checkpoint(job_id) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(job = %id, "cannot read its latest checkpoint pointer: {e}");
                    None
                }
            };
            let resume = self.resume_location(&record, job_id, pointer);
            tracing::info!(
                job = %id,
                "resuming {} from {}",
                record.name,
                resume.as_deref().or(record.savepoint_path.as_deref()).unwrap_or("the start")
            );
            if let Err(e) = self.start_job(record, resume, true) {
                tracing::error!(job = %id, "cannot resume the job: {}", e.message);
            }
        }
    }

    /// Where a resumed job restores from: its checkpoint directory (its
    /// newest usable checkpoint, older ones behind it), which holds the
    /// pointer's checkpoint and any the pointer missed; the pointer itself
    /// when it names a savepoint that stopped the job, or when the job has
    /// no checkpoint directory.
    fn resume_location(
        &self,
        record: &JobRecord,
        id: JobId,
        pointer: Option<String>,
    ) -> Option<String> {
        let names_checkpoint = pointer.as_deref().is_some_and(|p| {
            p.trim_end_matches('/')
                .rsplit('/')
                .next()
                .and_then(weir_checkpoint::paths::parse_checkpoint_dir)
                .is_some()
        });
        if pointer.is_some() && !names_checkpoint {
            return pointer;
        }
        self.checkpoint_dir_of(record, id).or(pointer)
    }

    /// The job's checkpoint directory, if it holds a checkpoint: under the
    /// tenant's folder for a tenant's job.
    fn checkpoint_dir_of(&self, record: &JobRecord, id: JobId) -> Option<String> {
        let tenant = self.tenant_of(&record.tenant).ok()?;
        let config = self.config_for(tenant.as_deref()).ok()?;
        let dir = match tenant {
            Some(_) => config.checkpoints_dir.clone(),
            None => record
                .config
                .get("state.checkpoints.dir")
                .cloned()
                .or_else(|| config.checkpoints_dir.clone()),
        }?;
        let s3 = S3Options::from_config(&config);
        let url = weir_checkpoint::Storage::open(&dir, &s3)
            .ok()?
            .url_of(&id.to_string());
        weir_runtime::snapshot_candidates(&url, &s3)
            .ok()
            .map(|_| url)
    }

    /// Whether job `job` may write a savepoint into `dir`: an absolute path
    /// or a URL, under its tenant's savepoints folder, within its quota.
    pub(crate) fn check_savepoint_dir(&self, job: &JobEntry, dir: Option<&str>) -> ApiResult<()> {
        if let Some(d) = dir
            && !d.contains("://")
            && !std::path::Path::new(d).is_absolute()
        {
            // Relative to what? Not to the session's working directory.
            return Err(ApiError::bad_request(format!(
                "target-directory {d:?} is a relative path; give an absolute path or a URL \
                 (file:///..., s3://bucket/...)"
            )));
        }
        if let (Some(t), Some(d)) = (self.tenant_of(&job.tenant())?, dir) {
            let root = self.tenant_savepoints(&t).unwrap_or_default();
            if !url_within(&storage_url(d), &root) {
                return Err(ApiError::forbidden(format!(
                    "tenant {} keeps its savepoints under {root}; give a target-directory \
                     there, or none",
                    t.name
                )));
            }
        }
        if let Some(q) = self
            .tenant_of(&job.tenant())?
            .and_then(|t| self.storage_quota(&t))
        {
            self.inner
                .storage
                .savepoint_allowed(&q)
                .map_err(ApiError::conflict)?;
        }
        Ok(())
    }

    /// Asks a job to take a savepoint (and stop); returns the operation's
    /// trigger id.
    pub fn savepoint(
        &self,
        id: &str,
        dir: Option<String>,
        stop: bool,
        drain: bool,
        caller: &Caller,
    ) -> ApiResult<String> {
        let job = self.job(id, caller)?;
        self.check_savepoint_dir(&job, dir.as_deref())?;
        let state = job.state();
        if state != JobState::Running {
            return Err(ApiError::conflict(format!(
                "job {id} is {}; savepoints are taken of RUNNING jobs",
                state.name()
            )));
        }
        if dir.is_none() && job.config.savepoints_dir.is_none() {
            return Err(ApiError::bad_request(
                "no savepoint directory: give target-directory, or set state.savepoints.dir",
            ));
        }
        let trigger = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = crossbeam_channel::bounded(1);
        if !job.send(JobCommand::Savepoint {
            dir,
            stop,
            drain,
            reply: tx,
        }) {
            return Err(ApiError::conflict(format!("job {id} has ended")));
        }
        remember(
            &mut job.status.lock().operations,
            trigger.clone(),
            Operation::InProgress,
            Operation::ended,
        );
        let t = trigger.clone();
        std::thread::spawn(move || {
            let result = rx.recv();
            let op = match result {
                Ok(Ok(location)) => Operation::Completed(location),
                Ok(Err(f)) => Operation::Failed(f.message),
                Err(_) => Operation::Failed("the job ended before the savepoint completed".into()),
            };
            if let Some(o) = job.status.lock().operations.get_mut(&t) {
                *o = op;
            }
        });
        Ok(trigger)
    }

    /// Asks a job to take a checkpoint now (`full`: sharing no file with
    /// earlier ones); returns the operation's trigger id. A trigger id the
    /// client chose is kept, and asking again with it triggers nothing new.
    pub fn checkpoint(
        &self,
        id: &str,
        full: bool,
        trigger: Option<String>,
        caller: &Caller,
    ) -> ApiResult<String> {
        let job = self.job(id, caller)?;
        let trigger = trigger_id(trigger)?;
        {
            let s = job.status.lock();
            if s.checkpoint_operations.contains_key(&trigger) {
                return Ok(trigger);
            }
            if let Some((t, _)) = s.checkpoint_operations.iter().find(|(_, o)| !o.ended()) {
                return Err(ApiError::conflict(format!(
                    "a checkpoint of job {id} asked for earlier (request-id {t}) is still in \
                     progress; wait for it to complete"
                )));
            }
        }
        let state = job.state();
        if state != JobState::Running {
            return Err(ApiError::conflict(format!(
                "job {id} is {}; checkpoints are taken of RUNNING jobs",
                state.name()
            )));
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        if !job.send(JobCommand::Checkpoint { full, reply: tx }) {
            return Err(ApiError::conflict(format!("job {id} has ended")));
        }
        remember(
            &mut job.status.lock().checkpoint_operations,
            trigger.clone(),
            Operation::InProgress,
            Operation::ended,
        );
        let t = trigger.clone();
        std::thread::spawn(move || {
            let op = match rx.recv() {
                Ok(Ok(id)) => Operation::Checkpointed(id.0),
                Ok(Err(f)) => Operation::Failed(f.message),
                Err(_) => Operation::Failed("the job ended before the checkpoint completed".into()),
            };
            if let Some(o) = job.status.lock().checkpoint_operations.get_mut(&t) {
                *o = op;
            }
        });
        Ok(trigger)
    }

    /// Starts deleting the savepoint at `path`; returns the operation's
    /// trigger id. A tenant disposes only of savepoints in its own folder.
    pub fn dispose(&self, path: &str, caller: &Caller) -> ApiResult<String> {
        let path = path.trim();
        if path.is_empty() {
            return Err(ApiError::bad_request(
                "give the savepoint to dispose of as savepoint-path",
            ));
        }
        let tenant = caller.tenant().cloned();
        if let Some(t) = &tenant {
            let root = self.tenant_savepoints(t).unwrap_or_default();
            if !url_within(&storage_url(path), &root) {
                return Err(ApiError::forbidden(format!(
                    "tenant {} disposes only of its own savepoints, under {root}",
                    t.name
                )));
            }
        }
        let config = self.config_for(tenant.as_ref())?;
        let trigger = trigger_id(None)?;
        let owner = caller.owner().to_owned();
        {
            let mut d = self.inner.disposals.lock().expect("disposals");
            if d.values()
                .filter(|(o, op)| *o == owner && !op.ended())
                .count()
                >= 4
            {
                return Err(ApiError::conflict(
                    "4 disposals of this caller are in progress; wait for one to complete",
                ));
            }
            remember(
                &mut d,
                trigger.clone(),
                (owner.clone(), Operation::InProgress),
                |(_, op)| op.ended(),
            );
        }
        let session = self.clone();
        let t = trigger.clone();
        let path = path.to_owned();
        std::thread::spawn(move || {
            let op = match weir_runtime::dispose_savepoint(&path, &S3Options::from_config(&config))
            {
                Ok(url) => Operation::Completed(url),
                Err(f) => Operation::Failed(f.message),
            };
            if let Some(e) = session
                .inner
                .disposals
                .lock()
                .expect("disposals")
                .get_mut(&t)
            {
                e.1 = op;
            }
        });
        Ok(trigger)
    }

    /// A disposal the caller started.
    pub fn disposal(&self, trigger: &str, caller: &Caller) -> ApiResult<Operation> {
        let d = self.inner.disposals.lock().expect("disposals");
        match d.get(trigger) {
            Some((owner, op)) if caller.sees(owner) => Ok(op.clone()),
            _ => Err(ApiError::not_found(format!(
                "there is no savepoint disposal {trigger}; use the request-id that \
                 POST /savepoint-disposal returned"
            ))),
        }
    }

    pub fn cancel(&self, id: &str, caller: &Caller) -> ApiResult<()> {
        let job = self.job(id, caller)?;
        let state = job.state();
        if state.is_terminal() {
            return Err(ApiError::conflict(format!(
                "job {id} is already {}",
                state.name()
            )));
        }
        job.status.lock().set(JobState::Cancelling);
        job.send(JobCommand::Cancel);
        Ok(())
    }
}

impl Session {
    /// What a tenant may not ask for in a run request.
    fn check_request(&self, t: &Tenant, req: &RunRequest) -> ApiResult<()> {
        for k in req.config.keys() {
            if session_key(k) {
                return Err(ApiError::forbidden(format!(
                    "tenant {} cannot set {k}: the session sets it from the tenant's quota and \
                     folders",
                    t.name
                )));
            }
        }
        if let Some(path) = &req.savepoint_path {
            let url = storage_url(path);
            let roots = [self.tenant_savepoints(t), self.tenant_checkpoints(t)];
            if !roots.iter().flatten().any(|r| url_within(&url, r)) {
                return Err(ApiError::forbidden(format!(
                    "tenant {} restores only from its own savepoints and checkpoints (under {}); \
                     {path} is not one of them",
                    t.name,
                    roots
                        .iter()
                        .flatten()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" and ")
                )));
            }
        }
        Ok(())
    }

    /// A tenant's job and slot quotas, with the job that asks for `slots`.
    /// The jobs of tenant `name` that have not ended.
    pub(crate) fn live_jobs_of(&self, name: &str) -> Vec<Arc<JobEntry>> {
        self.all_jobs()
            .into_iter()
            .filter(|j| j.tenant() == name && !j.state().is_terminal())
            .collect()
    }

    fn check_quota(&self, t: &Tenant, slots: u32) -> ApiResult<()> {
        let live = self.live_jobs_of(&t.name);
        if let Some(max) = t.quota.jobs
            && live.len() as u32 >= max
        {
            return Err(ApiError::conflict(format!(
                "tenant {} runs {} jobs, its quota {} = {max}; cancel one first",
                t.name,
                live.len(),
                t.key("jobs")
            )));
        }
        if let Some(max) = t.quota.slots {
            let used: u32 = live.iter().map(|j| j.slots).sum();
            if used + slots > max {
                return Err(ApiError::conflict(format!(
                    "not enough task slots for tenant {}: the job needs {slots}, {used} of its \
                     {max} ({}) are in use; cancel a job or lower the parallelism",
                    t.name,
                    t.key("slots")
                )));
            }
        }
        Ok(())
    }

    /// Usage of each tenant the caller may see (all jobs, running or ended,
    /// since the session started).
    pub fn usage(&self, caller: &Caller) -> Vec<TenantUsage> {
        let mut out: BTreeMap<String, TenantUsage> = BTreeMap::new();
        for t in self.inner.tenancy.tenants() {
            if caller.sees(&t.name) {
                out.insert(
                    t.name.clone(),
                    TenantUsage {
                        tenant: t.name.clone(),
                        quota: Some(t.quota.clone()),
                        ..TenantUsage::default()
                    },
                );
            }
        }
        for j in self.jobs(caller) {
            let u = out.entry(j.tenant()).or_insert_with(|| TenantUsage {
                tenant: j.tenant(),
                ..TenantUsage::default()
            });
            let m = &j.metrics;
            let get =
                |v: &std::sync::atomic::AtomicU64| v.load(std::sync::atomic::Ordering::Relaxed);
            u.busy_ns += m.operators.iter().map(|o| get(&o.busy_ns)).sum::<u64>();
            u.memory_peak = u.memory_peak.max(get(&m.guest_memory_peak));
            for (node, om) in j.graph.operators.iter().zip(&m.operators) {
                if node.is_source() {
                    u.records_in += get(&om.records_out);
                }
                if node.is_sink() {
                    u.records_out += get(&om.records_in);
                }
            }
            u.jobs_total += 1;
            if !j.state().is_terminal() {
                u.jobs_running += 1;
                u.slots_used += j.slots;
            }
        }
        out.into_values().collect()
    }
}

/// What a tenant has used.
#[derive(Debug, Clone, Default)]
pub struct TenantUsage {
    pub tenant: String,
    /// Time the tenant's tasks spent processing (user code and the host's
    /// work for it).
    pub busy_ns: u64,
    /// The largest linear memory any of its guest instances reached.
    pub memory_peak: u64,
    /// Records its sources read and its sinks wrote.
    pub records_in: u64,
    pub records_out: u64,
    pub jobs_running: u32,
    pub jobs_total: u32,
    pub slots_used: u32,
    pub quota: Option<crate::tenancy::Quota>,
}

/// Uploads one owner may have in progress.
const UPLOADS_PER_OWNER: u32 = 2;

/// An upload in progress (see [`Session::upload_slot`]).
pub struct UploadSlot {
    session: Session,
    owner: String,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut u = self.session.inner.uploading.lock().expect("uploads lock");
        if let Some(n) = u.get_mut(&self.owner) {
            *n -= 1;
        }
    }
}

/// The shortest checkpoint interval of a tenant's jobs, unless its quota
/// says otherwise.
const DEFAULT_TENANT_CHECKPOINT_MIN_INTERVAL: std::time::Duration =
    std::time::Duration::from_millis(100);

/// Keys only the session sets for a tenant's jobs: storage, credentials,
/// guest limits and the session's own settings.
fn session_key(k: &str) -> bool {
    [
        "state.checkpoints.dir",
        "state.savepoints.dir",
        "high-availability.",
        "weir.guest.",
        "weir.compile-cache.",
        "weir.data-dir",
        "state.backend.rocksdb.localdir",
        "state.backend.rocksdb.memory.",
        "weir.io.",
        "weir.compile.",
        "weir.cluster.",
        "slot.",
        "heartbeat.",
        "jobstore.",
        "taskmanager.",
        "rest.",
        "s3.",
    ]
    .iter()
    .any(|p| k.starts_with(p))
}

/// A storage location as a URL (plain paths are local files).
/// A trigger id the client chose (32 hex digits, as Flink's), or a new one.
fn trigger_id(given: Option<String>) -> ApiResult<String> {
    match given {
        None => Ok(uuid::Uuid::new_v4().simple().to_string()),
        Some(t) if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(t.to_ascii_lowercase())
        }
        Some(t) => Err(ApiError::bad_request(format!(
            "triggerId '{t}' is not 32 hexadecimal digits; leave it out to get a new one"
        ))),
    }
}

fn storage_url(location: &str) -> String {
    if location.contains("://") {
        location.to_owned()
    } else {
        format!("file://{location}")
    }
}

/// The upload checks of a tenant: module size and imports, before the
/// module is compiled.
fn check_module_policy(t: &Tenant, bytes: &[u8]) -> ApiResult<()> {
    if let Some(max) = t.quota.max_module_size
        && bytes.len() as u64 > max
    {
        return Err(ApiError::new(
            crate::ErrorKind::TooLarge,
            format!(
                "the module is {} bytes, over tenant {}'s limit of {max} bytes ({}); upload a \
                 smaller module",
                bytes.len(),
                t.name,
                t.key("max-module-size")
            ),
        ));
    }
    if weir_wasm::classify(bytes) != weir_wasm::WasmKind::Component {
        // Not a component: loading it says what it is instead.
        return Ok(());
    }
    let imports =
        weir_wasm::component_imports(bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let bad = t.forbidden_imports(&imports);
    if !bad.is_empty() {
        return Err(ApiError::forbidden(format!(
            "the module imports what tenant {}'s policy ({}) does not allow: {}; build the job \
             without them, or ask for them to be added to the policy",
            t.name,
            t.key("imports"),
            bad.join(", ")
        )));
    }
    Ok(())
}

/// A tenant's jobs use only its connectors, with options it may set
/// (allow-listed client properties, URLs that reach the network, files only
/// in its folder); every job's secrets must exist.
fn check_connectors(
    connectors: &weir_runtime::Connectors,
    tenant: Option<&Tenant>,
    graph: &JobGraph,
    config: &Config,
) -> ApiResult<()> {
    for op in &graph.operators {
        let Some(c) = op.connector() else { continue };
        let c = config.connector_for(op.uid.as_str(), c);
        if let Some(t) = tenant
            && !t.connectors.iter().any(|k| k == &c.kind)
        {
            return Err(ApiError::forbidden(format!(
                "operator '{}' uses the {} connector, which tenant {} may not use ({} = {})",
                op.name,
                c.kind,
                t.name,
                t.key("connectors"),
                t.connectors.join(", ")
            )));
        }
        connectors.check_options(&c, &config.owner).map_err(|f| {
            let msg = format!(
                "operator '{}' ({} connector): {}",
                op.name, c.kind, f.message
            );
            if tenant.is_some() {
                ApiError::forbidden(msg)
            } else {
                ApiError::bad_request(msg)
            }
        })?;
    }
    Ok(())
}

/// Fails early, with a message, when a savepoint to restore is missing.
fn check_savepoint(path: &str, config: &Config) -> ApiResult<()> {
    weir_runtime::snapshot_candidates(path, &S3Options::from_config(config))
        .map(|_| ())
        .map_err(|f| {
            ApiError::bad_request(format!(
                "cannot restore from savepoint {path}: {}",
                f.message
            ))
        })
}

/// With `high-availability.type: lease`, waits until this session leads
/// (standing by while another one does), then keeps the lease: a session
/// that loses it exits, so that only the new leader runs the jobs.
fn lead(config: &Config, ha: &mut HaStore) -> anyhow::Result<Option<Arc<crate::leader::Lease>>> {
    match config.ha_type.to_ascii_lowercase().as_str() {
        "none" => return Ok(None),
        "lease" => {}
        other => anyhow::bail!(
            "high-availability.type is {other:?}: use none, or lease for sessions that elect a \
             leader over the HA store"
        ),
    }
    if config.ha_lease_duration < std::time::Duration::from_millis(200) {
        anyhow::bail!("high-availability.lease.duration must be at least 200ms");
    }
    let lease = Arc::new(crate::leader::Lease::new(
        ha.storage().clone(),
        config.ha_lease_duration,
    ));
    let mut said = false;
    loop {
        match lease.try_acquire() {
            Ok(true) => break,
            Ok(false) => {}
            // The store may come back: a standby waits on.
            Err(e) => tracing::warn!("{e:#}"),
        }
        if !said {
            said = true;
            let leader = lease.current().ok().flatten();
            eprintln!(
                "Standby: the session at {} leads (term {}); waiting to take over",
                leader
                    .as_ref()
                    .and_then(|t| t.rest.clone())
                    .unwrap_or_else(|| "an unknown address".into()),
                leader.map(|t| t.epoch).unwrap_or(0)
            );
        }
        std::thread::sleep(config.ha_lease_duration / 4);
    }
    eprintln!(
        "Leading the sessions over {} (term {})",
        ha.url(),
        lease.epoch()
    );
    lease.keep(|why| {
        eprintln!("error: this session lost its leadership ({why}); exiting");
        std::process::exit(3);
    });
    ha.set_lease(lease.clone());
    Ok(Some(lease))
}

/// Opens the cluster endpoint task managers join, with `weir.cluster.port`.
fn start_cluster(
    config: &Config,
    ha: &HaStore,
) -> anyhow::Result<Option<Arc<weir_runtime::Cluster>>> {
    let Some(port) = config.cluster_port else {
        if config.task_slots == 0 {
            anyhow::bail!(
                "a session without task slots runs its jobs on task managers: set \
                 weir.cluster.port (--cluster-port) for them to join"
            );
        }
        return Ok(None);
    };
    let bind = format!("{}:{port}", config.cluster_bind_address);
    let listener = weir_runtime::bind(&bind).with_context(|| {
        format!("cannot listen on {bind} for the cluster endpoint; set weir.cluster.port")
    })?;
    let address =
        weir_runtime::advertised_url(&listener, config.cluster_advertised_address.as_deref());
    let secret = config.cluster_secret.as_ref().map(|s| s.0.clone());
    if secret.is_none() && !weir_runtime::is_loopback(&config.cluster_bind_address) {
        anyhow::bail!(
            "the cluster endpoint would listen on {} without a secret: set \
             weir.cluster.secret (the same on every process of the cluster), or bind it to \
             127.0.0.1",
            config.cluster_bind_address
        );
    }
    if secret.is_none() {
        tracing::warn!(
            "the cluster endpoint {address} takes requests without a secret: set \
             weir.cluster.secret, or keep the port off every network but the cluster's"
        );
    }
    let ha = ha.clone();
    let cluster = weir_runtime::Cluster::start(
        weir_runtime::ClusterOptions {
            address,
            local_slots: config.task_slots,
            heartbeat_interval: config.heartbeat_interval,
            heartbeat_timeout: config.heartbeat_timeout,
            auth: weir_runtime::Auth::new(secret),
            modules: Arc::new(move |hash| ha.module(hash).ok().flatten().map(|b| b.to_vec())),
        },
        listener,
    );
    Ok(Some(cluster))
}

/// Task slots a job takes: one per subtask of its widest chain, as Flink's
/// slot sharing.
pub(crate) fn slots_needed(exec: &ExecutionGraph) -> u32 {
    exec.chains.iter().map(|c| c.parallelism).max().unwrap_or(1)
}
