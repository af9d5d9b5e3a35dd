//! Encoding of batches.

use crate::{FLAG_KEY, FLAG_NAMESPACE, FLAG_PORT, FLAG_TIMESTAMP, FLAG_TOMBSTONE, Record};

/// Appends records to a batch.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
    records: usize,
}

impl Writer {
    /// An empty batch.
    pub fn new() -> Self {
        Writer::default()
    }

    /// An empty batch with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(bytes),
            records: 0,
        }
    }

    /// Appends one record.
    #[inline]
    pub fn push(&mut self, r: &Record<'_>) {
        let mut flags = 0;
        if r.key.is_some() {
            flags |= FLAG_KEY;
        }
        if r.timestamp.is_some() {
            flags |= FLAG_TIMESTAMP;
        }
        if r.namespace.is_some() {
            flags |= FLAG_NAMESPACE;
        }
        if r.port != 0 {
            flags |= FLAG_PORT;
        }
        if r.tombstone {
            flags |= FLAG_TOMBSTONE;
        }
        self.buf.reserve(r.encoded_len());
        self.buf.push(flags);
        if let Some(k) = r.key {
            put_bytes(&mut self.buf, k);
        }
        if let Some(n) = r.namespace {
            put_bytes(&mut self.buf, n);
        }
        if let Some(t) = r.timestamp {
            self.buf.extend_from_slice(&t.to_le_bytes());
        }
        if r.port != 0 {
            self.buf.extend_from_slice(&r.port.to_le_bytes());
        }
        put_bytes(&mut self.buf, r.value);
        self.records += 1;
    }

    /// Starts a record whose value is written in place through
    /// [`RecordBuilder::value_buf`], avoiding a copy of the encoded value.
    #[inline]
    pub fn begin(
        &mut self,
        key: Option<&[u8]>,
        namespace: Option<&[u8]>,
        timestamp: Option<i64>,
        port: u32,
    ) -> RecordBuilder<'_> {
        let mut flags = 0;
        if key.is_some() {
            flags |= FLAG_KEY;
        }
        if timestamp.is_some() {
            flags |= FLAG_TIMESTAMP;
        }
        if namespace.is_some() {
            flags |= FLAG_NAMESPACE;
        }
        if port != 0 {
            flags |= FLAG_PORT;
        }
        self.buf.push(flags);
        if let Some(k) = key {
            put_bytes(&mut self.buf, k);
        }
        if let Some(n) = namespace {
            put_bytes(&mut self.buf, n);
        }
        if let Some(t) = timestamp {
            self.buf.extend_from_slice(&t.to_le_bytes());
        }
        if port != 0 {
            self.buf.extend_from_slice(&port.to_le_bytes());
        }
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        RecordBuilder { w: self, len_at }
    }

    /// Starts a keyed record whose key is written in place by `write_key`,
    /// then whose value is written through [`RecordBuilder::value_buf`].
    #[inline]
    pub fn begin_keyed(
        &mut self,
        write_key: impl FnOnce(&mut Vec<u8>),
        timestamp: Option<i64>,
        port: u32,
    ) -> RecordBuilder<'_> {
        let mut flags = FLAG_KEY;
        if timestamp.is_some() {
            flags |= FLAG_TIMESTAMP;
        }
        if port != 0 {
            flags |= FLAG_PORT;
        }
        self.buf.push(flags);
        let key_at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        write_key(&mut self.buf);
        let key_len = u32::try_from(self.buf.len() - key_at - 4).expect("a key larger than 4 GiB");
        self.buf[key_at..key_at + 4].copy_from_slice(&key_len.to_le_bytes());
        if let Some(t) = timestamp {
            self.buf.extend_from_slice(&t.to_le_bytes());
        }
        if port != 0 {
            self.buf.extend_from_slice(&port.to_le_bytes());
        }
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        RecordBuilder { w: self, len_at }
    }

    /// Appends raw, already framed records.
    pub fn extend_framed(&mut self, framed: &[u8], records: usize) {
        self.buf.extend_from_slice(framed);
        self.records += records;
    }

    /// Number of records written.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Number of bytes written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The batch so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets all records, keeping the allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.records = 0;
    }

    /// Takes the batch, leaving an empty writer with a fresh allocation.
    pub fn take(&mut self) -> Vec<u8> {
        self.records = 0;
        std::mem::take(&mut self.buf)
    }

    /// The finished batch.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// A record being written; its value goes straight into the batch.
#[derive(Debug)]
pub struct RecordBuilder<'w> {
    w: &'w mut Writer,
    len_at: usize,
}

impl RecordBuilder<'_> {
    /// The buffer to append the encoded value to.
    #[inline]
    pub fn value_buf(&mut self) -> &mut Vec<u8> {
        &mut self.w.buf
    }

    /// Seals the record.
    #[inline]
    pub fn finish(self) {
        let len = self.w.buf.len() - self.len_at - 4;
        let len = u32::try_from(len).expect("a record value is larger than 4 GiB");
        self.w.buf[self.len_at..self.len_at + 4].copy_from_slice(&len.to_le_bytes());
        self.w.records += 1;
    }
}

#[inline]
fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("a record field is larger than 4 GiB");
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(b);
}
