//! `kill -9` in the middle of a streamed answer loses nothing committed and corrupts nothing.
//!
//! The test re-executes its own binary running only `kill9_writer` (with the store URL in an
//! environment variable): a writer that adds question/answer pairs in a loop, streaming each
//! answer in small committed appends and reporting every step on stdout. The test SIGKILLs it
//! in the middle of an answer, reopens the store and checks every message.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::TestDb;
use store::{MessageFinish, MessageStatus, NewConversation, NewMessage, Role, Store, UserId};
use tokio::io::{AsyncBufReadExt, BufReader};

const URL_VAR: &str = "DAEHWA_STORE_KILL9_URL";
const TOKENS: usize = 200;
/// The writer is killed once this many appends of an answer are reported committed.
const KILL_AFTER: usize = 6;

/// The text an answer has after `n` appends.
fn answer_prefix(n: usize) -> String {
    (0..n).map(|j| format!("토큰{j} ")).collect()
}

backend_tests!(killed_writer_leaves_a_consistent_store);

/// The writer side: does nothing unless started by the test below with `URL_VAR` set.
#[tokio::test]
async fn kill9_writer() {
    let Ok(url) = std::env::var(URL_VAR) else { return };
    let store = Store::connect(&url).await.expect("writer connect");
    let user = store.create_user("writer", "$argon2id$x", false).await.expect("user");
    let conv = store
        .create_conversation(user.id, &NewConversation { title: "stream".into(), ..Default::default() })
        .await
        .expect("conversation");
    println!("DAEHWA U {} {}", user.id, conv.id);
    let mut parent = None;
    for i in 0..10_000 {
        let q = store
            .add_message(user.id, &NewMessage::complete(conv.id, parent, Role::User, format!("question {i}")))
            .await
            .expect("question");
        let a = store
            .add_message(user.id, &NewMessage::streaming_answer(conv.id, q.id, "m"))
            .await
            .expect("answer");
        println!("DAEHWA S {}", a.id);
        for j in 0..TOKENS {
            store.append_to_message(user.id, a.id, &format!("토큰{j} ")).await.expect("append");
            println!("DAEHWA A {} {}", a.id, j + 1);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let done = MessageFinish {
            status: MessageStatus::Complete,
            content: None,
            prompt_tokens: Some(3),
            completion_tokens: Some(TOKENS as i64), energy: None,
        };
        store.finish_message(user.id, a.id, &done).await.expect("finish");
        println!("DAEHWA C {}", a.id);
        parent = Some(a.id);
    }
}

async fn killed_writer_leaves_a_consistent_store(db: &TestDb) {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = tokio::process::Command::new(exe)
        .args(["kill9_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(URL_VAR, &db.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the writer");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut ids = (UserId(0), 0i64);
    let mut completed = Vec::new();
    let mut streaming = None;
    let read = async {
        while let Some(line) = lines.next_line().await.expect("read writer output") {
            // libtest may print "test kill9_writer ... " on the same line first.
            let Some(at) = line.find("DAEHWA ") else { continue };
            let mut f = line[at..].split_whitespace().skip(1);
            match (f.next(), f.next(), f.next()) {
                (Some("U"), Some(u), Some(c)) => {
                    ids = (UserId(u.parse().expect("id")), c.parse().expect("id"))
                }
                (Some("S"), Some(a), _) => streaming = Some(a.parse::<i64>().expect("id")),
                (Some("A"), Some(_), Some(n)) => {
                    if completed.len() >= 3 && n.parse::<usize>().expect("count") >= KILL_AFTER {
                        return;
                    }
                }
                (Some("C"), Some(a), _) => completed.push(a.parse::<i64>().expect("id")),
                _ => panic!("unexpected writer line {line:?}"),
            }
        }
        panic!("the writer exited early");
    };
    tokio::time::timeout(Duration::from_secs(120), read).await.expect("writer too slow");
    // Mid-answer: KILL_AFTER appends are committed and ~200 more (2 ms apart) to come.
    child.start_kill().expect("SIGKILL the writer");
    let status = child.wait().await.expect("reap the writer");
    assert!(!status.success(), "the writer was killed, not finished: {status:?}");
    let interrupted = streaming.expect("an answer was streaming");

    let store = db.connect().await;
    if store.kind() == store::BackendKind::Postgres {
        // connect() leaves recent streams alone there (another replica may own them).
        store.recover_interrupted(store::now_ms() + 1).await.expect("recover");
    }
    assert!(store.check_integrity().await.expect("integrity check").is_empty());
    let (user, conv) = ids;
    let messages = store.messages(user, store::ConversationId(conv)).await.expect("messages");
    let full = answer_prefix(TOKENS);
    for m in &messages {
        match m.role {
            Role::User => {
                assert_eq!(m.status, MessageStatus::Complete);
                assert!(m.content.starts_with("question "), "{m:?}");
            }
            Role::Assistant => match m.status {
                MessageStatus::Complete => assert_eq!(m.content, full, "{m:?}"),
                MessageStatus::Incomplete => {
                    // Only whole appends: the text is the first n tokens for some n.
                    let n = m.content.matches(' ').count();
                    assert_eq!(m.content, answer_prefix(n), "torn append in {m:?}");
                    assert!(n < TOKENS);
                }
                MessageStatus::Streaming => panic!("left streaming after recovery: {m:?}"),
            },
            _ => panic!("unexpected role in {m:?}"),
        }
    }
    for id in &completed {
        let m = messages.iter().find(|m| m.id.0 == *id).expect("a completed answer is missing");
        assert_eq!((m.status, m.completion_tokens), (MessageStatus::Complete, Some(TOKENS as i64)));
    }
    let m = messages.iter().find(|m| m.id.0 == interrupted).expect("the interrupted answer");
    assert_eq!(m.status, MessageStatus::Incomplete, "killed mid-stream: {m:?}");
    assert!(
        m.content.starts_with(&answer_prefix(KILL_AFTER)),
        "appends reported before the kill were committed: {m:?}"
    );
    assert_eq!(
        messages.iter().filter(|m| m.status == MessageStatus::Incomplete).count(),
        1,
        "exactly the interrupted answer is incomplete"
    );
    store.close().await;
}
