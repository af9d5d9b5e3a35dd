//! The JSON documents of the REST API, in Flink's shapes.

use crate::session::{JobEntry, Session};
use crate::status::{CheckpointEntry, JobState, Operation, now_ms};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use weir_runtime::OperatorMetrics;

fn get(v: &std::sync::atomic::AtomicU64) -> u64 {
    v.load(Ordering::Relaxed)
}

/// Counters of one vertex (a chain of operators run as one task).
pub struct VertexMetrics {
    pub read_records: u64,
    pub write_records: u64,
    pub busy_ms: u64,
    pub backpressured_ms: u64,
}

pub fn vertex_metrics(job: &JobEntry, chain: &weir_runtime::Chain) -> VertexMetrics {
    let op = |i: u32| -> &OperatorMetrics { &job.metrics.operators[i as usize] };
    let head = *chain.ops.first().expect("a chain has operators");
    let tail = *chain.ops.last().expect("a chain has operators");
    let busy: u64 = chain.ops.iter().map(|&i| get(&op(i).busy_ns)).sum();
    let bp: u64 = chain
        .ops
        .iter()
        .map(|&i| get(&op(i).backpressured_ns))
        .sum();
    let is_source = job.exec.sources.contains(&chain.id);
    VertexMetrics {
        read_records: if is_source {
            0
        } else {
            get(&op(head).records_in)
        },
        write_records: get(&op(tail).records_out),
        busy_ms: busy / 1_000_000,
        backpressured_ms: bp / 1_000_000,
    }
}

fn duration(start: u64, end: Option<u64>) -> u64 {
    end.unwrap_or_else(now_ms).saturating_sub(start)
}

fn task_counts(job: &JobEntry, state: JobState) -> Value {
    let total: u32 = job.exec.chains.iter().map(|c| c.parallelism).sum();
    let mut counts = serde_json::Map::new();
    for s in [
        "CREATED",
        "SCHEDULED",
        "DEPLOYING",
        "INITIALIZING",
        "RUNNING",
        "FINISHED",
        "CANCELING",
        "CANCELED",
        "FAILED",
        "RECONCILING",
    ] {
        counts.insert(s.to_lowercase(), json!(0));
    }
    let key = match state {
        JobState::Initializing | JobState::Restarting => "initializing",
        JobState::Running => "running",
        JobState::Cancelling => "canceling",
        JobState::Canceled => "canceled",
        JobState::Finished => "finished",
        JobState::Failed => "failed",
    };
    counts.insert(key.into(), json!(total));
    counts.insert("total".into(), json!(total));
    Value::Object(counts)
}

/// An entry of `GET /jobs/overview`.
pub fn job_overview(job: &JobEntry) -> Value {
    let s = job.status.lock();
    let last = s.timestamps.values().max().copied().unwrap_or(s.start_ms);
    json!({
        "jid": job.id.to_string(),
        "name": job.name,
        "state": s.state.name(),
        "start-time": s.start_ms,
        "end-time": s.end_ms.map(|e| e as i64).unwrap_or(-1),
        "duration": duration(s.start_ms, s.end_ms),
        "last-modification": last,
        "tasks": task_counts(job, s.state),
        "pending-operators": 0,
        "jobType": "STREAMING",
    })
}

