//! Keyed process functions, as Flink's `KeyedProcessFunction`: per-key
//! state the function declares, timers on event time and processing time,
//! and side outputs.

use crate::env::{FnEntry, SidePorts};
use crate::host::{self, TimeDomain};
use crate::plan::{OperatorKind, StateDescriptor, StateKind};
use crate::runtime::Output;
use crate::stage::Collector;
use crate::window::OutputTag;
use crate::{DataStream, Error, KeyedStream, codec};
use serde::{Serialize, de::DeserializeOwned};
use std::cell::RefCell;
use std::marker::PhantomData;
use weir_frame::{Reader, Writer};

/// A keyed state holding one value per key.
///
/// ```
/// # use weir_sdk::prelude::*;
/// const LAST_SEEN: ValueState<i64> = ValueState::new("last-seen");
/// ```
#[derive(Debug)]
pub struct ValueState<T> {
    name: &'static str,
    _t: PhantomData<fn() -> T>,
}

/// A keyed state holding a list per key.
///
/// ```
/// # use weir_sdk::prelude::*;
/// const EVENTS: ListState<String> = ListState::new("events");
/// ```
#[derive(Debug)]
pub struct ListState<T> {
    name: &'static str,
    _t: PhantomData<fn() -> T>,
}

/// A keyed state holding a map per key.
///
/// ```
/// # use weir_sdk::prelude::*;
/// const PER_PAGE: MapState<String, u64> = MapState::new("per-page");
/// ```
#[derive(Debug)]
pub struct MapState<K, V> {
    name: &'static str,
    _t: PhantomData<fn() -> (K, V)>,
}

macro_rules! descriptor {
    ($ty:ident < $($p:ident),+ >, $kind:expr) => {
        impl<$($p),+> $ty<$($p),+> {
            /// A state named `name`, unique within the function.
            pub const fn new(name: &'static str) -> Self {
                $ty { name, _t: PhantomData }
            }

            /// Its declaration, for [`KeyedProcessFunction::states`].
            pub fn descriptor(&self) -> StateDescriptor {
                StateDescriptor { name: self.name.to_owned(), kind: $kind }
            }
        }
    };
}

descriptor!(ValueState<T>, StateKind::Value);
descriptor!(ListState<T>, StateKind::List);
descriptor!(MapState<K, V>, StateKind::Map);

/// What a keyed process function does with each record and timer, as
/// Flink's `KeyedProcessFunction<K, I, O>`.
///
/// ```no_run
/// use weir_sdk::prelude::*;
///
/// /// Emits a key when it has seen no record for a minute of event time.
/// struct Timeout;
///
/// const LAST: ValueState<i64> = ValueState::new("last");
///
/// impl KeyedProcessFunction<String, (String, i64)> for Timeout {
///     type Out = String;
///
///     fn states(&self) -> Vec<StateDescriptor> {
///         vec![LAST.descriptor()]
///     }
///
///     fn process_element(
///         &mut self,
///         (_, ts): (String, i64),
///         ctx: &mut Context<'_, String>,
///         _out: &mut Collector<'_, String>,
///     ) -> Result<(), Error> {
///         ctx.value(&LAST).set(&ts)?;
///         ctx.timer_service().register_event_time_timer(ts + 60_000);
///         Ok(())
///     }
///
///     fn on_timer(
///         &mut self,
///         timestamp: i64,
///         ctx: &mut Context<'_, String>,
///         out: &mut Collector<'_, String>,
///     ) -> Result<(), Error> {
///         if ctx.value(&LAST).get()? == Some(timestamp - 60_000) {
///             out.collect(ctx.get_current_key().clone());
///         }
///         Ok(())
///     }
/// }
/// # fn main() {}
/// ```
pub trait KeyedProcessFunction<K, I>: 'static {
    /// What the function emits.
    type Out: Serialize + DeserializeOwned + 'static;

    /// The keyed states the function uses (declared in the plan, restored
    /// by name).
    fn states(&self) -> Vec<StateDescriptor> {
        Vec::new()
    }

    /// Called for every record of the key.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut Context<'_, K>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<(), Error>;

    /// Called when a timer the function registered fires.
    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut Context<'_, K>,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<(), Error> {
        let _ = (timestamp, ctx, out);
        Ok(())
    }
}

