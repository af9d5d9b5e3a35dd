//! Local files: durability (syncing files and the directories that name
//! them) and confinement of paths to a folder, symbolic links included.

use std::io;
use std::path::{Component, Path, PathBuf};

/// `s` as a file name (and in ids): letters, digits and '-' kept, anything
/// else '_'.
pub fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Syncs a directory, so that the names created, renamed or removed in it
/// survive a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Syncs the directory holding `path`.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) => sync_dir(p),
        None => Ok(()),
    }
}

/// Writes `bytes` to `path` atomically and durably: a temporary file in
/// the same directory, synced, renamed over `path`, and the directory
/// synced (without `durable`, neither is synced).
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    use std::io::Write;
    write_atomic_with(path, durable, |f| f.write_all(bytes))
}

/// [`write_atomic`] with contents that `write` writes into the file.
pub fn write_atomic_with(
    path: &Path,
    durable: bool,
    write: impl FnOnce(&mut std::fs::File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand_u64()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        write(&mut f)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)?;
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// `p` with `.` and `..` resolved lexically; None if `..` climbs above
/// the root.
fn normal(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}

/// `path` with every symbolic link in it resolved: the longest part that
/// exists is resolved by the file system, the rest (which does not exist
/// yet, so holds no link) lexically.
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    let path = normal(path).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} climbs above the root", path.display()),
        )
    })?;
    let mut existing = path.clone();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(real) => {
                let mut out = real;
                for part in rest.iter().rev() {
                    out.push(part);
                }
                return Ok(out);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A dangling link: refuse rather than follow it later.
                if std::fs::symlink_metadata(&existing).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} is a link to nothing", existing.display()),
                    ));
                }
                let Some(name) = existing.file_name().map(ToOwned::to_owned) else {
                    return Err(e);
                };
                rest.push(name);
                if !existing.pop() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether `path` lies inside `root`, after resolving `.`, `..` and
/// symbolic links in both (both must be absolute).
pub fn within(path: &Path, root: &Path) -> bool {
    if !path.is_absolute() || !root.is_absolute() {
        return false;
    }
    match (resolve(path), resolve(root)) {
        (Ok(p), Ok(r)) => p.starts_with(r),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_their_root_links_included() {
        let tmp = std::env::temp_dir().join(format!("weir-fs-test-{:x}", rand_u64()));
        let root = tmp.join("a");
        let other = tmp.join("b");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        assert!(within(&root.join("out.txt"), &root));
        assert!(within(&root.join("./x/../y/z.txt"), &root));
        assert!(!within(&root.join("../b/out.txt"), &root));
        assert!(!within(&tmp.join("ab"), &root));
        assert!(!within(Path::new("relative"), &root));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&other, root.join("escape")).unwrap();
            assert!(!within(&root.join("escape/out.txt"), &root));
            assert!(!within(&root.join("escape"), &root));
            std::os::unix::fs::symlink(tmp.join("nowhere"), root.join("dangling")).unwrap();
            assert!(!within(&root.join("dangling"), &root));
            std::os::unix::fs::symlink(root.join("in"), root.join("inner")).unwrap();
            std::fs::create_dir_all(root.join("in")).unwrap();
            assert!(within(&root.join("inner/x.txt"), &root));
        }
        write_atomic(&root.join("f"), b"abc", true).unwrap();
        assert_eq!(std::fs::read(root.join("f")).unwrap(), b"abc");
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
