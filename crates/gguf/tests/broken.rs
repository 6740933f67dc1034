//! Hand-made broken GGUF files: each must be a specific error variant whose message names the
//! problem, never a panic.

mod common;

use common::*;
use gguf::{Array, Error, GgmlType, GgufFile, GgufWriter, Value};

fn parse_err(bytes: Vec<u8>) -> Error {
    match GgufFile::from_bytes(bytes) {
        Ok(f) => panic!("a broken file parsed: {f:?}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_names(e: &Error, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} should mention {p:?}");
    }
}

#[test]
fn bad_magic_is_named() {
    let mut b = small_valid(3);
    b[..4].copy_from_slice(b"GGML");
    let e = parse_err(b);
    assert!(matches!(e, Error::BadMagic(m) if &m == b"GGML"), "{e:?}");
    assert_names(&e, &["not a GGUF file", "bad magic"]);

    // Files shorter than the magic itself.
    for len in 0..4 {
        let e = parse_err(b"GGUF"[..len].to_vec());
        assert!(matches!(e, Error::BadMagic(_)), "len {len}: {e:?}");
    }
}

#[test]
fn unsupported_versions_are_named() {
    for v in [0u32, 1, 4, 0x0300_0000 /* a big-endian v3 file read as little-endian */] {
        let mut b = small_valid(3);
        put_u32(&mut b, 4, v);
        let e = parse_err(b);
        assert!(matches!(e, Error::UnsupportedVersion(x) if x == v), "{e:?}");
        assert_names(&e, &["unsupported GGUF version", &v.to_string()]);
    }
}

#[test]
fn every_truncation_of_a_valid_file_is_an_error() {
    for version in [2, 3] {
        let full = small_valid(version);
        assert!(GgufFile::from_bytes(full.clone()).is_ok());
        for len in 0..full.len() {
            let e = parse_err(full[..len].to_vec());
            match &e {
                Error::BadMagic(_) => assert!(len < 4),
                Error::Truncated { len: l, .. } => {
                    assert_eq!(*l, len as u64);
                    assert_names(&e, &["truncated GGUF file"]);
                }
                // A length or count read intact but pointing past the cut end.
                Error::Corrupt(m) => assert!(m.contains("bytes left in the file"), "len {len}: {m}"),
                other => panic!("len {len}: unexpected {other:?}"),
            }
        }
    }
}

#[test]
fn truncation_in_a_fixed_field_names_the_field() {
    // Cut inside the metadata count (bytes 16..24) of a file without tensors (with tensors,
    // the intact tensor count already claims more than the 4 bytes left).
    let mut w = GgufWriter::new();
    w.add("x", Value::U8(1));
    let e = parse_err(w.to_bytes()[..20].to_vec());
    assert!(matches!(e, Error::Truncated { offset: 16, needed: 8, len: 20, .. }), "{e:?}");
    assert_names(&e, &["metadata count", "offset 16"]);
    let mut w = GgufWriter::new();
    w.add("llama.block_count", Value::U32(30));
    let full = w.to_bytes();
    // Cut inside the value of `llama.block_count` (a u32).
    let at = find(&full, b"llama.block_count") + "llama.block_count".len() + 4;
    let e = parse_err(full[..at + 2].to_vec());
    assert!(matches!(e, Error::Truncated { needed: 4, .. }), "{e:?}");
    assert_names(&e, &["llama.block_count"]);
}

#[test]
fn tensor_data_cut_off_is_truncated_and_names_the_tensor() {
    let full = small_valid(3);
    // The last tensor's 8 bytes end the file: drop 3 of them.
    let e = parse_err(full[..full.len() - 3].to_vec());
    assert!(matches!(e, Error::Truncated { needed: 8, .. }), "{e:?}");
    assert_names(&e, &["tensor `output_norm.weight` data"]);

    // A file that ends inside the alignment padding before the data section.
    let mut w = GgufWriter::new();
    w.add_tensor("t", &[4], GgmlType::F32, vec![0; 16]);
    let b = w.to_bytes();
    let header_end = tensor_fields(&b, "t").offset + 8;
    assert!(!header_end.is_multiple_of(32), "the test needs padding after the header");
    let e = parse_err(b[..header_end].to_vec());
    let data_at = header_end.div_ceil(32) as u64;
    assert!(
        matches!(e, Error::Truncated { offset, needed, .. } if offset == header_end as u64 && needed == data_at * 32 - offset),
        "{e:?}"
    );
    assert_names(&e, &["padding before the tensor data section"]);
}

