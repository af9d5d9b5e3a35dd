//! The file sink, exactly once: in-progress -> pending -> committed.
//!
//! Lines go to a hidden in-progress file. At each checkpoint barrier the
//! file is flushed and synced and its length recorded, so that a restore
//! can truncate it back to exactly what the checkpoint covers. A finished
//! file becomes pending (a link to it, or its sorted copy), and pending
//! files are committed — renamed to their final names — only when the
//! checkpoint that covers them completes (or, in a job without checkpoints,
//! when input ends). The in-progress file stays until its part is
//! committed, so a crash between finishing a part and committing it still
//! restores. After a crash, restoring the checkpoint commits its pending
//! files and discards anything written after it, so the committed output
//! equals that of an uninterrupted run.
//!
//! With one subtask the path is the output file itself; with several it is
//! a directory of `part-<subtask>-<n>` files, a new one per checkpoint.
//!
//! Durability (`weir.io.fsync`, on by default): what a checkpoint refers to
//! — the in-progress file's bytes and the names of in-progress and pending
//! files — is synced before the checkpoint is acknowledged, and committed
//! names are synced after the renames; so neither a crash nor a power loss
//! loses or duplicates committed lines.

use crate::{SinkContext, SinkFiles, SinkWriter};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use weir_core::fs::sync_dir;
use weir_core::options::parsed;
use weir_core::{CheckpointId, Failure, SubtaskState};
use weir_frame::Reader;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkOptions {
    pub path: String,
    /// Sort the lines when input ends (bounded jobs; one subtask).
    #[serde(rename = "sort-lines", default, deserialize_with = "parsed")]
    pub sort_lines: bool,
}

/// A file waiting for its checkpoint to complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    pending: PathBuf,
    target: PathBuf,
}

/// What a checkpoint records for one sink subtask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SinkState {
    in_progress: Option<(PathBuf, u64)>,
    pending: Vec<Pending>,
    next_part: u64,
}

struct Open {
    path: PathBuf,
    out: BufWriter<File>,
    len: u64,
    /// Whether the file's name is synced in its directory.
    named: bool,
}

/// The exactly-once file sink of one subtask.
pub struct FileSink {
    base: PathBuf,
    single_file: bool,
    subtask: u32,
    parallelism: u32,
    sort: bool,
    open: Option<Open>,
    next_part: u64,
    /// Pending files and the checkpoint that covers them (None: not yet
    /// covered by any checkpoint).
    pending: Vec<(Option<CheckpointId>, Pending)>,
    /// Commit at end of input (no checkpoints run).
    commit_on_finish: bool,
    fsync: bool,
    /// Pending files created since the directory was last synced.
    unsynced_names: bool,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("base", &self.base)
            .finish()
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure::external(format!("file sink: cannot {what} {}: {e}", path.display()))
}

/// The final name of a hidden in-progress or pending file.
fn visible(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.trim_start_matches('.');
    let name = name
        .strip_suffix(".inprogress")
        .or_else(|| name.strip_suffix(".pending"))
        .unwrap_or(name);
    path.with_file_name(name)
}

fn hidden(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}"))
}

