//! The incremental output parser: generated text, in pieces of any size, becomes content,
//! reasoning and tool calls ([`ParseEvent`]). The final message is the sum of the events, so a
//! stream and a non-streaming answer over the same text agree, however the text was split.
//!
//! Two stages: the reasoning splitter (`<think>...</think>` first, when the model thinks), then
//! the body parser of the model's tool-call [`Family`]. Text that may still become a tag is held
//! back until it is clear; whitespace around reasoning and calls is dropped.

use super::call_stream::{CallPiece, CallScanner};
use super::family::Family;
use super::harmony::HarmonyParser;
use super::{new_call_id, ToolCall};

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";
const CALL_OPEN: &str = "<tool_call>";
const CALL_CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";

/// How to read one model's output for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParserConfig {
    pub family: Family,
    /// Tool calls are recognized (tools were offered); otherwise the body is all content.
    pub tools: bool,
    /// The model may think (`<think>...</think>` before the answer).
    pub reasoning: bool,
    /// The prompt already opened `<think>`: the output starts inside the reasoning.
    pub in_reasoning: bool,
    /// At most one call is returned (`parallel_tool_calls: false`).
    pub single_call: bool,
}

impl ParserConfig {
    /// Plain text: everything is content.
    pub fn plain() -> Self {
        ParserConfig { family: Family::Generic, tools: false, reasoning: false, in_reasoning: false, single_call: false }
    }
}

/// What a piece of output means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseEvent {
    Content(String),
    Reasoning(String),
    /// A call starts: its index in the answer, id and function name.
    ToolCallBegin { index: usize, id: String, name: String },
    /// More of call `index`'s arguments (a JSON text, in order).
    ToolCallArguments { index: usize, fragment: String },
}

/// The whole answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedMessage {
    pub content: String,
    /// `None` when the model did not think.
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ToolCall>,
}

