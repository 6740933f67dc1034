//! `daehwa chat`: a scripted terminal conversation on the real model.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{daehwa, scratch, smollm2, stderr, stdout};

fn spawn_chat(extra: &[&str]) -> std::process::Child {
    let d = scratch(&format!("chat-{}", extra.len()));
    let model = smollm2();
    Command::new(env!("CARGO_BIN_EXE_daehwa"))
        .arg("--models-dir")
        .arg(&d)
        .args(["chat", "-m", model.to_str().expect("utf8"), "--temp", "0"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat")
}

#[test]
fn multi_turn_korean_reset_and_exit() {
    let mut child = spawn_chat(&["-n", "12"]);
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all("What is the capital of France?\n안녕하세요! 오늘 기분이 어때요?\n/reset\n/system You are terse.\nHi\n/exit\n".as_bytes()).expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("chat output is valid UTF-8");
    let answers: Vec<&str> = text.lines().collect();
    assert_eq!(answers.len(), 3, "three answers: {text:?}");
    // The first turn is the same greedy answer `daehwa run` gives (cli_run holds that one to
    // llama.cpp's golden under the near-tie rule).
    let d = scratch("chat-run");
    let model = smollm2();
    let run = daehwa(&d, &["run", "-m", model.to_str().expect("utf8"), "--json", "--temp", "0", "-n", "12", "What is the capital of France?"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let run: serde_json::Value = serde_json::from_str(&stdout(&run)).expect("run JSON");
    assert_eq!(answers[0], run["text"].as_str().expect("text").trim_end(), "{text:?}");
    assert!(!text.contains('\u{FFFD}'));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("conversation cleared") && err.contains("system message set"), "{err}");
}

#[test]
fn ctrl_c_stops_the_answer_not_the_program() {
    let mut child = spawn_chat(&["-n", "4000", "--ctx", "4096"]);
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"Write a very long story about a dragon.\n").expect("write");
    stdin.flush().expect("flush");
    // Wait for the answer to start streaming, then press Ctrl-C.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 8];
    stdout.read_exact(&mut first).expect("answer starts");
    let t = Instant::now();
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    stdin.write_all(b"/exit\n").expect("write");
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("read");
    let status = child.wait().expect("wait");
    assert!(status.success(), "the program keeps running after Ctrl-C and exits on /exit");
    assert!(t.elapsed() < Duration::from_secs(60), "the answer stopped early");
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err).expect("stderr");
    assert!(err.contains("(stopped)"), "{err}");
}
