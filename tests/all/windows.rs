//! Event time: every window type over shuffled, out-of-order and late
//! input, checked against a model of Flink's semantics written here; keyed
//! process functions with timers; restoring in the middle of open windows;
//! idle inputs.
//!
//! The jobs run with one record per batch and a watermark after every
//! batch that advances it, so the point at which each record meets each
//! watermark is fixed and the model can follow it exactly.

use crate::{run_local, stderr, weir};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use weir_tests::process::{Feed, Running};
use weir_tests::{WINDOWS_WASM, file, temp_dir};
use windows::event;

const LIMIT: Duration = Duration::from_secs(120);
const EXACT: [&str; 4] = [
    "-D",
    "pipeline.batch-size=1",
    "-D",
    "pipeline.auto-watermark-interval=0ms",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tumbling,
    Sliding,
    Session,
    Count,
}

#[derive(Debug, Clone, Copy)]
struct Spec {
    kind: Kind,
    size: i64,
    slide: i64,
    gap: i64,
    count: u64,
    lateness: i64,
    ooo: i64,
    /// Configuration of the run (`-D key=value`).
    config: &'static [&'static str],
}

impl Spec {
    fn new(kind: Kind) -> Spec {
        Spec {
            kind,
            size: 1_000,
            slide: 500,
            gap: 300,
            count: 3,
            lateness: 0,
            ooo: 200,
            config: &[],
        }
    }

