//! OpenAI's harmony format (gpt-oss): the answer is a sequence of messages, each
//! `<|channel|>NAME<|message|>TEXT<|end|>`, later ones preceded by `<|start|>assistant`:
//!
//! ```text
//! <|channel|>analysis<|message|>The user asks...<|end|><|start|>assistant<|channel|>final<|message|>Hello!
//! ```
//!
//! (the prompt already ends with `<|start|>assistant`; the last message ends with `<|return|>`,
//! an end-of-generation token that never reaches the text). The `analysis` channel is the
//! model's reasoning (`reasoning_content`), every other channel (`final`, `commentary`) is
//! content. The header between `<|start|>` and `<|message|>` may carry more than the channel:
//! a recipient (`to=functions.get_weather`, before or after the channel) makes the message a tool
//! call whose text is the call's JSON arguments, ended by `<|call|>` (an end of generation):
//!
//! ```text
//! <|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Seoul"}<|call|>
//! ```
//!
//! With tools on, such a message is streamed as a call (its arguments as they come); without
//! tools, or after the first call when only one is allowed, it is dropped (it cannot be answered).
//!
//! Output without any header (a grammar-constrained JSON answer) is content, as it comes.
//! Like the other parsers, the result does not depend on how the text is split into pieces:
//! text that may still become a tag is held back until it is clear.

use super::new_call_id;
use super::parser::ParseEvent;

const CHANNEL: &str = "<|channel|>";
const MESSAGE: &str = "<|message|>";
const START: &str = "<|start|>";
/// Tags that end a message's text.
const ENDS: [&str; 3] = ["<|end|>", "<|return|>", "<|call|>"];

/// What a message's text is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Content,
    Reasoning,
    /// The arguments of call `index`.
    Call(usize),
    /// A call that is not passed on (no tools, or one call allowed and made).
    Dropped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a header, up to `<|message|>`.
    Header,
    /// Inside a message's text.
    Message(Kind),
    /// The output has no harmony header: everything is content.
    Plain,
}

/// The harmony stage of one choice's output parser.
#[derive(Debug)]
pub struct HarmonyParser {
    state: State,
    buf: String,
    /// Tool calls are read (the request has tools).
    tools: bool,
    /// Only the first call is passed on.
    single_call: bool,
    calls: usize,
}

impl Default for HarmonyParser {
    fn default() -> Self {
        HarmonyParser::new(false, false)
    }
}

