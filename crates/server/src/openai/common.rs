//! Pieces shared by chat and completions: `stop`, `stream_options`, `usage`, log-probs, and the
//! envelope of every response and stream chunk (only the choice type differs between the two).

use serde::{Deserialize, Serialize};

/// A parameter of OpenAI's API this server does not implement, kept as sent (`None` when absent
/// or `null`) so validation can accept its no-op values and reject the rest by name.
pub type Unsupported = Option<serde_json::Value>;

/// A parameter that cannot change the answer (`user`-like bookkeeping): read and dropped
/// without allocating. Documented as "any value" in `/openapi.json`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct Ignored(#[allow(dead_code)] Option<serde::de::IgnoredAny>);

impl utoipa::PartialSchema for Ignored {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <serde_json::Value as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Ignored {}

/// `stop`: one string or a list of up to four.
#[derive(Clone, Debug, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(untagged)]
pub enum StopParam {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PromptTokensDetails {
    pub cached_tokens: usize,
}

/// `usage` as OpenAI reports it.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ApiUsage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
    /// The energy the answer took (daehwa's extension; absent when not measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<EnergyWire>)]
    pub energy: Option<Energy>,
}

/// How joules were obtained: `rapl` (the CPU's energy counters) or `estimate` (CPU time times a
/// per-core power figure).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnergyMethod {
    Rapl,
    Estimate,
}

impl EnergyMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            EnergyMethod::Rapl => "rapl",
            EnergyMethod::Estimate => "estimate",
        }
    }
}

/// `usage.energy`: `{"joules": 1.25, "method": "estimate"}` (kept in microjoules, so usages
/// add up exactly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Energy {
    pub microjoules: u64,
    pub method: EnergyMethod,
}

/// [`Energy`] as it is written.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only its schema is used
pub struct EnergyWire {
    joules: f64,
    method: EnergyMethod,
}

impl Energy {
    pub fn joules(&self) -> f64 {
        self.microjoules as f64 / 1e6
    }
}

impl Serialize for Energy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Energy", 2)?;
        st.serialize_field("joules", &self.joules())?;
        st.serialize_field("method", &self.method)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Energy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            joules: f64,
            method: EnergyMethod,
        }
        let r = Raw::deserialize(d)?;
        if !(r.joules.is_finite() && r.joules >= 0.0) {
            return Err(serde::de::Error::custom("joules must be a non-negative number"));
        }
        Ok(Energy { microjoules: (r.joules * 1e6).round() as u64, method: r.method })
    }
}

impl ApiUsage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize, cached_tokens: usize) -> Self {
        ApiUsage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails { cached_tokens },
            energy: None,
        }
    }
}

/// Chat's `choices[].logprobs`: one entry per generated token.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ChoiceLogprobs {
    pub content: Vec<LogprobEntry>,
}

/// One token's log-prob. `token` is the token's text (lossy where the token is only part of a
/// UTF-8 character); `bytes` are its real bytes, so a client can reassemble the text exactly.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct LogprobEntry {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// A whole non-streaming response: `chat.completion` or `text_completion`, with its choices.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Response<C> {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<C>,
    pub usage: ApiUsage,
}

/// One `data:` event of a stream.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Chunk<C> {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<C>,
    /// With `stream_options.include_usage`: `null` on every chunk but the last, which has empty
    /// `choices` and the usage. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<ApiUsage>>,
}
