//! The floor for the word count: one thread, read lines, split on
//! whitespace, count in a `HashMap`, write `word<TAB>count` sorted by word.
//! Usage: wordcount-handwritten INPUT OUTPUT

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (input, output) = (&args[1], &args[2]);
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(input)?);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        for w in line.split_whitespace() {
            match counts.get_mut(w) {
                Some(c) => *c += 1,
                None => {
                    counts.insert(w.to_owned(), 1);
                }
            }
        }
        line.clear();
    }
    let mut sorted: Vec<_> = counts.into_iter().collect();
    sorted.sort_unstable();
    let mut out = BufWriter::new(std::fs::File::create(output)?);
    for (w, c) in sorted {
        writeln!(out, "{w}\t{c}")?;
    }
    out.flush()
}