/// The context of a call of a keyed process function: its key, time,
/// timers, state and side outputs.
pub struct Context<'a, K> {
    key: &'a K,
    key_bytes: &'a [u8],
    timestamp: Option<i64>,
    watermark: i64,
    processing_time: i64,
    domain: Option<TimeDomain>,
    states: &'a [StateDescriptor],
    values: &'a RefCell<ValueCache>,
    ports: &'a SidePorts,
    side: &'a mut Writer,
}

/// Keys of value states a process function keeps in its cache before it
/// writes them back and starts over; and the bytes of keys and values.
const CACHED_VALUES: usize = 65_536;
const CACHED_BYTES: usize = 16 << 20;

/// The write-back cache of a keyed process function's value states: the
/// encoded values of the keys used lately, so that reading or writing a
/// value usually costs no call of the host. Dirty values go to the host as
/// one batch when the host asks (before every snapshot) or when the cache
/// is full.
#[derive(Debug, Default)]
pub(crate) struct ValueCache {
    /// `state index (u32 LE) | key` -> the value, or None when absent.
    map: hashbrown::HashMap<Box<[u8]>, Cached>,
    /// Bytes of the ids and values in `map`.
    bytes: usize,
    scratch: Vec<u8>,
}

fn size(value: &Option<Vec<u8>>) -> usize {
    value.as_ref().map_or(0, Vec::len)
}

#[derive(Debug)]
struct Cached {
    value: Option<Vec<u8>>,
    dirty: bool,
}

impl ValueCache {
    fn id(&mut self, state: u32, key: &[u8]) {
        self.scratch.clear();
        self.scratch.extend_from_slice(&state.to_le_bytes());
        self.scratch.extend_from_slice(key);
    }

    fn get(&mut self, state: u32, key: &[u8]) -> Option<Vec<u8>> {
        self.id(state, key);
        if let Some(c) = self.map.get(self.scratch.as_slice()) {
            return c.value.clone();
        }
        let value = host::state_get(state, key, b"");
        self.insert(value.clone(), false);
        value
    }

    fn set(&mut self, state: u32, key: &[u8], value: Option<Vec<u8>>) {
        self.id(state, key);
        match self.map.get_mut(self.scratch.as_slice()) {
            Some(c) => {
                self.bytes = self.bytes - size(&c.value) + size(&value);
                c.value = value;
                c.dirty = true;
                if self.bytes > CACHED_BYTES {
                    self.flush(true);
                }
            }
            None => self.insert(value, true),
        }
    }

    /// Inserts the entry named by the scratch id, making room first.
    fn insert(&mut self, value: Option<Vec<u8>>, dirty: bool) {
        let bytes = self.scratch.len() + size(&value);
        if self.map.len() >= CACHED_VALUES || self.bytes + bytes > CACHED_BYTES {
            self.flush(true);
        }
        self.bytes += bytes;
        self.map
            .insert(self.scratch.as_slice().into(), Cached { value, dirty });
    }

    /// Writes dirty values back to the host; `forget` empties the cache.
    pub(crate) fn flush(&mut self, forget: bool) {
        let mut by_state: Vec<(u32, Writer)> = Vec::new();
        for (id, c) in self.map.iter_mut().filter(|(_, c)| c.dirty) {
            let state = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
            let w = match by_state.iter_mut().position(|(s, _)| *s == state) {
                Some(i) => &mut by_state[i].1,
                None => {
                    by_state.push((state, Writer::new()));
                    &mut by_state.last_mut().expect("just pushed").1
                }
            };
            w.push(&weir_frame::Record {
                key: Some(&id[4..]),
                namespace: Some(b""),
                tombstone: c.value.is_none(),
                value: c.value.as_deref().unwrap_or_default(),
                ..weir_frame::Record::default()
            });
            c.dirty = false;
        }
        for (state, w) in by_state {
            host::state_write(state, w.as_bytes());
        }
        if forget {
            self.map.clear();
            self.bytes = 0;
        }
    }
}

impl<K> std::fmt::Debug for Context<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("timestamp", &self.timestamp)
            .field("watermark", &self.watermark)
            .finish()
    }
}