/// `GET /jobs/:id`.
pub fn job_details(job: &JobEntry) -> Value {
    let s = job.status.lock();
    let state = s.state;
    let vertex_status = match state {
        JobState::Initializing | JobState::Restarting => "INITIALIZING",
        JobState::Cancelling => "CANCELING",
        other => other.name(),
    };
    let vertices: Vec<Value> = job
        .exec
        .chains
        .iter()
        .map(|c| {
            let m = vertex_metrics(job, c);
            let elapsed = duration(s.start_ms, s.end_ms).max(1);
            let per_task =
                |ms: u64| (ms * 1000 / elapsed / u64::from(c.parallelism.max(1))).min(1000);
            json!({
                "id": vertex_id(job, c.id),
                "name": c.name,
                "maxParallelism": job.graph.max_parallelism,
                "parallelism": c.parallelism,
                "status": vertex_status,
                "start-time": s.start_ms,
                "end-time": s.end_ms.map(|e| e as i64).unwrap_or(-1),
                "duration": duration(s.start_ms, s.end_ms),
                "tasks": { vertex_status: c.parallelism },
                "operators": c.ops.iter().map(|&i| {
                    let o = &job.graph.operators[i as usize];
                    let om = &job.metrics.operators[i as usize];
                    let wm = get(&om.watermark) as i64;
                    json!({
                        "uid": o.uid.as_str(),
                        "name": o.name,
                        "records-in": get(&om.records_in),
                        "records-out": get(&om.records_out),
                        "watermark": (wm != i64::MIN).then_some(wm),
                    })
                }).collect::<Vec<_>>(),
                "metrics": {
                    "read-bytes": 0,
                    "read-bytes-complete": true,
                    "write-bytes": 0,
                    "write-bytes-complete": true,
                    "read-records": m.read_records,
                    "read-records-complete": true,
                    "write-records": m.write_records,
                    "write-records-complete": true,
                    "accumulated-backpressured-time": m.backpressured_ms,
                    "accumulated-busy-time": m.busy_ms,
                    "busyTimeMsPerSecond": per_task(m.busy_ms),
                    "backPressuredTimeMsPerSecond": per_task(m.backpressured_ms),
                },
            })
        })
        .collect();
    let timestamps: serde_json::Map<String, Value> = JobState::ALL
        .iter()
        .map(|st| {
            (
                st.name().to_owned(),
                json!(s.timestamps.get(st).copied().unwrap_or(0)),
            )
        })
        .collect();
    let record = job.record();
    json!({
        "jid": job.id.to_string(),
        "name": job.name,
        "isStoppable": true,
        "state": state.name(),
        "job-type": "STREAMING",
        "start-time": s.start_ms,
        "end-time": s.end_ms.map(|e| e as i64).unwrap_or(-1),
        "duration": duration(s.start_ms, s.end_ms),
        "maxParallelism": job.graph.max_parallelism,
        "now": now_ms(),
        "timestamps": timestamps,
        "vertices": vertices,
        "status-counts": task_counts(job, state),
        "plan": plan(job),
        "module": {
            "hash": record.module_hash,
            "jar-id": record.jar_id,
            "entry": record.entry,
            "args": record.args,
        },
        "guest-memory-peak": get(&job.metrics.guest_memory_peak),
        "restarts": get(&job.metrics.restarts),
        "stopped-with-savepoint": s.stopped_at,
    })
}

pub(crate) fn vertex_id(job: &JobEntry, chain: usize) -> String {
    // Stable per job and chain, like Flink's vertex ids (32 hex digits).
    let head = job.exec.chains[chain].ops[0];
    format!("{:0>32}", format!("{:x}{:04x}", chain, head))
}

/// The job graph of vertices and their inputs (Flink's `plan`).
pub fn plan(job: &JobEntry) -> Value {
    let nodes: Vec<Value> = job
        .exec
        .chains
        .iter()
        .map(|c| {
            let inputs: Vec<Value> = job
                .exec
                .edges
                .iter()
                .filter(|e| e.to_chain == c.id)
                .enumerate()
                .map(|(num, e)| {
                    json!({
                        "num": num,
                        "id": vertex_id(job, e.from_chain),
                        "ship_strategy": format!("{:?}", e.partitioning).to_uppercase(),
                        "exchange": "pipelined_bounded",
                    })
                })
                .collect();
            json!({
                "id": vertex_id(job, c.id),
                "parallelism": c.parallelism,
                "operator": "",
                "operator_strategy": "",
                "description": c.name,
                "inputs": inputs,
            })
        })
        .collect();
    json!({
        "jid": job.id.to_string(),
        "name": job.name,
        "type": "STREAMING",
        "nodes": nodes,
    })
}

fn checkpoint_json(c: &CheckpointEntry) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        let class = match c.status {
            "COMPLETED" => "completed",
            "FAILED" => "failed",
            _ => "in_progress",
        };
        m.insert("@class".into(), json!(class));
    }
    v
}

