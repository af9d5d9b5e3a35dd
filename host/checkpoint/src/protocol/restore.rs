//! Matching a snapshot's state to a (possibly new) job: what is restored,
//! migrated, skipped or rejected. Pure: used both to restore and by the
//! pre-flight check `weir savepoint check`.
//!
//! - Keyed state belongs to (operator uid, state name) and is split by key
//!   group, so it restores at any parallelism with the same max parallelism.
//! - Operator state (source positions, sink transactions) belongs to a uid.
//! - A memory image belongs to a task (its chain of uids) and restores only
//!   into the byte-identical module at the same parallelism; otherwise the
//!   state the job saved with its `save` hook migrates through `restore`;
//!   otherwise it is non-restored state.
//! - Non-restored state is an error naming its operators, unless allowed.

use crate::metadata::{
    FileRef, KeyedStateHandle, MemoryImageHandle, SavedStateHandle, SnapshotMetadata,
};
use std::collections::BTreeMap;

/// An operator of the job being started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetOperator {
    pub uid: String,
    pub name: String,
    pub keyed: bool,
    pub parallelism: u32,
}

/// The job being started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetJob {
    pub module_hash: String,
    /// Identifies the job's instances: the module with the plan it runs
    /// (memory images record it).
    pub instance_hash: String,
    pub has_state_hooks: bool,
    pub max_parallelism: u32,
    pub operators: Vec<TargetOperator>,
    /// Each chain's operator uids (head first) and parallelism.
    pub chains: Vec<(Vec<String>, u32)>,
    /// Each chain's output edges (`<from uid>:<port>-><to uid>`), in order.
    pub chain_outputs: Vec<Vec<String>>,
}

/// What happens to one piece of state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Restored,
    /// Handed to the new module's restore hook.
    Migrated,
    /// Not restored; allowed by `--allowNonRestoredState`.
    Skipped(String),
    /// Not restored, which is an error.
    Rejected(String),
}

impl Decision {
    /// The result word and its detail, as reports print them.
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            Decision::Restored => ("restored", String::new()),
            Decision::Migrated => ("migrated", "through the job's restore hook".to_owned()),
            Decision::Skipped(why) => ("skipped", why.clone()),
            Decision::Rejected(why) => ("REJECTED", why.clone()),
        }
    }
}

/// One line of the restore report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    /// The operator uid(s) the state belongs to.
    pub uids: Vec<String>,
    /// What state: "keyed state 'acc'", "source position", ...
    pub what: String,
    pub decision: Decision,
}

/// What one new task loads.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskRestore {
    /// Keyed state handles overlapping the task's key groups.
    pub keyed: Vec<KeyedStateHandle>,
    /// (uid, state name) pairs to keep from them.
    pub keep_states: Vec<(String, String)>,
    pub memory: Option<MemoryImageHandle>,
    /// Saved states to hand to the restore hook, in old subtask order.
    pub saved: Vec<SavedStateHandle>,
    /// Files operators kept beside their state, per uid (as state).
    pub operator_files: BTreeMap<String, Vec<FileRef>>,
    /// Operator state per uid: the old subtasks' values (same subtask at
    /// the same parallelism; all of them otherwise), each with the subtask
    /// that took it.
    pub operator_state: BTreeMap<String, Vec<weir_core::SubtaskState>>,
    /// Records in flight at an unaligned checkpoint, in old subtask order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<InFlightRestore>,
}

/// One in-flight file of an unaligned checkpoint, as a new task loads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InFlightRestore {
    pub file: FileRef,
    /// Records the old task had buffered but not sent: the new one sends
    /// them first. Otherwise records it had yet to read: it processes them
    /// before reading its channels.
    pub output: bool,
    /// Only the records of the new task's key groups (a keyed task at
    /// another parallelism, which takes every old subtask's file).
    pub by_key_group: bool,
}

/// The outcome of matching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestorePlan {
    pub report: Vec<ReportLine>,
    /// By (chain index, subtask).
    pub tasks: BTreeMap<(usize, u32), TaskRestore>,
}

