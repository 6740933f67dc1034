//! The hub's HTTP API: listing a repository and fetching its files.

use std::time::Duration;

use serde::Deserialize;

use crate::HubError;

/// One file of a repository, as the tree API lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct RepoFile {
    /// The path in the repository (`Q4_K_M/x-00001-of-00002.gguf`).
    pub path: String,
    pub size: u64,
    /// The LFS object id (the sha256 of the content, lower-case hex), for LFS files.
    pub sha256: Option<String>,
}

/// How downloads are made; every field has an environment override (see [`HubOptions::from_env`]).
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Parallel connections per file (`DAEHWA_PULL_CONNECTIONS`, default 4).
    pub connections: usize,
    /// Bytes per ranged request (`DAEHWA_PULL_CHUNK_BYTES`, default 64 MiB); a file is fetched
    /// as `ceil(size / chunk)` ranges spread over the connections.
    pub chunk_bytes: u64,
    /// Retries of one range after a network error, resuming where it stopped (default 3).
    pub retries: u32,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions { connections: 4, chunk_bytes: 64 << 20, retries: 3 }
    }
}

impl HubOptions {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<u64>().ok()).filter(|&v| v > 0);
        let d = HubOptions::default();
        HubOptions {
            connections: var("DAEHWA_PULL_CONNECTIONS").map_or(d.connections, |v| v.min(16) as usize),
            chunk_bytes: var("DAEHWA_PULL_CHUNK_BYTES").map_or(d.chunk_bytes, |v| v.max(4096)),
            retries: var("DAEHWA_PULL_RETRIES").map_or(d.retries, |v| v.min(10) as u32),
        }
    }
}

/// A hub: `https://huggingface.co` or a mirror with the same API.
#[derive(Clone, Debug)]
pub struct Hub {
    /// Without a trailing slash.
    pub endpoint: String,
    token: Option<String>,
    pub options: HubOptions,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    oid: String,
}

/// The response to a request, with the status checked by the caller.
pub(crate) type Response = ureq::http::Response<ureq::Body>;