fn summary(values: impl Iterator<Item = u64> + Clone) -> Value {
    let n = values.clone().count() as u64;
    if n == 0 {
        return json!({"min": 0, "max": 0, "avg": 0});
    }
    json!({
        "min": values.clone().min().unwrap_or(0),
        "max": values.clone().max().unwrap_or(0),
        "avg": values.sum::<u64>() / n,
    })
}

/// `GET /jobs/:id/checkpoints`.
pub fn checkpoints(job: &JobEntry) -> Value {
    let s = job.status.lock();
    let completed = s.checkpoints.iter().filter(|c| c.status == "COMPLETED");
    json!({
        "counts": {
            "restored": u64::from(s.restored.is_some()),
            "total": s.completed + s.failed + s.in_progress() as u64,
            "in_progress": s.in_progress(),
            "completed": s.completed,
            "failed": s.failed,
        },
        "summary": {
            "state_size": summary(completed.clone().map(|c| c.state_size)),
            "checkpointed_size": summary(completed.clone().map(|c| c.checkpointed_size)),
            "end_to_end_duration": summary(completed.map(|c| c.end_to_end_duration)),
        },
        "latest": {
            "completed": s.latest_completed.as_ref().map(checkpoint_json),
            "savepoint": s.latest_savepoint.as_ref().map(checkpoint_json),
            "failed": s.latest_failed.as_ref().map(checkpoint_json),
            "restored": s.restored.as_ref().map(|(t, p)| json!({
                "restore_timestamp": t,
                "external_path": p,
                "is_savepoint": !p.contains("/chk-"),
            })),
        },
        "history": s.checkpoints.iter().map(checkpoint_json).collect::<Vec<_>>(),
    })
}

/// `GET /jobs/:id/checkpoints/details/:checkpointid`.
pub fn checkpoint_details(job: &JobEntry, id: u64) -> Option<Value> {
    let s = job.status.lock();
    let c = s.checkpoints.iter().find(|c| c.id == id)?;
    let mut v = checkpoint_json(c);
    if let Value::Object(m) = &mut v {
        let tasks: serde_json::Map<String, Value> = job
            .exec
            .chains
            .iter()
            .map(|ch| {
                (
                    vertex_id(job, ch.id),
                    json!({
                        "name": ch.name,
                        "num_subtasks": ch.parallelism,
                        "num_acknowledged_subtasks":
                            if c.status == "COMPLETED" { ch.parallelism } else { 0 },
                    }),
                )
            })
            .collect();
        m.insert("tasks".into(), Value::Object(tasks));
    }
    Some(v)
}

/// `GET /jobs/:id/checkpoints/config`.
pub fn checkpoint_config(job: &JobEntry) -> Value {
    let c = &job.config;
    json!({
        "mode": match c.checkpointing_mode {
            weir_core::config::CheckpointingMode::ExactlyOnce => "exactly_once",
            weir_core::config::CheckpointingMode::AtLeastOnce => "at_least_once",
        },
        "interval": c.checkpoint_interval.map(|d| d.as_millis() as i64).unwrap_or(i64::MAX),
        "timeout": c.checkpoint_timeout.as_millis() as u64,
        "min_pause": c.checkpoint_min_pause.as_millis() as u64,
        "max_concurrent": c.max_concurrent_checkpoints,
        "tolerable_failed_checkpoints": c.tolerable_failed_checkpoints,
        "externalization": {
            "enabled": true,
            "delete_on_cancellation": c.externalized_retention
                != weir_core::config::ExternalizedRetention::RetainOnCancellation,
        },
        "checkpoint_storage": c.checkpoints_dir,
        "state_backend": "EmbeddedRocksDBStateBackend",
        "unaligned_checkpoints": c.unaligned,
        "aligned_checkpoint_timeout": c.aligned_checkpoint_timeout.as_millis() as u64,
        "changelog_storage": "",
    })
}

