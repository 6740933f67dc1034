//! The SentencePiece-style (`tokenizer.ggml.model = llama`) tokenizer on tiny vocabularies built with
//! `GgufWriter`, whose expected outputs follow llama.cpp's `llm_tokenizer_spm_session` by hand, plus
//! the Gemma 3 goldens when that model is present.

mod common;

use std::path::PathBuf;

use engine::text::tokenizer::Tokenizer;
use gguf::{Array, GgufFile, GgufWriter, Value};

const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;
const NORMAL: i32 = 1;

/// A vocabulary: `<unk> <s> </s>`, the 256 byte tokens, then `pieces` (text, score, type).
fn spm_file(pieces: &[(&str, f32, i32)], extra: &[(&str, Value)]) -> GgufFile {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut scores = vec![0.0f32; 3];
    let mut types = vec![UNKNOWN, CONTROL, CONTROL];
    for b in 0..256 {
        tokens.push(format!("<0x{b:02X}>"));
        scores.push(0.0);
        types.push(BYTE);
    }
    for &(t, s, ty) in pieces {
        tokens.push(t.to_string());
        scores.push(s);
        types.push(ty);
    }
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("llama".into()));
    w.add("tokenizer.ggml.model", Value::String("llama".into()));
    w.add("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    w.add("tokenizer.ggml.scores", Value::Array(Array::F32(scores)));
    w.add("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    for (k, v) in extra {
        w.add(k, v.clone());
    }
    GgufFile::from_bytes(w.to_bytes()).expect("valid gguf")
}

const PIECES: &[(&str, f32, i32)] = &[
    ("▁", -10.0, NORMAL),
    ("h", -10.0, NORMAL),
    ("e", -10.0, NORMAL),
    ("l", -10.0, NORMAL),
    ("o", -10.0, NORMAL),
    ("a", -10.0, NORMAL),
    ("ll", -1.0, NORMAL),
    ("lo", -4.0, NORMAL),
    ("ell", -2.0, NORMAL),
    ("ello", -2.5, NORMAL),
    ("▁h", -5.0, NORMAL),
    ("he", -7.0, NORMAL),
    ("▁hello", -0.5, NORMAL),
    ("aa", -3.0, NORMAL),
    ("<start_of_turn>", 0.0, CONTROL),
    ("<custom>", 0.0, USER_DEFINED),
];

fn tok(extra: &[(&str, Value)]) -> Tokenizer {
    Tokenizer::from_gguf(&spm_file(PIECES, extra)).expect("tokenizer")
}

fn id(t: &Tokenizer, s: &str) -> u32 {
    t.token_id(s).unwrap_or_else(|| panic!("{s} not in vocab"))
}

#[test]
fn merges_by_score_and_skips_stale_pairs() {
    let t = tok(&[]);
    // ▁ h e l l o: "ll" (-1) first, which makes the queued "lo" stale; then "ell", "ello", "▁h", "▁hello".
    assert_eq!(t.encode("hello", false, false), [id(&t, "▁hello")]);
    // Without the space prefix: h e l l o -> h e ll o -> h ell o -> h ello; "hello" is not a token and
    // the queued "he" is stale (its "e" grew), so "h" and "ello" stay.
    let t2 = tok(&[("tokenizer.ggml.add_space_prefix", Value::Bool(false))]);
    assert_eq!(t2.encode("hello", false, false), [id(&t2, "h"), id(&t2, "ello")]);
}

#[test]
fn equal_scores_merge_leftmost_first() {
    let t = tok(&[("tokenizer.ggml.add_space_prefix", Value::Bool(false))]);
    assert_eq!(t.encode("aaa", false, false), [id(&t, "aa"), id(&t, "a")]);
    assert_eq!(t.encode("aaaa", false, false), [id(&t, "aa"), id(&t, "aa")]);
}

#[test]
fn unknown_characters_fall_back_to_bytes() {
    let t = tok(&[("tokenizer.ggml.add_space_prefix", Value::Bool(false))]);
    // 'é' = C3 A9 has no piece: byte tokens <0xC3> <0xA9> (ids 3 + byte).
    assert_eq!(t.encode("hé", false, false), [id(&t, "h"), 3 + 0xC3, 3 + 0xA9]);
    assert_eq!(t.decode(&[id(&t, "h"), 3 + 0xC3, 3 + 0xA9], false), "hé");
    assert_eq!(t.token_to_piece(3 + 0x41, false), b"A");
}

#[test]
fn bos_eos_and_space_prefix_defaults() {
    let t = tok(&[]);
    assert!(t.add_bos() && !t.add_eos());
    assert_eq!((t.bos(), t.eos()), (Some(1), Some(2)));
    assert_eq!(t.encode("hello", true, false), [1, id(&t, "▁hello")]);
    assert_eq!(t.encode("", true, false), [1]);
    assert_eq!(t.encode("", false, false), Vec::<u32>::new());
    let t = tok(&[
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        ("tokenizer.ggml.add_eos_token", Value::Bool(true)),
    ]);
    assert_eq!(t.encode("hello", true, false), [id(&t, "▁hello"), 2]);
    assert!(t.is_eog(2) && !t.is_eog(1));
}

