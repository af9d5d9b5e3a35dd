//! Where checkpoint files live; the one place that builds storage paths.
//!
//! The layout is Flink's: `<checkpoints>/<job-id>/chk-<n>/_metadata`,
//! `<job-id>/shared/` for files several incremental checkpoints use,
//! `<job-id>/taskowned/`, and self-contained savepoints
//! `<savepoints>/savepoint-<jobid6>-<random>/_metadata`.

use weir_core::{CheckpointId, JobId};

/// Name of the metadata file in every snapshot directory.
pub const METADATA: &str = "_metadata";

/// Directory of checkpoint `n` of `job`, relative to the checkpoints root.
pub fn checkpoint_dir(job: JobId, n: CheckpointId) -> String {
    format!("{job}/chk-{n}")
}

/// Directory of the files shared between `job`'s checkpoints.
pub fn shared_dir(job: JobId) -> String {
    format!("{job}/shared")
}

/// Directory of files the job's tasks own across checkpoints.
pub fn taskowned_dir(job: JobId) -> String {
    format!("{job}/taskowned")
}

/// A new savepoint directory name for `job`.
pub fn savepoint_dir(job: JobId) -> String {
    let random: u64 = rand::random();
    format!(
        "savepoint-{}-{:012x}",
        job.short(),
        random & 0xffff_ffff_ffff
    )
}

/// The checkpoint number of a `chk-<n>` directory name.
pub fn parse_checkpoint_dir(name: &str) -> Option<CheckpointId> {
    name.strip_prefix("chk-")?.parse().ok().map(CheckpointId)
}

/// Joins a relative path (which may contain `..`) onto `dir`.
pub fn join(dir: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The path of `to` relative to directory `from` (both relative to one root).
pub fn relative(from: &str, to: &str) -> String {
    let f: Vec<&str> = from.split('/').filter(|p| !p.is_empty()).collect();
    let t: Vec<&str> = to.split('/').filter(|p| !p.is_empty()).collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out: Vec<&str> = vec![".."; f.len() - common];
    out.extend(&t[common..]);
    out.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_relative_paths() {
        let job: JobId = "0123456789abcdef0123456789abcdef".parse().unwrap();
        let chk = checkpoint_dir(job, CheckpointId(47));
        assert_eq!(chk, "0123456789abcdef0123456789abcdef/chk-47");
        let shared = format!("{}/a.sst", shared_dir(job));
        let rel = relative(&chk, &shared);
        assert_eq!(rel, "../shared/a.sst");
        assert_eq!(join(&chk, &rel).unwrap(), shared);
        assert_eq!(join("a", "../../x"), None);
        assert_eq!(parse_checkpoint_dir("chk-12"), Some(CheckpointId(12)));
        assert_eq!(parse_checkpoint_dir("savepoint-x"), None);
        let sp = savepoint_dir(job);
        assert!(sp.starts_with("savepoint-012345-"), "{sp}");
    }
}
