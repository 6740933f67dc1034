use super::*;

fn cfg(family: Family, tools: bool, reasoning: bool) -> ParserConfig {
    ParserConfig { family, tools, reasoning, in_reasoning: false, single_call: false }
}

/// Parses `text` in one piece and split at every byte boundary (and one byte at a time):
/// every split gives the same message, ids aside.
fn parse_all_splits(c: &ParserConfig, text: &str) -> ParsedMessage {
    let strip = |mut m: ParsedMessage| {
        m.tool_calls.iter_mut().for_each(|t| t.id.clear());
        m
    };
    let whole = {
        let mut p = OutputParser::new(c.clone());
        p.push(text);
        p.finish();
        p.into_message()
    };
    assert!(whole.tool_calls.iter().all(|t| t.id.starts_with("call_") && t.id.len() == 29), "{whole:?}");
    let whole = strip(whole);
    for cut in 0..=text.len() {
        if !text.is_char_boundary(cut) {
            continue;
        }
        let mut p = OutputParser::new(c.clone());
        let mut events = p.push(&text[..cut]);
        events.extend(p.push(&text[cut..]));
        events.extend(p.finish());
        let mut from_events = ParsedMessage::default();
        events.iter().for_each(|e| from_events.apply(e));
        assert_eq!(from_events, *p.message(), "events sum to the message");
        assert_eq!(strip(p.into_message()), whole, "split at {cut} of {text:?}");
    }
    let mut p = OutputParser::new(c.clone());
    for (i, ch) in text.char_indices() {
        p.push(&text[i..i + ch.len_utf8()]);
    }
    p.finish();
    assert_eq!(strip(p.into_message()), whole, "char by char");
    whole
}

fn calls(m: &ParsedMessage) -> Vec<(&str, serde_json::Value)> {
    m.tool_calls
        .iter()
        .map(|c| (c.name.as_str(), serde_json::from_str(&c.arguments).expect("arguments are JSON")))
        .collect()
}

#[test]
fn plain_text_passes_through_exactly() {
    let m = parse_all_splits(&ParserConfig::plain(), "  Hello <tool_call> </think>\n\n ");
    assert_eq!(m.content, "  Hello <tool_call> </think>\n\n ");
    assert_eq!((m.reasoning, m.tool_calls.len()), (None, 0));
}

#[test]
fn hermes_calls_and_text() {
    let c = cfg(Family::Hermes, true, false);
    let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Seoul\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n</tool_call>\n";
    let m = parse_all_splits(&c, text);
    assert_eq!(m.content, "Let me check.");
    assert_eq!(calls(&m), vec![("get_weather", serde_json::json!({"city": "Seoul"})), ("time", serde_json::json!({}))]);
    // Unclosed at the end (the model stopped at its end token): still a call.
    let m = parse_all_splits(&c, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}");
    assert_eq!(calls(&m), vec![("f", serde_json::json!({"a": 1}))]);
    // Not JSON: the text is kept as content.
    let m = parse_all_splits(&c, "a <tool_call>oops</tool_call> b");
    assert_eq!((m.content.as_str(), m.tool_calls.len()), ("a <tool_call>oops</tool_call> b", 0));
    // No call at all: content as written, a partial tag at the end included.
    let m = parse_all_splits(&c, "The answer is 4. <tool_ca");
    assert_eq!(m.content, "The answer is 4. <tool_ca");
}

#[test]
fn single_call_keeps_the_first() {
    let mut c = cfg(Family::Hermes, true, false);
    c.single_call = true;
    let m = parse_all_splits(&c, "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"b\", \"arguments\": {}}</tool_call>");
    assert_eq!(calls(&m), vec![("a", serde_json::json!({}))]);
}

