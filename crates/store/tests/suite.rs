//! The store's behaviour, run once on SQLite and once on PostgreSQL (see `common`).

mod common;

use common::TestDb;
use serde_json::json;
use store::tree;
use store::{
    ConversationPatch, ImportConversation, ImportMessage, MessageFinish, MessageId, MessageStatus, NewConversation, NewMessage, Role,
    Store, StoreError, User,
};

backend_tests!(
    users_and_first_admin,
    sessions_expire_and_end,
    api_keys_hashed_and_revocable,
    admin_only_user_management,
    conversations_crud,
    messages_stream_and_branch,
    search_titles_and_text,
    other_users_rows_are_invisible,
    reconnect_keeps_data_and_recovers_streams,
    concurrent_streams_all_commit,
    imported_times_and_operator_listing,
    bulk_import_of_a_deep_chain,
    answer_fingerprints_match,
);

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

/// Days since 1970-01-01, UTC, now.
fn chrono_free_today() -> i64 {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    ms.div_euclid(86_400_000)
}

async fn user(store: &Store, name: &str) -> User {
    store.create_user(name, HASH, false).await.expect("create user")
}

fn conv(title: &str) -> NewConversation {
    NewConversation { title: title.into(), ..NewConversation::default() }
}

fn not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(matches!(r, Err(StoreError::NotFound)), "expected NotFound, got {r:?}");
}

async fn users_and_first_admin(db: &TestDb) {
    let store = db.connect().await;
    assert_eq!(store.count_users().await.unwrap(), 0);
    let admin = store.create_first_admin("Root", HASH).await.unwrap();
    assert!(admin.is_admin);
    let again = store.create_first_admin("root2", HASH).await;
    assert!(matches!(again, Err(StoreError::Forbidden(_))), "{again:?}");

    let alice = user(&store, "alice").await;
    assert!(!alice.is_admin);
    // Usernames are unique regardless of case.
    let dup = store.create_user("ALICE", HASH, false).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    for bad in ["", " alice", "a\nb", &"x".repeat(65)] {
        let r = store.create_user(bad, HASH, false).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{bad:?}: {r:?}");
    }
    let korean = user(&store, "김철수").await;
    assert_eq!(store.user(korean.id).await.unwrap().username, "김철수");

    let creds = store.user_credentials("Alice").await.unwrap().expect("login lookup");
    assert_eq!(creds.user, alice);
    assert_eq!(creds.password_hash, HASH);
    assert!(store.user_credentials("nobody").await.unwrap().is_none());
    assert_eq!(store.count_users().await.unwrap(), 3);
    store.close().await;
}

async fn sessions_expire_and_end(db: &TestDb) {
    let store = db.connect().await;
    let alice = user(&store, "alice").await;
    let live = store::token_hash("live-token");
    let old = store::token_hash("old-token");
    assert_eq!(live.len(), 64);
    assert_ne!(live, old);
    store.create_session(alice.id, &live, store::now_ms() + 60_000).await.unwrap();
    store.create_session(alice.id, &old, store::now_ms() - 1).await.unwrap();
    assert_eq!(store.session_user(&live).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.session_user(&old).await.unwrap(), None, "expired session accepted");
    assert_eq!(store.session_user(&store::token_hash("x")).await.unwrap(), None);
    assert_eq!(store.purge_expired_sessions().await.unwrap(), 1);

    assert!(store.delete_session(&live).await.unwrap());
    assert!(!store.delete_session(&live).await.unwrap());
    assert_eq!(store.session_user(&live).await.unwrap(), None);

    // A password change ends every session of that user.
    store.create_session(alice.id, &live, store::now_ms() + 60_000).await.unwrap();
    store.set_password_hash(alice.id, alice.id, "$argon2id$new").await.unwrap();
    assert_eq!(store.session_user(&live).await.unwrap(), None);
    let creds = store.user_credentials("alice").await.unwrap().unwrap();
    assert_eq!(creds.password_hash, "$argon2id$new");
    // Only an admin changes someone else's password.
    let bob = user(&store, "bob").await;
    let r = store.set_password_hash(bob.id, alice.id, "$argon2id$evil").await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    // A change that asks for it also revokes the user's API keys (only theirs).
    store.create_api_key(alice.id, "a1", "dh-a1", "hash-a1").await.unwrap();
    store.create_api_key(alice.id, "a2", "dh-a2", "hash-a2").await.unwrap();
    store.create_api_key(bob.id, "b1", "dh-b1", "hash-b1").await.unwrap();
    assert_eq!(store.change_password(alice.id, alice.id, "$argon2id$kept", false).await.unwrap(), 0);
    assert!(store.api_key_user("hash-a1").await.unwrap().is_some());
    assert_eq!(store.change_password(alice.id, alice.id, "$argon2id$newer", true).await.unwrap(), 2);
    assert!(store.api_key_user("hash-a1").await.unwrap().is_none());
    assert!(store.api_key_user("hash-a2").await.unwrap().is_none());
    assert!(store.api_key_user("hash-b1").await.unwrap().is_some());
    store.close().await;
}

