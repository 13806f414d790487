//! A global allocator that counts, per thread, the bytes requested and the largest single
//! request, so a target can assert that no input makes a decoder allocate far more than the
//! input's size. Per thread because the test harness runs the targets in parallel.

// The only unsafe code of the crate: `GlobalAlloc` is an unsafe trait. Every method forwards
// to `System` unchanged, with the same layout and pointer, so it keeps System's guarantees.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Allocation during one measured call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Sum of every allocation and reallocation request, in bytes.
    pub bytes_total: u64,
    /// The largest single request, in bytes.
    pub bytes_max: u64,
}

thread_local! {
    // `const` initialisation and no destructor: touching these never allocates, so the
    // allocator cannot recurse into itself.
    static TOTAL: Cell<u64> = const { Cell::new(0) };
    static LARGEST: Cell<u64> = const { Cell::new(0) };
}

fn note(size: usize) {
    let size = size as u64;
    let _ = TOTAL.try_with(|t| t.set(t.get().saturating_add(size)));
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

#[derive(Debug)]
pub struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Runs `f` and returns what it allocated on this thread.
pub fn measured<T>(f: impl FnOnce() -> T) -> (T, AllocStats) {
    TOTAL.with(|t| t.set(0));
    LARGEST.with(|l| l.set(0));
    let value = f();
    let stats = AllocStats {
        bytes_total: TOTAL.with(Cell::get),
        bytes_max: LARGEST.with(Cell::get),
    };
    (value, stats)
}
