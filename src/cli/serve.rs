//! `daehwa serve`: the web UI and the OpenAI-compatible HTTP server, over the conversation store.
//!
//! One struct, [`ServeArgs`], defines every setting for the command line (clap, with a
//! `DAEHWA_*` environment variable each) and for the config file (serde, TOML, keys are the long
//! flag names in snake_case). Precedence: flag > environment > config file > built-in default.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::models::{self, ModelsDir};

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 8080;
/// The default context per sequence, capped so the derived KV pool stays modest.
const DEFAULT_MAX_CTX: usize = 4096;
const DEFAULT_MAX_SEQS: usize = 8;
const DEFAULT_QUEUE: usize = 256;
const DEFAULT_DRAIN_SECS: u64 = 30;
const DEFAULT_STEP_TOKENS: usize = 512;

#[derive(clap::Args, Deserialize, Debug, Default, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct ServeArgs {
    /// A catalog name, a pulled model's name, or a path to a .gguf file; repeat it to serve
    /// several (the first is the default; the others load on first use; the environment
    /// variable and the config file take a comma-separated list or a list) [default: smollm2]
    #[arg(short = 'm', long, env = "DAEHWA_MODEL", value_delimiter = ',')]
    #[serde(deserialize_with = "one_or_many")]
    pub model: Vec<String>,
    /// Serve every .gguf file in this directory too, named by their file stems (on the
    /// command line this is the global `--models-dir`, which also says where `-m` names are
    /// found; in the config file `models_dir = "..."`)
    #[arg(skip)]
    pub models_dir: Option<PathBuf>,
    /// Memory for loaded models together, e.g. 8GiB: loading one more unloads the least
    /// recently used idle ones (a model counts as its file size plus its KV cache)
    /// [default: no limit]
    #[arg(long, env = "DAEHWA_MODEL_MEMORY")]
    pub model_memory: Option<String>,
    /// Address to listen on; 0.0.0.0 exposes the server to the network [default: 127.0.0.1]
    #[arg(long, env = "DAEHWA_HOST")]
    pub host: Option<String>,
    /// Port to listen on (0 = any free port) [default: 8080]
    #[arg(long, env = "DAEHWA_PORT")]
    pub port: Option<u16>,
    /// Context length per sequence in tokens [default: the model's, at most 4096]
    #[arg(short = 'c', long, env = "DAEHWA_CTX")]
    pub ctx: Option<usize>,
    /// Most sequences generated at once (more requests wait in the queue) [default: 8]
    #[arg(long, env = "DAEHWA_MAX_SEQS")]
    pub max_seqs: Option<usize>,
    /// KV cache size, e.g. 512MiB or 2G [default: room for --max-seqs full contexts]
    #[arg(long, env = "DAEHWA_KV_MEMORY")]
    pub kv_memory: Option<String>,
    /// Require `Authorization: Bearer KEY` on every route but /health (repeatable; the
    /// environment variable takes a comma-separated list)
    #[arg(long = "api-key", env = "DAEHWA_API_KEY", value_delimiter = ',', hide_env_values = true)]
    pub api_key: Vec<String>,
    /// Most requests waiting to start; beyond it clients get 429 [default: 256]
    #[arg(long, env = "DAEHWA_QUEUE")]
    pub queue: Option<usize>,
    /// Most tokens in one forward pass (long prompts are prefilled in chunks) [default: 512]
    #[arg(long, env = "DAEHWA_STEP_TOKENS")]
    pub step_tokens: Option<usize>,
    /// Watts one busy core draws, for the energy figure of each answer when the CPU's RAPL
    /// counters cannot be read (setting it always uses it) [default: a figure for the CPU model]
    #[arg(long, env = "DAEHWA_WATTS_PER_CORE")]
    pub watts_per_core: Option<f64>,
    /// Worker threads for the model [default: one per core]
    #[arg(short = 't', long, env = "DAEHWA_THREADS")]
    pub threads: Option<usize>,
    /// Seconds running requests may take to finish after SIGTERM or Ctrl-C [default: 30]
    #[arg(long, env = "DAEHWA_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<u64>,
    /// Seconds a client has to send a request's headers, from connecting or from the previous
    /// response (so also how long an idle keep-alive connection stays open) [default: 15]
    #[arg(long, env = "DAEHWA_HEADER_TIMEOUT")]
    pub header_timeout: Option<u64>,
    /// Seconds a client has to send a whole request body (408 beyond) [default: 120]
    #[arg(long, env = "DAEHWA_BODY_TIMEOUT")]
    pub body_timeout: Option<u64>,
    /// Most connections served at once; a few more get 503 (and /health), the rest wait
    /// [default: 1024, lowered to fit the file-descriptor limit]
    #[arg(long, env = "DAEHWA_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// The conversation store: a SQLite file (`sqlite:///path/daehwa.sqlite3` or a path) or
    /// `postgres://user:password@host/db` [default: sqlite in the data directory]
    #[arg(long, env = "DAEHWA_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Where daehwa keeps its data (the default SQLite store)
    /// [default: $XDG_DATA_HOME/daehwa or ~/.local/share/daehwa]
    #[arg(long, env = "DAEHWA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Mark session cookies `Secure` (when TLS ends in front of daehwa at a proxy that does not
    /// send `X-Forwarded-Proto: https`)
    #[arg(long, env = "DAEHWA_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// Let control tokens spelled inside chat messages (`<|im_end|>`...) become control tokens,
    /// as llama.cpp does; by default only the chat template's own markers are
    #[arg(long, env = "DAEHWA_PARSE_SPECIAL_IN_MESSAGES")]
    pub parse_special_in_messages: bool,
    /// One KV prefix cache for every API key and user (a common system prompt is computed once
    /// for all); by default each has its own, so cached prompts reveal nothing across them
    #[arg(long, env = "DAEHWA_SHARED_PREFIX_CACHE")]
    pub shared_prefix_cache: bool,
    /// Largest ChatGPT export the web UI's import takes, e.g. 64MiB or 1G; larger uploads
    /// get 413 [default: 64MiB]
    #[arg(long, env = "DAEHWA_IMPORT_LIMIT")]
    pub import_limit: Option<String>,
    /// A reverse proxy (address or CIDR range) whose X-Forwarded-For names the client and
    /// whose X-Forwarded-Host is believed (repeatable; the environment variable takes a
    /// comma-separated list) [default: none: the TCP peer is the client]
    #[arg(long = "trusted-proxy", env = "DAEHWA_TRUSTED_PROXY", value_delimiter = ',')]
    pub trusted_proxy: Vec<String>,
    /// Keep full KV prefix blocks on disk too, in the data directory's kv-cache/, up to this
    /// size (e.g. 4GiB; LRU eviction): a conversation's follow-up after a restart, or after its
    /// prefix left the RAM cache, is read back instead of recomputed. The files hold K/V derived
    /// from conversations, so it is off unless set [default: off]
    #[arg(long, env = "DAEHWA_KV_DISK")]
    pub kv_disk: Option<String>,
    /// Mark every generated answer with a statistical watermark keyed by the secret in this
    /// file (at least 16 bytes; `head -c 32 /dev/urandom | base64 > key`); `daehwa detect` and
    /// `POST /v1/provenance/detect` find it with the same file [default: answers are not marked]
    #[arg(long, env = "DAEHWA_WATERMARK_KEY_FILE")]
    pub watermark_key_file: Option<PathBuf>,
    /// A TOML file with any of these settings (keys in snake_case: `port = 9000`,
    /// `api_key = ["..."]`)
    #[arg(long, env = "DAEHWA_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