    fn args(&self) -> Vec<String> {
        let kind = match self.kind {
            Kind::Tumbling => "tumbling",
            Kind::Sliding => "sliding",
            Kind::Session => "session",
            Kind::Count => "count",
        };
        [
            ("kind", kind.to_owned()),
            ("size", self.size.to_string()),
            ("slide", self.slide.to_string()),
            ("gap", self.gap.to_string()),
            ("count", self.count.to_string()),
            ("lateness", self.lateness.to_string()),
            ("ooo", self.ooo.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [format!("--{k}"), v])
        .collect()
    }
}

type Event = (String, i64, i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct W {
    start: i64,
    end: i64,
}

impl W {
    fn max_ts(&self) -> i64 {
        self.end - 1
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    count: u64,
    sum: i64,
    /// Fired when time passed its end.
    fired: bool,
}

/// What Flink's `WindowOperator` emits for `events`, written from its
/// documented semantics: a watermark after every record, windows fire
/// when the watermark passes their end and again for each late record
/// within the allowed lateness, and are dropped at end + lateness.
fn model(events: &[Event], spec: Spec) -> (Vec<String>, Vec<String>) {
    let mut out = Vec::new();
    let mut late = Vec::new();
    let mut windows: BTreeMap<(String, W), Acc> = BTreeMap::new();
    let mut counts: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let mut wm = i64::MIN;
    let mut max_ts = i64::MIN;
    // The watermark at which the next window fires or goes: below it, an
    // advance changes nothing.
    let mut next_due = i64::MAX;
    let due_at = |w: &W, a: &Acc| {
        if a.fired {
            w.max_ts().saturating_add(spec.lateness)
        } else {
            w.max_ts()
        }
    };
    let emit = |out: &mut Vec<String>, k: &str, w: &W, a: &Acc| {
        out.push(format!("{k},{},{},{},{}", w.start, w.end, a.count, a.sum));
    };
    let advance = |windows: &mut BTreeMap<(String, W), Acc>, out: &mut Vec<String>, wm: i64| {
        for ((k, w), a) in windows.iter_mut() {
            if !a.fired && w.max_ts() <= wm {
                a.fired = true;
                emit(out, k, w, a);
            }
        }
        windows.retain(|(_, w), _| w.max_ts().saturating_add(spec.lateness) > wm);
    };
    for (k, ts, v) in events {
        let (ts, v) = (*ts, *v);
        if spec.kind == Kind::Count {
            let c = counts.entry(k.clone()).or_default();
            c.0 += 1;
            c.1 += v;
            if c.0 == spec.count {
                out.push(format!("{k},count,{},{}", c.0, c.1));
                *c = (0, 0);
            }
            continue;
        }
        let assigned: Vec<W> = match spec.kind {
            Kind::Tumbling => {
                let start = ts - ts.rem_euclid(spec.size);
                vec![W {
                    start,
                    end: start + spec.size,
                }]
            }
            Kind::Sliding => {
                let last = ts - ts.rem_euclid(spec.slide);
                let mut ws = Vec::new();
                let mut s = last;
                while s > ts - spec.size {
                    ws.push(W {
                        start: s,
                        end: s + spec.size,
                    });
                    s -= spec.slide;
                }
                ws
            }
            Kind::Session => vec![W {
                start: ts,
                end: ts + spec.gap,
            }],
            Kind::Count => unreachable!(),
        };
        let mut accepted = false;
        for w in assigned {
            if w.max_ts() + spec.lateness <= wm {
                continue;
            }
            accepted = true;
            let (w, mut acc) = if spec.kind == Kind::Session {
                // Merge every session this window touches.
                let mut merged = w;
                let mut acc = Acc::default();
                loop {
                    let touching = windows
                        .keys()
                        .find(|(key, x)| key == k && x.start <= merged.end && x.end >= merged.start)
                        .cloned();
                    let Some(key) = touching else { break };
                    let a = windows.remove(&key).expect("found");
                    merged = W {
                        start: merged.start.min(key.1.start),
                        end: merged.end.max(key.1.end),
                    };
                    acc.count += a.count;
                    acc.sum += a.sum;
                    // The merged window fires afresh unless it is this very
                    // window, already fired, growing by nothing.
                    acc.fired = a.fired && key.1 == merged;
                }
                (merged, acc)
            } else {
                (w, windows.get(&(k.clone(), w)).copied().unwrap_or_default())
            };
            acc.count += 1;
            acc.sum += v;
            if w.max_ts() <= wm {
                // Late, within the allowed lateness: fires now.
                acc.fired = true;
                emit(&mut out, k, &w, &acc);
            }
            next_due = next_due.min(due_at(&w, &acc));
            windows.insert((k.clone(), w), acc);
        }
        if !accepted && ts + spec.lateness <= wm {
            late.push(format!("{k},{ts},{v}"));
        }
        max_ts = max_ts.max(ts);
        let next = max_ts - spec.ooo - 1;
        if next > wm {
            wm = next;
            if wm >= next_due {
                advance(&mut windows, &mut out, wm);
                next_due = windows
                    .iter()
                    .map(|((_, w), a)| due_at(w, a))
                    .min()
                    .unwrap_or(i64::MAX);
            }
        }
    }
    advance(&mut windows, &mut out, i64::MAX);
    out.sort();
    late.sort();
    (out, late)
}

fn lines(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// A shuffled stream: generated events with jitter and late ones.
fn generated(n: u64, keys: u64) -> Vec<Event> {
    (0..n).map(|i| event(i, keys, true)).collect()
}

fn write_events(path: &Path, events: &[Event]) {
    let text: String = events
        .iter()
        .map(|(k, t, v)| format!("{k},{t},{v}\n"))
        .collect();
    std::fs::write(path, text).unwrap();
}

/// Runs the window job over `events` from a file at parallelism `p`.
fn run_windows(events: &[Event], spec: Spec, p: u32) -> (Vec<String>, Vec<String>) {
    let dir = temp_dir();
    let input = file(&dir, "events.txt");
    write_events(&input, events);
    let (out, late) = (file(&dir, "out.txt"), file(&dir, "late.txt"));
    let mut flags: Vec<String> = EXACT.iter().map(|s| (*s).to_owned()).collect();
    flags.extend(["-p".into(), p.to_string()]);
    for c in spec.config {
        flags.extend(["-D".into(), (*c).into()]);
    }
    let mut args: Vec<String> = vec![
        "--input".into(),
        input.display().to_string(),
        "--output".into(),
        out.display().to_string(),
        "--late".into(),
        late.display().to_string(),
    ];
    args.extend(spec.args());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run_local(Path::new(WINDOWS_WASM), &flags, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    (lines(&out), lines(&late))
}

fn check(spec: Spec, events: &[Event], p: u32) {
    let (want, want_late) = model(events, spec);
    assert!(!want.is_empty());
    let (got, got_late) = run_windows(events, spec, p);
    assert_eq!(got.len(), want.len(), "{spec:?}: number of results");
    assert!(got == want, "{spec:?}: results differ from the model");
    assert!(got_late == want_late, "{spec:?}: late records differ");
}

#[test]
fn tumbling_windows_drop_late_records_to_the_side_output() {
    let events = generated(3_000, 5);
    let spec = Spec::new(Kind::Tumbling);
    let (_, late) = model(&events, spec);
    assert!(late.len() > 20, "the input has late records");
    check(spec, &events, 2);
}

#[test]
fn allowed_lateness_fires_windows_again() {
    let events = generated(3_000, 5);
    let spec = Spec {
        lateness: 6_000,
        ..Spec::new(Kind::Tumbling)
    };
    let (want, late) = model(&events, spec);
    assert!(late.is_empty(), "5 s late is within 6 s of lateness");
    let distinct: std::collections::BTreeSet<Vec<&str>> = want
        .iter()
        .map(|l| l.split(',').take(3).collect())
        .collect();
    assert!(
        distinct.len() < want.len(),
        "some windows fire more than once"
    );
    check(spec, &events, 3);
}

#[test]
fn sliding_windows() {
    check(Spec::new(Kind::Sliding), &generated(2_000, 4), 2);
    // Four panes a window (of 250 ms), with a guest that forgets its
    // accumulators every few keys: panes are read back, and their timers
    // are neither lost nor doubled.
    let spec = Spec {
        slide: 250,
        config: &["weir.state.cached-keys=5"],
        ..Spec::new(Kind::Sliding)
    };
    check(spec, &generated(2_000, 7), 2);
}

#[test]
fn sliding_windows_with_more_panes_due_at_once_than_a_round_takes() {
    // 40 000 keys in one key group, with panes of 100 s over 700 s of
    // events and a watermark 600 s behind: at the final watermark some
    // 60 000 pane timers are due at seven window ends. The rounds of due
    // timers stop inside the key group and span several ends, and every
    // window still fires once with all of its panes (of 500 s).
    let spec = Spec {
        size: 500_000,
        slide: 100_000,
        ooo: 600_000,
        config: &["pipeline.max-parallelism=1"],
        ..Spec::new(Kind::Sliding)
    };
    check(spec, &generated(70_000, 40_000), 1);
}

#[test]
fn session_windows_merge() {
    // Fifty keys: each sees an event every ~500 ms, so sessions of 300 ms
    // gap open, grow, merge and close.
    let events = generated(4_000, 50);
    check(
        Spec {
            lateness: 1_000,
            ..Spec::new(Kind::Session)
        },
        &events,
        2,
    );
}

#[test]
fn a_late_record_bridges_two_sessions() {
    let ev = |k: &str, t: i64, v: i64| (k.to_owned(), t, v);
    let events = vec![
        ev("a", 0, 1),
        ev("a", 1_000, 2),
        // Time moves on (another key): both sessions of "a" fire.
        ev("b", 5_000, 0),
        // Late, within the lateness, and touching both sessions.
        ev("a", 500, 4),
        ev("b", 9_000, 0),
    ];
    let spec = Spec {
        gap: 600,
        lateness: 10_000,
        ooo: 0,
        ..Spec::new(Kind::Session)
    };
    let (want, _) = model(&events, spec);
    for l in ["a,0,600,1,1", "a,1000,1600,1,2", "a,0,1600,3,7"] {
        assert!(want.contains(&l.to_owned()), "model: {want:?}");
    }
    check(spec, &events, 1);
}

#[test]
fn count_windows() {
    check(Spec::new(Kind::Count), &generated(1_000, 7), 2);
}

#[test]
fn process_window_function_sees_every_element() {
    let events = generated(2_000, 5);
    let spec = Spec::new(Kind::Tumbling);
    let (want, _) = model(&events, spec);
    let dir = temp_dir();
    let input = file(&dir, "events.txt");
    write_events(&input, &events);
    let out = file(&dir, "out.txt");
    let mut flags = EXACT.to_vec();
    flags.extend(["-p", "2"]);
    let o = run_local(
        Path::new(WINDOWS_WASM),
        &flags,
        &[
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--kind",
            "process",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(lines(&out) == want);
}

/// What the `timers` job emits: a key's burst ends `gap` after its last
/// event, once the watermark passes that time.
fn bursts(events: &[Event], gap: i64, ooo: i64) -> Vec<String> {
    #[derive(Default)]
    struct S {
        count: u64,
        last: Option<i64>,
    }
    let mut state: BTreeMap<String, S> = BTreeMap::new();
    let mut timers: std::collections::BTreeSet<(i64, String)> = Default::default();
    let mut out = Vec::new();
    let (mut wm, mut max_ts) = (i64::MIN, i64::MIN);
    let mut fire = |state: &mut BTreeMap<String, S>,
                    timers: &mut std::collections::BTreeSet<(i64, String)>,
                    wm: i64| {
        while let Some((t, k)) = timers.first().cloned().filter(|(t, _)| *t <= wm) {
            timers.remove(&(t, k.clone()));
            let s = state.entry(k.clone()).or_default();
            if s.last == Some(t - gap) {
                out.push(format!("{k},{},{t}", s.count));
                *s = S::default();
            }
        }
    };
    for (k, ts, _) in events {
        let s = state.entry(k.clone()).or_default();
        s.count += 1;
        let last = s.last.map_or(*ts, |l| l.max(*ts));
        s.last = Some(last);
        timers.insert((last + gap, k.clone()));
        max_ts = max_ts.max(*ts);
        if max_ts - ooo - 1 > wm {
            wm = max_ts - ooo - 1;
            fire(&mut state, &mut timers, wm);
        }
    }
    fire(&mut state, &mut timers, i64::MAX);
    out.sort();
    out
}

#[test]
fn keyed_process_function_timers() {
    // Thirty keys, an event per key every ~300 ms: bursts end at gaps over
    // 400 ms, which the jitter makes common.
    let events: Vec<Event> = (0..3_000).map(|i| event(i, 30, false)).collect();
    let want = bursts(&events, 400, 200);
    assert!(want.len() > 50, "{}", want.len());
    let dir = temp_dir();
    let input = file(&dir, "events.txt");
    write_events(&input, &events);
    let out = file(&dir, "out.txt");
    let mut flags = EXACT.to_vec();
    flags.extend(["-p", "3", "--entry", "timers"]);
    let o = run_local(
        Path::new(WINDOWS_WASM),
        &flags,
        &[
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--gap",
            "400",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(lines(&out) == want);
}

/// Runs the generated-events job at a throttled rate, stops it with a
/// savepoint in the middle of open windows, restores it at parallelism
/// `p2`, and compares the results with the model's.
fn stop_and_restore(spec: Spec, n: u64, p1: u32, p2: u32) {
    let dir = temp_dir();
    let out = file(&dir, "out.txt");
    let sp_dir = dir.path().join("savepoints");
    let command = |p: u32, restore: Option<&str>| {
        let mut c = weir();
        c.env("WEIR_LOG", "warn,weir=info")
            .args(["run", "--local", "-p", &p.to_string()])
            .args(EXACT)
            .args(["-D", "execution.checkpointing.interval=300ms"])
            .arg("-D")
            .arg(format!(
                "state.checkpoints.dir={}",
                dir.path().join("cp").display()
            ))
            .args(["--stop-with-savepoint", "--savepoint-dir"])
            .arg(&sp_dir);
        if let Some(sp) = restore {
            c.args(["-s", sp]);
        }
        c.arg(WINDOWS_WASM)
            .args(["--", "--generate", &n.to_string(), "--rate", "1500"])
            .arg("--output")
            .arg(&out)
            .args(spec.args());
        c
    };
    let mut job = Running::start(&mut command(p1, None));
    std::thread::sleep(Duration::from_millis(1_000));
    job.signal("TERM");
    assert!(job.wait(LIMIT), "stop with savepoint: {}", job.stderr());
    let sp = job.savepoint_path();
    assert!(
        job.stderr().contains("has been stopped"),
        "{spec:?}: the first run ended before it was stopped: {}",
        job.stderr()
    );
    let events: Vec<Event> = (0..n).map(|i| event(i, 5, true)).collect();
    let (want, _) = model(&events, spec);
    let before = if out.exists() { lines(&out).len() } else { 0 };
    assert!(
        before < want.len(),
        "{spec:?}: every window fired before the savepoint; nothing was left to restore"
    );
    let mut job = Running::start(&mut command(p2, Some(&sp)));
    assert!(job.wait(LIMIT), "restored run: {}", job.stderr());
    assert!(
        job.seen_err
            .iter()
            .any(|l| l.contains("restoring from") && l.contains(&sp)),
        "{spec:?}: the second run did not restore the savepoint: {}",
        job.stderr()
    );
    let got = lines(&out);
    assert_eq!(got.len(), want.len(), "{spec:?}: results after a restore");
    assert!(got == want, "{spec:?}: results after a restore differ");
}

#[test]
fn tumbling_windows_restore_mid_window_at_another_parallelism() {
    stop_and_restore(Spec::new(Kind::Tumbling), 4_000, 2, 3);
}

#[test]
fn sliding_windows_restore_mid_window_at_another_parallelism() {
    stop_and_restore(
        Spec {
            lateness: 2_000,
            ..Spec::new(Kind::Sliding)
        },
        4_000,
        3,
        2,
    );
}

#[test]
fn session_windows_restore_mid_window() {
    stop_and_restore(
        Spec {
            lateness: 1_000,
            ..Spec::new(Kind::Session)
        },
        4_000,
        2,
        2,
    );
}

/// A socket source that never sends holds the watermark back unless it is
/// idle; with idleness, the generator's windows fire while it is silent.
fn idle_socket(idleness: bool) -> bool {
    let mut feed = Feed::new();
    let mut c = weir();
    c.args(["run", "--local", "--entry", "idle"]);
    c.arg(WINDOWS_WASM).args(["--", "--port", &feed.port()]);
    if idleness {
        c.args(["--idle-ms", "300"]);
    }
    let mut job = Running::start(&mut c);
    feed.accept(LIMIT);
    let fired = job.output_within(Duration::from_secs(if idleness { 60 } else { 3 }));
    job.signal("KILL");
    job.wait(LIMIT);
    fired
}

#[test]
fn an_idle_input_does_not_hold_back_the_watermark() {
    assert!(idle_socket(true), "no window fired with an idle input");
    assert!(
        !idle_socket(false),
        "a window fired although an input held the watermark back"
    );
}

#[test]
fn processing_time_windows_count_every_record() {
    let dir = temp_dir();
    let out = file(&dir, "out.txt");
    let o = run_local(
        Path::new(WINDOWS_WASM),
        &["-p", "2"],
        &[
            "--generate",
            "3000",
            "--rate",
            "3000",
            "--kind",
            "processing-time",
            "--size",
            "200",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let results = lines(&out);
    let total: u64 = results
        .iter()
        .map(|l| l.split(',').nth(3).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 3000);
    assert!(results.len() > 5, "a second of input spans several windows");
}

#[test]
fn records_without_timestamps_in_event_time_windows_fail_clearly() {
    let o = run_local(
        Path::new(WINDOWS_WASM),
        &[],
        &["--generate", "10", "--kind", "tumbling", "--no-timestamps"],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("no event timestamp"), "{e}");
}

#[test]
fn invalid_windows_are_rejected_before_running() {
    let o = run_local(
        Path::new(WINDOWS_WASM),
        &[],
        &["--generate", "10", "--kind", "sliding", "--slide", "0"],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("slide must be positive"), "{e}");
    // An interval join whose bounds are the wrong way round.
    let o = run_local(
        Path::new(WINDOWS_WASM),
        &["--entry", "interval"],
        &[
            "--clicks",
            "10",
            "--output",
            "/dev/null",
            "--lower",
            "5",
            "--upper",
            "-5",
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("lower bound (5 ms) is after the upper bound (-5 ms)"),
        "{e}"
    );
}

#[test]
fn click_event_count_counts_every_click_per_page_and_window() {
    use click_event_count::{WINDOW_MS, click};
    let (events, pages, per_window) = (30_000u64, 7u64, 200u64);
    let mut want: BTreeMap<(i64, String), u64> = BTreeMap::new();
    for i in 0..events {
        let c = click(i, pages, per_window);
        let start = c.timestamp - c.timestamp.rem_euclid(WINDOW_MS);
        *want.entry((start, c.page)).or_default() += 1;
    }
    let want: Vec<String> = want
        .into_iter()
        .map(|((start, page), n)| format!("{start},{},{page},{n}", start + WINDOW_MS))
        .collect();
    let dir = temp_dir();
    let out = file(&dir, "out.txt");
    let o = run_local(
        Path::new(weir_tests::CLICK_EVENT_COUNT_WASM),
        &["-p", "2"],
        &[
            "--events",
            &events.to_string(),
            "--pages",
            &pages.to_string(),
            "--clicks-per-window",
            &per_window.to_string(),
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut want = want;
    want.sort();
    assert_eq!(lines(&out), want);
}
