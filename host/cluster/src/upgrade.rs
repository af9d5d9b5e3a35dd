//! Upgrading a running job to a new module (`weir upgrade`, `POST
//! /jobs/:id/upgrade`), or rescaling it to another parallelism (`weir
//! rescale`, `PATCH /jobs/:id/rescaling`, `PUT /jobs/:id/resource-
//! requirements`): a rescale is an upgrade that keeps the module.
//!
//! The new module is planned and checked against the job's latest
//! checkpoint first (the check `weir savepoint check` prints); a refusal
//! leaves the job running untouched. When the new plan keeps the job's
//! shape, the module changes in place at a checkpoint's barrier (a hot
//! swap: sources keep reading, nothing is processed twice); otherwise the
//! job stops with a savepoint and starts again from it on the new module,
//! under the same job id, as one operation. If the new version fails within
//! `weir.upgrade.probation`, the job goes back to its previous module from
//! its latest committed snapshot, so transactional sinks stay exact.

use crate::ha::{JobRecord, ModuleVersion};
use crate::session::{JobEntry, Prepared, Session, slots_needed};
use crate::status::{JobState, Operation, now_ms, remember};
use crate::tenancy::Caller;
use crate::{ApiError, ApiResult};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use weir_checkpoint::protocol::plan_restore;
use weir_checkpoint::storage::split_location;
use weir_checkpoint::{S3Options, Storage};
use weir_core::{Config, ErrorDomain, Failure, JobId};
use weir_runtime::{JobCommand, SwapRequest, Swapped};

/// Longest the pre-flight waits for a checkpoint when the job has none.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(60);
/// Longest an upgrade waits for the stop-with-savepoint.
const STOP_WAIT: Duration = Duration::from_secs(300);

/// What an upgrade asks for.
#[derive(Debug, Clone, Default)]
pub struct UpgradeRequest {
    /// The uploaded new module; the job keeps its module when not given.
    pub jar_id: Option<String>,
    /// The job's new default parallelism (a rescale); the job keeps its
    /// parallelism when not given.
    pub parallelism: Option<u32>,
    /// The job in the module; the current one's when not given.
    pub entry: Option<String>,
    /// The job's arguments; the current ones when not given.
    pub args: Option<Vec<String>>,
    /// Drop state the new module does not claim (`-n`).
    pub allow_non_restored: bool,
    /// Where the upgrade's savepoint goes; `state.savepoints.dir` if not given.
    pub target_directory: Option<String>,
    /// Stop with a savepoint and restart even where the module could change
    /// in place (so that the job's configuration changes too).
    pub restart: bool,
}

/// Where an upgrade is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeState {
    InProgress,
    /// The new module runs (and is on probation until `probation_ends`).
    Upgraded,
    /// The new module failed on probation; the old one runs again.
    RolledBack,
    /// The upgrade could not complete.
    Failed,
}

/// One upgrade operation.
#[derive(Debug, Clone)]
pub struct UpgradeOperation {
    pub job: JobId,
    pub owner: String,
    /// `upgrade` (a new module) or `rescale` (the same module at another
    /// parallelism).
    pub kind: &'static str,
    pub state: UpgradeState,
    /// `hot-swap`: the module changed in place at a barrier; `restart`:
    /// stop with a savepoint and start the new version from it.
    pub mode: &'static str,
    pub savepoint: Option<String>,
    pub failure: Option<String>,
    /// The pre-flight check, a line per piece of state.
    pub report: Vec<String>,
    pub probation_ends: Option<u64>,
}

impl UpgradeOperation {
    fn ended(&self) -> bool {
        self.state != UpgradeState::InProgress
    }

    /// The operation as `GET /jobs/:id/upgrade/:trigger` shows it.
    pub fn view(&self) -> Value {
        let (status, result) = match self.state {
            UpgradeState::InProgress => ("IN_PROGRESS", None),
            UpgradeState::Upgraded => ("COMPLETED", Some("UPGRADED")),
            UpgradeState::RolledBack => ("COMPLETED", Some("ROLLED_BACK")),
            UpgradeState::Failed => ("COMPLETED", Some("FAILED")),
        };
        let mut op = json!({
            "kind": self.kind,
            "mode": self.mode,
            "report": self.report,
        });
        if let Some(r) = result {
            op["result"] = json!(r);
        }
        if let Some(s) = &self.savepoint {
            op["location"] = json!(s);
        }
        if let Some(f) = &self.failure {
            op["failure-cause"] = json!({ "class": "weir.UpgradeFailure", "stack-trace": f });
        }
        if let Some(p) = self.probation_ends {
            op["probation-ends"] = json!(p);
        }
        json!({ "status": { "id": status }, "operation": op })
    }
}

