//! Nexmark events: persons, auctions and bids, how they are encoded in a
//! record's value, and the generator the host's `nexmark` source runs.
//!
//! The generator follows the standard Nexmark generator's rules: out of
//! every 50 events one is a person, 3 are auctions and 46 are bids; 1 000
//! people are active and 100 auctions in flight at a time; a quarter of the
//! auctions belong to hot sellers, half of the bids go to hot auctions and
//! three quarters come from hot bidders; prices are `10^U(0,6)` cents; text
//! fields are padded to the standard sizes; event time advances by a fixed
//! step per event (10 M events per second by default). Event `n` depends
//! only on `n`, so that subtasks split the sequence and a test can compute
//! the same events again.
//!
//! The encoding is flat and little-endian, cheap to decode in a guest: a
//! tag byte (0 person, 1 auction, 2 bid), the integer fields as `i64`, then
//! the strings, each as a `u16` length and its UTF-8 bytes.

/// First person id, auction id and category, as in the standard generator.
pub const FIRST_PERSON_ID: i64 = 1000;
pub const FIRST_AUCTION_ID: i64 = 1000;
pub const FIRST_CATEGORY_ID: i64 = 10;
const HOT_RATIO: i64 = 100;
const IN_FLIGHT_AUCTIONS: i64 = 100;
const ACTIVE_PEOPLE: i64 = 1000;
const LEAD: i64 = 10;
const PROPORTION: u64 = 50;
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];

/// A person who registered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Person {
    pub id: i64,
    pub name: String,
    pub email_address: String,
    pub credit_card: String,
    pub city: String,
    pub state: String,
    /// Event time, in milliseconds since the epoch.
    pub date_time: i64,
    pub extra: String,
}

/// An item put up for auction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Auction {
    pub id: i64,
    pub item_name: String,
    pub description: String,
    pub initial_bid: i64,
    pub reserve: i64,
    pub date_time: i64,
    /// When the auction closes (milliseconds since the epoch).
    pub expires: i64,
    /// The person selling.
    pub seller: i64,
    pub category: i64,
    pub extra: String,
}

/// A bid on an auction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Bid {
    pub auction: i64,
    pub bidder: i64,
    /// In cents.
    pub price: i64,
    pub channel: String,
    pub url: String,
    pub date_time: i64,
    pub extra: String,
}

/// One Nexmark event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Event {
    Person(Person),
    Auction(Auction),
    Bid(Bid),
}

const PERSON: u8 = 0;
const AUCTION: u8 = 1;
const BID: u8 = 2;

impl Event {
    /// Event time, in milliseconds since the epoch.
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// Appends the event's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Encoder(out);
        match self {
            Event::Person(p) => {
                w.tag(PERSON);
                w.ints(&[p.id, p.date_time]);
                for s in [
                    &p.name,
                    &p.email_address,
                    &p.credit_card,
                    &p.city,
                    &p.state,
                    &p.extra,
                ] {
                    w.str(s);
                }
            }
            Event::Auction(a) => {
                w.tag(AUCTION);
                w.ints(&[
                    a.id,
                    a.initial_bid,
                    a.reserve,
                    a.date_time,
                    a.expires,
                    a.seller,
                    a.category,
                ]);
                for s in [&a.item_name, &a.description, &a.extra] {
                    w.str(s);
                }
            }
            Event::Bid(b) => {
                w.tag(BID);
                w.ints(&[b.auction, b.bidder, b.price, b.date_time]);
                for s in [&b.channel, &b.url, &b.extra] {
                    w.str(s);
                }
            }
        }
    }

    /// Decodes an event encoded by [`Event::encode`] (or the generator).
    pub fn decode(bytes: &[u8]) -> Result<Event, String> {
        let mut r = Decoder(bytes);
        let event = match r.u8()? {
            PERSON => {
                let [id, date_time] = r.ints()?;
                Event::Person(Person {
                    id,
                    date_time,
                    name: r.str()?,
                    email_address: r.str()?,
                    credit_card: r.str()?,
                    city: r.str()?,
                    state: r.str()?,
                    extra: r.str()?,
                })
            }
            AUCTION => {
                let [
                    id,
                    initial_bid,
                    reserve,
                    date_time,
                    expires,
                    seller,
                    category,
                ] = r.ints()?;
                Event::Auction(Auction {
                    id,
                    initial_bid,
                    reserve,
                    date_time,
                    expires,
                    seller,
                    category,
                    item_name: r.str()?,
                    description: r.str()?,
                    extra: r.str()?,
                })
            }
            BID => {
                let [auction, bidder, price, date_time] = r.ints()?;
                Event::Bid(Bid {
                    auction,
                    bidder,
                    price,
                    date_time,
                    channel: r.str()?,
                    url: r.str()?,
                    extra: r.str()?,
                })
            }
            t => return Err(format!("not a Nexmark event: tag {t}")),
        };
        if !r.0.is_empty() {
            return Err(format!(
                "not a Nexmark event: {} bytes after the end",
                r.0.len()
            ));
        }
        Ok(event)
    }

    /// The event, if it is of kind `tag`, without decoding other events.
    fn decode_tagged(bytes: &[u8], tag: u8) -> Result<Option<Event>, String> {
        match bytes.first() {
            Some(&t) if t == tag => Event::decode(bytes).map(Some),
            Some(&(PERSON | AUCTION | BID)) => Ok(None),
            Some(t) => Err(format!("not a Nexmark event: tag {t}")),
            None => Err("not a Nexmark event: empty".into()),
        }
    }

    /// The bid in this event, without decoding other events' fields.
    pub fn decode_bid(bytes: &[u8]) -> Result<Option<Bid>, String> {
        Ok(match Event::decode_tagged(bytes, BID)? {
            Some(Event::Bid(b)) => Some(b),
            _ => None,
        })
    }

    /// The auction in this event, without decoding other events' fields.
    pub fn decode_auction(bytes: &[u8]) -> Result<Option<Auction>, String> {
        Ok(match Event::decode_tagged(bytes, AUCTION)? {
            Some(Event::Auction(a)) => Some(a),
            _ => None,
        })
    }

    /// The person in this event, without decoding other events' fields.
    pub fn decode_person(bytes: &[u8]) -> Result<Option<Person>, String> {
        Ok(match Event::decode_tagged(bytes, PERSON)? {
            Some(Event::Person(p)) => Some(p),
            _ => None,
        })
    }
}

