//! Which completed checkpoints are kept, and which files they still need.
//!
//! Incremental checkpoints share SST files. Every retained checkpoint holds
//! a reference on each shared file it uses; when a checkpoint is dropped
//! from retention its references go, and files nobody references any more
//! are deleted together with the checkpoint's own directory.
//!
//! A checkpoint a job was restored from joins the retained ones when the
//! job owns it (its own checkpoint after a restart, or any checkpoint in
//! CLAIM mode), so that it is deleted once newer ones subsume it.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// What to delete after a new checkpoint completed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Discard {
    /// Directories of checkpoints no longer retained.
    pub checkpoints: Vec<String>,
    /// Shared files no retained checkpoint uses.
    pub shared_files: Vec<String>,
}

/// The retained checkpoints of a job and the shared files they use.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    keep: usize,
    retained: VecDeque<(String, Vec<String>)>,
    refs: HashMap<String, u32>,
}

impl Retention {
    pub fn new(keep: usize) -> Self {
        Retention {
            keep: keep.max(1),
            ..Default::default()
        }
    }

    /// Adds the completed checkpoint in directory `dir`, which uses
    /// `shared` files.
    pub fn add(&mut self, dir: String, shared: Vec<String>) -> Discard {
        if self.contains(&dir) {
            return Discard::default();
        }
        for f in &shared {
            *self.refs.entry(f.clone()).or_default() += 1;
        }
        self.retained.push_back((dir, shared));
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

    /// Forgets every retained checkpoint: all of them and every shared
    /// file they use are to be deleted (a job that finished).
    pub fn clear(&mut self) -> Discard {
        let checkpoints = self.retained.drain(..).map(|(d, _)| d).collect();
        let mut shared_files: Vec<String> = self.refs.drain().map(|(f, _)| f).collect();
        shared_files.sort();
        Discard {
            checkpoints,
            shared_files,
        }
    }

    /// Whether the checkpoint in `dir` is retained.
    pub fn contains(&self, dir: &str) -> bool {
        self.retained.iter().any(|(d, _)| d == dir)
    }

    /// Whether `file` is used by a retained checkpoint.
    pub fn is_referenced(&self, file: &str) -> bool {
        self.refs.contains_key(file)
    }

    /// Directories of the retained checkpoints, oldest first.
    pub fn retained(&self) -> impl DoubleEndedIterator<Item = &str> + '_ {
        self.retained.iter().map(|(d, _)| d.as_str())
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
        assert_eq!(r.add("j/chk-1".into(), v(&["a", "b"])), Discard::default());
        assert_eq!(r.add("j/chk-2".into(), v(&["b", "c"])), Discard::default());
        assert_eq!(
            r.add("j/chk-2".into(), v(&["b", "c"])),
            Discard::default(),
            "a checkpoint is retained once"
        );
        assert_eq!(r.references().get("b"), Some(&2));
        let d = r.add("j/chk-3".into(), v(&["c", "d"]));
        assert_eq!(d.checkpoints, vec!["j/chk-1"]);
        assert_eq!(d.shared_files, v(&["a"]));
        let d = r.add("j/chk-4".into(), v(&["d"]));
        assert_eq!(d.checkpoints, vec!["j/chk-2"]);
        assert_eq!(d.shared_files, v(&["b"]));
        assert!(r.is_referenced("c"));
        assert_eq!(r.retained().collect::<Vec<_>>(), vec!["j/chk-3", "j/chk-4"]);
    }
}
