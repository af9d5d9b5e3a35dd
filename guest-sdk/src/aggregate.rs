//! Keyed aggregations (reduce, sum, aggregate, window aggregates) and the
//! write-back cache of their accumulators.
//!
//! Accumulators live in the host's keyed state (RocksDB). On the hot path
//! they are kept decoded in the guest, in slots the host numbers: the host
//! hashes each record's key once (natively) and passes its slot, so folding
//! a record costs an index into a vector and one call of the user's
//! function. Dirty slots are written back to the host (`state-write`) when
//! the host asks for a flush — before every snapshot, and when it renumbers
//! slots to bound their number.

use crate::runtime::Output;
use crate::{Error, codec, host};
use serde::{Serialize, de::DeserializeOwned};
use weir_frame::{Reader, Record, Writer};

/// An incremental aggregation, as Flink's `AggregateFunction`: records are
/// added into an accumulator, accumulators can be merged, and a result is
/// read from an accumulator.
///
/// ```
/// use weir_sdk::AggregateFunction;
///
/// /// Average of the values per key.
/// struct Average;
///
/// impl AggregateFunction<f64> for Average {
///     type Acc = (f64, u64);
///     type Out = f64;
///     fn create_accumulator(&self) -> (f64, u64) { (0.0, 0) }
///     fn add(&self, acc: &mut (f64, u64), value: f64) { acc.0 += value; acc.1 += 1; }
///     fn merge(&self, acc: &mut (f64, u64), other: (f64, u64)) { acc.0 += other.0; acc.1 += other.1; }
///     fn get_result(&self, acc: &(f64, u64)) -> f64 { acc.0 / acc.1 as f64 }
/// }
///
/// let mut acc = Average.create_accumulator();
/// Average.add(&mut acc, 1.0);
/// Average.add(&mut acc, 3.0);
/// assert_eq!(Average.get_result(&acc), 2.0);
/// ```
pub trait AggregateFunction<In>: 'static {
    /// The accumulator kept in keyed state.
    type Acc: Serialize + DeserializeOwned + 'static;
    /// The result emitted downstream.
    type Out: Serialize + DeserializeOwned + 'static;
    /// A new, empty accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Adds one record.
    fn add(&self, acc: &mut Self::Acc, value: In);
    /// Merges `other` into `acc` (session windows, rescaling).
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The result of an accumulator.
    fn get_result(&self, acc: &Self::Acc) -> Self::Out;
}

/// The erased form of an aggregation the runtime calls.
pub(crate) trait Folder: 'static {
    type In: DeserializeOwned;
    type Acc: Serialize + DeserializeOwned;
    /// What a folder remembers per slot besides the accumulator (never
    /// stored in keyed state).
    type Memo: Default;
    fn create(&mut self) -> Self::Acc;
    fn add(&mut self, acc: &mut Self::Acc, value: Self::In);
    /// Adds an encoded value; folders may avoid decoding it.
    #[inline]
    fn add_encoded(
        &mut self,
        acc: &mut Self::Acc,
        _memo: &mut Self::Memo,
        value: &[u8],
    ) -> Result<(), Error> {
        let v = codec::decode(value)?;
        self.add(acc, v);
        Ok(())
    }
    fn merge(&mut self, acc: &mut Self::Acc, other: Self::Acc);
    /// Encodes the result of `acc`; false when the accumulator is empty.
    fn emit(&mut self, acc: &Self::Acc, out: &mut Vec<u8>) -> bool;
    /// Encodes the result of `acc` for a key and a window (namespace);
    /// window functions that see both override this.
    fn emit_keyed(
        &mut self,
        _key: &[u8],
        _window: &[u8],
        acc: &Self::Acc,
        out: &mut Vec<u8>,
    ) -> Result<bool, Error> {
        Ok(self.emit(acc, out))
    }
}

/// A user `AggregateFunction` as a folder.
pub(crate) struct UserAggregate<In, A> {
    pub f: A,
    pub _in: std::marker::PhantomData<fn(In)>,
}

