//! Checkpoints: crashes at random points, rescaling, corrupt checkpoints,
//! restart strategies, and checkpoints on S3.

use crate::{run_local, stderr, weir};
use std::path::{Path, PathBuf};
use std::time::Duration;
use weir_tests::process::{Running, S3Server, latest_checkpoints, newest_checkpoint};
use weir_tests::{HOSTILE_WASM, WORDCOUNT_WASM, count_words, file, temp_dir, write_corpus};

const LIMIT: Duration = Duration::from_secs(120);

/// What the word count writes in streaming mode: every running count.
pub(crate) fn streaming_updates(text: &str) -> String {
    let mut lines: Vec<String> = count_words(text)
        .into_iter()
        .flat_map(|(w, n)| (1..=n).map(move |k| format!("{w}\t{k}")))
        .collect();
    lines.sort_unstable();
    lines.into_iter().map(|l| l + "\n").collect()
}

struct CrashRun {
    input: PathBuf,
    output: PathBuf,
    checkpoints: PathBuf,
    flags: Vec<String>,
}

impl CrashRun {
    fn command(&self, restore: Option<&Path>, parallelism: u32) -> std::process::Command {
        let mut c = weir();
        // The kills follow the log of completed checkpoints.
        c.env("WEIR_LOG", "warn,weir=info");
        c.args(["run", "--local", "-p", &parallelism.to_string()])
            .args(["-D", "execution.checkpointing.interval=40ms"])
            .args(["-D", "execution.runtime-mode=STREAMING"])
            .arg("-D")
            .arg(format!(
                "state.checkpoints.dir={}",
                self.checkpoints.display()
            ))
            .args(&self.flags);
        if let Some(r) = restore {
            c.arg("-s").arg(r);
        }
        c.arg(WORDCOUNT_WASM)
            .arg("--")
            .arg("--input")
            .arg(&self.input)
            .arg("--output")
            .arg(&self.output);
        c
    }

    /// The checkpoint directory of the newest job that completed one.
    fn latest(&self) -> Option<PathBuf> {
        latest_checkpoints(&self.checkpoints)
    }

    /// Starts a run (from the latest checkpoint, if any) and kills it with
    /// SIGKILL `delay` after it completes `checkpoints` checkpoints, unless it
    /// finishes first. Returns whether the run restored a checkpoint, or
    /// None if it finished.
    fn kill_after(&self, checkpoints: usize, delay: u64, parallelism: u32) -> Option<bool> {
        let from = self.latest();
        let mut job = Running::start(&mut self.command(from.as_deref(), parallelism));
        if job.wait_for_logs("completed file://", checkpoints, LIMIT) {
            std::thread::sleep(Duration::from_millis(delay));
            job.signal("KILL");
        }
        let finished = job.wait(LIMIT);
        (!finished).then(|| restored(&job))
    }

    /// Runs from the latest checkpoint to the end; returns whether it
    /// restored one.
    fn finish(&self, parallelism: u32) -> bool {
        let from = self.latest();
        let mut job = Running::start(&mut self.command(from.as_deref(), parallelism));
        assert!(job.wait(LIMIT), "the last run failed: {}", job.stderr());
        restored(&job)
    }
}

fn restored(job: &Running) -> bool {
    job.seen_err.iter().any(|l| l.contains("restoring from"))
}

fn setup(words_lines: usize) -> (tempfile::TempDir, CrashRun, String) {
    let dir = temp_dir();
    let input = file(&dir, "input.txt");
    write_corpus(&input, words_lines, 10, 500, 11).unwrap();
    let expected = streaming_updates(&std::fs::read_to_string(&input).unwrap());
    let run = CrashRun {
        input,
        output: file(&dir, "out.txt"),
        checkpoints: dir.path().join("checkpoints"),
        flags: vec![],
    };
    (dir, run, expected)
}

#[test]
fn sigkill_at_several_points_gives_the_uninterrupted_output() {
    let (_dir, run, expected) = setup(300_000);
    // Kill right after a checkpoint, a little later, and later still.
    let mut restores = 0;
    let mut finished = false;
    for (checkpoints, delay) in [(1, 0), (1, 15), (1, 40)] {
        match run.kill_after(checkpoints, delay, 2) {
            Some(restored) => restores += usize::from(restored),
            None => {
                finished = true;
                break;
            }
        }
    }
    if !finished && run.finish(2) {
        restores += 1;
    }
    assert!(restores >= 2, "only {restores} runs restored a checkpoint");
    let got = std::fs::read_to_string(&run.output).unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "committed output differs from an uninterrupted run"
    );
}

