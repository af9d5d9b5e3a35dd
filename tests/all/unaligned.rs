//! Unaligned checkpoints: under backpressure the records queued before a
//! barrier become part of the checkpoint, and a job restored from it —
//! at another parallelism too — writes every record once.

use crate::exactly_once::{Sink, compare, expected, file_sink_args};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use weir_tests::cluster::{SessionProcess, in_flight, latest_checkpoint};
use weir_tests::{EXACTLY_ONCE_WASM, temp_dir};

const LIMIT: Duration = Duration::from_secs(120);
const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// A slow count holds the source back; every checkpoint is unaligned from
/// the start. Once one holds records in flight, the job is cancelled, and
/// started again from its latest checkpoint at parallelism 3: the keyed
/// in-flight records go to the new subtasks by key group, and every record
/// of the input is in the output exactly once.
#[test]
fn unaligned_checkpoints_under_backpressure_restore_exactly_at_another_parallelism() {
    let dir = temp_dir();
    let out = dir.path().join("out");
    let s = SessionProcess::start(Path::new(WEIR), &dir.path().join("data"), 4, &[]);
    let api = s.api();
    let jar = api.upload_file(EXACTLY_ONCE_WASM);
    let (records, keys) = (400_000u64, 40u64);
    let mut args = file_sink_args(&out, records, 10_000_000, keys);
    args.extend(["--slow-us".to_owned(), "40".to_owned()]);
    let config = json!({
        "execution.checkpointing.interval": "100ms",
        "execution.checkpointing.unaligned": "true",
        "execution.checkpointing.num-retained": "1000",
    });
    let job = api.run(
        &jar,
        json!({"programArgsList": args, "parallelism": 2, "flinkConfiguration": config}),
    );
    api.wait_for_state(&job, "RUNNING", LIMIT);
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < LIMIT && api.state(&job) == "RUNNING",
            "no checkpoint with records in flight ({}): {}",
            api.state(&job),
            api.get(&format!("/jobs/{job}/checkpoints")).1
        );
        // Records the counts had yet to read, and records the source had
        // buffered for them.
        if latest_checkpoint(&api, &job).is_some_and(|c| {
            let (input, output) = in_flight(&c);
            input > 0 && output > 0
        }) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (status, _) = api.patch(&format!("/jobs/{job}?mode=cancel"));
    assert_eq!(status, 202);
    api.wait_for_state(&job, "CANCELED", LIMIT);
    let checkpoint = latest_checkpoint(&api, &job).expect("a completed checkpoint");
    let (input, output) = in_flight(&checkpoint);
    assert!(
        input > 0,
        "{} holds no records in flight",
        checkpoint.display()
    );
    let committed = Sink::File(out.clone()).committed().len() as u64;
    assert!(committed < records, "cancelled before the end: {committed}");

    let job2 = api.run(
        &jar,
        json!({
            "programArgsList": file_sink_args(&out, records, 10_000_000, keys),
            "parallelism": 3,
            "savepointPath": checkpoint.display().to_string(),
            "flinkConfiguration": config,
        }),
    );
    api.wait_for_state(&job2, "FINISHED", Duration::from_secs(180));
    let (_, v) = api.get(&format!("/jobs/{job2}/checkpoints"));
    assert!(
        v["latest"]["restored"]["external_path"]
            .as_str()
            .is_some_and(|p| p.contains(&*checkpoint.file_name().unwrap().to_string_lossy())),
        "restored from {}: {v}",
        checkpoint.display()
    );
    let got = Sink::File(out.clone()).committed();
    let (lost, dup, sample) = compare(&expected(records, keys), &got);
    assert_eq!(
        (lost, dup),
        (0, 0),
        "lost or duplicated after restoring {input} + {output} bytes in flight: {sample:?}"
    );
}