#[test]
fn absurd_counts_are_rejected_before_allocating() {
    // Tensor count (bytes 8..16) and metadata count (16..24).
    for (at, what) in [(8, "tensor count"), (16, "metadata count")] {
        for n in [u64::MAX, 1 << 40, 1_000_000] {
            let mut b = small_valid(3);
            put_u64(&mut b, at, n);
            let e = parse_err(b);
            assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
            assert_names(&e, &[what, &n.to_string(), "bytes left"]);
        }
    }
    // An array length: `tokenizer.ggml.scores` is [type u32][count u64][...].
    let mut b = small_valid(3);
    let at = find(&b, b"tokenizer.ggml.scores") + "tokenizer.ggml.scores".len() + 4 + 4;
    put_u64(&mut b, at, u64::MAX / 2);
    let e = parse_err(b);
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_names(&e, &["tokenizer.ggml.scores", "bytes left"]);
}

#[test]
fn absurd_string_lengths_are_rejected() {
    // The first key's length prefix sits at byte 24.
    let mut b = small_valid(3);
    put_u64(&mut b, 24, u64::MAX);
    let e = parse_err(b);
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_names(&e, &["metadata key #0", "offset 24", "bytes left"]);

    // A string value: `general.architecture` = "llama".
    let mut b = small_valid(3);
    let at = find(&b, b"general.architecture") + "general.architecture".len() + 4;
    put_u64(&mut b, at, 1 << 50);
    let e = parse_err(b);
    assert_names(&e, &["general.architecture", "bytes left"]);

    // A string inside an array.
    let mut b = small_valid(3);
    let at = find(&b, b"<s>") - 8;
    put_u64(&mut b, at, 1 << 33);
    let e = parse_err(b);
    assert_names(&e, &["tokenizer.ggml.tokens", "bytes left"]);

    // A tensor name.
    let mut b = small_valid(3);
    let at = find(&b, b"output_norm.weight") - 8;
    put_u64(&mut b, at, u64::MAX - 7);
    let e = parse_err(b);
    assert_names(&e, &["tensor #2 name", "bytes left"]);
}

#[test]
fn tensor_outside_the_file_is_named() {
    let mut b = small_valid(3);
    let f = tensor_fields(&b, "blk.0.attn_q.weight");
    put_u64(&mut b, f.offset, 1 << 20);
    let e = parse_err(b);
    assert!(matches!(e, Error::Truncated { needed: 36, .. }), "{e:?}");
    assert_names(&e, &["tensor `blk.0.attn_q.weight` data"]);

    // An offset so large that data_offset + offset overflows u64.
    let mut b = small_valid(3);
    let f = tensor_fields(&b, "token_embd.weight");
    put_u64(&mut b, f.offset, !31u64);
    let e = parse_err(b);
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_names(&e, &["token_embd.weight", "offset overflows"]);
}

#[test]
fn unknown_ggml_types_are_named() {
    // 4 and 5 are the removed Q4_2/Q4_3; 31-33 are gaps; 99 is nonsense.
    for code in [4u32, 5, 31, 99, u32::MAX] {
        let mut b = small_valid(3);
        let f = tensor_fields(&b, "output_norm.weight");
        put_u32(&mut b, f.ty, code);
        let e = parse_err(b);
        assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
        assert_names(&e, &["output_norm.weight", "unknown ggml type code", &code.to_string()]);
    }
    // The type parser on its own reports the dedicated variant.
    assert!(matches!(GgmlType::from_code(99), Err(Error::UnknownType(99))));
}

#[test]
fn overflowing_shapes_are_named() {
    let mut w = GgufWriter::new();
    w.add_tensor("huge", &[1 << 32, 1 << 32, 1 << 32], GgmlType::F32, vec![0; 4]);
    let e = parse_err(w.to_bytes());
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_names(&e, &["huge", "overflows"]);

    // Element count fits but the byte size does not fit the file.
    let mut w = GgufWriter::new();
    w.add_tensor("big", &[1 << 20, 1 << 20], GgmlType::F32, vec![0; 4]);
    let e = parse_err(w.to_bytes());
    assert!(matches!(e, Error::Truncated { needed, .. } if needed == 4 << 40), "{e:?}");
    assert_names(&e, &["big"]);
}

#[test]
fn bad_dimension_counts_are_named() {
    for nd in [0u32, 5, u32::MAX] {
        let mut b = small_valid(3);
        let f = tensor_fields(&b, "output_norm.weight");
        put_u32(&mut b, f.n_dims, nd);
        let e = parse_err(b);
        assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
        assert_names(&e, &["output_norm.weight", "dimensions"]);
    }
}

#[test]
fn row_not_a_multiple_of_the_block_size_is_named() {
    let mut w = GgufWriter::new();
    w.add_tensor("w", &[33, 2], GgmlType::Q4_0, vec![0; 72]);
    let e = parse_err(w.to_bytes());
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_names(&e, &["`w`", "row length 33", "q4_0", "block size 32"]);

    let mut w = GgufWriter::new();
    w.add_tensor("k", &[200], GgmlType::Q4_K, vec![0; 144]);
    let e = parse_err(w.to_bytes());
    assert_names(&e, &["row length 200", "q4_K", "block size 256"]);
}