async fn api_keys_hashed_and_revocable(db: &TestDb) {
    let store = db.connect().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let secret = "dh-abcdef0123456789";
    let key = store
        .create_api_key(alice.id, "laptop", "dh-abcd", &store::token_hash(secret))
        .await
        .unwrap();
    assert_eq!((key.name.as_str(), key.prefix.as_str()), ("laptop", "dh-abcd"));
    assert_eq!(key.revoked_at, None);
    let dup = store.create_api_key(bob.id, "x", "dh-abcd", &store::token_hash(secret)).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    let (owner, key_id) = store.api_key_user(&store::token_hash(secret)).await.unwrap().unwrap();
    assert_eq!((owner.id, key_id), (alice.id, key.id));
    assert!(store.api_key_user(&store::token_hash("dh-wrong")).await.unwrap().is_none());
    assert_eq!(store.list_api_keys(alice.id).await.unwrap(), vec![key.clone()]);
    assert!(store.list_api_keys(bob.id).await.unwrap().is_empty());

    // Bob cannot revoke Alice's key.
    not_found(store.revoke_api_key(bob.id, key.id).await);
    assert!(store.api_key_user(&store::token_hash(secret)).await.unwrap().is_some());
    let revoked = store.revoke_api_key(alice.id, key.id).await.unwrap();
    let at = revoked.revoked_at.expect("revoked_at set");
    assert!(store.api_key_user(&store::token_hash(secret)).await.unwrap().is_none());
    // Revoking twice keeps the first time.
    let again = store.revoke_api_key(alice.id, key.id).await.unwrap();
    assert_eq!(again.revoked_at, Some(at));
    store.close().await;
}

async fn admin_only_user_management(db: &TestDb) {
    let store = db.connect().await;
    let admin = store.create_user("admin", HASH, true).await.unwrap();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;

    let r = store.list_users(alice.id).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    let all = store.list_users(admin.id).await.unwrap();
    assert_eq!(all.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["admin", "alice", "bob"]);

    let r = store.delete_user(alice.id, bob.id).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    let r = store.delete_user(admin.id, admin.id).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    let r = store.set_admin(admin.id, admin.id, false).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    let r = store.set_admin(alice.id, alice.id, true).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");

    assert!(store.set_admin(admin.id, alice.id, true).await.unwrap().is_admin);
    assert!(!store.set_admin(admin.id, alice.id, false).await.unwrap().is_admin);

    // Deleting a user deletes what they own.
    let c = store.create_conversation(bob.id, &conv("bob's")).await.unwrap();
    let m = store
        .add_message(bob.id, &NewMessage::complete(c.id, None, Role::User, "hi"))
        .await
        .unwrap();
    store.create_session(bob.id, &store::token_hash("bob-session"), store::now_ms() + 60_000)
        .await
        .unwrap();
    store.delete_user(admin.id, bob.id).await.unwrap();
    not_found(store.user(bob.id).await);
    not_found(store.conversation(bob.id, c.id).await);
    not_found(store.message(bob.id, m.id).await);
    assert_eq!(store.session_user(&store::token_hash("bob-session")).await.unwrap(), None);
    not_found(store.delete_user(admin.id, bob.id).await);
    assert_eq!(store.count_users().await.unwrap(), 2);
    store.close().await;
}