impl ServeArgs {
    /// Fills every setting the command line and environment left out from `file`.
    fn or_file(self, file: ServeArgs) -> ServeArgs {
        ServeArgs {
            model: if self.model.is_empty() { file.model } else { self.model },
            models_dir: self.models_dir.or(file.models_dir),
            model_memory: self.model_memory.or(file.model_memory),
            host: self.host.or(file.host),
            port: self.port.or(file.port),
            ctx: self.ctx.or(file.ctx),
            max_seqs: self.max_seqs.or(file.max_seqs),
            kv_memory: self.kv_memory.or(file.kv_memory),
            api_key: if self.api_key.is_empty() { file.api_key } else { self.api_key },
            queue: self.queue.or(file.queue),
            step_tokens: self.step_tokens.or(file.step_tokens),
            watts_per_core: self.watts_per_core.or(file.watts_per_core),
            threads: self.threads.or(file.threads),
            drain_timeout: self.drain_timeout.or(file.drain_timeout),
            header_timeout: self.header_timeout.or(file.header_timeout),
            body_timeout: self.body_timeout.or(file.body_timeout),
            max_connections: self.max_connections.or(file.max_connections),
            database: self.database.or(file.database),
            data_dir: self.data_dir.or(file.data_dir),
            secure_cookies: self.secure_cookies || file.secure_cookies,
            parse_special_in_messages: self.parse_special_in_messages || file.parse_special_in_messages,
            shared_prefix_cache: self.shared_prefix_cache || file.shared_prefix_cache,
            import_limit: self.import_limit.or(file.import_limit),
            trusted_proxy: if self.trusted_proxy.is_empty() { file.trusted_proxy } else { self.trusted_proxy },
            kv_disk: self.kv_disk.or(file.kv_disk),
            watermark_key_file: self.watermark_key_file.or(file.watermark_key_file),
            config: self.config,
        }
    }

