//! Shared helpers for the gguf integration tests: the real model's location, a small valid
//! file to break, and byte-level editing of GGUF images.
#![allow(dead_code)]

use std::path::PathBuf;

use gguf::{Array, GgmlType, GgufWriter, Value};

/// The real SmolLM2 file, located as the house rules say; panics (fails the test) with the
/// command to run when it is absent, so a missing model is never a silent skip.
pub fn smollm2_path() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("DAEHWA_SMOLLM2_GGUF") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("DAEHWA_MODELS_DIR") {
        candidates.push(PathBuf::from(d).join("smollm2.gguf"));
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        candidates.push(PathBuf::from(d).join("daehwa/models/smollm2.gguf"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(h).join(".local/share/daehwa/models/smollm2.gguf"));
    }
    for c in &candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    panic!(
        "the real SmolLM2 model was not found (looked at {candidates:?}); \
         run `cargo run --release -- pull smollm2` or set DAEHWA_SMOLLM2_GGUF"
    );
}

/// A small but complete file: a few metadata types, an array, and three tensors of
/// different types, laid out by the writer with the default alignment.
pub fn small_valid(version: u32) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.version(version);
    w.add("general.architecture", Value::String("llama".into()));
    w.add("llama.block_count", Value::U32(2));
    w.add("llama.rope.freq_base", Value::F32(10000.0));
    w.add("tokenizer.ggml.tokens", Value::Array(Array::String(vec!["<s>".into(), "a".into(), "b".into()])));
    w.add("tokenizer.ggml.scores", Value::Array(Array::F32(vec![0.0, -1.0, -2.0])));
    w.add("flag", Value::Bool(true));
    w.add_tensor("token_embd.weight", &[4, 3], GgmlType::F32, (0..48).collect());
    w.add_tensor("blk.0.attn_q.weight", &[32, 2], GgmlType::Q4_0, vec![7u8; 36]);
    w.add_tensor("output_norm.weight", &[4], GgmlType::F16, vec![1u8; 8]);
    w.to_bytes()
}

/// Position of the first occurrence of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not found in the image", String::from_utf8_lossy(needle)))
}

/// Byte offset of a tensor info's fields, given its (unique) name in the image:
/// returns the offset of the `n_dims` field that follows the name.
pub fn tensor_info_at(bytes: &[u8], name: &str) -> usize {
    find(bytes, name.as_bytes()) + name.len()
}

pub fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Offsets of a tensor info's fields: (n_dims, dims[..], type, offset), from the name.
pub struct TensorFields {
    pub n_dims: usize,
    pub dims: usize,
    pub ty: usize,
    pub offset: usize,
}

pub fn tensor_fields(bytes: &[u8], name: &str) -> TensorFields {
    let n_dims = tensor_info_at(bytes, name);
    let nd = u32::from_le_bytes(bytes[n_dims..n_dims + 4].try_into().expect("4 bytes")) as usize;
    let dims = n_dims + 4;
    let ty = dims + 8 * nd;
    TensorFields { n_dims, dims, ty, offset: ty + 4 }
}
