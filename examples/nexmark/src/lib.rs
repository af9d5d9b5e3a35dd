//! The Nexmark benchmark's queries as one Weir job, over the host's Nexmark
//! source (persons, auctions and bids; event time at 10 M events per second
//! unless `--event-time-rate` says otherwise; watermarks 4 s behind).
//!
//! `--query q0|q1|q2|q3|q4|q5|q7|q8 [--events N] [--rate R] [--output PATH]`:
//! `N` events in all (unbounded without), at most `R` per second; results
//! go to text files under `PATH` (one line per result, fields separated by
//! commas), or are discarded.
//!
//! - q0: every bid (pass-through).
//! - q1: every bid with its price in euros (`0.908 * price`, 3 decimals).
//! - q2: the bids on auctions whose id is a multiple of 123.
//! - q3: auctions of category 10 by sellers in Oregon, Idaho or California,
//!   with the seller's name, city and state (a join of auctions and persons).
//! - q4: the average closing price per category: each auction closes at its
//!   expiry with its highest bid placed while it was open; every closing
//!   updates its category's average (`category,auctions,average`).
//! - q5: the hot items: per sliding window of 10 s every 2 s, the auctions
//!   with the most bids (`auction,bids,window end`).
//! - q7: the highest bids of every 10 s tumbling window.
//! - q8: the people who registered and opened an auction in the same 10 s
//!   tumbling window (`id,name,window start`).

use weir_sdk::connectors::Nexmark;
use weir_sdk::nexmark::{Auction, Bid, Event, Person};
use weir_sdk::prelude::*;

/// Every query this job runs.
pub const QUERIES: [&str; 8] = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8"];

fn bids(events: DataStream<Event>) -> DataStream<Bid> {
    events
        .flat_map(|e: Event| match e {
            Event::Bid(b) => Some(b),
            _ => None,
        })
        .name("bids")
        .uid("bids")
}

fn bid_line(b: &Bid) -> String {
    format!(
        "{},{},{},{},{}",
        b.auction, b.bidder, b.price, b.date_time, b.extra
    )
}

/// `0.908 * cents` with three decimals, exactly.
pub fn euros(cents: i64) -> String {
    let milli = i128::from(cents) * 908;
    let sign = if milli < 0 { "-" } else { "" };
    let milli = milli.abs();
    format!("{sign}{}.{:03}", milli / 1000, milli % 1000)
}

#[weir_sdk::job]
pub fn nexmark(env: &mut Env, args: &Args) -> Result<(), Error> {
    let query = args.required("query")?.to_owned();
    let mut source = Nexmark::new();
    if let Some(n) = args.get("events") {
        source = source.events(
            n.parse()
                .map_err(|e| Error::new(format!("--events: {e}")))?,
        );
    }
    if let Some(r) = args.get("rate") {
        source =
            source.events_per_second(r.parse().map_err(|e| Error::new(format!("--rate: {e}")))?);
    }
    if let Some(r) = args.get("event-time-rate") {
        source = source.event_time_rate(
            r.parse()
                .map_err(|e| Error::new(format!("--event-time-rate: {e}")))?,
        );
    }
    // Streaming, as Nexmark is: results as they come, watermarks as the
    // events go, also when the number of events is bounded.
    env.set_runtime_mode(RuntimeMode::Streaming);
    let events = env.nexmark(source).uid("nexmark");
    let out: DataStream<String> = match query.as_str() {
        "q0" => bids(events).map(|b: Bid| bid_line(&b)),
        "q1" => bids(events).map(|b: Bid| {
            format!(
                "{},{},{},{},{}",
                b.auction,
                b.bidder,
                euros(b.price),
                b.date_time,
                b.extra
            )
        }),
        "q2" => bids(events)
            .filter(|b: &Bid| b.auction % 123 == 0)
            .map(|b: Bid| format!("{},{}", b.auction, b.price)),
        "q3" => q3(events),
        "q4" => q4(events),
        "q5" => q5(events),
        "q7" => q7(events),
        "q8" => q8(events),
        other => {
            return Err(Error::new(format!(
                "--query {other}: use one of {}",
                QUERIES.join(", ")
            )));
        }
    };
    let out = out.name("format").uid("format");
    match args.get("output") {
        Some(path) => {
            out.write_as_text(path).uid("sink");
        }
        None => {
            out.discard().uid("sink");
        }
    }
    Ok(())
}

/// The person a q3 result names.
const SELLER: ValueState<(String, String, String)> = ValueState::new("seller");
/// Auctions whose seller has not been seen yet.
const WAITING: ListState<i64> = ListState::new("waiting");

/// Joins sellers and their auctions, whichever comes first.
struct LocalItems;

impl KeyedProcessFunction<i64, Event> for LocalItems {
    type Out = String;

    fn states(&self) -> Vec<StateDescriptor> {
        vec![SELLER.descriptor(), WAITING.descriptor()]
    }

