//! What the host calls: builds the graph and its function table once per
//! instance, then dispatches calls to the registered functions.
//!
//! Shared by the component exports (`wit.rs`) and native builds (`native.rs`).

use crate::env::{FnEntry, Graph};
use crate::plan::Plan;
use crate::stage::{self, RecordSink, Stage};
use crate::{Args, Env, Error, Jobs};
use std::collections::HashMap;

/// What a call emitted: main output records (and their number) and side
/// output records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Output {
    pub main: Vec<u8>,
    pub records: u32,
    pub side: Vec<u8>,
}

impl Output {
    pub(crate) fn new(main: weir_frame::Writer, side: weir_frame::Writer) -> Self {
        Output {
            records: main.records() as u32,
            main: main.into_bytes(),
            side: side.into_bytes(),
        }
    }

    pub(crate) fn main(main: weir_frame::Writer) -> Self {
        Output::new(main, weir_frame::Writer::new())
    }
}

/// The job of one instance: its plan and function table.
pub struct Runtime {
    fns: Vec<Option<FnEntry>>,
    hooks: Option<crate::env::StateHooks>,
    chains: HashMap<Vec<u32>, Box<dyn RecordSink>>,
    planned: bool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("functions", &self.fns.len())
            .field("planned", &self.planned)
            .finish()
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

/// Names of the jobs in `jobs`.
pub fn entries(jobs: Jobs) -> Vec<String> {
    jobs.0.iter().map(|(n, _)| (*n).to_owned()).collect()
}

impl Runtime {
    /// A runtime without a plan.
    pub fn new() -> Self {
        Runtime {
            fns: Vec::new(),
            hooks: None,
            chains: HashMap::new(),
            planned: false,
        }
    }

    /// Runs the job function of `entry` and keeps its function table.
    pub fn plan(
        &mut self,
        jobs: Jobs,
        entry: Option<&str>,
        args: &[String],
    ) -> Result<Plan, Error> {
        let (name, job) = match entry {
            None => *jobs
                .0
                .first()
                .ok_or_else(|| Error::new("this component exports no jobs"))?,
            Some(e) => *jobs.0.iter().find(|(n, _)| *n == e).ok_or_else(|| {
                Error::new(format!(
                    "no job named '{e}' in this component; its jobs are: {}",
                    entries(jobs).join(", ")
                ))
            })?,
        };
        let args = Args::parse(args)?;
        let mut env = Env::new(name);
        job(&mut env, &args)?;
        let g = std::rc::Rc::try_unwrap(env.g)
            .map_err(|_| {
                Error::new(
                    "the job function kept a stream after returning; streams must not \
                     outlive the job function",
                )
            })?
            .into_inner();
        let Graph {
            plan,
            fns,
            hooks,
            error,
            ..
        } = g;
        if let Some(e) = error {
            return Err(e);
        }
        if plan.operators.is_empty() {
            return Err(Error::new(
                "the job defines no operators; add a source and a sink",
            ));
        }
        self.fns = fns;
        self.hooks = hooks;
        self.chains.clear();
        self.planned = true;
        Ok(plan)
    }

    fn entry(&mut self, op: u32) -> Result<&mut FnEntry, Error> {
        if !self.planned {
            return Err(Error::new(
                "internal error: the host called a function before plan",
            ));
        }
        self.fns
            .get_mut(op as usize)
            .and_then(Option::as_mut)
            .ok_or_else(|| Error::new(format!("internal error: operator {op} has no function")))
    }

    /// Runs fused stages over a batch.
    pub fn run_stages(&mut self, stages: &[u32], batch: &[u8]) -> Result<Output, Error> {
        if !self.chains.contains_key(stages) {
            let head = self.link(stages)?;
            self.chains.insert(stages.to_vec(), head);
        }
        let head = self.chains.get_mut(stages).expect("inserted above");
        stage::run_chain(head.as_mut(), batch)
    }