/// Registers and deletes the current key's timers.
#[derive(Debug)]
pub struct TimerService<'a> {
    key: &'a [u8],
    watermark: i64,
    processing_time: i64,
}

impl TimerService<'_> {
    /// The current event time: the operator's watermark.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// The current processing time (ms since the Unix epoch).
    pub fn current_processing_time(&self) -> i64 {
        self.processing_time
    }

    /// Calls `on_timer` once the watermark reaches `time`.
    pub fn register_event_time_timer(&self, time: i64) {
        host::register_timer(TimeDomain::EventTime, self.key, b"", time);
    }

    /// Calls `on_timer` once the clock reaches `time`.
    pub fn register_processing_time_timer(&self, time: i64) {
        host::register_timer(TimeDomain::ProcessingTime, self.key, b"", time);
    }

    pub fn delete_event_time_timer(&self, time: i64) {
        host::delete_timer(TimeDomain::EventTime, self.key, b"", time);
    }

    pub fn delete_processing_time_timer(&self, time: i64) {
        host::delete_timer(TimeDomain::ProcessingTime, self.key, b"", time);
    }
}

impl<'a, K> Context<'a, K> {
    /// The key of the record or timer.
    pub fn get_current_key(&self) -> &K {
        self.key
    }

    /// The record's event timestamp (in `on_timer`, the timer's time).
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// In `on_timer`: whether an event-time or a processing-time timer fired.
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.domain
    }

    pub fn timer_service(&self) -> TimerService<'_> {
        TimerService {
            key: self.key_bytes,
            watermark: self.watermark,
            processing_time: self.processing_time,
        }
    }

    fn index(&self, name: &str, kind: StateKind) -> Result<u32, Error> {
        match self.states.iter().position(|s| s.name == name) {
            Some(i) if self.states[i].kind == kind => Ok(i as u32),
            Some(_) => Err(Error::new(format!(
                "state '{name}' is declared as another kind of state"
            ))),
            None => Err(Error::new(format!(
                "state '{name}' is not declared; list it in the function's states()"
            ))),
        }
    }

    /// The current key's value of `state`.
    pub fn value<'s, T>(&'s self, state: &ValueState<T>) -> ValueHandle<'s, T> {
        ValueHandle {
            index: self.index(state.name, StateKind::Value),
            key: self.key_bytes,
            cache: self.values,
            _t: PhantomData,
        }
    }

    /// The current key's list of `state`.
    pub fn list<'s, T>(&'s self, state: &ListState<T>) -> ListHandle<'s, T> {
        ListHandle {
            index: self.index(state.name, StateKind::List),
            key: self.key_bytes,
            _t: PhantomData,
        }
    }

    /// The current key's map of `state`.
    pub fn map<'s, MK, V>(&'s self, state: &MapState<MK, V>) -> MapHandle<'s, MK, V> {
        MapHandle {
            index: self.index(state.name, StateKind::Map),
            key: self.key_bytes,
            _t: PhantomData,
        }
    }

    /// Sends `value` to side output `tag` (dropped when nothing reads it).
    pub fn output<U: Serialize>(&mut self, tag: &OutputTag<U>, value: U) {
        let port = self
            .ports
            .borrow()
            .iter()
            .find(|(t, _)| *t == tag.id)
            .map(|(_, p)| *p);
        if let Some(port) = port {
            let mut b = self.side.begin(None, None, self.timestamp, port);
            codec::encode(&value, b.value_buf());
            b.finish();
        }
    }
}

/// The current key's value of a [`ValueState`].
#[derive(Debug)]
pub struct ValueHandle<'a, T> {
    index: Result<u32, Error>,
    key: &'a [u8],
    cache: &'a RefCell<ValueCache>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> ValueHandle<'_, T> {
    fn index(&self) -> Result<u32, Error> {
        self.index.clone()
    }

    pub fn get(&self) -> Result<Option<T>, Error> {
        let index = self.index()?;
        let cache = &mut *self.cache.borrow_mut();
        cache.id(index, self.key);
        let bytes = match cache.map.get(cache.scratch.as_slice()) {
            Some(c) => return c.value.as_deref().map(codec::decode).transpose(),
            None => cache.get(index, self.key),
        };
        bytes.as_deref().map(codec::decode).transpose()
    }

    pub fn set(&self, value: &T) -> Result<(), Error> {
        let mut b = Vec::new();
        codec::encode(value, &mut b);
        let index = self.index()?;
        self.cache.borrow_mut().set(index, self.key, Some(b));
        Ok(())
    }

    pub fn clear(&self) -> Result<(), Error> {
        let index = self.index()?;
        self.cache.borrow_mut().set(index, self.key, None);
        Ok(())
    }
}

