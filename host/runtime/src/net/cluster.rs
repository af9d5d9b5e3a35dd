//! The coordinator's side: task managers that joined, the slots each job
//! holds on them, deployments, task controls, and events coming back.

use super::data::{self, DataPlane};
use super::protocol::{Cancel, Controls, Deploy, Events, PrepareSwap, Register, Registered};
use super::{Auth, net_runtime};
use crate::events::{TaskControl, TaskEvent, TaskId};
use crate::metrics::JobMetrics;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use crossbeam_channel::Sender;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_core::{Failure, JobId};

/// Ended attempts kept for their last counter reports.
const ENDED_KEPT: usize = 256;

/// Where modules come from, by content hash.
pub type ModuleSource = Arc<dyn Fn(&str) -> Option<Vec<u8>> + Send + Sync>;

/// How a coordinator runs its cluster.
pub struct ClusterOptions {
    /// The URL task managers and peers reach this process at.
    pub address: String,
    /// Slots of this process.
    pub local_slots: u32,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub auth: Auth,
    /// The module bytes task managers download.
    pub modules: ModuleSource,
}

/// A task manager as the REST API shows it.
#[derive(Debug, Clone)]
pub struct WorkerView {
    pub id: String,
    pub address: String,
    pub slots: u32,
    pub free: u32,
    pub since_heartbeat: Duration,
    pub cores: u32,
    pub memory: i64,
}

struct Worker {
    id: String,
    slots: u32,
    last_heartbeat: Instant,
    cores: u32,
    memory: i64,
}

struct Attempt {
    events: Sender<TaskEvent>,
    metrics: Arc<JobMetrics>,
    by_worker: BTreeMap<String, Vec<TaskId>>,
    /// The last report taken from each task manager.
    seen: HashMap<String, u64>,
}

#[derive(Default)]
struct Members {
    /// By cluster URL.
    workers: BTreeMap<String, Worker>,
    /// The slots each job's current attempt holds, by location.
    held: HashMap<JobId, Vec<String>>,
    attempts: HashMap<(JobId, u32), Attempt>,
    /// Attempts that ended lately: the counters their task managers
    /// report last (after their tasks stopped) still count.
    ended: indexmap::IndexMap<(JobId, u32), Attempt>,
}

/// The cluster a coordinator places its jobs' slots on.
pub struct Cluster {
    address: String,
    local_slots: u32,
    heartbeat_interval: Duration,
    heartbeat_timeout: Duration,
    modules: ModuleSource,
    plane: Arc<DataPlane>,
    client: reqwest::Client,
    state: Mutex<Members>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Serves the cluster endpoint on `listener` and watches heartbeats.
    pub fn start(options: ClusterOptions, listener: std::net::TcpListener) -> Arc<Cluster> {
        let plane = DataPlane::new(options.auth.clone());
        let cluster = Arc::new(Cluster {
            address: options.address,
            local_slots: options.local_slots,
            heartbeat_interval: options.heartbeat_interval,
            heartbeat_timeout: options.heartbeat_timeout,
            modules: options.modules,
            plane: plane.clone(),
            client: super::client(),
            state: Mutex::new(Members::default()),
        });
        let router = Router::new()
            .route("/v1/cluster/workers", post(register))
            .route("/v1/cluster/workers/{id}/heartbeat", post(heartbeat))
            .route("/v1/cluster/events", post(events))
            .route("/v1/cluster/modules/{hash}", get(module))
            .layer(axum::extract::DefaultBodyLimit::max(super::MAX_REQUEST))
            .with_state(cluster.clone())
            .merge(data_router(plane));
        super::serve(listener, router, options.auth);
        let weak = Arc::downgrade(&cluster);
        let _ = std::thread::Builder::new()
            .name("heartbeats".into())
            .spawn(move || {
                while let Some(c) = weak.upgrade() {
                    let period = c.heartbeat_interval.min(Duration::from_millis(500));
                    c.expire();
                    drop(c);
                    std::thread::sleep(period);
                }
            });
        cluster
    }

    /// Whether the task manager at `address` is still registered.
    fn registered(&self, address: &str) -> bool {
        self.state
            .lock()
            .expect("cluster lock")
            .workers
            .contains_key(address)
    }