fn exception_json(e: &crate::status::ExceptionEntry) -> Value {
    let mut v = json!({
        "exceptionName": e.name,
        "stacktrace": e.stacktrace,
        "timestamp": e.timestamp,
        "failureLabels": {"weir.domain": e.name},
        "concurrentExceptions": [],
    });
    if let Some(task) = &e.task {
        v["taskName"] = json!(task);
        v["endpoint"] = json!(TASK_MANAGER);
        v["taskManagerId"] = json!(TASK_MANAGER);
    }
    v
}

/// `GET /jobs/:id/exceptions` (`maxExceptions` entries, newest first).
pub fn exceptions(job: &JobEntry, max: usize) -> Value {
    let s = job.status.lock();
    let root = s.root_exception.as_ref();
    let entries: Vec<Value> = s.exceptions.iter().take(max).map(exception_json).collect();
    json!({
        "root-exception": root.map(|e| format!("{}: {}", e.name, e.stacktrace)),
        "timestamp": root.map(|e| e.timestamp),
        "all-exceptions": s.exceptions.iter().take(max).map(|e| json!({
            "exception": format!("{}: {}", e.name, e.stacktrace),
            "task": e.task,
            "location": TASK_MANAGER,
            "timestamp": e.timestamp,
        })).collect::<Vec<_>>(),
        "truncated": s.exceptions.len() > max,
        "exceptionHistory": {
            "entries": entries,
            "truncated": s.exceptions.len() > max,
        },
    })
}

/// The session's own task slots, as Flink's one task manager.
pub const TASK_MANAGER: &str = "local";

/// `GET /jobs/:id/config`.
pub fn job_config(job: &JobEntry) -> Value {
    let shown = job.config.to_display_map();
    let user: serde_json::Map<String, Value> = job
        .record()
        .config
        .keys()
        .filter_map(|k| shown.get(k).map(|v| (k.clone(), json!(v))))
        .collect();
    let c = &job.config;
    let restart = match c.restart_strategy {
        weir_core::config::RestartStrategyKind::None => "No restart".to_owned(),
        weir_core::config::RestartStrategyKind::FixedDelay => format!(
            "Restart with fixed delay ({:?}). #{} restart attempts.",
            c.restart_delay, c.restart_attempts
        ),
        weir_core::config::RestartStrategyKind::ExponentialDelay => format!(
            "Restart with exponential delay: initial backoff {:?}, max backoff {:?}, \
             multiplier {}",
            c.restart_initial_backoff, c.restart_max_backoff, c.restart_backoff_multiplier
        ),
    };
    json!({
        "jid": job.id.to_string(),
        "name": job.name,
        "execution-config": {
            "restart-strategy": restart,
            "job-parallelism": c.parallelism,
            "object-reuse-mode": false,
            "user-config": user,
        },
    })
}

/// The chain shown as vertex `vid`.
pub fn find_vertex<'a>(job: &'a JobEntry, vid: &str) -> Option<&'a weir_runtime::Chain> {
    job.exec.chains.iter().find(|c| vertex_id(job, c.id) == vid)
}

/// Per-subtask ratios of busy and backpressured time of a vertex since
/// the job started (0..1).
fn ratios(job: &JobEntry, c: &weir_runtime::Chain) -> (f64, f64) {
    let s = job.status.lock();
    let elapsed = duration(s.start_ms, s.end_ms).max(1) as f64;
    drop(s);
    let m = vertex_metrics(job, c);
    let per = |ms: u64| (ms as f64 / elapsed / f64::from(c.parallelism.max(1))).min(1.0);
    (per(m.busy_ms), per(m.backpressured_ms))
}

