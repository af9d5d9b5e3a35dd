//! Checkpoints: the protocol as pure logic, and the storage of snapshots.
//!
//! [`protocol`] decides — barrier alignment in a task, when a checkpoint is
//! due or complete or failed, which retained checkpoints still need which
//! shared files, how a snapshot's state maps onto a (new) job — without
//! touching disks or sockets, and is tested on its own. [`storage`] and
//! [`metadata`] are the I/O edge: any `object_store` location, Flink's
//! directory layout ([`paths`]), and checksummed `_metadata` files.

pub mod image;
pub mod metadata;
pub mod paths;
pub mod protocol;
pub mod storage;

pub use metadata::{FileRef, SnapshotMetadata, TaskSnapshot};
pub use storage::{S3Options, Storage, StorageError, block_on};
