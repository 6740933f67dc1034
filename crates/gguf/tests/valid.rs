//! Hand-made valid files: every metadata type (arrays, nested arrays), both versions,
//! custom alignment, and the typed getters with their errors.

mod common;

use common::*;
use gguf::{Array, Error, GgmlType, GgufFile, GgufWriter, Value};

fn every_value() -> Vec<(String, Value)> {
    let scalars = vec![
        Value::U8(200),
        Value::I8(-100),
        Value::U16(60_000),
        Value::I16(-30_000),
        Value::U32(4_000_000_000),
        Value::I32(-2_000_000_000),
        Value::F32(-1.5e-5),
        Value::Bool(true),
        Value::Bool(false),
        Value::String("héllo, 세계".into()),
        Value::String(String::new()),
        Value::U64(u64::MAX),
        Value::I64(i64::MIN),
        Value::F64(std::f64::consts::PI),
    ];
    let arrays = vec![
        Array::U8(vec![0, 1, 255]),
        Array::I8(vec![-128, 0, 127]),
        Array::U16(vec![1, 65535]),
        Array::I16(vec![-1, 32767]),
        Array::U32(vec![7; 5]),
        Array::I32(vec![-7, 7]),
        Array::F32(vec![0.5, -0.25, f32::INFINITY]),
        Array::Bool(vec![true, false, true]),
        Array::String(vec!["a".into(), String::new(), "ü".into()]),
        Array::U64(vec![u64::MAX, 0]),
        Array::I64(vec![i64::MIN, i64::MAX]),
        Array::F64(vec![1e300, -1e-300]),
        Array::U8(vec![]),
        Array::String(vec![]),
        // Nested: an array of arrays of different element types, and a two-level nest.
        Array::Array(vec![Array::U8(vec![1, 2]), Array::String(vec!["x".into()]), Array::F32(vec![])]),
        Array::Array(vec![Array::Array(vec![Array::I32(vec![1, 2, 3])]), Array::Array(vec![])]),
        Array::Array(vec![]),
    ];
    let mut kv: Vec<(String, Value)> =
        scalars.into_iter().enumerate().map(|(i, v)| (format!("s.{i}.{}", v.type_name()), v)).collect();
    kv.extend(arrays.into_iter().enumerate().map(|(i, a)| (format!("a.{i}.{}", a.type_name()), Value::Array(a))));
    kv
}

#[test]
fn every_metadata_type_round_trips_in_v2_and_v3() {
    for version in [2, 3] {
        let kv = every_value();
        let mut w = GgufWriter::new();
        w.version(version);
        for (k, v) in &kv {
            w.add(k, v.clone());
        }
        let f = GgufFile::from_bytes(w.to_bytes()).expect("valid file");
        assert_eq!(f.version(), version);
        assert_eq!(f.metadata(), &kv[..], "metadata in file order, v{version}");
        assert!(f.tensors().is_empty());
        for (k, v) in &kv {
            assert_eq!(f.get(k), Some(v), "{k}");
        }
    }
}

