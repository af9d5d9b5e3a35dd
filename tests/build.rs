//! Builds the guest jobs (examples and test fixtures) to WebAssembly
//! components, so that tests and benchmarks run real `.wasm` files.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest crates built for the tests: (package, crate name of the artifact).
const GUESTS: &[&str] = &[
    "wordcount",
    "click-event-count",
    "kafka-wordcount-mysql",
    "hostile",
    "not-a-job",
    "counter-v1",
    "counter-v2",
    "counter-v3",
    "counter-v4",
    "state-bench",
    "windows",
    "kafka-jobs",
    "exactly-once",
    "nexmark",
];

fn main() {
    // Read at run time: clones in other places may share the compiled
    // build script through a common target directory.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).parent().unwrap().to_owned();
    for dir in ["guest-sdk", "wit", "examples", "tests/fixtures"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    check_target();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for g in GUESTS {
        cmd.args(["-p", g]);
    }
    // The outer build's settings are for the host; the guests get their own.
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo to build the guest jobs");
    if !status.success() {
        panic!("building the guest jobs for wasm32-wasip2 failed (see the output above)");
    }
    let out = target_dir.join("wasm32-wasip2").join("release");
    for g in GUESTS {
        let file = out.join(format!("{}.wasm", g.replace('-', "_")));
        assert!(file.exists(), "missing guest artifact {}", file.display());
        let var = format!("WEIR_WASM_{}", g.replace('-', "_").to_uppercase());
        println!("cargo:rustc-env={var}={}", file.display());
    }
}

/// Fails with instructions when the wasm32-wasip2 target is not installed.
fn check_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    let installed = sysroot
        .map(|s| s.join("lib/rustlib/wasm32-wasip2").exists())
        .unwrap_or(false);
    if !installed {
        panic!(
            "\n\nThe Rust target wasm32-wasip2 is not installed, so the guest jobs the tests \
             run cannot be built.\nInstall it with:\n\n    rustup target add wasm32-wasip2\n\n"
        );
    }
}
