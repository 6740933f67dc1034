//! The real SmolLM2-135M-Instruct Q4_1 file: its header as llama.cpp reads it, and truncated
//! copies of it, which must all be errors (never panics).

mod common;

use std::collections::HashMap;

use common::*;
use gguf::{Error, GgmlType, GgufFile};

#[test]
fn smollm2_header_matches_llama_cpp() {
    let path = smollm2_path();
    let f = GgufFile::open(&path).expect("the real model parses");
    let len = std::fs::metadata(&path).expect("stat").len();
    assert_eq!(len, 98_362_432, "the pinned SmolLM2 file");
    assert_eq!(f.version(), 3);
    assert_eq!(f.get_str("general.architecture").expect("arch"), "llama");
    assert_eq!(f.get_u32("llama.block_count").expect("layers"), 30);
    assert_eq!(f.get_u32("llama.context_length").expect("ctx"), 8192);
    assert_eq!(f.get_u32("llama.embedding_length").expect("n_embd"), 576);
    assert_eq!(f.get_u32("llama.attention.head_count_kv").expect("kv heads"), 3);
    assert_eq!(f.get_f32("llama.rope.freq_base").expect("rope"), 100_000.0);
    assert_eq!(f.get_str("tokenizer.ggml.model").expect("tok model"), "gpt2");
    assert_eq!(f.get_str("tokenizer.ggml.pre").expect("pre"), "smollm");
    let tokens = f.get_str_array("tokenizer.ggml.tokens").expect("tokens");
    assert_eq!(tokens.len(), 49152);
    assert_eq!(tokens[1], "<|im_start|>");
    assert_eq!(tokens[2], "<|im_end|>");
    assert_eq!(f.get_int_array("tokenizer.ggml.token_type").expect("types").len(), 49152);
    assert_eq!(f.get_str_array("tokenizer.ggml.merges").expect("merges").len(), 48900);
    assert_eq!(f.get_u32("tokenizer.ggml.bos_token_id").expect("bos"), 1);
    assert_eq!(f.get_u32("tokenizer.ggml.eos_token_id").expect("eos"), 2);
    assert!(!f.get_bool("tokenizer.ggml.add_bos_token").expect("add_bos"));
    assert!(f.get_str("tokenizer.chat_template").expect("template").contains("<|im_start|>"));

    let tensors = f.tensors();
    assert_eq!(tensors.len(), 272);
    let mut by_type: HashMap<GgmlType, usize> = HashMap::new();
    for t in tensors {
        *by_type.entry(t.ggml_type).or_default() += 1;
        assert!(t.offset >= f.data_offset() && t.offset + t.n_bytes <= len, "{} outside the file", t.name);
        assert_eq!(t.offset % f.alignment(), 0, "{}", t.name);
    }
    assert_eq!(by_type[&GgmlType::Q4_1], 210);
    assert_eq!(by_type[&GgmlType::F32], 61);
    assert_eq!(by_type[&GgmlType::Q8_0], 1);
    assert!(f.tensor("output.weight").is_none(), "tied embeddings");

    let first = &tensors[0];
    assert_eq!(first.name, "token_embd.weight");
    assert_eq!(first.dims, [576, 49152]);
    assert_eq!(first.offset, f.data_offset());
    assert_eq!(first.n_bytes, 49152 * 576 / 32 * 34);
    let last = tensors.iter().max_by_key(|t| t.offset).expect("non-empty");
    assert!(last.offset + last.n_bytes <= len);
    assert!(len - (last.offset + last.n_bytes) < 32, "the last tensor ends the file (up to padding)");
    let q = f.require_tensor("blk.0.attn_q.weight").expect("q");
    assert_eq!((q.dims.as_slice(), q.ggml_type), (&[576u64, 576][..], GgmlType::Q4_1));
    assert_eq!(f.tensor_data(q).len(), 576 * 576 / 32 * 20);
}

#[test]
fn truncated_copies_of_smollm2_are_errors() {
    let path = smollm2_path();
    let full = std::fs::read(&path).expect("read the model");
    let data_offset = GgufFile::from_bytes(full.clone()).expect("parses").data_offset() as usize;
    let mut cuts: Vec<usize> = vec![0, 3, 4, 7, 8, 15, 23, 24, 25, 40, 100, 1000, 10_000, 100_000, 700_000, 1_500_000];
    cuts.extend([data_offset - 1, data_offset, data_offset + 1, data_offset + 30_081_023]);
    cuts.extend([full.len() / 2, full.len() - 1000, full.len() - 1]);
    for n in cuts {
        let e = GgufFile::from_bytes(full[..n].to_vec()).expect_err("a truncated copy must not parse");
        match &e {
            Error::BadMagic(_) => assert!(n < 4, "{n}: {e}"),
            Error::Truncated { len, .. } => assert_eq!(*len, n as u64, "{n}: {e}"),
            Error::Corrupt(m) => assert!(m.contains("bytes left in the file"), "{n}: {m}"),
            other => panic!("cut at {n}: unexpected {other:?}"),
        }
        // Cuts in the data section name the first tensor that no longer fits.
        if n >= data_offset {
            assert!(e.to_string().contains("tensor `"), "{n}: {e}");
        }
    }
}

#[test]
fn a_truncated_file_on_disk_is_an_error_from_open() {
    let path = smollm2_path();
    let full = std::fs::read(&path).expect("read the model");
    let dir = std::env::temp_dir().join(format!("gguf-real-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &full[..full.len() - 4096]).expect("write");
    let e = GgufFile::open(&cut).expect_err("truncated");
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    assert!(e.to_string().contains("blk."), "{e}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
