//! Property test ("fuzz target") over mutated GGUF files: byte flips, overwritten length and
//! count fields, truncation and splicing of valid files (small hand-made ones and the header
//! region of the real SmolLM2 model). Parsing must never panic, every tensor of a file that
//! parses must lie inside it, and the parse must never allocate much more than the file:
//! peak live heap during the parse < 4 x file size + 1 MiB, measured by a counting global
//! allocator installed in this test binary.
//!
//! Bounded for CI by `PROPTEST_CASES` (default 2000 for the small files; the real-header
//! property runs an eighth of that, each case parses ~2 MB).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use gguf::{Array, GgmlType, GgufFile, GgufWriter, Value};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};

/// Counts live heap bytes per thread, so that tests running in parallel threads of this binary
/// do not see each other's allocations.
struct Counting;

thread_local! {
    // `const` initialisers without destructors: using them never allocates, as required
    // inside an allocator.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every call forwards to `System` with the caller's layout unchanged; the counters
// are thread-local `Cell`s that never allocate or unwind.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout (all our allocations do).
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Count a moving realloc's worst case: old and new blocks live at once.
            track(new_size as isize);
            track(-(layout.size() as isize));
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns the peak of live heap bytes above the level at the start.
fn peak_during(f: impl FnOnce()) -> usize {
    let start = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(start));
    f();
    (PEAK.with(|p| p.get()) - start).max(0) as usize
}

/// Parses `bytes` (moved in: the file image is already allocated, as a mapping would be) and
/// checks the properties; returns a description of the violation.
fn check(bytes: Vec<u8>) -> Result<(), String> {
    let len = bytes.len();
    let mut outcome = Ok(());
    let peak = peak_during(|| match GgufFile::from_bytes(bytes) {
        Ok(f) => {
            for t in f.tensors() {
                if t.offset.checked_add(t.n_bytes).is_none_or(|e| e > len as u64) {
                    outcome = Err(format!("tensor {} outside the file", t.name));
                }
                // Would panic if the bounds were wrong.
                let _ = f.tensor_data(t).len();
            }
        }
        Err(e) => {
            if e.to_string().is_empty() {
                outcome = Err("empty error message".into());
            }
        }
    });
    outcome?;
    let limit = 4 * len + (1 << 20);
    if peak >= limit {
        return Err(format!("parse of a {len}-byte file allocated {peak} bytes (limit {limit})"));
    }
    Ok(())
}

/// One edit of a file image.
#[derive(Clone, Debug)]
enum Mutation {
    /// Overwrite one byte.
    Byte(Index, u8),
    /// Overwrite one byte in the first 128 (magic, version, counts, first key).
    HeaderByte(Index, u8),
    /// Overwrite 8 bytes (a length, count, dim or offset field) with an interesting value.
    Word(Index, u64),
    /// Overwrite a length, count, dim or offset field (see [`fields`]) picked from a pool.
    Field(Pool, Index, FieldValue),
    /// Overwrite 4 bytes (a type code, n_dims, version) with an interesting value.
    Word32(Index, u32),
    /// Cut the file.
    Truncate(Index),
    /// Copy `len` bytes from one place to another (splicing the file into itself).
    Splice { from: Index, to: Index, len: usize },
    /// Insert bytes, shifting the rest.
    Insert(Index, Vec<u8>),
    /// Delete a range.
    Delete(Index, usize),
}

/// Which fields a [`Mutation::Field`] picks from.
#[derive(Clone, Copy, Debug)]
enum Pool {
    /// The tensor and metadata counts of the header.
    Counts,
    /// The first 256 fields: the counts, the keys, the big arrays' counts (the vocabulary).
    Head,
    /// Any field.
    All,
}

#[derive(Clone, Copy, Debug)]
enum FieldValue {
    Abs(u64),
    /// The bytes left after the field divided by this: a count or length that still passes
    /// a "fits in the rest of the file" check for small items, the hardest lie to refuse early.
    Fit(u8),
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![interesting_u64().prop_map(FieldValue::Abs), (1u8..=64).prop_map(FieldValue::Fit)]
}

fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX / 2),
        Just(1 << 32),
        (0u32..64).prop_map(|s| 1u64 << s),
        0u64..100_000,
        any::<u64>(),
    ]
}

