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
//! content. The header between `<|start|>` and `<|message|>` may carry more than the channel
//! (`to=functions.x <|constrain|>json`); only the channel name is read.
//!
//! Output without any header (a grammar-constrained JSON answer) is content, as it comes.
//! Like the other parsers, the result does not depend on how the text is split into pieces:
//! text that may still become a tag is held back until it is clear.

use super::parser::ParseEvent;

const CHANNEL: &str = "<|channel|>";
const MESSAGE: &str = "<|message|>";
const START: &str = "<|start|>";
/// Tags that end a message's text.
const ENDS: [&str; 3] = ["<|end|>", "<|return|>", "<|call|>"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a header, up to `<|message|>`.
    Header,
    /// Inside a message's text; `reasoning` for the analysis channel.
    Message { reasoning: bool },
    /// The output has no harmony header: everything is content.
    Plain,
}

/// The harmony stage of one choice's output parser.
#[derive(Debug)]
pub struct HarmonyParser {
    state: State,
    buf: String,
}

impl Default for HarmonyParser {
    fn default() -> Self {
        HarmonyParser { state: State::Header, buf: String::new() }
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

impl HarmonyParser {
    /// Feeds `text` (and, with `end`, releases everything held back), appending events to `out`.
    pub fn push(&mut self, text: &str, end: bool, out: &mut Vec<ParseEvent>) {
        self.buf.push_str(text);
        loop {
            match self.state {
                State::Plain => {
                    let s = std::mem::take(&mut self.buf);
                    emit(out, false, s);
                    return;
                }
                State::Header => {
                    if let Some(at) = self.buf.find(MESSAGE) {
                        let reasoning = channel_of(&self.buf[..at]) == "analysis";
                        self.buf.drain(..at + MESSAGE.len());
                        self.state = State::Message { reasoning };
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
                        || t.starts_with("assistant");
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
                State::Message { reasoning } => {
                    let found = ENDS.iter().filter_map(|t| self.buf.find(t).map(|at| (at, t.len()))).min();
                    if let Some((at, len)) = found {
                        let text: String = self.buf.drain(..at).collect();
                        self.buf.drain(..len);
                        emit(out, reasoning, text);
                        // The next message's `<|start|>assistant` header follows.
                        self.state = State::Header;
                        continue;
                    }
                    let keep = if end { 0 } else { held(&self.buf, &ENDS) };
                    let text: String = self.buf.drain(..self.buf.len() - keep).collect();
                    emit(out, reasoning, text);
                    return;
                }
            }
        }
    }
}

/// Appends `s` as reasoning or content, merging with the previous event of the same kind.
fn emit(out: &mut Vec<ParseEvent>, reasoning: bool, s: String) {
    if s.is_empty() {
        return;
    }
    match (out.last_mut(), reasoning) {
        (Some(ParseEvent::Reasoning(prev)), true) | (Some(ParseEvent::Content(prev)), false) => prev.push_str(&s),
        _ => out.push(if reasoning { ParseEvent::Reasoning(s) } else { ParseEvent::Content(s) }),
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

    /// The message from the whole text at once, and from every split into 1..=7-byte pieces:
    /// they must all agree (streaming and non-streaming give one answer).
    fn parse_all_ways(text: &str) -> ParsedMessage {
        let mut p = OutputParser::new(harmony());
        p.push(text);
        p.finish();
        let whole = p.into_message();
        for step in 1..=7 {
            let mut p = OutputParser::new(harmony());
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
            assert_eq!(streamed, whole, "pieces of {step} bytes");
        }
        whole
    }

    fn apply(m: &mut ParsedMessage, e: &ParseEvent) {
        match e {
            ParseEvent::Content(s) => m.content.push_str(s),
            ParseEvent::Reasoning(s) => m.reasoning.get_or_insert_with(String::new).push_str(s),
            _ => panic!("no tool calls expected: {e:?}"),
        }
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
