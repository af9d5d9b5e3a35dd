//! What the Weir host and the Rust guest SDK share: the framed batch
//! encoding and the job plan types.
//!
//! Records cross the host/guest boundary in batches, one `list<u8>` per call;
//! this crate reads and writes that encoding (specified in `wit/FRAMING.md`)
//! without copying values. The host uses it to route records between tasks;
//! the SDK uses it to decode inputs and encode outputs of user functions.

pub mod connectors;
pub mod nexmark;
pub mod plan;
mod reader;
mod window;
mod writer;

pub use reader::{FrameError, Reader, for_each_key};
pub use window::{GLOBAL_WINDOW, Window};
pub use writer::{RecordBuilder, Writer};

/// Flag: the record has a key.
pub const FLAG_KEY: u8 = 0x01;
/// Flag: the record has an event timestamp.
pub const FLAG_TIMESTAMP: u8 = 0x02;
/// Flag: the record has a namespace.
pub const FLAG_NAMESPACE: u8 = 0x04;
/// Flag: the record has a non-zero output port.
pub const FLAG_PORT: u8 = 0x08;
/// Flag: the record deletes the entry it names (state writes).
pub const FLAG_TOMBSTONE: u8 = 0x10;
const KNOWN_FLAGS: u8 = FLAG_KEY | FLAG_TIMESTAMP | FLAG_NAMESPACE | FLAG_PORT | FLAG_TOMBSTONE;

/// The port on which a `decode` stage reports records it could not decode.
pub const DECODE_FAILURE_PORT: u32 = u32::MAX;

/// One record of a batch, borrowing from the batch bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record<'a> {
    /// The record key, set by `key-by` and kept by keyed operators.
    pub key: Option<&'a [u8]>,
    /// A namespace under the key: a window, or a state entry suffix.
    pub namespace: Option<&'a [u8]>,
    /// Event time in milliseconds.
    pub timestamp: Option<i64>,
    /// Output port: 0 is the main output.
    pub port: u32,
    /// Marks a deletion in state writes.
    pub tombstone: bool,
    /// The encoded value.
    pub value: &'a [u8],
}

impl<'a> Record<'a> {
    /// A record with only a value.
    pub fn value(value: &'a [u8]) -> Self {
        Record {
            value,
            ..Record::default()
        }
    }

    /// A record with a key and a value.
    pub fn keyed(key: &'a [u8], value: &'a [u8]) -> Self {
        Record {
            key: Some(key),
            value,
            ..Record::default()
        }
    }

    /// Number of bytes this record takes in a batch.
    pub fn encoded_len(&self) -> usize {
        1 + self.key.map_or(0, |k| 4 + k.len())
            + self.namespace.map_or(0, |n| 4 + n.len())
            + self.timestamp.map_or(0, |_| 8)
            + if self.port != 0 { 4 } else { 0 }
            + 4
            + self.value.len()
    }
}

/// Counts the records of a batch, checking its framing.
pub fn count(batch: &[u8]) -> Result<usize, FrameError> {
    let mut n = 0;
    for r in Reader::new(batch) {
        r?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_fields() {
        let records = [
            Record::value(b"plain"),
            Record::keyed(b"k", b"v"),
            Record {
                key: Some(b"key"),
                namespace: Some(b"ns"),
                timestamp: Some(-42),
                port: 7,
                tombstone: false,
                value: b"",
            },
            Record {
                key: Some(b""),
                tombstone: true,
                ..Record::default()
            },
        ];
        let mut w = Writer::new();
        for r in &records {
            w.push(r);
        }
        let bytes = w.into_bytes();
        assert_eq!(
            bytes.len(),
            records.iter().map(Record::encoded_len).sum::<usize>()
        );
        let back: Vec<_> = Reader::new(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(back, records);
        assert_eq!(count(&bytes).unwrap(), 4);
    }

    #[test]
    fn truncated_batches_are_errors() {
        let mut w = Writer::new();
        w.push(&Record::keyed(b"key", b"value"));
        let bytes = w.into_bytes();
        for cut in 1..bytes.len() {
            let err = Reader::new(&bytes[..cut]).next().unwrap().unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { .. }),
                "cut {cut}: {err}"
            );
        }
    }

    #[test]
    fn keys_are_scanned_without_values() {
        let mut w = Writer::new();
        w.push(&Record::keyed(b"a", b"value"));
        w.push(&Record {
            key: Some(b"b"),
            namespace: Some(b"w"),
            timestamp: Some(1),
            port: 2,
            ..Record::default()
        });
        w.push(&Record::value(b"no key"));
        let mut keys = vec![];
        for_each_key(w.as_bytes(), |k, ns| keys.push((k, ns))).unwrap();
        assert_eq!(
            keys,
            vec![
                (Some(&b"a"[..]), None),
                (Some(&b"b"[..]), Some(&b"w"[..])),
                (None, None)
            ]
        );
        let bytes = w.into_bytes();
        assert!(for_each_key(&bytes[..bytes.len() - 1], |_, _| {}).is_err());
    }

    #[test]
    fn unknown_flags_are_rejected() {
        let err = Reader::new(&[0x80, 0, 0, 0, 0])
            .next()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, FrameError::UnknownFlags { flags: 0x80, .. }));
    }

    #[test]
    fn keyed_builder_writes_key_in_place() {
        let mut w = Writer::new();
        let mut b = w.begin_keyed(|k| k.extend_from_slice(b"key"), Some(9), 3);
        b.value_buf().extend_from_slice(b"v");
        b.finish();
        let r = Reader::new(w.as_bytes()).next().unwrap().unwrap();
        assert_eq!(
            r,
            Record {
                key: Some(b"key"),
                timestamp: Some(9),
                port: 3,
                value: b"v",
                ..Record::default()
            }
        );
    }

    #[test]
    fn builder_writes_value_in_place() {
        let mut w = Writer::new();
        let mut b = w.begin(Some(b"k"), None, Some(5), 0);
        b.value_buf().extend_from_slice(b"hello");
        b.finish();
        let r = Reader::new(w.as_bytes()).next().unwrap().unwrap();
        assert_eq!(r.value, b"hello");
        assert_eq!(r.timestamp, Some(5));
        assert_eq!(r.key, Some(&b"k"[..]));
    }
}
