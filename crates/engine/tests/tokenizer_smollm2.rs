//! The byte-level BPE tokenizer on the real SmolLM2 vocabulary against llama.cpp's outputs
//! (`shared/golden/tokenize-smollm2.jsonl` and the chat prompts of `chat-smollm2-q4_1.jsonl`).

mod common;

use common::{golden, ids};

use engine::text::stream::StreamDecoder;
use engine::text::tokenizer::Tokenizer;
use serde_json::Value;

fn tokenizer() -> Tokenizer {
    let f = gguf::GgufFile::open(common::smollm2()).expect("open gguf");
    Tokenizer::from_gguf(&f).expect("tokenizer")
}

/// A golden piece: a string, or the raw bytes when they are not valid UTF-8.
fn piece_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Array(a) => a.iter().map(|b| b.as_u64().expect("byte") as u8).collect(),
        other => panic!("bad piece {other}"),
    }
}

#[test]
fn metadata_matches_llama_cpp() {
    let t = tokenizer();
    assert_eq!(t.n_vocab(), 49152);
    assert_eq!(t.bos(), Some(1));
    assert_eq!(t.eos(), Some(2));
    assert!(!t.add_bos() && !t.add_eos());
    assert_eq!(t.token_id("<|im_end|>"), Some(2));
    assert_eq!(t.token_text(198), "Ċ");
    // <|endoftext|>, <|im_end|> and the FIM repo-name token end generation; ordinary tokens do not.
    assert!(t.is_eog(0) && t.is_eog(2) && t.is_eog(4));
    assert!(!t.is_eog(1) && !t.is_eog(198));
    assert!(t.is_control(1) && !t.is_control(198));
}

#[test]
fn golden_strings_tokenize_like_llama_cpp() {
    let t = tokenizer();
    let cases = golden("tokenize-smollm2.jsonl");
    assert!(cases.len() >= 12);
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let text = case["text"].as_str().expect("text");
        let mut combos = 0;
        for (key, want) in case["ids"].as_object().expect("ids") {
            let add = key.contains("add_special=true");
            let parse = key.contains("parse_special=true");
            assert_eq!(t.encode(text, add, parse), ids(want), "{name}: {key}");
            combos += 1;
        }
        assert_eq!(combos, 4, "{name}");
        for (key, want) in case["pieces"].as_object().expect("pieces") {
            let parse = key.contains("parse_special=true");
            let got: Vec<Vec<u8>> = t.encode(text, false, parse).iter().map(|&id| t.token_to_piece(id, true)).collect();
            let want: Vec<Vec<u8>> = want.as_array().expect("pieces").iter().map(piece_bytes).collect();
            assert_eq!(got, want, "{name}: pieces {key}");
        }
        let default_ids = ids(&case["ids"]["add_special=false,parse_special=true"]);
        assert_eq!(t.decode(&default_ids, true), case["detokenize_of_default_ids"].as_str().expect("str"), "{name}");
        let plain_ids = ids(&case["ids"]["add_special=false,parse_special=false"]);
        assert_eq!(
            t.decode(&plain_ids, true),
            case["detokenize_of_parse_special_false_ids"].as_str().expect("str"),
            "{name}"
        );
        if case["roundtrip_exact"].as_bool() == Some(true) {
            assert_eq!(t.decode(&default_ids, true), text, "{name}: round trip");
        }
    }
}

#[test]
fn special_tokens_render_only_when_asked() {
    let t = tokenizer();
    let ids = t.encode("<|im_start|>user\nHi<|im_end|>\n", false, true);
    assert_eq!(ids, [1, 4093, 198, 26843, 2, 198]);
    assert_eq!(t.decode(&ids, false), "user\nHi\n");
    assert!(t.token_to_piece(2, false).is_empty());
    assert_eq!(t.token_to_piece(2, true), b"<|im_end|>");
    // Adjacent special tokens and special tokens at the edges.
    assert_eq!(t.encode("<|im_end|><|im_start|>", false, true), [2, 1]);
}