#[test]
fn llama3_json_calls() {
    let c = cfg(Family::Llama3, true, false);
    let m = parse_all_splits(&c, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}");
    assert_eq!(calls(&m), vec![("get_weather", serde_json::json!({"city": "Paris"}))]);
    let m = parse_all_splits(&c, "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"x\": [1]}}");
    assert_eq!(calls(&m), vec![("a", serde_json::json!({})), ("b", serde_json::json!({"x": [1]}))]);
    let m = parse_all_splits(&c, "It is sunny.");
    assert_eq!((m.content.as_str(), m.tool_calls.len()), ("It is sunny.", 0));
    let m = parse_all_splits(&c, "{\"not\": \"a call\"}");
    assert_eq!((m.content.as_str(), m.tool_calls.len()), ("{\"not\": \"a call\"}", 0));
}

#[test]
fn generic_envelope() {
    let c = cfg(Family::Generic, true, false);
    let m = parse_all_splits(&c, "{\"tool_calls\": [{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}]}");
    assert_eq!(calls(&m), vec![("add", serde_json::json!({"a": 2, "b": 3}))]);
    let m = parse_all_splits(&c, "{\"response\": \"Hi \\\"there\\\" \\u00e9\"}");
    assert_eq!((m.content.as_str(), m.tool_calls.len()), ("Hi \"there\" é", 0));
    let m = parse_all_splits(&c, "{\"tool_call\": {\"name\": \"x\", \"arguments\": {}}}");
    assert_eq!(calls(&m), vec![("x", serde_json::json!({}))]);
    let m = parse_all_splits(&c, "plain words");
    assert_eq!(m.content, "plain words");
}

#[test]
fn reasoning_is_split_from_content() {
    let c = cfg(Family::Hermes, false, true);
    let m = parse_all_splits(&c, "<think>\nFirst, 2+2.\nIt is 4.\n</think>\n\nThe answer is 4.");
    assert_eq!(m.reasoning.as_deref(), Some("First, 2+2.\nIt is 4."));
    assert_eq!(m.content, "The answer is 4.");
    // A model that does not think this time.
    let m = parse_all_splits(&c, "Just 4.");
    assert_eq!((m.reasoning, m.content.as_str()), (None, "Just 4."));
    // Cut off while thinking: all reasoning, no content.
    let m = parse_all_splits(&c, "<think>hmm, let me");
    assert_eq!((m.reasoning.as_deref(), m.content.as_str()), (Some("hmm, let me"), ""));
    // The template opened <think> in the prompt.
    let c = ParserConfig { in_reasoning: true, ..c };
    let m = parse_all_splits(&c, "step one</think>Done.");
    assert_eq!((m.reasoning.as_deref(), m.content.as_str()), (Some("step one"), "Done."));
}

#[test]
fn reasoning_then_tool_call() {
    let c = cfg(Family::Hermes, true, true);
    let m = parse_all_splits(&c, "<think>I need the weather.</think>\n\n<tool_call>\n{\"name\": \"w\", \"arguments\": {\"c\": \"é\"}}\n</tool_call>");
    assert_eq!(m.reasoning.as_deref(), Some("I need the weather."));
    assert_eq!(m.content, "");
    assert_eq!(calls(&m), vec![("w", serde_json::json!({"c": "é"}))]);
}

#[test]
fn events_come_in_stream_order() {
    let mut p = OutputParser::new(cfg(Family::Hermes, true, true));
    let mut ev = p.push("<think>a");
    ev.extend(p.push("b</think>Hi <tool_call>{\"name\": \"f\", \"arguments\": {\"k\": 1}}</tool_call>"));
    ev.extend(p.finish());
    let kinds: Vec<&str> = ev
        .iter()
        .map(|e| match e {
            ParseEvent::Reasoning(_) => "r",
            ParseEvent::Content(_) => "c",
            ParseEvent::ToolCallBegin { index: 0, .. } => "b",
            ParseEvent::ToolCallArguments { index: 0, .. } => "a",
            _ => "?",
        })
        .collect();
    assert_eq!(kinds, ["r", "r", "c", "b", "a"]);
}

