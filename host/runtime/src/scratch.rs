//! A process's own scratch directory: RocksDB instances, snapshots on their
//! way to the checkpoint storage, in-flight records, downloaded modules.
//!
//! The directory is `<base>/<kind>-<pid>`, and beside it `<kind>-<pid>.lock`,
//! which the process holds locked (`flock`) for as long as it runs. The
//! directory is removed when the [`ScratchDir`] is dropped; a process that is
//! killed cannot do that, so whoever claims a scratch directory under the
//! same base first removes every `weir-…` directory whose lock nobody holds.
//! A lock is the operating system's, so it is released however its holder
//! dies, and a directory of a running process is never taken.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// A scratch directory held by this process; removed on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

impl ScratchDir {
    /// Creates `<base>/<kind>-<pid>` after removing the scratch directories
    /// under `base` left by processes that ended without removing their own.
    /// `kind` names the process, e.g. `weir-tm`; it must start with `weir`.
    /// Should a live process hold that name (another pid namespace sharing
    /// `base`), a random suffix is added.
    pub fn claim(base: &Path, kind: &str) -> io::Result<ScratchDir> {
        debug_assert!(kind.starts_with("weir"));
        std::fs::create_dir_all(base)?;
        sweep(base);
        let pid = std::process::id();
        let mut name = format!("{kind}-{pid}");
        let (mut busy, mut renamed) = (0, 0);
        loop {
            match Self::try_claim(base, &name) {
                Ok(Some(dir)) => return Ok(dir),
                // Held: for a moment by another process's sweep (which then
                // removes the file), or by a live process of this name.
                Ok(None) if busy < 20 => {
                    busy += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                }
                // Something of another user's, or no lock file at all, has
                // the name: another name, a few times.
                Err(e) if renamed >= 5 => return Err(e),
                Ok(None) | Err(_) => {}
            }
            name = format!("{kind}-{pid}-{:08x}", rand::random::<u32>());
            (busy, renamed) = (0, renamed + 1);
            if renamed > 5 {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("every name tried under {} is held", base.display()),
                ));
            }
        }
    }

    /// Takes the name's lock and makes its directory; None while another
    /// process holds the lock.
    fn try_claim(base: &Path, name: &str) -> io::Result<Option<ScratchDir>> {
        let lock_path = base.join(format!("{name}.lock"));
        let Some(lock) = take_lock(&lock_path, true)? else {
            return Ok(None);
        };
        // Left by an earlier process of this name.
        let path = base.join(name);
        if path.symlink_metadata().is_ok() {
            remove_tree(&path)?;
        }
        create_private_dir(&path)?;
        Ok(Some(ScratchDir {
            path,
            lock_path,
            _lock: lock,
        }))
    }

    /// Removes the directory, trying a few times while the process's last
    /// writers finish; the lock file goes only with the directory (and
    /// while still locked), so what remains is swept by the next process.
    fn remove(&self) {
        for _ in 0..5 {
            if remove_tree(&self.path).is_ok() {
                let _ = std::fs::remove_file(&self.lock_path);
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Opens (creating it if need be, with `create`) and locks the lock file at
/// `path`: None while another process holds it. Never follows a link, nor
/// blocks on a FIFO, planted there.
fn take_lock(path: &Path, create: bool) -> io::Result<Option<File>> {
    let mut options = OpenOptions::new();
    options.create(create).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .mode(0o600);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a file",
            path.display()
        )));
    }
    match file.try_lock() {
        // A sweep may have removed the file between the open and the lock:
        // then this lock guards nothing, and the caller tries again.
        Ok(()) if same_file(&file, path) => Ok(Some(file)),
        Ok(()) | Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// A directory only this user can read: it holds the tasks' state.
fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Removes every `weir-….lock` under `base` that can be locked, with its
/// directory. Errors are skipped: a directory this process cannot remove
/// (another user's, say) is not its to remove.
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stem) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".lock"))
            .filter(|s| s.starts_with("weir-"))
        else {
            continue;
        };
        let lock_path = entry.path();
        let Ok(Some(_lock)) = take_lock(&lock_path, false) else {
            continue;
        };
        let dir = base.join(stem);
        if remove_tree(&dir).is_ok() {
            let _ = std::fs::remove_file(&lock_path);
        }
    }
}