struct Encoder<'a>(&'a mut Vec<u8>);

impl Encoder<'_> {
    fn tag(&mut self, t: u8) {
        self.0.push(t);
    }

    fn ints(&mut self, v: &[i64]) {
        for i in v {
            self.0.extend_from_slice(&i.to_le_bytes());
        }
    }

    fn str(&mut self, s: &str) {
        let b = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
        self.0.extend_from_slice(&(b.len() as u16).to_le_bytes());
        self.0.extend_from_slice(b);
    }
}

struct Decoder<'a>(&'a [u8]);

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("not a Nexmark event: truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn ints<const N: usize>(&mut self) -> Result<[i64; N], String> {
        let mut out = [0i64; N];
        for o in &mut out {
            *o = i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"));
        }
        Ok(out)
    }

    fn str(&mut self) -> Result<String, String> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes"));
        let b = self.take(usize::from(n))?;
        String::from_utf8(b.to_vec())
            .map_err(|_| "not a Nexmark event: a string is not UTF-8".into())
    }
}

/// What the generator's events look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Event time of the first event, in milliseconds since the epoch.
    pub base_time_ms: i64,
    /// Event time between two events, in nanoseconds (100 for the standard
    /// 10 M events per second).
    pub ns_per_event: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            base_time_ms: 1_700_000_000_000,
            ns_per_event: 100,
        }
    }
}

impl GeneratorConfig {
    /// Event time of event `n`.
    pub fn time_of(&self, n: u64) -> i64 {
        let offset = u128::from(n) * u128::from(self.ns_per_event) / 1_000_000;
        self.base_time_ms
            .saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
    }

    /// Event `n` of the sequence.
    pub fn event(&self, n: u64) -> Event {
        let mut bytes = Vec::with_capacity(512);
        self.encode(n, &mut bytes);
        Event::decode(&bytes).expect("the generator's own encoding")
    }