/// `GET /jobs/:id/vertices/:vid`: per-subtask I/O counters are not kept
/// (the vertex's are, under `metrics`), so theirs say `-complete: false`.
pub fn vertex_details(job: &JobEntry, c: &weir_runtime::Chain) -> Value {
    let s = job.status.lock();
    let status = match s.state {
        JobState::Initializing | JobState::Restarting => "INITIALIZING",
        JobState::Cancelling => "CANCELING",
        other => other.name(),
    };
    let (start, end) = (s.start_ms, s.end_ms);
    let running_since = s
        .timestamps
        .get(&JobState::Running)
        .copied()
        .unwrap_or(start);
    drop(s);
    let m = vertex_metrics(job, c);
    let attempt = get(&job.metrics.restarts);
    let subtasks: Vec<Value> = (0..c.parallelism)
        .map(|i| {
            json!({
                "subtask": i,
                "status": status,
                "attempt": attempt,
                "endpoint": TASK_MANAGER,
                "start-time": start,
                "start_time": start,
                "end-time": end.map(|e| e as i64).unwrap_or(-1),
                "duration": duration(start, end),
                "metrics": {
                    "read-bytes": 0, "read-bytes-complete": false,
                    "write-bytes": 0, "write-bytes-complete": false,
                    "read-records": 0, "read-records-complete": false,
                    "write-records": 0, "write-records-complete": false,
                    "accumulated-backpressured-time": 0,
                    "accumulated-idle-time": 0,
                    "accumulated-busy-time": 0.0,
                },
                "taskmanager-id": TASK_MANAGER,
                "status-duration": {
                    "CREATED": 0, "SCHEDULED": 0, "DEPLOYING": 0,
                    "INITIALIZING": running_since.saturating_sub(start),
                    "RUNNING": end.unwrap_or_else(now_ms).saturating_sub(running_since),
                },
            })
        })
        .collect();
    json!({
        "id": vertex_id(job, c.id),
        "name": c.name,
        "parallelism": c.parallelism,
        "maxParallelism": job.graph.max_parallelism,
        "now": now_ms(),
        "subtasks": subtasks,
        "metrics": {
            "read-records": m.read_records,
            "write-records": m.write_records,
            "accumulated-busy-time": m.busy_ms,
            "accumulated-backpressured-time": m.backpressured_ms,
        },
    })
}

/// The metrics of a vertex, by name (Flink's `?get=` routes).
pub fn vertex_metric_values(
    job: &JobEntry,
    c: &weir_runtime::Chain,
) -> Vec<(&'static str, String)> {
    let m = vertex_metrics(job, c);
    let (busy, bp) = ratios(job, c);
    let head = &job.metrics.operators[c.ops[0] as usize];
    let wm = get(&head.watermark) as i64;
    vec![
        ("numRecordsIn", m.read_records.to_string()),
        ("numRecordsOut", m.write_records.to_string()),
        ("accumulatedBusyTimeMs", m.busy_ms.to_string()),
        (
            "accumulatedBackPressuredTimeMs",
            m.backpressured_ms.to_string(),
        ),
        ("busyTimeMsPerSecond", format!("{:.0}", busy * 1000.0)),
        (
            "backPressuredTimeMsPerSecond",
            format!("{:.0}", bp * 1000.0),
        ),
        ("currentInputWatermark", wm.to_string()),
    ]
}

/// `GET /jobs/:id/vertices/:vid/watermarks`.
pub fn vertex_watermarks(job: &JobEntry, c: &weir_runtime::Chain) -> Value {
    let head = &job.metrics.operators[c.ops[0] as usize];
    let wm = get(&head.watermark) as i64;
    json!([{"id": "currentInputWatermark", "value": wm.to_string()}])
}

fn level(ratio: f64) -> &'static str {
    if ratio <= 0.1 {
        "ok"
    } else if ratio <= 0.5 {
        "low"
    } else {
        "high"
    }
}

/// `GET /jobs/:id/vertices/:vid/backpressure`: the share of time its
/// subtasks waited for downstream channels since the job started.
pub fn vertex_backpressure(job: &JobEntry, c: &weir_runtime::Chain) -> Value {
    let (busy, bp) = ratios(job, c);
    let idle = (1.0 - busy - bp).max(0.0);
    let l = level(bp);
    json!({
        "status": "ok",
        "backpressureLevel": l,
        "backpressure-level": l,
        "end-timestamp": now_ms(),
        "subtasks": (0..c.parallelism).map(|i| json!({
            "subtask": i,
            "backpressureLevel": l,
            "backpressure-level": l,
            "ratio": bp,
            "idleRatio": idle,
            "busyRatio": busy,
        })).collect::<Vec<_>>(),
    })
}