impl FileSink {
    pub fn open(o: FileSinkOptions, ctx: &SinkContext) -> Result<Self, Failure> {
        let base = PathBuf::from(&o.path);
        crate::confine(&ctx.owner, "path", &base)?;
        let single_file = ctx.parallelism == 1;
        let dir = if single_file {
            base.parent().map(Path::to_owned).unwrap_or_default()
        } else {
            base.clone()
        };
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(&dir).map_err(|e| {
                Failure::user(format!(
                    "cannot create output directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        Ok(FileSink {
            base,
            single_file,
            subtask: ctx.subtask,
            parallelism: ctx.parallelism,
            sort: o.sort_lines,
            open: None,
            next_part: 0,
            pending: Vec::new(),
            commit_on_finish: !ctx.checkpointing,
            fsync: ctx.fsync,
            unsynced_names: false,
        })
    }

    fn dir(&self) -> PathBuf {
        if self.single_file {
            self.base.parent().map(Path::to_owned).unwrap_or_default()
        } else {
            self.base.clone()
        }
    }

    /// Syncs the output directory, so that file names created or renamed
    /// in it survive a power loss.
    fn sync_names(&mut self) -> Result<(), Failure> {
        if !self.fsync {
            return Ok(());
        }
        let dir = self.dir();
        sync_dir(&dir).map_err(|e| io("sync", &dir, e))?;
        self.unsynced_names = false;
        if let Some(o) = &mut self.open {
            o.named = true;
        }
        Ok(())
    }

    /// The final path of part `n`.
    fn target(&self, n: u64) -> PathBuf {
        if self.single_file {
            self.base.clone()
        } else {
            self.base.join(format!("part-{}-{n}", self.subtask))
        }
    }

    fn in_progress_path(&self, n: u64) -> PathBuf {
        hidden(&self.target(n), "inprogress")
    }

    fn writer(&mut self) -> Result<&mut Open, Failure> {
        if self.open.is_none() {
            let path = self.in_progress_path(self.next_part);
            let f = File::create(&path).map_err(|e| io("create", &path, e))?;
            self.open = Some(Open {
                path,
                out: BufWriter::with_capacity(1 << 20, f),
                len: 0,
                named: false,
            });
        }
        Ok(self.open.as_mut().expect("opened above"))
    }

    fn sync(open: &mut Open, fsync: bool) -> Result<(), Failure> {
        open.out.flush().map_err(|e| io("write", &open.path, e))?;
        if !fsync {
            return Ok(());
        }
        open.out
            .get_ref()
            .sync_data()
            .map_err(|e| io("sync", &open.path, e))
    }

    /// Closes the in-progress file into a pending one.
    fn roll(&mut self) -> Result<(), Failure> {
        let Some(mut open) = self.open.take() else {
            return Ok(());
        };
        Self::sync(&mut open, self.fsync)?;
        drop(open.out);
        let target = self.target(self.next_part);
        self.next_part += 1;
        let pending = hidden(&target, "pending");
        remove_if_present(&pending)?;
        if self.sort {
            sort_file(&open.path, &pending, self.fsync)?;
        } else if std::fs::hard_link(&open.path, &pending).is_err() {
            std::fs::copy(&open.path, &pending).map_err(|e| io("copy", &open.path, e))?;
            if self.fsync {
                File::open(&pending)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io("sync", &pending, e))?;
            }
        }
        self.unsynced_names = true;
        self.pending.push((None, Pending { pending, target }));
        Ok(())
    }

    fn commit_covered(&mut self, id: Option<CheckpointId>) -> Result<(), Failure> {
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(c, _)| match (c, id) {
                (Some(c), Some(id)) => *c <= id,
                (_, None) => true,
                (None, Some(_)) => false,
            });
        self.pending = later;
        if now.is_empty() {
            return Ok(());
        }
        for (_, p) in &now {
            commit(p)?;
        }
        self.sync_names()
    }
}

/// Renames a pending file to its final name, then drops the in-progress
/// file it came from.
fn commit(p: &Pending) -> Result<(), Failure> {
    match std::fs::rename(&p.pending, &p.target) {
        Ok(()) => {}
        // Committed before a failure already.
        Err(_) if !p.pending.exists() && p.target.exists() => {}
        Err(e) => return Err(io("commit", &p.pending, e)),
    }
    remove_if_present(&hidden(&p.target, "inprogress"))
}

fn remove_if_present(path: &Path) -> Result<(), Failure> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", path, e)),
    }
}

/// Writes the lines of `from`, sorted, to `to`.
fn sort_file(from: &Path, to: &Path, fsync: bool) -> Result<(), Failure> {
    let mut text = Vec::new();
    File::open(from)
        .and_then(|mut f| f.read_to_end(&mut text))
        .map_err(|e| io("read", from, e))?;
    let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines.sort_unstable();
    let mut out = BufWriter::new(File::create(to).map_err(|e| io("create", to, e))?);
    for l in lines {
        out.write_all(l)
            .and_then(|_| out.write_all(b"\n"))
            .map_err(|e| io("write", to, e))?;
    }
    out.flush().map_err(|e| io("write", to, e))?;
    if fsync {
        out.get_ref().sync_data().map_err(|e| io("sync", to, e))?;
    }
    Ok(())
}

