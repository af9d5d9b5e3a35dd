//! Checkpoint storage: any `object_store` URL — `file://` (or a plain
//! path), `s3://bucket/prefix` (MinIO and other S3-compatible servers with
//! an endpoint and path-style access), or `memory://name` (in this process).

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use weir_core::Config;

/// A storage operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    pub message: String,
    /// The object does not exist.
    pub not_found: bool,
}

impl StorageError {
    fn new(message: impl Into<String>) -> Self {
        StorageError {
            message: message.into(),
            not_found: false,
        }
    }
}

/// S3 settings, from configuration (Flink's `s3.*` keys) or the
/// environment (`AWS_*`).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub path_style: bool,
    pub allow_http: bool,
    /// Skip syncing local files and directories (`weir.io.fsync: false`).
    pub no_fsync: bool,
}

impl S3Options {
    pub fn from_config(c: &Config) -> Self {
        S3Options {
            endpoint: c.s3_endpoint.clone(),
            region: c.s3_region.clone(),
            access_key: c.s3_access_key.as_ref().map(|s| s.0.clone()),
            secret_key: c.s3_secret_key.as_ref().map(|s| s.0.clone()),
            path_style: c.s3_path_style,
            allow_http: c.s3_allow_http,
            no_fsync: !c.fsync,
        }
    }
}

/// A storage location: an object store and a prefix in it.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
    /// The directory of a local storage (empty directories are removed).
    local: Option<std::path::PathBuf>,
    /// Local writes are synced, with the directories that name them.
    fsync: bool,
}

fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

/// The process-wide runtime that storage I/O runs on.
pub fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-io")
            .enable_all()
            .build()
            .expect("starting the I/O runtime")
    })
}

/// Runs a storage future from synchronous code (task threads, the CLI).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    io_runtime().block_on(f)
}

