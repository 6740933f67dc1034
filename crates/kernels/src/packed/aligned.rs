//! The packed matrices' storage: zero-initialised byte buffers aligned for AVX-512 loads, or for
//! huge pages when they span them, first written on several threads.

/// A zero-initialised byte buffer aligned to 64 bytes (AVX-512 loads of a 64-byte group never
/// split a cache line), or to 2 MiB when it spans huge pages.
pub(super) struct AlignedBytes {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    layout: std::alloc::Layout,
}

// SAFETY: the buffer is plain owned bytes (like a Vec<u8>); shared access is read-only.
unsafe impl Send for AlignedBytes {}
// SAFETY: as above.
unsafe impl Sync for AlignedBytes {}

const HUGE_PAGE: usize = 2 << 20;

impl AlignedBytes {
    pub(super) fn zeroed(len: usize) -> Self {
        let align = if len >= HUGE_PAGE { HUGE_PAGE } else { 64 };
        let layout = std::alloc::Layout::from_size_align(len.max(1).next_multiple_of(align), align).expect("valid layout");
        // Huge-page buffers are advised before their first write (`alloc_zeroed` with this
        // alignment would memset, faulting 4 KiB pages in before the hint), then zeroed.
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { if align == HUGE_PAGE { std::alloc::alloc(layout) } else { std::alloc::alloc_zeroed(layout) } };
        let Some(ptr) = std::ptr::NonNull::new(raw) else { std::alloc::handle_alloc_error(layout) };
        let b = AlignedBytes { ptr, len, layout };
        if align == HUGE_PAGE {
            b.advise_huge_pages();
            zero_parallel(ptr.as_ptr(), layout.size());
        }
        b
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` owns `layout.size() >= len` zero-initialised bytes for our lifetime.
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
    fn advise_huge_pages(&self) {
        #[cfg(target_os = "linux")]
        if self.layout.align() == HUGE_PAGE && huge_pages_wanted() {
            const MADV_HUGEPAGE: i32 = 14;
            extern "C" {
                fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
            }
            // SAFETY: the range is exactly this live allocation (2 MiB aligned, whole pages);
            // MADV_HUGEPAGE changes neither contents nor permissions. A failed hint is ignored.
            let _ = unsafe { madvise(self.ptr.as_ptr().cast(), self.layout.size(), MADV_HUGEPAGE) };
        }
    }
}

/// Writes `len` zero bytes at `p`, in parts on up to 4 threads when `len` is 64 MiB or more.
/// This is the buffer's first touch. Each page fault has the kernel zero a fresh page, and in a
/// VM that costs more than the write itself. Faults on different threads proceed in parallel:
/// first touch measured 2.3-2.9 GB/s on one thread against 5.4 GB/s on two, on the AMD EPYC VM of
/// session 16, where zeroing was half of an 8B model's load.
fn zero_parallel(p: *mut u8, len: usize) {
    const PARALLEL_FROM: usize = 64 << 20;
    let n = if len >= PARALLEL_FROM { std::thread::available_parallelism().map_or(1, |n| n.get()).min(4) } else { 1 };
    let part = len.div_ceil(n).next_multiple_of(4096);
    let base = p as usize;
    let zero = |i: usize| {
        let (lo, hi) = ((i * part).min(len), ((i + 1) * part).min(len));
        // SAFETY: `p` owns `len` writable bytes (caller); the parts are disjoint.
        unsafe { std::ptr::write_bytes((base + lo) as *mut u8, 0, hi - lo) };
    };
    std::thread::scope(|s| {
        for i in 1..n {
            s.spawn(move || zero(i));
        }
        zero(0);
    });
}

/// Whether `DAEHWA_HUGE_PAGES` is `1` (read once).
fn huge_pages_wanted() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| std::env::var("DAEHWA_HUGE_PAGES").is_ok_and(|v| v == "1"))
}

impl Drop for AlignedBytes {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with exactly this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}
