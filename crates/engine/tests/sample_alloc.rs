//! The sampler must not allocate per token after its first call (STYLE.md rule 7). A counting
//! global allocator, per thread so the test harness's own threads do not interfere, checks it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use engine::sample::{Sampler, SamplingParams};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCS.with(Cell::get)
}

#[test]
fn no_allocation_after_the_first_call() {
    // The counter itself works: a Vec allocates on this thread.
    let before = allocations();
    std::hint::black_box(vec![0u8; 16]);
    assert!(
        allocations() > before,
        "the counting allocator does not count"
    );

    let n_vocab = 49152;
    let logits: Vec<f32> = (0..n_vocab)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0)
        .collect();
    let history: Vec<u32> = (0..300).map(|i| (i * 31) % n_vocab as u32).collect();
    let configs = [
        SamplingParams {
            seed: Some(1),
            ..SamplingParams::default()
        },
        SamplingParams {
            top_k: 0,
            seed: Some(2),
            ..SamplingParams::default()
        },
        SamplingParams {
            repeat_penalty: 1.1,
            presence_penalty: 0.5,
            frequency_penalty: 0.3,
            seed: Some(3),
            ..SamplingParams::default()
        },
        SamplingParams {
            repeat_penalty: 1.3,
            ..SamplingParams::greedy()
        },
        SamplingParams::greedy(),
    ];
    for params in configs {
        let mut s = Sampler::new(params.clone());
        s.sample(&logits, &history);
        let before = allocations();
        for _ in 0..50 {
            std::hint::black_box(s.sample(&logits, &history));
        }
        assert_eq!(allocations() - before, 0, "{params:?} allocated per token");
    }
}
