//! Jobs written in Python and JavaScript, built with the SDKs' own build
//! commands (`weir-py build`, `weir-js build`) the way users build them,
//! and kept under `$CARGO_TARGET_DIR/lang-guests` by the hash of the job's
//! folder and the SDK's sources.
//!
//! `scripts/test.sh` installs the tool chains (componentize-py from PyPI
//! into a virtualenv, ComponentizeJS from npm into `guest-sdk/js`) and
//! exports `WEIR_PY_BUILD` and `WEIR_JS_BUILD`; without them the default
//! install locations are used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A guest language with its own SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Python,
    JavaScript,
}

impl Language {
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "Python",
            Language::JavaScript => "JavaScript",
        }
    }

    /// The command that builds a job file into a component, without the
    /// file and output arguments.
    fn build_command(self) -> Command {
        let tools = std::env::var_os("WEIR_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/weir-tools")
            });
        match self {
            Language::Python => {
                let exe = std::env::var_os("WEIR_PY_BUILD")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| tools.join("py-guest/bin/weir-py"));
                assert!(
                    exe.exists(),
                    "{} is missing: run ./scripts/test.sh, which installs the Python SDK \
                     and componentize-py (or set WEIR_PY_BUILD)",
                    exe.display()
                );
                let mut c = Command::new(exe);
                c.arg("build");
                c
            }
            Language::JavaScript => {
                let script = std::env::var_os("WEIR_JS_BUILD")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| repo().join("guest-sdk/js/bin/weir-js.js"));
                assert!(
                    repo()
                        .join("guest-sdk/js/node_modules/@bytecodealliance")
                        .exists(),
                    "guest-sdk/js/node_modules is missing: run ./scripts/test.sh, which \
                     installs ComponentizeJS from npm (or `npm ci` in guest-sdk/js)"
                );
                let mut c = Command::new("node");
                c.arg(script).arg("build");
                c
            }
        }
    }
}

type Built = Arc<OnceLock<PathBuf>>;

fn cache() -> &'static Mutex<HashMap<(Language, PathBuf), Built>> {
    static CACHE: OnceLock<Mutex<HashMap<(Language, PathBuf), Built>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Files whose contents decide a build: the job's folder and the SDK.
fn inputs(language: Language, source: &Path) -> Vec<PathBuf> {
    let sdk: &[&str] = match language {
        Language::Python => &["guest-sdk/python/weir", "guest-sdk/python"],
        Language::JavaScript => &["guest-sdk/js/src", "guest-sdk/js/bin", "guest-sdk/js"],
    };
    let mut dirs: Vec<PathBuf> = sdk.iter().map(|d| repo().join(d)).collect();
    dirs.push(
        source
            .parent()
            .expect("a job file has a folder")
            .to_path_buf(),
    );
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Where built components are kept between runs, named by the hash of
/// their inputs.
fn output_for(language: Language, source: &Path, name: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(language.name());
    for f in inputs(language, source) {
        h.update(f.to_string_lossy().as_bytes());
        h.update(std::fs::read(&f).unwrap_or_default());
    }
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
        .join("lang-guests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}-{}.wasm", &hex::encode(h.finalize())[..16]))
}

/// Builds `job` (a path relative to the repository) unless a build of the
/// same job and SDK exists, and returns the component's path.
pub fn build(language: Language, job: &str) -> PathBuf {
    let source = repo().join(job);
    let cell = cache()
        .lock()
        .unwrap()
        .entry((language, source.clone()))
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let out = output_for(language, &source, &job.replace(['/', '.'], "_"));
        if out.exists() {
            return out;
        }
        // Written under another name first: a build that fails or is
        // interrupted leaves no component behind.
        let partial = out.with_extension(format!("{}.tmp", std::process::id()));
        let o = language
            .build_command()
            .arg(&source)
            .arg("-o")
            .arg(&partial)
            .arg("--quiet")
            .output()
            .expect("run the SDK's build command");
        assert!(
            o.status.success() && partial.exists(),
            "building {job} with the {} SDK failed:\n{}{}",
            language.name(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::rename(&partial, &out).unwrap();
        out
    })
    .clone()
}