impl<In: DeserializeOwned + 'static, A: AggregateFunction<In>> Folder for UserAggregate<In, A> {
    type In = In;
    type Acc = A::Acc;
    type Memo = ();

    fn create(&mut self) -> A::Acc {
        self.f.create_accumulator()
    }

    #[inline]
    fn add(&mut self, acc: &mut A::Acc, value: In) {
        self.f.add(acc, value)
    }

    fn merge(&mut self, acc: &mut A::Acc, other: A::Acc) {
        self.f.merge(acc, other)
    }

    #[inline]
    fn emit(&mut self, acc: &A::Acc, out: &mut Vec<u8>) -> bool {
        codec::encode(&self.f.get_result(acc), out);
        true
    }
}

/// A reduce function as a folder; the accumulator is the running value.
pub(crate) struct Reduce<T, F> {
    pub f: F,
    pub _t: std::marker::PhantomData<fn(T) -> T>,
}

impl<T, F> Folder for Reduce<T, F>
where
    T: Serialize + DeserializeOwned + 'static,
    F: FnMut(T, T) -> T + 'static,
{
    type In = T;
    type Acc = Option<T>;
    type Memo = ();

    fn create(&mut self) -> Option<T> {
        None
    }

    #[inline]
    fn add(&mut self, acc: &mut Option<T>, value: T) {
        *acc = Some(match acc.take() {
            None => value,
            Some(a) => (self.f)(a, value),
        });
    }

    fn merge(&mut self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(o) = other {
            self.add(acc, o);
        }
    }

    #[inline]
    fn emit(&mut self, acc: &Option<T>, out: &mut Vec<u8>) -> bool {
        match acc {
            Some(v) => {
                codec::encode(v, out);
                true
            }
            None => false,
        }
    }
}

/// Sums a numeric field of the values, as Flink's `sum(field)`. Values are
/// decoded into a reused scratch value, so folding allocates nothing; and
/// each slot remembers the encoding of the last value it added with its
/// field, so a key whose values repeat (a count of ones) decodes once.
pub(crate) struct Sum<T, F> {
    pub field: F,
    pub scratch: Option<T>,
}

impl<T, N, F> Folder for Sum<T, F>
where
    T: Serialize + DeserializeOwned + 'static,
    N: std::ops::AddAssign + Copy + 'static,
    F: Fn(&mut T) -> &mut N + 'static,
{
    type In = T;
    type Acc = Option<T>;
    type Memo = Option<(codec::SmallBytes, N)>;

    fn create(&mut self) -> Option<T> {
        None
    }

    #[inline]
    fn add(&mut self, acc: &mut Option<T>, mut value: T) {
        match acc {
            None => *acc = Some(value),
            Some(a) => *(self.field)(a) += *(self.field)(&mut value),
        }
    }

    #[inline]
    fn add_encoded(
        &mut self,
        acc: &mut Option<T>,
        memo: &mut Self::Memo,
        value: &[u8],
    ) -> Result<(), Error> {
        let Some(a) = acc else {
            *acc = Some(codec::decode(value)?);
            return Ok(());
        };
        if let Some((bytes, n)) = memo
            && bytes.is(value)
        {
            *(self.field)(a) += *n;
            return Ok(());
        }
        let scratch = match &mut self.scratch {
            Some(s) => {
                codec::decode_in_place(value, s)?;
                s
            }
            None => self.scratch.insert(codec::decode(value)?),
        };
        let n = *(self.field)(scratch);
        *(self.field)(a) += n;
        *memo = Some((codec::SmallBytes::new(value), n));
        Ok(())
    }

    fn merge(&mut self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(o) = other {
            self.add(acc, o);
        }
    }

    #[inline]
    fn emit(&mut self, acc: &Option<T>, out: &mut Vec<u8>) -> bool {
        match acc {
            Some(v) => {
                codec::encode(v, out);
                true
            }
            None => false,
        }
    }
}

/// The state index of built-in accumulators.
pub(crate) const ACC_STATE: u32 = 0;

/// Marks a slot the guest must load before use.
pub(crate) const FRESH: u32 = 0x8000_0000;

/// Where a slot's accumulator belongs: key bytes followed by namespace bytes.
struct SlotKey {
    bytes: Box<[u8]>,
    key_len: u32,
}

impl SlotKey {
    fn key(&self) -> &[u8] {
        &self.bytes[..self.key_len as usize]
    }

    fn namespace(&self) -> &[u8] {
        &self.bytes[self.key_len as usize..]
    }
}

/// What a fold touches for one slot, kept together in one cache line.
struct Hot<A, M> {
    acc: Option<A>,
    memo: M,
    dirty: bool,
}

