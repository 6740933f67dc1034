//! Which GGUF of a repository is the asked quantization.
//!
//! Quantization labels come from file names, as llama.cpp's `-hf` and Ollama read them: the
//! stem (without `.gguf` and a split suffix `-0000K-of-0000N`) is cut at `-` and `.`, and the
//! last piece shaped like a llama.cpp quant name (`Q4_K_M`, `IQ4_XS`, `Q8_0`, `F16`, `BF16`,
//! `MXFP4`, ...; any case) is the label, with unsloth's `UD-` prefix kept (`UD-Q4_K_XL`). A file
//! without one in its name takes its folder's (`Q4_K_M/model-00001-of-00002.gguf`). Vision
//! projectors (`mmproj*`) are not models and are skipped. A split set is one candidate, and only
//! when every part is in the repository.

use std::collections::BTreeMap;

use crate::{HubError, RepoFile};

/// The order a pull without a quantization tries, best first: 4-bit K-quants (the usual
/// quality/size balance), then other 4-bit types, then larger (better, slower) ones, then
/// smaller (worse) ones, then unquantized. Labels not listed come after all of these, sorted.
pub const QUANT_PREFERENCE: &[&str] = &[
    "Q4_K_M", "Q4_K_S", "IQ4_XS", "IQ4_NL", "Q4_0", "Q4_1", "MXFP4", "Q5_K_M", "Q5_K_S", "Q5_0", "Q5_1", "Q6_K", "Q8_0",
    "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "BF16", "F16", "F32",
];

/// One model of a repository: a GGUF file, or a complete split set in part order.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The quantization label, upper case (`Q4_K_M`, `UD-Q4_K_XL`).
    pub quant: String,
    pub files: Vec<RepoFile>,
}

impl Candidate {
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
    /// The local model name: the first file's stem without its split suffix.
    pub fn name(&self) -> String {
        let first = self.files.first().map(|f| f.path.as_str()).unwrap_or("model.gguf");
        let base = first.rsplit('/').next().unwrap_or(first);
        let stem = base.strip_suffix(".gguf").unwrap_or(base);
        let stem = split_suffix(stem).map_or(stem, |(p, _, _)| p);
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect()
    }
}

/// `x-00002-of-00003` => (`x`, 2, 3).
fn split_suffix(stem: &str) -> Option<(&str, u32, u32)> {
    let (p, _, n) = gguf::split_prefix(std::path::Path::new(&format!("{stem}.gguf")))?;
    let prefix = p.to_str()?.to_string();
    let k = stem.get(prefix.len() + 1..prefix.len() + 6)?.parse().ok()?;
    Some((stem.get(..prefix.len())?, k, n))
}

