//! Where stored responses live: the conversation store (`daehwa serve` always has one, SQLite by
//! default, so `store: true` survives restarts and is shared by PostgreSQL replicas), or, for a
//! server built without a store ([`crate::AppState::new`] alone: embedders and tests), a bounded
//! in-memory map (the newest [`MEMORY_RESPONSES`] responses, at most [`MEMORY_BYTES`] of JSON;
//! the oldest go first, and all go with the process).
//!
//! Either way a response belongs to its [`ResponseOwner`] and is invisible to everyone else;
//! responses older than [`RETENTION_MS`] (30 days, OpenAI's default) are pruned.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use store::{ResponseOwner, Store, StoreError, StoredResponse};

use crate::error::ApiError;

/// How many responses the in-memory map keeps.
pub const MEMORY_RESPONSES: usize = 1024;
/// How much JSON the in-memory map keeps.
pub const MEMORY_BYTES: usize = 64 << 20;
/// Stored responses older than this are deleted (checked every [`PRUNE_EVERY`] saves).
pub const RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;
const PRUNE_EVERY: u64 = 64;

/// The in-memory responses of a server without a store, and the save counter that paces
/// pruning.
#[derive(Debug, Default)]
pub struct MemoryResponses {
    map: Mutex<Memory>,
    saves: AtomicU64,
}

#[derive(Debug, Default)]
struct Memory {
    by_id: HashMap<String, (ResponseOwner, StoredResponse, usize)>,
    order: VecDeque<String>,
    bytes: usize,
}

fn size(r: &StoredResponse) -> usize {
    r.response.to_string().len() + r.input_items.to_string().len() + r.conversation.to_string().len()
}

impl Memory {
    fn evict_oldest(&mut self) {
        while let Some(id) = self.order.pop_front() {
            if let Some((_, _, n)) = self.by_id.remove(&id) {
                self.bytes -= n;
                return;
            }
        }
    }
}

/// The response store a request uses.
pub enum Saved<'a> {
    Db(&'a Store, &'a MemoryResponses),
    Memory(&'a MemoryResponses),
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound { param: None, message: format!("no response with id `{id}` was found") }
}

fn db_error(e: StoreError, id: &str) -> ApiError {
    match e {
        StoreError::NotFound => not_found(id),
        other => ApiError::Internal(format!("stored responses: {other}")),
    }
}

impl Saved<'_> {
    pub async fn save(&self, owner: &ResponseOwner, r: &StoredResponse) -> Result<(), ApiError> {
        match self {
            Saved::Db(store, mem) => {
                tracing::Instrument::instrument(store.save_response(owner, r), tracing::info_span!("store_write", op = "save_response")).await.map_err(|e| db_error(e, &r.id))?;
                if mem.saves.fetch_add(1, Ordering::Relaxed).is_multiple_of(PRUNE_EVERY) {
                    if let Err(e) = store.prune_responses(store::now_ms() - RETENTION_MS).await {
                        tracing::warn!(error = %e, "pruning old responses failed");
                    }
                }
                Ok(())
            }
            Saved::Memory(mem) => {
                let n = size(r);
                if n > MEMORY_BYTES {
                    return Err(ApiError::Internal("a response too large to keep in memory".into()));
                }
                let mut m = mem.map.lock().map_err(|_| ApiError::Internal("responses map poisoned".into()))?;
                let cut = store::now_ms() - RETENTION_MS;
                while m.order.front().and_then(|id| m.by_id.get(id)).is_some_and(|(_, r, _)| r.created_at < cut) {
                    m.evict_oldest();
                }
                while !m.order.is_empty() && (m.by_id.len() >= MEMORY_RESPONSES || m.bytes + n > MEMORY_BYTES) {
                    m.evict_oldest();
                }
                if let Some((_, _, old)) = m.by_id.insert(r.id.clone(), (owner.clone(), r.clone(), n)) {
                    m.bytes -= old;
                }
                m.order.push_back(r.id.clone());
                m.bytes += n;
                Ok(())
            }
        }
    }

    /// `owner`'s response `id` (404 for anyone else's).
    pub async fn get(&self, owner: &ResponseOwner, id: &str) -> Result<StoredResponse, ApiError> {
        match self {
            Saved::Db(store, _) => store.response(owner, id).await.map_err(|e| db_error(e, id)),
            Saved::Memory(mem) => {
                let m = mem.map.lock().map_err(|_| ApiError::Internal("responses map poisoned".into()))?;
                match m.by_id.get(id) {
                    Some((o, r, _)) if o == owner => Ok(r.clone()),
                    _ => Err(not_found(id)),
                }
            }
        }
    }

    /// Deletes `owner`'s response `id` (404 for anyone else's).
    pub async fn delete(&self, owner: &ResponseOwner, id: &str) -> Result<(), ApiError> {
        match self {
            Saved::Db(store, _) => store.delete_response(owner, id).await.map_err(|e| db_error(e, id)),
            Saved::Memory(mem) => {
                let mut m = mem.map.lock().map_err(|_| ApiError::Internal("responses map poisoned".into()))?;
                match m.by_id.get(id) {
                    Some((o, _, _)) if o == owner => {}
                    _ => return Err(not_found(id)),
                }
                if let Some((_, _, n)) = m.by_id.remove(id) {
                    m.bytes -= n;
                }
                // Its place in `order` is skipped when reached.
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resp(id: &str, body: usize) -> StoredResponse {
        StoredResponse {
            id: id.into(),
            previous_response_id: None,
            model: "m".into(),
            response: json!({"id": id, "pad": "x".repeat(body)}),
            input_items: json!([]),
            conversation: json!([]),
            created_at: store::now_ms(),
        }
    }

    #[tokio::test]
    async fn memory_is_per_owner_and_bounded() {
        let mem = MemoryResponses::default();
        let s = Saved::Memory(&mem);
        let (a, b) = (ResponseOwner::of_key("a"), ResponseOwner::Anyone);
        s.save(&a, &resp("resp_1", 10)).await.unwrap();
        assert_eq!(s.get(&a, "resp_1").await.unwrap().id, "resp_1");
        assert!(matches!(s.get(&b, "resp_1").await, Err(ApiError::NotFound { .. })));
        assert!(matches!(s.delete(&b, "resp_1").await, Err(ApiError::NotFound { .. })));
        s.delete(&a, "resp_1").await.unwrap();
        assert!(matches!(s.get(&a, "resp_1").await, Err(ApiError::NotFound { .. })));
        // Count bound: the oldest go first.
        for i in 0..MEMORY_RESPONSES + 10 {
            s.save(&a, &resp(&format!("resp_n{i}"), 10)).await.unwrap();
        }
        assert!(s.get(&a, "resp_n0").await.is_err() && s.get(&a, "resp_n9").await.is_err());
        assert!(s.get(&a, "resp_n10").await.is_ok());
        // Byte bound: a few large ones push the rest out.
        for i in 0..5 {
            s.save(&a, &resp(&format!("resp_big{i}"), 20 << 20)).await.unwrap();
        }
        let m = mem.map.lock().unwrap();
        assert!(m.bytes <= MEMORY_BYTES && m.by_id.len() == 3, "{} bytes in {}", m.bytes, m.by_id.len());
    }
}