impl RestorePlan {
    /// Lines that prevent the restore.
    pub fn rejected(&self) -> impl Iterator<Item = &ReportLine> {
        self.report
            .iter()
            .filter(|l| matches!(l.decision, Decision::Rejected(_)))
    }

    /// The error for rejected state, naming the operators, or None.
    pub fn error(&self) -> Option<String> {
        let lines: Vec<String> = self
            .rejected()
            .map(|l| {
                let Decision::Rejected(why) = &l.decision else {
                    unreachable!()
                };
                format!("  - {} of operator(s) {}: {why}", l.what, l.uids.join(", "))
            })
            .collect();
        if lines.is_empty() {
            return None;
        }
        Some(format!(
            "the snapshot holds state that the new job does not claim:\n{}\n\
             Give the operators their old uids, or run with -n \
             (--allowNonRestoredState) to skip that state.",
            lines.join("\n")
        ))
    }
}

fn unclaimed(allow: bool, why: String) -> Decision {
    if allow {
        Decision::Skipped(why)
    } else {
        Decision::Rejected(why)
    }
}

/// Matches `snapshot` to `target`.
pub fn plan_restore(
    snapshot: &SnapshotMetadata,
    target: &TargetJob,
    allow_non_restored: bool,
) -> RestorePlan {
    let mut plan = RestorePlan::default();
    let ops: BTreeMap<&str, &TargetOperator> = target
        .operators
        .iter()
        .map(|o| (o.uid.as_str(), o))
        .collect();
    let chain_of = |uid: &str| {
        target
            .chains
            .iter()
            .position(|(uids, _)| uids.iter().any(|u| u == uid))
    };
    for (ci, (_, p)) in target.chains.iter().enumerate() {
        for s in 0..*p {
            plan.tasks.insert((ci, s), TaskRestore::default());
        }
    }

    // Keyed state, by (uid, state name).
    let mut keyed_seen: BTreeMap<(String, String), Decision> = BTreeMap::new();
    for task in &snapshot.tasks {
        let Some(k) = &task.keyed else { continue };
        for s in &k.states {
            let key = (s.uid.clone(), s.name.clone());
            if keyed_seen.contains_key(&key) {
                continue;
            }
            let decision = match ops.get(s.uid.as_str()) {
                None => unclaimed(
                    allow_non_restored,
                    "no operator of the new job has this uid".into(),
                ),
                Some(o) if !o.keyed => unclaimed(
                    allow_non_restored,
                    format!("operator '{}' of the new job keeps no keyed state", o.name),
                ),
                Some(_) if snapshot.max_parallelism != target.max_parallelism => {
                    Decision::Rejected(format!(
                        "the maximum parallelism changed from {} to {}; keyed state is split into \
                     that many key groups and cannot move (set pipeline.max-parallelism back)",
                        snapshot.max_parallelism, target.max_parallelism
                    ))
                }
                Some(_) => Decision::Restored,
            };
            keyed_seen.insert(key, decision);
        }
    }
    for ((uid, name), decision) in &keyed_seen {
        plan.report.push(ReportLine {
            uids: vec![uid.clone()],
            what: format!("keyed state '{name}'"),
            decision: decision.clone(),
        });
        if *decision != Decision::Restored {
            continue;
        }
        let ci = chain_of(uid).expect("restored uids exist");
        let p = target.chains[ci].1;
        for sub in 0..p {
            let range = weir_core::KeyGroupRange::for_subtask(target.max_parallelism, p, sub);
            let tr = plan.tasks.get_mut(&(ci, sub)).expect("all tasks listed");
            tr.keep_states.push((uid.clone(), name.clone()));
            for t in &snapshot.tasks {
                if let Some(k) = &t.keyed
                    && k.key_groups.overlaps(&range)
                    && k.states.iter().any(|s| &s.uid == uid && &s.name == name)
                    && !tr.keyed.contains(k)
                {
                    tr.keyed.push(k.clone());
                }
            }
        }
    }

    // Operator state, by uid.
    let mut op_states: BTreeMap<&str, Vec<(u32, u32, &serde_json::Value)>> = BTreeMap::new();
    for t in &snapshot.tasks {
        for (uid, v) in &t.operator_state {
            op_states
                .entry(uid)
                .or_default()
                .push((t.subtask, t.parallelism, v));
        }
    }
    for (uid, mut values) in op_states {
        values.sort_by_key(|(s, _, _)| *s);
        let decision = match ops.get(uid) {
            None => unclaimed(
                allow_non_restored,
                "no operator of the new job has this uid".into(),
            ),
            Some(_) => Decision::Restored,
        };
        plan.report.push(ReportLine {
            uids: vec![uid.to_owned()],
            what: "operator state (positions, transactions)".into(),
            decision: decision.clone(),
        });
        if decision != Decision::Restored {
            continue;
        }
        let ci = chain_of(uid).expect("exists");
        let p = target.chains[ci].1;
        let old_p = values[0].1;
        for sub in 0..p {
            let tr = plan.tasks.get_mut(&(ci, sub)).expect("listed");
            let mine: Vec<weir_core::SubtaskState> = values
                .iter()
                .filter(|(s, _, _)| old_p != p || *s == sub)
                .map(|(s, old, v)| weir_core::SubtaskState {
                    subtask: *s,
                    parallelism: *old,
                    value: (*v).clone(),
                })
                .collect();
            tr.operator_state.insert(uid.to_owned(), mine);
            let files: Vec<FileRef> = snapshot
                .tasks
                .iter()
                .filter(|t| old_p != p || t.subtask == sub)
                .flat_map(|t| t.operator_files.get(uid).into_iter().flatten().cloned())
                .collect();
            if !files.is_empty() {
                tr.operator_files.insert(uid.to_owned(), files);
            }
        }
    }

    // Records in flight at an unaligned checkpoint, by task. Those the old
    // task had yet to read enter the new chain headed by the same
    // operator; those it had buffered for its outputs leave from a chain
    // of the same operators.
    for t in &snapshot.tasks {
        let (Some(f), Some(head)) = (&t.in_flight, t.operators.first()) else {
            continue;
        };
        let head = head.as_str();
        let mut place = |file: &FileRef, output: bool| {
            let ci = target
                .chains
                .iter()
                .enumerate()
                .position(|(ci, (uids, _))| match output {
                    // Older snapshots did not record the edges.
                    true => {
                        *uids == t.operators
                            && (f.outputs.is_empty()
                                || target.chain_outputs.get(ci) == Some(&f.outputs))
                    }
                    false => uids.first().is_some_and(|u| u == head),
                })?;
            let p = target.chains[ci].1;
            let one = t.subtask % p;
            let split = !output && t.parallelism != p && ops.get(head).is_some_and(|o| o.keyed);
            for sub in (0..p).filter(|&s| split || s == one) {
                plan.tasks
                    .get_mut(&(ci, sub))
                    .expect("listed")
                    .in_flight
                    .push(InFlightRestore {
                        file: file.clone(),
                        output,
                        by_key_group: split,
                    });
            }
            Some(())
        };
        for (file, output, what) in [(&f.input, false, "into"), (&f.output, true, "out of")] {
            let Some(file) = file else { continue };
            let decision = match place(file, output) {
                Some(()) => Decision::Restored,
                None => unclaimed(
                    allow_non_restored,
                    format!(
                        "records in flight {what} this task restore only into a chain {}",
                        match output {
                            true => "of the same operators with the same output edges",
                            false => "headed by the same operator",
                        }
                    ),
                ),
            };
            plan.report.push(ReportLine {
                uids: t.operators.clone(),
                what: format!("records in flight {what} subtask {}", t.subtask + 1),
                decision,
            });
        }
    }

    // Memory images and saved state, by task.
    for t in &snapshot.tasks {
        if t.memory.is_none() && t.saved.is_none() {
            continue;
        }
        let same_chain = target
            .chains
            .iter()
            .position(|(uids, p)| *uids == t.operators && *p == t.parallelism);
        // An image holds the function table `plan` built: it restores only
        // into the same module with the same plan.
        let identical = snapshot.module_hash == target.module_hash
            && t.memory
                .as_ref()
                .is_none_or(|m| m.module_hash == target.instance_hash);
        // Where saved state migrates: the new task holding the old head.
        let host_chain = t.operators.iter().find_map(|u| chain_of(u));
        let what = if t.memory.is_some() {
            format!("component memory of subtask {}", t.subtask + 1)
        } else {
            format!("saved state of subtask {}", t.subtask + 1)
        };
        let decision = match (&t.memory, same_chain, identical) {
            (Some(m), Some(ci), true) => {
                plan.tasks.get_mut(&(ci, t.subtask)).expect("listed").memory = Some(m.clone());
                Decision::Restored
            }
            _ => match (&t.saved, target.has_state_hooks, host_chain) {
                (Some(saved), true, Some(ci)) => {
                    let p = target.chains[ci].1;
                    let sub = t.subtask % p;
                    plan.tasks
                        .get_mut(&(ci, sub))
                        .expect("listed")
                        .saved
                        .push(saved.clone());
                    Decision::Migrated
                }
                (Some(_), true, None) => unclaimed(
                    allow_non_restored,
                    "no operator of the new job has any of these uids".into(),
                ),
                (Some(_), false, _) => unclaimed(
                    allow_non_restored,
                    "the new module has no restore hook to take it over".into(),
                ),
                (None, _, _) => unclaimed(
                    allow_non_restored,
                    if !identical {
                        "a memory image restores only into the identical module with the same \
                         plan (its operators and their functions; connectors aside), and the \
                         job saved no state for its restore hook"
                            .into()
                    } else {
                        "the job's tasks changed (uids or parallelism), and the job saved no \
                         state for its restore hook"
                            .into()
                    },
                ),
            },
        };
        plan.report.push(ReportLine {
            uids: t.operators.clone(),
            what,
            decision,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{FileRef, Kind, TaskSnapshot};
    use weir_core::plan::StateKind;
    use weir_core::{CheckpointId, JobId, KeyGroupRange};
    use weir_state::StateDescriptorInfo;

    fn file(n: &str) -> FileRef {
        FileRef {
            name: n.into(),
            path: n.into(),
            size: 1,
            crc32c: 0,
        }
    }

    fn keyed(uid: &str, range: KeyGroupRange) -> KeyedStateHandle {
        KeyedStateHandle {
            key_groups: range,
            states: vec![StateDescriptorInfo {
                uid: uid.into(),
                name: "acc".into(),
                kind: StateKind::Value,
                column_family: format!("{uid}/acc"),
            }],
            files: vec![file(&format!("{uid}-{}.sst", range.start))],
        }
    }

    /// source -> counts (keyed, p=2) -> sink, with memory images.
    fn snapshot() -> SnapshotMetadata {
        let mut tasks = vec![TaskSnapshot {
            operators: vec!["source".into(), "tokenizer".into()],
            subtask: 0,
            parallelism: 1,
            keyed: None,
            memory: Some(MemoryImageHandle {
                module_hash: "v1".into(),
                files: vec![file("m0")],
            }),
            saved: None,
            operator_state: [("source".to_string(), serde_json::json!({"offset": 10}))].into(),
            operator_files: BTreeMap::new(),
            in_flight: None,
        }];
        for s in 0..2 {
            tasks.push(TaskSnapshot {
                operators: vec!["counts".into(), "sink".into()],
                subtask: s,
                parallelism: 2,
                keyed: Some(keyed("counts", KeyGroupRange::for_subtask(128, 2, s))),
                memory: Some(MemoryImageHandle {
                    module_hash: "v1".into(),
                    files: vec![file("m")],
                }),
                saved: Some(SavedStateHandle {
                    version: "1".into(),
                    file: file("saved"),
                }),
                operator_state: BTreeMap::new(),
                operator_files: BTreeMap::new(),
                in_flight: None,
            });
        }
        SnapshotMetadata {
            job_id: JobId::random(),
            checkpoint_id: CheckpointId(1),
            kind: Kind::Savepoint,
            timestamp_ms: 0,
            job_name: "wc".into(),
            job_version: "1".into(),
            module_hash: "v1".into(),
            max_parallelism: 128,
            operators: vec![],
            tasks,
        }
    }

    fn op(uid: &str, keyed: bool, p: u32) -> TargetOperator {
        TargetOperator {
            uid: uid.into(),
            name: uid.into(),
            keyed,
            parallelism: p,
        }
    }

    fn target(hash: &str, hooks: bool, counts_p: u32, extra: Option<&str>) -> TargetJob {
        let mut operators = vec![
            op("source", false, 1),
            op("tokenizer", false, 1),
            op("counts", true, counts_p),
            op("sink", false, counts_p),
        ];
        let mut second = vec!["counts".to_string(), "sink".to_string()];
        if let Some(e) = extra {
            operators.push(op(e, false, counts_p));
            second.push(e.to_string());
        }
        TargetJob {
            module_hash: hash.into(),
            instance_hash: hash.into(),
            has_state_hooks: hooks,
            max_parallelism: 128,
            operators,
            chains: vec![
                (vec!["source".into(), "tokenizer".into()], 1),
                (second, counts_p),
            ],
            chain_outputs: vec![vec!["tokenizer:0->counts".into()], vec![]],
        }
    }

    /// The snapshot with records in flight around every task: the
    /// counts' input, and the source's and counts' output.
    fn unaligned() -> SnapshotMetadata {
        let mut m = snapshot();
        for t in &mut m.tasks {
            let name = format!("{}-{}", t.operators[0], t.subtask);
            t.in_flight = Some(crate::metadata::InFlightHandle {
                input: (t.operators[0] == "counts").then(|| file(&format!("{name}-in"))),
                output: Some(file(&format!("{name}-out"))),
                outputs: match t.operators[0].as_str() {
                    "source" => vec!["tokenizer:0->counts".into()],
                    _ => vec![],
                },
            });
        }
        m
    }

    fn in_flight(t: &TaskRestore) -> Vec<(String, bool, bool)> {
        t.in_flight
            .iter()
            .map(|f| (f.file.name.clone(), f.output, f.by_key_group))
            .collect()
    }

    #[test]
    fn records_in_flight_follow_their_tasks_and_split_by_key_group_on_rescale() {
        let plan = plan_restore(&unaligned(), &target("v1", false, 2, None), false);
        assert_eq!(plan.error(), None, "{:?}", plan.report);
        let s = |n: &str, output| (n.to_string(), output, false);
        assert_eq!(in_flight(&plan.tasks[&(0, 0)]), [s("source-0-out", true)]);
        assert_eq!(
            in_flight(&plan.tasks[&(1, 1)]),
            [s("counts-1-in", false), s("counts-1-out", true)]
        );

        // At parallelism 3 every new counts subtask reads the old inputs
        // for its key groups; each old output is sent by one new subtask.
        let plan = plan_restore(&unaligned(), &target("v1", true, 3, None), false);
        assert_eq!(plan.error(), None, "{:?}", plan.report);
        for sub in 0..3 {
            let got = in_flight(&plan.tasks[&(1, sub)]);
            let inputs: Vec<_> = got.iter().filter(|f| !f.1).collect();
            assert_eq!(inputs.len(), 2, "{got:?}");
            assert!(inputs.iter().all(|f| f.2), "{got:?}");
            let outputs: Vec<_> = got.iter().filter(|f| f.1).map(|f| f.0.as_str()).collect();
            let want: &[&str] = match sub {
                0 => &["counts-0-out"],
                1 => &["counts-1-out"],
                _ => &[],
            };
            assert_eq!(outputs, want);
        }

        // Another chain after the same head: the input still enters there;
        // the old output has no chain of the same operators to leave from.
        let plan = plan_restore(&unaligned(), &target("v1", true, 2, Some("extra")), false);
        let rejected: Vec<_> = plan.rejected().map(|l| l.what.clone()).collect();
        assert_eq!(
            rejected,
            [
                "records in flight out of subtask 1",
                "records in flight out of subtask 2"
            ]
        );
        let plan = plan_restore(&unaligned(), &target("v1", true, 2, Some("extra")), true);
        assert_eq!(plan.error(), None);
        assert_eq!(in_flight(&plan.tasks[&(1, 0)]), [s("counts-0-in", false)]);

        // The same operators whose records now go elsewhere (an edge to a
        // new operator, or in another order): the old output is not sent
        // down the wrong edge.
        let mut changed = target("v1", true, 2, None);
        changed.chain_outputs[0] = vec!["tokenizer:1->audit".into(), "tokenizer:0->counts".into()];
        let plan = plan_restore(&unaligned(), &changed, false);
        let rejected: Vec<_> = plan.rejected().map(|l| l.what.clone()).collect();
        assert_eq!(rejected, ["records in flight out of subtask 1"]);
        assert!(
            plan.report.iter().any(|l| matches!(&l.decision,
                Decision::Rejected(w) if w.contains("same output edges"))),
            "{:?}",
            plan.report
        );
        let plan = plan_restore(&unaligned(), &changed, true);
        assert_eq!(plan.error(), None);
        assert_eq!(in_flight(&plan.tasks[&(0, 0)]), []);
    }

    #[test]
    fn identical_job_restores_everything() {
        let plan = plan_restore(&snapshot(), &target("v1", false, 2, None), false);
        assert_eq!(plan.error(), None, "{:?}", plan.report);
        let t = &plan.tasks[&(1, 1)];
        assert_eq!(t.keyed.len(), 1);
        assert!(t.memory.is_some());
        let source = &plan.tasks[&(0, 0)].operator_state["source"];
        assert_eq!(source.len(), 1);
        assert_eq!(source[0].value, serde_json::json!({"offset": 10}));
        assert_eq!((source[0].subtask, source[0].parallelism), (0, 1));
    }

    #[test]
    fn memory_images_need_the_same_plan_arguments() {
        let mut t = target("v1", false, 2, None);
        t.instance_hash = "v1 with another plan".into();
        let plan = plan_restore(&snapshot(), &t, true);
        assert!(plan.tasks.values().all(|t| t.memory.is_none()));
        assert!(
            plan.report
                .iter()
                .any(|l| matches!(&l.decision, Decision::Skipped(w) if w.contains("same plan")))
        );
    }

    #[test]
    fn rescaled_keyed_state_gathers_overlapping_handles() {
        let plan = plan_restore(&snapshot(), &target("v1", true, 3, None), false);
        assert_eq!(plan.error(), None, "{:?}", plan.report);
        // Subtask 1 of 3 covers groups 43..86, which span both old ranges.
        assert_eq!(plan.tasks[&(1, 1)].keyed.len(), 2);
        assert_eq!(plan.tasks[&(1, 0)].keyed.len(), 1);
        // Memory images cannot follow; the saved state migrates instead.
        assert!(
            plan.tasks
                .values()
                .all(|t| t.memory.is_none() || t.keyed.is_empty())
        );
        let migrated: usize = plan.tasks.values().map(|t| t.saved.len()).sum();
        assert_eq!(migrated, 2);
    }

    #[test]
    fn new_module_without_hooks_rejects_memory_unless_allowed() {
        let plan = plan_restore(&snapshot(), &target("v2", false, 2, Some("extra")), false);
        let err = plan.error().expect("rejected");
        assert!(err.contains("counts, sink"), "{err}");
        assert!(err.contains("-n"), "{err}");
        let plan = plan_restore(&snapshot(), &target("v2", false, 2, Some("extra")), true);
        assert_eq!(plan.error(), None);
        assert!(
            plan.report
                .iter()
                .any(|l| matches!(l.decision, Decision::Skipped(_)))
        );
        // Keyed state still carries over to the new version.
        assert_eq!(
            plan.tasks[&(1, 0)].keep_states,
            vec![("counts".to_string(), "acc".to_string())]
        );
    }

    #[test]
    fn dropped_operator_is_named() {
        let mut t = target("v1", true, 2, None);
        t.operators.retain(|o| o.uid != "counts");
        t.chains[1].0.retain(|u| u != "counts");
        let plan = plan_restore(&snapshot(), &t, false);
        let err = plan.error().unwrap();
        assert!(
            err.contains("keyed state 'acc' of operator(s) counts"),
            "{err}"
        );
    }

    #[test]
    fn max_parallelism_must_match() {
        let mut t = target("v1", false, 2, None);
        t.max_parallelism = 256;
        let plan = plan_restore(&snapshot(), &t, true);
        assert!(
            plan.error()
                .unwrap()
                .contains("maximum parallelism changed from 128 to 256")
        );
    }
}