    /// This process's cluster URL.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub(crate) fn plane(&self) -> &Arc<DataPlane> {
        &self.plane
    }

    /// Slots of this process and of every task manager.
    pub fn total_slots(&self) -> u32 {
        let s = self.state.lock().expect("cluster lock");
        s.workers
            .values()
            .fold(self.local_slots, |n, w| n.saturating_add(w.slots))
    }

    /// Slots no job's attempt holds.
    pub fn free_slots(&self) -> u32 {
        let s = self.state.lock().expect("cluster lock");
        self.free(&s).values().sum()
    }

    fn free<'a>(&'a self, s: &'a Members) -> BTreeMap<&'a str, u32> {
        let mut free: BTreeMap<&str, u32> = BTreeMap::new();
        free.insert(&self.address, self.local_slots);
        for (a, w) in &s.workers {
            free.insert(a, w.slots);
        }
        for held in s.held.values() {
            for a in held {
                if let Some(n) = free.get_mut(a.as_str()) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        free
    }

    /// The task managers that joined.
    pub fn workers(&self) -> Vec<WorkerView> {
        let s = self.state.lock().expect("cluster lock");
        let free = self.free(&s);
        s.workers
            .iter()
            .map(|(a, w)| WorkerView {
                id: w.id.clone(),
                address: a.clone(),
                slots: w.slots,
                free: free.get(a.as_str()).copied().unwrap_or(0),
                since_heartbeat: w.last_heartbeat.elapsed(),
                cores: w.cores,
                memory: w.memory,
            })
            .collect()
    }

    /// Places `n` slots for `job`'s next attempt, spreading them over the
    /// processes with the most free slots; None when too few are free.
    pub(crate) fn place(&self, job: JobId, n: u32) -> Option<Vec<String>> {
        let mut s = self.state.lock().expect("cluster lock");
        s.held.remove(&job);
        let mut free: Vec<(String, u32)> = self
            .free(&s)
            .into_iter()
            .map(|(a, n)| (a.to_owned(), n))
            .collect();
        if free.iter().map(|(_, n)| *n).sum::<u32>() < n {
            return None;
        }
        let mut slots = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (a, left) = free
                .iter_mut()
                .max_by_key(|(a, n)| (*n, *a == self.address))
                .expect("a location with a free slot");
            *left -= 1;
            slots.push(a.clone());
        }
        // Subtask i of every chain runs in slot i: keep each process's
        // slots next to each other.
        slots.sort_by_key(|a| (*a != self.address, a.clone()));
        s.held.insert(job, slots.clone());
        Some(slots)
    }

    /// Routes events of an attempt's remote tasks to its coordinator.
    pub(crate) fn begin_attempt(
        &self,
        job: JobId,
        attempt: u32,
        events: Sender<TaskEvent>,
        metrics: Arc<JobMetrics>,
        by_worker: &BTreeMap<String, Vec<TaskId>>,
    ) {
        let mut s = self.state.lock().expect("cluster lock");
        let gone: Vec<&String> = by_worker
            .keys()
            .filter(|a| !s.workers.contains_key(*a))
            .collect();
        if let Some(a) = gone.first() {
            let _ = events.send(TaskEvent::Failed(
                by_worker[*a][0],
                Failure::external(format!("the task manager at {a} is gone")),
            ));
        }
        s.attempts.insert(
            (job, attempt),
            Attempt {
                events,
                metrics,
                by_worker: by_worker.clone(),
                seen: HashMap::new(),
            },
        );
    }

    /// Ends an attempt: cancels its remote tasks (waiting for them to
    /// stop), forgets its channels and gives its slots back.
    pub(crate) fn end_attempt(&self, job: JobId, attempt: u32) {
        let ended = self
            .state
            .lock()
            .expect("cluster lock")
            .attempts
            .remove(&(job, attempt));
        self.plane.forget(job, attempt);
        if let Some(mut ended) = ended {
            // No one reads its events any more.
            ended.events = crossbeam_channel::unbounded().0;
            let live: Vec<(String, bool)> = {
                let mut s = self.state.lock().expect("cluster lock");
                let live = ended
                    .by_worker
                    .keys()
                    .map(|a| (a.clone(), s.workers.contains_key(a)))
                    .collect();
                if s.ended.len() >= ENDED_KEPT {
                    s.ended.shift_remove_index(0);
                }
                s.ended.insert((job, attempt), ended);
                live
            };
            let mut waits = Vec::new();
            for (address, registered) in live {
                let request = self
                    .plane
                    .auth
                    .apply(self.client.post(format!("{address}/v1/cluster/cancel")))
                    .timeout(Duration::from_secs(30))
                    .json(&Cancel { job, attempt });
                let sent = net_runtime().spawn(async move { request.send().await });
                // A lost task manager is told too, should it still be
                // there, but not waited for: it cancels its tasks itself
                // once it finds out.
                if registered {
                    waits.push((address, sent));
                }
            }
            for (address, sent) in waits {
                let ok = matches!(
                    net_runtime().block_on(sent),
                    Ok(Ok(r)) if r.status().is_success()
                );
                if !ok {
                    self.lose(&address, "it did not stop an attempt's tasks when told");
                }
            }
        }
        // The slots are free once the tasks on them stopped.
        self.state.lock().expect("cluster lock").held.remove(&job);
    }

    /// Deploys the tasks `message` names to the task manager at `address`.
    pub(crate) fn deploy(&self, address: &str, message: &Deploy) -> Result<(), Failure> {
        self.prepare(address, "deploy", message, "start the job's tasks", 300)
    }

    /// Gives the task manager at `address` the module its tasks change to
    /// at a checkpoint's barrier.
    pub(crate) fn prepare_swap(&self, address: &str, message: &PrepareSwap) -> Result<(), Failure> {
        self.prepare(address, "swap", message, "load the job's new module", 60)
    }

    /// Asks the task manager at `address` to `what`, waiting for it (up to
    /// `timeout_s`; one that does not answer is lost).
    fn prepare(
        &self,
        address: &str,
        route: &str,
        message: &impl serde::Serialize,
        what: &str,
        timeout_s: u64,
    ) -> Result<(), Failure> {
        if !self.registered(address) {
            return Err(Failure::external(format!(
                "the task manager at {address} is gone"
            )));
        }
        let request = self
            .plane
            .auth
            .apply(self.client.post(format!("{address}/v1/cluster/{route}")))
            .timeout(Duration::from_secs(timeout_s))
            .json(message);
        let answer = net_runtime().block_on(async move {
            let r = request.send().await?;
            let status = r.status();
            Ok::<_, reqwest::Error>((status, r.text().await.unwrap_or_default()))
        });
        match answer {
            Ok((status, _)) if status.is_success() => Ok(()),
            Ok((status, text)) => Err(Failure::external(format!(
                "the task manager at {address} could not {what} ({status}): {text}"
            ))),
            Err(e) => {
                let why = format!("it does not answer ({e})");
                self.lose(address, &why);
                Err(Failure::external(format!(
                    "the task manager at {address} is lost: {why}"
                )))
            }
        }
    }

    /// Sends controls to an attempt's tasks at `address`, in order.
    pub(crate) fn control(
        &self,
        address: &str,
        job: JobId,
        attempt: u32,
        controls: Vec<(TaskId, TaskControl)>,
    ) {
        if !self.registered(address) {
            return;
        }
        let request = self
            .plane
            .auth
            .apply(self.client.post(format!("{address}/v1/cluster/control")))
            // A task manager that hangs is lost within a heartbeat timeout
            // anyway; the job's coordinator must not wait longer.
            .timeout(self.heartbeat_timeout.min(Duration::from_secs(10)))
            .json(&Controls {
                job,
                attempt,
                controls,
            });
        let sent = net_runtime().block_on(async move { request.send().await });
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) if r.status() == StatusCode::NOT_FOUND => {
                // The attempt is gone there: its tasks ended or failed, and
                // said so.
            }
            Ok(r) => tracing::warn!("controls to {address} refused: {}", r.status()),
            Err(e) => self.lose(address, &format!("it does not answer ({e})")),
        }
    }

    /// Forgets a task manager: the attempts with tasks on it fail.
    fn lose(&self, address: &str, why: &str) {
        let mut s = self.state.lock().expect("cluster lock");
        let Some(w) = s.workers.remove(address) else {
            return;
        };
        tracing::warn!("task manager {} at {address} is lost: {why}", w.id);
        for a in s.attempts.values() {
            if let Some(tasks) = a.by_worker.get(address) {
                let _ = a.events.send(TaskEvent::Failed(
                    tasks[0],
                    Failure::external(format!("task manager {} at {address} is lost: {why}", w.id)),
                ));
            }
        }
    }

    /// Loses the task managers whose heartbeats stopped.
    fn expire(&self) {
        let silent: Vec<(String, Duration)> = {
            let s = self.state.lock().expect("cluster lock");
            s.workers
                .iter()
                .filter(|(_, w)| w.last_heartbeat.elapsed() > self.heartbeat_timeout)
                .map(|(a, w)| (a.clone(), w.last_heartbeat.elapsed()))
                .collect()
        };
        for (a, t) in silent {
            self.lose(
                &a,
                &format!("no heartbeat for {} ms (heartbeat.timeout)", t.as_millis()),
            );
        }
    }
}

