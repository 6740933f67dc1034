//! Use-case policies, run once on SQLite and once on PostgreSQL (see `common`).

mod common;

use common::TestDb;
use store::{ApiKeyId, PolicyId, PolicySpec, PolicySubject, Store, StoreError, User};

backend_tests!(
    policies_crud_admin_only_and_audited,
    precedence_key_then_user_then_default,
    audit_trail_is_append_only,
    daily_token_counts_per_subject,
);

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

fn spec(name: &str) -> PolicySpec {
    PolicySpec { name: name.into(), show_marks: true, show_energy: true, ..PolicySpec::default() }
}

async fn admin_and_user(store: &Store) -> (User, User) {
    let admin = store.create_first_admin("root", HASH).await.expect("admin");
    let alice = store.create_user("alice", HASH, false).await.expect("alice");
    (admin, alice)
}

async fn policies_crud_admin_only_and_audited(db: &TestDb) {
    let store = db.connect().await;
    let (admin, alice) = admin_and_user(&store).await;
    let mut s = spec("학교");
    s.system_prompt = Some("Answer as a tutor.".into());
    s.allowed_models = vec!["smollm2".into()];
    s.max_tokens_per_answer = Some(64);
    s.max_tokens_per_day = Some(1000);
    s.show_energy = false;
    let p = store.create_policy(admin.id, &s).await.unwrap();
    assert_eq!(p.spec, s);
    assert!(p.allows_model("smollm2") && !p.allows_model("qwen"));
    assert!(matches!(store.create_policy(alice.id, &spec("x")).await, Err(StoreError::Forbidden(_))));
    assert!(matches!(store.list_policies(alice.id).await, Err(StoreError::Forbidden(_))));
    assert!(matches!(store.policy_audit(alice.id, 10).await, Err(StoreError::Forbidden(_))));
    // Names are unique regardless of case, and checked.
    let dup = store.create_policy(admin.id, &spec("학교")).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert!(matches!(store.create_policy(admin.id, &spec(" pad")).await, Err(StoreError::Invalid(_))));
    let mut zero = spec("zero");
    zero.max_tokens_per_day = Some(0);
    assert!(matches!(store.create_policy(admin.id, &zero).await, Err(StoreError::Invalid(_))));

    let mut s2 = s.clone();
    s2.max_tokens_per_answer = Some(32);
    let p2 = store.update_policy(admin.id, p.id, &s2).await.unwrap();
    assert_eq!(p2.spec.max_tokens_per_answer, Some(32));
    assert!(matches!(store.update_policy(admin.id, PolicyId(9999), &s2).await, Err(StoreError::NotFound)));
    store.assign_policy(admin.id, &PolicySubject::User(alice.id), Some(p.id)).await.unwrap();
    assert_eq!(store.list_policies(admin.id).await.unwrap()[0].subjects, vec![PolicySubject::User(alice.id)]);
    store.delete_policy(admin.id, p.id).await.unwrap();
    assert!(store.list_policies(admin.id).await.unwrap().is_empty());
    assert_eq!(store.policy_for(&[PolicySubject::User(alice.id)]).await.unwrap(), None, "the assignment went with it");

    let trail = store.policy_audit(admin.id, 100).await.unwrap();
    let actions: Vec<&str> = trail.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["delete", "assign", "update", "create"], "newest first");
    assert!(trail.iter().all(|a| a.actor_name == "root" && a.actor_id == Some(admin.id) && a.policy_name == "학교"));
    let update = &trail[2];
    assert_eq!(update.old_value.as_ref().unwrap()["spec"]["max_tokens_per_answer"], 64);
    assert_eq!(update.new_value.as_ref().unwrap()["spec"]["max_tokens_per_answer"], 32);
    assert_eq!(trail[1].subject.as_deref(), Some(format!("user:{}", alice.id).as_str()));
    assert_eq!(trail[0].new_value, None);
    assert_eq!(trail[0].old_value.as_ref().unwrap()["subjects"][0], format!("user:{}", alice.id));
    assert_eq!(store.policy_audit(admin.id, 1).await.unwrap().len(), 1);
}

