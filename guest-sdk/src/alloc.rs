//! The allocator of job components.
//!
//! Record-at-a-time code allocates and frees many small values (a `String`
//! per word, a `Vec` per line). This allocator serves small sizes from
//! per-size-class free lists — an allocation is a pop, a free is a push —
//! and leaves everything else to the system allocator. Components are
//! single-threaded, so no locking is needed. Memory of small classes is
//! kept for reuse rather than returned.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Size classes served from free lists (bytes); larger sizes go to the
/// system allocator.
const CLASSES: [usize; 12] = [16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024];
const LARGEST: usize = CLASSES[CLASSES.len() - 1];
/// Alignment every class guarantees.
const ALIGN: usize = 16;
/// Bytes requested from the system allocator at a time.
const CHUNK: usize = 64 * 1024;

struct State {
    free: [*mut u8; CLASSES.len()],
    bump: *mut u8,
    end: *mut u8,
}

/// The allocator `#[weir_sdk::job]` installs in components.
pub struct Allocator {
    state: UnsafeCell<State>,
}

// SAFETY: components run single-threaded (no shared-memory threads), so the
// state is never accessed concurrently.
unsafe impl Sync for Allocator {}

impl Allocator {
    /// A new allocator with no memory yet.
    pub const fn new() -> Self {
        Allocator {
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES.len()],
                bump: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }
}

impl Default for Allocator {
    fn default() -> Self {
        Allocator::new()
    }
}

impl std::fmt::Debug for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Allocator")
    }
}

#[inline]
fn class_of(size: usize) -> usize {
    // Few classes: a short scan is cheaper than anything clever.
    let mut c = 0;
    while CLASSES[c] < size {
        c += 1;
    }
    c
}

unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LARGEST || layout.align() > ALIGN {
            // SAFETY: forwarded unchanged.
            return unsafe { System.alloc(layout) };
        }
        let c = class_of(layout.size().max(1));
        // SAFETY: single-threaded (see `Sync`), no reentrancy.
        let s = unsafe { &mut *self.state.get() };
        let head = s.free[c];
        if !head.is_null() {
            // SAFETY: free blocks store the next free block in their first word.
            s.free[c] = unsafe { *(head as *mut *mut u8) };
            return head;
        }
        let size = CLASSES[c];
        if (s.end as usize) - (s.bump as usize) < size {
            // SAFETY: a valid, non-zero layout.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, ALIGN)) };
            if chunk.is_null() {
                return chunk;
            }
            s.bump = chunk;
            // SAFETY: within the chunk just allocated.
            s.end = unsafe { chunk.add(CHUNK) };
        }
        let p = s.bump;
        // SAFETY: at least `size` bytes remain in the chunk.
        s.bump = unsafe { p.add(size) };
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() > LARGEST || layout.align() > ALIGN {
            // SAFETY: allocated by `System` above with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        let c = class_of(layout.size().max(1));
        // SAFETY: single-threaded; the block is at least 16 bytes, aligned.
        let s = unsafe { &mut *self.state.get() };
        unsafe { *(ptr as *mut *mut u8) = s.free[c] };
        s.free[c] = ptr;
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let small = |size: usize| size <= LARGEST && layout.align() <= ALIGN;
        if small(layout.size())
            && small(new_size)
            && class_of(layout.size().max(1)) == class_of(new_size.max(1))
        {
            return ptr; // same block fits
        }
        if !small(layout.size()) && !small(new_size) {
            // SAFETY: both sides belong to the system allocator.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_size` with the old alignment is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_reused_and_sized() {
        let a = Allocator::new();
        unsafe {
            let l = Layout::from_size_align(20, 8).unwrap();
            let p = a.alloc(l);
            assert_eq!(p as usize % ALIGN, 0);
            ptr::write_bytes(p, 7, 20);
            a.dealloc(p, l);
            let q = a.alloc(Layout::from_size_align(30, 1).unwrap());
            assert_eq!(p, q, "same class reuses the freed block");
            ptr::write_bytes(q, 7, 30);
            let big = Layout::from_size_align(5000, 8).unwrap();
            let b = a.alloc(big);
            ptr::write_bytes(b, 1, 5000);
            let b2 = a.realloc(b, big, 10);
            assert_eq!(*b2.add(9), 1);
            let r = a.realloc(q, Layout::from_size_align(30, 1).unwrap(), 2000);
            assert_eq!(*r, 7);
            a.dealloc(r, Layout::from_size_align(2000, 1).unwrap());
            a.dealloc(b2, Layout::from_size_align(10, 8).unwrap());
        }
        assert_eq!(class_of(1), 0);
        assert_eq!(class_of(16), 0);
        assert_eq!(class_of(17), 1);
        assert_eq!(class_of(1024), 11);
    }
}
