//! Bad input gets a clear error, a non-zero exit, and no hang.

use crate::{run_local, stderr};
use std::path::Path;
use weir_tests::{HOSTILE_WASM, NOT_A_JOB_WASM, WORDCOUNT_WASM, file, temp_dir};

fn fails_with(o: &std::process::Output, needles: &[&str]) {
    assert!(
        !o.status.success(),
        "expected failure, got success: {}",
        stderr(o)
    );
    let e = stderr(o);
    for n in needles {
        assert!(e.contains(n), "missing {n:?} in:\n{e}");
    }
}

#[test]
fn missing_file() {
    let o = run_local(Path::new("/nonexistent/job.wasm"), &[], &[]);
    fails_with(
        &o,
        &[
            "cannot read the job file /nonexistent/job.wasm",
            "No such file",
        ],
    );
}

#[test]
fn not_wasm() {
    let dir = temp_dir();
    let f = file(&dir, "job.wasm");
    std::fs::write(&f, "#!/bin/sh\necho this is not wasm\n").unwrap();
    let o = run_local(&f, &[], &[]);
    fails_with(&o, &["not WebAssembly"]);
}

#[test]
fn core_module_instead_of_component() {
    let dir = temp_dir();
    let f = file(&dir, "core.wasm");
    // The smallest valid core module: magic and version 1.
    std::fs::write(&f, b"\0asm\x01\0\0\0").unwrap();
    let o = run_local(&f, &[], &[]);
    fails_with(
        &o,
        &["core WebAssembly module, not a component", "wasm32-wasip2"],
    );
}

#[test]
fn component_without_the_weir_world() {
    let o = run_local(Path::new(NOT_A_JOB_WASM), &[], &[]);
    fails_with(&o, &["not a Weir job", "weir:stream/job@0.1.0", "hello"]);
}

#[test]
fn unknown_entry_lists_the_entries() {
    let o = run_local(Path::new(WORDCOUNT_WASM), &["--entry", "nope"], &[]);
    fails_with(&o, &["no job named 'nope'", "wordcount"]);
}

#[test]
fn bad_flag_values() {
    let o = run_local(Path::new(WORDCOUNT_WASM), &["-p", "0"], &[]);
    fails_with(&o, &["at least 1"]);
    let o = run_local(
        Path::new(WORDCOUNT_WASM),
        &["-D", "parallelism.defualt=2"],
        &[],
    );
    fails_with(&o, &["parallelism.defualt"]);
}

#[test]
fn guest_panic_fails_the_job_with_its_message() {
    let o = run_local(Path::new(HOSTILE_WASM), &["--entry", "panic_in_map"], &[]);
    fails_with(&o, &["record 7 is poisoned", "failed"]);
}

#[test]
fn guest_trap_fails_the_job() {
    let o = run_local(Path::new(HOSTILE_WASM), &["--entry", "trap"], &[]);
    fails_with(&o, &["trapped", "unreachable"]);
}

/// `weir worker --join` takes only http(s) URLs, every entry of a list.
#[test]
fn a_task_manager_refuses_a_join_list_with_anything_but_urls() {
    for (join, named) in [
        (
            "http://127.0.0.1:1,file:///etc/passwd",
            "file:///etc/passwd",
        ),
        ("127.0.0.1:6123", "127.0.0.1:6123"),
        (" , ", "--join takes"),
    ] {
        let mut c = crate::weir();
        c.args(["worker", "--join", join]);
        let o = crate::run_with_timeout(&mut c, std::time::Duration::from_secs(30));
        fails_with(&o, &["--join takes the session's cluster endpoint", named]);
    }
}
