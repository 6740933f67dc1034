//! The packed matrices' storage: zero-initialised byte buffers aligned for AVX-512 loads, or for
//! huge pages when they span them.

/// A zero-initialised byte buffer aligned to 64 bytes (AVX-512 loads of a 64-byte group never
/// split a cache line), or to 2 MiB when it spans huge pages.
pub(super) struct AlignedBytes {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    /// How the bytes were allocated, for `Drop`.
    kind: Kind,
}

enum Kind {
    /// `std::alloc::alloc_zeroed` with this layout.
    Heap(std::alloc::Layout),
    /// An anonymous mapping of this many bytes (a multiple of the 2 MiB alignment).
    #[cfg(target_os = "linux")]
    Mapped(usize),
}

// SAFETY: the buffer is plain owned bytes (like a Vec<u8>); shared access is read-only.
unsafe impl Send for AlignedBytes {}
// SAFETY: as above.
unsafe impl Sync for AlignedBytes {}

const HUGE_PAGE: usize = 2 << 20;

impl AlignedBytes {
    /// `len` zero bytes. Buffers of 2 MiB or more are on Linux a fresh anonymous mapping, 2 MiB
    /// aligned, whose pages the kernel zeroes as they are first written: nothing touches them
    /// here, so the first write is the packing itself, on the threads that pack (a separate
    /// zeroing pass cost a second write of every byte, a fifth of an 8B model's load).
    pub(super) fn zeroed(len: usize) -> Self {
        #[cfg(target_os = "linux")]
        if len >= HUGE_PAGE {
            if let Some(b) = Self::mapped(len) {
                return b;
            }
        }
        let layout = std::alloc::Layout::from_size_align(len.max(1).next_multiple_of(64), 64).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = std::ptr::NonNull::new(raw) else { std::alloc::handle_alloc_error(layout) };
        AlignedBytes { ptr, len, kind: Kind::Heap(layout) }
    }

    /// An anonymous private mapping of `len` bytes rounded up to 2 MiB, at a 2 MiB boundary
    /// (mapped 2 MiB larger, the unaligned head and the tail unmapped); `None` where the kernel
    /// refuses (the caller then takes the heap).
    #[cfg(target_os = "linux")]
    fn mapped(len: usize) -> Option<Self> {
        let size = len.next_multiple_of(HUGE_PAGE);
        let over = size.checked_add(HUGE_PAGE)?;
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let raw = unsafe { libc::mmap(std::ptr::null_mut(), over, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let base = raw as usize;
        let start = base.next_multiple_of(HUGE_PAGE);
        let (head, tail) = (start - base, base + over - (start + size));
        // SAFETY: both ranges lie inside the mapping just made and outside [start, start + size);
        // they are page-aligned (mmap returns pages, and `start` and `size` are 2 MiB multiples).
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((start + size) as *mut libc::c_void, tail);
            }
        }
        let b = AlignedBytes { ptr: std::ptr::NonNull::new(start as *mut u8)?, len, kind: Kind::Mapped(size) };
        b.advise_huge_pages();
        Some(b)
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` owns at least `len` zero-initialised bytes for our lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, borrowed mutably through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// With `DAEHWA_HUGE_PAGES=1`, asks for transparent huge pages before the buffer is first
    /// written (pages are then faulted in as 2 MiB pages): a decode step streams every weight
    /// once, and huge pages cut its TLB misses. Only a hint; ignored where unsupported.
    ///
    /// Off by default: under Linux's default THP `defrag` policy a hinted fault compacts memory
    /// synchronously when free memory is in 4 KiB pieces (as after reading the model file through
    /// the page cache), and on the AMD EPYC VM of session 16 that made an 8B model's load 5.7 s
    /// against llama.cpp's 3.4 s (first touch of hinted memory at 0.5-1.5 GB/s against 2.5-3 GB/s
    /// unhinted), while the dram decode bench moved only from 0.92-0.98 to 0.96-1.02 of the
    /// streaming read.
    #[cfg(target_os = "linux")]
    fn advise_huge_pages(&self) {
        if let (Kind::Mapped(size), true) = (&self.kind, huge_pages_wanted()) {
            // SAFETY: the range is exactly this live mapping (2 MiB aligned, whole pages);
            // MADV_HUGEPAGE changes neither contents nor permissions. A failed hint is ignored.
            let _ = unsafe { libc::madvise(self.ptr.as_ptr().cast(), *size, libc::MADV_HUGEPAGE) };
        }
    }
}

/// Whether `DAEHWA_HUGE_PAGES` is `1` (read once).
#[cfg(target_os = "linux")]
fn huge_pages_wanted() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| std::env::var("DAEHWA_HUGE_PAGES").is_ok_and(|v| v == "1"))
}

impl Drop for AlignedBytes {
    fn drop(&mut self) {
        match self.kind {
            // SAFETY: allocated in `zeroed` with exactly this layout.
            Kind::Heap(layout) => unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) },
            // SAFETY: the mapping made in `mapped`, of exactly `size` bytes at `ptr`.
            #[cfg(target_os = "linux")]
            Kind::Mapped(size) => unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), size);
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_start_zeroed_aligned_and_writable_on_both_paths() {
        for len in [1, 4096, HUGE_PAGE - 1, HUGE_PAGE, 3 * HUGE_PAGE + 12345] {
            let mut b = AlignedBytes::zeroed(len);
            let align = if len >= HUGE_PAGE { HUGE_PAGE } else { 64 };
            assert_eq!(b.as_slice().as_ptr() as usize % align, 0, "len {len}");
            assert_eq!(b.as_slice().len(), len);
            assert!(b.as_slice().iter().all(|&x| x == 0), "len {len}");
            b.as_mut_slice().fill(0xA5);
            assert!(b.as_slice().iter().all(|&x| x == 0xA5), "len {len}");
        }
    }
}
