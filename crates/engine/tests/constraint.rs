//! Constrained decoding on the real SmolLM2-135M-Instruct: random JSON schemas and random seeds
//! always give output that parses and validates (the `jsonschema` crate is the judge); Lark
//! grammars with embedded JSON; a complete grammar ends the sequence; unsupported schemas are
//! clear errors; `logit_bias`; and unconstrained sequences stay bit-identical when constrained
//! ones run beside them in the engine thread's batch.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use engine::constraint::{ConstraintError, GrammarSource};
use engine::runner::{EngineHandle, Event, Request, RunnerConfig};
use engine::sample::SamplingParams;
use engine::text::template::ChatMessage;
use engine::{Engine, EngineConfig, FinishReason, GenParams, Session};
use proptest::prelude::*;
use serde_json::{json, Value};

fn engine() -> Arc<Engine> {
    static E: std::sync::OnceLock<Arc<Engine>> = std::sync::OnceLock::new();
    E.get_or_init(|| Arc::new(Engine::load(common::smollm2(), &EngineConfig { threads: 2, ..EngineConfig::default() }).expect("load smollm2")))
        .clone()
}

fn prompt(e: &Engine, text: &str) -> Vec<u32> {
    e.chat_prompt(&[ChatMessage::new("user", text)]).expect("prompt")
}

fn generate(e: &Engine, p: &[u32], params: GenParams) -> engine::Generation {
    let mut s = Session::new(e, 2048);
    s.generate(p, &params, |_| true).expect("generate")
}

fn constrained(src: GrammarSource, seed: u64, max_tokens: usize) -> GenParams {
    let g = engine().compile_grammar(&src).expect("compiles");
    GenParams {
        sampling: SamplingParams { seed: Some(seed), temperature: 0.9, ..SamplingParams::default() },
        max_tokens,
        grammar: Some(g),
        ..GenParams::default()
    }
}

/// Random schemas of the kinds real requests use, bounded so that every value can be finished
/// within the token budget: objects with required and optional properties, arrays with item
/// bounds, enums, nested objects, integers and numbers with bounds, strings with patterns and
/// lengths, booleans.
fn schema(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        (0i64..50, 1i64..1000).prop_map(|(lo, span)| json!({"type": "integer", "minimum": lo, "maximum": lo + span})),
        (-10i64..10).prop_map(|lo| json!({"type": "number", "minimum": lo, "maximum": lo + 100})),
        (1usize..4, 4usize..16).prop_map(|(min, max)| json!({"type": "string", "minLength": min, "maxLength": max})),
        Just(json!({"type": "string", "pattern": "^[a-z]{2,8}$"})),
        Just(json!({"type": "string", "pattern": "^[0-9]{3}-[0-9]{4}$"})),
        Just(json!({"type": "boolean"})),
        prop::sample::subsequence(vec!["red", "green", "blue", "서울", "부산"], 2..5).prop_map(|v| json!({"enum": v})),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    let inner = schema(depth - 1);
    prop_oneof![
        2 => leaf,
        1 => (inner.clone(), 0usize..2, 2usize..4).prop_map(|(items, min, max)| json!({"type": "array", "items": items, "minItems": min, "maxItems": max})),
        2 => prop::collection::vec((inner, any::<bool>()), 1..4).prop_map(|props| {
            let mut properties = serde_json::Map::new();
            let mut required = Vec::new();
            for (i, (s, req)) in props.into_iter().enumerate() {
                let name = format!("field_{i}");
                if req || i == 0 {
                    required.push(Value::from(name.clone()));
                }
                properties.insert(name, s);
            }
            json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
        }),
    ]
    .boxed()
}

fn top_schema() -> impl Strategy<Value = Value> {
    // The top level is an object, as with response_format.
    prop::collection::vec(schema(2), 1..4).prop_map(|props| {
        let properties: serde_json::Map<String, Value> = props.into_iter().enumerate().map(|(i, s)| (format!("k{i}"), s)).collect();
        let required: Vec<Value> = properties.keys().map(|k| Value::from(k.clone())).collect();
        json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
    })
}

