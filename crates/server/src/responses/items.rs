//! `GET /v1/responses/{id}/input_items`: the input items a stored response was created from, as
//! OpenAI lists them (each with an id, newest first by default, paged with `limit` and `after`).

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::error::ApiError;

/// The checked query of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// Oldest first (`order=asc`); OpenAI's default is newest first.
    pub ascending: bool,
    /// 1 to 100 (default 20).
    pub limit: usize,
    /// List the items after this id (in the chosen order).
    pub after: Option<String>,
}

impl ListQuery {
    /// Parses `order`, `limit`, `after` (and accepts `include`, which changes nothing here: the
    /// stored items carry all they have).
    pub fn parse(q: &HashMap<String, String>) -> Result<Self, ApiError> {
        let ascending = match q.get("order").map(String::as_str) {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(_) => return Err(ApiError::param("order", "order must be `asc` or `desc`")),
        };
        let limit = match q.get("limit") {
            None => 20,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => return Err(ApiError::param("limit", "limit must be an integer from 1 to 100")),
            },
        };
        if let Some(k) = q.keys().find(|k| !matches!(k.as_str(), "order" | "limit" | "after" | "include" | "include[]")) {
            return Err(ApiError::param(k, format!("unknown query parameter `{k}`")));
        }
        Ok(ListQuery { ascending, limit, after: q.get("after").cloned() })
    }
}

/// A stable id for input item `i` of response `response_id` (the stored items have none).
fn item_id(response_id: &str, i: usize, item: &Value) -> String {
    let prefix = match item.get("type").and_then(Value::as_str) {
        Some("function_call") => "fc",
        Some("function_call_output") => "fco",
        Some("reasoning") => "rs",
        _ => "msg",
    };
    let stem = response_id.strip_prefix("resp_").unwrap_or(response_id);
    format!("{prefix}_{stem}_{i:04}")
}

/// The list object: `{object: "list", data, first_id, last_id, has_more}`; an `after` id that
/// is not among the items is a 400.
pub fn list(response_id: &str, items: &Value, q: &ListQuery) -> Result<Value, ApiError> {
    let mut all: Vec<Value> = items
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let mut it = it.clone();
            if let Some(o) = it.as_object_mut() {
                o.insert("id".into(), json!(item_id(response_id, i, &Value::Object(o.clone()))));
                if o.get("type").and_then(Value::as_str) == Some("message") {
                    o.entry("status").or_insert(json!("completed"));
                }
            }
            it
        })
        .collect();
    if !q.ascending {
        all.reverse();
    }
    let start = match &q.after {
        None => 0,
        Some(after) => match all.iter().position(|it| it["id"].as_str() == Some(after.as_str())) {
            Some(p) => p + 1,
            None => return Err(ApiError::param("after", format!("no input item `{after}` in response `{response_id}`"))),
        },
    };
    let rest = &all[start.min(all.len())..];
    let data: Vec<Value> = rest.iter().take(q.limit).cloned().collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "first_id": data.first().map(|it| it["id"].clone()),
        "last_id": data.last().map(|it| it["id"].clone()),
        "has_more": rest.len() > q.limit,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<ListQuery, ApiError> {
        ListQuery::parse(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn pages_newest_first_by_default() {
        let items = json!([
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "1"},
        ]);
        let page = list("resp_abc", &items, &q(&[("limit", "2")]).unwrap()).unwrap();
        let ids: Vec<&str> = page["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["fco_abc_0002", "fc_abc_0001"]);
        assert_eq!((page["has_more"].as_bool(), page["first_id"].as_str(), page["last_id"].as_str()), (Some(true), Some("fco_abc_0002"), Some("fc_abc_0001")));
        let next = list("resp_abc", &items, &q(&[("limit", "2"), ("after", "fc_abc_0001")]).unwrap()).unwrap();
        assert_eq!(next["data"][0]["id"], "msg_abc_0000");
        assert_eq!((next["data"][0]["status"].as_str(), next["has_more"].as_bool()), (Some("completed"), Some(false)));
        let asc = list("resp_abc", &items, &q(&[("order", "asc")]).unwrap()).unwrap();
        assert_eq!(asc["data"][0]["content"][0]["text"], "a");
        let empty = list("resp_abc", &json!([]), &q(&[]).unwrap()).unwrap();
        assert_eq!((empty["first_id"].clone(), empty["has_more"].as_bool()), (Value::Null, Some(false)));
    }

    #[test]
    fn bad_queries_name_their_parameter() {
        for (pairs, param) in [(&[("order", "up")][..], "order"), (&[("limit", "0")], "limit"), (&[("limit", "101")], "limit"), (&[("limit", "x")], "limit"), (&[("page", "2")], "page")] {
            let e = q(pairs).unwrap_err();
            assert_eq!(e.body().error.param.as_deref(), Some(param), "{pairs:?}");
        }
        let e = list("resp_abc", &json!([{"type": "message"}]), &q(&[("after", "nope")]).unwrap()).unwrap_err();
        assert_eq!(e.body().error.param.as_deref(), Some("after"));
    }
}