/// Installs the TLS crypto provider HTTP clients of this process use.
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Storage {
    /// Opens the location `url`.
    pub fn open(url: &str, s3: &S3Options) -> Result<Storage, StorageError> {
        // `file:///` is the root directory, not a relative `file:`.
        let url = match url.strip_prefix("file://") {
            Some("") => {
                return Err(StorageError::new(
                    "'file://' names no directory: use file:///absolute/path",
                ));
            }
            Some(p) if p.trim_matches('/').is_empty() => "file:///",
            _ => url.trim_end_matches('/'),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            install_crypto();
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StorageError::new(format!(
                    "'{url}' names no bucket: use s3://bucket/path"
                )));
            }
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(e) = &s3.endpoint {
                b = b.with_endpoint(e);
            }
            let endpoint = s3
                .endpoint
                .clone()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
                .or_else(|| std::env::var("AWS_ENDPOINT").ok());
            let allow_http = s3.allow_http
                || endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://"));
            b = b
                .with_allow_http(allow_http)
                .with_virtual_hosted_style_request(!s3.path_style);
            b = b.with_region(
                s3.region
                    .clone()
                    .or_else(|| std::env::var("AWS_REGION").ok())
                    .unwrap_or_else(|| "us-east-1".into()),
            );
            if let Some(k) = &s3.access_key {
                b = b.with_access_key_id(k);
            }
            if let Some(k) = &s3.secret_key {
                b = b.with_secret_access_key(k);
            }
            let store = b.build().map_err(|e| {
                StorageError::new(format!(
                    "cannot use {url}: {e}; check s3.endpoint, s3.access-key and s3.secret-key \
                     (or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
                ))
            })?;
            return Ok(Storage {
                store: Arc::new(store),
                prefix: prefix.to_owned(),
                url: url.to_owned(),
                local: None,
                fsync: false,
            });
        }
        if let Some(name) = url.strip_prefix("memory://") {
            let (name, prefix) = name.split_once('/').unwrap_or((name, ""));
            let store = memory_stores()
                .lock()
                .expect("memory store registry")
                .entry(name.to_owned())
                .or_default()
                .clone();
            return Ok(Storage {
                store,
                prefix: prefix.to_owned(),
                url: url.to_owned(),
                local: None,
                fsync: false,
            });
        }
        let path = match url.strip_prefix("file://") {
            Some("/") => "/",
            Some(p) => p,
            None => url,
        };
        if path.contains("://") {
            return Err(StorageError::new(format!(
                "unsupported storage '{url}': use file://, s3:// or memory://"
            )));
        }
        let abs = std::path::absolute(path)
            .map_err(|e| StorageError::new(format!("bad path {path}: {e}")))?;
        std::fs::create_dir_all(&abs)
            .map_err(|e| StorageError::new(format!("cannot create {}: {e}", abs.display())))?;
        let store = LocalFileSystem::new_with_prefix(&abs)
            .map_err(|e| StorageError::new(format!("cannot use {}: {e}", abs.display())))?;
        Ok(Storage {
            store: Arc::new(store),
            prefix: String::new(),
            url: format!("file://{}", abs.display()),
            local: Some(abs),
            fsync: !s3.no_fsync,
        })
    }

    fn path(&self, rel: &str) -> Path {
        let full = if self.prefix.is_empty() {
            rel.to_owned()
        } else if rel.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}/{rel}", self.prefix)
        };
        Path::from(full)
    }

    /// The URL of `rel` in this storage, for messages.
    pub fn url_of(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{rel}", self.url)
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn err(&self, op: &str, rel: &str, e: object_store::Error) -> StorageError {
        let not_found = matches!(e, object_store::Error::NotFound { .. });
        StorageError {
            message: format!("cannot {op} {}: {e}", self.url_of(rel)),
            not_found,
        }
    }

    /// Writes an object (atomically: readers see all of it or nothing).
    /// On local storage the file and every directory naming it are synced
    /// before this returns, so that a power loss cannot lose a checkpoint
    /// a sink has committed.
    pub async fn put(&self, rel: &str, bytes: Bytes) -> Result<(), StorageError> {
        if let (Some(root), true) = (&self.local, self.fsync) {
            let root = root.clone();
            let rel = rel.to_owned();
            let url = self.url_of(&rel);
            return tokio::task::spawn_blocking(move || durable_put(&root, &rel, &bytes))
                .await
                .map_err(|e| StorageError::new(format!("cannot write {url}: {e}")))?
                .map_err(|e| StorageError::new(format!("cannot write {url}: {e}")));
        }
        self.store
            .put(&self.path(rel), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.err("write", rel, e))
    }

    /// Writes the local file `src` as an object, as [`Storage::put`] does,
    /// without holding it in memory: copied in chunks to local storage,
    /// and uploaded in parts of [`PART_BYTES`] to object stores when it is
    /// larger than one. Returns its size and CRC-32C.
    pub async fn put_file(
        &self,
        rel: &str,
        src: &std::path::Path,
    ) -> Result<(u64, u32), StorageError> {
        let url = self.url_of(rel);
        let read_err = |e: std::io::Error| {
            StorageError::new(format!("cannot read {} for {url}: {e}", src.display()))
        };
        if let (Some(root), true) = (&self.local, self.fsync) {
            let (root, rel, src) = (root.clone(), rel.to_owned(), src.to_owned());
            let url = url.clone();
            return tokio::task::spawn_blocking(move || {
                let mut sum = (0u64, 0u32);
                durable_put_with(&root, &rel, |f| {
                    let mut from = std::fs::File::open(&src).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("reading {}: {e}", src.display()))
                    })?;
                    sum = copy_summed(&mut from, f)?;
                    Ok(())
                })
                .map(|()| sum)
            })
            .await
            .map_err(|e| StorageError::new(format!("cannot write {url}: {e}")))?
            .map_err(|e| StorageError::new(format!("cannot write {url}: {e}")));
        }
        let len = tokio::fs::metadata(src).await.map_err(read_err)?.len();
        if len <= PART_BYTES as u64 {
            let bytes = tokio::fs::read(src).await.map_err(read_err)?;
            let sum = (bytes.len() as u64, crc32c::crc32c(&bytes));
            self.put(rel, bytes.into()).await?;
            return Ok(sum);
        }
        use tokio::io::AsyncReadExt;
        let upload = self
            .store
            .put_multipart(&self.path(rel))
            .await
            .map_err(|e| self.err("write", rel, e))?;
        let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut f = tokio::fs::File::open(src).await.map_err(read_err)?;
        let mut buf = vec![0u8; 1 << 20];
        let (mut size, mut crc) = (0u64, 0u32);
        let copied: Result<(), StorageError> = async {
            loop {
                let n = f.read(&mut buf).await.map_err(read_err)?;
                if n == 0 {
                    return Ok(());
                }
                crc = crc32c::crc32c_append(crc, &buf[..n]);
                size += n as u64;
                w.wait_for_capacity(2)
                    .await
                    .map_err(|e| self.err("write", rel, e))?;
                w.write(&buf[..n]);
            }
        }
        .await;
        if let Err(e) = copied {
            let _ = w.abort().await;
            return Err(e);
        }
        // A failed completion aborts the upload, leaving no parts behind.
        w.finish().await.map_err(|e| self.err("write", rel, e))?;
        Ok((size, crc))
    }

    pub async fn get(&self, rel: &str) -> Result<Bytes, StorageError> {
        let r = self
            .store
            .get(&self.path(rel))
            .await
            .map_err(|e| self.err("read", rel, e))?;
        r.bytes().await.map_err(|e| self.err("read", rel, e))
    }

    pub async fn delete(&self, rel: &str) -> Result<(), StorageError> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", rel, e)),
        }
    }

    /// Relative paths of every object under `rel`.
    pub async fn list(&self, rel: &str) -> Result<Vec<String>, StorageError> {
        let base = self.path(rel);
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let items: Vec<_> = self
            .store
            .list(Some(&base))
            .try_collect()
            .await
            .map_err(|e| self.err("list", rel, e))?;
        Ok(items
            .into_iter()
            .map(|m| {
                let p = m.location.to_string();
                p.strip_prefix(&strip).map(str::to_owned).unwrap_or(p)
            })
            .collect())
    }

    /// Bytes of every object under `rel`.
    pub async fn size_of(&self, rel: &str) -> Result<u64, StorageError> {
        let items: Vec<_> = self
            .store
            .list(Some(&self.path(rel)))
            .try_collect()
            .await
            .map_err(|e| self.err("list", rel, e))?;
        Ok(items.iter().map(|m| m.size).sum())
    }

    /// Deletes every object under `rel`.
    pub async fn delete_dir(&self, rel: &str) -> Result<(), StorageError> {
        for p in self.list(rel).await? {
            self.delete(&p).await?;
        }
        if let Some(root) = &self.local {
            let dir = root.join(rel);
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StorageError::new(format!(
                        "cannot delete {}: {e}",
                        dir.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Writes an object only if none is there: true when this call wrote
    /// it, false when one was there already (a conditional write: of two
    /// writers racing, exactly one gets true).
    pub async fn create(&self, rel: &str, bytes: Bytes) -> Result<bool, StorageError> {
        let opts = object_store::PutOptions::from(object_store::PutMode::Create);
        match self
            .store
            .put_opts(&self.path(rel), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.err("create", rel, e)),
        }
    }

    pub async fn exists(&self, rel: &str) -> Result<bool, StorageError> {
        match self.store.head(&self.path(rel)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err("check", rel, e)),
        }
    }
}

/// The size of the parts of large files uploaded to object stores (S3 takes
/// parts of 5 MiB and more).
pub const PART_BYTES: usize = 8 << 20;

/// Copies `src` into `dst`; returns the bytes copied and their CRC-32C.
fn copy_summed(
    src: &mut impl std::io::Read,
    dst: &mut impl std::io::Write,
) -> std::io::Result<(u64, u32)> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut size, mut crc) = (0u64, 0u32);
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok((size, crc)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        size += n as u64;
        dst.write_all(&buf[..n])?;
    }
}

