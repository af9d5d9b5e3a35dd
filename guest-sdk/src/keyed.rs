//! `KeyedStream`: a stream partitioned by key, with per-key state.

use crate::aggregate::{AggOp, Folder, Reduce, Sum, UserAggregate};
use crate::env::FnEntry;
use crate::plan::OperatorKind;
use crate::{AggregateFunction, DataStream};
use serde::{Serialize, de::DeserializeOwned};
use std::fmt;
use std::marker::PhantomData;
use std::ops::AddAssign;

/// A stream partitioned by a key of type `K`, as Flink's `KeyedStream`.
/// Its operators keep state per key in the host's keyed state (RocksDB),
/// which checkpoints and rescales by key group.
///
/// ```no_run
/// use weir_sdk::prelude::*;
///
/// #[weir_sdk::job]
/// fn totals(env: &mut Env, _args: &Args) -> Result<(), Error> {
///     env.socket_text_stream("localhost", 9999)
///         .map(|line: String| (line.clone(), line.len() as i64))
///         .key_by(|(line, _)| line.clone())
///         .reduce(|a, b| (a.0, a.1 + b.1))
///         .uid("totals")
///         .print();
///     Ok(())
/// }
/// # fn main() {}
/// ```
pub struct KeyedStream<K, T> {
    stream: DataStream<T>,
    _k: PhantomData<fn() -> K>,
}

impl<K, T> fmt::Debug for KeyedStream<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedStream")
            .field("key", &std::any::type_name::<K>())
            .field("value", &std::any::type_name::<T>())
            .finish()
    }
}

impl<K, T> KeyedStream<K, T>
where
    K: Serialize + DeserializeOwned + 'static,
    T: Serialize + DeserializeOwned + 'static,
{
    pub(crate) fn new(stream: DataStream<T>) -> Self {
        KeyedStream {
            stream,
            _k: PhantomData,
        }
    }

    pub(crate) fn into_stream(self) -> DataStream<T> {
        self.stream
    }

    fn aggregation<F: Folder, U>(self, name: &str, folder: F) -> DataStream<U>
    where
        U: Serialize + DeserializeOwned + 'static,
    {
        self.stream.add_op(
            name,
            OperatorKind::Aggregate,
            Some(FnEntry::Aggregate(Box::new(AggOp::new(folder)))),
        )
    }

    /// Combines the values of each key into a running value. In streaming
    /// mode every record emits the updated value; in batch mode each key
    /// emits its final value when input ends.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: KeyedStream<String, (String, i64)>) {
    /// let longest = s.reduce(|a, b| if b.1 > a.1 { b } else { a });
    /// # }
    /// ```
    pub fn reduce<F>(self, f: F) -> DataStream<T>
    where
        F: FnMut(T, T) -> T + 'static,
    {
        self.aggregation("Keyed Reduce", Reduce { f, _t: PhantomData })
    }

    /// Sums the field that `field` points to, as Flink's `sum(1)`: the other
    /// fields keep the values of the key's first record.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// # fn f(s: KeyedStream<String, (String, i64)>) {
    /// let counts = s.sum(|(_, count)| count);
    /// # }
    /// ```
    pub fn sum<N, F>(self, field: F) -> DataStream<T>
    where
        N: AddAssign + Copy + 'static,
        F: Fn(&mut T) -> &mut N + 'static,
    {
        self.aggregation(
            "Keyed Aggregation",
            Sum {
                field,
                scratch: None,
            },
        )
    }

    /// Aggregates the values of each key with an [`AggregateFunction`]:
    /// only the accumulator is stored.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// struct Count;
    /// impl AggregateFunction<String> for Count {
    ///     type Acc = u64;
    ///     type Out = u64;
    ///     fn create_accumulator(&self) -> u64 { 0 }
    ///     fn add(&self, acc: &mut u64, _v: String) { *acc += 1 }
    ///     fn merge(&self, acc: &mut u64, other: u64) { *acc += other }
    ///     fn get_result(&self, acc: &u64) -> u64 { *acc }
    /// }
    /// # fn f(s: KeyedStream<String, String>) {
    /// let counts = s.aggregate(Count);
    /// # }
    /// ```
    pub fn aggregate<A>(self, f: A) -> DataStream<A::Out>
    where
        A: AggregateFunction<T>,
    {
        self.aggregation(
            "Keyed Aggregate",
            UserAggregate {
                f,
                _in: PhantomData,
            },
        )
    }
}
