//! The word count example, end to end.

use crate::{run_local, stderr};
use std::path::Path;
use weir_tests::{WORDCOUNT_WASM, count_words, file, format_counts, temp_dir, write_corpus};

#[test]
fn golden_output_is_the_same_at_parallelism_1_and_4() {
    let dir = temp_dir();
    let input = file(&dir, "input.txt");
    write_corpus(&input, 20_000, 10, 1_000, 7).unwrap();
    let expected = format_counts(&count_words(&std::fs::read_to_string(&input).unwrap()));
    for p in ["1", "4"] {
        let output = file(&dir, &format!("out-{p}.txt"));
        let o = run_local(
            Path::new(WORDCOUNT_WASM),
            &["-p", p],
            &[
                "--input",
                input.to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "p={p}: {}", stderr(&o));
        let got = std::fs::read_to_string(&output).unwrap();
        assert_eq!(got.lines().count(), expected.lines().count(), "p={p}");
        assert!(
            got == expected,
            "p={p}: output differs from the independent count"
        );
    }
}

#[test]
fn punctuation_and_blank_lines_count_like_split_whitespace() {
    let dir = temp_dir();
    let input = file(&dir, "input.txt");
    let text = "To be, or not to be:\n\n  that is\tthe question.\r\nbe\n";
    std::fs::write(&input, text).unwrap();
    let output = file(&dir, "out.txt");
    let o = run_local(
        Path::new(WORDCOUNT_WASM),
        &[],
        &[
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        format_counts(&count_words(text))
    );
}

#[test]
fn socket_input_prints_running_counts() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"hello world\nhello weir\n").unwrap();
        // Closing the connection ends the job, as with Flink's socket source.
    });
    let o = run_local(
        Path::new(WORDCOUNT_WASM),
        &[],
        &["--hostname", "127.0.0.1", "--port", &port],
    );
    server.join().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            "(\"hello\", 1)",
            "(\"world\", 1)",
            "(\"hello\", 2)",
            "(\"weir\", 1)"
        ],
        "{stdout}"
    );
}

#[test]
fn bad_arguments_name_what_to_give() {
    let o = run_local(Path::new(WORDCOUNT_WASM), &[], &["--output", "/tmp/x"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("--input PATH"), "{e}");
}

#[test]
fn without_arguments_counts_the_bundled_text() {
    let o = run_local(Path::new(WORDCOUNT_WASM), &["-p", "2"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8(o.stdout).unwrap();
    let expected = count_words(wordcount::DEFAULT_TEXT);
    let mut got = std::collections::BTreeMap::new();
    for line in stdout.lines() {
        // "n> (\"word\", count)" with two print subtasks.
        let (_, tuple) = line.split_once("> ").expect("subtask prefix");
        let (word, count) = tuple
            .trim_start_matches("(\"")
            .trim_end_matches(')')
            .split_once("\", ")
            .expect("tuple");
        got.insert(word.replace("\\'", "'"), count.parse::<u64>().unwrap());
    }
    assert_eq!(got, expected);
}