async fn conversations_crud(db: &TestDb) {
    let store = db.connect().await;
    let alice = user(&store, "alice").await;
    let new = NewConversation {
        title: "Rust 질문".into(),
        system_prompt: Some("You are terse.".into()),
        model: Some("smollm2".into()),
        settings: json!({"temperature": 0.7, "top_p": 0.9}),
    };
    let a = store.create_conversation(alice.id, &new).await.unwrap();
    assert_eq!(a.title, "Rust 질문");
    assert_eq!(a.settings, json!({"temperature": 0.7, "top_p": 0.9}));
    assert_eq!(a.current_message_id, None);
    assert_eq!(store.conversation(alice.id, a.id).await.unwrap(), a);
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let b = store.create_conversation(alice.id, &conv("second")).await.unwrap();
    assert_eq!(b.settings, json!({}), "null settings stored as an empty object");

    let list = store.list_conversations(alice.id, 10, 0).await.unwrap();
    assert_eq!(list.iter().map(|c| c.id).collect::<Vec<_>>(), vec![b.id, a.id], "newest first");
    assert_eq!(store.list_conversations(alice.id, 1, 1).await.unwrap()[0].id, a.id);

    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let renamed = store.rename_conversation(alice.id, a.id, "renamed").await.unwrap();
    assert_eq!(renamed.title, "renamed");
    assert_eq!(renamed.system_prompt.as_deref(), Some("You are terse."), "untouched by rename");
    assert!(renamed.updated_at > a.updated_at);
    let list = store.list_conversations(alice.id, 10, 0).await.unwrap();
    assert_eq!(list[0].id, a.id, "an update moves a conversation to the top");

    let patch = ConversationPatch {
        system_prompt: Some(None),
        model: Some(Some("other".into())),
        settings: Some(json!({"temperature": 0.0})),
        ..ConversationPatch::default()
    };
    let p = store.update_conversation(alice.id, a.id, &patch).await.unwrap();
    assert_eq!(p.title, "renamed");
    assert_eq!(p.system_prompt, None);
    assert_eq!(p.model.as_deref(), Some("other"));
    assert_eq!(p.settings, json!({"temperature": 0.0}));
    let bad = ConversationPatch { settings: Some(json!([1, 2])), ..ConversationPatch::default() };
    assert!(matches!(
        store.update_conversation(alice.id, a.id, &bad).await,
        Err(StoreError::Invalid(_))
    ));

    let m = store
        .add_message(alice.id, &NewMessage::complete(a.id, None, Role::User, "hello"))
        .await
        .unwrap();
    store.delete_conversation(alice.id, a.id).await.unwrap();
    not_found(store.conversation(alice.id, a.id).await);
    not_found(store.message(alice.id, m.id).await);
    not_found(store.delete_conversation(alice.id, a.id).await);
    assert_eq!(store.list_conversations(alice.id, 10, 0).await.unwrap().len(), 1);
    store.close().await;
}