/// The length of the longest suffix of `s` that is a proper prefix of one of `tags`.
fn held(s: &str, tags: &[&str]) -> usize {
    tags.iter()
        .map(|tag| {
            let max = s.len().min(tag.len().saturating_sub(1));
            (1..=max).rev().find(|&k| s.is_char_boundary(s.len() - k) && tag.starts_with(&s[s.len() - k..])).unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
}

/// The channel named in a header (`<|channel|>analysis`, `assistant<|channel|>final`,
/// `<|channel|>commentary to=functions.f <|constrain|>json`).
fn channel_of(header: &str) -> &str {
    let Some(at) = header.find(CHANNEL) else { return "" };
    let rest = &header[at + CHANNEL.len()..];
    let end = rest.find(|c: char| c.is_whitespace() || c == '<').unwrap_or(rest.len());
    &rest[..end]
}

/// The function a header addresses (`to=functions.get_weather` -> `get_weather`; another
/// recipient, such as a built-in `browser.search`, by its whole name).
fn recipient_of(header: &str) -> Option<&str> {
    let at = header.find("to=")?;
    let rest = &header[at + 3..];
    let end = rest.find(|c: char| c.is_whitespace() || c == '<').unwrap_or(rest.len());
    let name = &rest[..end];
    let name = name.strip_prefix("functions.").unwrap_or(name);
    (!name.is_empty()).then_some(name)
}

impl HarmonyParser {
    /// A parser that reads tool calls when `tools` is on (only the first with `single_call`).
    pub fn new(tools: bool, single_call: bool) -> Self {
        HarmonyParser { state: State::Header, buf: String::new(), tools, single_call, calls: 0 }
    }

    /// The kind of the message a complete header opens, announcing a call in `out`.
    fn open(&mut self, header: &str, out: &mut Vec<ParseEvent>) -> Kind {
        if let Some(name) = recipient_of(header) {
            if !self.tools || (self.single_call && self.calls > 0) {
                return Kind::Dropped;
            }
            let index = self.calls;
            self.calls += 1;
            out.push(ParseEvent::ToolCallBegin { index, id: new_call_id(), name: name.to_string() });
            return Kind::Call(index);
        }
        if channel_of(header) == "analysis" {
            Kind::Reasoning
        } else {
            Kind::Content
        }
    }

    /// Feeds `text` (and, with `end`, releases everything held back), appending events to `out`.
    pub fn push(&mut self, text: &str, end: bool, out: &mut Vec<ParseEvent>) {
        self.buf.push_str(text);
        loop {
            match self.state {
                State::Plain => {
                    let s = std::mem::take(&mut self.buf);
                    emit(out, Kind::Content, s);
                    return;
                }
                State::Header => {
                    if let Some(at) = self.buf.find(MESSAGE) {
                        let header: String = self.buf.drain(..at + MESSAGE.len()).collect();
                        let kind = self.open(&header[..at], out);
                        self.state = State::Message(kind);
                        continue;
                    }
                    // Not a header: text that does not start like one (after `<|start|>` and a
                    // role, a header has `<|channel|>` within a few dozen bytes).
                    let t = self.buf.trim_start();
                    let header_like = t.is_empty()
                        || CHANNEL.starts_with(t)
                        || START.starts_with(t)
                        || t.starts_with(CHANNEL)
                        || t.starts_with(START)
                        || t.starts_with("assistant")
                        || "to=".starts_with(t)
                        || t.starts_with("to=");
                    if !header_like {
                        self.state = State::Plain;
                        continue;
                    }
                    if end {
                        // A header cut short (or the `<|start|>assistant` after the last
                        // message): nothing to show.
                        self.buf.clear();
                    }
                    return;
                }
                State::Message(kind) => {
                    let found = ENDS.iter().filter_map(|t| self.buf.find(t).map(|at| (at, t.len()))).min();
                    if let Some((at, len)) = found {
                        let text: String = self.buf.drain(..at).collect();
                        self.buf.drain(..len);
                        emit(out, kind, text);
                        // The next message's `<|start|>assistant` header follows.
                        self.state = State::Header;
                        continue;
                    }
                    let keep = if end { 0 } else { held(&self.buf, &ENDS) };
                    let text: String = self.buf.drain(..self.buf.len() - keep).collect();
                    emit(out, kind, text);
                    return;
                }
            }
        }
    }
}

/// Appends `s` as `kind`'s text, merging with the previous event of the same kind.
fn emit(out: &mut Vec<ParseEvent>, kind: Kind, s: String) {
    if s.is_empty() {
        return;
    }
    match (out.last_mut(), kind) {
        (Some(ParseEvent::Reasoning(prev)), Kind::Reasoning) | (Some(ParseEvent::Content(prev)), Kind::Content) => {
            prev.push_str(&s)
        }
        (Some(ParseEvent::ToolCallArguments { index: i, fragment }), Kind::Call(index)) if *i == index => {
            fragment.push_str(&s)
        }
        (_, Kind::Reasoning) => out.push(ParseEvent::Reasoning(s)),
        (_, Kind::Content) => out.push(ParseEvent::Content(s)),
        (_, Kind::Call(index)) => out.push(ParseEvent::ToolCallArguments { index, fragment: s }),
        (_, Kind::Dropped) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::parser::{OutputParser, ParsedMessage, ParserConfig};
    use crate::chat::Family;

    fn harmony() -> ParserConfig {
        ParserConfig { family: Family::Harmony, tools: false, reasoning: true, in_reasoning: false, single_call: false }
    }

    fn parse_all_ways(text: &str) -> ParsedMessage {
        parse_all_ways_with(harmony(), text)
    }

    /// Call ids are fresh for every parse: blanked to compare two parses.
    fn without_ids(mut m: ParsedMessage) -> ParsedMessage {
        for c in &mut m.tool_calls {
            assert!(c.id.starts_with("call_"), "{}", c.id);
            c.id.clear();
        }
        m
    }

    /// The message from the whole text at once, and from every split into 1..=7-byte pieces:
    /// they must all agree (streaming and non-streaming give one answer).
    fn parse_all_ways_with(cfg: ParserConfig, text: &str) -> ParsedMessage {
        let mut p = OutputParser::new(cfg.clone());
        p.push(text);
        p.finish();
        let whole = without_ids(p.into_message());
        for step in 1..=7 {
            let mut p = OutputParser::new(cfg.clone());
            let mut streamed = ParsedMessage::default();
            let mut i = 0;
            while i < text.len() {
                let mut j = (i + step).min(text.len());
                while !text.is_char_boundary(j) {
                    j += 1;
                }
                for e in p.push(&text[i..j]) {
                    apply(&mut streamed, &e);
                }
                i = j;
            }
            for e in p.finish() {
                apply(&mut streamed, &e);
            }
            assert_eq!(without_ids(streamed), whole, "pieces of {step} bytes");
        }
        whole
    }

    fn apply(m: &mut ParsedMessage, e: &ParseEvent) {
        match e {
            ParseEvent::Content(s) => m.content.push_str(s),
            ParseEvent::Reasoning(s) => m.reasoning.get_or_insert_with(String::new).push_str(s),
            ParseEvent::ToolCallBegin { index, id, name } => {
                assert_eq!(*index, m.tool_calls.len(), "calls begin in order");
                m.tool_calls.push(crate::chat::ToolCall { id: id.clone(), name: name.clone(), arguments: String::new() });
            }
            ParseEvent::ToolCallArguments { index, fragment } => m.tool_calls[*index].arguments.push_str(fragment),
        }
    }

    fn with_tools(single_call: bool) -> ParserConfig {
        ParserConfig { tools: true, single_call, ..harmony() }
    }

    #[test]
    fn a_call_after_reasoning_streams_its_name_and_arguments() {
        // The model's own spelling: recipient after the channel, `<|constrain|>json` before the
        // text; generation stops at `<|call|>` (an end of generation, so not in the text).
        let m = parse_all_ways_with(
            with_tools(false),
            "<|channel|>analysis<|message|>Need the weather for 서울.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"서울\", \"unit\": \"c\"}",
        );
        assert_eq!(m.reasoning.as_deref(), Some("Need the weather for 서울."));
        assert_eq!(m.content, "");
        assert_eq!(m.tool_calls.len(), 1);
        assert_eq!((m.tool_calls[0].name.as_str(), m.tool_calls[0].arguments.as_str()), ("get_weather", "{\"city\": \"서울\", \"unit\": \"c\"}"));
    }

    #[test]
    fn a_call_in_the_templates_spelling_with_the_recipient_first() {
        // As gpt-oss's template renders past calls (and the forced-call grammar writes them):
        // the recipient right after `<|start|>assistant`, which the prompt already ends with.
        let m = parse_all_ways_with(with_tools(false), " to=functions.lookup<|channel|>commentary json<|message|>{\"q\": \"x\"}<|call|>");
        assert_eq!(m.tool_calls.len(), 1);
        assert_eq!((m.tool_calls[0].name.as_str(), m.tool_calls[0].arguments.as_str()), ("lookup", "{\"q\": \"x\"}"));
        assert_eq!((m.reasoning, m.content.as_str()), (None, ""));
    }

    #[test]
    fn a_preamble_then_two_calls_and_single_call_keeps_the_first() {
        let text = "<|channel|>commentary<|message|>Checking both.<|end|><|start|>assistant<|channel|>commentary to=functions.a <|constrain|>json<|message|>{}<|call|><|start|>assistant to=functions.b<|channel|>commentary json<|message|>{\"n\": 1}<|call|>";
        let m = parse_all_ways_with(with_tools(false), text);
        assert_eq!(m.content, "Checking both.");
        let calls: Vec<(&str, &str)> = m.tool_calls.iter().map(|c| (c.name.as_str(), c.arguments.as_str())).collect();
        assert_eq!(calls, [("a", "{}"), ("b", "{\"n\": 1}")]);
        let one = parse_all_ways_with(with_tools(true), text);
        assert_eq!(one.tool_calls.len(), 1);
        assert_eq!(one.tool_calls[0].name, "a");
        assert_eq!(one.content, "Checking both.");
    }

    #[test]
    fn a_call_without_tools_is_dropped_not_shown() {
        let m = parse_all_ways("<|channel|>analysis<|message|>hm<|end|><|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"x\": 1}<|call|>");
        assert_eq!((m.reasoning.as_deref(), m.content.as_str(), m.tool_calls.len()), (Some("hm"), "", 0));
        assert_eq!(recipient_of(" to=functions.get_weather<|channel|>commentary json"), Some("get_weather"));
        assert_eq!(recipient_of("<|channel|>commentary to=browser.search <|constrain|>json"), Some("browser.search"));
        assert_eq!(recipient_of("<|channel|>final"), None);
    }

    #[test]
    fn analysis_is_reasoning_and_final_is_content() {
        let m = parse_all_ways(
            "<|channel|>analysis<|message|>The user greets in Korean; answer briefly.<|end|><|start|>assistant<|channel|>final<|message|>안녕하세요! 무엇을 도와드릴까요?",
        );
        assert_eq!(m.reasoning.as_deref(), Some("The user greets in Korean; answer briefly."));
        assert_eq!(m.content, "안녕하세요! 무엇을 도와드릴까요?");
        assert!(m.tool_calls.is_empty());
    }

    #[test]
    fn final_only_and_rendered_return_tag() {
        let m = parse_all_ways("<|channel|>final<|message|>Just the answer.<|return|>");
        assert_eq!((m.reasoning, m.content.as_str()), (None, "Just the answer."));
    }

    #[test]
    fn text_that_looks_like_a_tag_inside_a_message_stays_text() {
        let m = parse_all_ways("<|channel|>analysis<|message|>compare a <| b and <|en d<|end|><|start|>assistant<|channel|>final<|message|>x <|e y");
        assert_eq!(m.reasoning.as_deref(), Some("compare a <| b and <|en d"));
        assert_eq!(m.content, "x <|e y");
    }

    #[test]
    fn commentary_is_content_and_header_extras_are_ignored() {
        let m = parse_all_ways(
            "<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>commentary<|message|>Working on it.<|end|><|start|>assistant<|channel|>final<|message|>Done.",
        );
        assert_eq!(m.reasoning.as_deref(), Some("think"));
        assert_eq!(m.content, "Working on it.Done.");
        assert_eq!(channel_of("<|channel|>commentary to=functions.f <|constrain|>json"), "commentary");
    }

    #[test]
    fn output_without_a_header_is_content() {
        let m = parse_all_ways("{\"answer\": 42}");
        assert_eq!((m.reasoning, m.content.as_str()), (None, "{\"answer\": 42}"));
    }

    #[test]
    fn generation_cut_inside_the_reasoning_keeps_it() {
        let m = parse_all_ways("<|channel|>analysis<|message|>Still thinking about <|en");
        assert_eq!(m.reasoning.as_deref(), Some("Still thinking about <|en"));
        assert_eq!(m.content, "");
    }
}
