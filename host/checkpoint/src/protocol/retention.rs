//! Which completed checkpoints are kept, and which files they still need.
//!
//! Incremental checkpoints share SST files. Every retained checkpoint holds
//! a reference on each shared file it uses; when a checkpoint is dropped
//! from retention its references go, and files nobody references any more
//! are deleted together with the checkpoint's own directory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use weir_core::CheckpointId;

/// What to delete after a new checkpoint completed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Discard {
    /// Checkpoints no longer retained (delete their directories).
    pub checkpoints: Vec<CheckpointId>,
    /// Shared files no retained checkpoint uses.
    pub shared_files: Vec<String>,
}

/// The retained checkpoints of a job and the shared files they use.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    keep: usize,
    retained: VecDeque<(CheckpointId, Vec<String>)>,
    refs: HashMap<String, u32>,
}

impl Retention {
    pub fn new(keep: usize) -> Self {
        Retention {
            keep: keep.max(1),
            ..Default::default()
        }
    }

    /// Adds a completed checkpoint that uses `shared` files.
    pub fn add(&mut self, id: CheckpointId, shared: Vec<String>) -> Discard {
        for f in &shared {
            *self.refs.entry(f.clone()).or_default() += 1;
        }
        self.retained.push_back((id, shared));
        let mut discard = Discard::default();
        while self.retained.len() > self.keep {
            let (old, files) = self.retained.pop_front().expect("non-empty");
            discard.checkpoints.push(old);
            for f in files {
                let n = self.refs.get_mut(&f).expect("referenced");
                *n -= 1;
                if *n == 0 {
                    self.refs.remove(&f);
                    discard.shared_files.push(f);
                }
            }
        }
        discard
    }

    /// Whether `file` is used by a retained checkpoint.
    pub fn is_referenced(&self, file: &str) -> bool {
        self.refs.contains_key(file)
    }

    pub fn retained(&self) -> impl Iterator<Item = CheckpointId> + '_ {
        self.retained.iter().map(|(id, _)| *id)
    }

    /// Reference counts (for tests and diagnostics).
    pub fn references(&self) -> BTreeMap<&str, u32> {
        self.refs.iter().map(|(k, v)| (k.as_str(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(files: &[&str]) -> Vec<String> {
        files.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shared_files_live_while_referenced() {
        let mut r = Retention::new(2);
        assert_eq!(r.add(CheckpointId(1), v(&["a", "b"])), Discard::default());
        assert_eq!(r.add(CheckpointId(2), v(&["b", "c"])), Discard::default());
        assert_eq!(r.references().get("b"), Some(&2));
        let d = r.add(CheckpointId(3), v(&["c", "d"]));
        assert_eq!(d.checkpoints, vec![CheckpointId(1)]);
        assert_eq!(d.shared_files, v(&["a"]));
        let d = r.add(CheckpointId(4), v(&["d"]));
        assert_eq!(d.checkpoints, vec![CheckpointId(2)]);
        assert_eq!(d.shared_files, v(&["b"]));
        assert!(r.is_referenced("c"));
        assert_eq!(
            r.retained().collect::<Vec<_>>(),
            vec![CheckpointId(3), CheckpointId(4)]
        );
    }
}