/// Removes a directory tree, or the link or file at `path`; never follows a
/// link out of `path`.
fn remove_tree(path: &Path) -> io::Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), path.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_directory_is_removed_on_drop_and_a_dead_ones_by_the_next_claim() {
        let base = tempfile::tempdir().unwrap();
        let held = ScratchDir::claim(base.path(), "weir-tm").unwrap();
        std::fs::write(held.path().join("f"), b"x").unwrap();
        // A directory whose lock nobody holds: its process died.
        let dead = base.path().join("weir-999999999");
        std::fs::create_dir_all(dead.join("job/db")).unwrap();
        std::fs::write(base.path().join("weir-999999999.lock"), b"").unwrap();
        // Not ours: no lock file, or not a weir name.
        let unlocked = base.path().join("weir-123");
        std::fs::create_dir(&unlocked).unwrap();
        let other = base.path().join("other-1");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(base.path().join("other-1.lock"), b"").unwrap();

        // A held lock (here another handle in this process) keeps its
        // directory: flock locks belong to the open file, so a second open
        // cannot take it.
        let second = ScratchDir::claim(base.path(), "weir-session").unwrap();
        assert!(!dead.exists(), "a dead process's directory is swept");
        assert!(!base.path().join("weir-999999999.lock").exists());
        assert!(held.path().join("f").exists(), "a live one stays");
        assert!(unlocked.exists() && other.exists());

        let path = held.path().to_owned();
        drop(held);
        assert!(!path.exists());
        assert!(second.path().exists());
    }

    #[test]
    fn a_name_held_by_a_live_process_gets_a_suffix() {
        let base = tempfile::tempdir().unwrap();
        let first = ScratchDir::claim(base.path(), "weir").unwrap();
        // The same pid: as a process in another pid namespace would be.
        let second = ScratchDir::claim(base.path(), "weir").unwrap();
        assert_ne!(first.path(), second.path());
        assert!(first.path().is_dir() && second.path().is_dir());
        let name = second.path().file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with(&format!("weir-{}-", std::process::id())),
            "{name}"
        );
        drop(second);
        assert!(first.path().is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = first.path().metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "only its user reads it: {mode:o}");
        }
    }

    #[test]
    fn things_planted_under_the_name_neither_block_nor_stop_a_claim() {
        let base = tempfile::tempdir().unwrap();
        let name = format!("weir-tm-{}", std::process::id());
        // A FIFO under the lock's name would block a plain open; a
        // directory cannot be locked; another FIFO is seen by the sweep.
        let fifo = |p: &Path| {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: `c` is a NUL-terminated path that outlives the call.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        };
        fifo(&base.path().join(format!("{name}.lock")));
        fifo(&base.path().join("weir-1.lock"));
        let d = ScratchDir::claim(base.path(), "weir-tm").unwrap();
        assert!(d.path().is_dir());
        assert_ne!(d.path(), base.path().join(&name));
        drop(d);
        std::fs::remove_file(base.path().join(format!("{name}.lock"))).unwrap();
        std::fs::create_dir(base.path().join(format!("{name}.lock"))).unwrap();
        assert!(ScratchDir::claim(base.path(), "weir-tm").is_ok());
    }

    #[test]
    fn a_link_in_place_of_a_directory_is_removed_not_followed() {
        let base = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        std::fs::write(victim.path().join("keep"), b"x").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(victim.path(), base.path().join("weir-999999998")).unwrap();
            std::fs::write(base.path().join("weir-999999998.lock"), b"").unwrap();
            let _s = ScratchDir::claim(base.path(), "weir").unwrap();
            assert!(victim.path().join("keep").exists());
            assert!(!base.path().join("weir-999999998").exists());
        }
    }
}
