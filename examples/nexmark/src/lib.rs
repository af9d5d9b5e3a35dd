//! The Nexmark benchmark's queries as one Weir job, over the host's Nexmark
//! source (persons, auctions and bids; event time at 10 M events per second
//! unless `--event-time-rate` says otherwise; watermarks 4 s behind).
//!
//! `--query q0|q1|q2|q3|q4|q5|q7|q8|q9 [--events N] [--rate R] [--output PATH]`:
//! `N` events in all (unbounded without), at most `R` per second; results
//! go to text files under `PATH` (one line per result, fields separated by
//! commas), or are discarded.
//!
//! - q0: every bid (pass-through).
//! - q1: every bid with its price in euros (`0.908 * price`, 3 decimals).
//! - q2: the bids on auctions whose id is a multiple of 123.
//! - q3: auctions of category 10 by sellers in Oregon, Idaho or California,
//!   with the seller's name, city and state (auctions and persons connected
//!   by seller, joined by a keyed co-process function).
//! - q4: the average closing price per category: every closing (q9) updates
//!   its category's average (`category,auctions,average`).
//! - q5: the hot items: per sliding window of 10 s every 2 s, the auctions
//!   with the most bids (`auction,bids,window end`).
//! - q7: the highest bids of every 10 s tumbling window.
//! - q8: the people who registered and opened an auction in the same 10 s
//!   tumbling window (`id,name,window start`; a window co-group of persons
//!   and auctions).
//! - q9: the winning bid of every auction: it closes at its expiry with its
//!   highest bid placed while it was open, the earliest of equal bids
//!   (`auction,category,expires,bidder,price,bid time`).

use weir_sdk::connectors::Nexmark;
use weir_sdk::nexmark::{Auction, Bid, Event, Person};
use weir_sdk::prelude::*;

/// Every query this job runs.
pub const QUERIES: [&str; 9] = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q9"];

fn bids(events: DataStream<Event>) -> DataStream<Bid> {
    events.bids()
}

fn bid_line(b: &Bid) -> String {
    format!(
        "{},{},{},{},{}",
        b.auction, b.bidder, b.price, b.date_time, b.extra
    )
}

/// A number of thousandths as a decimal with three places.
fn thousandths(milli: impl Into<i128>) -> String {
    let milli: i128 = milli.into();
    let sign = if milli < 0 { "-" } else { "" };
    let milli = milli.abs();
    format!("{sign}{}.{:03}", milli / 1000, milli % 1000)
}

/// Sends a query's results to text lines under `output`, formatted by
/// `line`, or discards them unformatted (as a blackhole sink does).
fn results<T>(out: DataStream<T>, output: Option<&str>, line: fn(&T) -> String)
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    match output {
        Some(path) => {
            out.map(move |v: T| line(&v))
                .name("format")
                .uid("format")
                .write_as_text(path)
                .uid("sink");
        }
        None => {
            out.discard().uid("sink");
        }
    }
}

/// [`results`] for queries that produce their lines themselves.
fn lines(out: DataStream<String>, output: Option<&str>) {
    match output {
        Some(path) => out.write_as_text(path).uid("sink"),
        None => out.discard().uid("sink"),
    };
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
    let output = args.get("output");
    match query.as_str() {
        "q0" => results(bids(events), output, bid_line),
        "q1" => results(
            bids(events).map(|b: Bid| {
                let milli_euros = b.price.saturating_mul(908);
                (b.auction, b.bidder, milli_euros, b.date_time, b.extra)
            }),
            output,
            |(auction, bidder, milli_euros, time, extra)| {
                format!(
                    "{auction},{bidder},{},{time},{extra}",
                    thousandths(*milli_euros)
                )
            },
        ),
        "q2" => results(
            bids(events)
                .filter(|b: &Bid| b.auction % 123 == 0)
                .map(|b: Bid| (b.auction, b.price)),
            output,
            |(auction, price)| format!("{auction},{price}"),
        ),
        "q3" => lines(q3(events), output),
        "q4" => lines(q4(events), output),
        "q5" => lines(q5(events), output),
        "q7" => results(q7(events), output, bid_line),
        "q8" => lines(q8(events), output),
        "q9" => lines(q9(events), output),
        other => {
            return Err(Error::new(format!(
                "--query {other}: use one of {}",
                QUERIES.join(", ")
            )));
        }
    }
    Ok(())
}

/// A q3 seller: id, name, city, state.
type Seller = (i64, String, String, String);

/// The person a q3 result names.
const SELLER: ValueState<(String, String, String)> = ValueState::new("seller");
/// Auctions whose seller has not been seen yet.
const WAITING: ListState<i64> = ListState::new("waiting");