impl ParsedMessage {
    fn apply(&mut self, e: &ParseEvent) {
        match e {
            ParseEvent::Content(s) => self.content.push_str(s),
            ParseEvent::Reasoning(s) => self.reasoning.get_or_insert_with(String::new).push_str(s),
            ParseEvent::ToolCallBegin { id, name, .. } => {
                self.tool_calls.push(ToolCall { id: id.clone(), name: name.clone(), arguments: String::new() })
            }
            ParseEvent::ToolCallArguments { index, fragment } => {
                if let Some(c) = self.tool_calls.get_mut(*index) {
                    c.arguments.push_str(fragment);
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Think {
    /// Not a thinking model: everything goes to the body.
    Off,
    /// Waiting to see whether the output opens `<think>`.
    Start,
    /// Inside the reasoning; `started` once non-whitespace reasoning was emitted.
    Inside { started: bool },
    /// After the reasoning (`lstrip`: drop the whitespace that follows `</think>`).
    Body { lstrip: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    /// Everything is content.
    Plain,
    /// Hermes: text between `<tool_call>` blocks.
    HermesText,
    /// Hermes: inside `<tool_call>`, waiting for `</tool_call>`.
    HermesCall,
    /// Llama 3: not yet known whether the answer is a call or text.
    LlamaStart,
    /// Llama 3: the answer is JSON call(s), parsed at the end.
    LlamaCalls,
    /// The generic JSON envelope, parsed at the end.
    Envelope,
    /// The envelope's `{"tool_calls": [` was read (at this byte of the buffer): calls stream.
    EnvelopeCalls(usize),
    /// The envelope's `{"response": "` was read: its string is content, decoded as it comes.
    EnvelopeString,
    /// After the response string (the closing `}`): nothing more to show.
    EnvelopeDone,
}

/// How the generic envelope writes a direct text answer (the grammar's literal).
const RESPONSE_OPEN: &str = "{\"response\": \"";
/// How the generic envelope opens its calls.
const CALLS_OPEN: &str = "{\"tool_calls\": [";

/// Decodes the start of a JSON string body: the text decoded, the bytes consumed, and whether
/// the closing quote was reached. Stops before an incomplete escape.
fn json_string_prefix(s: &str) -> (String, usize, bool) {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => return (out, i + 1, true),
            b'\\' => {
                // `\uXXXX`, possibly a surrogate pair `\uXXXX\uXXXX`; other escapes are 2 bytes.
                let Some(&e) = b.get(i + 1) else { break };
                let len = match e {
                    b'u' => {
                        let hi = s.get(i + 2..i + 6).and_then(|h| u16::from_str_radix(h, 16).ok());
                        match hi {
                            None if s.len() < i + 6 => break,
                            Some(h) if (0xD800..0xDC00).contains(&h) && s.len() < i + 12 => break,
                            Some(h) if (0xD800..0xDC00).contains(&h) => 12,
                            _ => 6,
                        }
                    }
                    _ => 2,
                };
                let piece = &s[i..i + len];
                match serde_json::from_str::<String>(&format!("\"{piece}\"")) {
                    Ok(t) => out.push_str(&t),
                    Err(_) => out.push_str(piece),
                }
                i += len;
            }
            _ => {
                // A whole character (the buffer holds complete UTF-8).
                let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    (out, i, false)
}

/// Parses one choice's output.
#[derive(Debug)]
pub struct OutputParser {
    cfg: ParserConfig,
    think: Think,
    think_buf: String,
    body: Body,
    buf: String,
    /// Trailing whitespace of content held back (emitted when more content follows).
    ws: String,
    /// No tools and no reasoning: the text is passed through exactly.
    raw: bool,
    msg: ParsedMessage,
    /// The calls being written (streamed as they come).
    scan: CallScanner,
    /// The index of the call being streamed; `None` when it is dropped (`single_call`).
    scan_index: Option<usize>,
    /// The harmony channels ([`Family::Harmony`]): all the text goes through it instead.
    harmony: Option<HarmonyParser>,
}

/// The length of the longest suffix of `s` that is a proper prefix of `tag` (text that may still
/// become the tag), at a character boundary.
fn partial_suffix(s: &str, tag: &str) -> usize {
    let max = s.len().min(tag.len().saturating_sub(1));
    (1..=max).rev().find(|&k| s.is_char_boundary(s.len() - k) && tag.starts_with(&s[s.len() - k..])).unwrap_or(0)
}

/// Splits `s` at the end of its last non-whitespace character.
fn split_trailing_ws(s: &str) -> (&str, &str) {
    let t = s.trim_end();
    (t, &s[t.len()..])
}

/// `{"name": .., "arguments" | "parameters": ..}` as a call's name and arguments text.
fn call_of(v: &serde_json::Value) -> Option<(String, String)> {
    let o = v.as_object()?;
    let name = o.get("name")?.as_str()?.to_string();
    let args = o.get("arguments").or_else(|| o.get("parameters"));
    let arguments = match args {
        None => "{}".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(a) => serde_json::to_string(a).ok()?,
    };
    Some((name, arguments))
}

/// Llama 3's answer: one or more JSON calls (after an optional `<|python_tag|>`), separated by
/// whitespace, `;` or `,`.
fn llama_calls(s: &str) -> Option<Vec<(String, String)>> {
    let s = s.trim_start();
    let s = s.strip_prefix(PYTHON_TAG).unwrap_or(s);
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';' || c == ',');
        if rest.is_empty() {
            break;
        }
        let mut it = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
        let v = it.next()?.ok()?;
        out.push(call_of(&v)?);
        rest = &rest[it.byte_offset()..];
    }
    (!out.is_empty()).then_some(out)
}

/// The generic envelope: `{"tool_calls": [..]}`, `{"tool_call": {..}}` or `{"response": ".."}`.
enum Envelope {
    Calls(Vec<(String, String)>),
    Response(String),
}

fn envelope(s: &str) -> Option<Envelope> {
    let v: serde_json::Value = serde_json::from_str(s.trim()).ok()?;
    let o = v.as_object()?;
    if let Some(calls) = o.get("tool_calls").and_then(|c| c.as_array()) {
        return calls.iter().map(call_of).collect::<Option<Vec<_>>>().map(Envelope::Calls);
    }
    if let Some(c) = o.get("tool_call") {
        return call_of(c).map(|c| Envelope::Calls(vec![c]));
    }
    match o.get("response")? {
        serde_json::Value::String(r) => Some(Envelope::Response(r.clone())),
        // A structured answer (`response_format` beside tools): its JSON text.
        other => Some(Envelope::Response(other.to_string())),
    }
}

impl OutputParser {
    pub fn new(cfg: ParserConfig) -> Self {
        let think = match (cfg.reasoning, cfg.in_reasoning) {
            (_, true) => Think::Inside { started: false },
            (true, false) => Think::Start,
            (false, false) => Think::Off,
        };
        let body = match (cfg.tools, cfg.family) {
            (false, _) => Body::Plain,
            (true, Family::Hermes) => Body::HermesText,
            (true, Family::Llama3) => Body::LlamaStart,
            (true, Family::Generic) => Body::Envelope,
            (true, Family::Harmony) => Body::Plain,
        };
        let harmony = (cfg.family == Family::Harmony).then(|| HarmonyParser::new(cfg.tools, cfg.single_call));
        let raw = !cfg.tools && !cfg.reasoning && !cfg.in_reasoning && harmony.is_none();
        OutputParser { cfg, think, think_buf: String::new(), body, buf: String::new(), ws: String::new(), raw, msg: ParsedMessage::default(), scan: CallScanner::default(), scan_index: None, harmony }
    }

    /// The answer so far (all events emitted until now).
    pub fn message(&self) -> &ParsedMessage {
        &self.msg
    }

    /// The whole answer, after [`finish`](Self::finish).
    pub fn into_message(self) -> ParsedMessage {
        self.msg
    }

    /// Feeds the next piece of generated text.
    pub fn push(&mut self, text: &str) -> Vec<ParseEvent> {
        let mut out = Vec::new();
        if let Some(h) = &mut self.harmony {
            h.push(text, false, &mut out);
            return self.record(out);
        }
        self.think_buf.push_str(text);
        self.split_reasoning(false, &mut out);
        self.record(out)
    }

    /// The output is complete: releases everything held back.
    pub fn finish(&mut self) -> Vec<ParseEvent> {
        let mut out = Vec::new();
        if let Some(h) = &mut self.harmony {
            h.push("", true, &mut out);
            return self.record(out);
        }
        self.split_reasoning(true, &mut out);
        self.body_step(true, &mut out);
        match self.body {
            Body::Plain | Body::HermesText | Body::LlamaStart if self.msg.tool_calls.is_empty() => {
                let ws = std::mem::take(&mut self.ws);
                Self::content(&mut out, ws);
            }
            _ => self.ws.clear(),
        }
        self.record(out)
    }

    fn record(&mut self, out: Vec<ParseEvent>) -> Vec<ParseEvent> {
        for e in &out {
            self.msg.apply(e);
        }
        out
    }

    fn content(out: &mut Vec<ParseEvent>, s: String) {
        if s.is_empty() {
            return;
        }
        if let Some(ParseEvent::Content(prev)) = out.last_mut() {
            prev.push_str(&s);
        } else {
            out.push(ParseEvent::Content(s));
        }
    }

    /// Stage 1: reasoning out of the way, the rest to the body parser.
    fn split_reasoning(&mut self, end: bool, out: &mut Vec<ParseEvent>) {
        loop {
            match self.think {
                Think::Off => {
                    let t = std::mem::take(&mut self.think_buf);
                    self.body_push(&t, out);
                    return;
                }
                Think::Start => {
                    let t = self.think_buf.trim_start();
                    if let Some(rest) = t.strip_prefix(THINK_OPEN) {
                        self.think_buf = rest.to_string();
                        self.think = Think::Inside { started: false };
                    } else if THINK_OPEN.starts_with(t) && !end {
                        return;
                    } else {
                        self.think = Think::Body { lstrip: false };
                    }
                }
                Think::Inside { started } => {
                    if !started {
                        let t = self.think_buf.trim_start().len();
                        self.think_buf.drain(..self.think_buf.len() - t);
                    }
                    if let Some(i) = self.think_buf.find(THINK_CLOSE) {
                        let r = self.think_buf[..i].trim_end().to_string();
                        self.reasoning(out, r);
                        self.think_buf.drain(..i + THINK_CLOSE.len());
                        self.think = Think::Body { lstrip: true };
                        continue;
                    }
                    if end {
                        let r = std::mem::take(&mut self.think_buf).trim_end().to_string();
                        self.reasoning(out, r);
                        return;
                    }
                    let hold = partial_suffix(&self.think_buf, THINK_CLOSE);
                    let (emit, _) = split_trailing_ws(&self.think_buf[..self.think_buf.len() - hold]);
                    let emit = emit.to_string();
                    self.think_buf.drain(..emit.len());
                    if !emit.is_empty() {
                        self.think = Think::Inside { started: true };
                    }
                    self.reasoning(out, emit);
                    return;
                }
                Think::Body { lstrip } => {
                    if lstrip {
                        let t = self.think_buf.trim_start().len();
                        self.think_buf.drain(..self.think_buf.len() - t);
                        if self.think_buf.is_empty() {
                            return;
                        }
                    }
                    self.think = Think::Off;
                }
            }
        }
    }

    fn reasoning(&mut self, out: &mut Vec<ParseEvent>, s: String) {
        if s.is_empty() {
            return;
        }
        if let Some(ParseEvent::Reasoning(prev)) = out.last_mut() {
            prev.push_str(&s);
        } else {
            out.push(ParseEvent::Reasoning(s));
        }
    }

    fn body_push(&mut self, text: &str, out: &mut Vec<ParseEvent>) {
        self.buf.push_str(text);
        self.body_step(false, out);
    }

    /// Text to show, with trailing whitespace held back (dropped if a call follows).
    fn text(&mut self, out: &mut Vec<ParseEvent>, s: &str) {
        let (t, ws) = split_trailing_ws(s);
        if !t.is_empty() {
            let pending = std::mem::take(&mut self.ws);
            // Whitespace before the first content (after a call or the reasoning) is dropped.
            if !self.msg.content.is_empty() || out.iter().any(|e| matches!(e, ParseEvent::Content(_))) {
                Self::content(out, pending);
            }
            let t = if self.msg.content.is_empty() && !out.iter().any(|e| matches!(e, ParseEvent::Content(_))) {
                t.trim_start()
            } else {
                t
            };
            Self::content(out, t.to_string());
        }
        self.ws.push_str(ws);
    }

    /// Announces a call: its index, or `None` when it is dropped (`parallel_tool_calls: false`).
    fn begin_call(&mut self, out: &mut Vec<ParseEvent>, name: String) -> Option<usize> {
        let index = self.msg.tool_calls.len() + out.iter().filter(|e| matches!(e, ParseEvent::ToolCallBegin { .. })).count();
        self.ws.clear();
        if self.cfg.single_call && index > 0 {
            return None;
        }
        out.push(ParseEvent::ToolCallBegin { index, id: new_call_id(), name });
        Some(index)
    }

    /// A whole call (parsed at the end).
    fn call(&mut self, out: &mut Vec<ParseEvent>, name: String, arguments: String) {
        if let Some(index) = self.begin_call(out, name) {
            out.push(ParseEvent::ToolCallArguments { index, fragment: arguments });
        }
    }

    /// Streams the calls written in the buffer from byte `from` on: each call as soon as its name
    /// is complete, then its arguments in pieces.
    fn stream_calls(&mut self, from: usize, out: &mut Vec<ParseEvent>) {
        let mut pieces = Vec::new();
        if let Some(text) = self.buf.get(from..) {
            self.scan.scan(text, &mut pieces);
        }
        for p in pieces {
            match p {
                CallPiece::Begin(name) => self.scan_index = self.begin_call(out, name),
                CallPiece::Args(fragment) => {
                    if let Some(index) = self.scan_index {
                        out.push(ParseEvent::ToolCallArguments { index, fragment });
                    }
                }
            }
        }
    }

    /// The end of a run of calls: those the scanner did not stream come from the whole-text
    /// parse (`calls`); with no call at all, the text is content.
    fn end_calls(&mut self, out: &mut Vec<ParseEvent>, calls: Option<Vec<(String, String)>>, all: &str) {
        let begun = self.scan.begun();
        match calls {
            Some(calls) => calls.into_iter().skip(begun).for_each(|(n, a)| self.call(out, n, a)),
            None if begun == 0 => self.text(out, all),
            // A call cut short (the token budget): what was written stays.
            None => {}
        }
        self.scan = CallScanner::default();
        self.scan_index = None;
    }

    /// Where Llama 3's calls start in the buffer (after whitespace and `<|python_tag|>`).
    fn llama_calls_start(&self) -> usize {
        let t = self.buf.trim_start();
        let t = t.strip_prefix(PYTHON_TAG).unwrap_or(t);
        self.buf.len() - t.len()
    }

    /// Stage 2: the body in the family's format.
    fn body_step(&mut self, end: bool, out: &mut Vec<ParseEvent>) {
        loop {
            match self.body {
                Body::Plain if self.raw => {
                    let t = std::mem::take(&mut self.buf);
                    Self::content(out, t);
                    return;
                }
                Body::Plain => {
                    let t = std::mem::take(&mut self.buf);
                    self.text(out, &t);
                    return;
                }
                Body::HermesText => {
                    if let Some(i) = self.buf.find(CALL_OPEN) {
                        let pre = self.buf[..i].to_string();
                        self.text(out, &pre);
                        self.buf.drain(..i + CALL_OPEN.len());
                        self.body = Body::HermesCall;
                        continue;
                    }
                    let hold = if end { 0 } else { partial_suffix(&self.buf, CALL_OPEN) };
                    let emit: String = self.buf.drain(..self.buf.len() - hold).collect();
                    self.text(out, &emit);
                    return;
                }
                Body::HermesCall => {
                    self.stream_calls(0, out);
                    let close = self.buf.find(CALL_CLOSE);
                    if close.is_none() && !end {
                        return;
                    }
                    let inner_end = close.unwrap_or(self.buf.len());
                    let inner = self.buf[..inner_end].to_string();
                    self.buf.drain(..close.map_or(inner_end, |i| i + CALL_CLOSE.len()));
                    let call = serde_json::from_str::<serde_json::Value>(inner.trim()).ok().as_ref().and_then(call_of);
                    let raw = format!("{CALL_OPEN}{inner}{}", if close.is_some() { CALL_CLOSE } else { "" });
                    self.end_calls(out, call.map(|c| vec![c]), &raw);
                    self.body = Body::HermesText;
                }
                Body::LlamaStart => {
                    let t = self.buf.trim_start();
                    if t.is_empty() && !end {
                        return;
                    }
                    if t.starts_with('{') || t.starts_with(PYTHON_TAG) {
                        self.body = Body::LlamaCalls;
                    } else if PYTHON_TAG.starts_with(t) && !end {
                        return;
                    } else {
                        self.body = Body::Plain;
                    }
                }
                Body::LlamaCalls => {
                    let from = self.llama_calls_start();
                    if self.buf.len() > from {
                        self.stream_calls(from, out);
                    }
                    if !end {
                        return;
                    }
                    let all = std::mem::take(&mut self.buf);
                    self.end_calls(out, llama_calls(&all), &all);
                    self.body = Body::Plain;
                    return;
                }
                Body::Envelope => {
                    let t = self.buf.trim_start();
                    if let Some(rest) = t.strip_prefix(RESPONSE_OPEN) {
                        self.buf = rest.to_string();
                        self.body = Body::EnvelopeString;
                        continue;
                    }
                    if t.starts_with(CALLS_OPEN) {
                        self.body = Body::EnvelopeCalls(self.buf.len() - t.len() + CALLS_OPEN.len());
                        continue;
                    }
                    if !end {
                        return;
                    }
                    let all = std::mem::take(&mut self.buf);
                    match envelope(&all) {
                        Some(Envelope::Calls(calls)) => calls.into_iter().for_each(|(n, a)| self.call(out, n, a)),
                        Some(Envelope::Response(r)) => Self::content(out, r),
                        None => self.text(out, &all),
                    }
                    self.body = Body::Plain;
                    return;
                }
                Body::EnvelopeCalls(from) => {
                    self.stream_calls(from, out);
                    if !end {
                        return;
                    }
                    let all = std::mem::take(&mut self.buf);
                    let calls = match envelope(&all) {
                        Some(Envelope::Calls(calls)) => Some(calls),
                        _ => None,
                    };
                    self.end_calls(out, calls, &all);
                    self.body = Body::Plain;
                    return;
                }
                Body::EnvelopeString => {
                    let (text, used, closed) = json_string_prefix(&self.buf);
                    self.buf.drain(..used);
                    Self::content(out, text);
                    if closed {
                        self.body = Body::EnvelopeDone;
                    }
                    return;
                }
                Body::EnvelopeDone => {
                    self.buf.clear();
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
