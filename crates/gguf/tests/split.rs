//! Split models (llama.cpp's gguf-split layout) open as one file: `scripts/tiny_models.py
//! --split llama` writes a tiny model and the same model in three parts, written by gguf-py's
//! own split writer; every tensor must read the same bytes from either, opening any part opens
//! the whole model, and a missing part is an error naming the file.

use std::path::{Path, PathBuf};
use std::process::Command;

use gguf::{Error, GgufFile};

fn tiny_split() -> (PathBuf, Vec<PathBuf>) {
    let dir = std::env::temp_dir().join(format!("gguf-split-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/tiny_models.py");
    let py = std::env::var("DAEHWA_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(py).arg(&script).arg(&dir).args(["--split", "llama"]).output().expect("run python3");
    assert!(out.status.success(), "tiny_models.py --split: {}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    let parts = line["parts"].as_array().expect("parts").iter().map(|p| PathBuf::from(p.as_str().expect("path"))).collect();
    (PathBuf::from(line["path"].as_str().expect("path")), parts)
}

#[test]
fn split_model_reads_like_its_single_file_twin_and_a_missing_part_is_named() {
    let (single, parts) = tiny_split();
    assert_eq!(parts.len(), 3);
    let one = GgufFile::open(&single).expect("single file");
    assert_eq!(one.n_parts(), 1);
    for (i, p) in parts.iter().enumerate() {
        let alone = gguf::GgufFile::open(p).expect("opening any part opens the model");
        assert_eq!(alone.n_parts(), 3, "part {i}");
    }
    let split = GgufFile::open(&parts[0]).expect("split model");
    assert_eq!(split.get_u32("split.count").expect("count"), 3);
    assert_eq!(split.get_str("general.architecture").expect("arch"), "llama");
    assert_eq!(split.tensors().len(), one.tensors().len());
    let on_disk: u64 = parts.iter().map(|p| std::fs::metadata(p).expect("stat").len()).sum();
    assert_eq!(split.total_bytes(), on_disk, "every part counts");
    assert_eq!(one.total_bytes(), std::fs::metadata(&single).expect("stat").len());
    for t in one.tensors() {
        let s = split.require_tensor(&t.name).expect("every tensor is in some part");
        assert_eq!((s.dims.clone(), s.ggml_type), (t.dims.clone(), t.ggml_type), "{}", t.name);
        assert_eq!(split.tensor_data(s), one.tensor_data(t), "{} reads the same bytes", t.name);
        assert_eq!(split.slice(s.offset, s.n_bytes as usize), one.tensor_data(t));
    }
    // The tensors really are spread over the parts (not all in the first).
    let first_len = std::fs::metadata(&parts[0]).expect("stat").len();
    assert!(split.tensors().iter().any(|t| t.offset > first_len), "later parts hold tensors");

    let moved = parts[1].with_extension("moved");
    std::fs::rename(&parts[1], &moved).expect("hide part 2");
    let e = GgufFile::open(&parts[0]).expect_err("a part is missing");
    assert!(matches!(&e, Error::MissingSplitPart { no: 2, count: 3, .. }), "{e:?}");
    assert!(e.to_string().contains(&parts[1].display().to_string()), "names the file: {e}");
    std::fs::rename(&moved, &parts[1]).expect("restore");
    let _ = std::fs::remove_dir_all(single.parent().expect("dir"));
}