/// The pre-flight check's report as lines a person reads.
fn report_lines(plan: &weir_checkpoint::protocol::RestorePlan) -> Vec<String> {
    plan.report
        .iter()
        .map(|l| {
            let (result, detail) = l.decision.describe();
            format!("{result} {} of {} {detail}", l.what, l.uids.join(", "))
                .trim_end()
                .to_owned()
        })
        .collect()
}

impl Session {
    /// Starts upgrading job `id` to the module of `req.jar_id`; returns the
    /// operation's trigger id, or the pre-flight check's refusal.
    pub fn upgrade(&self, id: &str, req: UpgradeRequest, caller: &Caller) -> ApiResult<String> {
        let job = self.job(id, caller)?;
        let jar = match &req.jar_id {
            Some(jar_id) => Some(self.jar(jar_id, caller)?),
            None => None,
        };
        let (what, verb) = if jar.is_some() {
            ("upgrade", "upgraded")
        } else {
            ("rescale", "rescaled")
        };
        if job.state() != JobState::Running {
            return Err(ApiError::conflict(format!(
                "job {id} is {}; only a RUNNING job is {verb}",
                job.state().name()
            )));
        }
        let current = job.record();
        let mut record = current.clone();
        if let Some(jar) = &jar {
            record.module_hash = jar.module_hash.clone();
            record.jar_id = Some(jar.id.clone());
            if let Some(e) = req.entry.filter(|e| !e.is_empty()) {
                record.entry = Some(e);
            } else if !jar.entries.iter().any(|e| Some(e) == record.entry.as_ref()) {
                record.entry = None;
            }
        }
        if let Some(args) = req.args {
            record.args = args;
        }
        if let Some(p) = req.parallelism {
            record.parallelism = Some(check_parallelism(p)?);
        }
        record.allow_non_restored = req.allow_non_restored;
        // The new plan must be valid before anything stops.
        let mut planned = record.clone();
        planned.savepoint_path = None;
        planned.allow_non_restored = false;
        let prepared = self.prepare(&mut planned)?;
        let target = weir_runtime::target_job(prepared.factory.as_ref());
        let new_version = prepared.graph.version.clone();
        let rescaled = prepared.config.parallelism != job.config.parallelism;
        let need = slots_needed(&weir_runtime::ExecutionGraph::build(&prepared.graph));
        if rescaled {
            self.check_rescale(&job, &prepared, need)?;
        }

        // In place when the new plan keeps the job's shape.
        let refusal = if rescaled {
            Some(format!(
                "the parallelism changes from {} to {}",
                job.config.parallelism, prepared.config.parallelism
            ))
        } else if req.restart {
            Some("a restart was asked for".to_owned())
        } else {
            weir_runtime::swap_refusal(&job.graph, &prepared.graph)
        };
        // A restart stops the job with a savepoint, and a swap in a job
        // without checkpoints rides on one: it needs somewhere to go.
        let needs_savepoint = refusal.is_some() || job.config.checkpoint_interval.is_none();
        if needs_savepoint && req.target_directory.is_none() && job.config.savepoints_dir.is_none()
        {
            return Err(ApiError::bad_request(format!(
                "job {id} is {verb} through a savepoint, and no directory is given for it: give \
                 targetDirectory (--savepoint-dir with weir rescale, -p with weir upgrade), or \
                 set state.savepoints.dir"
            )));
        }
        self.check_savepoint_dir(&job, req.target_directory.as_deref())?;

        // The pre-flight check, against the latest checkpoint.
        let latest = self.latest_snapshot(&job, req.target_directory.clone(), verb)?;
        let meta = read_snapshot(&latest, &prepared.config)?;
        let plan = plan_restore(&meta, &target, req.allow_non_restored);
        let mut report = report_lines(&plan);
        if let Some(e) = plan.error() {
            return Err(ApiError::conflict(format!(
                "the {what} is refused and job {id} keeps running: {e}\n{}",
                report.join("\n")
            )));
        }
        let mode = match &refusal {
            None => {
                report.push("in place: the new plan keeps the job's shape".into());
                "hot-swap"
            }
            Some(why) => {
                report.push(format!(
                    "restart: {why}, so the job stops with a savepoint and starts again from it"
                ));
                "restart"
            }
        };
        // One upgrade of a job at a time: checked and recorded at once.
        let trigger = uuid::Uuid::new_v4().simple().to_string();
        {
            let mut ups = self.inner.upgrades.lock().expect("upgrades");
            if let Some((t, _)) = ups.iter().find(|(_, o)| o.job == job.id && !o.ended()) {
                return Err(ApiError::conflict(format!(
                    "an upgrade or rescale of job {id} (request-id {t}) is in progress; wait \
                     for it to end"
                )));
            }
            // What was planned above must still be what runs: another
            // upgrade may have ended meanwhile.
            let now = self.job(id, caller)?;
            if !Arc::ptr_eq(&now, &job)
                || now.record() != current
                || now.state() != JobState::Running
            {
                return Err(ApiError::conflict(format!(
                    "job {id} changed while this request was checked (another upgrade or \
                     rescale ended, or the job stopped); look at it and ask again"
                )));
            }
            if refusal.is_some() {
                // Its slots stay its own while it stops and starts again.
                self.inner
                    .reserved
                    .lock()
                    .expect("reserved lock")
                    .insert(job.id, need.max(job.slots));
            }
            remember(
                &mut ups,
                trigger.clone(),
                UpgradeOperation {
                    job: job.id,
                    owner: caller.owner().to_owned(),
                    kind: what,
                    state: UpgradeState::InProgress,
                    mode,
                    savepoint: None,
                    failure: None,
                    report,
                    probation_ends: None,
                },
                UpgradeOperation::ended,
            );
        }
        if refusal.is_none() {
            record.allow_non_restored |= current.allow_non_restored;
            let (session, entry, t) = (self.clone(), job.clone(), trigger.clone());
            let swap = SwapRequest::new(
                prepared.factory,
                req.target_directory,
                req.allow_non_restored,
                move |result| session.swapped(&entry, record, current, new_version, &t, result),
            );
            if !job.send(JobCommand::Swap(swap)) {
                self.set_upgrade(&trigger, |o| {
                    o.state = UpgradeState::Failed;
                    o.failure = Some("the job ended".into());
                });
                return Err(ApiError::conflict(format!("job {id} has ended")));
            }
            return Ok(trigger);
        }
        // The job stays in the HA store while it changes modules: a session
        // that dies in between resumes it from the savepoint that stopped it.
        job.upgrading.store(true, Ordering::SeqCst);
        let sp = match self.savepoint(id, req.target_directory, true, false, caller) {
            Ok(sp) => sp,
            Err(e) => {
                job.upgrading.store(false, Ordering::SeqCst);
                self.release_slots(job.id);
                self.set_upgrade(&trigger, |o| {
                    o.state = UpgradeState::Failed;
                    o.failure = Some(e.message.clone());
                });
                return Err(e);
            }
        };
        let session = self.clone();
        let t = trigger.clone();
        std::thread::Builder::new()
            .name(format!("upgrade-{}", job.id.short()))
            .spawn(move || {
                let result = session.finish_upgrade(&job, &sp, record, new_version, &t);
                session.release_slots(job.id);
                if let Err(cause) = result {
                    tracing::warn!(job = %job.id, "upgrade failed: {cause}");
                    job.upgrading.store(false, Ordering::SeqCst);
                    // A job that ended on the way is not resumed later.
                    let current = session.inner.jobs.read().expect("jobs lock").get(&job.id).cloned();
                    if current.is_some_and(|j| j.state().is_terminal())
                        && let Err(e) = session.inner.ha.remove_job(job.id)
                    {
                        tracing::warn!(job = %job.id, "cannot remove the job from the HA store: {e}");
                    }
                    session.set_upgrade(&t, |o| {
                        o.state = UpgradeState::Failed;
                        o.failure = Some(cause);
                    });
                }
            })
            .map_err(|e| ApiError::internal(anyhow::anyhow!("cannot start a thread: {e}")))?;
        Ok(trigger)
    }

