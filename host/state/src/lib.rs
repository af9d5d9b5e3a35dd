//! Keyed state on RocksDB.
//!
//! Each task with keyed operators owns one [`KeyedStateBackend`]: one RocksDB
//! instance with a column family per (operator uid, state name). Keys are laid
//! out as `key group (u16 BE) | key length (u32 BE) | key | namespace`, so a
//! key-group range moves as one when a job is restored at another
//! parallelism. A write-back cache in front of RocksDB serves the hot path and
//! is flushed before every snapshot. Snapshots are RocksDB checkpoints (hard
//! links), from which `weir-checkpoint` uploads only new SST files. Timers
//! of keyed operators live in column families of their own, ordered by time
//! within each key group.

mod backend;
mod cache;
mod layout;
mod memory;
mod snapshot;
mod timers;

pub use backend::{KeyedStateBackend, StateError, StateId};
pub use layout::{StateKey, decode_state_key, encode_state_key};
pub use memory::{DEFAULT_MANAGED_BYTES, DEFAULT_WRITE_BUFFER_RATIO, share_memory};
pub use snapshot::{LocalSnapshot, RestoreSource, SnapshotFile, StateDescriptorInfo};
pub use timers::{Timer, TimerScan};
