//! Bad input to the CLI: each a one-line error on stderr and exit code 2.

mod support;

use gguf::GgmlType;
use support::{daehwa, scratch, stderr, write_tiny, Tiny};

fn assert_fails(o: &std::process::Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line expected: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` not in: {}", lines[0]);
    }
    assert!(o.stdout.is_empty(), "nothing may be written half: {}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn unknown_model_lists_the_catalog() {
    let d = scratch("err-unknown");
    let o = daehwa(&d, &["run", "-m", "no-such-model", "hi"]);
    assert_fails(&o, &["no-such-model", "smollm2", "gemma3-270m"]);
}

#[test]
fn a_file_that_is_not_gguf() {
    let d = scratch("err-notgguf");
    let f = d.join("notes.gguf");
    std::fs::write(&f, b"hello, this is not a model").expect("write");
    let o = daehwa(&d, &["run", "-m", f.to_str().expect("utf8"), "hi"]);
    assert_fails(&o, &["not a GGUF file"]);
}

#[test]
fn a_truncated_gguf() {
    let d = scratch("err-trunc");
    let f = d.join("tiny.gguf");
    write_tiny(&f, &Tiny::default());
    let bytes = std::fs::read(&f).expect("read");
    std::fs::write(&f, &bytes[..bytes.len() - 100]).expect("truncate");
    let o = daehwa(&d, &["run", "--raw", "-m", f.to_str().expect("utf8"), "hi"]);
    assert_fails(&o, &["truncated"]);
}

#[test]
fn unsupported_architecture_lists_supported_ones() {
    let d = scratch("err-arch");
    let f = d.join("mamba.gguf");
    write_tiny(&f, &Tiny { arch: "mamba", ..Tiny::default() });
    let o = daehwa(&d, &["run", "--raw", "-m", f.to_str().expect("utf8"), "hi"]);
    assert_fails(&o, &["unsupported architecture `mamba`", "llama"]);
}

#[test]
fn unsupported_quant_type() {
    let d = scratch("err-quant");
    let f = d.join("iq.gguf");
    // q8_1 is an activation type: ggml has no dot product with it as a weight.
    write_tiny(&f, &Tiny { ffn_up_type: GgmlType::Q8_1, ..Tiny::default() });
    let o = daehwa(&d, &["run", "--raw", "-m", f.to_str().expect("utf8"), "hi"]);
    assert_fails(&o, &["q8_1", "not support", "q4_1", "q3_K", "iq4_xs", "mxfp4"]);
}

#[test]
fn broken_chat_template_fails_chat_but_raw_completion_works() {
    let d = scratch("err-template");
    let f = d.join("broken.gguf");
    write_tiny(&f, &Tiny { chat_template: Some("{% for m in messages %}{{ m.content "), ..Tiny::default() });
    let path = f.to_str().expect("utf8");
    let o = daehwa(&d, &["run", "-m", path, "hi"]);
    assert_fails(&o, &["chat template"]);
    let o = daehwa(&d, &["run", "--raw", "--temp", "0", "-n", "3", "-m", path, "hi"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn model_without_template_is_a_clear_chat_error() {
    let d = scratch("err-notemplate");
    let f = d.join("plain.gguf");
    write_tiny(&f, &Tiny { chatml_tokens: false, ..Tiny::default() });
    let o = daehwa(&d, &["run", "-m", f.to_str().expect("utf8"), "hi"]);
    assert_fails(&o, &["no chat template"]);
}

#[test]
fn model_without_template_but_chatml_tokens_chats_with_the_builtin_format() {
    let d = scratch("ok-chatml");
    let f = d.join("chatml.gguf");
    write_tiny(&f, &Tiny::default());
    let o = daehwa(&d, &["run", "--json", "--temp", "0", "-n", "2", "-m", f.to_str().expect("utf8"), "hi"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&support::stdout(&o)).expect("json");
    assert_eq!(v["prompt_tokens"][0], 256, "the prompt starts with <|im_start|>");
}

#[test]
fn prompt_longer_than_the_context_names_both_numbers() {
    let d = scratch("err-ctx");
    let f = d.join("tiny.gguf");
    write_tiny(&f, &Tiny { n_ctx: 64, ..Tiny::default() });
    let long = "x".repeat(100);
    let o = daehwa(&d, &["run", "--raw", "-m", f.to_str().expect("utf8"), &long]);
    assert_fails(&o, &["100 tokens", "64"]);
}
