//! OpenAI's `logit_bias`: `{"<token id>": bias}` with biases in -100..=100, added to those tokens'
//! logits before sampling (-100 effectively bans a token, +100 all but forces it). The ids are
//! checked against the model's vocabulary when the request is submitted ([`check_vocab`]).

use crate::backend::TokenId;
use crate::error::ApiError;

/// At most this many entries (OpenAI's limit is 300).
pub const MAX_ENTRIES: usize = 1024;

/// Parses the raw field (`None` or `null`: no bias).
pub fn parse(raw: &Option<serde_json::Value>) -> Result<Vec<(TokenId, f32)>, ApiError> {
    let Some(v) = raw else { return Ok(Vec::new()) };
    let Some(map) = v.as_object() else {
        return Err(ApiError::param("logit_bias", "`logit_bias` is an object mapping token ids (as strings) to biases"));
    };
    if map.len() > MAX_ENTRIES {
        return Err(ApiError::param("logit_bias", format!("`logit_bias` has {} entries, more than {MAX_ENTRIES}", map.len())));
    }
    let mut out = Vec::with_capacity(map.len());
    for (k, b) in map {
        let id: TokenId = k
            .trim()
            .parse()
            .map_err(|_| ApiError::param("logit_bias", format!("`logit_bias` key `{}` is not a token id", k.chars().take(40).collect::<String>())))?;
        let bias = b.as_f64().filter(|x| x.is_finite() && (-100.0..=100.0).contains(x)).ok_or_else(|| {
            ApiError::param("logit_bias", format!("the bias of token {id} must be a number between -100 and 100"))
        })?;
        out.push((id, bias as f32));
    }
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}

/// Every biased id must be in the vocabulary.
pub fn check_vocab(bias: &[(TokenId, f32)], n_vocab: usize) -> Result<(), ApiError> {
    match bias.iter().find(|(id, _)| *id as usize >= n_vocab) {
        Some((id, _)) => Err(ApiError::param("logit_bias", format!("token id {id} is outside the vocabulary (0..{n_vocab})"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_bounds_biases() {
        let v = Some(serde_json::json!({"50": -100, "7": 2.5}));
        assert_eq!(parse(&v).expect("ok"), vec![(7, 2.5), (50, -100.0)]);
        assert!(parse(&None).expect("ok").is_empty());
        for bad in [serde_json::json!({"x": 1}), serde_json::json!({"1": 101}), serde_json::json!({"1": "a"}), serde_json::json!([1])] {
            assert!(parse(&Some(bad)).is_err());
        }
        assert!(check_vocab(&[(10, 1.0)], 10).is_err());
        assert!(check_vocab(&[(9, 1.0)], 10).is_ok());
    }
}