    fn process_element(
        &mut self,
        e: Event,
        ctx: &mut Context<'_, i64>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), Error> {
        match e {
            Event::Person(p) => {
                for a in ctx.list(&WAITING).get()? {
                    out.collect(format!("{},{},{},{a}", p.name, p.city, p.state));
                }
                ctx.list(&WAITING).clear()?;
                ctx.value(&SELLER).set(&(p.name, p.city, p.state))?;
            }
            Event::Auction(a) => match ctx.value(&SELLER).get()? {
                Some((name, city, state)) => out.collect(format!("{name},{city},{state},{}", a.id)),
                None => ctx.list(&WAITING).add(&a.id)?,
            },
            Event::Bid(_) => {}
        }
        Ok(())
    }
}

fn q3(events: DataStream<Event>) -> DataStream<String> {
    events
        .filter(|e: &Event| match e {
            Event::Person(p) => matches!(p.state.as_str(), "OR" | "ID" | "CA"),
            Event::Auction(a) => a.category == 10,
            Event::Bid(_) => false,
        })
        .name("sellers and auctions")
        .uid("q3-filter")
        .key_by(|e: &Event| match e {
            Event::Person(p) => p.id,
            Event::Auction(a) => a.seller,
            Event::Bid(b) => b.auction,
        })
        .process(LocalItems)
        .name("join")
        .uid("q3-join")
}

/// An auction: its category, when it opened and closes, its highest bid
/// so far, whether it closed.
const OPEN: ValueState<(i64, i64, i64, Option<i64>, bool)> = ValueState::new("open");
/// Bids that came before their auction: (time, price).
const EARLY: ListState<(i64, i64)> = ListState::new("early");

/// What q4 needs of an auction or a bid, projected before the shuffle:
/// `(AUCTION, id, category, opened, expires)` or `(BID, auction, price,
/// time, 0)`.
type Sale = (u8, i64, i64, i64, i64);
const AUCTION: u8 = 0;
const BID: u8 = 1;

/// Closes each auction at its expiry with its highest bid placed while it
/// was open.
struct Closing;

impl KeyedProcessFunction<i64, Sale> for Closing {
    type Out = (i64, i64);

    fn states(&self) -> Vec<StateDescriptor> {
        vec![OPEN.descriptor(), EARLY.descriptor()]
    }

    fn process_element(
        &mut self,
        (kind, _, x, y, z): Sale,
        ctx: &mut Context<'_, i64>,
        _out: &mut Collector<'_, (i64, i64)>,
    ) -> Result<(), Error> {
        if kind == AUCTION {
            let (category, opened, expires) = (x, y, z);
            let mut best = None;
            for (t, price) in ctx.list(&EARLY).get()? {
                if t >= opened && t <= expires {
                    best = best.max(Some(price));
                }
            }
            ctx.list(&EARLY).clear()?;
            ctx.value(&OPEN)
                .set(&(category, opened, expires, best, false))?;
            ctx.timer_service().register_event_time_timer(expires);
            return Ok(());
        }
        let (price, time) = (x, y);
        match ctx.value(&OPEN).get()? {
            Some((category, opened, expires, best, false)) => {
                if time >= opened && time <= expires && Some(price) > best {
                    ctx.value(&OPEN)
                        .set(&(category, opened, expires, Some(price), false))?;
                }
            }
            // Closed: the bid came too late.
            Some(_) => {}
            None => ctx.list(&EARLY).add(&(time, price))?,
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timestamp: i64,
        ctx: &mut Context<'_, i64>,
        out: &mut Collector<'_, (i64, i64)>,
    ) -> Result<(), Error> {
        if let Some((category, opened, expires, best, _)) = ctx.value(&OPEN).get()? {
            if let Some(price) = best {
                out.collect((category, price));
            }
            // Remembered as closed, so that later bids are not kept.
            ctx.value(&OPEN)
                .set(&(category, opened, expires, None, true))?;
        }
        Ok(())
    }
}

fn q4(events: DataStream<Event>) -> DataStream<String> {
    events
        .flat_map(|e: Event| match e {
            Event::Auction(a) => Some((AUCTION, a.id, a.category, a.date_time, a.expires)),
            Event::Bid(b) => Some((BID, b.auction, b.price, b.date_time, 0)),
            Event::Person(_) => None,
        })
        .name("auctions and bids")
        .uid("q4-filter")
        .key_by(|s: &Sale| s.1)
        .process(Closing)
        .name("closing prices")
        .uid("q4-closing")
        .map(|(category, price): (i64, i64)| (category, 1u64, price))
        .key_by(|(category, _, _): &(i64, u64, i64)| *category)
        .reduce(|a, b| (a.0, a.1 + b.1, a.2 + b.2))
        .name("average per category")
        .uid("q4-average")
        .map(|(category, n, sum): (i64, u64, i64)| {
            format!("{category},{n},{}", sum as f64 / n as f64)
        })
}

/// Counts records.
struct Count;

impl<T: 'static> AggregateFunction<T> for Count {
    type Acc = u64;
    type Out = u64;
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: T) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn get_result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// The most bids of a window so far.
const MOST: ValueState<u64> = ValueState::new("most");
/// The auctions that have them (appended to, never rewritten).
const TOP: ListState<i64> = ListState::new("top");