fn interesting_u32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(u32::MAX), 0u32..40, any::<u32>()]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Byte(i, b)),
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::HeaderByte(i, b)),
        3 => (any::<Index>(), interesting_u64()).prop_map(|(i, v)| Mutation::Word(i, v)),
        1 => (any::<Index>(), field_value()).prop_map(|(i, v)| Mutation::Field(Pool::Counts, i, v)),
        2 => (any::<Index>(), field_value()).prop_map(|(i, v)| Mutation::Field(Pool::Head, i, v)),
        3 => (any::<Index>(), field_value()).prop_map(|(i, v)| Mutation::Field(Pool::All, i, v)),
        2 => (any::<Index>(), interesting_u32()).prop_map(|(i, v)| Mutation::Word32(i, v)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<Index>(), 1usize..64)
            .prop_map(|(from, to, len)| Mutation::Splice { from, to, len }),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => (any::<Index>(), 1usize..32).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

/// Offsets of every 8-byte length, count, dim and offset field of a parsed file (v2/v3
/// layout), in file order: mutating these is what reaches the count and bounds checks, which a
/// random position in a 2 MB file of mostly string bytes would rarely hit.
fn fields(f: &GgufFile) -> Vec<usize> {
    fn array(a: &Array, pos: &mut usize, out: &mut Vec<usize>) {
        *pos += 4; // element type
        out.push(*pos);
        *pos += 8;
        let fixed = |n: usize, size: usize, pos: &mut usize| *pos += n * size;
        match a {
            Array::U8(v) => fixed(v.len(), 1, pos),
            Array::I8(v) => fixed(v.len(), 1, pos),
            Array::Bool(v) => fixed(v.len(), 1, pos),
            Array::U16(v) => fixed(v.len(), 2, pos),
            Array::I16(v) => fixed(v.len(), 2, pos),
            Array::U32(v) => fixed(v.len(), 4, pos),
            Array::I32(v) => fixed(v.len(), 4, pos),
            Array::F32(v) => fixed(v.len(), 4, pos),
            Array::U64(v) => fixed(v.len(), 8, pos),
            Array::I64(v) => fixed(v.len(), 8, pos),
            Array::F64(v) => fixed(v.len(), 8, pos),
            Array::String(v) => {
                for s in v {
                    out.push(*pos);
                    *pos += 8 + s.len();
                }
            }
            Array::Array(v) => v.iter().for_each(|a| array(a, pos, out)),
        }
    }
    let mut out = vec![8, 16];
    let mut pos = 24;
    for (key, value) in f.metadata() {
        out.push(pos);
        pos += 8 + key.len() + 4;
        match value {
            Value::String(s) => {
                out.push(pos);
                pos += 8 + s.len();
            }
            Value::Array(a) => array(a, &mut pos, &mut out),
            Value::U8(_) | Value::I8(_) | Value::Bool(_) => pos += 1,
            Value::U16(_) | Value::I16(_) => pos += 2,
            Value::U32(_) | Value::I32(_) | Value::F32(_) => pos += 4,
            Value::U64(_) | Value::I64(_) | Value::F64(_) => pos += 8,
        }
    }
    for t in f.tensors() {
        out.push(pos);
        pos += 8 + t.name.len() + 4;
        for _ in &t.dims {
            out.push(pos);
            pos += 8;
        }
        pos += 4; // type
        out.push(pos);
        pos += 8;
    }
    // The walk must end where the data section starts (up to alignment padding).
    assert_eq!(pos.div_ceil(f.alignment() as usize) * f.alignment() as usize, f.data_offset() as usize);
    out
}

