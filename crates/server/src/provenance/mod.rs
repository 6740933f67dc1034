//! Provenance of generated text: `POST /v1/provenance/detect` scores a text for the server's
//! watermark ([`engine::sample::watermark`]), and [`mark_header`] tells clients that answers are
//! marked (`x-daehwa-watermark` on every `/v1` response while a key is configured).

pub mod answers;
pub mod fingerprint;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;
use engine::sample::watermark::{Score, DEFAULT_THRESHOLD};

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::AppState;

/// The header that says a response's generations carry the provenance mark.
pub const MARK_HEADER: &str = "x-daehwa-watermark";
/// Its value: the scheme and its parameters (a detector must use the same ones).
pub const MARK_SCHEME: &str = "kirchenbauer-2023; gamma=0.25; delta=2; context=1";
/// The longest text scored, in tokens (a longer one is refused).
pub const MAX_DETECT_TOKENS: usize = 32_768;

/// `POST /v1/provenance/detect`'s body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectRequest {
    /// The text to score.
    pub text: String,
    /// The model whose tokenizer splits the text (default: the default model).
    #[serde(default)]
    pub model: Option<String>,
    /// The z-score at which the verdict is `marked` (default 4).
    #[serde(default)]
    pub threshold: Option<f64>,
}

/// The score of a text.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Detection {
    /// z-score of the green-token count against chance.
    pub z: f64,
    /// Green tokens among the scored ones.
    pub green: usize,
    /// Distinct (previous token, token) pairs scored.
    pub scored: usize,
    /// `marked` when `z >= threshold`, else `not_marked`.
    pub verdict: String,
    pub threshold: f64,
}

impl Detection {
    /// The wire form of a score at `threshold` (shared with `daehwa detect --json`).
    pub fn of(s: Score, threshold: f64) -> Self {
        let verdict = if s.marked(threshold) { "marked" } else { "not_marked" };
        Detection { z: s.z, green: s.green, scored: s.scored, verdict: verdict.into(), threshold }
    }
}

/// Scores a text for the server's watermark with the model's tokenizer.
#[utoipa::path(post, path = "/v1/provenance/detect", tag = "provenance", request_body = DetectRequest, responses((status = 200, description = "the text's watermark score and verdict", body = Detection), (status = "4XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody), (status = "5XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody)))]
pub async fn detect(State(st): State<AppState>, ApiJson(req): ApiJson<DetectRequest>) -> Result<Json<Detection>, ApiError> {
    let Some(key) = st.config.watermark.clone() else {
        return Err(ApiError::param("text", "this server marks no answers (start it with --watermark-key-file)"));
    };
    let threshold = req.threshold.unwrap_or(DEFAULT_THRESHOLD);
    if !threshold.is_finite() {
        return Err(ApiError::param("threshold", "must be a finite number"));
    }
    let backend = st.models.get(req.model.as_deref()).await?;
    let backend = backend.backend().clone();
    // Tokenizing and hashing are CPU work: off the async workers, bounded by MAX_DETECT_TOKENS.
    let score = tokio::task::spawn_blocking(move || {
        let toks = backend.raw_prompt(&req.text, MAX_DETECT_TOKENS).map_err(|e| ApiError::param("text", e.to_string()))?;
        Ok::<Score, ApiError>(key.score(&toks))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("detect task: {e}")))??;
    Ok(Json(Detection::of(score, threshold)))
}

/// Adds [`MARK_HEADER`] to `/v1` responses while the server marks its answers.
pub async fn mark_header(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let v1 = req.uri().path().starts_with("/v1/");
    let mut resp = next.run(req).await;
    if v1 && st.config.watermark.is_some() && resp.extensions().get::<crate::policy::HideMark>().is_none() {
        resp.headers_mut().insert(MARK_HEADER, HeaderValue::from_static(MARK_SCHEME));
    }
    resp
}