/// Keyed by window end: keeps the auctions with the most bids, and emits
/// them when event time reaches the window's end.
struct HotItems;

impl KeyedProcessFunction<i64, (i64, i64, u64)> for HotItems {
    type Out = String;

    fn states(&self) -> Vec<StateDescriptor> {
        vec![MOST.descriptor(), TOP.descriptor()]
    }

    fn process_element(
        &mut self,
        (end, auction, n): (i64, i64, u64),
        ctx: &mut Context<'_, i64>,
        _out: &mut Collector<'_, String>,
    ) -> Result<(), Error> {
        let most = ctx.value(&MOST).get()?;
        if most.is_none_or(|m| n > m) {
            ctx.list(&TOP).clear()?;
            ctx.value(&MOST).set(&n)?;
        }
        if most.is_none_or(|m| n >= m) {
            ctx.list(&TOP).add(&auction)?;
        }
        if most.is_none() {
            ctx.timer_service().register_event_time_timer(end);
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        end: i64,
        ctx: &mut Context<'_, i64>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), Error> {
        if let Some(n) = ctx.value(&MOST).get()? {
            for a in ctx.list(&TOP).get()? {
                out.collect(format!("{a},{n},{end}"));
            }
        }
        ctx.value(&MOST).clear()?;
        ctx.list(&TOP).clear()?;
        Ok(())
    }
}

fn q5(events: DataStream<Event>) -> DataStream<String> {
    bids(events)
        .map(|b: Bid| b.auction)
        .key_by(|auction: &i64| *auction)
        .window(SlidingEventTimeWindows::of(
            Duration::from_secs(10),
            Duration::from_secs(2),
        ))
        .aggregate_with(Count, |auction: &i64, w: &TimeWindow, n: u64| {
            (w.end, *auction, n)
        })
        .name("bids per auction")
        .uid("q5-counts")
        .key_by(|(end, _, _): &(i64, i64, u64)| *end)
        .process(HotItems)
        .name("hot items")
        .uid("q5-top")
}

/// The highest price of a window and its bids.
struct Highest;

impl AggregateFunction<Bid> for Highest {
    type Acc = (i64, Vec<Bid>);
    type Out = Vec<Bid>;
    fn create_accumulator(&self) -> Self::Acc {
        (i64::MIN, Vec::new())
    }
    fn add(&self, acc: &mut Self::Acc, b: Bid) {
        if b.price > acc.0 {
            acc.0 = b.price;
            acc.1.clear();
        }
        if b.price == acc.0 {
            acc.1.push(b);
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        for b in other.1 {
            self.add(acc, b);
        }
    }
    fn get_result(&self, acc: &Self::Acc) -> Vec<Bid> {
        acc.1.clone()
    }
}

fn q7(events: DataStream<Event>) -> DataStream<String> {
    bids(events)
        .key_by(|_: &Bid| 0u8)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .aggregate(Highest)
        .name("highest bids")
        .uid("q7-highest")
        .flat_map(|bids: Vec<Bid>| bids.iter().map(bid_line).collect::<Vec<_>>())
}

/// Whether a window saw the person (its name) and an auction of theirs.
struct NewSeller;

/// A person's id and name, or an auction's seller, projected before the
/// shuffle.
type Party = (i64, Option<String>);

impl AggregateFunction<Party> for NewSeller {
    type Acc = (Option<String>, bool);
    type Out = Option<String>;
    fn create_accumulator(&self) -> Self::Acc {
        (None, false)
    }
    fn add(&self, acc: &mut Self::Acc, (_, name): Party) {
        match name {
            Some(name) => acc.0 = Some(name),
            None => acc.1 = true,
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.0 = acc.0.take().or(other.0);
        acc.1 |= other.1;
    }
    fn get_result(&self, acc: &Self::Acc) -> Option<String> {
        acc.0.clone().filter(|_| acc.1)
    }
}

fn q8(events: DataStream<Event>) -> DataStream<String> {
    events
        .flat_map(|e: Event| match e {
            Event::Person(Person { id, name, .. }) => Some((id, Some(name))),
            Event::Auction(Auction { seller, .. }) => Some((seller, None)),
            Event::Bid(_) => None,
        })
        .name("persons and auctions")
        .uid("q8-filter")
        .key_by(|(id, _): &Party| *id)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .aggregate_with(
            NewSeller,
            |id: &i64, w: &TimeWindow, name: Option<String>| {
                name.map(|n| format!("{id},{n},{}", w.start))
            },
        )
        .name("new sellers")
        .uid("q8-join")
        .flat_map(|line: Option<String>| line)
}