/// The current key's list of a [`ListState`].
#[derive(Debug)]
pub struct ListHandle<'a, T> {
    index: Result<u32, Error>,
    key: &'a [u8],
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> ListHandle<'_, T> {
    pub fn add(&self, value: &T) -> Result<(), Error> {
        let mut b = Vec::new();
        codec::encode(value, &mut b);
        host::state_append(self.index.clone()?, self.key, b"", &b);
        Ok(())
    }

    pub fn get(&self) -> Result<Vec<T>, Error> {
        let Some(list) = host::state_get(self.index.clone()?, self.key, b"") else {
            return Ok(Vec::new());
        };
        Reader::new(&list)
            .map(|r| codec::decode(r?.value))
            .collect()
    }

    pub fn clear(&self) -> Result<(), Error> {
        host::state_delete(self.index.clone()?, self.key, b"");
        Ok(())
    }
}

/// The current key's map of a [`MapState`].
#[derive(Debug)]
pub struct MapHandle<'a, K, V> {
    index: Result<u32, Error>,
    key: &'a [u8],
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapHandle<'_, K, V> {
    fn entry(k: &K) -> Vec<u8> {
        let mut b = Vec::new();
        codec::encode(k, &mut b);
        b
    }

    pub fn get(&self, k: &K) -> Result<Option<V>, Error> {
        match host::state_get(self.index.clone()?, self.key, &Self::entry(k)) {
            Some(b) => Ok(Some(codec::decode(&b)?)),
            None => Ok(None),
        }
    }

    pub fn put(&self, k: &K, v: &V) -> Result<(), Error> {
        let mut b = Vec::new();
        codec::encode(v, &mut b);
        host::state_put(self.index.clone()?, self.key, &Self::entry(k), &b);
        Ok(())
    }

    pub fn remove(&self, k: &K) -> Result<(), Error> {
        host::state_delete(self.index.clone()?, self.key, &Self::entry(k));
        Ok(())
    }

    /// Every entry, in the order of their encoded keys.
    pub fn entries(&self) -> Result<Vec<(K, V)>, Error> {
        let scanned = host::state_scan(self.index.clone()?, self.key, b"");
        Reader::new(&scanned)
            .map(|r| {
                let r = r?;
                Ok((
                    codec::decode(r.key.unwrap_or_default())?,
                    codec::decode(r.value)?,
                ))
            })
            .collect()
    }
}

/// Calls of the host for keyed process functions.
pub(crate) trait ProcessOp {
    fn process(&mut self, batch: &[u8], watermark: i64, now: i64) -> Result<Output, Error>;
    fn on_timer(
        &mut self,
        domain: TimeDomain,
        timers: &[u8],
        watermark: i64,
        now: i64,
    ) -> Result<Output, Error>;
    /// Writes cached state back to the host; `forget` empties the cache.
    fn flush(&mut self, forget: bool);
}

struct KeyedProcess<K, I, F> {
    f: F,
    states: Vec<StateDescriptor>,
    values: RefCell<ValueCache>,
    ports: SidePorts,
    _t: PhantomData<fn(K, I)>,
}

