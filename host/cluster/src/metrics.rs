//! Prometheus `/metrics`: records in/out and busy/backpressured time per
//! operator, watermark lag, checkpoints, guest memory, restarts, job
//! states and slots — read from the jobs' counters at each scrape.

use crate::session::Session;
use crate::status::{JobState, now_ms};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;

type Labels = Vec<(String, String)>;

struct Family {
    name: &'static str,
    help: &'static str,
    counter: bool,
    samples: Vec<(Labels, f64)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, counter: bool) -> Self {
        Family {
            name,
            help,
            counter,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: Labels, value: f64) {
        self.samples.push((labels, value));
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let kind = if self.counter {
            MetricType::Counter
        } else {
            MetricType::Gauge
        };
        let mut m = encoder.encode_descriptor(self.name, self.help, None, kind)?;
        if let [(labels, v)] = self.samples.as_slice()
            && labels.is_empty()
        {
            return if self.counter {
                ConstCounter::new(*v).encode(m)
            } else {
                ConstGauge::new(*v).encode(m)
            };
        }
        for (labels, v) in &self.samples {
            let f = m.encode_family(labels)?;
            if self.counter {
                ConstCounter::new(*v).encode(f)?;
            } else {
                ConstGauge::new(*v).encode(f)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct SessionCollector(Session, crate::Caller);

/// Longest label value (operator names come from jobs).
const MAX_LABEL: usize = 128;
/// Operators of one job with series of their own; a job's further
/// operators are left out, so that one job cannot blow up a scrape.
const MAX_OPERATOR_SERIES: usize = 200;

fn label(k: &str, v: impl ToString) -> (String, String) {
    let mut v = v.to_string();
    if v.len() > MAX_LABEL {
        let mut cut = MAX_LABEL;
        while !v.is_char_boundary(cut) {
            cut -= 1;
        }
        v.truncate(cut);
    }
    (k.to_owned(), v)
}

impl Collector for SessionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let get = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed) as f64;
        let mut records_in = Family::new(
            "weir_operator_records_in",
            "Records an operator received.",
            true,
        );
        let mut records_out = Family::new(
            "weir_operator_records_out",
            "Records an operator emitted.",
            true,
        );
        let mut busy = Family::new(
            "weir_operator_busy_seconds",
            "Time an operator spent processing.",
            true,
        );
        let mut backpressured = Family::new(
            "weir_operator_backpressured_seconds",
            "Time an operator waited for downstream channels.",
            true,
        );
        let mut late = Family::new(
            "weir_operator_late_records_dropped",
            "Records dropped for arriving after their window closed.",
            true,
        );
        let mut decode = Family::new(
            "weir_operator_decode_failures",
            "Records a job could not decode and skipped.",
            true,
        );
        let mut lag = Family::new(
            "weir_operator_watermark_lag_seconds",
            "Wall-clock time minus the operator's current watermark.",
            false,
        );
        let mut state = Family::new("weir_job_state", "1 for the job's current state.", false);
        let mut restarts = Family::new("weir_job_restarts", "Restarts of the job.", true);
        let mut memory = Family::new(
            "weir_job_guest_memory_peak_bytes",
            "Largest linear memory of any of the job's guest instances.",
            false,
        );
        let mut cp_completed = Family::new(
            "weir_job_checkpoints_completed",
            "Completed checkpoints and savepoints.",
            true,
        );
        let mut cp_failed = Family::new("weir_job_checkpoints_failed", "Failed checkpoints.", true);
        let mut cp_duration = Family::new(
            "weir_job_last_checkpoint_duration_seconds",
            "Duration of the last completed checkpoint.",
            false,
        );
        let mut cp_size = Family::new(
            "weir_job_last_checkpoint_size_bytes",
            "State size of the last completed checkpoint.",
            false,
        );
        let mut cp_uploaded = Family::new(
            "weir_job_last_checkpoint_uploaded_bytes",
            "Bytes the last completed checkpoint uploaded.",
            false,
        );
        let now = now_ms() as f64;
        for job in s.jobs(&self.1) {
            let jl = || vec![label("job_id", job.id), label("job_name", &job.name)];
            let st = job.status.lock();
            let ended = st.state.is_terminal();
            for js in JobState::ALL {
                let mut l = jl();
                l.push(label("state", js.name()));
                state.add(l, f64::from(u8::from(st.state == js)));
            }
            cp_failed.add(jl(), st.failed as f64);
            drop(st);
            let m = &job.metrics;
            restarts.add(jl(), get(&m.restarts));
            memory.add(jl(), get(&m.guest_memory_peak));
            cp_completed.add(jl(), get(&m.checkpoints_completed));
            cp_duration.add(jl(), get(&m.last_checkpoint_duration_ms) / 1000.0);
            cp_size.add(jl(), get(&m.last_checkpoint_size));
            cp_uploaded.add(jl(), get(&m.last_checkpoint_uploaded));
            // Ended jobs keep their job-level series only (and the job
            // store bounds how many ended jobs there are).
            let operators = if ended { 0 } else { MAX_OPERATOR_SERIES };
            for (op, om) in job.graph.operators.iter().zip(&m.operators).take(operators) {
                let ol = || {
                    let mut l = jl();
                    l.push(label("operator_uid", op.uid.as_str()));
                    l.push(label("operator_name", &op.name));
                    l
                };
                records_in.add(ol(), get(&om.records_in));
                records_out.add(ol(), get(&om.records_out));
                busy.add(ol(), get(&om.busy_ns) / 1e9);
                backpressured.add(ol(), get(&om.backpressured_ns) / 1e9);
                late.add(ol(), get(&om.late_records_dropped));
                decode.add(ol(), get(&om.decode_failures));
                let wm = om.watermark.load(Ordering::Relaxed) as i64;
                if wm != i64::MIN && wm != i64::MAX {
                    lag.add(ol(), (now - wm as f64) / 1000.0);
                }
            }
        }
        let mut slots_total = Family::new(
            "weir_cluster_slots_total",
            "Task slots of the session.",
            false,
        );
        slots_total.add(vec![], f64::from(s.slots_total()));
        let mut slots_free = Family::new(
            "weir_cluster_slots_available",
            "Task slots no running job uses.",
            false,
        );
        slots_free.add(
            vec![],
            f64::from(s.slots_total().saturating_sub(s.slots_used())),
        );
        let mut jars = Family::new("weir_cluster_jars", "Uploaded job modules.", false);
        jars.add(vec![], s.jars(&self.1).len() as f64);
        let mut t_busy = Family::new(
            "weir_tenant_busy_seconds",
            "Time a tenant's tasks spent processing, over all its jobs.",
            true,
        );
        let mut t_memory = Family::new(
            "weir_tenant_guest_memory_peak_bytes",
            "Largest linear memory of any of a tenant's guest instances.",
            false,
        );
        let mut t_records = Family::new(
            "weir_tenant_records",
            "Records a tenant's sources read (in) and sinks wrote (out).",
            true,
        );
        let mut t_jobs = Family::new("weir_tenant_jobs_running", "A tenant's live jobs.", false);
        let mut t_slots = Family::new(
            "weir_tenant_slots_used",
            "Task slots a tenant's live jobs use.",
            false,
        );
        for u in s.usage(&self.1) {
            if u.tenant.is_empty() {
                continue;
            }
            let tl = || vec![label("tenant", &u.tenant)];
            t_busy.add(tl(), u.busy_ns as f64 / 1e9);
            t_memory.add(tl(), u.memory_peak as f64);
            let mut l = tl();
            l.push(label("direction", "in"));
            t_records.add(l, u.records_in as f64);
            let mut l = tl();
            l.push(label("direction", "out"));
            t_records.add(l, u.records_out as f64);
            t_jobs.add(tl(), f64::from(u.jobs_running));
            t_slots.add(tl(), f64::from(u.slots_used));
        }
        for f in [
            &records_in,
            &records_out,
            &busy,
            &backpressured,
            &late,
            &decode,
            &lag,
            &state,
            &restarts,
            &memory,
            &cp_completed,
            &cp_failed,
            &cp_duration,
            &cp_size,
            &cp_uploaded,
            &slots_total,
            &slots_free,
            &jars,
            &t_busy,
            &t_memory,
            &t_records,
            &t_jobs,
            &t_slots,
        ] {
            f.encode(&mut encoder)?;
        }
        Ok(())
    }
}

/// The metrics in the OpenMetrics text format.
pub fn render(session: &Session, caller: &crate::Caller) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SessionCollector(session.clone(), caller.clone())));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!("cannot encode metrics: {e}");
    }
    out
}