async fn messages_stream_and_branch(db: &TestDb) {
    let store = db.connect().await;
    let alice = user(&store, "alice").await;
    let c = store.create_conversation(alice.id, &conv("chat")).await.unwrap();
    let q1 = store
        .add_message(alice.id, &NewMessage::complete(c.id, None, Role::User, "안녕?"))
        .await
        .unwrap();
    assert_eq!(q1.status, MessageStatus::Complete);
    let a1 = store
        .add_message(alice.id, &NewMessage::streaming_answer(c.id, q1.id, "smollm2"))
        .await
        .unwrap();
    assert_eq!((a1.status, a1.content.as_str()), (MessageStatus::Streaming, ""));
    for delta in ["안녕", "하세요", "! 반갑", "습니다."] {
        store.append_to_message(alice.id, a1.id, delta).await.unwrap();
    }
    let mid = store.message(alice.id, a1.id).await.unwrap();
    assert_eq!(mid.content, "안녕하세요! 반갑습니다.");
    assert_eq!(mid.status, MessageStatus::Streaming);
    let done = store
        .finish_message(
            alice.id,
            a1.id,
            &MessageFinish {
                status: MessageStatus::Complete,
                content: None,
                prompt_tokens: Some(12),
                completion_tokens: Some(7), energy: Some((1_500_000, "estimate".into())),
            },
        )
        .await
        .unwrap();
    assert_eq!(done.status, MessageStatus::Complete);
    assert_eq!(done.content, "안녕하세요! 반갑습니다.");
    assert_eq!((done.prompt_tokens, done.completion_tokens), (Some(12), Some(7)));
    assert_eq!(done.model.as_deref(), Some("smollm2"));
    assert_eq!((done.energy_uj, done.energy_method.as_deref()), (Some(1_500_000), Some("estimate")));
    // Today's energy: this answer; nobody else's answers count.
    let days = store.energy_by_day(alice.id, 7).await.unwrap();
    assert_eq!(days.len(), 1, "{days:?}");
    assert_eq!((days[0].microjoules, days[0].answers, days[0].estimated), (1_500_000, 1, true));
    assert_eq!(days[0].day, chrono_free_today());
    // A finished message no longer streams.
    let r = store.append_to_message(alice.id, a1.id, "more").await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    let r = store.update_message_content(alice.id, a1.id, "x").await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    let r = store
        .finish_message(alice.id, a1.id, &MessageFinish {
            status: MessageStatus::Streaming, content: None, prompt_tokens: None, completion_tokens: None, energy: None,
        })
        .await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");

    // Regenerate: a second answer to q1, stopped by the user, with its text replaced wholesale.
    let a2 = store
        .add_message(alice.id, &NewMessage::streaming_answer(c.id, q1.id, "smollm2"))
        .await
        .unwrap();
    store.update_message_content(alice.id, a2.id, "partial ans").await.unwrap();
    store.update_message_content(alice.id, a2.id, "partial answer").await.unwrap();
    let stopped = store
        .finish_message(alice.id, a2.id, &MessageFinish {
            status: MessageStatus::Incomplete, content: None, prompt_tokens: None, completion_tokens: Some(3), energy: None,
        })
        .await
        .unwrap();
    assert_eq!((stopped.status, stopped.content.as_str()), (MessageStatus::Incomplete, "partial answer"));

    // Edit the question: a second root branch.
    let q2 = store
        .add_message(alice.id, &NewMessage::complete(c.id, None, Role::User, "edited question"))
        .await
        .unwrap();
    let a3 = store
        .add_message(alice.id, &NewMessage::complete(c.id, Some(q2.id), Role::Assistant, "answer 3"))
        .await
        .unwrap();

    let all = store.messages(alice.id, c.id).await.unwrap();
    assert_eq!(all.iter().map(|m| m.id).collect::<Vec<_>>(), vec![q1.id, a1.id, a2.id, q2.id, a3.id]);
    assert_eq!(tree::sibling_position(&all, a2.id), Some((2, 2)));
    assert_eq!(tree::sibling_position(&all, q2.id), Some((2, 2)));
    let conv_now = store.conversation(alice.id, c.id).await.unwrap();
    assert_eq!(conv_now.current_message_id, Some(a3.id), "the newest message is current");
    let shown: Vec<MessageId> = tree::active_branch(&all, conv_now.current_message_id)
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(shown, vec![q2.id, a3.id]);

    // Switch back to the first branch `< 1/2 >`: the current leaf is remembered.
    let leaf = tree::newest_leaf(&all, q1.id);
    assert_eq!(leaf, a2.id);
    store.set_current_message(alice.id, c.id, a1.id).await.unwrap();
    let conv_now = store.conversation(alice.id, c.id).await.unwrap();
    assert_eq!(conv_now.current_message_id, Some(a1.id));
    let shown: Vec<MessageId> = tree::active_branch(&all, conv_now.current_message_id)
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(shown, vec![q1.id, a1.id]);

    // A parent from another conversation is rejected.
    let other = store.create_conversation(alice.id, &conv("other")).await.unwrap();
    not_found(store.add_message(alice.id, &NewMessage::complete(other.id, Some(q1.id), Role::User, "x")).await);
    not_found(store.set_current_message(alice.id, other.id, q1.id).await);
    assert!(store.messages(alice.id, other.id).await.unwrap().is_empty());

    // Deleting a branch removes its subtree and moves the current leaf up to its parent.
    store.delete_message(alice.id, q1.id).await.unwrap();
    let left = store.messages(alice.id, c.id).await.unwrap();
    assert_eq!(left.iter().map(|m| m.id).collect::<Vec<_>>(), vec![q2.id, a3.id]);
    let conv_now = store.conversation(alice.id, c.id).await.unwrap();
    assert_eq!(conv_now.current_message_id, None, "the deleted root had no parent");
    not_found(store.delete_message(alice.id, a1.id).await);
    store.close().await;
}

async fn search_titles_and_text(db: &TestDb) {
    let store = db.connect().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let trip = store.create_conversation(alice.id, &conv("Trip to Busan")).await.unwrap();
    let cook = store.create_conversation(alice.id, &conv("Cooking")).await.unwrap();
    let long_text = format!("{} 김치찌개 recipe with 100% tofu_cubes {}", "앞".repeat(80), "뒤".repeat(80));
    let q = store
        .add_message(alice.id, &NewMessage::complete(cook.id, None, Role::User, &long_text))
        .await
        .unwrap();
    let bob_conv = store.create_conversation(bob.id, &conv("Bob's busan notes")).await.unwrap();

    let hits = store.search(alice.id, "busan", 10).await.unwrap();
    assert_eq!(hits.len(), 1, "case-insensitive title match, scoped to alice: {hits:?}");
    assert_eq!(hits[0].conversation.id, trip.id);
    assert_eq!(hits[0].message_id, None);

    let hits = store.search(alice.id, "김치찌개", 10).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].conversation.id, cook.id);
    assert_eq!(hits[0].message_id, Some(q.id));
    let snippet = hits[0].snippet.as_deref().unwrap();
    assert!(snippet.contains("김치찌개 recipe") && snippet.starts_with('…') && snippet.ends_with('…'), "{snippet}");

    assert_eq!(store.search(alice.id, "RECIPE", 10).await.unwrap().len(), 1);
    // LIKE wildcards are literal.
    assert_eq!(store.search(alice.id, "100%", 10).await.unwrap().len(), 1);
    assert_eq!(store.search(alice.id, "0%_t", 10).await.unwrap().len(), 0);
    assert_eq!(store.search(alice.id, "tofu_c", 10).await.unwrap().len(), 1);
    assert_eq!(store.search(alice.id, "tofu%c", 10).await.unwrap().len(), 0);
    assert_eq!(store.search(alice.id, "  ", 10).await.unwrap().len(), 0);
    assert_eq!(store.search(alice.id, "o", 10).await.unwrap().len(), 2);
    assert_eq!(store.search(alice.id, "o", 1).await.unwrap().len(), 1);
    let bob_hits = store.search(bob.id, "busan", 10).await.unwrap();
    assert_eq!(bob_hits.iter().map(|h| h.conversation.id).collect::<Vec<_>>(), vec![bob_conv.id]);
    store.close().await;
}

