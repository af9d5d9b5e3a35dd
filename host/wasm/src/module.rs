//! Loading a job component: checking what the bytes are, compiling with a
//! disk cache, checking the world it implements, and linking it.

use crate::WasmError;
use crate::bindings::JobWorldPre;
use crate::engine::WasmEngine;
use crate::store::StoreData;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use wasmtime::component::{Component, Linker, types::ComponentItem};

/// The interface every job component exports.
pub const JOB_INTERFACE: &str = "weir:stream/job@0.1.0";

/// What a file holds, judged by its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    Component,
    CoreModule,
    NotWasm,
}

/// Reads the WebAssembly header.
pub fn classify(bytes: &[u8]) -> WasmKind {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return WasmKind::NotWasm;
    }
    // Core modules have version 1 and layer 0; components have layer 1.
    match (
        bytes[4..6] == [1, 0],
        bytes[6..8] == [0, 0],
        bytes[6..8] == [1, 0],
    ) {
        (true, true, _) => WasmKind::CoreModule,
        (_, _, true) => WasmKind::Component,
        _ => WasmKind::NotWasm,
    }
}

/// The top-level imports of a component (interface names such as
/// `wasi:sockets/tcp@0.2.6`), read without compiling it.
pub fn component_imports(bytes: &[u8]) -> Result<Vec<String>, WasmError> {
    use wasmparser::{Parser, Payload};
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| WasmError::Compile(e.to_string()))?;
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            }
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| WasmError::Compile(e.to_string()))?;
                    names.push(import.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// Compiled components on disk, keyed by module hash and the engine's
/// compatibility hash.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    max_bytes: u64,
}

impl CompileCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CompileCache {
            dir: dir.into(),
            max_bytes: 2 << 30,
        }
    }

    /// Bounds what the cache takes on disk (`weir.compile-cache.max-size`).
    pub fn with_max_size(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Marks a compiled component as just used, for [`Self::trim`].
    fn touch(path: &Path) {
        if let Ok(f) = std::fs::File::options().write(true).open(path) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    /// Removes the components used least recently until the cache is within
    /// its size, never `keep` (the one just written, about to be loaded).
    fn trim(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        files.sort();
        evict(files, self.max_bytes, keep);
    }

    fn path(&self, module_hash: &str, engine: &WasmEngine) -> PathBuf {
        self.dir.join(format!(
            "{module_hash}-{}.cwasm",
            engine.compatibility_hash()
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `bytes` are compiled for `engine` in this cache.
    pub fn contains(&self, bytes: &[u8], engine: &WasmEngine) -> bool {
        self.path(&module_hash(bytes), engine).exists()
    }
}

/// Compiles `bytes` for `engine` into `cache` (what `weir compile-module`
/// does in a child process).
pub fn compile_to_cache(
    engine: &WasmEngine,
    bytes: &[u8],
    cache: &CompileCache,
) -> Result<(), WasmError> {
    match classify(bytes) {
        WasmKind::NotWasm => return Err(WasmError::NotWasm),
        WasmKind::CoreModule => return Err(WasmError::CoreModule),
        WasmKind::Component => {}
    }
    let compiled = engine
        .engine
        .precompile_component(bytes)
        .map_err(|e| WasmError::Compile(format!("{e:#}")))?;
    let path = cache.path(&module_hash(bytes), engine);
    write_atomically(&path, &compiled)
        .map_err(|e| WasmError::Compile(format!("cannot write the compiled module: {e}")))?;
    cache.trim(&path);
    Ok(())
}

/// Most address space a compiling child process may use.
const COMPILE_ADDRESS_SPACE: u64 = 16 << 30;

/// Compiles `bytes` into `cache` in a child process (`exe compile-module`),
/// so that compiling a hostile module can be stopped after `timeout` and
/// its memory is bounded, without touching this process.
pub fn compile_isolated(
    engine: &WasmEngine,
    bytes: &[u8],
    cache: &CompileCache,
    exe: &Path,
    timeout: std::time::Duration,
) -> Result<(), WasmError> {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("compile-module")
        .arg("--cache-dir")
        .arg(cache.dir())
        .arg("--cache-max-size")
        .arg(cache.max_bytes.to_string());
    if engine.options.fuel {
        cmd.arg("--fuel");
    }
    cmd.env("WEIR_LOG", "error")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: COMPILE_ADDRESS_SPACE,
                rlim_max: COMPILE_ADDRESS_SPACE,
            };
            libc::setrlimit(libc::RLIMIT_AS, &limit);
            Ok(())
        });
    }
    let spawn_err = |e: std::io::Error| {
        WasmError::Engine(format!(
            "cannot start {} compile-module: {e}",
            exe.display()
        ))
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn_err)? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let _ = writer.join();
            return Err(WasmError::CompileTimeout(timeout));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let _ = writer.join();
    let message = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let message = message.trim();
    let message = message.strip_prefix("error: ").unwrap_or(message);
    Err(WasmError::Compile(if message.is_empty() {
        format!("the compiler stopped ({status}); the module may need more memory than allowed")
    } else {
        message.to_owned()
    }))
}