impl<A, M: Default> Default for Hot<A, M> {
    fn default() -> Self {
        Hot {
            acc: None,
            memo: M::default(),
            dirty: false,
        }
    }
}

/// Accumulators by slot, apart from the keys, which only loading and
/// flushing need.
struct Slots<A, M> {
    hot: Vec<Hot<A, M>>,
    keys: Vec<Option<SlotKey>>,
}

impl<A, M: Default> Slots<A, M> {
    fn new() -> Self {
        Slots {
            hot: Vec::new(),
            keys: Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.hot.clear();
        self.keys.clear();
    }

    fn free(&mut self, id: usize) {
        self.hot[id] = Hot::default();
        self.keys[id] = None;
    }
}

/// Runs a folder over batches, with accumulators in host-numbered slots.
pub(crate) struct AggOp<F: Folder> {
    folder: F,
    slots: Slots<F::Acc, F::Memo>,
}

/// Calls of the host for aggregate operators.
pub(crate) trait AggregateOp {
    fn fold(&mut self, batch: &[u8], slots: &[u32], emit: bool) -> Result<Output, Error>;
    fn fire(&mut self, batch: &[u8], slots: &[u32], purge: bool) -> Result<Output, Error>;
    fn merge_windows(&mut self, batch: &[u8], slots: &[u32]) -> Result<(), Error>;
    fn flush(&mut self, forget: bool) -> Result<(), Error>;
}

fn require_key<'a>(rec: &Record<'a>, what: &str) -> Result<&'a [u8], Error> {
    rec.key.ok_or_else(|| {
        Error::new(format!(
            "internal error: a record without a key reached {what}; keyed operators need key_by"
        ))
    })
}

fn missing_slot() -> Error {
    Error::new("internal error: the host passed fewer slots than records")
}

impl<F: Folder> AggOp<F> {
    pub fn new(folder: F) -> Self {
        AggOp {
            folder,
            slots: Slots::new(),
        }
    }
}

/// The index of slot `s` (with the FRESH bit as the host sent it) for
/// (key, namespace), its accumulator loaded from keyed state when needed.
#[inline]
fn load<F: Folder>(
    slots: &mut Slots<F::Acc, F::Memo>,
    folder: &mut F,
    s: u32,
    key: &[u8],
    ns: &[u8],
) -> Result<usize, Error> {
    let id = (s & !FRESH) as usize;
    if id >= slots.hot.len() {
        slots.hot.resize_with(id + 1, Hot::default);
        slots.keys.resize_with(id + 1, || None);
    }
    if s & FRESH != 0 || slots.hot[id].acc.is_none() {
        let acc = match host::state_get(ACC_STATE, key, ns) {
            Some(bytes) => codec::decode(&bytes)
                .map_err(|e| e.context("cannot read an accumulator from keyed state"))?,
            None => folder.create(),
        };
        let mut k = Vec::with_capacity(key.len() + ns.len());
        k.extend_from_slice(key);
        k.extend_from_slice(ns);
        slots.hot[id] = Hot {
            acc: Some(acc),
            memo: F::Memo::default(),
            dirty: false,
        };
        slots.keys[id] = Some(SlotKey {
            bytes: k.into_boxed_slice(),
            key_len: key.len() as u32,
        });
    }
    Ok(id)
}

/// The bytes of a window namespace.
const WINDOW_BYTES: usize = 16;

/// A copy of an accumulator, through its encoding.
fn copy<A: Serialize + DeserializeOwned>(acc: &A) -> Result<A, Error> {
    let mut bytes = Vec::new();
    codec::encode(acc, &mut bytes);
    codec::decode(&bytes)
}

fn acc_mut<A, M>(slots: &mut Slots<A, M>, id: usize) -> &mut A {
    slots.hot[id].acc.as_mut().expect("loaded")
}