async fn other_users_rows_are_invisible(db: &TestDb) {
    let store = db.connect().await;
    let a = user(&store, "alice").await;
    let b = user(&store, "bob").await;
    let secret_conv = store
        .create_conversation(a.id, &NewConversation {
            title: "alice secret plans".into(),
            system_prompt: Some("s".into()),
            ..NewConversation::default()
        })
        .await
        .unwrap();
    let q = store
        .add_message(a.id, &NewMessage::complete(secret_conv.id, None, Role::User, "the password is swordfish"))
        .await
        .unwrap();
    let ans = store
        .add_message(a.id, &NewMessage::streaming_answer(secret_conv.id, q.id, "m"))
        .await
        .unwrap();
    let bob_conv = store.create_conversation(b.id, &conv("bob's")).await.unwrap();

    // Read.
    not_found(store.conversation(b.id, secret_conv.id).await);
    not_found(store.messages(b.id, secret_conv.id).await);
    not_found(store.message(b.id, q.id).await);
    assert!(store.list_conversations(b.id, 100, 0).await.unwrap().iter().all(|c| c.user_id == b.id));
    assert!(store.search(b.id, "swordfish", 10).await.unwrap().is_empty());
    assert!(store.search(b.id, "secret", 10).await.unwrap().is_empty());
    // Write.
    not_found(store.rename_conversation(b.id, secret_conv.id, "pwned").await);
    not_found(store.update_conversation(b.id, secret_conv.id, &ConversationPatch::default()).await);
    not_found(store.set_current_message(b.id, secret_conv.id, q.id).await);
    not_found(store.add_message(b.id, &NewMessage::complete(secret_conv.id, None, Role::User, "x")).await);
    not_found(store.add_message(b.id, &NewMessage::complete(secret_conv.id, Some(q.id), Role::User, "x")).await);
    // Hanging a message under Alice's message from Bob's own conversation.
    not_found(store.add_message(b.id, &NewMessage::complete(bob_conv.id, Some(q.id), Role::User, "x")).await);
    not_found(store.set_current_message(b.id, bob_conv.id, q.id).await);
    not_found(store.append_to_message(b.id, ans.id, "injected").await);
    not_found(store.update_message_content(b.id, ans.id, "injected").await);
    not_found(store
        .finish_message(b.id, ans.id, &MessageFinish {
            status: MessageStatus::Complete, content: Some("injected".into()), prompt_tokens: None, completion_tokens: None, energy: None,
        })
        .await);
    not_found(store.delete_message(b.id, q.id).await);
    not_found(store.delete_conversation(b.id, secret_conv.id).await);
    not_found(store.set_imported_times(b.id, secret_conv.id, 1, 2, &[]).await);
    // Bob's own conversation with Alice's message in the list.
    not_found(store.set_imported_times(b.id, bob_conv.id, 1, 2, &[(q.id, 5)]).await);

    // Alice's rows are untouched.
    let c = store.conversation(a.id, secret_conv.id).await.unwrap();
    assert_eq!(c.title, "alice secret plans");
    let ms = store.messages(a.id, secret_conv.id).await.unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0].content, "the password is swordfish");
    assert_eq!((ms[1].content.as_str(), ms[1].status), ("", MessageStatus::Streaming));
    assert_eq!(store.search(a.id, "swordfish", 10).await.unwrap().len(), 1);
    assert!(store.messages(b.id, bob_conv.id).await.unwrap().is_empty());
    store.close().await;
}