impl<K, I, F> KeyedProcess<K, I, F>
where
    K: DeserializeOwned,
    I: DeserializeOwned,
    F: KeyedProcessFunction<K, I>,
{
    /// Calls `call` for each record of `batch` with its context.
    fn each(
        &mut self,
        batch: &[u8],
        watermark: i64,
        now: i64,
        domain: Option<TimeDomain>,
        mut call: impl FnMut(
            &mut F,
            &weir_frame::Record<'_>,
            &mut Context<'_, K>,
            &mut Collector<'_, F::Out>,
        ) -> Result<(), Error>,
    ) -> Result<Output, Error> {
        let mut out = Writer::new();
        let mut side = Writer::new();
        for rec in Reader::new(batch) {
            let rec = rec?;
            let key_bytes = rec.key.ok_or_else(|| {
                Error::new("internal error: a record without a key reached a process function")
            })?;
            let key: K =
                codec::decode(key_bytes).map_err(|e| e.context("cannot decode the record key"))?;
            let ts = rec.timestamp;
            let mut emit = |v: F::Out| {
                let mut b = out.begin(None, None, ts, 0);
                codec::encode(&v, b.value_buf());
                b.finish();
                Ok(())
            };
            let mut collector = Collector::new(&mut emit);
            let mut ctx = Context {
                key: &key,
                key_bytes,
                timestamp: ts,
                watermark,
                processing_time: now,
                domain,
                states: &self.states,
                values: &self.values,
                ports: &self.ports,
                side: &mut side,
            };
            call(&mut self.f, &rec, &mut ctx, &mut collector)?;
            collector.finish()?;
        }
        Ok(Output::new(out, side))
    }
}

impl<K, I, F> ProcessOp for KeyedProcess<K, I, F>
where
    K: DeserializeOwned,
    I: DeserializeOwned,
    F: KeyedProcessFunction<K, I>,
{
    fn process(&mut self, batch: &[u8], watermark: i64, now: i64) -> Result<Output, Error> {
        self.each(batch, watermark, now, None, |f, rec, ctx, out| {
            let value: I = codec::decode(rec.value)?;
            f.process_element(value, ctx, out)
        })
    }

    fn on_timer(
        &mut self,
        domain: TimeDomain,
        timers: &[u8],
        watermark: i64,
        now: i64,
    ) -> Result<Output, Error> {
        self.each(timers, watermark, now, Some(domain), |f, rec, ctx, out| {
            let ts = rec
                .timestamp
                .ok_or_else(|| Error::new("internal error: a timer without a time"))?;
            f.on_timer(ts, ctx, out)
        })
    }

    fn flush(&mut self, forget: bool) {
        self.values.get_mut().flush(forget);
    }
}

