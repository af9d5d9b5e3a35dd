//! A task manager (`weir worker --join`): offers its slots to a
//! coordinator, runs the tasks deployed to it, and reports their events.
//! It cancels its tasks when it loses the coordinator (a task manager the
//! coordinator forgot must not go on writing to sinks), and joins again.

use crate::context::JobContext;
use crate::events::{TaskControl, TaskEvent, TaskId};
use crate::execution::ExecutionGraph;
use crate::job::{Placement, spawn_tasks, wire};
use crate::metrics::JobMetrics;
use crate::net::cluster::data_router;
use crate::net::data::DataPlane;
use crate::net::protocol::{
    Cancel, Controls, Deploy, Events, GuestLoader, MetricsDelta, PrepareSwap, Register, Registered,
};
use crate::net::{self, Auth, net_runtime};
use crate::restore::needed;
use crate::snapshot::prefetch;
use crate::swap::ModuleSwap;
use crate::task::TaskStart;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use weir_checkpoint::{S3Options, Storage, block_on};
use weir_connectors::Connectors;
use weir_core::config::JobOwner;
use weir_core::{Config, Failure, JobId, Secrets};

/// How a task manager runs.
pub struct WorkerOptions {
    /// The coordinator's cluster URL; with standby coordinators, every
    /// one's, separated by commas (the leader is the one that answers).
    pub join: String,
    pub slots: u32,
    /// The cluster port of this process.
    pub listener: std::net::TcpListener,
    pub advertised: Option<String>,
    /// Where tasks keep their working files.
    pub work_dir: PathBuf,
    pub auth: Auth,
    pub connectors: Connectors,
    pub loader: Arc<dyn GuestLoader>,
}

/// How often a task manager reports its tasks' counters.
const METRICS_EVERY: Duration = Duration::from_secs(1);

struct Running {
    controls: BTreeMap<TaskId, Sender<TaskControl>>,
    threads: Vec<JoinHandle<()>>,
    /// What the attempt's tasks share: module swaps go there.
    ctx: Arc<JobContext>,
}

struct Worker {
    id: String,
    /// The coordinators to try, and the one joined.
    joins: Vec<String>,
    current: Mutex<String>,
    address: String,
    slots: u32,
    auth: Auth,
    client: reqwest::Client,
    plane: Arc<DataPlane>,
    work_dir: PathBuf,
    connectors: Connectors,
    loader: Arc<dyn GuestLoader>,
    attempts: Mutex<HashMap<(JobId, u32), Running>>,
    /// Attempts cancelled lately (a cancel may overtake its deployment).
    cancelled: Mutex<std::collections::VecDeque<(JobId, u32)>>,
    /// Attempts being deployed.
    deploying: Mutex<std::collections::HashSet<(JobId, u32)>>,
    /// Bumped whenever this task manager loses its coordinator: a
    /// deployment that began before must not start its tasks.
    generation: std::sync::atomic::AtomicU64,
    /// When the coordinator last answered (ms since `started`), and how
    /// long this task manager trusts that answer: its sinks commit only
    /// within it.
    last_ok_ms: AtomicU64,
    trust_ms: AtomicU64,
    started: Instant,
}

/// Runs a task manager until the process ends.
pub fn run_worker(o: WorkerOptions) -> Result<(), Failure> {
    let address = net::advertised_url(&o.listener, o.advertised.as_deref());
    let plane = DataPlane::new(o.auth.clone());
    std::fs::create_dir_all(o.work_dir.join("modules"))
        .map_err(|e| Failure::user(format!("cannot create {}: {e}", o.work_dir.display())))?;
    let worker = Arc::new(Worker {
        id: format!("weir-tm-{:016x}", rand::random::<u64>()),
        joins: net::url_list(&o.join),
        current: Mutex::new(String::new()),
        address,
        slots: o.slots,
        auth: o.auth.clone(),
        client: net::client(),
        plane: plane.clone(),
        work_dir: o.work_dir,
        connectors: o.connectors,
        loader: o.loader,
        attempts: Mutex::new(HashMap::new()),
        cancelled: Mutex::new(std::collections::VecDeque::new()),
        deploying: Mutex::new(std::collections::HashSet::new()),
        generation: std::sync::atomic::AtomicU64::new(0),
        last_ok_ms: AtomicU64::new(0),
        trust_ms: AtomicU64::new(0),
        started: Instant::now(),
    });
    let router = Router::new()
        .route("/v1/cluster/deploy", post(deploy))
        .route("/v1/cluster/control", post(control))
        .route("/v1/cluster/cancel", post(cancel))
        .route("/v1/cluster/swap", post(prepare_swap))
        .layer(axum::extract::DefaultBodyLimit::max(net::MAX_REQUEST))
        .with_state(worker.clone())
        .merge(data_router(plane));
    net::serve(o.listener, router, o.auth);
    tracing::info!(
        "task manager {} at {} with {} slots joins {}",
        worker.id,
        worker.address,
        worker.slots,
        worker.joins.join(", ")
    );
    loop {
        let registered = worker.register();
        worker.heartbeats(&registered);
        let n = worker.attempts.lock().expect("attempts lock").len();
        if n > 0 {
            tracing::warn!(
                "lost the coordinator at {}: cancelling {n} attempt(s)",
                worker.join()
            );
        }
        worker.cancel_all();
    }
}

