//! The Nexmark queries (`examples/nexmark`) against a plain model over the
//! same events: `weir run --local -p 2` writes each query's results, and
//! the model computes them from the events the generator makes, query by
//! query, without the runtime.

use crate::{run_local, stderr};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use weir_frame::nexmark::{Auction, Bid, Event, GeneratorConfig, Person};
use weir_tests::{NEXMARK_WASM, temp_dir};

/// Events per query run, with event time at 1 000 events per second: 24 s
/// of event time, so that windows and auctions open and close.
const EVENTS: u64 = 24_000;
const EVENT_TIME_RATE: u64 = 1_000;

fn events() -> Vec<Event> {
    let g = GeneratorConfig {
        ns_per_event: 1_000_000_000 / EVENT_TIME_RATE,
        ..GeneratorConfig::default()
    };
    (0..EVENTS).map(|n| g.event(n)).collect()
}

/// Every line of the files under `dir`, sorted.
fn lines_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if !e.file_name().to_string_lossy().starts_with('.') {
                out.extend(
                    std::fs::read_to_string(&p)
                        .unwrap()
                        .lines()
                        .map(str::to_owned),
                );
            }
        }
    }
    out.sort();
    out
}

fn run(query: &str) -> Vec<String> {
    let dir = temp_dir();
    let out = dir.path().join("out");
    let o = run_local(
        Path::new(NEXMARK_WASM),
        &["-p", "2"],
        &[
            "--query",
            query,
            "--events",
            &EVENTS.to_string(),
            "--event-time-rate",
            &EVENT_TIME_RATE.to_string(),
            "--output",
            &out.display().to_string(),
        ],
    );
    assert!(o.status.success(), "{query}: {}", stderr(&o));
    lines_under(&out)
}

fn bids(events: &[Event]) -> impl Iterator<Item = &Bid> {
    events.iter().filter_map(|e| match e {
        Event::Bid(b) => Some(b),
        _ => None,
    })
}

fn persons(events: &[Event]) -> impl Iterator<Item = &Person> {
    events.iter().filter_map(|e| match e {
        Event::Person(p) => Some(p),
        _ => None,
    })
}

fn auctions(events: &[Event]) -> impl Iterator<Item = &Auction> {
    events.iter().filter_map(|e| match e {
        Event::Auction(a) => Some(a),
        _ => None,
    })
}

