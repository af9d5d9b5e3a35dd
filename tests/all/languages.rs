//! Jobs written in Python and JavaScript: the word count examples give the
//! Rust example's output byte for byte, the SDK features (typed records,
//! windows, keyed state, timers, state hooks) behave as the model says, and
//! a savepoint of the Python job restores into a new version of it.

use crate::{run_local, run_on_socket_and_stop, stderr};
use std::collections::BTreeMap;
use std::path::Path;
use weir_tests::guests::{Language, build};
use weir_tests::{WORDCOUNT_WASM, count_words, file, temp_dir, write_corpus};

const LANGUAGES: [(Language, &str); 2] = [
    (Language::Python, "examples/python-wordcount/job.py"),
    (Language::JavaScript, "examples/js-wordcount/job.js"),
];

fn wordcount_file(job: &Path, p: &str, input: &Path, output: &Path) {
    let o = run_local(
        job,
        &["-p", p],
        &[
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}: {}", job.display(), stderr(&o));
}

#[test]
fn python_and_javascript_word_counts_write_what_the_rust_one_writes() {
    let dir = temp_dir();
    let input = file(&dir, "input.txt");
    write_corpus(&input, 5_000, 12, 800, 11).unwrap();
    // Punctuation, tabs, carriage returns and blank lines split alike.
    let mut text = std::fs::read_to_string(&input).unwrap();
    text.push_str("To be, or not to be:\n\n  that is\tthe question.\r\nbe\n");
    std::fs::write(&input, &text).unwrap();
    let rust = file(&dir, "rust.txt");
    wordcount_file(Path::new(WORDCOUNT_WASM), "2", &input, &rust);
    let want = std::fs::read(&rust).unwrap();
    assert!(want.len() > 1000, "the Rust example wrote its counts");
    for (language, job) in LANGUAGES {
        let wasm = build(language, job);
        for p in ["1", "3"] {
            let out = file(&dir, &format!("{}-{p}.txt", language.name()));
            wordcount_file(&wasm, p, &input, &out);
            let got = std::fs::read(&out).unwrap();
            assert!(
                got == want,
                "{} word count at parallelism {p} differs from the Rust example's output",
                language.name()
            );
        }
    }
}

/// Parses printed `(word, count)` pairs in each language's own notation,
/// keeping the last count per word.
fn printed_counts(stdout: &str) -> BTreeMap<String, u64> {
    let mut got = BTreeMap::new();
    for line in stdout.lines() {
        let pair = line.split_once("> ").map_or(line, |(_, p)| p);
        let inner = pair
            .trim_start_matches(['(', '['])
            .trim_end_matches([')', ']']);
        let (word, count) = inner.rsplit_once(',').expect("a printed pair");
        let word = word.trim();
        let word = ['\'', '"']
            .iter()
            .find_map(|q| word.strip_prefix(*q)?.strip_suffix(*q))
            .expect("a quoted word");
        got.insert(word.to_owned(), count.trim().parse::<u64>().unwrap());
    }
    got
}

#[test]
fn without_arguments_each_language_counts_the_bundled_text() {
    let expected = count_words(wordcount::DEFAULT_TEXT);
    for (language, job) in LANGUAGES {
        let o = run_local(&build(language, job), &["-p", "2"], &[]);
        assert!(o.status.success(), "{}: {}", language.name(), stderr(&o));
        let got = printed_counts(&String::from_utf8_lossy(&o.stdout));
        assert_eq!(got, expected, "{}", language.name());
    }
}

#[test]
fn a_failing_user_function_names_the_error_and_the_line() {
    for (language, job) in LANGUAGES {
        let o = run_local(
            &build(language, job),
            &[],
            &["--port", "x", "--hostname", "h"],
        );
        assert!(!o.status.success(), "{}", language.name());
        let e = stderr(&o);
        match language {
            Language::Python => assert!(e.contains("--port x: not an integer"), "{e}"),
            Language::JavaScript => assert!(e.contains("--port x: not a number"), "{e}"),
        }
        let o = run_local(&build(language, job), &[], &["--output", "/tmp/x"]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("give --input PATH"), "{}", stderr(&o));
    }
    // An exception in a user function fails the job with its type and message.
    for (language, job) in FEATURES {
        let o = run_local(&build(language, job), &["--entry", "fails"], &[]);
        assert!(!o.status.success(), "{}", language.name());
        let e = stderr(&o);
        match language {
            Language::Python => assert!(
                e.contains("ZeroDivisionError: integer division or modulo by zero (at job.py:")
                    || e.contains("ZeroDivisionError: division by zero (at job.py:"),
                "{e}"
            ),
            Language::JavaScript => {
                assert!(e.contains("RangeError: cannot divide by zero"), "{e}")
            }
        }
        assert!(e.contains("Map"), "names the task: {e}");
    }
}

const FEATURES: [(Language, &str); 2] = [
    (Language::Python, "tests/fixtures/python-features/job.py"),
    (Language::JavaScript, "tests/fixtures/js-features/job.js"),
];

/// The clicks both feature jobs generate: (user, page, event time).
fn clicks(n: u64) -> impl Iterator<Item = (String, String, u64)> {
    (0..n).map(|i| (format!("u{}", i % 7), format!("p{}", i % 5), i * 3))
}

fn sorted_lines(lines: impl IntoIterator<Item = String>) -> String {
    let mut v: Vec<String> = lines.into_iter().collect();
    v.sort();
    v.iter().map(|l| format!("{l}\n")).collect()
}

fn windows_model(n: u64) -> String {
    let mut counts: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for (user, _, ts) in clicks(n) {
        *counts.entry((user, ts / 100 * 100)).or_default() += 1;
    }
    sorted_lines(
        counts
            .into_iter()
            .map(|((u, start), c)| format!("{u},{start},{},{c}", start + 100)),
    )
}

/// Sliding windows of 300 ms every 100 ms: clicks and distinct pages.
fn sliding_model(n: u64) -> String {
    let mut windows: BTreeMap<(String, i64), (u64, std::collections::BTreeSet<String>)> =
        BTreeMap::new();
    for (user, page, ts) in clicks(n) {
        let ts = ts as i64;
        let last = ts - ts.rem_euclid(100);
        for start in [last, last - 100, last - 200] {
            let w = windows.entry((user.clone(), start)).or_default();
            w.0 += 1;
            w.1.insert(page.clone());
        }
    }
    sorted_lines(windows.into_iter().map(|((u, start), (c, pages))| {
        let pages: Vec<String> = pages.into_iter().collect();
        format!("{u},{start},{},{c}:{}", start + 300, pages.join("|"))
    }))
}

/// Sliding windows of 300 ms every 100 ms: clicks per user.
fn sliding_count_model(n: u64) -> String {
    let mut counts: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for (user, _, ts) in clicks(n) {
        let last = ts as i64 - (ts as i64).rem_euclid(100);
        for start in [last, last - 100, last - 200] {
            *counts.entry((user.clone(), start)).or_default() += 1;
        }
    }
    sorted_lines(
        counts
            .into_iter()
            .map(|((u, start), c)| format!("{u},{start},{},{c}", start + 300)),
    )
}

fn summary_model(n: u64) -> String {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (user, page, _) in clicks(n) {
        users.entry(user).or_default().push(page);
    }
    sorted_lines(users.into_iter().map(|(u, seen)| {
        let mut pages: BTreeMap<&str, u64> = BTreeMap::new();
        for p in &seen {
            *pages.entry(p).or_default() += 1;
        }
        let pages: Vec<String> = pages.iter().map(|(p, c)| format!("{p}:{c}")).collect();
        format!(
            "{u} count={} pages={} first={} n={} at=1000000",
            seen.len(),
            pages.join(";"),
            seen[0],
            seen.len()
        )
    }))
}

/// Runs `entry` of a feature job over `n` clicks and returns its output.
fn feature_run(
    dir: &tempfile::TempDir,
    language: Language,
    wasm: &Path,
    entry: &str,
    p: &str,
    n: u64,
) -> String {
    let out = file(dir, &format!("{}-{entry}.txt", language.name()));
    let o = run_local(
        wasm,
        &["-p", p, "--entry", entry],
        &[
            "--clicks",
            &n.to_string(),
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        o.status.success(),
        "{} {entry}: {}",
        language.name(),
        stderr(&o)
    );
    std::fs::read_to_string(&out).unwrap()
}

#[test]
fn windows_keyed_state_and_timers_work_in_both_languages() {
    let dir = temp_dir();
    let n = 2_000u64;
    for (language, job) in FEATURES {
        let wasm = build(language, job);
        let run = |entry: &str, p: &str| feature_run(&dir, language, &wasm, entry, p, n);
        let got = run("windows", "2");
        assert_eq!(got.lines().count(), 7 * 60, "{}", language.name());
        assert!(
            got == windows_model(n),
            "{}: window counts differ from the model",
            language.name()
        );
        assert!(
            run("sliding", "2") == sliding_model(n),
            "{}: sliding windows differ from the model",
            language.name()
        );
        assert!(
            run("sliding-count", "2") == sliding_count_model(n),
            "{}: sliding windows without a merge differ from the model",
            language.name()
        );
        // One source subtask, so that each user's first page is the model's.
        assert_eq!(run("summary", "1"), summary_model(n), "{}", language.name());
    }
}

/// Runs a word count on a socket, sends `lines`, waits for `last`, stops
/// it with a savepoint; returns the savepoint and the output lines.
fn socket_run(
    job: &Path,
    restore: Option<&str>,
    sp_dir: &Path,
    lines: &[&str],
    last: &str,
) -> (String, Vec<String>) {
    run_on_socket_and_stop(
        job,
        restore,
        sp_dir,
        &["--hostname", "127.0.0.1"],
        lines,
        last,
    )
}

#[test]
fn a_python_savepoint_restores_into_a_new_version_of_the_job() {
    let dir = temp_dir();
    let sp_dir = dir.path().join("savepoints");
    let v1 = build(Language::Python, "examples/python-wordcount/job.py");
    let v2 = build(
        Language::Python,
        "tests/fixtures/python-wordcount-v2/job.py",
    );
    let (sp1, out) = socket_run(
        &v1,
        None,
        &sp_dir,
        &["hello world", "hello weir"],
        "('weir', 1)",
    );
    assert!(out.contains(&"('hello', 2)".to_owned()), "{out:?}");

    // Version 2 takes the counts over by uid; version 1 had no state hooks.
    let (sp2, _) = socket_run(
        &v2,
        Some(&sp1),
        &sp_dir,
        &["hello"],
        "hello=3 (#1, restored from nothing)",
    );
    // Version 2 again: the counts and the hooks' state both carry over.
    let (_, out) = socket_run(
        &v2,
        Some(&sp2),
        &sp_dir,
        &["hello again"],
        "again=1 (#3, restored from version 2)",
    );
    assert!(
        out.contains(&"hello=4 (#2, restored from version 2)".to_owned()),
        "{out:?}"
    );
}

fn tsc(project: &Path) -> std::process::Output {
    let tsc = weir_tests::guests::repo().join("guest-sdk/js/node_modules/typescript/bin/tsc");
    std::process::Command::new("node")
        .arg(tsc)
        .arg("-p")
        .arg(project)
        .output()
        .expect("run tsc")
}

#[test]
fn a_typescript_job_type_checks_builds_and_counts_like_rust() {
    let project = weir_tests::guests::repo().join("tests/fixtures/ts-wordcount");
    let o = tsc(&project);
    assert!(
        o.status.success(),
        "tsc: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let dir = temp_dir();
    let input = file(&dir, "input.txt");
    write_corpus(&input, 2_000, 8, 300, 5).unwrap();
    let rust = file(&dir, "rust.txt");
    wordcount_file(Path::new(WORDCOUNT_WASM), "2", &input, &rust);
    let ts = file(&dir, "ts.txt");
    let wasm = build(Language::JavaScript, "tests/fixtures/ts-wordcount/job.ts");
    wordcount_file(&wasm, "2", &input, &ts);
    assert!(std::fs::read(&ts).unwrap() == std::fs::read(&rust).unwrap());

    // The types are real: a job that sums a string field does not check.
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let config = std::fs::read_to_string(project.join("tsconfig.json"))
        .unwrap()
        .replace(
            "../../../guest-sdk/js/index.d.ts",
            &weir_tests::guests::repo()
                .join("guest-sdk/js/index.d.ts")
                .display()
                .to_string(),
        );
    std::fs::write(bad.join("tsconfig.json"), config).unwrap();
    std::fs::write(
        bad.join("job.ts"),
        "import { job } from \"@weir/sdk\";\n\
         job(\"bad\", (env) => {\n\
           env.fromCollection([{ word: \"a\", n: 1 }]).keyBy((r) => r.word).sum(\"count\").print();\n\
         });\n",
    )
    .unwrap();
    let o = tsc(&bad);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("\"count\""), "{out}");
}

/// Clicks in bursts of 100, a second apart: (user, page, event time).
fn burst_clicks(n: u64) -> impl Iterator<Item = (String, String, u64)> {
    (0..n).map(|i| {
        (
            format!("u{}", i % 7),
            format!("p{}", i % 5),
            i * 3 + (i / 100) * 1000,
        )
    })
}

fn sessions_model(n: u64, gap: u64) -> String {
    // Per user, events closer than the gap share a session.
    let mut sessions: BTreeMap<String, Vec<(u64, u64, u64)>> = BTreeMap::new();
    for (user, _, ts) in burst_clicks(n) {
        let list = sessions.entry(user).or_default();
        match list.last_mut() {
            Some((_, last, count)) if ts < *last + gap => {
                *last = ts;
                *count += 1;
            }
            _ => list.push((ts, ts, 1)),
        }
    }
    sorted_lines(sessions.into_iter().flat_map(|(u, list)| {
        list.into_iter()
            .map(move |(first, last, c)| format!("{u},{first},{},{c}", last + gap))
    }))
}

fn pages_model(n: u64) -> String {
    let mut windows: BTreeMap<(String, u64), Vec<String>> = BTreeMap::new();
    for (user, page, ts) in clicks(n) {
        windows
            .entry((user, ts / 100 * 100))
            .or_default()
            .push(page);
    }
    sorted_lines(windows.into_iter().map(|((u, start), pages)| {
        let distinct: std::collections::BTreeSet<&String> = pages.iter().collect();
        let distinct: Vec<&str> = distinct.into_iter().map(String::as_str).collect();
        format!("{u},{start},{},{}", pages.len(), distinct.join("|"))
    }))
}

fn fives_model(n: u64) -> String {
    let mut per_user: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (user, _, ts) in clicks(n) {
        per_user.entry(user).or_default().push(ts);
    }
    sorted_lines(per_user.into_iter().flat_map(|(u, ts)| {
        ts.chunks(5)
            .filter(|c| c.len() == 5)
            .map(|c| format!("{u},{}", c.iter().sum::<u64>()))
            .collect::<Vec<_>>()
    }))
}

/// Nexmark's q2 over the host's generator, at 1 000 events per second of
/// event time.
fn bids_model(n: u64) -> String {
    use weir_frame::nexmark::{Event, GeneratorConfig};
    let g = GeneratorConfig {
        ns_per_event: 1_000_000,
        ..GeneratorConfig::default()
    };
    sorted_lines((0..n).filter_map(|i| match g.event(i) {
        Event::Bid(b) if b.auction % 123 == 0 => {
            Some(format!("{},{},{}", b.auction, b.price, b.date_time))
        }
        _ => None,
    }))
}

#[test]
fn session_process_and_count_windows_work_in_both_languages() {
    let dir = temp_dir();
    // 300 clicks per user: every count window fills.
    let n = 2_100u64;
    for (language, job) in FEATURES {
        let wasm = build(language, job);
        let run = |entry: &str, p: &str| feature_run(&dir, language, &wasm, entry, p, n);
        let name = language.name();
        assert_eq!(
            run("sessions", "2"),
            sessions_model(n, 50),
            "{name} sessions"
        );
        assert_eq!(run("pages", "2"), pages_model(n), "{name} process windows");
        // One source subtask: each user's clicks arrive in order.
        assert_eq!(run("fives", "1"), fives_model(n), "{name} count windows");
        // The Nexmark source, decoded by the language's SDK.
        let events = 30_000;
        let want = bids_model(events);
        assert!(want.lines().count() > 10, "{want}");
        let got = feature_run(&dir, language, &wasm, "bids", "2", events);
        assert_eq!(got, want, "{name} nexmark");
    }
}

/// The Nexmark events the join jobs read: event time at 1 000 per second.
fn join_events(n: u64) -> Vec<weir_frame::nexmark::Event> {
    use weir_frame::nexmark::GeneratorConfig;
    let g = GeneratorConfig {
        ns_per_event: 1_000_000,
        ..GeneratorConfig::default()
    };
    (0..n).map(|i| g.event(i)).collect()
}

/// What each join entry writes, computed from the events without a runtime.
fn joins_model(entry: &str, events: &[weir_frame::nexmark::Event]) -> String {
    use weir_frame::nexmark::Event;
    let persons: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Person(p) => Some(p),
            _ => None,
        })
        .collect();
    let auctions: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Auction(a) => Some(a),
            _ => None,
        })
        .collect();
    let bids = events.iter().filter_map(|e| match e {
        Event::Bid(b) => Some(b),
        _ => None,
    });
    let window = |t: i64| t - t.rem_euclid(10_000);
    match entry {
        "connect" => {
            let names: BTreeMap<i64, &str> =
                persons.iter().map(|p| (p.id, p.name.as_str())).collect();
            sorted_lines(auctions.iter().filter_map(|a| {
                let name = names.get(&a.seller)?;
                Some(format!("{},{name},{}", a.seller, a.id))
            }))
        }
        "comap" => sorted_lines(
            persons.iter().map(|p| format!("p,{}", p.id)).chain(
                bids.filter(|b| b.auction % 123 == 0)
                    .map(|b| format!("b,{},{}", b.auction, b.price)),
            ),
        ),
        "interval" => {
            let opened: BTreeMap<i64, i64> = auctions.iter().map(|a| (a.id, a.date_time)).collect();
            sorted_lines(bids.filter_map(|b| {
                let at = *opened.get(&b.auction)?;
                (b.date_time >= at - 1000 && b.date_time <= at + 3000).then(|| {
                    format!(
                        "{},{},{},{at},{}",
                        b.auction, b.bidder, b.price, b.date_time
                    )
                })
            }))
        }
        "windowjoin" => sorted_lines(persons.iter().flat_map(|p| {
            auctions
                .iter()
                .filter(|a| a.seller == p.id && window(a.date_time) == window(p.date_time))
                .map(|a| format!("{},{},{}", p.id, p.name, a.id))
                .collect::<Vec<_>>()
        })),
        other => unreachable!("{other}"),
    }
}

