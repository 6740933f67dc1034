//! Dequantized rows of the read-only weight types (q2_K, q3_K, iq4_nl, iq4_xs, mxfp4) equal,
//! bit for bit, what the PyPI `gguf` package (0.19.0, llama.cpp's own Python reader) decodes
//! from the same bytes: random blocks with every quant bit pattern, scales from fp16 subnormals
//! to the largest finite fp16 (and every E8M0 exponent for mxfp4), through
//! `tests/gguf_dequantize.py`. A missing package FAILS the test with the install command.

mod quant_util;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use gguf::GgmlType;
use kernels::quant;
use quant_util::*;

/// gguf-py's name for a type (`GGMLQuantizationType` member).
fn py_name(ty: GgmlType) -> &'static str {
    match ty {
        GgmlType::Q2_K => "Q2_K",
        GgmlType::Q3_K => "Q3_K",
        GgmlType::IQ4_NL => "IQ4_NL",
        GgmlType::IQ4_XS => "IQ4_XS",
        GgmlType::MXFP4 => "MXFP4",
        other => panic!("no gguf-py name for {other}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// gguf-py's dequantization of each `(type, bytes)` job, as f32 bits.
fn gguf_py(jobs: &[(GgmlType, Vec<u8>)]) -> Vec<Vec<u32>> {
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gguf_dequantize.py");
    let python = std::env::var("DAEHWA_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(python)
        .arg(&helper)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut input = String::new();
    for (ty, b) in jobs {
        input.push_str(&format!("{} {}\n", py_name(*ty), hex(b)));
    }
    // Written from another thread: the helper answers while it reads, and a full pipe either
    // way would otherwise deadlock the two processes.
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("helper output");
    writer.join().expect("writer thread").expect("write jobs");
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        panic!("the gguf package is missing ({}): python3 -m pip install gguf==0.19.0", err.trim());
    }
    assert!(out.status.success(), "{} failed ({}): {err}", helper.display(), out.status);
    let text = String::from_utf8(out.stdout).expect("utf8");
    let rows: Vec<Vec<u32>> = text
        .lines()
        .map(|l| unhex(l).chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        .collect();
    assert_eq!(rows.len(), jobs.len(), "one row per job");
    rows
}

#[test]
fn dequantized_rows_equal_gguf_py() {
    let mut rng = XorShift(0x0067_6775_665f_7079);
    let mut jobs = Vec::new();
    for &ty in quant::read_only_types() {
        for n_blocks in [1usize, 3, 300] {
            jobs.push((ty, random_row(ty, &mut rng, n_blocks)));
        }
    }
    let want = gguf_py(&jobs);
    for ((ty, bytes), want) in jobs.iter().zip(&want) {
        let n = bytes.len() / ty.type_size() * ty.block_size();
        let got: Vec<u32> = dequantize(*ty, bytes, n).iter().map(|v| v.to_bits()).collect();
        assert_eq!(got.len(), want.len(), "{ty}: length");
        if let Some(i) = (0..n).find(|&i| got[i] != want[i]) {
            panic!(
                "{ty}: element {i} of {n}: daehwa {} ({:#010x}), gguf-py {} ({:#010x})",
                f32::from_bits(got[i]),
                got[i],
                f32::from_bits(want[i]),
                want[i]
            );
        }
    }
}