/// A compiled, checked and linked job component.
pub struct JobModule {
    pub(crate) engine: WasmEngine,
    pub(crate) pre: JobWorldPre<StoreData>,
    hash: String,
    size: usize,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
    /// What memory snapshots of the job would lose (see
    /// [`crate::outside_memory`]).
    outside_memory: Vec<String>,
}

impl std::fmt::Debug for JobModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobModule")
            .field("hash", &self.hash)
            .field("size", &self.size)
            .finish()
    }
}

/// The content hash of a module.
pub fn module_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl JobModule {
    /// Loads a job from the bytes of a `.wasm` file.
    pub fn load(
        engine: &WasmEngine,
        bytes: &[u8],
        cache: Option<&CompileCache>,
    ) -> Result<JobModule, WasmError> {
        Self::load_with(engine, bytes, cache, true)
    }

    /// Loads a job whose component [`compile_isolated`] put into `cache`,
    /// never compiling it in this process: [`WasmError::NotCompiled`] when
    /// the cache has no usable copy (another compile's trim may have
    /// removed it; an unusable one is removed).
    pub fn load_precompiled(
        engine: &WasmEngine,
        bytes: &[u8],
        cache: &CompileCache,
    ) -> Result<JobModule, WasmError> {
        Self::load_with(engine, bytes, Some(cache), false)
    }

    fn load_with(
        engine: &WasmEngine,
        bytes: &[u8],
        cache: Option<&CompileCache>,
        may_compile: bool,
    ) -> Result<JobModule, WasmError> {
        match classify(bytes) {
            WasmKind::NotWasm => return Err(WasmError::NotWasm),
            WasmKind::CoreModule => return Err(WasmError::CoreModule),
            WasmKind::Component => {}
        }
        let hash = module_hash(bytes);
        let outside_memory = crate::outside_memory::blockers(bytes).map_err(WasmError::Compile)?;
        let (component, from_cache) = compile(engine, bytes, &hash, cache, may_compile)?;
        check_world(engine, &component)?;
        let mut linker: Linker<StoreData> = Linker::new(&engine.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| WasmError::Engine(e.to_string()))?;
        crate::bindings::JobWorld::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| WasmError::Engine(e.to_string()))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| WasmError::Link(format!("{e:#}")))?;
        let pre = JobWorldPre::new(pre).map_err(|e| WasmError::WrongWorld(format!("{e:#}")))?;
        Ok(JobModule {
            engine: engine.clone(),
            pre,
            hash,
            size: bytes.len(),
            from_cache,
            outside_memory,
        })
    }

    /// Refuses memory snapshots of a job whose state is not all in linear
    /// memory, saying what is in the way and what to do.
    pub fn check_memory_snapshots(&self) -> Result<(), String> {
        if self.outside_memory.is_empty() {
            return Ok(());
        }
        Err(format!(
            "weir.state.memory-snapshots is on, but the job keeps state a memory snapshot \
             cannot capture: {}. Turn memory snapshots off and keep such state in keyed state \
             or the save/restore hooks",
            self.outside_memory.join("; ")
        ))
    }

    /// Content hash (SHA-256, hex) of the module's bytes.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn size(&self) -> usize {
        self.size
    }
}