/// The job's metrics, by name (`GET /jobs/:id/metrics`).
pub fn job_metric_values(job: &JobEntry) -> Vec<(&'static str, String)> {
    let m = &job.metrics;
    let s = job.status.lock();
    let up = match s.state {
        JobState::Running => now_ms().saturating_sub(
            s.timestamps
                .get(&JobState::Running)
                .copied()
                .unwrap_or(s.start_ms),
        ),
        _ => 0,
    };
    vec![
        ("uptime", up.to_string()),
        ("numRestarts", get(&m.restarts).to_string()),
        ("numberOfCompletedCheckpoints", s.completed.to_string()),
        ("numberOfFailedCheckpoints", s.failed.to_string()),
        (
            "lastCheckpointDuration",
            get(&m.last_checkpoint_duration_ms).to_string(),
        ),
        (
            "lastCheckpointSize",
            get(&m.last_checkpoint_size).to_string(),
        ),
        (
            "lastCheckpointFullSize",
            get(&m.last_checkpoint_size).to_string(),
        ),
        ("guestMemoryPeak", get(&m.guest_memory_peak).to_string()),
    ]
}

/// `GET /jobs/:id/execution-result`: IN_PROGRESS until the job ends.
pub fn execution_result(job: &JobEntry) -> Value {
    let s = job.status.lock();
    if !s.state.is_terminal() {
        return json!({"status": {"id": "IN_PROGRESS"}});
    }
    let status = match s.state {
        JobState::Finished => "SUCCEEDED",
        JobState::Canceled => "CANCELED",
        _ => "FAILED",
    };
    let mut result = json!({
        "id": job.id.to_string(),
        "application-status": status,
        "accumulator-results": {},
        "net-runtime": duration(s.start_ms, s.end_ms),
    });
    if let (JobState::Failed, Some(e)) = (s.state, s.root_exception.as_ref()) {
        result["failure-cause"] = crate::java::failure_cause(&e.name, &e.stacktrace);
    }
    json!({"status": {"id": "COMPLETED"}, "job-execution-result": result})
}

/// `GET /jobs/:id/accumulators`: jobs keep no accumulators.
pub fn accumulators() -> Value {
    json!({
        "job-accumulators": [],
        "user-task-accumulators": [],
        "serialized-user-task-accumulators": {},
    })
}