#[test]
fn special_tokens_and_space_prefix_after_them() {
    let t = tok(&[]);
    let sot = id(&t, "<start_of_turn>");
    let custom = id(&t, "<custom>");
    // Each text fragment after a special token gets the prefix space again (llama.cpp's is_prev_special).
    assert_eq!(t.encode("<start_of_turn>hello", false, true), [sot, id(&t, "▁hello")]);
    // Without parse_special the control token is plain text; the user-defined one still matches.
    let plain = t.encode("<start_of_turn>", false, false);
    assert!(!plain.contains(&sot) && !plain.is_empty());
    assert_eq!(t.encode("hello<custom>", false, false), [id(&t, "▁hello"), custom]);
    assert!(t.is_control(sot) && !t.is_control(custom));
    assert_eq!(t.token_to_piece(sot, false), b"");
    assert_eq!(t.token_to_piece(sot, true), b"<start_of_turn>");
    assert_eq!(t.token_to_piece(custom, false), b"<custom>");
}

#[test]
fn decode_strips_the_prefix_space_of_the_first_token_only() {
    let t = tok(&[]);
    let hello = id(&t, "▁hello");
    assert_eq!(t.decode(&[hello, hello], false), "hello hello");
    // llama_detokenize(remove_special=false): a leading BOS consumes the strip.
    assert_eq!(t.decode(&[1, hello], false), " hello");
    assert_eq!(t.decode(&[1, hello], true), "<s> hello");
}

#[test]
fn unknown_model_and_pre_tokenizer_are_errors() {
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", Value::String("t5".into()));
    w.add("tokenizer.ggml.tokens", Value::Array(Array::String(vec!["a".into()])));
    let f = GgufFile::from_bytes(w.to_bytes()).expect("gguf");
    let e = Tokenizer::from_gguf(&f).err().expect("t5 unsupported").to_string();
    assert!(e.contains("t5") && e.contains("gpt2"), "{e}");

    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", Value::String("gpt2".into()));
    w.add("tokenizer.ggml.pre", Value::String("no-such-pre".into()));
    w.add("tokenizer.ggml.tokens", Value::Array(Array::String(vec!["a".into()])));
    w.add("tokenizer.ggml.merges", Value::Array(Array::String(vec![])));
    let f = GgufFile::from_bytes(w.to_bytes()).expect("gguf");
    let e = Tokenizer::from_gguf(&f).err().expect("unknown pre").to_string();
    assert!(e.contains("no-such-pre") && e.contains("smollm") && e.contains("llama3"), "{e}");
}

#[test]
fn a_gemma_sized_vocabulary_loads_fast() {
    let n = 262_144 - 259;
    let filler: Vec<(String, f32)> = (PIECES.len()..n).map(|i| (format!("▁w{i:x}"), -100.0 - i as f32)).collect();
    let mut refs: Vec<(&str, f32, i32)> = PIECES.to_vec();
    refs.extend(filler.iter().map(|(s, f)| (s.as_str(), *f, NORMAL)));
    let f = spm_file(&refs, &[]);
    let start = std::time::Instant::now();
    let t = Tokenizer::from_gguf(&f).expect("tokenizer");
    let elapsed = start.elapsed();
    assert_eq!(t.n_vocab(), 262_144);
    assert!(elapsed.as_millis() < 700, "loading a 262k vocabulary took {elapsed:?}");
    assert_eq!(t.encode("hello", false, false), [t.token_id("▁hello").expect("piece")]);
    assert_eq!(t.token_text(262_143), format!("▁w{:x}", n - 1));
}

#[test]
fn gemma3_goldens_when_the_model_is_present() {
    let Some(path) = common::find_model("gemma3-270m", "DAEHWA_GEMMA3_GGUF") else {
        // scripts/test pulls the model and sets DAEHWA_REQUIRE_GEMMA=1: there, absence is a failure.
        assert!(
            std::env::var("DAEHWA_REQUIRE_GEMMA").as_deref() != Ok("1"),
            "gemma3-270m.gguf is missing (DAEHWA_REQUIRE_GEMMA=1): run `cargo run --release -- pull gemma3-270m`"
        );
        common::skip("the Gemma 3 tokenizer goldens", "gemma3-270m.gguf not found: run `cargo run --release -- pull gemma3-270m`");
        return;
    };
    let f = GgufFile::open(&path).expect("open gemma");
    let t = Tokenizer::from_gguf(&f).expect("gemma tokenizer");
    let dir = std::env::var_os("DAEHWA_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/golden")));
    let text = std::fs::read_to_string(dir.join("tokenize-gemma3.jsonl")).expect("gemma golden");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).expect("json");
        let name = case["name"].as_str().expect("name");
        let input = case["text"].as_str().expect("text");
        for (key, want) in case["ids"].as_object().expect("ids") {
            let want: Vec<u32> = want.as_array().expect("ids").iter().map(|x| x.as_u64().expect("id") as u32).collect();
            let got = t.encode(input, key.contains("add_special=true"), key.contains("parse_special=true"));
            assert_eq!(got, want, "{name}: {key}");
        }
        let ids = t.encode(input, false, true);
        assert_eq!(t.decode(&ids, true), case["detokenize"].as_str().expect("detokenize"), "{name}");
    }
}

#[test]
fn tokenizer_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<engine::text::stream::StreamDecoder>();
}