/// Joins auctions (id, seller) and their sellers, whichever comes first.
struct LocalItems;

impl KeyedCoProcessFunction<i64, (i64, i64), Seller> for LocalItems {
    type Out = String;

    fn states(&self) -> Vec<StateDescriptor> {
        vec![SELLER.descriptor(), WAITING.descriptor()]
    }

    fn process_element1(
        &mut self,
        (auction, _): (i64, i64),
        ctx: &mut Context<'_, i64>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), Error> {
        match ctx.value(&SELLER).get()? {
            Some((name, city, state)) => out.collect(format!("{name},{city},{state},{auction}")),
            None => ctx.list(&WAITING).add(&auction)?,
        }
        Ok(())
    }

    fn process_element2(
        &mut self,
        (_, name, city, state): Seller,
        ctx: &mut Context<'_, i64>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), Error> {
        for a in ctx.list(&WAITING).get()? {
            out.collect(format!("{name},{city},{state},{a}"));
        }
        ctx.list(&WAITING).clear()?;
        ctx.value(&SELLER).set(&(name, city, state))
    }
}

fn q3(events: DataStream<Event>) -> DataStream<String> {
    let auctions = events
        .clone()
        .auctions()
        .flat_map(|a: Auction| (a.category == 10).then_some((a.id, a.seller)))
        .name("auctions")
        .uid("q3-auctions");
    let sellers = events
        .persons()
        .flat_map(|p: Person| {
            matches!(p.state.as_str(), "OR" | "ID" | "CA")
                .then_some((p.id, p.name, p.city, p.state))
        })
        .name("sellers")
        .uid("q3-sellers");
    auctions
        .connect(sellers)
        .key_by(|(_, seller): &(i64, i64)| *seller, |p: &Seller| p.0)
        .process(LocalItems)
        .name("join")
        .uid("q3-join")
}

/// What q9 keeps of an auction: id, category, opened, expires.
type Opened = (i64, i64, i64, i64);
/// What q9 keeps of a bid: auction, bidder, price, time.
type Offer = (i64, i64, i64, i64);
/// A winning bid: (auction id, category, expires) and (bidder, price, time).
pub type Winner = ((i64, i64, i64), (i64, i64, i64));

/// An auction, its best bid so far, and whether it closed.
const OPEN: ValueState<(Opened, Option<Offer>, bool)> = ValueState::new("open");
/// Bids that came before their auction.
const EARLY: ListState<Offer> = ListState::new("early");

/// Whether `bid` was placed while `auction` was open and beats `best`: a
/// higher price, then the earlier bid, then the lower bidder id.
fn better(auction: &Opened, bid: &Offer, best: &Option<Offer>) -> bool {
    let (_, _, opened, expires) = *auction;
    bid.3 >= opened
        && bid.3 <= expires
        && best.is_none_or(|b| (bid.2, -bid.3, -bid.1) > (b.2, -b.3, -b.1))
}

/// Closes each auction at its expiry with its best bid placed while it was
/// open (Nexmark's q9).
struct Closing;

impl KeyedCoProcessFunction<i64, Opened, Offer> for Closing {
    type Out = Winner;

    fn states(&self) -> Vec<StateDescriptor> {
        vec![OPEN.descriptor(), EARLY.descriptor()]
    }

    fn process_element1(
        &mut self,
        auction: Opened,
        ctx: &mut Context<'_, i64>,
        _out: &mut Collector<'_, Winner>,
    ) -> Result<(), Error> {
        let mut best = None;
        for bid in ctx.list(&EARLY).get()? {
            if better(&auction, &bid, &best) {
                best = Some(bid);
            }
        }
        ctx.list(&EARLY).clear()?;
        ctx.value(&OPEN).set(&(auction, best, false))?;
        ctx.timer_service().register_event_time_timer(auction.3);
        Ok(())
    }

    fn process_element2(
        &mut self,
        bid: Offer,
        ctx: &mut Context<'_, i64>,
        _out: &mut Collector<'_, Winner>,
    ) -> Result<(), Error> {
        match ctx.value(&OPEN).get()? {
            Some((auction, best, false)) => {
                if better(&auction, &bid, &best) {
                    ctx.value(&OPEN).set(&(auction, Some(bid), false))?;
                }
                Ok(())
            }
            // Closed: the bid came too late.
            Some(_) => Ok(()),
            None => ctx.list(&EARLY).add(&bid),
        }
    }