fn apply(mut b: Vec<u8>, fields: &[usize], muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if b.is_empty() {
            break;
        }
        let n = b.len();
        match m {
            Mutation::Byte(i, v) => b[i.index(n)] = *v,
            Mutation::HeaderByte(i, v) => b[i.index(n.min(128))] = *v,
            Mutation::Word(i, v) => {
                let at = i.index(n);
                let end = (at + 8).min(n);
                b[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            }
            Mutation::Field(pool, i, v) => {
                let pool = match pool {
                    Pool::Counts => &fields[..fields.len().min(2)],
                    Pool::Head => &fields[..fields.len().min(256)],
                    Pool::All => fields,
                };
                // Offsets refer to the unedited file; skip when earlier edits shortened it.
                let at = pool[i.index(pool.len())];
                if at + 8 <= n {
                    let v = match *v {
                        FieldValue::Abs(v) => v,
                        FieldValue::Fit(k) => ((n - at - 8) / k as usize) as u64,
                    };
                    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            Mutation::Word32(i, v) => {
                let at = i.index(n);
                let end = (at + 4).min(n);
                b[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            }
            Mutation::Truncate(i) => b.truncate(i.index(n)),
            Mutation::Splice { from, to, len } => {
                let (from, to) = (from.index(n), to.index(n));
                let len = (*len).min(n - from).min(n - to);
                b.copy_within(from..from + len, to);
            }
            Mutation::Insert(i, v) => {
                let at = i.index(n + 1);
                b.splice(at..at, v.iter().copied());
            }
            Mutation::Delete(i, k) => {
                let at = i.index(n);
                b.drain(at..(at + k).min(n));
            }
        }
    }
    b
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(2000)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

/// Small valid files covering every metadata type, nested arrays, alignment 64, v2 and v3.
fn seeds() -> Vec<Vec<u8>> {
    let mut rich = GgufWriter::new();
    rich.alignment(64);
    rich.add("general.architecture", Value::String("llama".into()))
        .add("u8", Value::U8(1))
        .add("i16", Value::I16(-2))
        .add("u64", Value::U64(3))
        .add("f64", Value::F64(0.5))
        .add("nested", Value::Array(Array::Array(vec![Array::U16(vec![1, 2]), Array::Bool(vec![true])])))
        .add("strs", Value::Array(Array::String(vec!["x".into(), "yy".into()])));
    rich.add_tensor("q", &[32, 2], GgmlType::Q8_0, vec![5; 68]);
    rich.add_tensor("k", &[256], GgmlType::Q6_K, vec![6; 210]);
    let mut v2 = GgufWriter::new();
    v2.version(2).add("a", Value::U32(7));
    v2.add_tensor("t", &[2, 2], GgmlType::F32, vec![0; 16]);
    vec![small_valid(3), small_valid(2), rich.to_bytes(), v2.to_bytes()]
}

#[test]
fn mutated_small_files_never_panic_or_overallocate() {
    let seeds = seeds();
    let seed_fields: Vec<Vec<usize>> =
        seeds.iter().map(|s| fields(&GgufFile::from_bytes(s.clone()).expect("valid seed"))).collect();
    for s in &seeds {
        check(s.clone()).expect("a seed must pass");
        assert!(GgufFile::from_bytes(s.clone()).is_ok(), "seeds are valid");
    }
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(), 1..6));
    runner(cases())
        .run(&strategy, |(seed, muts)| {
            let bytes = apply(seeds[seed].clone(), &seed_fields[seed], &muts);
            check(bytes).map_err(TestCaseError::fail)
        })
        .expect("property holds");
}

#[test]
fn mutated_smollm2_header_never_panics_or_overallocates() {
    let path = smollm2_path();
    // The metadata and tensor infos end at ~1.79 MB; 2 MiB also covers the start of the data.
    let mut header = std::fs::read(&path).expect("read the model");
    header.truncate(2 << 20);
    check(header.clone()).expect("the unmutated prefix");
    let header_fields = fields(&GgufFile::open(&path).expect("the real model parses"));
    assert!(header_fields.len() > 49152 + 48900, "every token and merge has a length field");
    let tokens_count = find(&header, b"tokenizer.ggml.tokens") + "tokenizer.ggml.tokens".len() + 8;
    assert!(header_fields[..256].contains(&tokens_count), "the vocabulary count is a head field");
    let strategy = prop::collection::vec(mutation(), 1..4);
    runner((cases() / 8).max(1))
        .run(&strategy, |muts| check(apply(header.clone(), &header_fields, &muts)).map_err(TestCaseError::fail))
        .expect("property holds");
}

/// The worst honest-looking lies: counts as large as the bytes left allow, at the places a
/// reader reserves memory for them (metadata count, tensor count, the vocabulary length).
#[test]
fn maximal_counts_do_not_overallocate() {
    let path = smollm2_path();
    let mut header = std::fs::read(&path).expect("read the model");
    header.truncate(2 << 20);
    let left = header.len() as u64 - 24;
    let toks = find(&header, b"tokenizer.ggml.tokens") + "tokenizer.ggml.tokens".len() + 4 + 4;
    let toks_left = header.len() as u64 - (toks as u64 + 8);
    for (at, n) in [
        (16, left / 13),
        (16, left / 26),
        (8, left / 24),
        (8, left / 48),
        (toks, toks_left / 8),
        (toks, toks_left / 16),
    ] {
        let mut b = header.clone();
        put_u64(&mut b, at, n);
        check(b).unwrap_or_else(|e| panic!("count {n} at {at}: {e}"));
    }
    // The same in a small file, where only a count of empty strings could fill it.
    let mut w = GgufWriter::new();
    w.add("toks", Value::Array(Array::String(vec![String::new(); 10_000])));
    let b = w.to_bytes();
    check(b.clone()).expect("honest empty strings");
    let mut nested = GgufWriter::new();
    nested.add("n", Value::Array(Array::Array(vec![Array::U8(vec![]); 10_000])));
    check(nested.to_bytes()).expect("honest empty nested arrays");
}