async fn reconnect_keeps_data_and_recovers_streams(db: &TestDb) {
    let store = db.connect().await;
    let alice = user(&store, "alice").await;
    let c = store.create_conversation(alice.id, &conv("c")).await.unwrap();
    let q = store
        .add_message(alice.id, &NewMessage::complete(c.id, None, Role::User, "q"))
        .await
        .unwrap();
    let a = store
        .add_message(alice.id, &NewMessage::streaming_answer(c.id, q.id, "m"))
        .await
        .unwrap();
    store.append_to_message(alice.id, a.id, "half an ans").await.unwrap();
    // A recovery with a cutoff before the last write leaves a live stream alone.
    assert_eq!(store.recover_interrupted(store::now_ms() - 60_000).await.unwrap(), 0);
    store.close().await;

    let store = db.connect().await;
    let m = store.message(alice.id, a.id).await.unwrap();
    match store.kind() {
        // SQLite: a stream cannot outlive the process, so connect marks it incomplete.
        store::BackendKind::Sqlite => {}
        // PostgreSQL: another replica might be streaming it; connect leaves recent streams.
        store::BackendKind::Postgres => {
            assert_eq!(m.status, MessageStatus::Streaming);
            assert_eq!(store.recover_interrupted(store::now_ms() + 1).await.unwrap(), 1);
        }
    }
    let m = store.message(alice.id, a.id).await.unwrap();
    assert_eq!((m.status, m.content.as_str()), (MessageStatus::Incomplete, "half an ans"));
    assert_eq!(store.message(alice.id, q.id).await.unwrap().content, "q");
    assert!(store.check_integrity().await.unwrap().is_empty());
    store.close().await;
}

/// Several answers streaming at once (as under a busy server) each keep every append: no
/// "database is locked" on SQLite, no lost update on either backend.
async fn concurrent_streams_all_commit(db: &TestDb) {
    let store = db.connect().await;
    let alice = user(&store, "alice").await;
    let c = store.create_conversation(alice.id, &conv("busy")).await.unwrap();
    let q = store
        .add_message(alice.id, &NewMessage::complete(c.id, None, Role::User, "q"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let a = store
                .add_message(alice.id, &NewMessage::streaming_answer(c.id, q.id, "m"))
                .await
                .expect("start stream");
            for j in 0..40 {
                store.append_to_message(alice.id, a.id, &format!("{t}:{j} ")).await.expect("append");
            }
            let done = MessageFinish {
                status: MessageStatus::Complete,
                content: None,
                prompt_tokens: None,
                completion_tokens: Some(40), energy: None,
            };
            store.finish_message(alice.id, a.id, &done).await.expect("finish");
            (t, a.id)
        }));
    }
    for task in tasks {
        let (t, id) = task.await.expect("stream task");
        let m = store.message(alice.id, id).await.unwrap();
        let want: String = (0..40).map(|j| format!("{t}:{j} ")).collect();
        assert_eq!((m.status, m.content), (MessageStatus::Complete, want));
    }
    let all = store.messages(alice.id, c.id).await.unwrap();
    assert_eq!(all.len(), 9);
    assert_eq!(tree::siblings(&all, all[1].id).len(), 8, "eight regenerations of one answer");
    store.close().await;
}

async fn imported_times_and_operator_listing(db: &TestDb) {
    let store = db.connect().await;
    let a = user(&store, "ann").await;
    let b = user(&store, "ben").await;
    // The operator's listing needs no acting admin and lists everyone in id order.
    let names: Vec<String> = store.all_users().await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["ann", "ben"]);
    assert!(matches!(store.list_users(b.id).await, Err(StoreError::Forbidden(_))));

    let old = store.create_conversation(a.id, &conv("imported from 2023")).await.unwrap();
    let q = store.add_message(a.id, &NewMessage::complete(old.id, None, Role::User, "q")).await.unwrap();
    let r = store.add_message(a.id, &NewMessage::complete(old.id, Some(q.id), Role::Assistant, "r")).await.unwrap();
    let fresh = store.create_conversation(a.id, &conv("today")).await.unwrap();
    let t0 = 1_690_000_000_000i64;
    store.set_imported_times(a.id, old.id, t0, t0 + 60_000, &[(q.id, t0), (r.id, t0 + 60_000)]).await.unwrap();
    let c = store.conversation(a.id, old.id).await.unwrap();
    assert_eq!((c.created_at, c.updated_at), (t0, t0 + 60_000));
    let ms = store.messages(a.id, old.id).await.unwrap();
    assert_eq!(ms.iter().map(|m| m.created_at).collect::<Vec<_>>(), [t0, t0 + 60_000]);
    // The list is newest first: the 2023 conversation now sorts after today's.
    let list = store.list_conversations(a.id, 10, 0).await.unwrap();
    assert_eq!(list.iter().map(|c| c.id).collect::<Vec<_>>(), [fresh.id, old.id]);
    // A message of another conversation is refused, and nothing of the call is kept.
    let other = store.add_message(a.id, &NewMessage::complete(fresh.id, None, Role::User, "x")).await.unwrap();
    not_found(store.set_imported_times(a.id, old.id, 7, 8, &[(q.id, 9), (other.id, 9)]).await);
    let c = store.conversation(a.id, old.id).await.unwrap();
    assert_eq!(c.created_at, t0, "the failed call rolled back");
    store.close().await;
}

