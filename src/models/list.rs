//! `daehwa list`: what each pulled model is, read from its GGUF header.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use super::dir::ModelsDir;
use super::human_size;

/// One row of `daehwa list` (and one object of `--json`).
#[derive(Debug, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub path: PathBuf,
    pub size_bytes: u64,
    pub architecture: Option<String>,
    /// llama.cpp's name for `general.file_type` (`Q4_1`, `Q4_K_M`), else the most common
    /// type of the 2-D (weight) tensors.
    pub quant: Option<String>,
    pub context_length: Option<u64>,
    /// Whether the file carries `tokenizer.chat_template`.
    pub chat_template: bool,
    /// The chat format chat would use: `file` (the file's template), `builtin:gemma` /
    /// `builtin:chatml` (no template in the file, a built-in format fits its metadata), or
    /// `None` (no chat; raw completion only).
    pub chat_format: Option<String>,
    /// Why the file could not be read, when it could not (it is still listed, so that it can
    /// be seen and removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Parameters, counted from the tensors.
    pub params: Option<u64>,
    /// Parameters one token uses (MoE: experts count `expert_used_count / expert_count`).
    pub active_params: Option<u64>,
    /// `engine::memory::estimate` for one sequence at the default context (the training
    /// context, at most 8192, as `run` and `chat` use); `None` when the engine cannot load it.
    pub memory_bytes: Option<u64>,
    /// Where it was pulled from (`hf:ORG/REPO:QUANT`), from its manifest; `None` for catalog
    /// models and imported files.
    pub source: Option<String>,
    /// Files on disk (more than one for a split model).
    pub n_files: usize,
}

/// Reads the header of the pulled model `name`.
pub fn info(dir: &ModelsDir, name: &str) -> ModelInfo {
    let path = dir.model_path(name);
    // Every part of a split model counts (the manifest is not a model file).
    let files: Vec<PathBuf> = dir.model_files(name).into_iter().filter(|p| p.extension().is_some_and(|e| e == "gguf")).collect();
    let size_bytes = files.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
    let mut info = ModelInfo {
        name: name.to_string(),
        path: path.clone(),
        size_bytes,
        architecture: None,
        quant: None,
        context_length: None,
        chat_template: false,
        chat_format: None,
        error: None,
        params: None,
        active_params: None,
        memory_bytes: None,
        source: hub::Manifest::read(&dir.root, name).map(|m| m.source),
        n_files: files.len(),
    };
    let f = match gguf::GgufFile::open(&path) {
        Ok(f) => f,
        Err(e) => {
            info.error = Some(e.to_string());
            return info;
        }
    };
    let arch = f.opt_str("general.architecture").ok().flatten().map(str::to_string);
    info.context_length = arch
        .as_ref()
        .and_then(|a| f.opt_u64(&format!("{a}.context_length")).ok().flatten());
    info.architecture = arch;
    info.quant = f.file_type_name().map(str::to_string).or_else(|| dominant_type(&f));
    let pc = engine::memory::param_count(&f);
    (info.params, info.active_params) = (Some(pc.total), Some(pc.active));
    info.memory_bytes = default_memory(f);
    let f = match gguf::GgufFile::open(&path) {
        Ok(f) => f,
        Err(e) => {
            info.error = Some(e.to_string());
            return info;
        }
    };
    info.chat_template = f.get("tokenizer.chat_template").is_some();
    info.chat_format = if info.chat_template {
        Some("file".to_string())
    } else {
        engine::text::template::builtin::BuiltinFormat::detect(&f).map(|b| b.label())
    };
    info
}

/// The memory estimate at the default context, one sequence (what `run` checks before loading).
fn default_memory(f: gguf::GgufFile) -> Option<u64> {
    let file = std::sync::Arc::new(f);
    let model = engine::model::load(file.clone()).ok()?;
    let hp = model.hparams();
    let n_ctx = hp.n_ctx_train.clamp(1, 8192);
    let usage = engine::memory::Usage { kv_bytes: engine::memory::kv_bytes(hp, n_ctx, 1, false), n_seq: 1, batch_tokens: 512 };
    Some(engine::memory::estimate(&file, hp, &usage).total())
}

/// `135M`, `1.2B`: a parameter count in the units model names use.
fn human_params(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{}M", (n as f64 / 1e6).round()),
        n if n >= 1_000 => format!("{}K", (n as f64 / 1e3).round()),
        n => n.to_string(),
    }
}

/// The most common type among the weight (2-D and up) tensors, upper-cased; ties go to the
/// type holding more bytes.
fn dominant_type(f: &gguf::GgufFile) -> Option<String> {
    let mut count: HashMap<gguf::GgmlType, (usize, u64)> = HashMap::new();
    for t in f.tensors().iter().filter(|t| t.dims.len() >= 2) {
        let c = count.entry(t.ggml_type).or_default();
        c.0 += 1;
        c.1 += t.n_bytes;
    }
    count.into_iter().max_by_key(|(_, c)| *c).map(|(t, _)| t.name().to_uppercase())
}