impl Worker {
    fn heard(&self) {
        self.last_ok_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::SeqCst);
    }

    /// Whether the coordinator answered lately enough to trust that it
    /// still counts on this task manager.
    fn trusted(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        now.saturating_sub(self.last_ok_ms.load(Ordering::SeqCst))
            < self.trust_ms.load(Ordering::SeqCst)
    }

    /// The coordinator joined.
    fn join(&self) -> String {
        self.current.lock().expect("join lock").clone()
    }

    /// Joins the coordinator, trying until it answers.
    fn register(&self) -> Registered {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let message = Register {
            id: self.id.clone(),
            address: self.address.clone(),
            slots: self.slots,
            cores,
            memory: -1,
        };
        let mut said = false;
        loop {
            for join in &self.joins {
                let request = self
                    .auth
                    .apply(self.client.post(format!("{join}/v1/cluster/workers")))
                    .json(&message)
                    // A coordinator that hangs (stopped) must not hold up
                    // trying the next one.
                    .timeout(Duration::from_secs(3));
                let answer = net_runtime().block_on(async move {
                    let r = request.send().await.map_err(|e| e.to_string())?;
                    let status = r.status();
                    if !status.is_success() {
                        let text = r.text().await.unwrap_or_default();
                        return Err(format!("{status}: {text}"));
                    }
                    r.json::<Registered>().await.map_err(|e| e.to_string())
                });
                match answer {
                    Ok(r) => {
                        *self.current.lock().expect("join lock") = join.clone();
                        self.trust_ms.store(
                            (r.heartbeat_timeout_ms.max(100) as f64 * 0.8) as u64,
                            Ordering::SeqCst,
                        );
                        self.heard();
                        tracing::info!("joined the coordinator at {join}");
                        return r;
                    }
                    Err(e) => {
                        if !said {
                            tracing::warn!(
                                "cannot join the coordinator at {join} ({e}); trying again"
                            );
                        }
                    }
                }
            }
            said = true;
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Sends heartbeats until the coordinator forgets this task manager or
    /// stays silent past the heartbeat timeout.
    fn heartbeats(&self, r: &Registered) {
        let interval = Duration::from_millis(r.heartbeat_interval_ms.clamp(50, 60_000));
        let timeout = Duration::from_millis(r.heartbeat_timeout_ms.max(100));
        // This side gives up a little before the coordinator does, so that
        // its tasks stop before their job starts again elsewhere.
        let give_up = timeout.mul_f64(0.8);
        let mut last_ok = Instant::now();
        loop {
            std::thread::sleep(interval);
            let request = self
                .auth
                .apply(self.client.post(format!(
                    "{}/v1/cluster/workers/{}/heartbeat",
                    self.join(),
                    self.id
                )))
                .timeout(give_up.saturating_sub(last_ok.elapsed()).max(interval));
            match net_runtime().block_on(async move { request.send().await }) {
                Ok(a) if a.status().is_success() => {
                    last_ok = Instant::now();
                    self.heard();
                }
                Ok(a) if a.status() == StatusCode::NOT_FOUND => {
                    tracing::warn!("the coordinator forgot this task manager");
                    return;
                }
                _ if last_ok.elapsed() >= give_up => {
                    tracing::warn!(
                        "no answer from the coordinator at {} for {} ms",
                        self.join(),
                        last_ok.elapsed().as_millis()
                    );
                    return;
                }
                _ => {}
            }
        }
    }

    fn cancel_all(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let all: Vec<(JobId, u32)> = self
            .attempts
            .lock()
            .expect("attempts lock")
            .keys()
            .copied()
            .collect();
        for (job, attempt) in all {
            self.cancel(job, attempt);
        }
    }

    /// Stops an attempt's tasks here and waits for them.
    fn cancel(&self, job: JobId, attempt: u32) {
        {
            let mut c = self.cancelled.lock().expect("cancelled lock");
            if c.len() >= 1024 {
                c.pop_front();
            }
            c.push_back((job, attempt));
        }
        let running = self
            .attempts
            .lock()
            .expect("attempts lock")
            .remove(&(job, attempt));
        self.plane.forget(job, attempt);
        let Some(running) = running else { return };
        for c in running.controls.values() {
            let _ = c.send(TaskControl::Cancel);
        }
        drop(running.controls);
        for t in running.threads {
            let _ = t.join();
        }
        let others = self
            .attempts
            .lock()
            .expect("attempts lock")
            .keys()
            .any(|(j, _)| *j == job);
        if !others {
            let _ = std::fs::remove_dir_all(self.work_dir.join(job.to_string()));
        }
    }

    /// The module with `hash`: from this task manager's files, or from
    /// the coordinator.
    fn module(&self, hash: &str) -> Result<Vec<u8>, Failure> {
        if hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Failure::internal(format!("{hash} is not a module hash")));
        }
        let path = self.work_dir.join("modules").join(format!("{hash}.wasm"));
        // Kept only once checked below; the loader checks the hash of what
        // it compiles, so a deployment does not hash the module again.
        if let Ok(bytes) = std::fs::read(&path) {
            return Ok(bytes);
        }
        let request = self
            .auth
            .apply(
                self.client
                    .get(format!("{}/v1/cluster/modules/{hash}", self.join())),
            )
            .timeout(Duration::from_secs(120));
        let bytes = net_runtime()
            .block_on(async move {
                let r = request.send().await?.error_for_status()?;
                r.bytes().await
            })
            .map_err(|e| {
                Failure::external(format!(
                    "cannot download module {hash} from the coordinator: {e}"
                ))
            })?;
        if !hex::encode(Sha256::digest(&bytes)).eq_ignore_ascii_case(hash) {
            return Err(Failure::external(format!(
                "the module downloaded from the coordinator does not have the hash {hash} \
                 (truncated or altered on the way); check the network between this task manager and the coordinator"
            )));
        }
        let tmp = path.with_extension("part");
        if std::fs::write(&tmp, &bytes).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
        Ok(bytes.to_vec())
    }

    fn deploy(self: &Arc<Self>, d: Deploy) -> Result<(), Failure> {
        let key = (d.job, d.attempt);
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        {
            let attempts = self.attempts.lock().expect("attempts lock");
            if attempts.contains_key(&key)
                || !self.deploying.lock().expect("deploying lock").insert(key)
            {
                return Err(Failure::internal("that attempt is already deployed here"));
            }
        }
        let r = self.start(d, generation);
        self.deploying.lock().expect("deploying lock").remove(&key);
        r
    }

    fn start(self: &Arc<Self>, d: Deploy, generation: u64) -> Result<(), Failure> {
        let key = (d.job, d.attempt);
        let mut config = Config::from_layers(&[&d.config])
            .map_err(|e| Failure::internal(format!("the job's configuration: {e}")))?;
        config.owner = JobOwner {
            tenant: d.owner.tenant,
            secrets: match d.owner.secrets_key {
                Some(k) => Secrets::named(k, d.owner.secrets),
                None => Secrets::Environment,
            },
            restricted: d.owner.restricted,
            files: d.owner.files,
        };
        let bytes = self.module(&d.guest.module_hash)?;
        let factory = self
            .loader
            .load(&bytes, &d.guest, d.graph, &config, d.job)?;
        let exec = ExecutionGraph::build(factory.graph());
        if d.slots.len()
            < exec
                .chains
                .iter()
                .map(|c| c.parallelism as usize)
                .max()
                .unwrap_or(0)
            || d.tasks.iter().any(|t| {
                exec.chains
                    .get(t.chain)
                    .is_none_or(|c| t.subtask >= c.parallelism)
                    || d.slots[t.subtask as usize] != self.address
            })
        {
            return Err(Failure::internal(
                "the deployment does not match the job's graph or this task manager",
            ));
        }
        let job_dir = self.work_dir.join(d.job.to_string());
        let gate = Arc::downgrade(self);
        let ctx = Arc::new(JobContext::for_worker(
            d.job,
            d.lineage,
            config,
            factory,
            job_dir.clone(),
            self.connectors.clone(),
            Arc::new(move || gate.upgrade().is_some_and(|w| w.trusted())),
        ));
        let mut starts: HashMap<TaskId, TaskStart> = HashMap::new();
        if let Some(r) = d.restore {
            let storage = Storage::open(&r.storage, &S3Options::from_config(&ctx.config))
                .map_err(|e| Failure::external(e.message))?;
            let files = needed(r.tasks.iter().map(|(_, t)| t));
            let into = job_dir.join(format!("restore-{}", d.attempt));
            let fetched =
                block_on(prefetch(&storage, &r.dir, files.iter(), &into))?.map_err(|corrupt| {
                    Failure::external(format!(
                        "snapshot {} is corrupt: file {} {}",
                        storage.url_of(&r.dir),
                        corrupt.url,
                        corrupt.reason
                    ))
                })?;
            let fetched = Arc::new(fetched);
            for (id, restore) in r.tasks {
                starts.insert(
                    id,
                    TaskStart {
                        restore,
                        files: fetched.clone(),
                        reusable_from: r.reusable.then(|| r.dir.clone()),
                        checkpoint: r.checkpoint,
                    },
                );
            }
        }
        let (events_tx, events_rx) = unbounded();
        self.forward_events(d.job, d.attempt, events_rx, ctx.metrics.clone());
        let placement = Placement {
            slots: &d.slots,
            me: &self.address,
        };
        let wiring = wire(
            &ctx,
            &exec,
            &placement,
            d.attempt,
            &events_tx,
            Some(&self.plane),
        )?;
        tracing::info!(
            job = %d.job,
            "running {} tasks of job {} (attempt {}): {:?}",
            d.tasks.len(),
            d.job,
            d.attempt,
            d.tasks
        );
        // Held while the tasks start, so that controls for them wait.
        let mut attempts = self.attempts.lock().expect("attempts lock");
        let (controls, threads) = spawn_tasks(&ctx, &exec, &d.tasks, wiring, &events_tx, |id| {
            starts.remove(&id)
        })?;
        attempts.insert(
            key,
            Running {
                controls,
                threads,
                ctx: ctx.clone(),
            },
        );
        let cancelled = self
            .cancelled
            .lock()
            .expect("cancelled lock")
            .contains(&key)
            || self.generation.load(std::sync::atomic::Ordering::SeqCst) != generation;
        drop(attempts);
        if cancelled {
            // The coordinator gave up on the attempt, or this task manager
            // lost its coordinator, while it deployed.
            self.cancel(d.job, d.attempt);
            return Err(Failure::external(
                "the attempt was cancelled while it was deployed",
            ));
        }
        Ok(())
    }

    /// Sends an attempt's task events to the coordinator, in order, until
    /// its tasks and channels are gone.
    fn forward_events(
        self: &Arc<Self>,
        job: JobId,
        attempt: u32,
        rx: Receiver<TaskEvent>,
        metrics: Arc<JobMetrics>,
    ) {
        let w = self.clone();
        // Taken now, before the tasks start: counted from zero.
        let mut reported = MetricsDelta::of(&metrics);
        let _ = std::thread::Builder::new()
            .name("task-events".into())
            .spawn(move || {
                let mut seq = 0u64;
                let mut last_report = Instant::now();
                loop {
                    let (mut events, done) = match rx.recv_timeout(METRICS_EVERY) {
                        Ok(first) => (vec![first], false),
                        Err(RecvTimeoutError::Timeout) => (vec![], false),
                        Err(RecvTimeoutError::Disconnected) => (vec![], true),
                    };
                    events.extend(rx.try_iter());
                    // Every report carries the counters' growth, so that
                    // a task's last events come with its last counts.
                    if events.is_empty() && !done && last_report.elapsed() < METRICS_EVERY {
                        continue;
                    }
                    let now = MetricsDelta::of(&metrics);
                    let delta = Some(now.since(&reported));
                    reported = now;
                    last_report = Instant::now();
                    seq += 1;
                    let message = Events {
                        worker: w.id.clone(),
                        job,
                        attempt,
                        seq,
                        events,
                        metrics: delta,
                    };
                    let body = serde_json::to_vec(&message).unwrap_or_default();
                    // Until the coordinator has it (a repeat is dropped
                    // there by its number), or this attempt is gone here.
                    loop {
                        let request = w
                            .auth
                            .apply(w.client.post(format!("{}/v1/cluster/events", w.join())))
                            .header("content-type", "application/json")
                            .timeout(Duration::from_secs(10))
                            .body(body.clone());
                        let sent = net_runtime().block_on(async move { request.send().await });
                        // Taken, or refused for good (the coordinator no
                        // longer knows this task manager or attempt).
                        if sent
                            .is_ok_and(|r| r.status().is_success() || r.status().is_client_error())
                        {
                            break;
                        }
                        let live = w
                            .attempts
                            .lock()
                            .expect("attempts lock")
                            .contains_key(&(job, attempt));
                        if !live
                            && !w
                                .deploying
                                .lock()
                                .expect("deploying lock")
                                .contains(&(job, attempt))
                        {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    if done {
                        return;
                    }
                }
            });
    }
}

/// Runs `f` on a thread of its own (it blocks), and answers with its
/// outcome.
async fn off_runtime(f: impl FnOnce() -> Result<(), Failure> + Send + 'static) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("cluster-request".into())
        .spawn(move || {
            let _ = tx.send(f());
        });
    if spawned.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "cannot start a thread").into_response();
    }
    match rx.await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(f)) => (StatusCode::INTERNAL_SERVER_ERROR, f.to_string()).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the request panicked").into_response(),
    }
}

