//! What a checkpoint or savepoint records: the `_metadata` file.
//!
//! The file is a one-line header (format, length and CRC-32C of the body)
//! followed by the JSON body, so that truncation and corruption are detected
//! before anything is restored. Every state file it names carries its own
//! size and CRC-32C.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weir_core::{CheckpointId, JobId, KeyGroupRange};
use weir_state::StateDescriptorInfo;

/// The format version written in every header.
pub const FORMAT: &str = "weir-snapshot-v1";

/// A file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Name of the file in a local snapshot directory.
    pub name: String,
    /// Location relative to the directory holding `_metadata` (may start
    /// with `../` for files shared between checkpoints).
    pub path: String,
    pub size: u64,
    pub crc32c: u32,
}

/// Keyed state of one task: a RocksDB checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedStateHandle {
    pub key_groups: KeyGroupRange,
    pub states: Vec<StateDescriptorInfo>,
    pub files: Vec<FileRef>,
}

/// The linear memories of one task's component instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryImageHandle {
    /// Content hash of the module the image belongs to.
    pub module_hash: String,
    /// One file per memory (sparse encoding, see `weir_checkpoint::image`).
    pub files: Vec<FileRef>,
}

/// State written by the job's `save` hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedStateHandle {
    /// The job version that saved it.
    pub version: String,
    pub file: FileRef,
}

/// The state of one subtask of one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSnapshot {
    /// Uids of the chain's operators, head first.
    pub operators: Vec<String>,
    pub subtask: u32,
    pub parallelism: u32,
    pub keyed: Option<KeyedStateHandle>,
    pub memory: Option<MemoryImageHandle>,
    pub saved: Option<SavedStateHandle>,
    /// Non-keyed operator state by uid: source positions, sink
    /// transactions.
    pub operator_state: BTreeMap<String, serde_json::Value>,
    /// Files operators keep beside their state, by uid (a Kafka sink's
    /// records of transactions not yet committed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operator_files: BTreeMap<String, Vec<FileRef>>,
    /// Records in flight at an unaligned checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<InFlightHandle>,
}

/// The records of an unaligned checkpoint that were in flight around a
/// task: those it had yet to read before the barrier (input) and those it
/// had buffered but not sent (output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlightHandle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<FileRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<FileRef>,
    /// The task's output edges (`<from uid>:<port>-><to uid>`), in the
    /// order the in-flight output numbers them: it restores only into a
    /// chain whose edges are the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
}

/// What a snapshot describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Checkpoint,
    Savepoint,
}

/// An operator as it was when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorInfo {
    pub uid: String,
    pub name: String,
    pub parallelism: u32,
}

/// The body of `_metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMetadata {
    pub job_id: JobId,
    pub checkpoint_id: CheckpointId,
    pub kind: Kind,
    pub timestamp_ms: u64,
    pub job_name: String,
    /// The job's own version (from its plan).
    pub job_version: String,
    pub module_hash: String,
    pub max_parallelism: u32,
    pub operators: Vec<OperatorInfo>,
    pub tasks: Vec<TaskSnapshot>,
}

/// `_metadata` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("it is not a Weir snapshot (unknown header)")]
    NotMetadata,
    #[error("it is truncated: the header announces {expected} bytes, {found} are there")]
    Truncated { expected: u64, found: u64 },
    #[error("its checksum does not match: the file is corrupt")]
    Checksum,
    #[error("its body is invalid: {0}")]
    Invalid(String),
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    length: u64,
    crc32c: u32,
}

impl SnapshotMetadata {
    /// Encodes the metadata with its header.
    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec_pretty(self).expect("metadata serializes");
        let header = Header {
            format: FORMAT.to_owned(),
            length: body.len() as u64,
            crc32c: crc32c::crc32c(&body),
        };
        let mut out = serde_json::to_vec(&header).expect("header serializes");
        out.push(b'\n');
        out.extend_from_slice(&body);
        out
    }

    /// Decodes and verifies metadata written by [`SnapshotMetadata::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, MetadataError> {
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(MetadataError::NotMetadata)?;
        let header: Header =
            serde_json::from_slice(&bytes[..nl]).map_err(|_| MetadataError::NotMetadata)?;
        if header.format != FORMAT {
            return Err(MetadataError::NotMetadata);
        }
        let body = &bytes[nl + 1..];
        if body.len() as u64 != header.length {
            return Err(MetadataError::Truncated {
                expected: header.length,
                found: body.len() as u64,
            });
        }
        if crc32c::crc32c(body) != header.crc32c {
            return Err(MetadataError::Checksum);
        }
        serde_json::from_slice(body).map_err(|e| MetadataError::Invalid(e.to_string()))
    }

    /// Every file the snapshot needs, with the task it belongs to.
    pub fn files(&self) -> impl Iterator<Item = &FileRef> {
        self.tasks.iter().flat_map(|t| {
            t.keyed
                .iter()
                .flat_map(|k| k.files.iter())
                .chain(t.memory.iter().flat_map(|m| m.files.iter()))
                .chain(t.saved.iter().map(|s| &s.file))
                .chain(t.operator_files.values().flatten())
                .chain(
                    t.in_flight
                        .iter()
                        .flat_map(|f| f.input.iter().chain(&f.output)),
                )
        })
    }

    /// Uids of operators that hold any state in this snapshot.
    pub fn stateful_uids(&self) -> Vec<String> {
        let mut uids: Vec<String> = Vec::new();
        let mut add = |u: &str| {
            if !uids.iter().any(|x| x == u) {
                uids.push(u.to_owned());
            }
        };
        for t in &self.tasks {
            if let Some(k) = &t.keyed {
                for s in &k.states {
                    add(&s.uid);
                }
            }
            for uid in t.operator_state.keys() {
                add(uid);
            }
        }
        uids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SnapshotMetadata {
        SnapshotMetadata {
            job_id: JobId::random(),
            checkpoint_id: CheckpointId(3),
            kind: Kind::Checkpoint,
            timestamp_ms: 1,
            job_name: "wc".into(),
            job_version: "1".into(),
            module_hash: "abc".into(),
            max_parallelism: 128,
            operators: vec![],
            tasks: vec![TaskSnapshot {
                operators: vec!["counts".into()],
                subtask: 0,
                parallelism: 1,
                keyed: None,
                memory: None,
                saved: None,
                operator_state: BTreeMap::new(),
                operator_files: BTreeMap::new(),
                in_flight: None,
            }],
        }
    }

    #[test]
    fn round_trip_and_corruption() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(SnapshotMetadata::decode(&bytes).unwrap(), m);
        let truncated = &bytes[..bytes.len() - 10];
        assert!(matches!(
            SnapshotMetadata::decode(truncated),
            Err(MetadataError::Truncated { .. })
        ));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x20;
        assert_eq!(
            SnapshotMetadata::decode(&flipped),
            Err(MetadataError::Checksum)
        );
        assert_eq!(
            SnapshotMetadata::decode(b"garbage"),
            Err(MetadataError::NotMetadata)
        );
    }
}