/// Also: the working files (RocksDB) a killed run leaves are removed by
/// the next run, which removes its own when it ends.
#[test]
fn checkpoint_at_parallelism_2_restores_at_3() {
    let (dir, mut run, expected) = setup(200_000);
    let work = dir.path().join("work");
    run.flags = vec![
        "-D".into(),
        format!("state.backend.rocksdb.localdir={}", work.display()),
    ];
    assert_eq!(
        run.kill_after(2, 10, 2),
        Some(false),
        "the first run was not killed"
    );
    let left = names(&work);
    assert_eq!(
        left.len(),
        2,
        "a killed run leaves its directory and lock: {left:?}"
    );
    let killed = work.join(left.iter().find(|n| !n.ends_with(".lock")).unwrap());
    assert!(
        std::fs::read_dir(&killed).unwrap().next().is_some(),
        "the killed run had working files in {}",
        killed.display()
    );
    assert!(run.finish(3), "the second run did not restore a checkpoint");
    assert!(std::fs::read_to_string(&run.output).unwrap() == expected);
    assert_eq!(
        names(&work),
        Vec::<String>::new(),
        "working files were left"
    );
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Kills a run after three checkpoints (three retained), truncates the
/// newest one's `_metadata` and restores from the job's directory or, with
/// `by_name`, from that checkpoint itself: an older one is used instead,
/// and the corrupt one is named.
fn corrupt_newest_falls_back(by_name: bool) {
    let (_dir, mut run, expected) = setup(200_000);
    run.flags = vec!["-D".into(), "execution.checkpointing.num-retained=3".into()];
    assert_eq!(
        run.kill_after(3, 0, 2),
        Some(false),
        "the first run was not killed"
    );
    let job_dir = run.latest().expect("a checkpoint completed");
    let retained = std::fs::read_dir(&job_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("_metadata").exists())
        .count();
    assert!(
        retained >= 2,
        "need two retained checkpoints, have {retained}"
    );
    let newest = newest_checkpoint(&job_dir).expect("a checkpoint");
    let meta = newest.join("_metadata");
    let bytes = std::fs::read(&meta).unwrap();
    std::fs::write(&meta, &bytes[..bytes.len() / 2]).unwrap();

    let from = if by_name { &newest } else { &job_dir };
    let mut job = Running::start(&mut run.command(Some(from), 2));
    assert!(job.wait(LIMIT), "{}", job.stderr());
    let log = job.stderr();
    assert!(
        log.contains("corrupt") || log.contains("truncated"),
        "{log}"
    );
    assert!(
        log.contains(&newest.display().to_string()),
        "the corrupt path is named: {log}"
    );
    assert!(restored(&job), "nothing was restored");
    assert!(std::fs::read_to_string(&run.output).unwrap() == expected);
}

#[test]
fn corrupt_latest_checkpoint_falls_back_to_the_previous_one() {
    corrupt_newest_falls_back(false);
}

#[test]
fn a_corrupt_checkpoint_named_with_s_falls_back_to_an_older_one() {
    corrupt_newest_falls_back(true);
}

#[test]
fn failing_task_restarts_from_the_latest_checkpoint() {
    let dir = temp_dir();
    let out = file(&dir, "out.txt");
    let fail_until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        // Record 500 comes half a second after the job starts; starting
        // (compiling the module) takes a while on a loaded machine.
        + 4000;
    let o = run_local(
        Path::new(HOSTILE_WASM),
        &[
            "--entry",
            "flaky",
            "-D",
            "execution.checkpointing.interval=50ms",
            "-D",
            &format!("state.checkpoints.dir={}", dir.path().join("cp").display()),
            "-D",
            "restart-strategy.type=fixed-delay",
            "-D",
            "restart-strategy.fixed-delay.delay=300ms",
            "-D",
            "restart-strategy.fixed-delay.attempts=40",
        ],
        &[
            "--output",
            out.to_str().unwrap(),
            "--fail-until",
            &fail_until.to_string(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("restarting"),
        "the job did not restart: {}",
        stderr(&o)
    );
    // Every running sum per residue class, each record counted once.
    let got = std::fs::read_to_string(&out).unwrap();
    assert!(
        got == weir_tests::flaky_sums(2000),
        "output differs from a run without failures"
    );
}

#[test]
fn too_many_failures_fail_the_job_with_the_cause() {
    let o = run_local(
        Path::new(HOSTILE_WASM),
        &[
            "--entry",
            "panic_in_map",
            "-D",
            "restart-strategy.type=fixed-delay",
            "-D",
            "restart-strategy.fixed-delay.delay=10ms",
            "-D",
            "restart-strategy.fixed-delay.attempts=2",
        ],
        &[],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("after 2 restarts") && e.contains("record 7 is poisoned"),
        "{e}"
    );
}

#[test]
fn checkpoints_on_s3_survive_a_crash() {
    let s3 = S3Server::start();
    let (_dir, mut run, expected) = setup(200_000);
    run.flags = s3.flags();
    let checkpoints = "s3://checkpoints/wordcount";
    run.flags
        .extend(["-D".into(), format!("state.checkpoints.dir={checkpoints}")]);
    // The last -D wins, so the S3 directory replaces the local one.
    let mut first = run.command(None, 2);
    let mut job = Running::start(&mut first);
    let id_line = job.wait_for_log("JobID", LIMIT);
    let job_id = id_line.rsplit(' ').next().unwrap().to_owned();
    assert!(
        job.wait_for_logs("completed s3://", 2, LIMIT),
        "{}",
        job.stderr()
    );
    job.signal("KILL");
    job.wait(LIMIT);

    let restore = PathBuf::from(format!("{checkpoints}/{job_id}"));
    let mut second = run.command(Some(&restore), 2);
    let mut job = Running::start(&mut second);
    assert!(job.wait(LIMIT), "{}", job.stderr());
    assert!(
        job.stderr()
            .contains("restoring from s3://checkpoints/wordcount/"),
        "{}",
        job.stderr()
    );
    assert!(std::fs::read_to_string(&run.output).unwrap() == expected);
}

#[test]
fn at_least_once_checkpoints_complete_and_restore() {
    let (_dir, mut run, expected) = setup(200_000);
    run.flags = vec![
        "-D".into(),
        "execution.checkpointing.mode=AT_LEAST_ONCE".into(),
    ];
    // After a failure, records that passed a barrier early may count again:
    // nothing may be lost, though.
    assert_eq!(
        run.kill_after(2, 0, 2),
        Some(false),
        "the first run was not killed"
    );
    let from = run.latest().expect("an at-least-once checkpoint completed");
    let mut job = Running::start(&mut run.command(Some(&from), 2));
    assert!(job.wait(LIMIT), "{}", job.stderr());
    assert!(restored(&job));
    let got = std::fs::read_to_string(&run.output).unwrap();
    // Every running count of an uninterrupted run is there.
    let have: std::collections::HashSet<&str> = got.lines().collect();
    let missing = expected.lines().filter(|l| !have.contains(l)).count();
    assert_eq!(missing, 0, "at-least-once lost {missing} updates");
}

/// (state bytes, uploaded bytes) of the first checkpoint a run logged.
fn first_checkpoint_sizes(job: &Running) -> (u64, u64) {
    let line = job
        .seen_err
        .iter()
        .find(|l| l.contains("completed file://") && l.contains("/chk-"))
        .unwrap_or_else(|| panic!("no checkpoint completed: {}", job.stderr()));
    let num = |before: &str| -> u64 {
        let head = line.split(before).next().unwrap();
        head.rsplit(['(', ' '])
            .find(|w| !w.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    (num(" bytes of state"), num(" bytes uploaded"))
}

#[test]
fn claim_mode_takes_the_checkpoint_over_and_no_claim_leaves_it() {
    for claim in [false, true] {
        let (_dir, mut run, expected) = setup(200_000);
        assert_eq!(
            run.kill_after(2, 0, 2),
            Some(false),
            "the first run was not killed"
        );
        let chk = newest_checkpoint(&run.latest().unwrap()).expect("a checkpoint");
        if claim {
            run.flags = vec!["--claimMode".into(), "CLAIM".into()];
        }
        let mut job = Running::start(&mut run.command(Some(&chk), 2));
        assert!(job.wait(LIMIT), "{}", job.stderr());
        assert!(restored(&job));
        let (state, uploaded) = first_checkpoint_sizes(&job);
        if claim {
            assert!(
                uploaded < state,
                "the first checkpoint refers to the claimed files: {uploaded} of {state} bytes"
            );
            assert!(!chk.exists(), "the claimed checkpoint was not deleted");
        } else {
            assert_eq!(uploaded, state, "the first checkpoint is self-contained");
            assert!(
                chk.join("_metadata").exists(),
                "NO_CLAIM deleted the snapshot"
            );
        }
        assert!(std::fs::read_to_string(&run.output).unwrap() == expected);
    }
}
