//! Record-by-record stages (map, flat_map, filter, key_by, ...) and how a
//! chain of them is fused into one typed pipeline.
//!
//! Each stage is registered with its input and output types erased. When the
//! host asks to run stages `[a, b, c]`, they are linked once, back to front:
//! `c`'s output is encoded into the result batch, `b` pushes straight into
//! `c`'s typed input, and `a` decodes records from the input batch. Values
//! are therefore decoded once and encoded once per chain, however many stages
//! it has.

use crate::runtime::Output;
use crate::{Error, codec};
use serde::{Serialize, de::DeserializeOwned};
use std::any::Any;
use std::marker::PhantomData;
use weir_frame::{DECODE_FAILURE_PORT, Record, Writer};

/// Per-call context of a chain: the output batch and the metadata of the
/// record being processed.
pub(crate) struct Cx<'o> {
    pub out: &'o mut Writer,
    /// Side outputs and decode failures.
    pub side: Writer,
    key: Vec<u8>,
    has_key: bool,
    pub ts: Option<i64>,
}

impl<'o> Cx<'o> {
    pub fn new(out: &'o mut Writer) -> Self {
        Cx {
            out,
            side: Writer::new(),
            key: Vec::new(),
            has_key: false,
            ts: None,
        }
    }

    /// Takes key and timestamp from an input record.
    #[inline]
    pub fn enter(&mut self, rec: &Record<'_>) {
        self.ts = rec.timestamp;
        match rec.key {
            Some(k) => {
                self.key.clear();
                self.key.extend_from_slice(k);
                self.has_key = true;
            }
            None => self.has_key = false,
        }
    }

    /// Writes a value of the current record to the output.
    #[inline]
    pub fn emit_with(&mut self, port: u32, write: impl FnOnce(&mut Vec<u8>)) {
        let key = self.has_key.then_some(&self.key[..]);
        let w = if port == 0 {
            &mut *self.out
        } else {
            &mut self.side
        };
        let mut b = w.begin(key, None, self.ts, port);
        write(b.value_buf());
        b.finish();
    }
}

/// Receives typed values.
pub(crate) trait Push<T> {
    fn push(&mut self, value: T, cx: &mut Cx<'_>) -> Result<(), Error>;
}

/// Receives framed records: the head of a linked chain.
pub(crate) trait RecordSink {
    fn push_record(&mut self, rec: &Record<'_>, cx: &mut Cx<'_>) -> Result<(), Error>;
}

/// A `Box<dyn Push<T>>` with `T` erased, checked when linking.
pub(crate) type AnyPush = Box<dyn Any>;

/// A registered stage, not yet linked.
pub(crate) trait Stage {
    /// Links this stage as the first of a chain, reading framed records.
    fn head(&mut self, next: AnyPush) -> Result<Box<dyn RecordSink>, Error>;
    /// Links this stage in front of `next`, returning its own typed input.
    fn link(&mut self, next: AnyPush) -> Result<AnyPush, Error>;
    /// The end of a chain: encodes this stage's output into the batch.
    fn tail(&self) -> AnyPush;
    /// This stage and the encoding of its output in one step, when the
    /// stage can do better than `tail` + `link` (key-by writes its key
    /// straight into the output record). Returns the stage's typed input.
    fn fused_tail(&mut self) -> Option<AnyPush> {
        None
    }
    /// Reads framed records into an input returned by `fused_tail`.
    fn head_from_input(&self, _input: AnyPush) -> Result<Box<dyn RecordSink>, Error> {
        Err(Error::new("internal error: this stage has no fused form"))
    }
}

type Make<In, Out> = Box<dyn FnOnce(Box<dyn Push<Out>>) -> Box<dyn Push<In>>>;

/// A stage whose input and output are postcard-encoded values.
pub(crate) struct TypedStage<In, Out> {
    make: Option<Make<In, Out>>,
}

impl<In: 'static, Out: 'static> TypedStage<In, Out> {
    pub fn new(make: impl FnOnce(Box<dyn Push<Out>>) -> Box<dyn Push<In>> + 'static) -> Self {
        TypedStage {
            make: Some(Box::new(make)),
        }
    }

