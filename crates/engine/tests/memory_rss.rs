//! Memory after load (issue 15, item 5): the weights stay mapped, and a matrix repacked for the
//! fast kernels gives its mapped pages back, so the resident set after a prefill and a decode
//! step of the real SmolLM2 file (98 MB, every matrix repacked on AVX-512 VNNI) is within 10% of
//! `engine::memory::estimate`, and that estimate is file + KV + scratch (not file + a second
//! copy of the weights). One test in this file: the process's RSS is what it measures.

mod common;

use engine::kv::KvCache;
use engine::memory::{estimate, kv_bytes, Usage, BASELINE_BYTES};
use engine::model::{Batch, ForwardCtx, Workspace};
use engine::{Engine, EngineConfig};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[test]
fn rss_after_load_stays_under_the_estimate_with_no_second_weight_copy() {
    let path = common::smollm2();
    let e = Engine::load(&path, &EngineConfig { threads: 2, ..EngineConfig::default() }).expect("load smollm2");
    let hp = e.model.hparams().clone();
    // A context the prompt fills: KV pages never written are never resident, and the estimate
    // counts the whole cache.
    let (n_ctx, n_prompt) = (66, 64);
    let mut kv = KvCache::new(hp.n_layer, n_ctx, hp.kv_dim(), 1);
    let (mut ws, mut batch, mut logits) = (Workspace::default(), Batch::default(), Vec::new());
    for i in 0..n_prompt {
        batch.push(1 + (i as u32 * 37) % 4000, i, 0, i + 1 == n_prompt);
    }
    e.model.forward(&batch, &mut ForwardCtx { pool: &e.pool, kv: &mut kv, ws: &mut ws }, &mut logits).expect("prefill");
    batch.clear();
    batch.push(2, n_prompt, 0, true);
    e.model.forward(&batch, &mut ForwardCtx { pool: &e.pool, kv: &mut kv, ws: &mut ws }, &mut logits).expect("decode");
    assert!(logits.iter().all(|v| v.is_finite()));

    let rss = rss_bytes() as f64;
    let file = gguf::GgufFile::open(&path).expect("open");
    let usage = Usage { kv_bytes: kv_bytes(&hp, n_ctx, 1, false), n_seq: 1, batch_tokens: n_prompt };
    let est = estimate(&file, &hp, &usage);
    let total = est.total() as f64;
    let file_bytes = std::fs::metadata(&path).expect("stat").len();
    eprintln!("{}", std::fs::read_to_string("/proc/self/status").unwrap_or_default().lines().filter(|l| l.starts_with("Rss")).collect::<Vec<_>>().join(" "));
    eprintln!("RSS {:.1} MB, estimate {:.1} MB ({est:?}), file {:.1} MB", rss / 1e6, total / 1e6, file_bytes as f64 / 1e6);
    // The estimate is an upper bound (`run` and `chat` refuse what it says does not fit) and a
    // close one: its process baseline is `daehwa serve`'s 32 MiB, of which a test binary uses
    // about half, so RSS sits just under it here (measured: 128 MB against 143 MB).
    assert!(rss <= total, "RSS {rss} above the estimate {total} ({est:?})");
    assert!(rss >= 0.85 * total - BASELINE_BYTES as f64 / 2.0, "RSS {rss} far below the estimate {total} ({est:?})");
    // Repacked weights replace the mapped ones: no second copy of the model (without the page
    // release RSS was file + packed copy, ~195 MB here).
    let bound = file_bytes + est.kv + est.scratch;
    assert!(est.total() <= bound + bound / 20, "estimate {est:?} vs file + KV + scratch {bound}");
    assert!(rss <= 1.10 * bound as f64, "RSS {rss} vs file + KV + scratch {bound}");
    assert!(est.repacked == 0 || rss < (file_bytes + est.repacked) as f64, "RSS {rss}: the mapped pages of repacked matrices were not released");
}
