//! Watermark strategies, as Flink's `WatermarkStrategy`: how event
//! timestamps are taken from records and how far watermarks trail them.

use crate::plan::WatermarkSpec;
use std::time::Duration;

/// Sets a record's event timestamp from its value and the timestamp it
/// already has (a Kafka record's, say).
pub(crate) type TimestampAssigner<T> = Box<dyn FnMut(&T, Option<i64>) -> i64>;

/// How to generate watermarks for a stream.
///
/// ```
/// # use weir_sdk::prelude::*;
/// let strategy = WatermarkStrategy::<(i64, String)>::for_bounded_out_of_orderness(
///         Duration::from_millis(200),
///     )
///     .with_timestamp_assigner(|(ts, _), _| *ts)
///     .with_idleness(Duration::from_secs(30));
/// ```
pub struct WatermarkStrategy<T> {
    spec: WatermarkSpec,
    assigner: Option<TimestampAssigner<T>>,
}

impl<T> std::fmt::Debug for WatermarkStrategy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatermarkStrategy")
            .field("spec", &self.spec)
            .field("assigner", &self.assigner.is_some())
            .finish()
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl<T> WatermarkStrategy<T> {
    /// Records may arrive up to `bound` later than records with larger
    /// timestamps; the watermark trails the largest timestamp by `bound`.
    ///
    /// ```
    /// # use weir_sdk::prelude::*;
    /// let s = WatermarkStrategy::<i64>::for_bounded_out_of_orderness(Duration::from_secs(1));
    /// ```
    pub fn for_bounded_out_of_orderness(bound: Duration) -> Self {
        WatermarkStrategy {
            spec: WatermarkSpec {
                max_out_of_orderness_ms: ms(bound),
                idle_timeout_ms: None,
            },
            assigner: None,
        }
    }

    /// Timestamps only ever grow.
    ///
    /// ```
    /// # use weir_sdk::prelude::*;
    /// let s = WatermarkStrategy::<i64>::for_monotonous_timestamps();
    /// ```
    pub fn for_monotonous_timestamps() -> Self {
        Self::for_bounded_out_of_orderness(Duration::ZERO)
    }

    /// Takes each record's timestamp from its value; without an assigner
    /// records keep the timestamps they come with (Kafka's).
    ///
    /// ```
    /// # use weir_sdk::prelude::*;
    /// let s = WatermarkStrategy::<(i64, String)>::for_monotonous_timestamps()
    ///     .with_timestamp_assigner(|(ts, _), _previous| *ts);
    /// ```
    pub fn with_timestamp_assigner<F>(mut self, f: F) -> Self
    where
        F: FnMut(&T, Option<i64>) -> i64 + 'static,
    {
        self.assigner = Some(Box::new(f));
        self
    }

    /// A split (or input) without records for `timeout` no longer holds the
    /// watermark back.
    ///
    /// ```
    /// # use weir_sdk::prelude::*;
    /// let s = WatermarkStrategy::<i64>::for_monotonous_timestamps()
    ///     .with_idleness(Duration::from_secs(10));
    /// ```
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.spec.idle_timeout_ms = Some(ms(timeout));
        self
    }

    pub(crate) fn into_parts(self) -> (WatermarkSpec, Option<TimestampAssigner<T>>) {
        (self.spec, self.assigner)
    }
}