/// 24 random schemas with random seeds. The case count is fixed here, not taken from
/// `PROPTEST_CASES` (which `.ci/run` raises for the cheap GGUF fuzzers): each case generates text.
#[test]
fn random_schemas_and_seeds_always_give_valid_json() {
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config { cases: 24, failure_persistence: None, ..Config::with_cases(24) });
    let e = engine();
    let p = prompt(&e, "Describe a city as JSON.");
    let result = runner.run(&(top_schema(), any::<u64>()), |(s, seed)| {
        let g = generate(&e, &p, constrained(GrammarSource::JsonSchema { schema: s.clone(), strict: true }, seed, 400));
        prop_assert_eq!(g.finish, FinishReason::Stop, "the grammar completes within the budget: {}", g.text);
        let v: Value = serde_json::from_str(&g.text).map_err(|err| TestCaseError::fail(format!("not JSON ({err}): {}", g.text)))?;
        let validator = jsonschema::validator_for(&s).expect("a valid schema");
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        prop_assert!(errors.is_empty(), "{} against {}: {:?}", g.text, s, errors);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Unbounded JSON numbers: a sampled model once wrote 400 fraction digits until the budget ran
/// out. Generated numbers have at most 6 fraction digits, so the value always ends.
#[test]
fn numbers_end_and_stay_valid() {
    let e = engine();
    let p = prompt(&e, "Give me a precise measurement as JSON.");
    let schema = json!({"type": "object", "properties": {"x": {"type": "number", "minimum": -10, "maximum": 90}, "y": {"type": ["number", "null"]}}, "required": ["x", "y"], "additionalProperties": false});
    for seed in 0..8 {
        let mut params = constrained(GrammarSource::JsonSchema { schema: schema.clone(), strict: true }, seed, 120);
        params.sampling.temperature = 1.3;
        let g = generate(&e, &p, params);
        assert_eq!(g.finish, FinishReason::Stop, "{}", g.text);
        let v: Value = serde_json::from_str(&g.text).unwrap_or_else(|err| panic!("{err}: {}", g.text));
        let x = v["x"].as_f64().expect("x is a number");
        assert!((-10.0..=90.0).contains(&x), "{}", g.text);
        for raw in g.text.split(|c: char| !(c.is_ascii_digit() || c == '.')).filter(|t| t.contains('.')) {
            assert!(raw.split('.').nth(1).is_some_and(|f| f.len() <= 6), "{raw} in {}", g.text);
        }
    }
}

#[test]
fn json_object_mode_gives_an_object_and_stops() {
    let e = engine();
    let p = prompt(&e, "Give me a JSON object about cats.");
    for seed in 0..4 {
        let g = generate(&e, &p, constrained(GrammarSource::JsonObject, seed, 300));
        if g.finish == FinishReason::Length {
            // A sampled string may run past the budget; the prefix is still on track.
            assert!(g.text.starts_with('{'), "{}", g.text);
            continue;
        }
        let v: Value = serde_json::from_str(&g.text).unwrap_or_else(|err| panic!("not JSON ({err}): {}", g.text));
        assert!(v.is_object(), "{}", g.text);
    }
}

#[test]
fn a_lark_grammar_with_embedded_json_is_followed_and_its_end_stops_the_sequence() {
    let e = engine();
    let p = prompt(&e, "What is 2 + 3?");
    let lark = r#"start: "<answer>" obj "</answer>"
obj: %json{"type": "object", "properties": {"value": {"type": "integer", "minimum": 0, "maximum": 100}}, "required": ["value"], "additionalProperties": false}"#;
    for seed in 0..3 {
        let g = generate(&e, &p, constrained(GrammarSource::Lark(lark.into()), seed, 200));
        assert_eq!(g.finish, FinishReason::Stop, "{}", g.text);
        let inner = g.text.strip_prefix("<answer>").and_then(|t| t.strip_suffix("</answer>")).unwrap_or_else(|| panic!("{}", g.text));
        let v: Value = serde_json::from_str(inner).expect("json");
        assert!(v["value"].as_i64().is_some_and(|n| (0..=100).contains(&n)), "{inner}");
    }
    // A closed language: the sequence ends as soon as the grammar does, EOS or not.
    let yes_no = constrained(GrammarSource::Lark(r#"start: "yes" | "no""#.into()), 1, 50);
    let g = generate(&e, &p, yes_no);
    assert!(g.text == "yes" || g.text == "no", "{:?}", g.text);
    assert_eq!(g.finish, FinishReason::Stop);
    assert!(g.tokens.len() <= 3, "{} tokens", g.tokens.len());
}

#[test]
fn what_the_library_cannot_enforce_is_a_clear_error() {
    let e = engine();
    let err = e.compile_grammar(&GrammarSource::JsonSchema { schema: json!({"type": "object", "not": {"required": ["a"]}}), strict: true }).unwrap_err();
    match err {
        ConstraintError::Unsupported(m) => assert!(m.contains("not"), "{m}"),
        other => panic!("{other:?}"),
    }
    let err = e.compile_grammar(&GrammarSource::Lark("start: ( ".into())).unwrap_err();
    assert!(matches!(err, ConstraintError::Unsupported(_)), "{err:?}");
    let err = e.compile_grammar(&GrammarSource::JsonSchema { schema: json!(["not", "a", "schema"]), strict: true }).unwrap_err();
    assert!(matches!(err, ConstraintError::Unsupported(_)), "{err:?}");
}

#[test]
fn logit_bias_makes_and_bans_tokens() {
    let e = engine();
    let p = prompt(&e, "Say hello.");
    let greedy = GenParams { sampling: SamplingParams::greedy(), max_tokens: 4, ..GenParams::default() };
    let plain = generate(&e, &p, greedy.clone());
    let first = plain.tokens[0].id;
    // -100 on greedy's first choice: something else comes first.
    let banned = generate(&e, &p, GenParams { logit_bias: vec![(first, -100.0)], ..greedy.clone() });
    assert_ne!(banned.tokens[0].id, first);
    // +100 on an unlikely token: it is chosen.
    let target = e.tokenizer.encode(" zebra", false, false)[0];
    let forced = generate(&e, &p, GenParams { logit_bias: vec![(target, 100.0)], ..greedy });
    assert_eq!(forced.tokens[0].id, target);
}

fn run(handle: &EngineHandle, prompt: Vec<u32>, params: GenParams) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    handle.submit(Request { prompt, params, salt: 0 }, Box::new(tx)).expect("submit");
    rx
}

fn collect(rx: &mpsc::Receiver<Event>) -> (Vec<u32>, Vec<u32>, String, FinishReason) {
    let (mut ids, mut lps, mut text) = (Vec::new(), Vec::new(), String::new());
    loop {
        match rx.recv_timeout(Duration::from_secs(300)).expect("event") {
            Event::Token(t) => {
                ids.push(t.id);
                lps.push(t.logprob.map_or(0, f32::to_bits));
                text.push_str(&t.text);
            }
            Event::Done { finish, tail, .. } => {
                text.push_str(&tail);
                return (ids, lps, text, finish);
            }
            Event::Error(e) => panic!("{e}"),
        }
    }
}

#[test]
fn unconstrained_sequences_are_bit_identical_beside_constrained_ones() {
    let e = engine();
    let handle = EngineHandle::start(e.clone(), RunnerConfig { n_ctx: 1024, max_seqs: 16, ..RunnerConfig::default() }).expect("start");
    let plain = GenParams { sampling: SamplingParams::greedy(), max_tokens: 40, top_logprobs: Some(3), ..GenParams::default() };
    let prompts: Vec<Vec<u32>> = ["Tell me about the sea.", "서울에 대해 말해 주세요.", "List three fruits."].iter().map(|t| prompt(&e, t)).collect();
    let alone: Vec<_> = prompts.iter().map(|p| collect(&run(&handle, p.clone(), plain.clone()))).collect();
    let schema = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0, "maximum": 120}}, "required": ["name", "age"], "additionalProperties": false});
    for round in 0..2 {
        let mut rxs = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            rxs.push((Some(i), run(&handle, p.clone(), plain.clone())));
            let c = constrained(GrammarSource::JsonSchema { schema: schema.clone(), strict: true }, round * 10 + i as u64, 100);
            rxs.push((None, run(&handle, prompt(&e, "A person as JSON."), c)));
        }
        for (which, rx) in rxs {
            let got = collect(&rx);
            match which {
                Some(i) => assert_eq!(got, alone[i], "round {round}: prompt {i} changed beside constrained sequences"),
                None => {
                    assert_eq!(got.3, FinishReason::Stop, "{}", got.2);
                    let v: Value = serde_json::from_str(&got.2).unwrap_or_else(|err| panic!("{err}: {}", got.2));
                    assert!(v["age"].is_i64() && v["name"].is_string(), "{v}");
                }
            }
        }
    }
    handle.shutdown(Duration::from_secs(1));
}