    /// Rescales job `id` to `parallelism`: it stops with a savepoint and
    /// starts again from it with the same module, under the same job id.
    /// Returns the operation's trigger id.
    pub fn rescale(
        &self,
        id: &str,
        parallelism: u32,
        target_directory: Option<String>,
        caller: &Caller,
    ) -> ApiResult<String> {
        let job = self.job(id, caller)?;
        check_parallelism(parallelism)?;
        if job.config.parallelism == parallelism {
            return Err(ApiError::bad_request(format!(
                "job {id} already runs at parallelism {parallelism}; give another"
            )));
        }
        let req = UpgradeRequest {
            parallelism: Some(parallelism),
            // All state comes along, or the rescale is refused.
            allow_non_restored: false,
            target_directory,
            restart: true,
            ..UpgradeRequest::default()
        };
        self.upgrade(id, req, caller)
    }

    /// Each vertex's parallelism as Flink's `GET /jobs/:id/resource-
    /// requirements` shows it: vertex id to lower and upper bound.
    pub fn resource_requirements(&self, id: &str, caller: &Caller) -> ApiResult<Value> {
        let job = self.job(id, caller)?;
        let mut out = serde_json::Map::new();
        for c in &job.exec.chains {
            out.insert(
                crate::views::vertex_id(&job, c.id),
                json!({ "parallelism": { "lowerBound": 1, "upperBound": c.parallelism } }),
            );
        }
        Ok(Value::Object(out))
    }

