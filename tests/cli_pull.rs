//! `daehwa pull hf:ORG/REPO[:QUANT]` against a fake hub on 127.0.0.1 (tests/fake_hub.py: the
//! hub's URL layout and API shapes, a redirect to a CDN on another port, Range requests, a gated
//! repository, dropped connections, a corrupted byte), serving tiny GGUFs from
//! scripts/tiny_models.py, one of them split into three parts. The code under test is the code that
//! talks to the real hub, pointed at `HF_ENDPOINT`.

mod support;

use std::path::Path;

use support::fake_hub::{FakeHub, TOKEN};
use support::{scratch, stderr, stdout};

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn sha256(p: &Path) -> String {
    use sha2::Digest;
    let b = std::fs::read(p).expect("read");
    sha2::Sha256::digest(&b).iter().map(|x| format!("{x:02x}")).collect()
}

fn list_json(hub: &FakeHub, models: &Path) -> Vec<serde_json::Value> {
    let o = hub.daehwa(models, &["list", "--json"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str::<serde_json::Value>(&stdout(&o)).expect("json").as_array().expect("array").clone()
}

#[test]
fn pull_picks_the_quant_defaults_to_q4_k_m_and_lists_the_available_ones_when_unknown() {
    let dir = scratch("pull-quant");
    let hub = FakeHub::start(&dir);
    let models = dir.join("models");

    // No quant: Q4_K_M.
    let o = hub.daehwa(&models, &["pull", "hf:tiny/llama-GGUF"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("hf:tiny/llama-GGUF:Q4_K_M"), "{}", stderr(&o));
    let got = models.join("tiny-llama-Q4_K_M.gguf");
    assert_eq!(sha256(&got), sha256(&hub.single), "the bytes the hub serves");
    // Fetched through the /resolve/ redirect, in 64 KiB ranges.
    let log = hub.log();
    assert!(log.iter().all(|(p, r)| p.ends_with("tiny-llama-Q4_K_M.gguf") && r.as_deref().is_some_and(|r| r.starts_with("bytes="))), "{log:?}");
    assert!(log.len() >= 3, "several ranged requests: {log:?}");

    // By quant, case-insensitively; listed with its source.
    let o = hub.daehwa(&models, &["pull", "-q", "hf:tiny/llama-GGUF:q8_0"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(models.join("tiny-llama-Q8_0.gguf").is_file());
    let list = list_json(&hub, &models);
    let sources: Vec<(&str, &str)> = list.iter().map(|m| (m["name"].as_str().unwrap_or(""), m["source"].as_str().unwrap_or(""))).collect();
    assert_eq!(sources, [("tiny-llama-Q4_K_M", "hf:tiny/llama-GGUF:Q4_K_M"), ("tiny-llama-Q8_0", "hf:tiny/llama-GGUF:Q8_0")]);
    let table = stdout(&hub.daehwa(&models, &["list"], &[]));
    assert!(table.lines().next().is_some_and(|l| l.contains("SOURCE")) && table.contains("hf:tiny/llama-GGUF:Q8_0"), "{table}");

    // Pulling again downloads nothing.
    let before = hub.log().len();
    let o = hub.daehwa(&models, &["pull", "hf:tiny/llama-GGUF:Q8_0"], &[]);
    assert!(o.status.success() && stderr(&o).contains("already pulled"), "{}", stderr(&o));
    assert_eq!(hub.log().len(), before);

    // An unknown quant: exit 2, the available ones listed, nothing written.
    let o = hub.daehwa(&models, &["pull", "hf:tiny/llama-GGUF:Q2_K"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no Q2_K GGUF; available: F16, Q4_K_M, Q8_0"), "{}", stderr(&o));
    // No GGUFs at all; an unknown repository.
    let o = hub.daehwa(&models, &["pull", "hf:tiny/docs-only"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no GGUF files"), "{}", stderr(&o));
    let o = hub.daehwa(&models, &["pull", "hf:tiny/nope"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("was not found"), "{}", stderr(&o));
    // A network failure (nothing listens there).
    let o = hub.daehwa(&models, &["pull", "hf:tiny/llama-GGUF:F16"], &[("HF_ENDPOINT", "http://127.0.0.1:9")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("network error"), "{}", stderr(&o));
    assert_eq!(files_in(&models).iter().filter(|f| f.ends_with(".gguf")).count(), 2, "{:?}", files_in(&models));
}

#[test]
fn a_dropped_connection_resumes_with_range_requests_and_a_corrupt_byte_is_refused() {
    let dir = scratch("pull-resume");
    let hub = FakeHub::start(&dir);
    let models = dir.join("models");
    let size = std::fs::metadata(&hub.single).expect("stat").len();

    // Every response stops after 10000 bytes: the pull fails (after its retries), keeping what it got.
    hub.control(r#"{"drop_after": 10000, "drop_times": 1000}"#);
    let o = hub.daehwa(&models, &["pull", "hf:tiny/llama-GGUF:Q8_0"], &[("DAEHWA_PULL_RETRIES", "1")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("network error"), "{}", stderr(&o));
    let left = files_in(&models);
    assert_eq!(left, ["tiny-llama-Q8_0.gguf.partial", "tiny-llama-Q8_0.gguf.partial.state"], "only resumable partial files");
    assert!(list_json(&hub, &models).is_empty(), "a partial file is no model");

    // The hub recovers: the next pull asks only for what is missing.
    hub.control("{}");
    let before = hub.log().len();
    let o = hub.daehwa(&models, &["pull", "hf:tiny/llama-GGUF:Q8_0"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    assert_eq!(sha256(&models.join("tiny-llama-Q8_0.gguf")), sha256(&hub.single));
    assert_eq!(files_in(&models), ["tiny-llama-Q8_0.gguf", "tiny-llama-Q8_0.source.json"]);
    let ranges: Vec<(u64, u64)> = hub.log()[before..]
        .iter()
        .filter_map(|(_, r)| r.as_deref()?.strip_prefix("bytes=")?.split_once('-').map(|(a, b)| (a.parse().ok(), b.parse().ok())))
        .filter_map(|(a, b)| Some((a?, b?)))
        .collect();
    let fetched: u64 = ranges.iter().map(|(a, b)| b - a + 1).sum();
    assert!(ranges.iter().any(|(a, _)| a % 65536 != 0), "a range resumed mid-chunk: {ranges:?}");
    assert!(fetched < size, "only the missing bytes were fetched again: {fetched} of {size}");

    // One drop only: retried within the same pull.
    let models2 = dir.join("models2");
    hub.control(r#"{"drop_after": 5000, "drop_times": 1}"#);
    let o = hub.daehwa(&models2, &["pull", "hf:tiny/llama-GGUF:Q4_K_M"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sha256(&models2.join("tiny-llama-Q4_K_M.gguf")), sha256(&hub.single));

    // A flipped byte: the sha256 does not match the LFS oid; refused, nothing kept.
    let models3 = dir.join("models3");
    hub.control(r#"{"corrupt": true}"#);
    let o = hub.daehwa(&models3, &["pull", "hf:tiny/llama-GGUF:Q4_K_M"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("sha256 mismatch"), "{}", stderr(&o));
    assert_eq!(files_in(&models3), Vec::<String>::new(), "nothing kept");
    hub.control("{}");
}

#[test]
fn a_gated_repo_needs_hf_token_and_a_full_disk_is_refused_first() {
    let dir = scratch("pull-gated");
    let hub = FakeHub::start(&dir);
    let models = dir.join("models");

    let o = hub.daehwa(&models, &["pull", "hf:tiny/gated-GGUF"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("is gated") && e.contains("HF_TOKEN") && e.contains("401"), "{e}");
    assert_eq!(files_in(&models), Vec::<String>::new(), "nothing half-written");
    let o = hub.daehwa(&models, &["pull", "hf:tiny/gated-GGUF"], &[("HF_TOKEN", "hf_wrong")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("403"), "{}", stderr(&o));
    // With the token (which the CDN must never see: it answers 400 if it does).
    let o = hub.daehwa(&models, &["pull", "hf:tiny/gated-GGUF"], &[("HF_TOKEN", TOKEN)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sha256(&models.join("gated-Q4_K_M.gguf")), sha256(&hub.single));

    // Less free space than the file needs (DAEHWA_TEST_FREE_BYTES stands in for statvfs).
    let full = dir.join("full");
    let o = hub.daehwa(&full, &["pull", "hf:tiny/llama-GGUF:Q8_0"], &[("DAEHWA_TEST_FREE_BYTES", "1000")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not enough disk space"), "{}", stderr(&o));
    assert_eq!(files_in(&full), Vec::<String>::new());
}

/// The generated token ids of `daehwa run --raw --json --temp 0 -n 12 -m MODEL`.
fn tokens(hub: &FakeHub, models: &Path, model: &str) -> Vec<u64> {
    let o = hub.daehwa(models, &["run", "--raw", "--json", "--temp", "0", "-n", "12", "-m", model, "Hello world"], &[]);
    assert!(o.status.success(), "run -m {model}: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    v["tokens"].as_array().expect("tokens").iter().map(|t| t.as_u64().expect("id")).collect()
}

#[test]
fn a_split_model_pulls_loads_and_generates_like_its_single_file_twin_and_rm_removes_every_part() {
    let dir = scratch("pull-split");
    let hub = FakeHub::start(&dir);
    let models = dir.join("models");
    let twin = tokens(&hub, &models, hub.single.to_str().expect("utf-8"));
    assert_eq!(twin.len(), 12);

    // `-m hf:...` pulls on first use (three parts from a subfolder), then loads as one model.
    let split = tokens(&hub, &models, "hf:tiny/llama-GGUF:F16");
    assert_eq!(split, twin, "the split model generates the same tokens");
    assert_eq!(
        files_in(&models),
        ["tiny-llama-F16-00001-of-00003.gguf", "tiny-llama-F16-00002-of-00003.gguf", "tiny-llama-F16-00003-of-00003.gguf", "tiny-llama-F16.source.json"]
    );
    // Found by its source the second time (nothing fetched), and by its name.
    let before = hub.log().len();
    assert_eq!(tokens(&hub, &models, "hf:tiny/llama-GGUF:F16"), twin);
    assert_eq!(tokens(&hub, &models, "tiny-llama-F16"), twin);
    assert_eq!(hub.log().len(), before);
    let list = list_json(&hub, &models);
    assert_eq!(list.len(), 1, "one model, not three: {list:?}");
    let total: u64 = (1..=3).map(|k| std::fs::metadata(models.join(format!("tiny-llama-F16-{k:05}-of-00003.gguf"))).expect("part").len()).sum();
    assert_eq!((list[0]["name"].as_str(), list[0]["size_bytes"].as_u64(), list[0]["n_files"].as_u64()), (Some("tiny-llama-F16"), Some(total), Some(3)));

    // A local path to the first part loads the split model too; a missing part is named.
    let first = models.join("tiny-llama-F16-00001-of-00003.gguf");
    assert_eq!(tokens(&hub, &models, first.to_str().expect("utf-8")), twin);
    let second = models.join("tiny-llama-F16-00002-of-00003.gguf");
    std::fs::rename(&second, dir.join("moved.gguf")).expect("hide part 2");
    let o = hub.daehwa(&models, &["run", "-m", first.to_str().expect("utf-8"), "hi"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("part 2 of 3") && stderr(&o).contains(&second.display().to_string()), "{}", stderr(&o));
    std::fs::rename(dir.join("moved.gguf"), &second).expect("restore");

    let o = hub.daehwa(&models, &["rm", "tiny-llama-F16"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(files_in(&models), Vec::<String>::new(), "every part and the manifest removed");
}
