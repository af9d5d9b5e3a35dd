//! Channel messages on the wire: the batch's framed bytes as they are, and
//! control messages in the same stream and order.
//!
//! Each message is a header — a tag byte, the payload's length (u32, little
//! endian), and for a batch its record count (u32) — then the payload. A
//! batch's payload is its frame buffer, handed to the transport without
//! being copied or re-encoded.

use crate::channel::{Barrier, Batch, Message};
use bytes::{Buf, Bytes, BytesMut};
use weir_core::Failure;

const BATCH: u8 = 1;
const BARRIER: u8 = 2;
const WATERMARK: u8 = 3;
const IDLE: u8 = 4;
const END_OF_DATA: u8 = 5;
const END_OF_PARTITION: u8 = 6;

/// Largest payload a peer may announce: well above any batch the runtime
/// sends, and small enough that a corrupt length cannot make a receiver
/// reserve gigabytes.
pub(crate) const MAX_PAYLOAD: usize = 64 << 20;

/// A message as one or two chunks (header, then payload if any).
pub(crate) fn encode(msg: Message) -> (Bytes, Option<Bytes>) {
    let header = |tag: u8, len: usize, extra: Option<u32>| {
        let mut h = BytesMut::with_capacity(9);
        h.extend_from_slice(&[tag]);
        h.extend_from_slice(&(len as u32).to_le_bytes());
        if let Some(x) = extra {
            h.extend_from_slice(&x.to_le_bytes());
        }
        h
    };
    match msg {
        Message::Batch(b) => {
            let h = header(BATCH, b.data.len(), Some(b.records));
            (h.freeze(), Some(Bytes::from(b.data)))
        }
        Message::Barrier(b) => {
            let body = serde_json::to_vec(&b).expect("a barrier serializes");
            let mut h = header(BARRIER, body.len(), None);
            h.extend_from_slice(&body);
            (h.freeze(), None)
        }
        Message::Watermark(w) => {
            let mut h = header(WATERMARK, 8, None);
            h.extend_from_slice(&w.to_le_bytes());
            (h.freeze(), None)
        }
        Message::Idle => (header(IDLE, 0, None).freeze(), None),
        Message::EndOfData => (header(END_OF_DATA, 0, None).freeze(), None),
        Message::EndOfPartition => (header(END_OF_PARTITION, 0, None).freeze(), None),
    }
}

/// Reassembles messages from chunks as the transport delivers them.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes received but not yet a whole message.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, if one has arrived.
    pub fn next(&mut self) -> Result<Option<Message>, Failure> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let tag = self.buf[0];
        let len = u32::from_le_bytes(self.buf[1..5].try_into().expect("4 bytes")) as usize;
        if len > MAX_PAYLOAD {
            return Err(Failure::internal(format!(
                "a peer sent a channel message of {len} bytes, more than the {MAX_PAYLOAD} \
                 allowed: the stream is corrupt"
            )));
        }
        let head = if tag == BATCH { 9 } else { 5 };
        if self.buf.len() < head + len {
            // Room for what is announced, as it arrives: a header alone
            // does not reserve its payload.
            self.buf.reserve((head + len - self.buf.len()).min(1 << 20));
            return Ok(None);
        }
        let extra =
            (tag == BATCH).then(|| u32::from_le_bytes(self.buf[5..9].try_into().expect("4 bytes")));
        self.buf.advance(head);
        let payload = self.buf.split_to(len);
        let msg = match tag {
            BATCH => Message::Batch(Batch::new(payload.to_vec(), extra.unwrap_or(0))),
            BARRIER => {
                Message::Barrier(serde_json::from_slice::<Barrier>(&payload).map_err(|e| {
                    Failure::internal(format!("a peer sent a barrier that does not parse: {e}"))
                })?)
            }
            WATERMARK if len == 8 => {
                Message::Watermark(i64::from_le_bytes(payload[..].try_into().expect("8 bytes")))
            }
            IDLE if len == 0 => Message::Idle,
            END_OF_DATA if len == 0 => Message::EndOfData,
            END_OF_PARTITION if len == 0 => Message::EndOfPartition,
            _ => {
                return Err(Failure::internal(format!(
                    "a peer sent a channel message of unknown kind {tag} ({len} bytes): the \
                     stream is corrupt"
                )));
            }
        };
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_checkpoint::protocol::SnapshotKind;
    use weir_core::CheckpointId;

    fn roundtrip(msgs: Vec<Message>, chunk: usize) -> Vec<Message> {
        let mut wire = Vec::new();
        for m in msgs {
            let (h, p) = encode(m);
            wire.extend_from_slice(&h);
            if let Some(p) = p {
                wire.extend_from_slice(&p);
            }
        }
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for c in wire.chunks(chunk) {
            d.push(c);
            while let Some(m) = d.next().unwrap() {
                out.push(m);
            }
        }
        assert_eq!(d.pending(), 0);
        out
    }

    #[test]
    fn every_message_survives_any_chunking() {
        let barrier = Barrier {
            id: CheckpointId(7),
            kind: SnapshotKind::Checkpoint,
            dir: "j/chk-7".into(),
            swap: false,
            aligned_timeout: Some(12),
        };
        for chunk in [1, 3, 7, 64, 100_000] {
            let out = roundtrip(
                vec![
                    Message::Batch(Batch::new(vec![1, 2, 3, 4, 5], 2)),
                    Message::Watermark(-42),
                    Message::Barrier(barrier.clone()),
                    Message::Idle,
                    Message::Batch(Batch::new(vec![9; 70_000], 1000)),
                    Message::EndOfData,
                    Message::EndOfPartition,
                ],
                chunk,
            );
            assert_eq!(out.len(), 7);
            assert!(
                matches!(&out[0], Message::Batch(b) if b.data == [1, 2, 3, 4, 5] && b.records == 2)
            );
            assert!(matches!(out[1], Message::Watermark(-42)));
            assert!(matches!(&out[2], Message::Barrier(b) if *b == barrier));
            assert!(matches!(out[3], Message::Idle));
            assert!(
                matches!(&out[4], Message::Batch(b) if b.data.len() == 70_000 && b.records == 1000)
            );
            assert!(matches!(out[5], Message::EndOfData));
            assert!(matches!(out[6], Message::EndOfPartition));
        }
    }

    #[test]
    fn corrupt_streams_are_refused() {
        let mut d = Decoder::default();
        d.push(&[99, 0, 0, 0, 0]);
        assert!(d.next().is_err());
        let mut d = Decoder::default();
        d.push(&[BATCH, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(d.next().is_err());
        let mut d = Decoder::default();
        d.push(&[WATERMARK, 3, 0, 0, 0, 1, 2, 3]);
        assert!(d.next().is_err());
    }
}