/// A 5000-message chain (deeper than SQLite's 1000 levels of trigger recursion, which foreign
/// key cascades count in) goes in by batches with its times, its branch and its current leaf,
/// and can be deleted again, as can its owner.
async fn bulk_import_of_a_deep_chain(db: &TestDb) {
    let store = db.connect().await;
    let a = user(&store, "importer").await;
    let b = user(&store, "other").await;
    let t0 = 1_690_000_000_000i64;
    let n = 5000usize;
    let mut messages: Vec<ImportMessage> = (0..n)
        .map(|i| ImportMessage {
            parent: i.checked_sub(1),
            role: if i % 2 == 0 { Role::User } else { Role::Assistant },
            content: format!("message {i}"),
            model: Some("gpt-4o".into()),
            created_at: t0 + i as i64,
        })
        .collect();
    // A branch off the first answer.
    messages.push(ImportMessage { parent: Some(1), role: Role::User, content: "edited".into(), model: None, created_at: t0 + 5 });
    let c = ImportConversation {
        new: conv("deep"),
        messages,
        current: Some(n - 1),
        created_at: Some(t0),
        updated_at: Some(t0 + n as i64),
    };
    let made = store.import_conversation(a.id, &c).await.unwrap();
    assert_eq!((made.created_at, made.updated_at), (t0, t0 + n as i64));
    let all = store.messages(a.id, made.id).await.unwrap();
    assert_eq!(all.len(), n + 1);
    assert_eq!(made.current_message_id, Some(all[n - 1].id));
    for (i, m) in all.iter().take(n).enumerate() {
        assert_eq!(m.content, format!("message {i}"));
        assert_eq!(m.created_at, t0 + i as i64);
        assert_eq!(m.parent_id, i.checked_sub(1).map(|p| all[p].id));
        assert_eq!(m.status, MessageStatus::Complete);
        assert_eq!(m.model.as_deref(), (m.role == Role::Assistant).then_some("gpt-4o"));
    }
    assert_eq!(all[n].parent_id, Some(all[1].id));
    let branch = tree::path_to(&all, all[n - 1].id);
    assert_eq!(branch.len(), n);
    not_found(store.conversation(b.id, made.id).await);

    // A parent after its child is refused before anything is written.
    let bad = ImportConversation {
        messages: vec![
            ImportMessage { parent: Some(1), role: Role::User, content: "x".into(), model: None, created_at: t0 },
            ImportMessage { parent: None, role: Role::User, content: "y".into(), model: None, created_at: t0 },
        ],
        current: None,
        ..c.clone()
    };
    assert!(matches!(store.import_conversation(a.id, &bad).await, Err(StoreError::Invalid(_))));
    assert_eq!(store.list_conversations(a.id, 10, 0).await.unwrap().len(), 1);

    // A deep branch can be deleted from its first message (the cascade is one level deep);
    // the other branch stays.
    let first_answer = all[1].id;
    store.delete_message(a.id, all[2].id).await.unwrap();
    let left = store.messages(a.id, made.id).await.unwrap();
    assert_eq!(left.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["message 0", "message 1", "edited"]);
    assert_eq!(left[2].parent_id, Some(first_answer));
    not_found(store.delete_message(b.id, left[2].id).await);

    // The deep chain can be deleted, alone or with its owner.
    store.delete_conversation(a.id, made.id).await.unwrap();
    not_found(store.conversation(a.id, made.id).await);
    let again = store.import_conversation(a.id, &c).await.unwrap();
    let admin = store.create_user("root", HASH, true).await.unwrap();
    store.delete_user(admin.id, a.id).await.unwrap();
    not_found(store.conversation(a.id, again.id).await);
    store.close().await;
}