impl Hub {
    /// `HF_ENDPOINT` (default `https://huggingface.co`) and `HF_TOKEN` (else
    /// `HUGGING_FACE_HUB_TOKEN`), as huggingface_hub reads them.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into());
        let token = var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN"));
        Hub::new(&endpoint, token, HubOptions::from_env())
    }

    pub fn new(endpoint: &str, token: Option<String>, options: HubOptions) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Redirects are followed in `get`, which sends the token to the hub's own origin
            // only, never to the CDN a download redirects to (ureq's same-host rule ignores ports).
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // A stalled transfer fails (and is retried from where it stopped) instead of hanging.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("daehwa/", env!("CARGO_PKG_VERSION")))
            .build();
        Hub { endpoint: endpoint.trim_end_matches('/').to_string(), token, options, agent: config.new_agent() }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `GET url` with extra headers, following up to 10 redirects (relative ones too, and to
    /// other hosts); the token is sent only to the hub's own origin (scheme, host and port).
    /// Network failures are [`HubError::Network`].
    pub(crate) fn get(&self, url: &str, headers: &[(&str, String)]) -> Result<Response, HubError> {
        let hub_origin = origin(&self.endpoint);
        let mut url = url.to_string();
        for _ in 0..=10 {
            let mut req = self.agent.get(&url);
            if let Some(t) = self.token.as_ref().filter(|_| origin(&url) == hub_origin) {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            let resp = req.call().map_err(|e| HubError::Network { url: url.clone(), reason: e.to_string() })?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let Some(location) = resp.headers().get("location").and_then(|v| v.to_str().ok()) else { return Ok(resp) };
            url = join(&url, location);
        }
        Err(HubError::Protocol { url, reason: "more than 10 redirects".into() })
    }

    /// The URL of a file: `{endpoint}/{repo}/resolve/{revision}/{path}`.
    pub fn resolve_url(&self, repo: &str, revision: &str, path: &str) -> String {
        format!("{}/{repo}/resolve/{}/{}", self.endpoint, encode(revision), path.split('/').map(encode).collect::<Vec<_>>().join("/"))
    }

    /// Maps an error status of a request about `repo` to the error that says what to do.
    pub(crate) fn status_error(&self, repo: &str, url: &str, resp: &Response) -> HubError {
        let status = resp.status().as_u16();
        let code = resp.headers().get("x-error-code").and_then(|v| v.to_str().ok()).unwrap_or("");
        let msg = resp.headers().get("x-error-message").and_then(|v| v.to_str().ok()).unwrap_or("");
        match (status, code) {
            (_, "RepoNotFound" | "RepositoryNotFound") | (404, _) if code != "GatedRepo" && code != "EntryNotFound" => {
                HubError::RepoNotFound { repo: repo.to_string(), endpoint: self.endpoint.clone() }
            }
            (401 | 403, _) => HubError::Gated {
                repo: repo.to_string(),
                endpoint: self.endpoint.clone(),
                status,
                detail: match (msg.is_empty(), self.has_token()) {
                    (false, _) => format!(": {msg}"),
                    (true, false) => ", and no HF_TOKEN is set".into(),
                    (true, true) => ", with the HF_TOKEN given".into(),
                },
            },
            _ => HubError::Http { url: url.to_string(), status },
        }
    }

    /// Every file of `repo` at `revision` (`GET /api/models/{repo}/tree/{rev}?recursive=true`,
    /// following `Link: <...>; rel="next"` pages).
    pub fn list_files(&self, repo: &str, revision: &str) -> Result<Vec<RepoFile>, HubError> {
        let mut url = format!("{}/api/models/{repo}/tree/{}?recursive=true", self.endpoint, encode(revision));
        let mut out = Vec::new();
        for _page in 0..1000 {
            let mut resp = self.get(&url, &[])?;
            if !resp.status().is_success() {
                return Err(self.status_error(repo, &url, &resp));
            }
            let next = resp.headers().get("link").and_then(|v| v.to_str().ok()).and_then(next_link);
            let text = resp
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_vec()
                .map_err(|e| HubError::Network { url: url.clone(), reason: e.to_string() })?;
            let entries: Vec<TreeEntry> = serde_json::from_slice(&text)
                .map_err(|e| HubError::Protocol { url: url.clone(), reason: format!("the file list is not the tree API's JSON: {e}") })?;
            out.extend(entries.into_iter().filter(|e| e.kind == "file").map(|e| RepoFile {
                path: e.path,
                size: e.size,
                sha256: e.lfs.map(|l| l.oid.to_ascii_lowercase()).filter(|o| o.len() == 64 && o.bytes().all(|b| b.is_ascii_hexdigit())),
            }));
            match next {
                Some(n) => url = n,
                None => return Ok(out),
            }
        }
        Err(HubError::Protocol { url, reason: "more than 1000 pages of files".into() })
    }
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find(|l| l.contains("rel=\"next\"")).and_then(|l| {
        let start = l.find('<')? + 1;
        let end = l.find('>')?;
        l.get(start..end).map(str::to_string)
    })
}

/// `scheme://host[:port]` of an absolute URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    url[after..].find('/').map_or(url, |j| &url[..after + j])
}

/// `location` resolved against `base` (absolute, host-relative `/x`, or path-relative `x`).
fn join(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{}{location}", origin(base))
    } else {
        let path_end = base.find('?').unwrap_or(base.len());
        let dir = base[..path_end].rfind('/').map_or(base, |i| &base[..=i]);
        format!("{dir}{location}")
    }
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_links() {
        let hub = Hub::new("http://127.0.0.1:9/", None, HubOptions::default());
        assert_eq!(hub.resolve_url("a/b", "main", "Q4 K/x.gguf"), "http://127.0.0.1:9/a/b/resolve/main/Q4%20K/x.gguf");
        assert_eq!(next_link("<https://h/api/x?cursor=2>; rel=\"next\""), Some("https://h/api/x?cursor=2".into()));
        assert_eq!(next_link("<https://h/x>; rel=\"prev\""), None);
        assert_eq!(origin("http://127.0.0.1:9/a/b?c"), "http://127.0.0.1:9");
        assert_eq!(origin("https://huggingface.co"), "https://huggingface.co");
        assert_eq!(join("https://h.co/a/resolve/main/x.gguf", "https://cdn.h.co/y?sig=1"), "https://cdn.h.co/y?sig=1");
        assert_eq!(join("https://h.co/a/resolve/main/x.gguf", "/api/resolve-cache/x"), "https://h.co/api/resolve-cache/x");
        assert_eq!(join("https://h.co/a/b?q=1", "c"), "https://h.co/a/c");
    }
}