    /// Flink's `PUT /jobs/:id/resource-requirements`: `asks` maps vertex
    /// ids to the parallelism (upper bound) wanted. Weir rescales a job as a
    /// whole, so every vertex asked to change must ask for the same
    /// parallelism, which becomes the job's; vertices asked for what they
    /// run keep it. Returns the rescale's trigger id, or None when nothing
    /// changes.
    pub fn set_resource_requirements(
        &self,
        id: &str,
        asks: &[(String, i64, i64)],
        caller: &Caller,
    ) -> ApiResult<Option<String>> {
        let job = self.job(id, caller)?;
        let mut wanted: Option<u32> = None;
        for (vid, lower, upper) in asks {
            let Some(chain) = job
                .exec
                .chains
                .iter()
                .find(|c| crate::views::vertex_id(&job, c.id) == *vid)
            else {
                return Err(ApiError::bad_request(format!(
                    "job {id} has no vertex {vid}; GET /jobs/{id}/resource-requirements lists \
                     its vertices"
                )));
            };
            if *upper < 1 || *upper > i64::from(u32::MAX) || *lower < 1 || lower > upper {
                return Err(ApiError::bad_request(format!(
                    "vertex {vid}: give 1 <= lowerBound <= upperBound (got {lower} and {upper})"
                )));
            }
            let upper = *upper as u32;
            if upper == chain.parallelism {
                continue;
            }
            if chain.parallelism != job.config.parallelism {
                return Err(ApiError::bad_request(format!(
                    "vertex {vid} runs at parallelism {}, which the job sets for it, not the \
                     job's parallelism {}: it keeps it; ask it for {}",
                    chain.parallelism, job.config.parallelism, chain.parallelism
                )));
            }
            match wanted {
                Some(w) if w != upper => {
                    return Err(ApiError::bad_request(format!(
                        "the vertices ask for parallelism {w} and {upper}: a job rescales as a \
                         whole, so give the vertices that change one upperBound"
                    )));
                }
                _ => wanted = Some(upper),
            }
        }
        match wanted {
            None => Ok(None),
            Some(p) => self.rescale(id, p, None, caller).map(Some),
        }
    }

    /// The upgrade operation `trigger` of job `id`.
    pub fn upgrade_status(&self, id: &str, trigger: &str, caller: &Caller) -> ApiResult<Value> {
        let job = self.job(id, caller)?;
        let ups = self.inner.upgrades.lock().expect("upgrades");
        match ups.get(trigger) {
            Some(o) if o.job == job.id && caller.sees(&o.owner) => Ok(o.view()),
            _ => Err(ApiError::not_found(format!(
                "there is no upgrade or rescale {trigger} of job {id}; use the request-id \
                 that POST /jobs/{id}/upgrade or PATCH /jobs/{id}/rescaling returned"
            ))),
        }
    }

    /// The modules job `id` has run, oldest first.
    pub fn versions(&self, id: &str, caller: &Caller) -> ApiResult<Vec<ModuleVersion>> {
        Ok(self.job(id, caller)?.record().versions)
    }