pub(crate) fn data_router(plane: Arc<DataPlane>) -> Router {
    Router::new()
        .route(
            "/v1/cluster/channels/{job}/{attempt}/{edge}/{from}/{to}",
            post(data::receive),
        )
        .route(
            "/v1/cluster/priority/{job}/{attempt}/{edge}/{from}/{to}",
            post(data::priority),
        )
        .with_state(plane)
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

async fn register(State(c): State<Arc<Cluster>>, Json(r): Json<Register>) -> Response {
    if !r.address.starts_with("http://") && !r.address.starts_with("https://") {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("{} is not an http:// URL", r.address),
        );
    }
    if r.address == c.address {
        return refuse(StatusCode::BAD_REQUEST, "that is the coordinator's address");
    }
    if r.slots == 0 || r.slots > 4096 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a task manager offers 1 to 4096 slots",
        );
    }
    // A task manager that joins again (it lost the coordinator, or
    // restarted at the same address) starts afresh.
    let again = {
        let s = c.state.lock().expect("cluster lock");
        s.workers
            .iter()
            .find(|(a, w)| **a == r.address || w.id == r.id)
            .map(|(a, _)| a.clone())
    };
    if let Some(a) = again {
        c.lose(&a, "it joined again");
    }
    tracing::info!(
        "task manager {} joined from {} with {} slots",
        r.id,
        r.address,
        r.slots
    );
    c.state.lock().expect("cluster lock").workers.insert(
        r.address.clone(),
        Worker {
            id: r.id,
            slots: r.slots,
            last_heartbeat: Instant::now(),
            cores: r.cores,
            memory: r.memory,
        },
    );
    Json(Registered {
        heartbeat_interval_ms: c.heartbeat_interval.as_millis() as u64,
        heartbeat_timeout_ms: c.heartbeat_timeout.as_millis() as u64,
    })
    .into_response()
}