    fn link_typed(&mut self, next: AnyPush) -> Result<Box<dyn Push<In>>, Error> {
        let next = next.downcast::<Box<dyn Push<Out>>>().map_err(|_| {
            Error::new(format!(
                "internal error: stage output {} does not match the next stage's input",
                std::any::type_name::<Out>()
            ))
        })?;
        let make = self
            .make
            .take()
            .ok_or_else(|| Error::new("internal error: a stage was linked into two chains"))?;
        Ok(make(*next))
    }
}

impl<In, Out> Stage for TypedStage<In, Out>
where
    In: DeserializeOwned + 'static,
    Out: Serialize + 'static,
{
    fn head(&mut self, next: AnyPush) -> Result<Box<dyn RecordSink>, Error> {
        Ok(Box::new(DecodeValues {
            next: self.link_typed(next)?,
        }))
    }

    fn link(&mut self, next: AnyPush) -> Result<AnyPush, Error> {
        Ok(Box::new(self.link_typed(next)?))
    }

    fn tail(&self) -> AnyPush {
        let tail: Box<dyn Push<Out>> = Box::new(EncodeValues);
        Box::new(tail)
    }
}

/// Decodes postcard values from records and pushes them on.
struct DecodeValues<In> {
    next: Box<dyn Push<In>>,
}

impl<In: DeserializeOwned> RecordSink for DecodeValues<In> {
    #[inline]
    fn push_record(&mut self, rec: &Record<'_>, cx: &mut Cx<'_>) -> Result<(), Error> {
        let v = codec::decode::<In>(rec.value)?;
        self.next.push(v, cx)
    }
}

/// Encodes values into the output batch.
struct EncodeValues;

impl<T: Serialize> Push<T> for EncodeValues {
    #[inline]
    fn push(&mut self, value: T, cx: &mut Cx<'_>) -> Result<(), Error> {
        cx.emit_with(0, |buf| codec::encode(&value, buf));
        Ok(())
    }
}

/// Turns a connector's raw record into a value.
type DecodeFn<Out> = Box<dyn FnMut(&[u8]) -> Result<Option<Out>, String>>;

/// Writes a value in a sink's raw format.
type EncodeFn<In> = Box<dyn FnMut(&In, &mut Vec<u8>)>;

/// A stage reading a connector's raw records (a `decode` operator); a
/// failure is reported on the decode-failure port instead of failing.
pub(crate) struct DecodeStage<Out> {
    f: Option<DecodeFn<Out>>,
}

impl<Out: 'static> DecodeStage<Out> {
    pub fn new(mut f: impl FnMut(&[u8]) -> Result<Out, String> + 'static) -> Self {
        DecodeStage {
            f: Some(Box::new(move |raw| f(raw).map(Some))),
        }
    }

    /// A decoder that skips the records it returns None for.
    pub fn skipping(f: impl FnMut(&[u8]) -> Result<Option<Out>, String> + 'static) -> Self {
        DecodeStage {
            f: Some(Box::new(f)),
        }
    }
}

impl<Out: Serialize + 'static> Stage for DecodeStage<Out> {
    fn head(&mut self, next: AnyPush) -> Result<Box<dyn RecordSink>, Error> {
        let next = next
            .downcast::<Box<dyn Push<Out>>>()
            .map_err(|_| Error::new("internal error: decode output does not match next stage"))?;
        let f = self
            .f
            .take()
            .ok_or_else(|| Error::new("internal error: a stage was linked into two chains"))?;
        Ok(Box::new(DecodeRaw { f, next: *next }))
    }

    fn link(&mut self, _next: AnyPush) -> Result<AnyPush, Error> {
        Err(Error::new(
            "internal error: a decode stage must be the first of its chain",
        ))
    }

    fn tail(&self) -> AnyPush {
        let tail: Box<dyn Push<Out>> = Box::new(EncodeValues);
        Box::new(tail)
    }
}

struct DecodeRaw<Out> {
    f: DecodeFn<Out>,
    next: Box<dyn Push<Out>>,
}

impl<Out> RecordSink for DecodeRaw<Out> {
    #[inline]
    fn push_record(&mut self, rec: &Record<'_>, cx: &mut Cx<'_>) -> Result<(), Error> {
        match (self.f)(rec.value) {
            Ok(Some(v)) => self.next.push(v, cx),
            Ok(None) => Ok(()),
            Err(message) => {
                let key = cx.has_key.then_some(&cx.key[..]);
                cx.side.push(&Record {
                    key,
                    namespace: Some(message.as_bytes()),
                    timestamp: cx.ts,
                    port: DECODE_FAILURE_PORT,
                    tombstone: false,
                    value: rec.value,
                });
                Ok(())
            }
        }
    }
}

/// A stage writing a sink's raw format (an `encode` operator); always last.
pub(crate) struct EncodeStage<In> {
    f: Option<EncodeFn<In>>,
}