async fn deploy(State(w): State<Arc<Worker>>, Json(d): Json<Deploy>) -> Response {
    off_runtime(move || {
        let (job, attempt) = (d.job, d.attempt);
        let r = w.deploy(d);
        if r.is_err() {
            w.plane.forget(job, attempt);
        }
        r
    })
    .await
}

/// The answer to a request sent before this task manager went silent: the
/// coordinator may have moved the job on since.
fn lost_coordinator() -> Response {
    (
        StatusCode::CONFLICT,
        "this task manager lost its coordinator",
    )
        .into_response()
}

async fn control(State(w): State<Arc<Worker>>, Json(c): Json<Controls>) -> Response {
    if !w.trusted() {
        return lost_coordinator();
    }
    let attempts = w.attempts.lock().expect("attempts lock");
    let Some(running) = attempts.get(&(c.job, c.attempt)) else {
        return (StatusCode::NOT_FOUND, "no such attempt here").into_response();
    };
    for (task, ctl) in c.controls {
        if let Some(tx) = running.controls.get(&task) {
            let _ = tx.send(ctl);
        }
    }
    StatusCode::OK.into_response()
}

/// `POST /v1/cluster/swap`: loads the module an attempt's tasks change to
/// at a checkpoint's barrier, before the coordinator triggers it.
async fn prepare_swap(State(w): State<Arc<Worker>>, Json(p): Json<PrepareSwap>) -> Response {
    if !w.trusted() {
        return lost_coordinator();
    }
    let ctx = w
        .attempts
        .lock()
        .expect("attempts lock")
        .get(&(p.job, p.attempt))
        .map(|r| r.ctx.clone());
    let Some(ctx) = ctx else {
        return (StatusCode::NOT_FOUND, "no such attempt here").into_response();
    };
    off_runtime(move || {
        let bytes = w.module(&p.guest.module_hash)?;
        let factory = w
            .loader
            .load(&bytes, &p.guest, p.graph, &ctx.config, p.job)?;
        ctx.add_swap(p.checkpoint, Arc::new(ModuleSwap { factory }));
        tracing::info!(
            job = %p.job,
            "the job's tasks here change to module {} at checkpoint {}",
            p.guest.module_hash,
            p.checkpoint
        );
        Ok(())
    })
    .await
}

async fn cancel(State(w): State<Arc<Worker>>, Json(c): Json<Cancel>) -> Response {
    off_runtime(move || {
        w.cancel(c.job, c.attempt);
        Ok(())
    })
    .await
}