fn compile(
    engine: &WasmEngine,
    bytes: &[u8],
    hash: &str,
    cache: Option<&CompileCache>,
    may_compile: bool,
) -> Result<(Component, bool), WasmError> {
    let compile_err = |e: wasmtime::Error| WasmError::Compile(format!("{e:#}"));
    let Some(cache) = cache else {
        return Ok((
            Component::new(&engine.engine, bytes).map_err(compile_err)?,
            false,
        ));
    };
    let path = cache.path(hash, engine);
    if path.exists() {
        // SAFETY: the file was written by `precompile_component` of an engine
        // with the same compatibility hash, into a directory Weir owns;
        // wasmtime checks its header before use.
        match unsafe { Component::deserialize_file(&engine.engine, &path) } {
            Ok(c) => {
                CompileCache::touch(&path);
                cache.trim(&path);
                return Ok((c, true));
            }
            Err(e) => {
                tracing::warn!(
                    "ignoring unusable compiled module {}: {e}; compiling again",
                    path.display()
                );
                if !may_compile {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
    if !may_compile {
        return Err(WasmError::NotCompiled);
    }
    let compiled = engine
        .engine
        .precompile_component(bytes)
        .map_err(compile_err)?;
    match write_atomically(&path, &compiled) {
        Ok(()) => cache.trim(&path),
        Err(e) => tracing::warn!("cannot cache compiled module at {}: {e}", path.display()),
    }
    // SAFETY: produced just above by the same engine.
    let component =
        unsafe { Component::deserialize(&engine.engine, &compiled) }.map_err(compile_err)?;
    Ok((component, false))
}

/// Removes files, oldest first, until the rest take `max` bytes, never
/// `keep`. A file already gone counts as removed: processes trimming the
/// same cache at once would otherwise each remove more than their share.
fn evict(files: Vec<(std::time::SystemTime, u64, PathBuf)>, max: u64, keep: &Path) {
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    for (_, len, path) in files {
        if total <= max {
            break;
        }
        if path == keep {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => total -= len,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => total -= len,
            Err(_) => {}
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache paths have a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("module"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Checks that the component exports the job interface this host speaks.
fn check_world(engine: &WasmEngine, component: &Component) -> Result<(), WasmError> {
    let ty = component.component_type();
    let exports: Vec<(String, &'static str)> = ty
        .exports(&engine.engine)
        .map(|(n, item)| {
            let kind = match item.ty {
                ComponentItem::ComponentInstance(_) => "interface",
                ComponentItem::ComponentFunc(_) => "function",
                _ => "item",
            };
            (n.to_owned(), kind)
        })
        .collect();
    if exports.iter().any(|(e, _)| e == JOB_INTERFACE) {
        return Ok(());
    }
    if let Some((other, _)) = exports
        .iter()
        .find(|(e, _)| e.starts_with("weir:stream/job@"))
    {
        return Err(WasmError::WrongVersion(other.clone()));
    }
    Err(WasmError::WrongWorld(if exports.is_empty() {
        "it exports nothing".to_owned()
    } else {
        let list: Vec<String> = exports.iter().map(|(n, k)| format!("{k} {n}")).collect();
        format!("it exports {}", list.join(", "))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_classified() {
        assert_eq!(classify(b"hello world"), WasmKind::NotWasm);
        assert_eq!(classify(b"\0asm\x01\0\0\0"), WasmKind::CoreModule);
        assert_eq!(classify(b"\0asm\x0d\0\x01\0"), WasmKind::Component);
        assert_eq!(classify(b"\0asm"), WasmKind::NotWasm);
    }

    #[test]
    fn the_cache_drops_what_was_used_least_recently_but_never_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path()).with_max_size(250);
        let now = std::time::SystemTime::now();
        let file = |name: &str, age_s: u64| {
            let p = dir.path().join(name);
            std::fs::write(&p, [0u8; 100]).unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(now - std::time::Duration::from_secs(age_s))
                .unwrap();
            p
        };
        let old = file("a.cwasm", 300);
        let used = file("b.cwasm", 200);
        let newer = file("c.cwasm", 100);
        let other = file("notes.txt", 400);
        CompileCache::touch(&used);
        let newest = file("d.cwasm", 0);
        cache.trim(&newest);
        assert!(!old.exists() && !newer.exists());
        assert!(used.exists() && newest.exists() && other.exists());
        // A file another process removed first counts: no more goes.
        let now = std::time::SystemTime::now();
        let listed = vec![
            (now, 100, dir.path().join("gone.cwasm")),
            (now, 100, used.clone()),
        ];
        evict(listed, 150, &newest);
        assert!(used.exists(), "one removal was enough");
        // One component bigger than the bound stays: it is about to load.
        CompileCache::new(dir.path())
            .with_max_size(10)
            .trim(&newest);
        assert!(newest.exists() && !used.exists());
    }
}