#[test]
fn connect_interval_and_window_joins_work_in_every_language() {
    let dir = temp_dir();
    let n = 30_000u64;
    let events = join_events(n);
    let entries = ["connect", "comap", "interval", "windowjoin"];
    let models: Vec<String> = entries.iter().map(|e| joins_model(e, &events)).collect();
    for (entry, want) in entries.iter().zip(&models) {
        assert!(want.lines().count() > 20, "{entry}: {want}");
    }
    // Rust.
    for (entry, want) in entries.iter().zip(&models) {
        let out = file(&dir, &format!("rust-{entry}.txt"));
        let o = run_local(
            Path::new(weir_tests::WINDOWS_WASM),
            &["-p", "2", "--entry", entry],
            &[
                "--clicks",
                &n.to_string(),
                "--output",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "rust {entry}: {}", stderr(&o));
        assert!(
            std::fs::read_to_string(&out).unwrap() == *want,
            "rust {entry} differs from the model"
        );
    }
    for (language, job) in FEATURES {
        let wasm = build(language, job);
        for (entry, want) in entries.iter().zip(&models) {
            let got = feature_run(&dir, language, &wasm, entry, "2", n);
            assert!(
                got == *want,
                "{} {entry} differs from the model: {} lines, the model {}",
                language.name(),
                got.lines().count(),
                want.lines().count()
            );
        }
    }
}
