//! OpenAI's Responses API (`POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`) over the
//! chat core ([`crate::chat`]).
//!
//! ```text
//!  CreateResponse ──input::request──> Request ──(+ previous response's conversation)──> ChatInput
//!       │                                                                   │ chat::prepare
//!  Response object / named SSE events <── output::OutputBuilder <── OutputParser <── Generation
//!       │
//!       └── saved (store: true): the object, the input items and the whole conversation, so a
//!           follow-up naming `previous_response_id` continues it (and reuses the cached prefix)
//! ```
//!
//! Stored responses belong to the caller ([`store::ResponseOwner`]: the account behind a web
//! session or personal API key, a server `--api-key`, or anyone on an open server) and are a
//! 404 for everyone else.

pub mod input;
pub mod items;
pub mod output;
pub mod saved;
pub mod wire;

pub use wire::{CreateResponse, DeletedResponse, ResponseObject};
