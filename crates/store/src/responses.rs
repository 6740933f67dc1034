//! Stored OpenAI Responses (`POST /v1/responses` with `store: true`): saved whole, read back by
//! `GET /v1/responses/{id}` and by a follow-up's `previous_response_id`, deleted by `DELETE`.
//!
//! Every call takes the [`ResponseOwner`] acting and filters by it in SQL: another owner's
//! response answers [`StoreError::NotFound`], exactly like one that does not exist.

use crate::error::{Result, StoreError};
use crate::types::UserId;
use crate::{with_pool, Store};

/// Who a stored response belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ResponseOwner {
    /// An account (its web sessions and personal API keys): removed with the account.
    User(UserId),
    /// A server-wide key (`--api-key`), named by a hash of the key (never the key itself).
    Key(String),
    /// Anyone, on a server without authentication.
    Anyone,
}

impl ResponseOwner {
    /// The owner of requests made with the server-wide key `key`.
    pub fn of_key(key: &str) -> ResponseOwner {
        ResponseOwner::Key(crate::token_hash(key))
    }

    /// The `owner` column's text.
    fn column(&self) -> String {
        match self {
            ResponseOwner::User(u) => format!("user:{}", u.0),
            ResponseOwner::Key(h) => format!("key:{h}"),
            ResponseOwner::Anyone => "anyone".to_string(),
        }
    }

    fn user_id(&self) -> Option<UserId> {
        match self {
            ResponseOwner::User(u) => Some(*u),
            _ => None,
        }
    }
}

/// A stored response. The JSON values are the server's wire format; the store keeps them as
/// they are.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredResponse {
    /// `resp_...`.
    pub id: String,
    pub previous_response_id: Option<String>,
    pub model: String,
    /// The Response object as returned to the client.
    pub response: serde_json::Value,
    /// This request's input items.
    pub input_items: serde_json::Value,
    /// The whole conversation up to and including this response's output, as input items.
    pub conversation: serde_json::Value,
    /// Unix milliseconds.
    pub created_at: i64,
}

type ResponseRow = (String, Option<String>, String, String, String, String, i64);

fn json(column: &str, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("responses.{column}: {e}")))
}

impl TryFrom<ResponseRow> for StoredResponse {
    type Error = StoreError;

    fn try_from(r: ResponseRow) -> Result<StoredResponse> {
        let (id, previous_response_id, model, response, input_items, conversation, created_at) = r;
        Ok(StoredResponse {
            id,
            previous_response_id,
            model,
            response: json("response", &response)?,
            input_items: json("input_items", &input_items)?,
            conversation: json("conversation", &conversation)?,
            created_at,
        })
    }
}

impl Store {
    /// Saves `r` for `owner`. An id already taken is a [`StoreError::Conflict`].
    pub async fn save_response(&self, owner: &ResponseOwner, r: &StoredResponse) -> Result<()> {
        const SQL: &str = "INSERT INTO responses \
             (id, owner, user_id, previous_response_id, model, response, input_items, conversation, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        let owner_col = owner.column();
        let (response, input_items, conversation) =
            (r.response.to_string(), r.input_items.to_string(), r.conversation.to_string());
        with_pool!(self, pool => sqlx::query(SQL)
            .bind(&r.id)
            .bind(&owner_col)
            .bind(owner.user_id())
            .bind(&r.previous_response_id)
            .bind(&r.model)
            .bind(&response)
            .bind(&input_items)
            .bind(&conversation)
            .bind(r.created_at)
            .execute(pool)
            .await
            .map(|_| ())?);
        Ok(())
    }

    /// One of `owner`'s responses ([`StoreError::NotFound`] for another owner's).
    pub async fn response(&self, owner: &ResponseOwner, id: &str) -> Result<StoredResponse> {
        const SQL: &str = "SELECT id, previous_response_id, model, response, input_items, conversation, created_at \
             FROM responses WHERE id = $1 AND owner = $2";
        let owner_col = owner.column();
        let row: Option<ResponseRow> = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(id)
            .bind(&owner_col)
            .fetch_optional(pool)
            .await?);
        row.ok_or(StoreError::NotFound)?.try_into()
    }

    /// Deletes one of `owner`'s responses ([`StoreError::NotFound`] for another owner's).
    pub async fn delete_response(&self, owner: &ResponseOwner, id: &str) -> Result<()> {
        const SQL: &str = "DELETE FROM responses WHERE id = $1 AND owner = $2";
        let owner_col = owner.column();
        let done = with_pool!(self, pool => sqlx::query(SQL)
            .bind(id)
            .bind(&owner_col)
            .execute(pool)
            .await?
            .rows_affected());
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Deletes every response created before `before_ms` (Unix milliseconds); returns how many.
    pub async fn prune_responses(&self, before_ms: i64) -> Result<u64> {
        const SQL: &str = "DELETE FROM responses WHERE created_at < $1";
        let n = with_pool!(self, pool => sqlx::query(SQL).bind(before_ms).execute(pool).await?.rows_affected());
        Ok(n)
    }
}
