//! Words from a Kafka topic, counted, and the counts upserted into a table
//! of MySQL/MariaDB (or PostgreSQL) — exactly once, with checkpoints: after
//! a restart from its latest checkpoint the job keeps counting from where
//! it was, and the table holds the true counts.
//!
//! Arguments (defaults in brackets):
//! - `--bootstrap-servers` [localhost:9092], `--topic` [words],
//!   `--group-id` [weir-wordcount], `--starting-offsets`
//!   earliest|latest|committed [earliest], `--bounded` (stop at the
//!   offsets that are the latest at start);
//! - `--db-url` [mysql://root@localhost:3306/weir], `--table`
//!   [word_counts] with columns `word` (primary key) and `count`,
//!   `--db-user`, `--db-password` (`${NAME}` names a secret: an environment variable in a local run, a configured secret on a session),
//!   `--at-least-once` (no two-phase commit);
//! - `--output PATH`: write the final counts to a file instead;
//! - `--checkpoint-interval-ms` [5000];
//! - `--decode-errors` fail|skip|dead-letter:TOPIC [fail].
//!
//! Connection settings can also be changed from the command line without
//! rebuilding: `-D connector.kafka-source.properties.bootstrap.servers=...`,
//! `-D connector.db-sink.url=...`.

use weir_sdk::connectors::{DecodeErrors, JdbcSink, KafkaSource, StartingOffsets};
use weir_sdk::prelude::*;

/// Splits a line into `(word, 1)` pairs.
pub fn tokenize(line: String, out: &mut Collector<(String, i64)>) {
    for word in line.split_whitespace() {
        out.collect((word.to_owned(), 1));
    }
}

#[weir_sdk::job]
pub fn kafka_wordcount_mysql(env: &mut Env, args: &Args) -> Result<(), Error> {
    let interval: u64 = args.get_or("checkpoint-interval-ms", 5_000)?;
    env.set_job_name("Kafka word count to MySQL")
        .enable_checkpointing(Duration::from_millis(interval))
        .set_runtime_mode(RuntimeMode::Streaming);
    let start = match args.get("starting-offsets").unwrap_or("earliest") {
        "earliest" => StartingOffsets::Earliest,
        "latest" => StartingOffsets::Latest,
        "committed" => StartingOffsets::Committed,
        other => {
            return Err(Error::new(format!(
                "--starting-offsets {other}: use earliest, latest or committed"
            )));
        }
    };
    let errors = match args.get("decode-errors").unwrap_or("fail") {
        "fail" => DecodeErrors::Fail,
        "skip" => DecodeErrors::Skip,
        other => match other.strip_prefix("dead-letter:") {
            Some(topic) => DecodeErrors::DeadLetter(topic.to_owned()),
            None => {
                return Err(Error::new(format!(
                    "--decode-errors {other}: use fail, skip or dead-letter:TOPIC"
                )));
            }
        },
    };
    let mut source = KafkaSource::builder()
        .bootstrap_servers(args.get("bootstrap-servers").unwrap_or("localhost:9092"))
        .topics(&[args.get("topic").unwrap_or("words")])
        .group_id(args.get("group-id").unwrap_or("weir-wordcount"))
        .starting_offsets(start)
        .decode_errors(errors);
    if args.has("bounded") {
        source = source.bounded();
    }
    let counts = env
        .from_kafka_text(source.build(), "Kafka: words")
        .uid("kafka-source")
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
                .uid("format")
                .write_as_text(path)
                .sorted()
                .parallelism(1)
                .uid("file-sink");
        }
        None => {
            let table = args.get("table").unwrap_or("word_counts");
            let mut sink = JdbcSink::upsert(table, &["word", "count"], &["word"]).url(
                args.get("db-url")
                    .unwrap_or("mysql://root@localhost:3306/weir"),
            );
            if let Some(u) = args.get("db-user") {
                sink = sink.username(u);
            }
            if let Some(p) = args.get("db-password") {
                sink = sink.password(p);
            }
            if !args.has("at-least-once") {
                sink = sink.exactly_once();
            }
            counts
                .sink_to_jdbc(sink.build(), |(word, count)| {
                    vec![word.as_str().into(), (*count).into()]
                })
                .uid("db-sink");
        }
    }
    Ok(())
}