    /// Whether job `job` was upgraded again after upgrade `trigger`.
    fn superseded(&self, job: JobId, trigger: &str) -> bool {
        let ups = self.inner.upgrades.lock().expect("upgrades");
        let mine = ups.get_index_of(trigger);
        let last = ups
            .iter()
            .enumerate()
            .filter(|(_, (_, o))| o.job == job)
            .map(|(i, _)| i)
            .next_back();
        mine.is_none() || mine < last
    }

    fn set_upgrade(&self, trigger: &str, f: impl FnOnce(&mut UpgradeOperation)) {
        if let Some(o) = self
            .inner
            .upgrades
            .lock()
            .expect("upgrades")
            .get_mut(trigger)
        {
            f(o);
        }
    }

    /// Frees the slots held for `job` while it restarted.
    fn release_slots(&self, job: JobId) {
        self.inner
            .reserved
            .lock()
            .expect("reserved lock")
            .remove(&job);
    }

    /// A rescale must fit before the job stops: the slots it takes beyond
    /// those it holds must be free, and within its tenant's quota.
    fn check_rescale(&self, job: &JobEntry, prepared: &Prepared, need: u32) -> ApiResult<()> {
        let more = need.saturating_sub(job.slots);
        let free = self.slots_total().saturating_sub(self.slots_used());
        if more > free {
            return Err(ApiError::conflict(format!(
                "not enough task slots to rescale job {} to parallelism {}: it needs {need} \
                 slots, holds {}, and {free} more are free; the job keeps running as it is",
                job.id, prepared.config.parallelism, job.slots
            )));
        }
        if let Some(t) = &prepared.tenant
            && let Some(max) = t.quota.slots
        {
            let used: u32 = self.live_jobs_of(&t.name).iter().map(|j| j.slots).sum();
            if used + more > max {
                return Err(ApiError::conflict(format!(
                    "not enough task slots for tenant {} to rescale job {}: it needs {need}, \
                     holds {}, and the tenant uses {used} of its {max} ({}); the job keeps \
                     running as it is",
                    t.name,
                    job.id,
                    job.slots,
                    t.key("slots")
                )));
            }
        }
        Ok(())
    }

    /// The job's latest completed checkpoint; a savepoint is taken when it
    /// has none.
    fn latest_snapshot(
        &self,
        job: &JobEntry,
        dir: Option<String>,
        verb: &str,
    ) -> ApiResult<String> {
        if let Ok(Some(p)) = self.inner.ha.latest_checkpoint(job.id) {
            return Ok(p);
        }
        // Without checkpoints, a savepoint (which leaves the job running).
        let (tx, rx) = crossbeam_channel::bounded(1);
        if !job.send(JobCommand::Savepoint {
            dir,
            stop: false,
            drain: false,
            reply: tx,
        }) {
            return Err(ApiError::conflict(format!("job {} has ended", job.id)));
        }
        let why = match rx.recv_timeout(CHECKPOINT_WAIT) {
            Ok(Ok(location)) => return Ok(location),
            Ok(Err(f)) => f.message,
            Err(_) => format!("none completed within {CHECKPOINT_WAIT:?}; try again"),
        };
        Err(ApiError::conflict(format!(
            "job {} is not {verb}: the new plan is checked against a snapshot of the job, \
             which has no checkpoint, and its savepoint failed: {why}",
            job.id
        )))
    }