async fn heartbeat(State(c): State<Arc<Cluster>>, Path(id): Path<String>) -> Response {
    let mut s = c.state.lock().expect("cluster lock");
    match s.workers.values_mut().find(|w| w.id == id) {
        Some(w) => {
            w.last_heartbeat = Instant::now();
            StatusCode::OK.into_response()
        }
        None => refuse(
            StatusCode::NOT_FOUND,
            format!("task manager {id} is not registered; join again"),
        ),
    }
}

async fn events(State(c): State<Arc<Cluster>>, Json(e): Json<Events>) -> Response {
    let mut s = c.state.lock().expect("cluster lock");
    let Some(address) = s
        .workers
        .iter()
        .find(|(_, w)| w.id == e.worker)
        .map(|(a, _)| a.clone())
    else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("task manager {} is not registered; join again", e.worker),
        );
    };
    let key = (e.job, e.attempt);
    let live = s.attempts.contains_key(&key);
    // Events of an attempt that ended have no one to go to; its last
    // counters still count.
    let a = match (live, &mut *s) {
        (true, m) => m.attempts.get_mut(&key).expect("a live attempt"),
        (false, m) => match m.ended.get_mut(&key) {
            Some(a) => a,
            None => return StatusCode::OK.into_response(),
        },
    };
    let Some(tasks) = a.by_worker.get(&address) else {
        return refuse(StatusCode::FORBIDDEN, "that attempt has no task there");
    };
    if e.events.iter().any(|ev| !tasks.contains(&ev.task())) {
        return refuse(
            StatusCode::FORBIDDEN,
            "an event of a task that is not there",
        );
    }
    let last = a.seen.entry(address).or_default();
    if e.seq <= *last {
        return StatusCode::OK.into_response();
    }
    *last = e.seq;
    if let Some(m) = &e.metrics {
        m.apply(&a.metrics);
    }
    if live {
        for ev in e.events {
            let _ = a.events.send(ev);
        }
    }
    StatusCode::OK.into_response()
}

async fn module(State(c): State<Arc<Cluster>>, Path(hash): Path<String>) -> Response {
    if hash.is_empty() || hash.len() > 128 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return refuse(StatusCode::BAD_REQUEST, "not a module hash");
    }
    let modules = c.modules.clone();
    match tokio::task::spawn_blocking(move || modules(&hash)).await {
        Ok(Some(bytes)) => bytes.into_response(),
        _ => refuse(StatusCode::NOT_FOUND, "no such module"),
    }
}