#[test]
fn misaligned_tensor_offsets_are_named() {
    let mut b = small_valid(3);
    let f = tensor_fields(&b, "blk.0.attn_q.weight");
    let rel = u64::from_le_bytes(b[f.offset..f.offset + 8].try_into().expect("8"));
    put_u64(&mut b, f.offset, rel + 4);
    let e = parse_err(b);
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_names(&e, &["blk.0.attn_q.weight", "not a multiple of the alignment 32"]);

    // With alignment 64, an offset that is 32-aligned but not 64-aligned.
    let mut w = GgufWriter::new();
    w.alignment(64);
    w.add_tensor("a", &[8], GgmlType::F32, vec![0; 32]);
    w.add_tensor("b", &[8], GgmlType::F32, vec![0; 32]);
    let mut b = w.to_bytes();
    let f = tensor_fields(&b, "b");
    assert_eq!(u64::from_le_bytes(b[f.offset..f.offset + 8].try_into().expect("8")), 64);
    put_u64(&mut b, f.offset, 32);
    let e = parse_err(b);
    assert_names(&e, &["`b`", "offset 32", "alignment 64"]);
}

#[test]
fn bad_alignment_values_are_named() {
    for a in [0u64, 3, 48, 1 << 21] {
        let mut w = GgufWriter::new();
        w.add("general.alignment", Value::U64(a));
        let e = parse_err(w.to_bytes());
        assert!(matches!(e, Error::Corrupt(_)), "{a}: {e:?}");
        assert_names(&e, &["general.alignment", "power of two"]);
    }
    for v in [Value::String("32".into()), Value::F32(32.0), Value::I32(-32)] {
        let mut w = GgufWriter::new();
        w.add("general.alignment", v);
        let e = parse_err(w.to_bytes());
        assert_names(&e, &["general.alignment"]);
    }
}

#[test]
fn duplicate_keys_and_tensor_names_are_named() {
    let mut w = GgufWriter::new();
    w.add("a.b", Value::U8(1)).add("c", Value::U8(2)).add("a.b", Value::U8(3));
    let e = parse_err(w.to_bytes());
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_names(&e, &["duplicate metadata key `a.b`"]);

    let mut w = GgufWriter::new();
    w.add_tensor("t", &[4], GgmlType::F32, vec![0; 16]);
    w.add_tensor("t", &[4], GgmlType::F32, vec![0; 16]);
    let e = parse_err(w.to_bytes());
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_names(&e, &["duplicate tensor name `t`"]);
}

#[test]
fn non_utf8_strings_are_named() {
    // Build with a marker, then replace its first byte with a byte that is never valid UTF-8.
    type Case<'a> = (&'a str, fn(&mut GgufWriter), &'a [&'a str]);
    let cases: [Case; 4] = [
        ("key", |w| { w.add("k@@BAD@@ey", Value::U8(0)); }, &["metadata key #0", "UTF-8"]),
        ("value", |w| { w.add("name", Value::String("v@@BAD@@al".into())); }, &["name at offset", "UTF-8"]),
        ("array element", |w| {
            w.add("toks", Value::Array(Array::String(vec!["ok".into(), "b@@BAD@@ad".into()])));
        }, &["toks", "UTF-8"]),
        ("tensor name", |w| { w.add_tensor("t@@BAD@@x", &[1], GgmlType::F32, vec![0; 4]); }, &["tensor #0 name", "not valid UTF-8"]),
    ];
    for (what, build, parts) in cases {
        let mut w = GgufWriter::new();
        build(&mut w);
        let mut b = w.to_bytes();
        let at = find(&b, b"@@BAD@@");
        b[at] = 0xff;
        let e = parse_err(b);
        assert!(matches!(e, Error::Corrupt(_)), "{what}: {e:?}");
        assert_names(&e, parts);
    }
}

#[test]
fn unknown_value_types_and_bad_bools_are_named() {
    let mut b = small_valid(3);
    let at = find(&b, b"llama.block_count") + "llama.block_count".len();
    put_u32(&mut b, at, 13);
    let e = parse_err(b);
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_names(&e, &["unknown metadata value type 13", "llama.block_count"]);

    // Element type of an array.
    let mut b = small_valid(3);
    let at = find(&b, b"tokenizer.ggml.scores") + "tokenizer.ggml.scores".len() + 4;
    put_u32(&mut b, at, 77);
    let e = parse_err(b);
    assert_names(&e, &["unknown metadata value type 77", "tokenizer.ggml.scores"]);

    let mut b = small_valid(3);
    let at = find(&b, b"flag") + 4 + 4;
    b[at] = 2;
    let e = parse_err(b);
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_names(&e, &["flag", "bool", "value 2"]);
}

#[test]
fn arrays_nested_too_deep_are_rejected() {
    let mut a = Array::U8(vec![1]);
    for _ in 0..8 {
        a = Array::Array(vec![a]);
    }
    let mut w = GgufWriter::new();
    w.add("deep", Value::Array(a));
    let e = parse_err(w.to_bytes());
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_names(&e, &["deep", "nested deeper"]);
}
