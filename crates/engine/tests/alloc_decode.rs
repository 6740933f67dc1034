//! Once warm, a decode step of the model's forward pass allocates nothing (issue 5: no allocation
//! and no zero-filling in the decode loop), on the contiguous `KvCache` and on the paged store
//! with several sequences per step. A counting global allocator sees every thread (the engine
//! thread and the kernel pool's workers), so this file holds a single test: nothing else runs in
//! the process while it counts.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use engine::kv::paged::{KvManager, PagedBuffers, PagedKv};
use engine::kv::KvCache;
use engine::model::{Batch, ForwardCtx, Workspace};
use engine::{Engine, EngineConfig};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCS.load(Ordering::SeqCst)
}

const PROMPT: [u32; 6] = [1, 9690, 314, 253, 6369, 30];
const WARM_STEPS: usize = 3;
const COUNTED_STEPS: usize = 20;

#[test]
fn warm_decode_steps_allocate_nothing() {
    // The counter sees allocations at all.
    let before = allocations();
    std::hint::black_box(vec![0u8; 16]);
    assert!(allocations() > before, "the counting allocator does not count");

    let e = Engine::load(common::smollm2(), &EngineConfig { threads: 2, ..EngineConfig::default() }).expect("load smollm2");
    let hp = e.model.hparams().clone();
    let n_ctx = 64;
    let mut ws = Workspace::default();
    let mut batch = Batch::default();
    let mut logits = Vec::new();

    // Contiguous cache, one sequence: prompt, warm-up steps, then counted steps.
    let mut kv = KvCache::new(hp.n_layer, n_ctx, hp.kv_dim(), 1);
    for (i, &t) in PROMPT.iter().enumerate() {
        batch.push(t, i, 0, i + 1 == PROMPT.len());
    }
    e.model.forward(&batch, &mut ForwardCtx { pool: &e.pool, kv: &mut kv, ws: &mut ws }, &mut logits).expect("prefill");
    let mut counted = 0;
    for step in 0..WARM_STEPS + COUNTED_STEPS {
        let pos = PROMPT.len() + step;
        let token = argmax(&logits);
        batch.clear();
        batch.push(token, pos, 0, true);
        let a = allocations();
        e.model.forward(&batch, &mut ForwardCtx { pool: &e.pool, kv: &mut kv, ws: &mut ws }, &mut logits).expect("decode");
        if step >= WARM_STEPS {
            counted += allocations() - a;
        }
    }
    assert_eq!(counted, 0, "contiguous KV: {counted} allocations in {COUNTED_STEPS} warm decode steps");
    assert_eq!(logits.len(), hp.n_vocab);
    assert!(logits.iter().all(|v| v.is_finite()));

    // Paged cache, 4 sequences decoding together (the server's batched step). Blocks for every
    // position are reserved up front, as the scheduler does before it schedules a step.
    let n_seq = 4;
    let bs = 16;
    let n_blocks = n_seq * n_ctx.div_ceil(bs);
    let mut tables = KvManager::new(n_blocks, bs, n_seq);
    let mut buffers = PagedBuffers::new(hp.n_layer, hp.kv_dim(), bs, n_blocks);
    let mut slots = Vec::new();
    for s in 0..n_seq {
        let prompt: Vec<u32> = PROMPT.iter().map(|&t| t + s as u32).collect();
        let adm = tables.admit(&prompt, 0).expect("admit");
        assert!(tables.reserve(adm.slot, n_ctx));
        slots.push(adm.slot);
    }
    batch.clear();
    for (s, &slot) in slots.iter().enumerate() {
        for (i, &t) in PROMPT.iter().enumerate() {
            batch.push(t + s as u32, i, slot, i + 1 == PROMPT.len());
        }
    }
    let mut paged = PagedKv { buffers: &mut buffers, tables: &tables, n_ctx };
    e.model.forward(&batch, &mut ForwardCtx { pool: &e.pool, kv: &mut paged, ws: &mut ws }, &mut logits).expect("paged prefill");
    let mut counted = 0;
    let mut tokens = vec![0u32; n_seq];
    for step in 0..WARM_STEPS + COUNTED_STEPS {
        let pos = PROMPT.len() + step;
        for (s, t) in tokens.iter_mut().enumerate() {
            *t = argmax(&logits[s * hp.n_vocab..(s + 1) * hp.n_vocab]);
        }
        batch.clear();
        for (s, &slot) in slots.iter().enumerate() {
            batch.push(tokens[s], pos, slot, true);
        }
        let a = allocations();
        e.model.forward(&batch, &mut ForwardCtx { pool: &e.pool, kv: &mut paged, ws: &mut ws }, &mut logits).expect("paged decode");
        if step >= WARM_STEPS {
            counted += allocations() - a;
        }
    }
    assert_eq!(counted, 0, "paged KV, {n_seq} sequences: {counted} allocations in {COUNTED_STEPS} warm decode steps");
    assert_eq!(logits.len(), n_seq * hp.n_vocab);
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}