fn bid_line(b: &Bid) -> String {
    format!(
        "{},{},{},{},{}",
        b.auction, b.bidder, b.price, b.date_time, b.extra
    )
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn check(query: &str, want: Vec<String>) {
    let want = sorted(want);
    assert!(!want.is_empty(), "{query}: the model expects nothing");
    let got = run(query);
    if got != want {
        let (g, w): (BTreeSet<_>, BTreeSet<_>) = (got.iter().collect(), want.iter().collect());
        let extra: Vec<_> = g.difference(&w).take(5).collect();
        let missing: Vec<_> = w.difference(&g).take(5).collect();
        panic!(
            "{query}: {} lines, the model {}; unexpected {extra:?}, missing {missing:?}",
            got.len(),
            want.len()
        );
    }
}

#[test]
fn stateless_queries_q0_q1_q2() {
    let events = events();
    check("q0", bids(&events).map(bid_line).collect());
    check(
        "q1",
        bids(&events)
            .map(|b| {
                let milli = b.price * 908;
                format!(
                    "{},{},{}.{:03},{},{}",
                    b.auction,
                    b.bidder,
                    milli / 1000,
                    milli % 1000,
                    b.date_time,
                    b.extra
                )
            })
            .collect(),
    );
    check(
        "q2",
        bids(&events)
            .filter(|b| b.auction % 123 == 0)
            .map(|b| format!("{},{}", b.auction, b.price))
            .collect(),
    );
}

#[test]
fn joins_q3_closing_prices_q4_and_winning_bids_q9() {
    let events = events();
    // q3: an inner join of local sellers and their category-10 auctions.
    let sellers: BTreeMap<i64, &Person> = persons(&events)
        .filter(|p| matches!(p.state.as_str(), "OR" | "ID" | "CA"))
        .map(|p| (p.id, p))
        .collect();
    check(
        "q3",
        auctions(&events)
            .filter(|a| a.category == 10)
            .filter_map(|a| {
                let p = sellers.get(&a.seller)?;
                Some(format!("{},{},{},{}", p.name, p.city, p.state, a.id))
            })
            .collect(),
    );
    // q9: each auction's best bid while it was open (highest price, then
    // earliest, then lowest bidder).
    let winners: Vec<(&Auction, &Bid)> = auctions(&events)
        .filter_map(|a| {
            let best = bids(&events)
                .filter(|b| {
                    b.auction == a.id && b.date_time >= a.date_time && b.date_time <= a.expires
                })
                .max_by_key(|b| (b.price, -b.date_time, -b.bidder))?;
            Some((a, best))
        })
        .collect();
    check(
        "q9",
        winners
            .iter()
            .map(|(a, b)| {
                format!(
                    "{},{},{},{},{},{}",
                    a.id, a.category, a.expires, b.bidder, b.price, b.date_time
                )
            })
            .collect(),
    );
    // q4: the last update of each category is its average over all closed
    // auctions.
    let mut per_category: BTreeMap<i64, (u64, i64)> = BTreeMap::new();
    for (a, b) in &winners {
        let e = per_category.entry(a.category).or_default();
        e.0 += 1;
        e.1 += b.price;
    }
    let want: Vec<String> = per_category
        .iter()
        .map(|(c, (n, sum))| format!("{c},{n},{}", *sum as f64 / *n as f64))
        .collect();
    let got = run("q4");
    let mut last: BTreeMap<i64, (u64, String)> = BTreeMap::new();
    for l in &got {
        let mut f = l.split(',');
        let (c, n): (i64, u64) = (
            f.next().unwrap().parse().unwrap(),
            f.next().unwrap().parse().unwrap(),
        );
        if last.get(&c).is_none_or(|(m, _)| n > *m) {
            last.insert(c, (n, l.clone()));
        }
    }
    let finals: Vec<String> = last.into_values().map(|(_, l)| l).collect();
    assert_eq!(finals, want, "q4");
    // Every update counts one more closed auction of its category.
    let updates: u64 = per_category.values().map(|(n, _)| n).sum();
    assert_eq!(got.len() as u64, updates, "q4 updates");
}

#[test]
fn windowed_queries_q5_q7_q8() {
    let events = events();
    const SIZE: i64 = 10_000;
    const SLIDE: i64 = 2_000;
    let end_ms = events.last().unwrap().date_time();
    // q5: bids per auction per sliding window; the auctions with the most.
    let mut counts: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    for b in bids(&events) {
        let last_start = b.date_time - b.date_time.rem_euclid(SLIDE);
        let mut start = last_start;
        while start > b.date_time - SIZE {
            *counts.entry((start + SIZE, b.auction)).or_default() += 1;
            start -= SLIDE;
        }
    }
    let mut per_window: BTreeMap<i64, (u64, Vec<i64>)> = BTreeMap::new();
    for ((end, auction), n) in counts {
        let e = per_window.entry(end).or_default();
        if n > e.0 {
            *e = (n, vec![]);
        }
        if n == e.0 {
            e.1.push(auction);
        }
    }
    check(
        "q5",
        per_window
            .iter()
            .flat_map(|(end, (n, auctions))| auctions.iter().map(move |a| format!("{a},{n},{end}")))
            .collect(),
    );
    // q7: the highest bids of each tumbling window.
    let mut highest: BTreeMap<i64, (i64, Vec<&Bid>)> = BTreeMap::new();
    for b in bids(&events) {
        let e = highest
            .entry(b.date_time - b.date_time.rem_euclid(SIZE))
            .or_insert((i64::MIN, vec![]));
        if b.price > e.0 {
            *e = (b.price, vec![]);
        }
        if b.price == e.0 {
            e.1.push(b);
        }
    }
    check(
        "q7",
        highest
            .values()
            .flat_map(|(_, bids)| bids.iter().map(|b| bid_line(b)))
            .collect(),
    );
    // q8: people who registered and opened an auction in one window.
    let window = |t: i64| t - t.rem_euclid(SIZE);
    let sold: BTreeSet<(i64, i64)> = auctions(&events)
        .map(|a| (a.seller, window(a.date_time)))
        .collect();
    check(
        "q8",
        persons(&events)
            .filter(|p| sold.contains(&(p.id, window(p.date_time))))
            .map(|p| format!("{},{},{}", p.id, p.name, window(p.date_time)))
            .collect(),
    );
    assert!(end_ms - events[0].date_time() > 2 * SIZE);
}

#[test]
fn a_wrong_query_names_the_queries() {
    let o = run_local(Path::new(NEXMARK_WASM), &[], &["--query", "q99"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("q99") && err.contains("q0, q1, q2"), "{err}");
}
