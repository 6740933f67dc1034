//! The real model: q4_1 (`blk.0.ffn_up.weight`) and q8_0 (`token_embd.weight`) rows of
//! SmolLM2-135M-Instruct through every kernel variant, against the f64 dot of the dequantized
//! rows.
//!
//! Model location (first that is set): `DAEHWA_SMOLLM2_GGUF`, `$DAEHWA_MODELS_DIR/smollm2.gguf`,
//! `$XDG_DATA_HOME/daehwa/models/smollm2.gguf`, `~/.local/share/daehwa/models/smollm2.gguf`.

mod quant_util;

use std::path::PathBuf;

use gguf::{GgmlType, GgufFile};
use kernels::quant;
use quant_util::*;

fn model_path() -> PathBuf {
    // An explicitly configured location is used as is (and fails if absent); otherwise the
    // XDG data dir, then ~/.local/share.
    let explicit = std::env::var_os("DAEHWA_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("DAEHWA_MODELS_DIR").map(|d| PathBuf::from(d).join("smollm2.gguf"))
        });
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p],
        None => [
            std::env::var_os("XDG_DATA_HOME")
                .map(|d| PathBuf::from(d).join("daehwa/models/smollm2.gguf")),
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".local/share/daehwa/models/smollm2.gguf")),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("SmolLM2 model not found (looked at {candidates:?}); run `cargo run --release -- pull smollm2`")
    })
}

/// Checks `rows` of tensor `name` (expected type `ty`) against activations `x`.
fn check_rows(file: &GgufFile, name: &str, ty: GgmlType, rows: &[usize], x: &[f32]) {
    let info = file
        .tensor(name)
        .unwrap_or_else(|| panic!("tensor {name} missing"));
    assert_eq!(info.ggml_type, ty, "{name}");
    let n = info.row_len();
    assert_eq!(n, x.len(), "{name} row length");
    let data = file.tensor_data(info);
    let rb = quant::row_bytes(ty, n).expect("row_bytes");
    assert_eq!(data.len(), rb * info.n_rows(), "{name} size");

    let vdt = quant::vec_dot_type(ty).expect("vec_dot_type");
    let xq = quantize_fast(vdt, x);
    let xd = dequantize(vdt, &xq, n);
    let variants = quant::kernel_variants(ty);
    for &r in rows {
        let row = &data[r * rb..(r + 1) * rb];
        let wd = dequantize(ty, row, n);
        assert!(
            wd.iter().all(|v| v.is_finite() && v.abs() < 64.0),
            "{name} row {r} dequantizes to junk"
        );
        let exact = dot64(&wd, &xd);
        let mag = abs_dot64(&wd, &xd);
        // Against the f32 activations: only the q8 rounding of x separates the two.
        let vs_f32 = dot64(&wd, x);
        let tol_min = if ty == GgmlType::Q4_1 { 2e-3 } else { 1e-5 };
        let mut results = Vec::new();
        for k in &variants {
            let got = (k.vec_dot)(n, row, &xq) as f64;
            assert!(
                (got - exact).abs() <= tol_min * mag,
                "{name} row {r} {}: {got} vs dequantized {exact} (mag {mag})",
                k.isa
            );
            assert!(
                (got - vs_f32).abs() <= 0.01 * mag,
                "{name} row {r} {}: {got} vs f32 activations {vs_f32}",
                k.isa
            );
            results.push(got);
        }
        let spread = results
            .iter()
            .fold(0f64, |m, &v| m.max((v - results[0]).abs()));
        assert!(
            spread <= 1e-4 * mag,
            "{name} row {r}: variants disagree by {spread} ({results:?})"
        );
    }
}

#[test]
fn real_model_rows_q4_1_and_q8_0() {
    let file = GgufFile::open(model_path()).expect("open model");
    let n_embd = file
        .tensor("token_embd.weight")
        .expect("token_embd")
        .row_len();
    assert_eq!(n_embd, 576);

    // Realistic activations: a token embedding row (dequantized), plus noise so that no row
    // is trivially equal to it.
    let embd = file.tensor("token_embd.weight").expect("token_embd");
    let rb = quant::row_bytes(embd.ggml_type, n_embd).expect("row_bytes");
    let tok = 1_000;
    let mut x = dequantize(
        embd.ggml_type,
        &file.tensor_data(embd)[tok * rb..(tok + 1) * rb],
        n_embd,
    );
    let mut rng = XorShift(99);
    for v in &mut x {
        *v += 0.05 * rng.uniform();
    }

    let up = file.tensor("blk.0.ffn_up.weight").expect("ffn_up");
    let last_up = up.n_rows() - 1;
    check_rows(
        &file,
        "blk.0.ffn_up.weight",
        GgmlType::Q4_1,
        &[0, 1, 17, 777, last_up],
        &x,
    );
    let last_tok = embd.n_rows() - 1;
    // Row `tok` dotted with (almost) itself is large and positive: a sanity anchor.
    check_rows(
        &file,
        "token_embd.weight",
        GgmlType::Q8_0,
        &[0, 2, tok, 31_337, last_tok],
        &x,
    );
    let k = quant::kernel(GgmlType::Q8_0).expect("kernel");
    let xq = quantize_fast(GgmlType::Q8_0, &x);
    let self_dot = (k.vec_dot)(
        n_embd,
        &file.tensor_data(embd)[tok * rb..(tok + 1) * rb],
        &xq,
    );
    assert!(
        self_dot > 0.5 * dot64(&x, &x) as f32,
        "embedding row {tok} . itself = {self_dot}"
    );
}