    /// Waits for the stop-with-savepoint, starts the new version from it and
    /// watches it through its probation.
    fn finish_upgrade(
        &self,
        old: &Arc<JobEntry>,
        savepoint_trigger: &str,
        mut record: JobRecord,
        new_version: String,
        trigger: &str,
    ) -> Result<(), String> {
        let savepoint = wait_savepoint(old, savepoint_trigger)?;
        self.set_upgrade(trigger, |o| o.savepoint = Some(savepoint.clone()));
        if !old.wait_ended(STOP_WAIT) {
            return Err(format!(
                "job {} did not stop within {STOP_WAIT:?} after its savepoint",
                old.id
            ));
        }
        let mut previous = old.record();
        record.savepoint_path = Some(savepoint.clone());
        let how = if record.module_hash == previous.module_hash
            && record.parallelism != previous.parallelism
        {
            "rescaled"
        } else {
            "upgraded"
        };
        record.versions.push(ModuleVersion {
            module_hash: record.module_hash.clone(),
            jar_id: record.jar_id.clone(),
            version: new_version,
            since: now_ms(),
            how: how.into(),
            from: Some(savepoint.clone()),
        });
        // A rollback's history keeps the version that failed.
        previous.versions = record.versions.clone();
        let id = match self.submit(record, None) {
            Ok(id) => id,
            Err(e) => {
                // The savepoint holds the old version's state: it comes back.
                let cause = format!("the new version did not start: {}", e.message);
                self.roll_back(previous, &savepoint, &cause)?;
                self.set_upgrade(trigger, |o| {
                    o.state = UpgradeState::RolledBack;
                    o.failure = Some(cause);
                });
                return Ok(());
            }
        };
        let Some(new) = self.inner.jobs.read().expect("jobs lock").get(&id).cloned() else {
            return Err("the upgraded job is gone".into());
        };
        let since = now_ms();
        self.set_upgrade(trigger, |o| {
            o.state = UpgradeState::Upgraded;
            o.probation_ends = Some(since + new.config.upgrade_probation.as_millis() as u64);
        });
        tracing::info!(job = %id, "upgraded from the savepoint {savepoint}");
        self.probation(&new, previous, &savepoint, trigger, since)
    }

