//! Flink's word count as a Weir job.
//!
//! - `--input PATH --output PATH`: counts the words of a text file and writes
//!   the final count of every word as `word<TAB>count` lines, sorted by word.
//! - `--hostname H --port P`: counts words read from a socket and prints the
//!   running counts, as Flink's `SocketWindowWordCount` without the window.
//! - no arguments: counts the words of a bundled text (Hamlet's soliloquy,
//!   as Flink's example does) and prints the final counts.

use weir_sdk::prelude::*;

/// The bundled text.
pub const DEFAULT_TEXT: &str = include_str!("../data/hamlet.txt");

/// Splits a line into `(word, 1)` pairs, as Flink's `Tokenizer`.
pub fn tokenize(line: String, out: &mut Collector<(String, i64)>) {
    for word in line.split_whitespace() {
        out.collect((word.to_owned(), 1));
    }
}

#[weir_sdk::job]
pub fn wordcount(env: &mut Env, args: &Args) -> Result<(), Error> {
    let text = if let Some(input) = args.get("input") {
        env.read_text_file(input)
    } else if let Some(host) = args.get("hostname") {
        env.socket_text_stream(host, args.parse_required("port")?)
    } else if args.raw().is_empty() {
        let lines: Vec<&'static str> = DEFAULT_TEXT.lines().collect();
        env.from_generator(Some(lines.len() as u64), None, move |i| {
            lines[i as usize].to_owned()
        })
    } else {
        return Err(Error::new(
            "give --input PATH (with --output PATH), or --hostname HOST --port PORT, \
             or no arguments for the bundled text",
        ));
    };
    let counts = text
        .flat_map_with(tokenize)
        .name("tokenizer")
        .uid("tokenizer")
        .key_by_ref(|(word, _)| word)
        .sum(|(_, count)| count)
        .name("counts")
        .uid("counts");
    match args.get("output") {
        Some(path) => {
            counts
                .map(|(word, count)| format!("{word}\t{count}"))
                .name("format")
                .uid("format")
                .write_as_text(path)
                .sorted()
                .parallelism(1)
                .uid("sink");
        }
        None => {
            counts.print().uid("print");
        }
    }
    Ok(())
}