    /// Appends the encoding of event `n` to `out`; returns its event time.
    pub fn encode(&self, n: u64, out: &mut Vec<u8>) -> i64 {
        let mut r =
            SplitRandom::new((n as i64).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64) + 17);
        let ts = self.time_of(n);
        let mut w = Encoder(out);
        let kind = n % PROPORTION;
        if kind < 1 {
            w.tag(PERSON);
            w.ints(&[last_person(n) + FIRST_PERSON_ID, ts]);
            let first = FIRST_NAMES[r.below(FIRST_NAMES.len())];
            let last = LAST_NAMES[r.below(LAST_NAMES.len())];
            w.str_parts(&[first, " ", last]);
            let (user, host) = (r.pad(7), r.pad(5));
            w.str_parts(&[as_str(&user), "@", as_str(&host), ".com"]);
            let card: Vec<String> = (0..4)
                .map(|_| format!("{:04}", r.int_below(10_000)))
                .collect();
            w.str(&card.join(" "));
            w.str(CITIES[r.below(CITIES.len())]);
            w.str(STATES[r.below(STATES.len())]);
            w.str(as_str(&r.pad(100)));
        } else if kind < 4 {
            let id = last_auction(n) + FIRST_AUCTION_ID;
            let seller = if r.int_below(4) == 0 {
                (last_person(n) / HOT_RATIO) * HOT_RATIO
            } else {
                next_person(n, &mut r)
            };
            let initial = price(&mut r);
            let item = r.pad(20);
            let description = r.pad(100);
            let reserve = initial + price(&mut r);
            let expires = ts.saturating_add(2000 + i64::from(r.int_below(18_000)));
            let category = FIRST_CATEGORY_ID + i64::from(r.int_below(5));
            w.tag(AUCTION);
            w.ints(&[
                id,
                initial,
                reserve,
                ts,
                expires,
                seller + FIRST_PERSON_ID,
                category,
            ]);
            w.str(as_str(&item));
            w.str(as_str(&description));
            w.str(as_str(&r.pad(250)));
        } else {
            let auction = if r.int_below(2) > 0 {
                (last_auction(n) / HOT_RATIO) * HOT_RATIO
            } else {
                next_auction(n, &mut r)
            };
            let bidder = if r.int_below(4) > 0 {
                (last_person(n) / HOT_RATIO) * HOT_RATIO + 1
            } else {
                next_person(n, &mut r)
            };
            let channel = r.int_below(10_000);
            let price = price(&mut r);
            w.tag(BID);
            w.ints(&[
                auction + FIRST_AUCTION_ID,
                bidder + FIRST_PERSON_ID,
                price,
                ts,
            ]);
            // Bids are most events: no allocation for their text.
            let mut digits = [0u8; 10];
            let ch = decimal(channel.unsigned_abs(), &mut digits);
            w.str_parts(&["channel-", ch]);
            let page: [u8; 5] = r.pad_array();
            w.str_parts(&[
                "https://www.nexmark.com/",
                as_str(&page),
                "/item.htm?query=1&channel_id=",
                ch,
            ]);
            let extra: [u8; 20] = r.pad_array();
            w.str(as_str(&extra));
        }
        ts
    }
}

impl Encoder<'_> {
    fn str_parts(&mut self, parts: &[&str]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.0.extend_from_slice(&(len as u16).to_le_bytes());
        for p in parts {
            self.0.extend_from_slice(p.as_bytes());
        }
    }
}

/// `n` in decimal, written into `buf`.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    as_str(&buf[i..])
}

fn as_str(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("padding is ASCII")
}

fn last_person(n: u64) -> i64 {
    (n / PROPORTION) as i64
}

fn last_auction(n: u64) -> i64 {
    let (epoch, offset) = ((n / PROPORTION) as i64, (n % PROPORTION) as i64);
    epoch * 3 + if offset < 1 { 0 } else { (offset - 1).min(2) }
}

fn next_person(n: u64, r: &mut SplitRandom) -> i64 {
    let last = last_person(n);
    let min = (last - ACTIVE_PEOPLE).max(0);
    min + r.long_below(last - min + 1 + LEAD)
}

fn next_auction(n: u64, r: &mut SplitRandom) -> i64 {
    let last = last_auction(n);
    let min = (last - IN_FLIGHT_AUCTIONS).max(0);
    min + r.long_below(last - min + 1 + LEAD)
}

fn price(r: &mut SplitRandom) -> i64 {
    // Java's Math.round: the nearest integer, halves up.
    (10f64.powf(r.double() * 6.0) * 100.0 + 0.5).floor() as i64
}

/// Java's `SplittableRandom` (same sequence for the same seed), so that
/// the events are the ones other implementations of these rules generate.
struct SplitRandom {
    seed: i64,
}

const GOLDEN_GAMMA: i64 = 0x9E37_79B9_7F4A_7C15_u64 as i64;

impl SplitRandom {
    fn new(seed: i64) -> Self {
        SplitRandom { seed }
    }

    fn next_seed(&mut self) -> i64 {
        self.seed = self.seed.wrapping_add(GOLDEN_GAMMA);
        self.seed
    }

    fn mix64(z: i64) -> i64 {
        let z = z as u64;
        let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as i64
    }

    fn mix32(z: i64) -> i32 {
        let z = z as u64;
        let z = (z ^ (z >> 33)).wrapping_mul(0x62a9_d9ed_7997_05f5);
        ((z ^ (z >> 28)).wrapping_mul(0xcb24_d0a5_c88c_35b3) >> 32) as i32
    }

    fn int(&mut self) -> i32 {
        Self::mix32(self.next_seed())
    }

    fn long(&mut self) -> i64 {
        Self::mix64(self.next_seed())
    }