#[test]
fn generic_envelope_finishes_with_leading_whitespace_and_empty() {
    let c = cfg(Family::Generic, true, false);
    let m = parse_all_splits(&c, "{\"tool_calls\": [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]}");
    assert_eq!(m.tool_calls.len(), 1);
    let m = parse_all_splits(&c, "");
    assert_eq!(m, ParsedMessage::default());
}

#[test]
fn generic_response_streams_as_it_is_decoded() {
    let c = cfg(Family::Generic, true, false);
    let text = "{\"response\": \"Line 1\\nSay \\\"hi\\\" \\u00e9 \\ud83d\\ude00 안녕\"}";
    let m = parse_all_splits(&c, text);
    assert_eq!(m.content, "Line 1\nSay \"hi\" é 😀 안녕");
    // Content comes out before the envelope is complete.
    let mut p = OutputParser::new(c.clone());
    let ev = p.push("{\"response\": \"Hello wor");
    assert_eq!(ev, vec![ParseEvent::Content("Hello wor".into())]);
    // A structured response (response_format beside tools) is its JSON text.
    let m = parse_all_splits(&c, "{\"response\": {\"a\": 1}}");
    assert_eq!(m.content, "{\"a\":1}");
}

/// Feeds `text` a character at a time: the argument fragments of each call, in order.
fn arg_fragments(c: &ParserConfig, text: &str) -> Vec<Vec<String>> {
    let mut p = OutputParser::new(c.clone());
    let mut ev = Vec::new();
    for (i, ch) in text.char_indices() {
        ev.extend(p.push(&text[i..i + ch.len_utf8()]));
    }
    ev.extend(p.finish());
    let mut out: Vec<Vec<String>> = Vec::new();
    for e in ev {
        match e {
            ParseEvent::ToolCallBegin { index, .. } => {
                assert_eq!(index, out.len());
                out.push(Vec::new());
            }
            ParseEvent::ToolCallArguments { index, fragment } => out[index].push(fragment),
            _ => {}
        }
    }
    out
}

#[test]
fn arguments_stream_in_pieces_in_every_format() {
    let cases = [
        (Family::Hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"서울\", \"days\": 3}}\n</tool_call>\n<tool_call>\n{\"name\": \"t\", \"arguments\": {}}\n</tool_call>"),
        (Family::Llama3, "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"서울\", \"days\": 3}}; {\"name\": \"t\", \"parameters\": {}}"),
        (Family::Generic, "{\"tool_calls\": [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"서울\", \"days\": 3}}, {\"name\": \"t\", \"arguments\": {}}]}"),
    ];
    for (family, text) in cases {
        let c = cfg(family, true, false);
        let frags = arg_fragments(&c, text);
        assert_eq!(frags.len(), 2, "{family:?}");
        assert!(frags[0].len() > 5, "{family:?}: {:?}", frags[0]);
        assert_eq!(frags[0].concat(), "{\"city\": \"서울\", \"days\": 3}", "{family:?}");
        assert_eq!(frags[1].concat(), "{}");
        let m = parse_all_splits(&c, text);
        assert_eq!(calls(&m), vec![("get_weather", serde_json::json!({"city": "서울", "days": 3})), ("t", serde_json::json!({}))], "{family:?}");
        // One call only: the second is dropped, streamed or not.
        let single = ParserConfig { single_call: true, ..c };
        let m = parse_all_splits(&single, text);
        assert_eq!(m.tool_calls.len(), 1, "{family:?}");
        assert_eq!(arg_fragments(&single, text).len(), 1);
    }
    // Cut off by the token budget: the call stays, with what was written.
    let c = cfg(Family::Generic, true, false);
    let m = parse_all_splits(&c, "{\"tool_calls\": [{\"name\": \"f\", \"arguments\": {\"a\": [1, 2");
    assert_eq!((m.tool_calls.len(), m.tool_calls[0].arguments.as_str(), m.content.as_str()), (1, "{\"a\": [1, 2", ""));
}