/// Prints the pulled models as a table, or as a JSON array with `json`.
pub fn list(dir: &ModelsDir, json: bool) -> anyhow::Result<()> {
    let infos: Vec<ModelInfo> = dir.pulled()?.iter().map(|n| info(dir, n)).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(());
    }
    if infos.is_empty() {
        println!("no models in {} (try `daehwa pull {}`)", dir.root.display(), super::DEFAULT_MODEL);
        return Ok(());
    }
    print!("{}", table(&infos));
    println!("supported tensor types: {}", kernels::quant::weight_type_names());
    Ok(())
}

fn table(infos: &[ModelInfo]) -> String {
    let dash = || "-".to_string();
    let mut rows = vec![["NAME", "SIZE", "ARCH", "QUANT", "CONTEXT", "CHAT", "PARAMS", "MEMORY", "PATH", "SOURCE"].map(String::from)];
    for i in infos {
        let (arch, quant) = match &i.error {
            Some(e) => (format!("invalid: {e}"), dash()),
            None => (i.architecture.clone().unwrap_or_else(dash), i.quant.clone().unwrap_or_else(dash)),
        };
        rows.push([
            i.name.clone(),
            human_size(i.size_bytes),
            arch,
            quant,
            i.context_length.map(|c| c.to_string()).unwrap_or_else(dash),
            match (i.chat_template, &i.chat_format) {
                (true, _) => "yes".to_string(),
                (false, Some(label)) => label.clone(),
                (false, None) => "no".to_string(),
            },
            match (i.params, i.active_params) {
                (Some(p), Some(a)) if a < p => format!("{} ({} active)", human_params(p), human_params(a)),
                (Some(p), _) => human_params(p),
                _ => dash(),
            },
            i.memory_bytes.map(human_size).unwrap_or_else(dash),
            i.path.display().to_string(),
            i.source.clone().unwrap_or_else(dash),
        ]);
    }
    let mut widths = [0usize; 10];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gguf::{GgmlType, GgufWriter, Value};

    #[test]
    fn info_reads_arch_quant_context_and_template() {
        let root = crate::models::test_dir("list");
        let dir = ModelsDir { root: root.clone() };
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("gemma3".into()))
            .add("gemma3.context_length", Value::U32(32768))
            .add("general.file_type", Value::U32(15));
        w.add_tensor("w", &[256, 2], GgmlType::Q4_K, vec![0; 288]);
        std::fs::write(dir.model_path("g"), w.to_bytes()).expect("write");
        // No file_type: the weights' dominant type; a chat template.
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("llama".into()))
            .add("tokenizer.chat_template", Value::String("{{ x }}".into()));
        w.add_tensor("a", &[32, 2], GgmlType::Q8_0, vec![0; 68]);
        w.add_tensor("b", &[32, 2], GgmlType::Q8_0, vec![0; 68]);
        w.add_tensor("c", &[32, 2], GgmlType::F16, vec![0; 128]);
        w.add_tensor("n1", &[32], GgmlType::F32, vec![0; 128]);
        w.add_tensor("n2", &[32], GgmlType::F32, vec![0; 128]);
        w.add_tensor("n3", &[32], GgmlType::F32, vec![0; 128]);
        std::fs::write(dir.model_path("l"), w.to_bytes()).expect("write");
        std::fs::write(dir.model_path("broken"), b"not gguf at all").expect("write");
        // No template and a vocabulary no built-in format fits: no chat.
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("llama".into()))
            .add("tokenizer.ggml.tokens", Value::Array(gguf::Array::String(vec!["<s>".into(), "a".into()])));
        std::fs::write(dir.model_path("plain"), w.to_bytes()).expect("write");
        let p = info(&dir, "plain");
        assert_eq!((p.chat_template, p.chat_format.as_deref()), (false, None));
        assert!(table(&[p]).lines().nth(1).is_some_and(|l| l.contains(" no ")));
        std::fs::remove_file(dir.model_path("plain")).expect("rm");

        let g = info(&dir, "g");
        assert_eq!(g.architecture.as_deref(), Some("gemma3"));
        assert_eq!(g.quant.as_deref(), Some("Q4_K_M"));
        assert_eq!(g.context_length, Some(32768));
        assert!(!g.chat_template && g.error.is_none());
        assert_eq!(g.chat_format.as_deref(), Some("builtin:gemma"), "a gemma3 file without a template");
        let l = info(&dir, "l");
        assert_eq!(l.quant.as_deref(), Some("Q8_0"));
        assert_eq!(l.context_length, None);
        assert!(l.chat_template);
        assert_eq!(l.chat_format.as_deref(), Some("file"));
        let b = info(&dir, "broken");
        assert!(b.error.as_deref().is_some_and(|e| e.contains("not a GGUF file")), "{b:?}");
        assert_eq!(b.size_bytes, 15);

        let t = table(&[g, l, b]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("NAME") && lines[0].contains("QUANT"));
        assert!(lines[1].contains("gemma3") && lines[1].contains("32768") && lines[1].contains(" builtin:gemma "));
        assert!(lines[2].contains(" yes "));
        assert!(lines[3].contains("invalid: not a GGUF file"));
        std::fs::remove_dir_all(&root).expect("cleanup");
    }

}