    /// Applies the config file named by `--config`, if any.
    fn resolved(self) -> anyhow::Result<ServeArgs> {
        match self.config.clone() {
            None => Ok(self),
            Some(path) => {
                let file: ServeArgs = server::config::from_file(&path)?;
                Ok(self.or_file(file))
            }
        }
    }
}

/// `model = "a"` or `model = ["a", "b"]` in the config file.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// The models to serve, the default first: each `-m` (resolved as `-m` always is), then every
/// `.gguf` in `--models-dir` not named already; with neither, the default model. Ids are file
/// stems and must differ. The flag says whether the model came from the directory.
fn served_models(a: &ServeArgs, dir: &ModelsDir) -> anyhow::Result<Vec<(String, PathBuf, bool)>> {
    let mut out: Vec<(String, PathBuf, bool)> = Vec::new();
    let stem = |p: &std::path::Path| {
        // A split model is named by its prefix (`x` for `x-00001-of-00003.gguf`).
        let name = match gguf::split_prefix(p) {
            Some((prefix, _, _)) => prefix.file_name().map(|s| s.to_string_lossy().into_owned()),
            None => p.file_stem().map(|s| s.to_string_lossy().into_owned()),
        };
        name.unwrap_or_else(|| "model".into())
    };
    for m in a.model.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
        let path = models::resolve_model(Some(m), dir)?;
        let id = stem(&path);
        match out.iter().find(|(i, _, _)| *i == id) {
            Some((_, p, _)) if *p == path => continue,
            Some(_) => bail!("two models are named `{id}`: serve files with different names"),
            None => {}
        }
        out.push((id, path, false));
    }
    if let Some(d) = &a.models_dir {
        let listed = ModelsDir { root: d.clone() };
        let names = listed.pulled()?;
        if names.is_empty() && out.is_empty() {
            bail!("--models-dir {}: no .gguf files in it", d.display());
        }
        for name in names {
            let path = listed.model_path(&name);
            if out.iter().any(|(i, _, _)| *i == name) {
                continue;
            }
            out.push((name, path, true));
        }
    }
    if out.is_empty() {
        let path = models::resolve_model(None, dir)?;
        out.push((stem(&path), path, false));
    }
    Ok(out)
}

/// Parses a memory size: plain bytes or a number with K/M/G/T (powers of 1024, with or
/// without `i`/`B`: `512M`, `512MiB`, `1.5GB`).
pub fn parse_size(s: &str) -> anyhow::Result<usize> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("invalid size `{s}` (examples: 512MiB, 2G)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => bail!("invalid size unit in `{s}` (use K, M, G or T)"),
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes < 1.0 {
        bail!("size `{s}` must be positive");
    }
    Ok(bytes as usize)
}

