//! [`ServeConfig`]: what the HTTP layer needs to know, resolved once at start-up, and
//! [`from_file`], the config-file format (TOML) the `daehwa serve` flags share their definition
//! with.

use std::path::Path;
use std::time::Duration;

use crate::error::ApiError;

/// The HTTP layer's settings.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The name clients use for the model (the pulled model's name, e.g. `smollm2`).
    pub model_id: String,
    /// Other accepted names (e.g. the GGUF's `general.name`).
    pub model_aliases: Vec<String>,
    /// `Authorization: Bearer` keys; empty = no authentication.
    pub api_keys: Vec<String>,
    /// Unix time reported as the model's `created`.
    pub created: u64,
    /// Largest `n` (choices per request).
    pub max_n: usize,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Interval of SSE keep-alive comments while a stream has nothing to send.
    pub keep_alive: Duration,
    /// Most requests waiting to start (each counts once, whatever its prompts and `n`); beyond
    /// it, 429 with `Retry-After`.
    pub queue: usize,
    /// Header, body and keep-alive timeouts and the connection cap.
    pub connections: crate::connections::ConnOptions,
    /// One KV prefix cache for all tenants (`--shared-prefix-cache`); by default each API key
    /// and each user has its own (see [`crate::tenant`]).
    pub shared_prefix_cache: bool,
    /// The models served besides the default one (`model_id`), in their configured order
    /// (`daehwa serve -m A -m B`, `--models-dir`); set from the registry by
    /// [`crate::AppState::with_models`]; a model pulled while the server runs is added
    /// ([`ServeConfig::add_extra_model`]).
    pub extra_models: std::sync::Arc<std::sync::RwLock<Vec<ModelNames>>>,
    /// The provenance key (`--watermark-key-file`): generations are marked with it, responses
    /// say so (`x-daehwa-watermark`), and `POST /v1/provenance/detect` scores with it.
    pub watermark: Option<std::sync::Arc<engine::sample::watermark::WatermarkKey>>,
}

/// A served model's id and its other accepted names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelNames {
    pub id: String,
    pub aliases: Vec<String>,
}

impl ServeConfig {
    pub fn new(model_id: impl Into<String>) -> Self {
        ServeConfig {
            model_id: model_id.into(),
            model_aliases: Vec::new(),
            api_keys: Vec::new(),
            created: 0,
            max_n: 16,
            body_limit: 16 << 20,
            keep_alive: Duration::from_secs(10),
            queue: 256,
            connections: crate::connections::ConnOptions::default(),
            shared_prefix_cache: false,
            extra_models: Default::default(),
            watermark: None,
        }
    }

    /// The most sequences one request may start: the engine's queue (which counts sequences)
    /// must hold `queue` x this so that only [`ServeConfig::queue`] limits requests.
    pub fn max_choices(&self) -> usize {
        self.max_n * 4
    }

    /// All names the model answers to, primary first, without duplicates.
    pub fn model_names(&self) -> Vec<&str> {
        let mut names = vec![self.model_id.as_str()];
        for a in &self.model_aliases {
            if !a.is_empty() && !names.contains(&a.as_str()) {
                names.push(a);
            }
        }
        names
    }

    /// Replaces the models served besides the default one.
    pub fn set_extra_models(&self, names: Vec<ModelNames>) {
        *self.extra_models.write().unwrap_or_else(|p| p.into_inner()) = names;
    }

    /// Serves one more model by these names (one already known stays as it is).
    pub fn add_extra_model(&self, names: ModelNames) {
        let mut extra = self.extra_models.write().unwrap_or_else(|p| p.into_inner());
        if names.id != self.model_id && !extra.iter().any(|x| x.id == names.id) {
            extra.push(names);
        }
    }

    /// The model a request means: none given = the served (default) model; an unknown name =
    /// 404 (naming the served models when there are several).
    pub fn resolve_model(&self, requested: Option<&str>) -> Result<String, ApiError> {
        match requested {
            None => Ok(self.model_id.clone()),
            Some(m) if self.model_names().contains(&m) => Ok(self.model_id.clone()),
            Some(m) => {
                let extra = self.extra_models.read().unwrap_or_else(|p| p.into_inner());
                if let Some(x) = extra.iter().find(|x| x.id == m || x.aliases.iter().any(|a| a == m)) {
                    return Ok(x.id.clone());
                }
                if extra.is_empty() {
                    return Err(ApiError::ModelNotFound(m.to_string()));
                }
                let known: Vec<&str> = std::iter::once(self.model_id.as_str()).chain(extra.iter().map(|x| x.id.as_str())).collect();
                Err(ApiError::ModelNotFoundAmong { model: m.to_string(), known: known.join(", ") })
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: String, source: toml::de::Error },
}

/// Reads a TOML config file into `T` (the same struct that derives the command-line flags, so
/// keys are the flags' long names in snake_case).
pub fn from_file<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_primary_and_alias_and_rejects_others() {
        let mut c = ServeConfig::new("smollm2");
        c.model_aliases = vec!["SmolLM2 135M Instruct".into(), "smollm2".into()];
        assert_eq!(c.model_names(), vec!["smollm2", "SmolLM2 135M Instruct"]);
        assert_eq!(c.resolve_model(None).expect("default"), "smollm2");
        assert_eq!(c.resolve_model(Some("SmolLM2 135M Instruct")).expect("alias"), "smollm2");
        assert_eq!(c.resolve_model(Some("gpt-4o")), Err(ApiError::ModelNotFound("gpt-4o".into())));
    }

    #[test]
    fn resolves_every_served_model_and_names_them_when_unknown() {
        let c = ServeConfig::new("a");
        c.set_extra_models(vec![ModelNames { id: "b".into(), aliases: vec!["Bee".into()] }]);
        assert_eq!(c.resolve_model(None).expect("default"), "a");
        assert_eq!(c.resolve_model(Some("b")).expect("b"), "b");
        assert_eq!(c.resolve_model(Some("Bee")).expect("alias"), "b");
        let e = c.resolve_model(Some("c")).expect_err("unknown");
        assert_eq!(e, ApiError::ModelNotFoundAmong { model: "c".into(), known: "a, b".into() });
        assert_eq!(e.status(), axum::http::StatusCode::NOT_FOUND);
        assert_eq!(e.body().error.code.as_deref(), Some("model_not_found"));
    }

    #[test]
    fn reads_toml_and_reports_bad_files() {
        #[derive(serde::Deserialize)]
        struct T {
            port: u16,
            api_key: Vec<String>,
        }
        let dir = std::env::temp_dir().join(format!("daehwa-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let p = dir.join("serve.toml");
        std::fs::write(&p, "port = 9000\napi_key = [\"a\", \"b\"]\n").expect("write");
        let t: T = from_file(&p).expect("parse");
        assert_eq!((t.port, t.api_key.len()), (9000, 2));
        std::fs::write(&p, "port = \"x\"\n").expect("write");
        let e = from_file::<T>(&p).err().expect("must fail");
        assert!(e.to_string().contains("serve.toml"), "{e}");
        assert!(from_file::<T>(&dir.join("missing.toml")).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