fn durable_put(root: &std::path::Path, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    durable_put_with(root, rel, |f| f.write_all(bytes))
}

/// Writes `root/rel` durably with `write`: into a synced temporary file
/// renamed into place, with the directories it creates and the one holding
/// it synced.
fn durable_put_with(
    root: &std::path::Path,
    rel: &str,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let path = root.join(rel);
    if !path.starts_with(root) || rel.split('/').any(|p| p == "..") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path leaves the storage directory",
        ));
    }
    let dir = path.parent().unwrap_or(root);
    // The directories this write creates, outermost first.
    let mut created = Vec::new();
    let mut d = dir;
    while !d.exists() && d.starts_with(root) && d != root {
        created.push(d.to_owned());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    for c in created.iter().rev() {
        weir_core::fs::sync_parent(c)?;
    }
    weir_core::fs::write_atomic_with(&path, true, write)
}

/// Splits a user-given snapshot location (a `chk-<n>` or savepoint
/// directory, or its `_metadata` file) into a storage root two levels up
/// and the directory relative to it, so that `../shared` files resolve.
pub fn split_location(location: &str) -> Result<(String, String), StorageError> {
    let loc = location.trim_end_matches('/');
    let loc = loc.strip_suffix("/_metadata").unwrap_or(loc);
    let (scheme, path) = match loc.split_once("://") {
        Some((s, p)) => (format!("{s}://"), p.to_owned()),
        None => {
            let abs = std::path::absolute(loc)
                .map_err(|e| StorageError::new(format!("bad path {loc}: {e}")))?;
            ("file://".to_owned(), abs.display().to_string())
        }
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let leading = if path.starts_with('/') { "/" } else { "" };
    let keep = if scheme == "file://" {
        2
    } else {
        2.min(parts.len().saturating_sub(1))
    };
    if parts.len() < keep + 1 && scheme != "file://" {
        return Err(StorageError::new(format!(
            "'{location}' is not a snapshot location"
        )));
    }
    let cut = parts.len().saturating_sub(keep);
    let root = format!("{scheme}{leading}{}", parts[..cut].join("/"));
    let rel = parts[cut..].join("/");
    Ok((root, rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_without_a_path_never_mean_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        assert!(Storage::open("file://", &S3Options::default()).is_err());
        let root = Storage::open("file:///", &S3Options::default()).unwrap();
        assert!(
            root.local.as_deref() == Some(std::path::Path::new("/")),
            "{root:?}"
        );
        assert!(!cwd.join("file:").exists());
    }

    #[test]
    fn files_are_written_whole_in_chunks_and_parts() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("big.sst");
        // More than two parts, not a multiple of the chunk size.
        let data: Vec<u8> = (0..PART_BYTES * 2 + 12_345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        std::fs::write(&src, &data).unwrap();
        let small = dir.path().join("small.sst");
        std::fs::write(&small, b"small").unwrap();
        let out = tempfile::tempdir().unwrap();
        for url in [
            out.path().display().to_string(),
            "memory://unit-test/files".into(),
        ] {
            let s = Storage::open(&url, &S3Options::default()).unwrap();
            block_on(async {
                let sum = s.put_file("job/shared/big.sst", &src).await.unwrap();
                assert_eq!(sum, (data.len() as u64, crc32c::crc32c(&data)), "{url}");
                assert!(s.get("job/shared/big.sst").await.unwrap() == data, "{url}");
                let sum = s.put_file("job/shared/small.sst", &small).await.unwrap();
                assert_eq!(sum, (5, crc32c::crc32c(b"small")));
                assert_eq!(&s.get("job/shared/small.sst").await.unwrap()[..], b"small");
                let e = s
                    .put_file("job/x", &dir.path().join("missing"))
                    .await
                    .unwrap_err();
                assert!(e.to_string().contains("missing"), "{e}");
                assert!(!s.exists("job/x").await.unwrap());
            });
        }
        // Nothing half-written is left beside the files.
        let names: Vec<String> = std::fs::read_dir(out.path().join("job/shared"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn local_and_memory_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for url in [
            dir.path().display().to_string(),
            "memory://unit-test/prefix".into(),
        ] {
            let s = Storage::open(&url, &S3Options::default()).unwrap();
            block_on(async {
                s.put("job/chk-1/_metadata", Bytes::from_static(b"m"))
                    .await
                    .unwrap();
                s.put("job/shared/a.sst", Bytes::from_static(b"a"))
                    .await
                    .unwrap();
                assert_eq!(&s.get("job/chk-1/_metadata").await.unwrap()[..], b"m");
                let mut l = s.list("job").await.unwrap();
                l.sort();
                assert_eq!(l, vec!["job/chk-1/_metadata", "job/shared/a.sst"]);
                s.delete_dir("job/chk-1").await.unwrap();
                assert!(!s.exists("job/chk-1/_metadata").await.unwrap());
                let e = s.get("job/chk-1/_metadata").await.unwrap_err();
                assert!(e.not_found, "{e}");
                assert!(e.message.contains("chk-1/_metadata"), "{e}");
            });
        }
    }

    #[test]
    fn local_writes_are_synced_and_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        durable_put(dir.path(), "job/chk-1/_metadata", b"m").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("job/chk-1/_metadata")).unwrap(),
            b"m"
        );
        assert!(durable_put(dir.path(), "../escape", b"x").is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("job/chk-1"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "no temporary file stays: {left:?}");
    }

    #[test]
    fn locations_split_two_levels_up() {
        assert_eq!(
            split_location("/data/cp/abc/chk-3/_metadata").unwrap(),
            ("file:///data/cp".into(), "abc/chk-3".into())
        );
        assert_eq!(
            split_location("s3://bucket/cp/abc/chk-3").unwrap(),
            ("s3://bucket/cp".into(), "abc/chk-3".into())
        );
        assert_eq!(
            split_location("s3://bucket/savepoint-abc-1").unwrap(),
            ("s3://bucket".into(), "savepoint-abc-1".into())
        );
        assert!(Storage::open("ftp://x", &S3Options::default()).is_err());
    }
}
