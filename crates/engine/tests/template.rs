//! Chat templates against the real SmolLM2 GGUF and llama.cpp's goldens, plus the behaviours every
//! HF template relies on (system prompts, multi-turn, `raise_exception`, Gemma-style templates).

mod common;

use engine::text::template::{ChatMessage, ChatTemplate, TemplateError};

fn smollm2_template() -> ChatTemplate {
    let f = gguf::GgufFile::open(common::smollm2()).expect("open the SmolLM2 GGUF");
    ChatTemplate::from_gguf(&f)
        .expect("the template compiles")
        .expect("SmolLM2 ships a template")
}

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage::new(role, content)
}

#[test]
fn smollm2_matches_llama_cpp_goldens() {
    let t = smollm2_template();
    assert_eq!(t.bos_token(), "<|im_start|>");
    assert_eq!(t.eos_token(), "<|im_end|>");
    let path = common::golden_path("chat-smollm2-q4_1.jsonl");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let entry: serde_json::Value = serde_json::from_str(line).expect("golden line is JSON");
        let messages: Vec<ChatMessage> =
            serde_json::from_value(entry["messages"].clone()).expect("messages");
        let want = entry["templated_prompt"]
            .as_str()
            .expect("templated_prompt");
        let got = t.render(&messages, true).expect("render");
        assert_eq!(got, want, "messages: {messages:?}");
        n += 1;
    }
    assert!(
        n >= 6,
        "expected the golden file to hold at least 6 prompts, found {n}"
    );
}

#[test]
fn smollm2_system_message_replaces_the_default() {
    let t = smollm2_template();
    let got = t
        .render(&[msg("system", "Be brief."), msg("user", "Hi")], true)
        .expect("render");
    assert_eq!(
        got,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\n"
    );
}

#[test]
fn smollm2_multi_turn_without_generation_prompt() {
    let t = smollm2_template();
    let msgs = [
        msg("user", "1+1?"),
        msg("assistant", "2"),
        msg("user", "2+2?"),
        msg("assistant", "4"),
    ];
    let got = t.render(&msgs, false).expect("render");
    assert_eq!(
        got,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face\
         <|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n\
         <|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
    );
}

/// Gemma's template (as shipped in Gemma 2/3 GGUFs, reindented): BOS first, `assistant` renamed to
/// `model`, a system message folded into the first user turn, and `raise_exception` on
/// non-alternating roles.
const GEMMA: &str = "{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = \"\" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = \"model\" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}
    {{- message['content'] | trim }}
    {{- '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
";

#[test]
fn gemma_style_template_renders() {
    let t = ChatTemplate::new(GEMMA, "<bos>", "<eos>").expect("compile");
    let msgs = [
        msg("system", "Be kind."),
        msg("user", "  Hello "),
        msg("assistant", "Hi!"),
    ];
    let got = t.render(&msgs, true).expect("render");
    assert_eq!(
        got,
        "<bos><start_of_turn>user\nBe kind.\n\nHello<end_of_turn>\n<start_of_turn>model\nHi!\
         <end_of_turn>\n<start_of_turn>model\n"
    );
}

#[test]
fn raise_exception_reports_the_templates_message() {
    let t = ChatTemplate::new(GEMMA, "<bos>", "<eos>").expect("compile");
    let err = t
        .render(&[msg("user", "a"), msg("user", "b")], true)
        .expect_err("must reject");
    match err {
        TemplateError::Raised(m) => {
            assert_eq!(
                m,
                "Conversation roles must alternate user/assistant/user/assistant/..."
            )
        }
        other => panic!("expected Raised, got {other:?}"),
    }
}

#[test]
fn syntax_error_is_reported_at_compile_time() {
    let err = ChatTemplate::new("{% for m in messages %}{{ m.content }}", "", "")
        .expect_err("an unclosed for must not compile");
    assert!(matches!(err, TemplateError::Invalid(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("chat template: "), "{text}");
    assert!(text.contains("syntax error"), "{text}");

    let err = ChatTemplate::new("{{ messages[0]['role' }}", "", "").expect_err("bad bracket");
    assert!(matches!(err, TemplateError::Invalid(_)), "{err:?}");
}

#[test]
fn from_gguf_reads_template_and_special_token_texts() {
    use gguf::{Array, Value};
    let mut w = gguf::GgufWriter::new();
    w.add("general.architecture", Value::String("llama".into()));
    w.add(
        "tokenizer.ggml.tokens",
        Value::Array(Array::String(vec![
            "<unk>".into(),
            "<s>".into(),
            "</s>".into(),
        ])),
    );
    w.add("tokenizer.ggml.bos_token_id", Value::U32(1));
    w.add("tokenizer.ggml.eos_token_id", Value::U32(2));
    w.add(
        "tokenizer.chat_template",
        Value::String("{{ bos_token }}{{ messages[0].content }}{{ eos_token }}".into()),
    );
    let f = gguf::GgufFile::from_bytes(w.to_bytes()).expect("parse");
    let t = ChatTemplate::from_gguf(&f)
        .expect("compiles")
        .expect("has a template");
    assert_eq!(
        t.render(&[msg("user", "x")], false).expect("render"),
        "<s>x</s>"
    );

    let mut w = gguf::GgufWriter::new();
    w.add("general.architecture", Value::String("llama".into()));
    let f = gguf::GgufFile::from_bytes(w.to_bytes()).expect("parse");
    assert!(ChatTemplate::from_gguf(&f).expect("no error").is_none());
}

#[test]
fn template_is_shareable_across_threads() {
    // The server keeps one compiled template per model behind an Arc and renders from many tasks.
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ChatTemplate>();
    let t =
        std::sync::Arc::new(ChatTemplate::new("{{ messages[0].content }}", "", "").expect("ok"));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let t = t.clone();
            std::thread::spawn(move || t.render(&[msg("user", &i.to_string())], false))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().expect("thread").expect("render"), i.to_string());
    }
}
