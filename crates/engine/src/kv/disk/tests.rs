//! The tier on a real directory: writes through the writer thread, reads back after a reopen
//! (a restart), refuses damaged and foreign files, keeps its bound.

use super::*;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("daehwa-kv-disk-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

const GEO: Geometry = Geometry { block_size: 4, n_layer: 2, kv_dim: 8 };

fn block(i: usize) -> (BlockHash, Vec<TokenId>, Vec<f16>) {
    let tokens: Vec<TokenId> = (0..4 * (i + 1) as TokenId).map(|t| t * 7 + 1).collect();
    let mut h = None;
    for c in tokens.chunks(4) {
        h = Some(BlockHash::chain(h, c));
    }
    let payload = (0..GEO.payload_len()).map(|j| f16::from_f32((i * 1000 + j) as f32 / 64.0)).collect();
    (h.expect("one block at least"), tokens, payload)
}

fn put(t: &mut DiskTier, i: usize) {
    let (h, toks, p) = block(i);
    assert!(t.want(h));
    assert!(!t.want(h), "claimed once");
    assert!(t.submit(h, toks, p));
}

#[test]
fn blocks_survive_a_reopen_and_read_back_exactly() {
    let cfg = DiskConfig { dir: scratch("reopen"), max_bytes: 1 << 20 };
    let model = ModelId([1; 32]);
    {
        let mut t = DiskTier::open(&cfg, model, GEO).expect("open");
        for i in 0..3 {
            put(&mut t, i);
        }
        t.flush();
        let s = t.stats();
        assert_eq!((s.writes, s.files), (3, 3));
        assert_eq!(s.bytes, (0..3).map(|i| GEO.file_len(4 * (i + 1)) as u64).sum::<u64>());
    }
    let mut t = DiskTier::open(&cfg, model, GEO).expect("reopen");
    assert_eq!(t.stats().files, 3);
    for i in 0..3 {
        let (h, toks, p) = block(i);
        assert!(t.contains(h));
        assert!(!t.want(h), "on disk: not written again");
        assert_eq!(t.read(h, &toks).expect("hit"), &p[..]);
    }
    // Same hash, other tokens (a hash collision, or a file renamed): refused, deleted.
    let (h, mut toks, _) = block(2);
    toks[0] += 1;
    assert!(t.read(h, &toks).is_none());
    assert!(!t.contains(h));
    let s = t.stats();
    assert_eq!((s.hits, s.refused, s.files), (3, 1, 2));
    let _ = std::fs::remove_dir_all(&cfg.dir);
}

#[test]
fn damaged_and_foreign_files_are_refused_and_deleted() {
    let cfg = DiskConfig { dir: scratch("damaged"), max_bytes: 1 << 20 };
    let model = ModelId([2; 32]);
    let mut t = DiskTier::open(&cfg, model, GEO).expect("open");
    for i in 0..3 {
        put(&mut t, i);
    }
    t.flush();
    let dir = t.dir().to_path_buf();
    let path = |i: usize| dir.join(format!("{:032x}.kvb", block(i).0 .0));
    // One flipped byte in the payload, one truncated file, one from another model.
    let mut b = std::fs::read(path(0)).expect("file");
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(path(0), &b).expect("write");
    let b = std::fs::read(path(1)).expect("file");
    std::fs::write(path(1), &b[..b.len() - 10]).expect("write");
    let (h2, toks2, p2) = block(2);
    let mut foreign = Vec::new();
    format::encode(&ModelId([3; 32]), h2, GEO, &toks2, &p2, &mut foreign);
    std::fs::write(path(2), &foreign).expect("write");
    for i in 0..3 {
        let (h, toks, _) = block(i);
        assert!(t.read(h, &toks).is_none(), "block {i} must be refused");
        assert!(!path(i).exists(), "refused file {i} is deleted");
    }
    assert_eq!(t.stats().refused, 3);
    assert_eq!((t.stats().files, t.stats().bytes), (0, 0));
    let _ = std::fs::remove_dir_all(&cfg.dir);
}

#[test]
fn the_size_bound_holds_with_lru_eviction_and_other_models_go_first() {
    let one = GEO.file_len(4) as u64;
    let dir = scratch("bound");
    // Another model's files from an earlier run.
    {
        let cfg = DiskConfig { dir: dir.clone(), max_bytes: 1 << 20 };
        let mut other = DiskTier::open(&cfg, ModelId([9; 32]), GEO).expect("open");
        put(&mut other, 0);
        other.flush();
    }
    // Room for exactly four one-block files (block 0's size; later blocks are larger).
    let cfg = DiskConfig { dir: dir.clone(), max_bytes: 4 * one + one / 2 };
    let model = ModelId([4; 32]);
    let mut t = DiskTier::open(&cfg, model, GEO).expect("open");
    let other_dir = dir.join(ModelId([9; 32]).hex());
    assert_eq!(std::fs::read_dir(&other_dir).expect("dir").count(), 1);
    // Same-size blocks: block i's first-block variant under a distinct token.
    let small = |i: u32| {
        let toks: Vec<TokenId> = vec![i, i + 1, i + 2, i + 3];
        let h = BlockHash::chain(None, &toks);
        (h, toks, vec![f16::from_f32(i as f32); GEO.payload_len()])
    };
    for i in 0..4 {
        let (h, toks, p) = small(i);
        assert!(t.want(h));
        assert!(t.submit(h, toks, p));
        t.flush();
    }
    assert_eq!(std::fs::read_dir(&other_dir).expect("dir").count(), 0, "the other model's file went first");
    // Reading 0 makes 1 the least recently used. (File times are coarse: a pause keeps the
    // order of the next start's scan.)
    std::thread::sleep(std::time::Duration::from_millis(30));
    let (h0, t0, _) = small(0);
    assert!(t.read(h0, &t0).is_some());
    std::thread::sleep(std::time::Duration::from_millis(30));
    let (h, toks, p) = small(4);
    assert!(t.want(h));
    assert!(t.submit(h, toks, p));
    t.flush();
    let s = t.stats();
    assert!(s.bytes <= cfg.max_bytes, "{s:?}");
    assert_eq!(s.files, 4);
    assert!(!t.contains(small(1).0), "the least recently used was evicted");
    for i in [0, 2, 3, 4] {
        assert!(t.contains(small(i).0), "block {i} kept");
    }
    let on_disk: u64 = std::fs::read_dir(t.dir()).expect("dir").flatten().map(|f| f.metadata().expect("meta").len()).sum();
    assert_eq!(on_disk, s.bytes);
    // A smaller bound at the next start shrinks at once.
    drop(t);
    let t = DiskTier::open(&DiskConfig { dir: dir.clone(), max_bytes: 2 * one }, model, GEO).expect("reopen");
    assert_eq!(t.stats().files, 2);
    assert!(t.contains(small(0).0) && t.contains(small(4).0), "the two most recently used stay");
    drop(t);
    let _ = std::fs::remove_dir_all(&dir);
}