impl<K, T> KeyedStream<K, T>
where
    K: Serialize + DeserializeOwned + 'static,
    T: Serialize + DeserializeOwned + 'static,
{
    /// Runs a [`KeyedProcessFunction`] over the stream.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// struct Echo;
    /// impl KeyedProcessFunction<String, (String, i64)> for Echo {
    ///     type Out = (String, i64);
    ///     fn process_element(&mut self, v: (String, i64), _ctx: &mut Context<'_, String>,
    ///                        out: &mut Collector<'_, (String, i64)>) -> Result<(), Error> {
    ///         out.collect(v);
    ///         Ok(())
    ///     }
    /// }
    /// # fn f(s: KeyedStream<String, (String, i64)>) {
    /// let echoed = s.process(Echo);
    /// # }
    /// ```
    pub fn process<F>(self, f: F) -> DataStream<F::Out>
    where
        F: KeyedProcessFunction<K, T>,
    {
        let states = f.states();
        let ports = SidePorts::default();
        let op = KeyedProcess::<K, T, F> {
            f,
            states: states.clone(),
            values: RefCell::default(),
            ports: ports.clone(),
            _t: PhantomData,
        };
        let out: DataStream<F::Out> = self.into_stream().add_op(
            "KeyedProcess",
            OperatorKind::Process,
            Some(FnEntry::Process(Box::new(op))),
        );
        let id = out.outputs[0].0;
        let mut g = out.g.borrow_mut();
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = states.iter().find(|s| !seen.insert(s.name.clone())) {
            let e = Error::new(format!("state '{}' is declared twice", dup.name));
            g.fail(e);
        }
        g.plan.operators[id as usize].states = states;
        g.side_ports.insert(id, ports);
        drop(g);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{LogLevel, TimeDomain};
    use std::collections::BTreeMap;

    /// Keyed state of one value state, and the calls that reached it.
    #[derive(Default)]
    struct Store {
        values: BTreeMap<Vec<u8>, Vec<u8>>,
        gets: usize,
        writes: usize,
    }

    impl crate::native::Host for Store {
        fn log(&mut self, _: LogLevel, _: &str) {}
        fn state_get(&mut self, _: u32, key: &[u8], _: &[u8]) -> Option<Vec<u8>> {
            self.gets += 1;
            self.values.get(key).cloned()
        }
        fn state_put(&mut self, _: u32, _: &[u8], _: &[u8], _: &[u8]) {
            unreachable!("values are written in batches")
        }
        fn state_delete(&mut self, _: u32, _: &[u8], _: &[u8]) {
            unreachable!("values are written in batches")
        }
        fn state_append(&mut self, _: u32, _: &[u8], _: &[u8], _: &[u8]) {}
        fn state_scan(&mut self, _: u32, _: &[u8], _: &[u8]) -> Vec<u8> {
            Vec::new()
        }
        fn state_write(&mut self, state: u32, writes: &[u8]) {
            assert_eq!(state, 3);
            self.writes += 1;
            for r in Reader::new(writes) {
                let r = r.unwrap();
                let key = r.key.unwrap().to_vec();
                if r.tombstone {
                    self.values.remove(&key);
                } else {
                    self.values.insert(key, r.value.to_vec());
                }
            }
        }
        fn register_timer(&mut self, _: TimeDomain, _: &[u8], _: &[u8], _: i64) {}
        fn delete_timer(&mut self, _: TimeDomain, _: &[u8], _: &[u8], _: i64) {}
    }

    #[test]
    fn cached_values_are_read_once_and_written_back_in_batches() {
        let mut store = Store::default();
        store.values.insert(b"old".to_vec(), b"1".to_vec());
        let mut cache = ValueCache::default();
        crate::host::with_host(&mut store, || {
            assert_eq!(cache.get(3, b"old"), Some(b"1".to_vec()));
            assert_eq!(cache.get(3, b"old"), Some(b"1".to_vec()));
            assert_eq!(cache.get(3, b"none"), None);
            assert_eq!(cache.get(3, b"none"), None);
            cache.set(3, b"old", None);
            cache.set(3, b"new", Some(b"2".to_vec()));
            assert_eq!(cache.get(3, b"old"), None, "cleared, in the cache");
        });
        assert_eq!(
            (store.gets, store.writes),
            (2, 0),
            "two reads, nothing written yet"
        );
        crate::host::with_host(&mut store, || cache.flush(false));
        assert_eq!(store.writes, 1);
        assert_eq!(store.values.get(&b"new"[..]), Some(&b"2".to_vec()));
        assert!(
            !store.values.contains_key(&b"old"[..]),
            "the clear is a tombstone"
        );
        // Past its capacity the cache writes back and starts over; every
        // value survives.
        crate::host::with_host(&mut store, || {
            for i in 0..(CACHED_VALUES as u32 + 10) {
                cache.set(3, &i.to_le_bytes(), Some(i.to_be_bytes().to_vec()));
            }
        });
        assert_eq!(store.writes, 2, "one write-back when full");
        crate::host::with_host(&mut store, || {
            cache.flush(true);
            for i in [0u32, 7, CACHED_VALUES as u32 + 9] {
                assert_eq!(
                    cache.get(3, &i.to_le_bytes()),
                    Some(i.to_be_bytes().to_vec())
                );
            }
        });
        assert_eq!(store.values.len(), CACHED_VALUES + 10 + 1);
        // Large values are written back by their size, well before the
        // cache holds as many keys.
        let writes = store.writes;
        crate::host::with_host(&mut store, || {
            for i in 0..40u32 {
                cache.set(3, &i.to_le_bytes(), Some(vec![7; 1 << 20]));
            }
        });
        assert!(store.writes >= writes + 2, "written back by size");
        assert!(cache.bytes <= CACHED_BYTES + (1 << 20) + 8);
        crate::host::with_host(&mut store, || cache.flush(true));
        assert_eq!(cache.bytes, 0);
        assert_eq!(
            store.values.get(&39u32.to_le_bytes()[..]).map(Vec::len),
            Some(1 << 20)
        );
    }
}