    /// `nextInt(bound)`.
    fn int_below(&mut self, bound: i32) -> i32 {
        let mut r = self.int();
        let m = bound - 1;
        if bound & m == 0 {
            return r & m;
        }
        let mut u = ((r as u32) >> 1) as i32;
        loop {
            r = u % bound;
            if u.wrapping_add(m).wrapping_sub(r) >= 0 {
                return r;
            }
            u = ((self.int() as u32) >> 1) as i32;
        }
    }

    /// `nextLong(bound)`.
    fn long_below(&mut self, bound: i64) -> i64 {
        let mut r = self.long();
        let m = bound - 1;
        if bound & m == 0 {
            return r & m;
        }
        let mut u = ((r as u64) >> 1) as i64;
        loop {
            r = u % bound;
            if u.wrapping_add(m).wrapping_sub(r) >= 0 {
                return r;
            }
            u = ((self.long() as u64) >> 1) as i64;
        }
    }

    fn below(&mut self, len: usize) -> usize {
        self.int_below(len as i32) as usize
    }

    /// `nextDouble()`.
    fn double(&mut self) -> f64 {
        ((self.long() as u64) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `len` random lower-case letters.
    /// `N` random lower-case letters, without allocating.
    fn pad_array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for c in &mut out {
            *c = b'a' + self.int_below(26) as u8;
        }
        out
    }

    fn pad(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| b'a' + self.int_below(26) as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_splittable_random_sequence() {
        // new SplittableRandom(42): nextLong(), nextInt(), nextInt(10),
        // nextLong(1000), nextDouble().
        let mut r = SplitRandom::new(42);
        assert_eq!(r.long(), -4_767_286_540_954_276_203);
        assert_eq!(r.int(), 909_395_113);
        assert_eq!(r.int_below(10), 1);
        assert_eq!(r.long_below(1000), 882);
        assert_eq!(r.double(), 0.038_030_168_540_246_21);
    }

    #[test]
    fn the_events_of_the_java_rules() {
        // Computed with the same rules on Java's SplittableRandom.
        let g = GeneratorConfig::default();
        let Event::Person(p) = g.event(0) else {
            panic!("a person")
        };
        assert_eq!(
            (
                p.id,
                &*p.name,
                &*p.email_address,
                &*p.credit_card,
                &*p.city,
                &*p.state
            ),
            (
                1000,
                "Vicky White",
                "cumtvav@ioxvp.com",
                "2090 0051 0661 8828",
                "Kent",
                "WA"
            )
        );
        let Event::Auction(a) = g.event(1) else {
            panic!("an auction")
        };
        assert_eq!(
            (
                a.id,
                &*a.item_name,
                a.initial_bid,
                a.reserve,
                a.expires,
                a.seller,
                a.category
            ),
            (
                1000,
                "mtvavioxvpqlfkwarjbw",
                2205,
                25892,
                1_700_000_018_080,
                1003,
                14
            )
        );
        let Event::Bid(b) = g.event(4) else {
            panic!("a bid")
        };
        assert_eq!(
            (b.auction, b.bidder, b.price, &*b.channel, &*b.extra),
            (1000, 1001, 834_024, "channel-3705", "pqlfkwarjbwuknohevvh")
        );
        assert_eq!(
            b.url,
            "https://www.nexmark.com/vioxv/item.htm?query=1&channel_id=3705"
        );
        let Event::Bid(b) = g.event(1_234_567) else {
            panic!("a bid")
        };
        assert_eq!(
            (b.auction, b.bidder, b.price, b.date_time),
            (74_976, 25_601, 27_282_126, 1_700_000_000_123)
        );
    }

    #[test]
    fn proportions_ids_and_round_trip() {
        let g = GeneratorConfig::default();
        let (mut people, mut auctions, mut bids) = (0, 0, 0);
        for n in 0..5_000 {
            let e = g.event(n);
            let mut bytes = Vec::new();
            e.encode(&mut bytes);
            assert_eq!(Event::decode(&bytes).unwrap(), e);
            assert_eq!(e.date_time(), g.time_of(n));
            match e {
                Event::Person(p) => {
                    people += 1;
                    assert_eq!(p.id, FIRST_PERSON_ID + (n / 50) as i64);
                    assert!(p.email_address.ends_with(".com") && p.extra.len() == 100);
                }
                Event::Auction(a) => {
                    auctions += 1;
                    assert!((10..15).contains(&a.category));
                    assert!(a.reserve >= a.initial_bid && a.expires > a.date_time);
                }
                Event::Bid(b) => {
                    bids += 1;
                    assert!(b.auction >= FIRST_AUCTION_ID && b.price >= 100);
                    assert!(b.url.contains(&b.channel["channel-".len()..]));
                }
            }
        }
        assert_eq!((people, auctions, bids), (100, 300, 4600));
        assert!(Event::decode(&[7]).is_err());
        assert!(Event::decode(&[2, 1, 2]).is_err());
    }
}