#[test]
fn typed_getters_widen_and_name_wrong_types() {
    let mut w = GgufWriter::new();
    w.add("u8", Value::U8(9))
        .add("i64", Value::I64(-1))
        .add("big", Value::U64(1 << 40))
        .add("f", Value::F32(0.25))
        .add("s", Value::String("llama".into()))
        .add("b", Value::Bool(true))
        .add("toks", Value::Array(Array::String(vec!["a".into(), "b".into()])))
        .add("scores", Value::Array(Array::F32(vec![1.0, 2.0])))
        .add("types", Value::Array(Array::U8(vec![1, 3])))
        .add("heads", Value::Array(Array::U64(vec![u64::MAX])));
    let f = GgufFile::from_bytes(w.to_bytes()).expect("valid");

    assert_eq!(f.get_u32("u8").expect("u8"), 9);
    assert_eq!(f.get_u64("big").expect("big"), 1 << 40);
    assert_eq!(f.get_f32("u8").expect("int as f32"), 9.0);
    assert_eq!(f.get_f32("f").expect("f"), 0.25);
    assert_eq!(f.get_str("s").expect("s"), "llama");
    assert!(f.get_bool("b").expect("b"));
    assert_eq!(f.get_str_array("toks").expect("toks"), ["a", "b"]);
    assert_eq!(f.get_f32_array("scores").expect("scores"), [1.0, 2.0]);
    assert_eq!(f.get_int_array("types").expect("types"), vec![1, 3]);
    assert_eq!(f.opt_u32("absent").expect("absent is fine"), None);
    assert_eq!(f.opt_str("s").expect("present"), Some("llama"));

    let e = f.get_u32("i64").expect_err("negative is not u32");
    assert!(matches!(&e, Error::WrongType { key, expected: "u32", found: "i64" } if key == "i64"), "{e:?}");
    assert!(e.to_string().contains("`i64` has type i64, expected u32"), "{e}");
    let e = f.get_u32("big").expect_err("too big for u32");
    assert!(matches!(e, Error::WrongType { .. }));
    let e = f.get_str("u8").expect_err("not a string");
    assert!(e.to_string().contains("`u8` has type u8, expected string"), "{e}");
    let e = f.get_str_array("scores").expect_err("f32 array");
    assert!(e.to_string().contains("expected array of string"), "{e}");
    let e = f.get_int_array("heads").expect_err("u64::MAX does not fit i64");
    assert!(matches!(e, Error::WrongType { .. }));
    let e = f.get_u32("llama.block_count").expect_err("missing");
    assert!(matches!(&e, Error::MissingKey(k) if k == "llama.block_count"));
    assert!(e.to_string().contains("`llama.block_count` is missing"));
    let e = f.opt_bool("s").expect_err("present but wrong type");
    assert!(matches!(e, Error::WrongType { .. }));
    let e = f.require_tensor("output.weight").expect_err("no tensors");
    assert!(matches!(&e, Error::MissingTensor(n) if n == "output.weight"));
    assert!(e.to_string().contains("`output.weight`"));
}

#[test]
fn tensors_round_trip_with_their_data_in_v2_and_v3() {
    for version in [2, 3] {
        let f = GgufFile::from_bytes(small_valid(version)).expect("valid");
        assert_eq!(f.version(), version);
        assert_eq!(f.alignment(), 32);
        assert_eq!(f.data_offset() % 32, 0);
        assert_eq!(f.tensors().len(), 3);
        let t = f.require_tensor("token_embd.weight").expect("present");
        assert_eq!((t.dims.as_slice(), t.ggml_type, t.n_bytes), (&[4u64, 3][..], GgmlType::F32, 48));
        assert_eq!((t.row_len(), t.n_rows(), t.n_elements()), (4, 3, 12));
        assert_eq!(f.tensor_data(t), (0..48).collect::<Vec<u8>>());
        let q = f.require_tensor("blk.0.attn_q.weight").expect("present");
        // Two rows of one Q4_0 block (18 bytes) each.
        assert_eq!((q.ggml_type, q.n_bytes), (GgmlType::Q4_0, 36));
        assert!(f.tensor_data(q).iter().all(|&b| b == 7));
        let h = f.require_tensor("output_norm.weight").expect("present");
        assert_eq!((h.ggml_type, h.n_bytes), (GgmlType::F16, 8));
        for t in f.tensors() {
            assert_eq!(t.offset % 32, 0, "{}", t.name);
            assert!(t.offset + t.n_bytes <= f.bytes().len() as u64);
        }
        assert_eq!(f.get_str_array("tokenizer.ggml.tokens").expect("tokens"), ["<s>", "a", "b"]);
    }
}