    fn link(&mut self, stages: &[u32]) -> Result<Box<dyn RecordSink>, Error> {
        for &s in stages {
            self.entry(s)?;
        }
        let mut refs: Vec<&mut dyn Stage> = Vec::with_capacity(stages.len());
        // Collect distinct mutable references in chain order.
        let mut slots: Vec<Option<&mut Option<FnEntry>>> = self.fns.iter_mut().map(Some).collect();
        for &s in stages {
            let slot = slots[s as usize].take().ok_or_else(|| {
                Error::new(format!(
                    "internal error: operator {s} appears twice in a chain"
                ))
            })?;
            match slot.as_mut() {
                Some(FnEntry::Stage(st)) => refs.push(st.as_mut()),
                _ => {
                    return Err(Error::new(format!(
                        "internal error: operator {s} is not a record stage"
                    )));
                }
            }
        }
        stage::link(&mut refs)
    }

    fn aggregate_op(&mut self, op: u32) -> Result<&mut dyn crate::aggregate::AggregateOp, Error> {
        match self.entry(op)? {
            FnEntry::Aggregate(a) => Ok(a.as_mut()),
            _ => Err(Error::new(format!(
                "internal error: operator {op} is not an aggregation"
            ))),
        }
    }

    /// Folds records into keyed accumulators.
    pub fn aggregate(
        &mut self,
        op: u32,
        batch: &[u8],
        slots: &[u32],
        emit: bool,
    ) -> Result<Output, Error> {
        self.aggregate_op(op)?.fold(batch, slots, emit)
    }

    /// Emits results of listed accumulators.
    pub fn fire(
        &mut self,
        op: u32,
        batch: &[u8],
        slots: &[u32],
        purge: bool,
    ) -> Result<Output, Error> {
        self.aggregate_op(op)?.fire(batch, slots, purge)
    }

    /// Merges window accumulators.
    pub fn merge_windows(&mut self, op: u32, batch: &[u8], slots: &[u32]) -> Result<(), Error> {
        self.aggregate_op(op)?.merge_windows(batch, slots)
    }

    /// Writes cached state of `op` back to the host.
    pub fn flush(&mut self, op: u32, forget: bool) -> Result<(), Error> {
        match self.entry(op)? {
            FnEntry::Aggregate(a) => a.flush(forget),
            FnEntry::Process(p) => {
                p.flush(forget);
                Ok(())
            }
            FnEntry::Stage(_) | FnEntry::ProcessWindow(_) => Ok(()),
        }
    }

    /// Runs a process-window function over fired windows.
    pub fn process_window(&mut self, op: u32, batch: &[u8]) -> Result<Output, Error> {
        match self.entry(op)? {
            FnEntry::ProcessWindow(p) => p.process_window(batch),
            _ => Err(Error::new(format!(
                "internal error: operator {op} is not a process-window function"
            ))),
        }
    }

    fn process_op(&mut self, op: u32) -> Result<&mut dyn crate::process::ProcessOp, Error> {
        match self.entry(op)? {
            FnEntry::Process(p) => Ok(p.as_mut()),
            _ => Err(Error::new(format!(
                "internal error: operator {op} is not a keyed process function"
            ))),
        }
    }

    /// Runs a keyed process function over records.
    pub fn process(
        &mut self,
        op: u32,
        batch: &[u8],
        watermark: i64,
        now: i64,
    ) -> Result<Output, Error> {
        self.process_op(op)?.process(batch, watermark, now)
    }

    /// Fires timers of a keyed process function.
    pub fn on_timer(
        &mut self,
        op: u32,
        domain: crate::TimeDomain,
        timers: &[u8],
        watermark: i64,
        now: i64,
    ) -> Result<Output, Error> {
        self.process_op(op)?
            .on_timer(domain, timers, watermark, now)
    }

    /// Runs the save hook.
    pub fn save(&mut self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.hooks.as_mut().and_then(|h| (h.save)()))
    }

    /// Runs the restore hook.
    pub fn restore(&mut self, from_version: &str, state: &[u8]) -> Result<(), Error> {
        match self.hooks.as_mut() {
            Some(h) => (h.restore)(from_version, state),
            None => Err(Error::new(
                "this job has no restore hook, so it cannot take over saved state",
            )),
        }
    }
}