impl<In: 'static> EncodeStage<In> {
    pub fn new(f: impl FnMut(&In, &mut Vec<u8>) + 'static) -> Self {
        EncodeStage {
            f: Some(Box::new(f)),
        }
    }

    fn writer(&mut self) -> Result<Box<dyn Push<In>>, Error> {
        let f = self
            .f
            .take()
            .ok_or_else(|| Error::new("internal error: a stage was linked into two chains"))?;
        Ok(Box::new(WriteRaw { f }))
    }
}

/// The output type of an encode stage; nothing follows it.
pub(crate) struct Encoded;

impl<In: DeserializeOwned + 'static> Stage for EncodeStage<In> {
    fn head(&mut self, _next: AnyPush) -> Result<Box<dyn RecordSink>, Error> {
        Ok(Box::new(DecodeValues {
            next: self.writer()?,
        }))
    }

    fn link(&mut self, _next: AnyPush) -> Result<AnyPush, Error> {
        Ok(Box::new(self.writer()?))
    }

    fn tail(&self) -> AnyPush {
        let tail: Box<dyn Push<Encoded>> = Box::new(Nothing(PhantomData));
        Box::new(tail)
    }
}

struct WriteRaw<In> {
    f: EncodeFn<In>,
}

impl<In> Push<In> for WriteRaw<In> {
    #[inline]
    fn push(&mut self, value: In, cx: &mut Cx<'_>) -> Result<(), Error> {
        let f = &mut self.f;
        cx.emit_with(0, |buf| f(&value, buf));
        Ok(())
    }
}

struct Nothing<T>(PhantomData<T>);

impl<T> Push<T> for Nothing<T> {
    fn push(&mut self, _value: T, _cx: &mut Cx<'_>) -> Result<(), Error> {
        Ok(())
    }
}

// ---- the typed pushes behind each stage kind ----

pub(crate) struct MapPush<F, U> {
    pub f: F,
    pub next: Box<dyn Push<U>>,
}

impl<T, U, F: FnMut(T) -> U> Push<T> for MapPush<F, U> {
    #[inline]
    fn push(&mut self, value: T, cx: &mut Cx<'_>) -> Result<(), Error> {
        let u = (self.f)(value);
        self.next.push(u, cx)
    }
}

pub(crate) struct FlatMapPush<F, U> {
    pub f: F,
    pub next: Box<dyn Push<U>>,
}

impl<T, U, I, F> Push<T> for FlatMapPush<F, U>
where
    F: FnMut(T) -> I,
    I: IntoIterator<Item = U>,
{
    #[inline]
    fn push(&mut self, value: T, cx: &mut Cx<'_>) -> Result<(), Error> {
        for u in (self.f)(value) {
            self.next.push(u, cx)?;
        }
        Ok(())
    }
}

/// Where a [`crate::DataStream::flat_map_with`] function emits its values,
/// as Flink's `Collector`.
///
/// ```no_run
/// # use weir_sdk::prelude::*;
/// # fn f(s: DataStream<String>) {
/// s.flat_map_with(|line: String, out: &mut Collector<String>| {
///     for w in line.split_whitespace() {
///         out.collect(w.to_owned());
///     }
/// });
/// # }
/// ```
pub struct Collector<'a, U> {
    emit: &'a mut dyn FnMut(U) -> Result<(), Error>,
    error: Option<Error>,
}

impl<U> std::fmt::Debug for Collector<'_, U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Collector")
    }
}

impl<'a, U> Collector<'a, U> {
    pub(crate) fn new(emit: &'a mut dyn FnMut(U) -> Result<(), Error>) -> Self {
        Collector { emit, error: None }
    }

