//! Shared write access to one output buffer from many pool tasks that write disjoint elements.
//!
//! A matmul task owns a range of output *rows* for every token, which is a strided set of
//! indices in `out[t * n_rows + r]`, so `chunks_mut` cannot hand it out. This wrapper keeps the
//! `&mut [T]` borrow for its lifetime and lets tasks write through a raw pointer; the caller
//! promises (per `unsafe` call) that no two tasks touch the same index.

use std::marker::PhantomData;

pub(crate) struct DisjointMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: the wrapper is a `&mut [T]` split among threads; sending or sharing it is sound for
// `T: Send` as long as each element is accessed by one thread at a time, which every `unsafe`
// accessor requires of its caller.
unsafe impl<T: Send> Send for DisjointMut<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for DisjointMut<'_, T> {}

impl<'a, T: Copy> DisjointMut<'a, T> {
    pub(crate) fn new(slice: &'a mut [T]) -> Self {
        DisjointMut { ptr: slice.as_mut_ptr(), len: slice.len(), _borrow: PhantomData }
    }

    /// Writes `value` at `i` (bounds-checked).
    ///
    /// # Safety
    /// No other thread reads or writes index `i` during this `DisjointMut`'s lifetime.
    #[inline]
    pub(crate) unsafe fn write(&self, i: usize, value: T) {
        assert!(i < self.len, "index {i} out of bounds {}", self.len);
        // SAFETY: in bounds (checked); exclusive per the caller's contract.
        unsafe { self.ptr.add(i).write(value) }
    }

    /// The sub-slice `start..start + len` (bounds-checked).
    ///
    /// # Safety
    /// No other live reference covers any index of this range.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start.checked_add(len).is_some_and(|end| end <= self.len), "range {start}+{len} out of bounds {}", self.len);
        // SAFETY: in bounds (checked); exclusive per the caller's contract; the memory is
        // borrowed mutably for 'a, which outlives `&self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}