/// Answer provenance: fingerprints are written per answer (owner only), replaced on rewrite,
/// matched exactly or by shingle similarity by an admin only, and deleted with the answer.
async fn answer_fingerprints_match(db: &TestDb) {
    let store = db.connect().await;
    let root = store.create_first_admin("root", HASH).await.unwrap();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = store.create_conversation(alice.id, &conv("chat")).await.unwrap();
    let q = store.add_message(alice.id, &NewMessage::complete(c.id, None, Role::User, "q")).await.unwrap();
    let a1 = store.add_message(alice.id, &NewMessage::complete(c.id, Some(q.id), Role::Assistant, "one")).await.unwrap();
    let a2 = store.add_message(alice.id, &NewMessage::complete(c.id, Some(q.id), Role::Assistant, "two")).await.unwrap();
    assert!(!a1.marked);
    let s1: Vec<i64> = (0..100).collect();
    let s2: Vec<i64> = (1000..1100).collect();
    // Only the owner writes an answer's fingerprint; too many shingles is refused.
    not_found(store.set_answer_fingerprint(bob.id, a1.id, true, "h1", &s1).await);
    let big: Vec<i64> = (0..store::MAX_SHINGLES as i64 + 1).collect();
    assert!(matches!(store.set_answer_fingerprint(alice.id, a1.id, true, "h1", &big).await, Err(StoreError::Invalid(_))));
    // Written twice: the second replaces the first.
    store.set_answer_fingerprint(alice.id, a1.id, false, "old", &s2).await.unwrap();
    store.set_answer_fingerprint(alice.id, a1.id, true, "h1", &s1).await.unwrap();
    store.set_answer_fingerprint(alice.id, a2.id, false, "h2", &s2).await.unwrap();
    assert!(store.message(alice.id, a1.id).await.unwrap().marked);
    assert!(!store.message(alice.id, a2.id).await.unwrap().marked);

    // Non-admins may not match.
    let r = store.match_answers(alice.id, "h1", &s1, 0.5, 10).await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    // Exact copy.
    let m = store.match_answers(root.id, "h1", &s1, 0.5, 10).await.unwrap();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!((m[0].message_id, m[0].conversation_id, m[0].owner, m[0].owner_name.as_str()), (a1.id, c.id, alice.id, "alice"));
    assert!(m[0].exact && m[0].similarity == 1.0);
    // An edited copy: 90 of the 100 shingles kept, 10 new: Jaccard 90/110.
    let edited: Vec<i64> = (10..100).chain(5000..5010).collect();
    let m = store.match_answers(root.id, "other", &edited, 0.5, 10).await.unwrap();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].message_id, a1.id);
    assert!(!m[0].exact);
    assert!((m[0].similarity - 90.0 / 110.0).abs() < 1e-9, "{}", m[0].similarity);
    // Below the threshold: nothing; unrelated: nothing; the old fingerprint is gone.
    let few: Vec<i64> = (0..10).chain(6000..6090).collect();
    assert!(store.match_answers(root.id, "x", &few, 0.5, 10).await.unwrap().is_empty());
    assert!(store.match_answers(root.id, "x", &(7000..7100).collect::<Vec<_>>(), 0.1, 10).await.unwrap().is_empty());
    assert!(store.match_answers(root.id, "old", &[], 0.5, 10).await.unwrap().is_empty());
    // Both answers, best first; the limit holds.
    let mixed: Vec<i64> = (0..60).chain(1000..1030).collect();
    let m = store.match_answers(root.id, "x", &mixed, 0.1, 10).await.unwrap();
    assert_eq!(m.iter().map(|m| m.message_id).collect::<Vec<_>>(), vec![a1.id, a2.id], "{m:?}");
    assert_eq!(store.match_answers(root.id, "x", &mixed, 0.1, 1).await.unwrap().len(), 1);
    // The backfill's list: finished answers without a fingerprint, in id order, after a cursor.
    let a3 = store.add_message(alice.id, &NewMessage::complete(c.id, Some(q.id), Role::Assistant, "three")).await.unwrap();
    let _streaming = store.add_message(alice.id, &NewMessage::streaming_answer(c.id, q.id, "m")).await.unwrap();
    let todo = store.answers_without_fingerprint(MessageId(0), 10).await.unwrap();
    assert_eq!(todo, vec![(alice.id, a3.id, "three".to_string(), false)]);
    assert!(store.answers_without_fingerprint(a3.id, 10).await.unwrap().is_empty());
    store.set_answer_fingerprint(alice.id, a3.id, false, "h3", &[1]).await.unwrap();
    assert!(store.answers_without_fingerprint(MessageId(0), 10).await.unwrap().is_empty());
    // Deleting the answer deletes its fingerprint.
    store.delete_message(alice.id, a1.id).await.unwrap();
    assert!(store.match_answers(root.id, "h1", &s1, 0.5, 10).await.unwrap().is_empty());
    store.close().await;
}