#[test]
fn chat_prompts_tokenize_like_llama_server() {
    let t = tokenizer();
    let cases = golden("chat-smollm2-q4_1.jsonl");
    assert!(cases.len() >= 6);
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let prompt = case["templated_prompt"].as_str().expect("prompt");
        assert_eq!(t.encode(prompt, false, true), ids(&case["prompt_token_ids"]), "{name}");
        assert_eq!(t.encode(prompt, true, true), ids(&case["prompt_token_ids_add_special_true"]), "{name}");
        let pieces: Vec<Vec<u8>> = case["prompt_token_pieces"].as_array().expect("pieces").iter().map(piece_bytes).collect();
        let got: Vec<Vec<u8>> = ids(&case["prompt_token_ids"]).iter().map(|&id| t.token_to_piece(id, true)).collect();
        assert_eq!(got, pieces, "{name}: pieces");
        assert_eq!(t.decode(&ids(&case["prompt_token_ids"]), true), prompt, "{name}: decode");
        // The generated text is what streaming the generated ids produces (stopping at the EOG token).
        let gen = ids(&case["generated_token_ids"]);
        let mut d = StreamDecoder::new(false);
        let mut text = String::new();
        for &id in gen.iter().take_while(|&&id| !t.is_eog(id)) {
            text += &d.push(&t, id);
        }
        text += &d.finish();
        assert_eq!(text, case["generated_text"].as_str().expect("text"), "{name}: generated text");
    }
}

#[test]
fn streaming_korean_never_emits_replacement_characters() {
    let t = tokenizer();
    let korean = golden("tokenize-smollm2.jsonl")
        .into_iter()
        .find(|c| c["name"] == "korean_hangul")
        .expect("korean case");
    let text = korean["text"].as_str().expect("text");
    let ids = t.encode(text, false, false);
    let mut d = StreamDecoder::new(false);
    let mut out = String::new();
    let mut held_back = 0;
    for &id in &ids {
        let chunk = d.push(&t, id);
        assert!(!chunk.contains('\u{FFFD}'), "U+FFFD after token {id}: {chunk:?}");
        if d.pending_len() > 0 {
            held_back += 1;
        }
        out += &chunk;
    }
    assert_eq!(d.finish(), "");
    assert_eq!(out, text);
    assert!(held_back > 10, "single-byte Hangul tokens must be held back");
}

#[test]
fn streaming_flushes_an_unfinished_byte_as_replacement() {
    let t = tokenizer();
    // Token 183 is the single byte 0xEC, the lead byte of a three-byte Hangul syllable.
    assert_eq!(t.token_to_piece(183, false), [0xEC]);
    let mut d = StreamDecoder::new(false);
    assert_eq!(d.push(&t, 19556), "Hello");
    assert_eq!(d.push(&t, 183), "");
    assert_eq!(d.finish(), "\u{FFFD}");
    // A lead byte followed by a byte that cannot continue it is replaced right away.
    let mut d = StreamDecoder::new(false);
    assert_eq!(d.push(&t, 183), "");
    assert_eq!(d.push(&t, 19556), "\u{FFFD}Hello");
}

#[test]
fn long_prompt_encodes_in_milliseconds() {
    let t = tokenizer();
    let para = "The quick brown fox jumps over the lazy dog; 안녕하세요 세계! fn main() { println!(\"{}\", 42); }\n";
    let text = para.repeat(60);
    let start = std::time::Instant::now();
    let ids = t.encode(&text, false, true);
    let elapsed = start.elapsed();
    assert!(ids.len() > 2000, "{} tokens", ids.len());
    assert_eq!(t.decode(&ids, true), text);
    // "A few milliseconds" on an idle core; the bound leaves room for a busy CI machine.
    assert!(elapsed.as_millis() < 100, "encoding {} tokens took {elapsed:?}", ids.len());
}