    fn on_timer(
        &mut self,
        _timestamp: i64,
        ctx: &mut Context<'_, i64>,
        out: &mut Collector<'_, Winner>,
    ) -> Result<(), Error> {
        if let Some((auction, best, _)) = ctx.value(&OPEN).get()? {
            if let Some((_, bidder, price, time)) = best {
                out.collect(((auction.0, auction.1, auction.3), (bidder, price, time)));
            }
            // Remembered as closed, so that later bids are not kept.
            ctx.value(&OPEN).set(&(auction, None, true))?;
        }
        Ok(())
    }
}

/// Nexmark's q9: the winning bid of every auction, when it closes.
fn winning_bids(events: DataStream<Event>) -> DataStream<Winner> {
    let auctions = events
        .clone()
        .auctions()
        .map(|a: Auction| (a.id, a.category, a.date_time, a.expires))
        .name("auctions")
        .uid("q9-auctions");
    let bids = events
        .bids()
        .map(|b: Bid| (b.auction, b.bidder, b.price, b.date_time))
        .name("bids")
        .uid("q9-bids");
    auctions
        .connect(bids)
        .key_by(|a: &Opened| a.0, |b: &Offer| b.0)
        .process(Closing)
        .name("closing prices")
        .uid("q9-closing")
}

fn q9(events: DataStream<Event>) -> DataStream<String> {
    winning_bids(events).map(|((id, category, expires), (bidder, price, time)): Winner| {
        format!("{id},{category},{expires},{bidder},{price},{time}")
    })
}

fn q4(events: DataStream<Event>) -> DataStream<String> {
    winning_bids(events)
        .map(|((_, category, _), (_, price, _)): Winner| (category, 1u64, price))
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

/// The auctions with the most bids of a window: (bids, auctions).
struct Hottest;

impl AggregateFunction<(i64, i64, u64)> for Hottest {
    type Acc = (u64, Vec<i64>);
    type Out = (u64, Vec<i64>);
    fn create_accumulator(&self) -> Self::Acc {
        (0, Vec::new())
    }
    fn add(&self, acc: &mut Self::Acc, (_, auction, n): (i64, i64, u64)) {
        if n > acc.0 {
            acc.0 = n;
            acc.1.clear();
        }
        if n == acc.0 {
            acc.1.push(auction);
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        if other.0 > acc.0 {
            *acc = other;
        } else if other.0 == acc.0 {
            acc.1.extend(other.1);
        }
    }
    fn get_result(&self, acc: &Self::Acc) -> Self::Out {
        acc.clone()
    }
}

fn q5(events: DataStream<Event>) -> DataStream<String> {
    const SLIDE: Duration = Duration::from_secs(2);
    bids(events)
        .map(|b: Bid| b.auction)
        .key_by(|auction: &i64| *auction)
        .window(SlidingEventTimeWindows::of(Duration::from_secs(10), SLIDE))
        .aggregate_with(Count, |auction: &i64, w: &TimeWindow, n: u64| {
            (w.end, *auction, n)
        })
        .name("bids per auction")
        .uid("q5-counts")
        // Each count carries its window's last millisecond: the tumbling
        // window of one slide that holds it gathers the counts of that
        // sliding window.
        .key_by(|(end, _, _): &(i64, i64, u64)| *end)
        .window(TumblingEventTimeWindows::of(SLIDE))
        .aggregate_with(
            Hottest,
            |end: &i64, _: &TimeWindow, (n, auctions): (u64, Vec<i64>)| {
                auctions
                    .into_iter()
                    .map(|a| format!("{a},{n},{end}"))
                    .collect::<Vec<_>>()
            },
        )
        .name("hot items")
        .uid("q5-top")
        .flat_map(|lines: Vec<String>| lines)
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

fn q7(events: DataStream<Event>) -> DataStream<Bid> {
    bids(events)
        .key_by(|_: &Bid| 0u8)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .aggregate(Highest)
        .name("highest bids")
        .uid("q7-highest")
        .flat_map(|bids: Vec<Bid>| bids)
}

fn q8(events: DataStream<Event>) -> DataStream<String> {
    let persons = events
        .clone()
        .persons()
        .map(|p: Person| (p.id, p.name))
        .name("persons")
        .uid("q8-persons");
    let sellers = events
        .auctions()
        .map(|a: Auction| a.seller)
        .name("sellers")
        .uid("q8-sellers");
    persons
        .join(sellers)
        .where_key(|(id, _): &(i64, String)| *id)
        .equal_to(|seller: &i64| *seller)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .co_group(
            |id: &i64,
             w: &TimeWindow,
             persons: Vec<(i64, String)>,
             sellers: Vec<i64>,
             out: &mut Collector<String>| {
                if !sellers.is_empty() {
                    for (_, name) in persons {
                        out.collect(format!("{id},{name},{}", w.start));
                    }
                }
            },
        )
        .name("new sellers")
        .uid("q8-join")
}