    /// The module swap of `job` to `record` ended (on the job's
    /// coordinator thread): records the new module and watches it through
    /// its probation, or reports why the job runs its previous module.
    fn swapped(
        &self,
        job: &Arc<JobEntry>,
        mut record: JobRecord,
        mut previous: JobRecord,
        new_version: String,
        trigger: &str,
        result: Result<Swapped, Failure>,
    ) {
        let swapped = match result {
            Ok(s) => s,
            Err(f) => {
                tracing::warn!(job = %job.id, "the module swap did not take place: {f}");
                // A failure on the way restarted the job on its previous
                // module; otherwise nothing changed.
                let state = if f.domain == ErrorDomain::External {
                    UpgradeState::RolledBack
                } else {
                    UpgradeState::Failed
                };
                self.set_upgrade(trigger, |o| {
                    o.state = state;
                    o.failure = Some(f.message);
                });
                return;
            }
        };
        let since = now_ms();
        record.versions.push(ModuleVersion {
            module_hash: record.module_hash.clone(),
            jar_id: record.jar_id.clone(),
            version: new_version,
            since,
            how: "swapped".into(),
            from: swapped.location.clone(),
        });
        previous.versions = record.versions.clone();
        if let Err(e) = self.inner.ha.put_job(&record) {
            tracing::warn!(job = %job.id, "cannot record the new module in the HA store: {e}");
        }
        job.set_record(record);
        self.set_upgrade(trigger, |o| {
            o.state = UpgradeState::Upgraded;
            o.savepoint = swapped.location.clone();
            o.probation_ends = Some(since + job.config.upgrade_probation.as_millis() as u64);
        });
        tracing::info!(job = %job.id, "changed modules in place at checkpoint {}", swapped.checkpoint);
        let (session, job, t) = (self.clone(), job.clone(), trigger.to_owned());
        let from = swapped.location.unwrap_or_default();
        let spawned = std::thread::Builder::new()
            .name(format!("probation-{}", job.id.short()))
            .spawn(move || {
                if let Err(cause) = session.probation(&job, previous, &from, &t, since) {
                    tracing::warn!(job = %job.id, "rolling back failed: {cause}");
                    job.upgrading.store(false, Ordering::SeqCst);
                    session.set_upgrade(&t, |o| {
                        o.state = UpgradeState::Failed;
                        o.failure = Some(cause);
                    });
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot watch the new module: {e}");
        }
    }

    /// Watches `new` through its probation; if it fails, starts `previous`
    /// again from the new version's latest checkpoint (which its sinks
    /// committed), else from `upgrade_snapshot`.
    fn probation(
        &self,
        new: &Arc<JobEntry>,
        previous: JobRecord,
        upgrade_snapshot: &str,
        trigger: &str,
        since: u64,
    ) -> Result<(), String> {
        let id = new.id;
        let superseded = || self.superseded(id, trigger);
        let Some(cause) = watch(new, new.config.upgrade_probation, since, superseded) else {
            return Ok(());
        };
        tracing::warn!(job = %id, "the new version failed on probation: {cause}; rolling back");
        new.upgrading.store(true, Ordering::SeqCst);
        if !new.state().is_terminal() {
            new.status.lock().set(JobState::Cancelling);
            new.send(JobCommand::Cancel);
        }
        if !new.wait_ended(STOP_WAIT) {
            return Err(format!(
                "the new version failed on probation ({cause}) and did not stop within \
                 {STOP_WAIT:?}"
            ));
        }
        // Its latest checkpoint (which its sinks committed), else the
        // upgrade's savepoint.
        let from = new
            .status
            .lock()
            .checkpoints
            .iter()
            .filter(|c| c.status == "COMPLETED" && !c.is_savepoint)
            .max_by_key(|c| c.id)
            .and_then(|c| c.external_path.clone())
            .unwrap_or_else(|| upgrade_snapshot.to_owned());
        self.roll_back(previous, &from, &cause)?;
        self.set_upgrade(trigger, |o| {
            o.state = UpgradeState::RolledBack;
            o.failure = Some(format!("the new version failed on probation: {cause}"));
        });
        Ok(())
    }

    /// Starts the job's previous module again from `from`.
    fn roll_back(&self, mut previous: JobRecord, from: &str, cause: &str) -> Result<(), String> {
        previous.savepoint_path = Some(from.to_owned());
        previous.allow_non_restored = true;
        previous.versions.push(ModuleVersion {
            module_hash: previous.module_hash.clone(),
            jar_id: previous.jar_id.clone(),
            version: previous
                .versions
                .last()
                .map(|v| v.version.clone())
                .unwrap_or_default(),
            since: now_ms(),
            how: "rolled-back".into(),
            from: Some(from.to_owned()),
        });
        self.submit(previous, None).map(|_| ()).map_err(|e| {
            format!(
                "{cause}; rolling back to the previous module from {from} failed too: {}",
                e.message
            )
        })
    }
}

/// A parallelism a job may ask for (as `POST /jars/:id/run` takes).
fn check_parallelism(p: u32) -> ApiResult<u32> {
    if (1..=u32::from(u16::MAX)).contains(&p) {
        Ok(p)
    } else {
        Err(ApiError::bad_request(format!(
            "parallelism {p} is out of range; give a number from 1 to the job's max parallelism"
        )))
    }
}

/// Waits for a savepoint operation of `job` to end.
fn wait_savepoint(job: &JobEntry, trigger: &str) -> Result<String, String> {
    let start = Instant::now();
    loop {
        match job.status.lock().operations.get(trigger) {
            Some(Operation::Completed(location)) => return Ok(location.clone()),
            Some(Operation::Failed(why)) => {
                return Err(format!(
                    "the savepoint that stops the job failed, so it keeps running the old \
                     version: {why}"
                ));
            }
            Some(_) => {}
            None => return Err("the savepoint operation was forgotten".into()),
        }
        if start.elapsed() > STOP_WAIT {
            return Err(format!(
                "the savepoint that stops the job did not complete within {STOP_WAIT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Watches a new version through its probation (from `since`): the cause
/// of its first failure, or `None` when it ran through, ended by itself or
/// was upgraded again (the later upgrade watches from then on).
fn watch(
    job: &JobEntry,
    probation: Duration,
    since: u64,
    superseded: impl Fn() -> bool,
) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < probation {
        if superseded() {
            return None;
        }
        {
            let s = job.status.lock();
            if let Some(e) = s.root_exception.as_ref().filter(|e| e.timestamp >= since) {
                return Some(e.stacktrace.clone());
            }
            match s.state {
                JobState::Failed => return Some("the job failed".into()),
                state if state.is_terminal() || state == JobState::Cancelling => return None,
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Reads the metadata of the snapshot at `location`.
fn read_snapshot(
    location: &str,
    config: &Config,
) -> ApiResult<weir_checkpoint::metadata::SnapshotMetadata> {
    let unreadable = |why: String| {
        ApiError::conflict(format!(
            "the job's latest checkpoint {location} cannot be read to check the new module \
             against: {why}"
        ))
    };
    let (root, rel) = split_location(location).map_err(|e| unreadable(e.message))?;
    let storage =
        Storage::open(&root, &S3Options::from_config(config)).map_err(|e| unreadable(e.message))?;
    weir_runtime::read_metadata(&storage, &rel).map_err(|f| unreadable(f.message))
}