async fn precedence_key_then_user_then_default(db: &TestDb) {
    let store = db.connect().await;
    let (admin, alice) = admin_and_user(&store).await;
    let bob = store.create_user("bob", HASH, false).await.unwrap();
    let key = store.create_api_key(alice.id, "ci", "dh-abc", "hash-1").await.unwrap();
    let (a_key, a_user) = (PolicySubject::ApiKey(key.id), PolicySubject::User(alice.id));
    let server = PolicySubject::ServerKey(PolicySubject::server_key_label("sk-test"));
    assert_eq!(store.policy_for(&[a_key.clone(), a_user.clone()]).await.unwrap(), None, "no policy at all");

    let mut d = spec("everyone");
    d.is_default = true;
    let everyone = store.create_policy(admin.id, &d).await.unwrap();
    let strict = store.create_policy(admin.id, &spec("strict")).await.unwrap();
    let keyed = store.create_policy(admin.id, &spec("keyed")).await.unwrap();
    let name = |p: Option<store::Policy>| p.map(|p| p.spec.name);
    assert_eq!(name(store.policy_for(&[PolicySubject::User(bob.id)]).await.unwrap()).as_deref(), Some("everyone"));
    store.assign_policy(admin.id, &a_user, Some(strict.id)).await.unwrap();
    assert_eq!(name(store.policy_for(&[a_key.clone(), a_user.clone()]).await.unwrap()).as_deref(), Some("strict"));
    store.assign_policy(admin.id, &a_key, Some(keyed.id)).await.unwrap();
    assert_eq!(name(store.policy_for(&[a_key.clone(), a_user.clone()]).await.unwrap()).as_deref(), Some("keyed"), "the key before its owner");
    assert_eq!(name(store.policy_for(std::slice::from_ref(&a_user)).await.unwrap()).as_deref(), Some("strict"));
    // One policy per subject: assigning again replaces.
    store.assign_policy(admin.id, &a_user, Some(keyed.id)).await.unwrap();
    store.assign_policy(admin.id, &server, Some(strict.id)).await.unwrap();
    let all = store.list_policies(admin.id).await.unwrap();
    let subjects = |n: &str| all.iter().find(|p| p.spec.name == n).unwrap().subjects.clone();
    assert_eq!(subjects("keyed").len(), 2);
    assert_eq!(subjects("strict"), vec![server.clone()]);
    store.assign_policy(admin.id, &a_user, None).await.unwrap();
    assert_eq!(name(store.policy_for(std::slice::from_ref(&a_user)).await.unwrap()).as_deref(), Some("everyone"));
    assert!(matches!(store.assign_policy(admin.id, &a_user, Some(PolicyId(9999))).await, Err(StoreError::NotFound)));

    // At most one default: a new default replaces the old.
    let mut d2 = spec("new default");
    d2.is_default = true;
    store.create_policy(admin.id, &d2).await.unwrap();
    assert!(!store.policy(everyone.id).await.unwrap().spec.is_default);
    assert_eq!(name(store.policy_for(&[PolicySubject::User(bob.id)]).await.unwrap()).as_deref(), Some("new default"));

    // Subjects parse from and print to their stored form.
    assert_eq!("apikey:7".parse::<PolicySubject>().unwrap(), PolicySubject::ApiKey(ApiKeyId(7)));
    for bad in ["user:", "user:x", "apikey:-1", "serverkey:", "serverkey:a b", "group:1", "nothing"] {
        assert!(bad.parse::<PolicySubject>().is_err(), "{bad}");
    }
    assert_eq!(PolicySubject::server_key_label("sk-test").len(), 12);
}

async fn audit_trail_is_append_only(db: &TestDb) {
    let store = db.connect().await;
    let (admin, _) = admin_and_user(&store).await;
    store.create_policy(admin.id, &spec("p")).await.unwrap();
    let url = db.url.clone();
    // Straight SQL, as an operator with the database in hand would try.
    let (upd, del) = if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        (
            sqlx::query("UPDATE policy_audit SET actor_name = 'x'").execute(&pool).await.map(drop),
            sqlx::query("DELETE FROM policy_audit").execute(&pool).await.map(drop),
        )
    } else {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        (
            sqlx::query("UPDATE policy_audit SET actor_name = 'x'").execute(&pool).await.map(drop),
            sqlx::query("DELETE FROM policy_audit").execute(&pool).await.map(drop),
        )
    };
    assert!(upd.unwrap_err().to_string().contains("append-only"));
    assert!(del.unwrap_err().to_string().contains("append-only"));
    assert_eq!(store.policy_audit(admin.id, 10).await.unwrap().len(), 1);
}

async fn daily_token_counts_per_subject(db: &TestDb) {
    let store = db.connect().await;
    assert_eq!(store.policy_tokens_today("user:1").await.unwrap(), 0);
    store.add_policy_tokens("user:1", 30).await.unwrap();
    store.add_policy_tokens("user:1", 12).await.unwrap();
    store.add_policy_tokens("serverkey:abc", 5).await.unwrap();
    assert_eq!(store.policy_tokens_today("user:1").await.unwrap(), 42);
    assert_eq!(store.policy_tokens_today("serverkey:abc").await.unwrap(), 5);
    // Concurrent answers all count.
    let tasks: Vec<_> = (0..8).map(|_| { let s = store.clone(); tokio::spawn(async move { s.add_policy_tokens("user:2", 3).await }) }).collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.policy_tokens_today("user:2").await.unwrap(), 24);
}