impl<F: Folder> AggregateOp for AggOp<F> {
    fn fold(&mut self, batch: &[u8], slots: &[u32], emit: bool) -> Result<Output, Error> {
        let mut out = Writer::new();
        let mut slots = slots.iter();
        for rec in Reader::new(batch) {
            let rec = rec?;
            let key = require_key(&rec, "an aggregation")?;
            let s = *slots.next().ok_or_else(missing_slot)?;
            let ns = rec.namespace.unwrap_or_default();
            let id = load(&mut self.slots, &mut self.folder, s, key, ns)?;
            let hot = &mut self.slots.hot[id];
            let acc = hot.acc.as_mut().expect("loaded");
            self.folder.add_encoded(acc, &mut hot.memo, rec.value)?;
            hot.dirty = true;
            if emit {
                let mut b = out.begin(Some(key), None, rec.timestamp, 0);
                if self
                    .folder
                    .emit(acc_mut(&mut self.slots, id), b.value_buf())
                {
                    b.finish();
                }
            }
        }
        Ok(Output::main(out))
    }

    fn fire(&mut self, batch: &[u8], slots: &[u32], purge: bool) -> Result<Output, Error> {
        let mut out = Writer::new();
        let mut value = Vec::new();
        let mut slots = slots.iter();
        for rec in Reader::new(batch) {
            let rec = rec?;
            let key = require_key(&rec, "a window or aggregation result")?;
            let s = *slots.next().ok_or_else(missing_slot)?;
            let ns = rec.namespace.unwrap_or_default();
            let id = load(&mut self.slots, &mut self.folder, s, key, ns)?;
            value.clear();
            // A session window's state may live under another window's
            // namespace; the request then names the window itself, and the
            // further accumulators (panes) whose merge is its result.
            let (window, others) = match rec.value.len() {
                0 => (ns, &[][..]),
                n if n >= WINDOW_BYTES && n % WINDOW_BYTES == 0 => rec.value.split_at(WINDOW_BYTES),
                _ => {
                    return Err(Error::new(
                        "internal error: a window fire named a malformed window",
                    ));
                }
            };
            let merged;
            let acc = if others.is_empty() {
                self.slots.hot[id].acc.as_ref().expect("loaded")
            } else {
                let mut acc = copy(self.slots.hot[id].acc.as_ref().expect("loaded"))?;
                for other in others.chunks_exact(WINDOW_BYTES) {
                    let s = *slots.next().ok_or_else(missing_slot)?;
                    let o = load(&mut self.slots, &mut self.folder, s, key, other)?;
                    let other = copy(self.slots.hot[o].acc.as_ref().expect("loaded"))?;
                    self.folder.merge(&mut acc, other);
                }
                merged = acc;
                &merged
            };
            if self.folder.emit_keyed(key, window, acc, &mut value)? {
                out.push(&Record {
                    key: Some(key),
                    timestamp: rec.timestamp,
                    value: &value,
                    ..Record::default()
                });
            }
            if purge {
                self.slots.free(id);
            }
        }
        Ok(Output::main(out))
    }

    fn merge_windows(&mut self, batch: &[u8], slots: &[u32]) -> Result<(), Error> {
        let mut slots = slots.iter();
        for rec in Reader::new(batch) {
            let rec = rec?;
            let key = require_key(&rec, "a window merge")?;
            let target = rec.namespace.unwrap_or_default();
            let t = *slots.next().ok_or_else(missing_slot)?;
            let mut merged = self.folder.create();
            for src in Reader::new(rec.value) {
                let src_ns = src?.value;
                let s = *slots.next().ok_or_else(missing_slot)?;
                let id = load(&mut self.slots, &mut self.folder, s, key, src_ns)?;
                if let Some(acc) = self.slots.hot[id].acc.take() {
                    self.folder.merge(&mut merged, acc);
                }
                self.slots.free(id);
            }
            let id = load(&mut self.slots, &mut self.folder, t, key, target)?;
            let acc = acc_mut(&mut self.slots, id);
            let old = std::mem::replace(acc, merged);
            self.folder.merge(acc, old);
            self.slots.hot[id].dirty = true;
        }
        Ok(())
    }

    fn flush(&mut self, forget: bool) -> Result<(), Error> {
        let mut w = Writer::new();
        let Slots { hot, keys } = &mut self.slots;
        for (h, key) in hot.iter_mut().zip(keys.iter()) {
            if let (true, Some(acc), Some(key)) = (h.dirty, &h.acc, key) {
                let mut b = w.begin(Some(key.key()), Some(key.namespace()), None, 0);
                codec::encode(acc, b.value_buf());
                b.finish();
                h.dirty = false;
            }
        }
        if !w.is_empty() {
            host::state_write(ACC_STATE, w.as_bytes());
        }
        if forget {
            self.slots.clear();
        }
        Ok(())
    }
}