/// Aggregates of named values over several sources (Flink's
/// `/jobs/metrics?get=&agg=`): `min`, `max`, `avg`, `sum`.
pub fn aggregated_metrics(
    rows: &[Vec<(&'static str, String)>],
    get: Option<&str>,
    agg: Option<&str>,
) -> Value {
    let names: Vec<&'static str> = rows
        .first()
        .map(|r| r.iter().map(|(k, _)| *k).collect())
        .unwrap_or_default();
    let Some(get) = get else {
        return Value::Array(names.iter().map(|k| json!({"id": k})).collect());
    };
    let wanted: Vec<&str> = get.split(',').map(str::trim).collect();
    let aggs: Vec<&str> = agg
        .map(|a| a.split(',').map(str::trim).collect())
        .unwrap_or_else(|| vec!["min", "max", "avg", "sum"]);
    Value::Array(
        names
            .iter()
            .filter(|k| wanted.contains(k))
            .map(|k| {
                let values: Vec<f64> = rows
                    .iter()
                    .filter_map(|r| r.iter().find(|(n, _)| n == k))
                    .filter_map(|(_, v)| v.parse::<f64>().ok())
                    .collect();
                let mut o = serde_json::Map::new();
                o.insert("id".into(), json!(k));
                if !values.is_empty() {
                    let sum: f64 = values.iter().sum();
                    for a in &aggs {
                        let v = match *a {
                            "min" => values.iter().copied().fold(f64::INFINITY, f64::min),
                            "max" => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                            "avg" => sum / values.len() as f64,
                            "sum" => sum,
                            _ => continue,
                        };
                        o.insert((*a).into(), json!(v));
                    }
                }
                Value::Object(o)
            })
            .collect(),
    )
}

/// The session's metrics, by name (`GET /jobmanager/metrics`).
pub fn jobmanager_metric_values(
    session: &Session,
    caller: &crate::Caller,
) -> Vec<(&'static str, String)> {
    let o = overview(session, caller);
    let n = |k: &str| o[k].as_u64().unwrap_or(0).to_string();
    vec![
        ("numRunningJobs", n("jobs-running")),
        ("numRegisteredTaskManagers", n("taskmanagers")),
        ("taskSlotsTotal", n("slots-total")),
        ("taskSlotsAvailable", n("slots-available")),
        (
            "uptime",
            now_ms().saturating_sub(session.started_ms()).to_string(),
        ),
    ]
}

/// Answers a metrics route: the names without `get`, else the values of
/// the names asked for (unknown ones left out), as Flink does.
pub fn metrics_answer(values: &[(&'static str, String)], get: Option<&str>) -> Value {
    match get {
        None => Value::Array(values.iter().map(|(k, _)| json!({"id": k})).collect()),
        Some(names) => {
            let wanted: Vec<&str> = names.split(',').map(str::trim).collect();
            Value::Array(
                values
                    .iter()
                    .filter(|(k, _)| wanted.contains(k))
                    .map(|(k, v)| json!({"id": k, "value": v}))
                    .collect(),
            )
        }
    }
}

/// Total and available memory of the machine, from /proc/meminfo.
fn machine_memory() -> (i64, i64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<i64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
            .unwrap_or(-1)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// `GET /taskmanagers`: the session's own slots (when it has some, or no
/// task manager can join), and every task manager that joined.
pub fn taskmanagers(session: &Session, caller: &crate::Caller) -> Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (physical, available) = machine_memory();
    let resource = |slots: u64| {
        json!({
            "cpuCores": slots as f64,
            "taskHeapMemory": 0,
            "taskOffHeapMemory": 0,
            "managedMemory": 0,
            "networkMemory": 0,
            "extendedResources": {},
        })
    };
    let entry = |id: &str, path: &str, total: u64, free: u64, heartbeat: u64, hw: Value| {
        json!({
            "id": id,
            "path": path,
            "dataPort": -1,
            "jmxPort": -1,
            "timeSinceLastHeartbeat": heartbeat,
            "slotsNumber": total,
            "freeSlots": free,
            "assignedTasks": total - free,
            "totalResource": resource(total),
            "freeResource": resource(free),
            "hardware": hw,
            "memoryConfiguration": {
                "frameworkHeap": 0, "taskHeap": 0, "frameworkOffHeap": 0, "taskOffHeap": 0,
                "networkMemory": 0, "managedMemory": 0, "jvmMetaspace": 0, "jvmOverhead": 0,
                "totalFlinkMemory": 0, "totalProcessMemory": 0,
            },
        })
    };
    let here = json!({
        "cpuCores": cores,
        "physicalMemory": physical,
        "freeMemory": available,
        "managedMemory": 0,
    });
    if session.cluster_address().is_none() {
        let o = overview(session, caller);
        let total = o["slots-total"].as_u64().unwrap_or(0);
        let free = o["slots-available"].as_u64().unwrap_or(0);
        return json!({
            "taskmanagers": [entry(TASK_MANAGER, TASK_MANAGER, total, free, now_ms(), here)],
        });
    }
    // Where task managers are is the operator's business, not a tenant's.
    let shown = |address: &str, id: &str| {
        if caller.tenant().is_some() {
            id.to_owned()
        } else {
            address.to_owned()
        }
    };
    let workers = session.workers();
    let mut list = Vec::new();
    let local = u64::from(session.config().task_slots);
    if local > 0 {
        let workers_free: u64 = workers.iter().map(|w| u64::from(w.free)).sum();
        let free = session.slots_free().saturating_sub(workers_free).min(local);
        list.push(entry(TASK_MANAGER, TASK_MANAGER, local, free, 0, here));
    }
    for w in &workers {
        list.push(entry(
            &w.id,
            &shown(&w.address, &w.id),
            w.slots.into(),
            w.free.into(),
            w.since_heartbeat.as_millis() as u64,
            json!({
                "cpuCores": w.cores,
                "physicalMemory": w.memory,
                "freeMemory": -1,
                "managedMemory": 0,
            }),
        ));
    }
    json!({ "taskmanagers": list })
}

fn in_progress() -> Value {
    json!({"status": {"id": "IN_PROGRESS"}, "operation": null})
}

/// A completed operation that failed, with the cause under `key`.
fn failed(key: &str, class: &str, message: &str) -> Value {
    json!({
        "status": {"id": "COMPLETED"},
        "operation": {key: crate::java::failure_cause(class, message)},
    })
}

/// `GET /jobs/:id/savepoints/:triggerid`.
pub fn operation(job: &JobEntry, trigger: &str) -> Option<Value> {
    let s = job.status.lock();
    let (key, class) = ("failure-cause", "weir.SavepointFailure");
    Some(match s.operations.get(trigger)? {
        Operation::InProgress => in_progress(),
        Operation::Completed(location) => json!({
            "status": {"id": "COMPLETED"},
            "operation": {"location": location},
        }),
        Operation::Failed(m) => failed(key, class, m),
        Operation::Checkpointed(_) => failed(key, class, "the operation is not a savepoint"),
    })
}

/// `GET /jobs/:id/checkpoints/:triggerid`.
pub fn checkpoint_operation(job: &JobEntry, trigger: &str) -> Option<Value> {
    let s = job.status.lock();
    let (key, class) = ("failureCause", "weir.CheckpointFailure");
    Some(match s.checkpoint_operations.get(trigger)? {
        Operation::InProgress => in_progress(),
        Operation::Checkpointed(id) => json!({
            "status": {"id": "COMPLETED"},
            "operation": {"checkpointId": id},
        }),
        Operation::Failed(m) => failed(key, class, m),
        Operation::Completed(_) => failed(key, class, "the operation is not a checkpoint"),
    })
}

/// `GET /savepoint-disposal/:triggerid`.
pub fn disposal(op: &Operation) -> Value {
    match op {
        Operation::InProgress => in_progress(),
        Operation::Failed(m) => failed("failure-cause", "weir.DisposalFailure", m),
        Operation::Completed(_) | Operation::Checkpointed(_) => {
            json!({"status": {"id": "COMPLETED"}, "operation": {}})
        }
    }
}

/// `GET /overview`.
pub fn overview(session: &Session, caller: &crate::Caller) -> Value {
    let jobs = session.jobs(caller);
    let count = |st: JobState| jobs.iter().filter(|j| j.state() == st).count();
    let (total, used) = match caller.tenant() {
        // A tenant sees its own slots: its quota (or the session's) and
        // what its jobs use.
        Some(t) => (
            t.quota.slots.unwrap_or(session.slots_total()),
            jobs.iter()
                .filter(|j| !j.state().is_terminal())
                .map(|j| j.slots)
                .sum(),
        ),
        None => (session.slots_total(), session.slots_used()),
    };
    let taskmanagers = match session.cluster_address() {
        None => 1,
        Some(_) => session.workers().len() + usize::from(session.config().task_slots > 0),
    };
    json!({
        "taskmanagers": taskmanagers,
        "slots-total": total,
        "slots-available": total.saturating_sub(used),
        "jobs-running": jobs.iter().filter(|j| !j.state().is_terminal()).count(),
        "jobs-finished": count(JobState::Finished),
        "jobs-cancelled": count(JobState::Canceled),
        "jobs-failed": count(JobState::Failed),
        "flink-version": concat!("weir ", env!("CARGO_PKG_VERSION")),
        "flink-commit": "",
        "weir-version": env!("CARGO_PKG_VERSION"),
        "jars": session.jars(caller).len(),
        "started": session.started_ms(),
    })
}