pub fn serve(a: ServeArgs, dir: &ModelsDir) -> anyhow::Result<()> {
    // Before any thread starts: few malloc arenas, so freed memory is reusable and trimmable.
    server::memory::limit_arenas(4);
    let a = a.resolved()?;
    // `--models-dir` (or `models_dir` in the config file) is also where `-m` names are found.
    let dir = &a.models_dir.clone().map_or_else(|| dir.clone(), |root| ModelsDir { root });
    let store_url = super::store_url(a.database.as_deref(), a.data_dir.as_deref())?;
    super::secure_data_dir(a.database.as_deref(), a.data_dir.as_deref())?;
    let import_limit = a.import_limit.as_deref().map(parse_size).transpose().context("--import-limit")?;
    let trusted_proxies = a
        .trusted_proxy
        .iter()
        .map(|p| server::web::proxy::parse_proxy(p).map_err(|e| anyhow::anyhow!("--trusted-proxy: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The API name of each model: the pulled model's name (its file stem, e.g. `smollm2`).
    let served = served_models(&a, dir)?;
    let engine_cfg = engine::EngineConfig {
        threads: a.threads.unwrap_or(0),
        parse_special_in_messages: a.parse_special_in_messages,
    };
    if a.watts_per_core.is_some_and(|w| !(w.is_finite() && w > 0.0 && w <= 1000.0)) {
        bail!("--watts-per-core must be a number of watts above 0 and at most 1000");
    }
    if a.ctx.is_some_and(|c| c < 2) {
        bail!("--ctx must be at least 2");
    }
    let queue = a.queue.unwrap_or(DEFAULT_QUEUE).max(1);
    let kv_memory_bytes = a.kv_memory.as_deref().map(parse_size).transpose().context("--kv-memory")?;
    let model_memory = a.model_memory.as_deref().map(parse_size).transpose().context("--model-memory")?;
    let runner_cfg = engine::runner::RunnerConfig {
        // Each model's own (EngineLoader::runner_config).
        n_ctx: 0,
        max_seqs: a.max_seqs.unwrap_or(DEFAULT_MAX_SEQS).max(1),
        kv_memory_bytes,
        // The server admits `queue` requests (each counted once); the engine's queue counts
        // sequences, so it holds every choice of that many requests and is never the limit.
        queue_capacity: queue.saturating_mul(server::ServeConfig::new("").max_choices()).saturating_add(64),
        step_token_budget: a.step_tokens.unwrap_or(DEFAULT_STEP_TOKENS).max(1),
        energy: engine::runner::EnergyConfig { watts_per_core: a.watts_per_core, powercap_root: None },
        kv_disk: kv_disk(&a)?,
        ..engine::runner::RunnerConfig::default()
    };
    let max_seqs = runner_cfg.max_seqs;
    let watermark = match &a.watermark_key_file {
        Some(p) => Some(Arc::new(engine::sample::watermark::WatermarkKey::from_file(p)?)),
        None => None,
    };
    // The key of the stored answers' fingerprints: the watermark key, else one kept in the
    // data directory (server::provenance::answers).
    let answer_key = server::provenance::answers::AnswerKey::load(a.watermark_key_file.as_deref(), &super::data_dir(a.data_dir.as_deref())?)
        .context("the answer fingerprint key")?;
    let loader = server::registry::EngineLoader::new(engine_cfg, runner_cfg, a.ctx, DEFAULT_MAX_CTX).with_watermark(watermark.clone());
    let mut specs = Vec::with_capacity(served.len());
    for (id, p, from_dir) in &served {
        match loader.add(id, p) {
            Ok(spec) => specs.push(spec),
            // A file in --models-dir that is no model daehwa can serve is left out; a model
            // named with -m must load.
            Err(e) if *from_dir => eprintln!("daehwa: not serving {e}"),
            Err(e) => bail!("{e}"),
        }
    }
    let Some(first) = specs.first() else { bail!("no model to serve") };
    let model_id = first.id.clone();
    let path = loader.path(&model_id).unwrap_or_default();
    let general_name = specs[0].aliases.first().cloned();
    // Refuse a configuration that does not fit in memory now, with both numbers, rather than
    // be killed by the kernel later (engine::memory).
    if let Some(est) = loader.estimate(&model_id) {
        engine::memory::check_fits(&est, &format!("serving `{model_id}` with context {} x {max_seqs} sequences", first.n_ctx)).map_err(|e| anyhow::anyhow!(e))?;
    }
    // The default model loads now, so a broken file stops the start.
    let load_started = std::time::Instant::now();
    let handle = loader.start(&model_id).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let n_ctx = handle.n_ctx();
    let stats = handle.stats();
    let loader = Arc::new(loader);

    let mut cfg = server::ServeConfig::new(model_id.clone());
    cfg.model_aliases = general_name.iter().cloned().collect();
    cfg.queue = queue;
    if let Some(s) = a.header_timeout {
        cfg.connections.header_timeout = Duration::from_secs(s.max(1));
    }
    if let Some(s) = a.body_timeout {
        cfg.connections.body_timeout = Duration::from_secs(s.max(1));
    }
    cfg.connections.max_connections = a.max_connections.map(|m| m.max(1));
    cfg.shared_prefix_cache = a.shared_prefix_cache;
    cfg.api_keys = a.api_key.iter().map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect();
    cfg.created = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let n_keys = cfg.api_keys.len();
    let backend: Arc<dyn server::Backend> = Arc::new(server::EngineBackend::new(handle).with_watermark(watermark.clone()));
    if watermark.is_some() {
        eprintln!("daehwa: answers carry a provenance mark ({})", server::provenance::MARK_SCHEME);
    }
    cfg.watermark = watermark;
    let others: Vec<String> = specs[1..]
        .iter()
        .map(|s| {
            let p = loader.path(&s.id).map(|p| p.display().to_string()).unwrap_or_default();
            format!("daehwa: also serving {} from {p} (loads on first use; about {})", s.id, models::human_size(s.memory))
        })
        .collect();
    let admission = server::admission::Admission::new(queue);
    let registry = server::Models::new(specs, loader, model_memory.map(|m| m as u64), admission)
        .preloaded(&model_id, backend, load_started.elapsed());
    let state = server::AppState::with_models(registry, cfg);
    // Hands memory freed after bursts of load back to the system (see server::memory).
    let models_for_trim = state.models.clone();
    server::memory::Trimmer::spawn_with(move || models_for_trim.stats(), state.metrics.clone(), server::memory::TrimPolicy::default())
        .context("starting the memory trimmer")?;

    let host = a.host.unwrap_or_else(|| DEFAULT_HOST.to_string());
    let port = a.port.unwrap_or(DEFAULT_PORT);
    // IPv6 literals need brackets in a socket address.
    let addr = if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let drain = Duration::from_secs(a.drain_timeout.unwrap_or(DEFAULT_DRAIN_SECS));
    let shown = general_name.map(|g| format!(" ({g})")).unwrap_or_default();
    let secure_cookies = a.secure_cookies;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().thread_name("daehwa-http").build()?;
    let result: anyhow::Result<()> = rt.block_on(async move {
        let store = server::store::Store::connect(&store_url)
            .await
            .with_context(|| format!("opening the conversation store {}", super::describe_store(&store_url)))?;
        let n_users = store.count_users().await.context("reading the accounts")?;
        let mut accounts = server::web::Accounts::new(store);
        accounts.secure_cookies = secure_cookies;
        if let Some(limit) = import_limit {
            accounts.import_body_limit = limit;
        }
        accounts.trusted_proxies = trusted_proxies;
        accounts.answer_key = Some(answer_key);
        // Where an admin's pulls from the web UI go, and whose files `/api/models` describes.
        accounts.models_dir = Some(dir.root.clone());
        let state = state.with_accounts(accounts);
        let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("serving on {addr}"))?;
        let bound = listener.local_addr()?;
        eprintln!("daehwa: serving {model_id}{shown} from {}", path.display());
        // With a sliding-window block group (Gemma 3) the blocks of the two groups hold different
        // layers, so the token capacity is the engine's `kv_tokens`, not blocks x block size.
        let window = if stats.kv_window_blocks_total > 0 {
            format!(", {} of them for the sliding-window layers", stats.kv_window_blocks_total)
        } else {
            String::new()
        };
        eprintln!(
            "daehwa: KV cache {} in {} blocks of {} tokens{window} (room for {} tokens); context {n_ctx} per sequence, up to {max_seqs} at once",
            models::human_size(stats.kv_bytes as u64),
            stats.kv_blocks_total,
            stats.kv_block_size,
            stats.kv_tokens,
        );
        for line in &others {
            eprintln!("{line}");
        }
        if let Some(m) = model_memory {
            eprintln!("daehwa: models may hold {} together (--model-memory); the least recently used idle ones unload to make room", models::human_size(m as u64));
        }
        eprintln!("daehwa: conversations and accounts in {}", super::describe_store(&store_url));
        if n_keys > 0 {
            eprintln!("daehwa: API keys required ({n_keys} configured)");
        }
        let shown_host = if bound.ip().is_unspecified() { "127.0.0.1".to_string() } else { bound.ip().to_string() };
        let shown_host = if bound.is_ipv6() && !bound.ip().is_unspecified() { format!("[{shown_host}]") } else { shown_host };
        if n_users == 0 {
            eprintln!(
                "daehwa: no account yet: open http://{shown_host}:{}/ to create the admin (or run `daehwa user add NAME --admin`); /v1 is open until then",
                bound.port()
            );
        } else {
            eprintln!("daehwa: web UI at http://{shown_host}:{}/ ({n_users} account(s); /v1 needs an API key)", bound.port());
        }
        if !server::web::assets::UI_BUILT {
            eprintln!("daehwa: this binary has no web UI built in (cd webui && npm ci && npm run build, then rebuild)");
        }
        // The first stdout line is the URL, for scripts and tests that start the server on port 0.
        println!("http://{shown_host}:{}/v1", bound.port());
        server::serve(listener, state, server::shutdown_signal(), drain).await.with_context(|| format!("serving on {addr}"))
    });
    drop(rt);
    result?;
    eprintln!("daehwa: stopped");
    Ok(())
}


/// The KV disk tier of `--kv-disk` (`None`: off, also for 0). Its files are keyed by the
/// tenants' prefix-cache salts, so those come from a key kept next to them.
fn kv_disk(a: &ServeArgs) -> anyhow::Result<Option<engine::kv::disk::DiskConfig>> {
    let Some(size) = a.kv_disk.as_deref() else { return Ok(None) };
    let max_bytes = parse_size(size).context("--kv-disk")? as u64;
    if max_bytes == 0 {
        return Ok(None);
    }
    let dir = super::data_dir(a.data_dir.as_deref())?.join("kv-cache");
    server::tenant::use_persistent_key(&dir.join("tenant.key")).with_context(|| format!("--kv-disk: {}", dir.display()))?;
    Ok(Some(engine::kv::disk::DiskConfig { dir, max_bytes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").expect("bytes"), 1024);
        assert_eq!(parse_size("512M").expect("M"), 512 << 20);
        assert_eq!(parse_size("512MiB").expect("MiB"), 512 << 20);
        assert_eq!(parse_size("1.5GB").expect("GB"), 3 << 29);
        assert_eq!(parse_size("2g").expect("g"), 2 << 30);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn served_models_are_the_m_flags_then_the_directory_without_repeats() {
        let root = std::env::temp_dir().join(format!("daehwa-served-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("tmp");
        for f in ["b.gguf", "a.gguf", "notes.txt"] {
            std::fs::write(root.join(f), b"x").expect("write");
        }
        let dir = ModelsDir { root: root.clone() };
        let ids = |a: &ServeArgs| served_models(a, &dir).expect("served").into_iter().map(|(id, _, _)| id).collect::<Vec<_>>();
        let all = ServeArgs { models_dir: Some(root.clone()), ..ServeArgs::default() };
        assert_eq!(ids(&all), ["a", "b"], "every .gguf, by name");
        let b_first = ServeArgs { model: vec!["b".into()], models_dir: Some(root.clone()), ..ServeArgs::default() };
        assert_eq!(ids(&b_first), ["b", "a"], "-m first: the default");
        let twice = ServeArgs { model: vec!["a".into(), "b".into(), "a".into()], ..ServeArgs::default() };
        assert_eq!(ids(&twice), ["a", "b"]);
        let clash = ServeArgs { model: vec!["a".into(), root.join("sub/a.gguf").display().to_string()], ..ServeArgs::default() };
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("sub/a.gguf"), b"x").expect("write");
        let e = served_models(&clash, &dir).expect_err("two files named a");
        assert!(e.to_string().contains("two models are named `a`"), "{e}");
        let empty = root.join("empty");
        std::fs::create_dir_all(&empty).expect("mkdir");
        let none = ServeArgs { models_dir: Some(empty), ..ServeArgs::default() };
        assert!(served_models(&none, &dir).expect_err("nothing to serve").to_string().contains("no .gguf files"));
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("daehwa-serve-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let p = dir.join("serve.toml");
        std::fs::write(
            &p,
            "port = 9000\nhost = \"0.0.0.0\"\napi_key = [\"k1\"]\nkv_memory = \"1G\"\nheader_timeout = 5\nmax_connections = 64\nimport_limit = \"8MiB\"\ntrusted_proxy = [\"10.0.0.0/8\"]\n",
        )
        .expect("write");
        let flags = ServeArgs { port: Some(7000), config: Some(p.clone()), ..ServeArgs::default() };
        let r = flags.resolved().expect("resolved");
        assert_eq!(r.port, Some(7000));
        assert_eq!(r.host.as_deref(), Some("0.0.0.0"));
        assert_eq!(r.api_key, vec!["k1".to_string()]);
        assert_eq!(r.kv_memory.as_deref(), Some("1G"));
        assert_eq!(r.import_limit.as_deref(), Some("8MiB"));
        assert_eq!(r.trusted_proxy, vec!["10.0.0.0/8".to_string()]);
        assert_eq!(r.ctx, None);
        assert_eq!((r.header_timeout, r.max_connections, r.body_timeout), (Some(5), Some(64), None));
        // `model` takes one name or a list; `models_dir` and `model_memory` too.
        std::fs::write(&p, "model = \"smollm2\"\nmodels_dir = \"/srv/models\"\nmodel_memory = \"8GiB\"\n").expect("write");
        let r = ServeArgs { config: Some(p.clone()), ..ServeArgs::default() }.resolved().expect("one model");
        assert_eq!(r.model, vec!["smollm2".to_string()]);
        assert_eq!(r.models_dir, Some(PathBuf::from("/srv/models")));
        assert_eq!(r.model_memory.as_deref(), Some("8GiB"));
        std::fs::write(&p, "model = [\"a\", \"b\"]\n").expect("write");
        let r = ServeArgs { config: Some(p.clone()), ..ServeArgs::default() }.resolved().expect("a list");
        assert_eq!(r.model, vec!["a".to_string(), "b".to_string()]);
        let flags = ServeArgs { model: vec!["c".into()], config: Some(p.clone()), ..ServeArgs::default() };
        assert_eq!(flags.resolved().expect("flags").model, vec!["c".to_string()], "-m replaces the file's list");
        std::fs::write(&p, "prot = 1\n").expect("write");
        let e = ServeArgs { config: Some(p), ..ServeArgs::default() }.resolved().expect_err("unknown key");
        assert!(format!("{e:#}").contains("prot"), "{e:#}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