#[test]
fn general_alignment_64_is_honoured() {
    let mut w = GgufWriter::new();
    w.alignment(64);
    w.add("general.architecture", Value::String("llama".into()));
    w.add_tensor("a", &[3], GgmlType::F32, vec![1; 12]);
    w.add_tensor("b", &[32], GgmlType::Q8_0, vec![2; 34]);
    w.add_tensor("c", &[256], GgmlType::Q4_K, vec![3; 144]);
    let f = GgufFile::from_bytes(w.to_bytes()).expect("valid");
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.get_u32("general.alignment").expect("present"), 64);
    assert_eq!(f.data_offset() % 64, 0);
    for (name, byte, n) in [("a", 1u8, 12u64), ("b", 2, 34), ("c", 3, 144)] {
        let t = f.require_tensor(name).expect("present");
        assert_eq!(t.offset % 64, 0, "{name}");
        assert_eq!(t.n_bytes, n, "{name}");
        assert!(f.tensor_data(t).iter().all(|&x| x == byte), "{name}");
    }
    // The three tensors sit at relative offsets 0, 64, 128.
    let rel: Vec<u64> = f.tensors().iter().map(|t| t.offset - f.data_offset()).collect();
    assert_eq!(rel, [0, 64, 128]);
}

#[test]
fn empty_file_and_zero_sized_tensors_parse() {
    let f = GgufFile::from_bytes(GgufWriter::new().to_bytes()).expect("header only");
    assert!(f.metadata().is_empty() && f.tensors().is_empty());

    let mut w = GgufWriter::new();
    w.add_tensor("empty", &[0, 5], GgmlType::F32, vec![]);
    let f = GgufFile::from_bytes(w.to_bytes()).expect("zero-sized tensor");
    let t = f.require_tensor("empty").expect("present");
    assert_eq!((t.n_elements(), t.n_bytes), (0, 0));
    assert!(f.tensor_data(t).is_empty());
}

#[test]
fn open_reads_a_file_from_disk_and_names_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("gguf-valid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("small.gguf");
    std::fs::write(&path, small_valid(3)).expect("write");
    let f = GgufFile::open(&path).expect("opens");
    assert_eq!(f.tensors().len(), 3);
    drop(f);
    let missing = dir.join("missing.gguf");
    let e = GgufFile::open(&missing).expect_err("missing file");
    assert!(matches!(&e, Error::Io { path, .. } if path == &missing), "{e:?}");
    assert!(e.to_string().contains("missing.gguf"), "{e}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// The issue-14 weight types parse with ggml's geometry (ggml.h / ggml-common.h): codes 10, 11,
/// 20, 23, 39; q2_K 84, q3_K 110 and iq4_xs 136 bytes per 256 elements, iq4_nl 18 and mxfp4 17
/// bytes per 32; a row that is not a whole number of blocks is refused.
#[test]
fn low_bit_and_mxfp4_tensors_have_ggml_sizes() {
    for (ty, code, block, size) in [
        (GgmlType::Q2_K, 10u32, 256usize, 84usize),
        (GgmlType::Q3_K, 11, 256, 110),
        (GgmlType::IQ4_NL, 20, 32, 18),
        (GgmlType::IQ4_XS, 23, 256, 136),
        (GgmlType::MXFP4, 39, 32, 17),
    ] {
        assert_eq!(GgmlType::from_code(code).expect("known code"), ty);
        assert_eq!((ty.code(), ty.block_size(), ty.type_size()), (code, block, size), "{ty}");
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("llama".into()));
        w.add_tensor("t", &[block as u64 * 2, 3], ty, vec![7; size * 6]);
        let f = GgufFile::from_bytes(w.to_bytes()).expect("valid");
        let t = f.require_tensor("t").expect("present");
        assert_eq!((t.ggml_type, t.n_bytes), (ty, size as u64 * 6), "{ty}");
        let mut w = GgufWriter::new();
        w.add_tensor("t", &[block as u64 + 1], ty, vec![0; size * 2]);
        assert!(GgufFile::from_bytes(w.to_bytes()).is_err(), "{ty}: partial block accepted");
    }
    assert_eq!(GgmlType::MXFP4.name(), "mxfp4");
}
