//! Host-provided linear memories, so that a task can copy an instance's
//! memory between calls and write it back into a fresh instance.
//!
//! Wasmtime asks [`SnapshotMemoryCreator`] for every linear memory. Each is
//! a virtual reservation of the size wasmtime requests (with its guard
//! region), of which the accessible part grows with the guest — exactly the
//! layout of wasmtime's own memories, so bounds checks are elided the same
//! way and guest code runs at the same speed. The creator records a handle
//! to every memory it makes for the instantiation in progress on the
//! current thread; the task keeps those handles and reads or writes the
//! memory while no guest code runs. Nothing is added to the guest, so a
//! snapshot never grows guest memory.

use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

/// What a task knows about one memory of its instance.
#[derive(Debug)]
pub(crate) struct MemoryHandle {
    base: usize,
    len: AtomicUsize,
}

impl MemoryHandle {
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Copies the memory's accessible bytes into `buf` (replacing its
    /// contents; an earlier image's buffer makes this a plain copy, with no
    /// page faults).
    ///
    /// # Safety
    /// No guest code of the owning store may run during the call, and the
    /// store must be alive.
    pub unsafe fn read_into(&self, buf: &mut Vec<u8>) {
        let len = self.len();
        // SAFETY: [base, base+len) is mapped read-write while the store
        // lives, and nothing writes to it while no guest code runs.
        let bytes = unsafe { std::slice::from_raw_parts(self.base as *const u8, len) };
        buf.clear();
        buf.extend_from_slice(bytes);
    }

    /// Overwrites the memory with `image`, zeroing anything beyond it.
    ///
    /// # Safety
    /// As for [`MemoryHandle::read`]; `image` must fit the memory.
    pub unsafe fn write(&self, image: &[u8]) {
        let len = self.len();
        assert!(image.len() <= len, "memory image larger than the memory");
        // SAFETY: as in `read`; the ranges are within the accessible part.
        unsafe {
            std::ptr::copy_nonoverlapping(image.as_ptr(), self.base as *mut u8, image.len());
            std::ptr::write_bytes((self.base + image.len()) as *mut u8, 0, len - image.len());
        }
    }
}

thread_local! {
    /// Sizes the next memories created on this thread should start with.
    static PRESIZE: RefCell<VecDeque<usize>> = const { RefCell::new(VecDeque::new()) };
    /// Memories created on this thread since the last `take_created`.
    static CREATED: RefCell<Vec<Arc<MemoryHandle>>> = const { RefCell::new(Vec::new()) };
}

/// Makes the next memories created on this thread at least these sizes
/// (restoring an image that outgrew the module's initial size).
pub(crate) fn presize(sizes: impl IntoIterator<Item = usize>) {
    PRESIZE.with(|p| {
        let mut p = p.borrow_mut();
        p.clear();
        p.extend(sizes);
    });
}

/// The memories created on this thread since the last call, in order.
pub(crate) fn take_created() -> Vec<Arc<MemoryHandle>> {
    PRESIZE.with(|p| p.borrow_mut().clear());
    CREATED.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

/// Creates [`MmapMemory`]s.
#[derive(Debug, Default)]
pub(crate) struct SnapshotMemoryCreator;

unsafe impl MemoryCreator for SnapshotMemoryCreator {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        let wanted = PRESIZE
            .with(|p| p.borrow_mut().pop_front())
            .map_or(minimum, |s| s.max(minimum));
        let mem = MmapMemory::new(wanted, maximum, reserved_size_in_bytes, guard_size_in_bytes)?;
        CREATED.with(|c| c.borrow_mut().push(mem.handle.clone()));
        Ok(Box::new(mem))
    }
}

/// A linear memory in a private anonymous mapping.
struct MmapMemory {
    handle: Arc<MemoryHandle>,
    mapping: usize,
    mapping_len: usize,
    /// Accessible bytes may grow up to this without moving.
    capacity: usize,
    maximum: Option<usize>,
}

const PAGE: usize = 4096;

fn round_up(n: usize) -> usize {
    n.div_ceil(PAGE) * PAGE
}

impl MmapMemory {
    fn new(
        initial: usize,
        maximum: Option<usize>,
        reserved: Option<usize>,
        guard: usize,
    ) -> Result<Self, String> {
        if maximum.is_some_and(|m| initial > m) {
            return Err(format!("memory of {initial} bytes exceeds its maximum"));
        }
        let capacity = match reserved {
            Some(r) => r.max(round_up(initial)),
            None => round_up(maximum.unwrap_or(initial).max(initial)),
        };
        let mapping_len = capacity
            .checked_add(guard)
            .ok_or("memory reservation overflows")?;
        // SAFETY: a fresh anonymous mapping at an address the kernel picks.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                mapping_len,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .map_err(|e| format!("cannot reserve {mapping_len} bytes for a linear memory: {e}"))?;
        let mem = MmapMemory {
            handle: Arc::new(MemoryHandle {
                base: ptr as usize,
                len: AtomicUsize::new(0),
            }),
            mapping: ptr as usize,
            mapping_len,
            capacity,
            maximum,
        };
        mem.make_accessible(0, initial)?;
        mem.handle.len.store(initial, Ordering::Release);
        Ok(mem)
    }

    fn make_accessible(&self, from: usize, to: usize) -> Result<(), String> {
        let start = round_up(from);
        let end = round_up(to);
        if end > start {
            // SAFETY: [start, end) lies within our own mapping.
            unsafe {
                rustix::mm::mprotect(
                    (self.mapping + start) as *mut _,
                    end - start,
                    MprotectFlags::READ | MprotectFlags::WRITE,
                )
            }
            .map_err(|e| format!("cannot grow linear memory to {to} bytes: {e}"))?;
        }
        Ok(())
    }
}

impl Drop for MmapMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and no longer used by wasmtime.
        let _ = unsafe { rustix::mm::munmap(self.mapping as *mut _, self.mapping_len) };
    }
}

unsafe impl LinearMemory for MmapMemory {
    fn byte_size(&self) -> usize {
        self.handle.len()
    }

    fn byte_capacity(&self) -> usize {
        self.capacity
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        let old = self.handle.len();
        if new_size > self.capacity || self.maximum.is_some_and(|m| new_size > m) {
            wasmtime::bail!("linear memory cannot grow to {new_size} bytes");
        }
        self.make_accessible(old, new_size)
            .map_err(wasmtime::Error::msg)?;
        self.handle.len.store(new_size, Ordering::Release);
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.mapping as *mut u8
    }
}
