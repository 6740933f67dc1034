//! Stored OpenAI Responses, run once on SQLite and once on PostgreSQL (see `common`).

mod common;

use common::TestDb;
use serde_json::json;
use store::{ResponseOwner, StoreError, StoredResponse};

backend_tests!(responses_round_trip_per_owner, responses_go_with_their_account_and_age_out,);

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

fn resp(id: &str, prev: Option<&str>, at: i64) -> StoredResponse {
    StoredResponse {
        id: id.into(),
        previous_response_id: prev.map(str::to_string),
        model: "smollm2".into(),
        response: json!({"id": id, "object": "response", "output": [{"type": "message", "content": [{"type": "output_text", "text": "안녕"}]}]}),
        input_items: json!([{"role": "user", "content": "hi"}]),
        conversation: json!([{"role": "user", "content": "hi"}, {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "안녕"}]}]),
        created_at: at,
    }
}

fn not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(matches!(r, Err(StoreError::NotFound)), "expected NotFound, got {r:?}");
}

async fn responses_round_trip_per_owner(db: &TestDb) {
    let store = db.connect().await;
    let alice = store.create_user("alice", HASH, false).await.unwrap();
    let bob = store.create_user("bob", HASH, false).await.unwrap();
    let (a, b) = (ResponseOwner::User(alice.id), ResponseOwner::User(bob.id));
    let key = ResponseOwner::of_key("sk-server-key");
    assert_eq!(key, ResponseOwner::of_key("sk-server-key"));
    assert_ne!(key, ResponseOwner::of_key("sk-other-key"));
    // The key itself is never stored, only its hash.
    assert!(matches!(&key, ResponseOwner::Key(h) if h.len() == 64 && !h.contains("sk-server-key")));

    let first = resp("resp_1", None, store::now_ms());
    store.save_response(&a, &first).await.unwrap();
    let second = resp("resp_2", Some("resp_1"), store::now_ms());
    store.save_response(&a, &second).await.unwrap();
    store.save_response(&key, &resp("resp_k", None, store::now_ms())).await.unwrap();
    store.save_response(&ResponseOwner::Anyone, &resp("resp_open", None, store::now_ms())).await.unwrap();

    assert_eq!(store.response(&a, "resp_1").await.unwrap(), first);
    assert_eq!(store.response(&a, "resp_2").await.unwrap(), second);
    // Other owners see nothing: not bob, not a key, not "anyone", and the key's or the open
    // server's responses are not alice's either.
    not_found(store.response(&b, "resp_1").await);
    not_found(store.response(&key, "resp_1").await);
    not_found(store.response(&ResponseOwner::Anyone, "resp_1").await);
    not_found(store.response(&a, "resp_k").await);
    not_found(store.response(&ResponseOwner::of_key("sk-other-key"), "resp_k").await);
    not_found(store.response(&a, "resp_open").await);
    assert_eq!(store.response(&key, "resp_k").await.unwrap().id, "resp_k");
    assert_eq!(store.response(&ResponseOwner::Anyone, "resp_open").await.unwrap().id, "resp_open");
    not_found(store.response(&a, "resp_missing").await);

    // A taken id is a conflict, whoever asks.
    let dup = store.save_response(&b, &resp("resp_1", None, store::now_ms())).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    // Deleting: only the owner can, once; the follow-up stays readable.
    not_found(store.delete_response(&b, "resp_1").await);
    store.delete_response(&a, "resp_1").await.unwrap();
    not_found(store.delete_response(&a, "resp_1").await);
    not_found(store.response(&a, "resp_1").await);
    assert_eq!(store.response(&a, "resp_2").await.unwrap().previous_response_id.as_deref(), Some("resp_1"));

    // Reconnecting keeps them (the migration ran once).
    store.close().await;
    let store = db.connect().await;
    assert_eq!(store.response(&a, "resp_2").await.unwrap(), second);
    store.close().await;
}

async fn responses_go_with_their_account_and_age_out(db: &TestDb) {
    let store = db.connect().await;
    let admin = store.create_first_admin("root", HASH).await.unwrap();
    let carol = store.create_user("carol", HASH, false).await.unwrap();
    let c = ResponseOwner::User(carol.id);
    store.save_response(&c, &resp("resp_c", None, store::now_ms())).await.unwrap();
    store.save_response(&ResponseOwner::Anyone, &resp("resp_old", None, 1_000)).await.unwrap();
    store.save_response(&ResponseOwner::Anyone, &resp("resp_new", None, store::now_ms())).await.unwrap();

    // Pruning removes exactly the responses older than the cut.
    assert_eq!(store.prune_responses(2_000).await.unwrap(), 1);
    not_found(store.response(&ResponseOwner::Anyone, "resp_old").await);
    assert_eq!(store.response(&ResponseOwner::Anyone, "resp_new").await.unwrap().id, "resp_new");

    // Deleting the account deletes its responses.
    store.delete_user(admin.id, carol.id).await.unwrap();
    not_found(store.response(&c, "resp_c").await);
    let again = store.create_user("carol", HASH, false).await.unwrap();
    not_found(store.response(&ResponseOwner::User(again.id), "resp_c").await);
    store.close().await;
}
