//! Flink's `ClickEventCount` (the operations playground's job) as a Weir
//! job: generated click events `(timestamp, page)` with up to 200 ms of
//! out-of-orderness, counted per page in 15-second tumbling event-time
//! windows.
//!
//! Arguments:
//! - `--pages N` (6): distinct pages; `--events N`: how many clicks
//!   (unbounded without); `--rate R`: clicks per second (as fast as
//!   possible without); `--clicks-per-window N` (1000): event-time density,
//!   clicks per page per window.
//! - `--backpressure-ms N`: a map that takes N ms per click, to watch
//!   backpressure build up.
//! - `--output PATH`: statistics as lines, sorted (else printed;
//!   `--discard` drops them, for benchmarks); `--checkpointing MS`:
//!   checkpoint every MS milliseconds.

use serde::{Deserialize, Serialize};
use weir_sdk::prelude::*;

/// A click on a page at an event time (ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickEvent {
    pub timestamp: i64,
    pub page: String,
}

/// The clicks of a page in a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickEventStatistics {
    pub window_start: i64,
    pub window_end: i64,
    pub page: String,
    pub count: u64,
}

impl std::fmt::Display for ClickEventStatistics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{},{},{},{}",
            self.window_start, self.window_end, self.page, self.count
        )
    }
}

/// The window size.
pub const WINDOW_MS: i64 = 15_000;
/// How far clicks arrive out of order.
pub const OUT_OF_ORDERNESS_MS: i64 = 200;

/// Page names as in the playground, then numbered pages.
pub fn page(i: u64) -> String {
    const NAMED: [&str; 6] = ["/help", "/index", "/shop", "/jobs", "/about", "/news"];
    match NAMED.get(i as usize) {
        Some(p) => (*p).to_owned(),
        None => format!("/page-{i}"),
    }
}

/// The `i`-th click: pages in turn, `clicks_per_window` clicks per page per
/// window, each up to 200 ms out of order (deterministic).
pub fn click(i: u64, pages: u64, clicks_per_window: u64) -> ClickEvent {
    let pages = pages.max(1);
    let per_window = (pages * clicks_per_window.max(1)) as i64;
    let base = i as i64 * WINDOW_MS / per_window;
    let jitter = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as i64 * OUT_OF_ORDERNESS_MS / 256;
    ClickEvent {
        timestamp: base + jitter,
        page: page(i % pages),
    }
}

/// Counts clicks, as the playground's `CountingAggregator`.
pub struct CountingAggregator;

impl AggregateFunction<ClickEvent> for CountingAggregator {
    type Acc = u64;
    type Out = u64;
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: ClickEvent) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn get_result(&self, acc: &u64) -> u64 {
        *acc
    }
}

#[weir_sdk::job]
pub fn click_event_count(env: &mut Env, args: &Args) -> Result<(), Error> {
    env.set_runtime_mode(RuntimeMode::Streaming)
        .set_job_name("Click Event Count");
    if let Some(ms) = args.get("checkpointing") {
        let ms: u64 = ms
            .parse()
            .map_err(|e| Error::new(format!("--checkpointing: {e}")))?;
        env.enable_checkpointing(Duration::from_millis(ms));
    }
    let pages: u64 = args.get_or("pages", 6)?;
    let per_window: u64 = args.get_or("clicks-per-window", 1000)?;
    let events: Option<u64> = args
        .get("events")
        .map(str::parse)
        .transpose()
        .map_err(|e| Error::new(format!("--events: {e}")))?;
    let rate: Option<f64> = args
        .get("rate")
        .map(str::parse)
        .transpose()
        .map_err(|e| Error::new(format!("--rate: {e}")))?;
    let delay = args.get_or("backpressure-ms", 0u64)?;

    let mut clicks = env
        .from_generator(events, rate, move |i| click(i, pages, per_window))
        .uid("click-events")
        .name("ClickEvent Source")
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(
                OUT_OF_ORDERNESS_MS as u64,
            ))
            .with_timestamp_assigner(|c: &ClickEvent, _| c.timestamp),
        );
    if delay > 0 {
        clicks = clicks
            .map(move |c: ClickEvent| {
                std::thread::sleep(Duration::from_millis(delay));
                c
            })
            .name("Backpressure")
            .uid("backpressure");
    }
    let statistics = clicks
        .key_by(|c: &ClickEvent| c.page.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_millis(
            WINDOW_MS as u64,
        )))
        .aggregate_with(
            CountingAggregator,
            |page: &String, w: &TimeWindow, count| ClickEventStatistics {
                window_start: w.start,
                window_end: w.end,
                page: page.clone(),
                count,
            },
        )
        .name("ClickEvent Counter")
        .uid("click-event-counter");
    match args.get("output") {
        None if args.has("discard") => {
            statistics.discard().uid("discard");
        }
        Some(path) => {
            statistics
                .map(|s: ClickEventStatistics| s.to_string())
                .write_as_text(path)
                .sorted()
                .parallelism(1)
                .uid("sink");
        }
        None => {
            statistics.print().uid("print");
        }
    }
    Ok(())
}