    /// The first error an emission ran into.
    pub(crate) fn finish(self) -> Result<(), Error> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Emits one value.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(out: &mut Collector<u64>) {
    /// out.collect(42);
    /// # }
    /// ```
    #[inline]
    pub fn collect(&mut self, value: U) {
        if self.error.is_none()
            && let Err(e) = (self.emit)(value)
        {
            self.error = Some(e);
        }
    }
}

pub(crate) struct FlatMapWithPush<F, U> {
    pub f: F,
    pub next: Box<dyn Push<U>>,
}

impl<T, U, F> Push<T> for FlatMapWithPush<F, U>
where
    F: for<'a> FnMut(T, &mut Collector<'a, U>),
{
    #[inline]
    fn push(&mut self, value: T, cx: &mut Cx<'_>) -> Result<(), Error> {
        let next = &mut self.next;
        let mut emit = |v: U| next.push(v, cx);
        let mut out = Collector {
            emit: &mut emit,
            error: None,
        };
        (self.f)(value, &mut out);
        match out.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

pub(crate) struct FilterPush<F, T> {
    pub f: F,
    pub next: Box<dyn Push<T>>,
}

impl<T, F: FnMut(&T) -> bool> Push<T> for FilterPush<F, T> {
    #[inline]
    fn push(&mut self, value: T, cx: &mut Cx<'_>) -> Result<(), Error> {
        if (self.f)(&value) {
            self.next.push(value, cx)
        } else {
            Ok(())
        }
    }
}

/// How a key-by stage gets its key from a value.
pub(crate) trait KeySelector<T>: 'static {
    fn encode_key(&mut self, value: &T, out: &mut Vec<u8>);
}

/// A selector returning a key borrowed from the value.
pub(crate) struct ByRef<F, K: ?Sized>(pub F, pub PhantomData<fn(&K)>);

impl<T, K, F> KeySelector<T> for ByRef<F, K>
where
    K: Serialize + ?Sized + 'static,
    F: FnMut(&T) -> &K + 'static,
{
    #[inline]
    fn encode_key(&mut self, value: &T, out: &mut Vec<u8>) {
        codec::encode((self.0)(value), out);
    }
}

/// A selector computing an owned key.
pub(crate) struct ByValue<F>(pub F);

impl<T, K, F> KeySelector<T> for ByValue<F>
where
    K: Serialize,
    F: FnMut(&T) -> K + 'static,
{
    #[inline]
    fn encode_key(&mut self, value: &T, out: &mut Vec<u8>) {
        codec::encode(&(self.0)(value), out);
    }
}

struct KeyByPush<S, T> {
    select: S,
    next: Box<dyn Push<T>>,
}

impl<T, S: KeySelector<T>> Push<T> for KeyByPush<S, T> {
    #[inline]
    fn push(&mut self, value: T, cx: &mut Cx<'_>) -> Result<(), Error> {
        cx.key.clear();
        self.select.encode_key(&value, &mut cx.key);
        cx.has_key = true;
        self.next.push(value, cx)
    }
}

pub(crate) struct TimestampPush<F, T> {
    pub f: F,
    pub next: Box<dyn Push<T>>,
}

impl<T, F: FnMut(&T, Option<i64>) -> i64> Push<T> for TimestampPush<F, T> {
    #[inline]
    fn push(&mut self, value: T, cx: &mut Cx<'_>) -> Result<(), Error> {
        cx.ts = Some((self.f)(&value, cx.ts));
        self.next.push(value, cx)
    }
}

/// A key-by stage. As the last stage of a chain it writes its key, then
/// the value, straight into the output record.
pub(crate) struct KeyByStage<T, S> {
    select: Option<S>,
    _t: PhantomData<fn(T)>,
}

impl<T, S> KeyByStage<T, S> {
    pub fn new(select: S) -> Self {
        KeyByStage {
            select: Some(select),
            _t: PhantomData,
        }
    }

    fn take(&mut self) -> Result<S, Error> {
        self.select
            .take()
            .ok_or_else(|| Error::new("internal error: a stage was linked into two chains"))
    }
}

struct KeyedEncode<S> {
    select: S,
}

impl<T: Serialize, S: KeySelector<T>> Push<T> for KeyedEncode<S> {
    #[inline]
    fn push(&mut self, value: T, cx: &mut Cx<'_>) -> Result<(), Error> {
        let select = &mut self.select;
        let mut b = cx
            .out
            .begin_keyed(|buf| select.encode_key(&value, buf), cx.ts, 0);
        codec::encode(&value, b.value_buf());
        b.finish();
        Ok(())
    }
}

impl<T, S> Stage for KeyByStage<T, S>
where
    T: Serialize + DeserializeOwned + 'static,
    S: KeySelector<T>,
{
    fn head(&mut self, next: AnyPush) -> Result<Box<dyn RecordSink>, Error> {
        let input = self.link(next)?;
        self.head_from_input(input)
    }

    fn link(&mut self, next: AnyPush) -> Result<AnyPush, Error> {
        let next = next
            .downcast::<Box<dyn Push<T>>>()
            .map_err(|_| Error::new("internal error: key-by output does not match next stage"))?;
        let push: Box<dyn Push<T>> = Box::new(KeyByPush {
            select: self.take()?,
            next: *next,
        });
        Ok(Box::new(push))
    }

    fn tail(&self) -> AnyPush {
        let tail: Box<dyn Push<T>> = Box::new(EncodeValues);
        Box::new(tail)
    }

    fn fused_tail(&mut self) -> Option<AnyPush> {
        let select = self.take().ok()?;
        let push: Box<dyn Push<T>> = Box::new(KeyedEncode { select });
        Some(Box::new(push))
    }

    fn head_from_input(&self, input: AnyPush) -> Result<Box<dyn RecordSink>, Error> {
        let next = input
            .downcast::<Box<dyn Push<T>>>()
            .map_err(|_| Error::new("internal error: key-by input type mismatch"))?;
        Ok(Box::new(DecodeValues { next: *next }))
    }
}

/// Runs a linked chain over a batch.
pub(crate) fn run_chain(head: &mut dyn RecordSink, batch: &[u8]) -> Result<Output, Error> {
    let mut out = Writer::with_capacity(batch.len() + batch.len() / 2);
    let mut cx = Cx::new(&mut out);
    for rec in weir_frame::Reader::new(batch) {
        let rec = rec?;
        cx.enter(&rec);
        head.push_record(&rec, &mut cx)?;
    }
    let side = cx.side;
    Ok(Output::new(out, side))
}

/// Links stages (given in chain order) into one pipeline.
pub(crate) fn link(stages: &mut [&mut dyn Stage]) -> Result<Box<dyn RecordSink>, Error> {
    let n = stages.len();
    if n == 0 {
        return Err(Error::new("internal error: empty chain"));
    }
    // The last stage with the encoding of its output: fused if it can be.
    let (mut next, mut upto) = match stages[n - 1].fused_tail() {
        Some(input) => (input, n - 1),
        None => (stages[n - 1].tail(), n),
    };
    if upto == 0 {
        return stages[0].head_from_input(next);
    }
    while upto > 1 {
        upto -= 1;
        next = stages[upto].link(next)?;
    }
    stages[0].head(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_frame::Reader;

    fn batch(values: &[&str]) -> Vec<u8> {
        let mut w = Writer::new();
        for v in values {
            w.push(&Record::value(v.as_bytes()));
        }
        w.into_bytes()
    }

    #[test]
    fn fused_chain_decodes_once_and_keys_records() {
        let mut decode =
            DecodeStage::new(|b: &[u8]| String::from_utf8(b.to_vec()).map_err(|e| e.to_string()));
        let mut split = TypedStage::<String, (String, i64)>::new(|next| {
            Box::new(FlatMapPush {
                f: |line: String| {
                    line.split_whitespace()
                        .map(|w| (w.to_owned(), 1i64))
                        .collect::<Vec<_>>()
                },
                next,
            })
        });
        let mut key = KeyByStage::<(String, i64), _>::new(ByValue(|t: &(String, i64)| t.0.clone()));
        let mut head = link(&mut [&mut decode, &mut split, &mut key]).unwrap();
        let out = run_chain(head.as_mut(), &batch(&["a b", "", "c a"])).unwrap();
        assert_eq!(out.records, 4);
        assert!(out.side.is_empty());
        let recs: Vec<_> = Reader::new(&out.main).map(Result::unwrap).collect();
        assert_eq!(recs.len(), 4);
        let first: (String, i64) = codec::decode(recs[0].value).unwrap();
        assert_eq!(first, ("a".to_owned(), 1));
        assert_eq!(recs[0].key, Some(&codec::to_vec("a")[..]));
        assert_eq!(recs[3].key, Some(&codec::to_vec("a")[..]));
        // A stage cannot be linked twice.
        assert!(link(&mut [&mut decode]).is_err());
    }

    #[test]
    fn decode_failures_go_to_the_failure_port() {
        let mut decode = DecodeStage::new(|b: &[u8]| {
            std::str::from_utf8(b)
                .map_err(|e| e.to_string())?
                .parse::<i64>()
                .map_err(|e| e.to_string())
        });
        let mut head = link(&mut [&mut decode]).unwrap();
        let out = run_chain(head.as_mut(), &batch(&["1", "x", "3"])).unwrap();
        assert_eq!(out.records, 2);
        let recs: Vec<_> = Reader::new(&out.main).map(Result::unwrap).collect();
        assert_eq!(codec::decode::<i64>(recs[1].value).unwrap(), 3);
        let failed: Vec<_> = Reader::new(&out.side).map(Result::unwrap).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].port, DECODE_FAILURE_PORT);
        assert_eq!(failed[0].value, b"x");
        assert!(
            std::str::from_utf8(failed[0].namespace.unwrap())
                .unwrap()
                .contains("invalid digit")
        );
    }

    #[test]
    fn mismatched_types_are_reported() {
        let mut a = TypedStage::<String, String>::new(|next| {
            Box::new(MapPush {
                f: |s: String| s,
                next,
            })
        });
        let mut b = TypedStage::<i64, i64>::new(|next| {
            Box::new(MapPush {
                f: |s: i64| s,
                next,
            })
        });
        let err = link(&mut [&mut a, &mut b]).err().unwrap();
        assert!(err.message().contains("does not match"), "{err}");
    }
}