/// Whether an upper-cased piece of a file name is a quantization name.
fn is_quant(piece: &str) -> bool {
    if matches!(piece, "F16" | "F32" | "BF16" | "MXFP4" | "MXFP4_MOE") {
        return true;
    }
    let rest = piece.strip_prefix("IQ").or_else(|| piece.strip_prefix("TQ")).or_else(|| piece.strip_prefix('Q'));
    let Some(rest) = rest else { return false };
    let mut chars = rest.chars();
    matches!(chars.next(), Some('1'..='8'))
        && rest.len() > 2
        && rest.as_bytes()[1] == b'_'
        && rest.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The quantization label of a repository path (see the module docs), upper case.
pub fn quant_label(path: &str) -> Option<String> {
    let mut segments = path.rsplit('/');
    let base = segments.next()?;
    let stem = base.strip_suffix(".gguf").or_else(|| base.strip_suffix(".GGUF"))?;
    let stem = split_suffix(stem).map_or(stem, |(p, _, _)| p);
    let from = |s: &str| -> Option<String> {
        let pieces: Vec<String> = s.split(['-', '.']).map(|p| p.to_ascii_uppercase()).collect();
        let i = pieces.iter().rposition(|p| is_quant(p))?;
        Some(if i > 0 && pieces[i - 1] == "UD" { format!("UD-{}", pieces[i]) } else { pieces[i].clone() })
    };
    from(stem).or_else(|| segments.next().and_then(from))
}

/// The repository's models (GGUF files and complete split sets), grouped by label; within one
/// label the shortest path first.
pub fn candidates(files: &[RepoFile]) -> Vec<Candidate> {
    // (folder + prefix) => parts by number, and the count they declare.
    let mut sets: BTreeMap<String, (u32, BTreeMap<u32, RepoFile>)> = BTreeMap::new();
    let mut out = Vec::new();
    for f in files {
        let base = f.path.rsplit('/').next().unwrap_or(&f.path);
        if !base.to_ascii_lowercase().ends_with(".gguf") || base.to_ascii_lowercase().starts_with("mmproj") {
            continue;
        }
        let Some(quant) = quant_label(&f.path) else { continue };
        let stem = &f.path[..f.path.len() - 5];
        match split_suffix(stem) {
            Some((prefix, k, n)) => {
                let e = sets.entry(format!("{prefix}\u{0}{n}")).or_insert((n, BTreeMap::new()));
                e.1.insert(k, f.clone());
                let _ = quant;
            }
            None => out.push(Candidate { quant, files: vec![f.clone()] }),
        }
    }
    for (_, (n, parts)) in sets {
        if parts.len() as u32 == n && parts.keys().copied().eq(1..=n) {
            let files: Vec<RepoFile> = parts.into_values().collect();
            if let Some(quant) = files.first().and_then(|f| quant_label(&f.path)) {
                out.push(Candidate { quant, files });
            }
        }
    }
    out.sort_by(|a, b| (&a.quant, a.files[0].path.len(), &a.files[0].path).cmp(&(&b.quant, b.files[0].path.len(), &b.files[0].path)));
    out
}

/// The candidate for `quant` (case-insensitive), or without one the first of
/// [`QUANT_PREFERENCE`] the repository has (else the first label in sort order).
pub fn select(repo: &str, files: &[RepoFile], quant: Option<&str>) -> Result<Candidate, HubError> {
    let all = candidates(files);
    if all.is_empty() {
        return Err(HubError::NoGguf { repo: repo.to_string() });
    }
    let pick = |label: &str| all.iter().find(|c| c.quant.eq_ignore_ascii_case(label)).cloned();
    match quant {
        Some(q) => pick(q).ok_or_else(|| {
            let mut available: Vec<String> = all.iter().map(|c| c.quant.clone()).collect();
            available.dedup();
            HubError::UnknownQuant { repo: repo.to_string(), quant: q.to_string(), available }
        }),
        None => Ok(QUANT_PREFERENCE.iter().find_map(|q| pick(q)).unwrap_or_else(|| all[0].clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str) -> RepoFile {
        RepoFile { path: path.into(), size: 10, sha256: None }
    }

    #[test]
    fn labels_from_real_file_names() {
        for (path, want) in [
            ("Qwen3-8B-Q4_K_M.gguf", Some("Q4_K_M")),
            ("qwen3-8b-q4_k_m.gguf", Some("Q4_K_M")),
            ("EXAONE-4.0-1.2B-BF16.gguf", Some("BF16")),
            ("gpt-oss-20b-mxfp4.gguf", Some("MXFP4")),
            ("gpt-oss-20b-UD-Q4_K_XL.gguf", Some("UD-Q4_K_XL")),
            ("Qwen_Qwen3-8B-IQ4_XS.gguf", Some("IQ4_XS")),
            ("mistral-7b-instruct-v0.2.Q5_K_S.gguf", Some("Q5_K_S")),
            ("Q4_K_M/Qwen3-235B-A22B-Q4_K_M-00001-of-00003.gguf", Some("Q4_K_M")),
            ("Q8_0/model-00002-of-00002.gguf", Some("Q8_0")),
            ("model.gguf", None),
            ("README.md", None),
        ] {
            assert_eq!(quant_label(path).as_deref(), want, "{path}");
        }
    }

    #[test]
    fn default_prefers_q4_k_m_then_the_documented_order_and_unknown_lists_the_rest() {
        let files = [f("m-Q8_0.gguf"), f("m-Q4_K_M.gguf"), f("m-F16.gguf"), f("mmproj-m-F16.gguf"), f("README.md")];
        assert_eq!(select("r", &files, None).expect("pick").files[0].path, "m-Q4_K_M.gguf");
        assert_eq!(select("r", &files[..1], None).expect("pick").quant, "Q8_0");
        let only_big = [f("m-F16.gguf"), f("m-Q6_K.gguf")];
        assert_eq!(select("r", &only_big, None).expect("pick").quant, "Q6_K");
        assert_eq!(select("r", &files, Some("q8_0")).expect("pick").quant, "Q8_0");
        match select("r", &files, Some("Q2_K")) {
            Err(HubError::UnknownQuant { available, .. }) => assert_eq!(available, ["F16", "Q4_K_M", "Q8_0"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(select("r", &[f("README.md"), f("mmproj-F16.gguf")], None), Err(HubError::NoGguf { .. })));
    }

    #[test]
    fn split_sets_are_one_candidate_only_when_complete() {
        let files = [
            f("Q4_K_M/m-Q4_K_M-00002-of-00003.gguf"),
            f("Q4_K_M/m-Q4_K_M-00001-of-00003.gguf"),
            f("Q4_K_M/m-Q4_K_M-00003-of-00003.gguf"),
            f("Q8_0/m-Q8_0-00001-of-00002.gguf"),
        ];
        let c = select("r", &files, Some("Q4_K_M")).expect("complete set");
        let paths: Vec<&str> = c.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["Q4_K_M/m-Q4_K_M-00001-of-00003.gguf", "Q4_K_M/m-Q4_K_M-00002-of-00003.gguf", "Q4_K_M/m-Q4_K_M-00003-of-00003.gguf"]);
        assert_eq!(c.name(), "m-Q4_K_M");
        assert_eq!(c.size(), 30);
        assert!(matches!(select("r", &files, Some("Q8_0")), Err(HubError::UnknownQuant { .. })), "incomplete set");
    }
}
