//! Memory every RocksDB instance of the process shares, as Flink's managed
//! memory: one LRU block cache, and a write buffer budget charged to it, so
//! that a thousand idle jobs cost what their state holds, not a thousand
//! caches and memtables' worth.

use rocksdb::{Cache, WriteBufferManager};
use std::sync::OnceLock;

/// The process's share when nothing sets it: 256 MiB, half of it for write
/// buffers.
pub const DEFAULT_MANAGED_BYTES: usize = 256 << 20;
pub const DEFAULT_WRITE_BUFFER_RATIO: f64 = 0.5;

pub(crate) struct Shared {
    pub cache: Cache,
    pub write_buffers: WriteBufferManager,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn make(bytes: usize, write_buffer_ratio: f64) -> Shared {
    let cache = Cache::new_lru_cache(bytes.max(1 << 20));
    let ratio = if write_buffer_ratio.is_finite() {
        write_buffer_ratio.clamp(0.05, 0.95)
    } else {
        DEFAULT_WRITE_BUFFER_RATIO
    };
    // Memtables past their budget are flushed, never stall writers.
    let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
        (bytes as f64 * ratio) as usize,
        false,
        cache.clone(),
    );
    Shared {
        cache,
        write_buffers,
    }
}

/// Sets the memory the process's RocksDB instances share (block cache and
/// write buffers, `write_buffer_ratio` of it for the latter). The first
/// call, or the first backend opened, decides; later calls return false.
pub fn share_memory(bytes: usize, write_buffer_ratio: f64) -> bool {
    let mut set = false;
    SHARED.get_or_init(|| {
        set = true;
        make(bytes, write_buffer_ratio)
    });
    set
}

pub(crate) fn shared() -> &'static Shared {
    SHARED.get_or_init(|| make(DEFAULT_MANAGED_BYTES, DEFAULT_WRITE_BUFFER_RATIO))
}