impl Drop for FileSink {
    /// Lines not yet written out are dropped, not flushed: a sink that
    /// ends without `finish` or a snapshot was stopped, and what it wrote
    /// since its last checkpoint is discarded on restore anyway. Flushing
    /// them late could write into a file that a newer run of the task
    /// (on another task manager) owns by now.
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            let _ = open.out.into_parts();
        }
    }
}

impl SinkWriter for FileSink {
    fn write(&mut self, batch: &[u8]) -> Result<(), Failure> {
        let open = self.writer()?;
        for rec in Reader::new(batch) {
            let rec = rec.map_err(|e| Failure::internal(e.to_string()))?;
            open.out
                .write_all(rec.value)
                .and_then(|_| open.out.write_all(b"\n"))
                .map_err(|e| io("write", &open.path, e))?;
            open.len += rec.value.len() as u64 + 1;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Failure> {
        if self.open.is_none() && self.single_file && !self.base.exists() {
            // A bounded job that wrote nothing still leaves its (empty) output.
            self.writer()?;
        }
        self.roll()?;
        if self.commit_on_finish {
            self.commit_covered(None)?;
        }
        Ok(())
    }

    fn snapshot(&mut self, id: CheckpointId) -> Result<Option<serde_json::Value>, Failure> {
        if !self.single_file && self.open.as_ref().is_some_and(|o| o.len > 0) {
            self.roll()?; // one part per checkpoint
        }
        let fsync = self.fsync;
        let in_progress = match &mut self.open {
            Some(open) => {
                Self::sync(open, fsync)?;
                if !open.named {
                    self.unsynced_names = true;
                }
                Some((open.path.clone(), open.len))
            }
            None => None,
        };
        if self.unsynced_names {
            self.sync_names()?;
        }
        for (c, _) in &mut self.pending {
            c.get_or_insert(id);
        }
        let state = SinkState {
            in_progress,
            pending: self.pending.iter().map(|(_, p)| p.clone()).collect(),
            next_part: self.next_part,
        };
        Ok(Some(serde_json::to_value(state).expect("serializable")))
    }

    fn commit(&mut self, id: CheckpointId) -> Result<(), Failure> {
        self.commit_covered(Some(id))
    }

    fn restore(&mut self, states: &[SubtaskState], _files: &SinkFiles) -> Result<(), Failure> {
        let rescaled = states.iter().any(|s| s.parallelism != self.parallelism);
        if rescaled
            && states
                .iter()
                .any(|s| (s.parallelism == 1) != self.single_file)
        {
            return Err(Failure::user(format!(
                "the file sink wrote {} at parallelism 1 and a directory of parts otherwise; it \
                 cannot restore across a change between the two (restore at parallelism {})",
                self.base.display(),
                states[0].parallelism
            )));
        }
        let mut parsed = Vec::with_capacity(states.len());
        for st in states {
            let s: SinkState = serde_json::from_value(st.value.clone())
                .map_err(|e| Failure::internal(format!("file sink state: {e}")))?;
            // After a rescale, part numbers continue after every old
            // subtask's, so that no new part reuses an old name.
            if rescaled || st.belongs_to(self.subtask, self.parallelism) {
                self.next_part = self.next_part.max(s.next_part);
            }
            parsed.push((st, s));
        }
        for (st, s) in parsed {
            if !st.belongs_to(self.subtask, self.parallelism) {
                continue;
            }
            for p in &s.pending {
                commit(p)?;
            }
            let Some((path, len)) = &s.in_progress else {
                continue;
            };
            // A part finished after the checkpoint is not pending in it;
            // drop its pending file (it may share the in-progress data).
            remove_if_present(&hidden(&visible(path), "pending"))?;
            let f = match OpenOptions::new().write(true).open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && *len == 0 => continue,
                Err(e) => {
                    return Err(Failure::external(format!(
                        "file sink: cannot reopen the in-progress file {} of the checkpoint: \
                         {e}; it was removed, or a later run already committed it",
                        path.display()
                    )));
                }
            };
            let path: &PathBuf = path;
            // Keep exactly what the checkpoint covered.
            f.set_len(*len).map_err(|e| io("truncate", path, e))?;
            if !rescaled && st.subtask == self.subtask && self.open.is_none() {
                let mut out = BufWriter::with_capacity(1 << 20, f);
                out.seek(SeekFrom::End(0))
                    .map_err(|e| io("seek", path, e))?;
                self.open = Some(Open {
                    path: path.clone(),
                    out,
                    len: *len,
                    named: true,
                });
            } else {
                if self.fsync {
                    f.sync_data().map_err(|e| io("sync", path, e))?;
                }
                drop(f);
                // Rescaled: the old file becomes a committed part of its own.
                commit(&Pending {
                    pending: path.clone(),
                    target: visible(path),
                })?;
            }
        }
        self.sync_names()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_frame::{Record, Writer};

    fn own(value: serde_json::Value, parallelism: u32) -> SubtaskState {
        SubtaskState {
            subtask: 0,
            parallelism,
            value,
        }
    }

    fn batch(lines: &[&str]) -> Vec<u8> {
        let mut w = Writer::new();
        for l in lines {
            w.push(&Record::value(l.as_bytes()));
        }
        w.into_bytes()
    }

    fn sink(path: &Path, p: u32, sub: u32, sort: bool) -> FileSink {
        FileSink::open(
            FileSinkOptions {
                path: path.display().to_string(),
                sort_lines: sort,
            },
            &SinkContext::new(sub, p, "sink", std::env::temp_dir()),
        )
        .unwrap()
    }

    #[test]
    fn single_file_commits_only_on_checkpoint_completion() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.txt");
        let mut s = sink(&out, 1, 0, true);
        s.write(&batch(&["b", "a"])).unwrap();
        let st = s.snapshot(CheckpointId(1)).unwrap().unwrap();
        s.write(&batch(&["c"])).unwrap();
        s.finish().unwrap();
        assert!(
            !out.exists(),
            "nothing committed before the checkpoint completes"
        );
        s.snapshot(CheckpointId(2)).unwrap();
        s.commit(CheckpointId(2)).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a\nb\nc\n");

        // Crash after checkpoint 1: restoring keeps exactly what it covered.
        std::fs::remove_file(&out).unwrap();
        let mut r = sink(&out, 1, 0, true);
        // The in-progress file of the crashed run, with extra bytes.
        let (path, len) = serde_json::from_value::<SinkState>(st.clone())
            .unwrap()
            .in_progress
            .unwrap();
        std::fs::write(&path, "b\na\nc\nEXTRA").unwrap();
        r.restore(&[own(st, 1)], &SinkFiles::new()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        r.write(&batch(&["d"])).unwrap();
        r.finish().unwrap();
        r.snapshot(CheckpointId(3)).unwrap();
        r.commit(CheckpointId(3)).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a\nb\nd\n");
    }

    #[test]
    fn crash_after_the_last_part_finished_restores_the_checkpoint_before() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.txt");
        for sort in [false, true] {
            let mut s = sink(&out, 1, 0, sort);
            s.write(&batch(&["b", "a"])).unwrap();
            let st = s.snapshot(CheckpointId(1)).unwrap().unwrap();
            s.commit(CheckpointId(1)).unwrap();
            s.write(&batch(&["c"])).unwrap();
            // Input ends; the crash comes before the final checkpoint.
            s.finish().unwrap();
            drop(s);
            assert!(!out.exists());
            let mut r = sink(&out, 1, 0, sort);
            r.restore(&[own(st, 1)], &SinkFiles::new()).unwrap();
            r.write(&batch(&["d"])).unwrap();
            r.finish().unwrap();
            r.snapshot(CheckpointId(2)).unwrap();
            r.commit(CheckpointId(2)).unwrap();
            let want = if sort { "a\nb\nd\n" } else { "b\na\nd\n" };
            assert_eq!(std::fs::read_to_string(&out).unwrap(), want);
            let left: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(
                left,
                vec![std::ffi::OsString::from("out.txt")],
                "no hidden files stay"
            );
            std::fs::remove_file(&out).unwrap();
        }
    }

    #[test]
    fn directory_parts_roll_per_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("parts");
        let mut s = sink(&out, 2, 1, false);
        s.write(&batch(&["x"])).unwrap();
        s.snapshot(CheckpointId(1)).unwrap();
        s.write(&batch(&["y"])).unwrap();
        s.snapshot(CheckpointId(2)).unwrap();
        s.commit(CheckpointId(1)).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("part-1-0")).unwrap(),
            "x\n"
        );
        assert!(!out.join("part-1-1").exists());
        s.commit(CheckpointId(2)).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("part-1-1")).unwrap(),
            "y\n"
        );
    }

    fn committed(dir: &Path) -> Vec<String> {
        let mut lines: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .flat_map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn every_subtask_restores_its_own_state() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("parts");
        // Subtask 1 of 2 commits a part, snapshots another, and dies after
        // writing more.
        let mut s = sink(&out, 2, 1, false);
        s.write(&batch(&["a"])).unwrap();
        s.snapshot(CheckpointId(1)).unwrap();
        s.commit(CheckpointId(1)).unwrap();
        s.write(&batch(&["b"])).unwrap();
        let st = s.snapshot(CheckpointId(2)).unwrap().unwrap();
        s.write(&batch(&["lost"])).unwrap();
        s.snapshot(CheckpointId(3)).unwrap();
        drop(s);
        // The restored subtask 1 gets its own state (and only it).
        let mut r = sink(&out, 2, 1, false);
        let own = SubtaskState {
            subtask: 1,
            parallelism: 2,
            value: st,
        };
        r.restore(&[own], &SinkFiles::new()).unwrap();
        r.write(&batch(&["c"])).unwrap();
        r.snapshot(CheckpointId(3)).unwrap();
        r.commit(CheckpointId(3)).unwrap();
        assert_eq!(committed(&out), ["a", "b", "c"]);
    }

    #[test]
    fn rescaling_never_reuses_a_part_name() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("parts");
        // Three subtasks write two parts each.
        let mut states = Vec::new();
        for sub in 0..3 {
            let mut s = sink(&out, 3, sub, false);
            for (i, l) in ["x", "y"].iter().enumerate() {
                s.write(&batch(&[&format!("{sub}{l}")])).unwrap();
                let v = s.snapshot(CheckpointId(i as u64 + 1)).unwrap().unwrap();
                s.commit(CheckpointId(i as u64 + 1)).unwrap();
                if i == 1 {
                    states.push(SubtaskState {
                        subtask: sub,
                        parallelism: 3,
                        value: v,
                    });
                }
            }
        }
        // Down to two, then up to three again: new subtask 2 must not write
        // over the parts old subtask 2 committed.
        let mut down = Vec::new();
        for sub in 0..2 {
            let mut s = sink(&out, 2, sub, false);
            s.restore(&states, &SinkFiles::new()).unwrap();
            s.write(&batch(&[&format!("down{sub}")])).unwrap();
            let v = s.snapshot(CheckpointId(3)).unwrap().unwrap();
            s.commit(CheckpointId(3)).unwrap();
            down.push(SubtaskState {
                subtask: sub,
                parallelism: 2,
                value: v,
            });
        }
        for sub in 0..3 {
            let mut s = sink(&out, 3, sub, false);
            s.restore(&down, &SinkFiles::new()).unwrap();
            s.write(&batch(&[&format!("up{sub}")])).unwrap();
            s.snapshot(CheckpointId(4)).unwrap();
            s.commit(CheckpointId(4)).unwrap();
        }
        assert_eq!(
            committed(&out),
            [
                "0x", "0y", "1x", "1y", "2x", "2y", "down0", "down1", "up0", "up1", "up2"
            ]
        );
    }
}
