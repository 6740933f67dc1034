//! From the chat core's [`ParseEvent`]s to Responses output items, and the stream events that
//! build them as OpenAI names them (`response.output_item.added`, `response.content_part.added`,
//! `response.output_text.delta`, ... `response.output_item.done`). Streaming and non-streaming
//! answers are built by the same [`OutputBuilder`], so they give the same items.

use serde_json::{json, Value};

use super::wire::{OutputItem, OutputText, ReasoningText};
use crate::chat::ParseEvent;

/// A fresh item id like OpenAI's (`msg_`, `fc_`, `rs_`, `resp_` and 24 hex digits).
pub fn item_id(prefix: &str) -> String {
    let id = crate::generation::response_id(prefix);
    id.replacen(&format!("{prefix}-"), &format!("{prefix}_"), 1)
}

/// Builds the output items; every method returns the stream events (without
/// `sequence_number`, which the stream adds) of what it did.
#[derive(Debug, Default)]
pub struct OutputBuilder {
    items: Vec<OutputItem>,
    /// The item still being written (the last one), if any.
    open: bool,
}

fn item_json(item: &OutputItem) -> Value {
    serde_json::to_value(item).unwrap_or(Value::Null)
}

impl OutputBuilder {
    pub fn new() -> Self {
        OutputBuilder::default()
    }

    /// The items so far.
    pub fn items(&self) -> &[OutputItem] {
        &self.items
    }

    fn open_item(&mut self, item: OutputItem, out: &mut Vec<Value>) {
        self.close_open(out, "completed");
        let output_index = self.items.len();
        // `added` shows the item empty: its content comes in the events that follow.
        let shown = match &item {
            OutputItem::Message { id, role, .. } => {
                json!({"type": "message", "id": id, "status": "in_progress", "role": role, "content": []})
            }
            OutputItem::Reasoning { id, .. } => json!({"type": "reasoning", "id": id, "summary": [], "content": [], "status": "in_progress"}),
            other => item_json(other),
        };
        out.push(json!({"type": "response.output_item.added", "output_index": output_index, "item": shown}));
        match &item {
            OutputItem::Message { id, .. } => out.push(json!({
                "type": "response.content_part.added", "item_id": id, "output_index": output_index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
            })),
            OutputItem::Reasoning { id, .. } => out.push(json!({
                "type": "response.content_part.added", "item_id": id, "output_index": output_index, "content_index": 0,
                "part": {"type": "reasoning_text", "text": ""},
            })),
            OutputItem::FunctionCall { .. } => {}
        }
        self.items.push(item);
        self.open = true;
    }

    /// Finishes the open item with `status` (`completed`, or `incomplete` when the answer was
    /// cut off).
    fn close_open(&mut self, out: &mut Vec<Value>, status: &str) {
        if !self.open {
            return;
        }
        self.open = false;
        let output_index = self.items.len() - 1;
        let Some(item) = self.items.last_mut() else { return };
        match item {
            OutputItem::Message { id, status: s, content, .. } => {
                *s = status.to_string();
                let text = content.first().map(|c| c.text.clone()).unwrap_or_default();
                out.push(json!({"type": "response.output_text.done", "item_id": id, "output_index": output_index, "content_index": 0, "text": text, "logprobs": []}));
                out.push(json!({
                    "type": "response.content_part.done", "item_id": id, "output_index": output_index, "content_index": 0,
                    "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []},
                }));
            }
            OutputItem::Reasoning { id, status: s, content, .. } => {
                *s = status.to_string();
                let text = content.first().map(|c| c.text.clone()).unwrap_or_default();
                out.push(json!({"type": "response.reasoning_text.done", "item_id": id, "output_index": output_index, "content_index": 0, "text": text}));
                out.push(json!({
                    "type": "response.content_part.done", "item_id": id, "output_index": output_index, "content_index": 0,
                    "part": {"type": "reasoning_text", "text": text},
                }));
            }
            OutputItem::FunctionCall { id, status: s, name, arguments, .. } => {
                *s = status.to_string();
                out.push(json!({"type": "response.function_call_arguments.done", "item_id": id, "output_index": output_index, "name": name, "arguments": arguments}));
            }
        }
        let done = item_json(item);
        out.push(json!({"type": "response.output_item.done", "output_index": output_index, "item": done}));
    }

    fn open_kind(&self) -> Option<&OutputItem> {
        if self.open {
            self.items.last()
        } else {
            None
        }
    }

    /// One parser event.
    pub fn push(&mut self, e: ParseEvent) -> Vec<Value> {
        let mut out = Vec::new();
        match e {
            ParseEvent::Content(s) if s.is_empty() => {}
            ParseEvent::Content(s) => {
                if !matches!(self.open_kind(), Some(OutputItem::Message { .. })) {
                    let item = OutputItem::Message {
                        id: item_id("msg"),
                        status: "in_progress".into(),
                        role: "assistant".into(),
                        content: vec![OutputText::new(String::new())],
                    };
                    self.open_item(item, &mut out);
                }
                let output_index = self.items.len() - 1;
                if let Some(OutputItem::Message { id, content, .. }) = self.items.last_mut() {
                    if let Some(c) = content.first_mut() {
                        c.text.push_str(&s);
                    }
                    out.push(json!({"type": "response.output_text.delta", "item_id": id, "output_index": output_index, "content_index": 0, "delta": s, "logprobs": []}));
                }
            }
            ParseEvent::Reasoning(s) if s.is_empty() => {}
            ParseEvent::Reasoning(s) => {
                if !matches!(self.open_kind(), Some(OutputItem::Reasoning { .. })) {
                    let item = OutputItem::Reasoning {
                        id: item_id("rs"),
                        summary: Vec::new(),
                        content: vec![ReasoningText { kind: "reasoning_text".into(), text: String::new() }],
                        status: "in_progress".into(),
                    };
                    self.open_item(item, &mut out);
                }
                let output_index = self.items.len() - 1;
                if let Some(OutputItem::Reasoning { id, content, .. }) = self.items.last_mut() {
                    if let Some(c) = content.first_mut() {
                        c.text.push_str(&s);
                    }
                    out.push(json!({"type": "response.reasoning_text.delta", "item_id": id, "output_index": output_index, "content_index": 0, "delta": s}));
                }
            }
            ParseEvent::ToolCallBegin { id, name, .. } => {
                let item = OutputItem::FunctionCall {
                    id: item_id("fc"),
                    call_id: id,
                    name,
                    arguments: String::new(),
                    status: "in_progress".into(),
                };
                self.open_item(item, &mut out);
            }
            ParseEvent::ToolCallArguments { fragment, .. } => {
                let output_index = self.items.len().saturating_sub(1);
                if let (true, Some(OutputItem::FunctionCall { id, arguments, .. })) = (self.open, self.items.last_mut()) {
                    arguments.push_str(&fragment);
                    out.push(json!({"type": "response.function_call_arguments.delta", "item_id": id, "output_index": output_index, "delta": fragment}));
                }
            }
        }
        out
    }

    /// Ends the output: the open item closes with `status`; an answer with no item at all gets
    /// an empty message (a response always has one).
    pub fn finish(&mut self, status: &str) -> Vec<Value> {
        let mut out = Vec::new();
        if self.items.is_empty() {
            let item = OutputItem::Message {
                id: item_id("msg"),
                status: "in_progress".into(),
                role: "assistant".into(),
                content: vec![OutputText::new(String::new())],
            };
            self.open_item(item, &mut out);
        }
        self.close_open(&mut out, status);
        out
    }

    /// The finished items.
    pub fn into_items(self) -> Vec<OutputItem> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(events: &[Value]) -> Vec<String> {
        events.iter().map(|e| e["type"].as_str().unwrap_or_default().to_string()).collect()
    }

    #[test]
    fn text_then_call_makes_two_items_with_their_events() {
        let mut b = OutputBuilder::new();
        let mut ev = Vec::new();
        ev.extend(b.push(ParseEvent::Content("Hel".into())));
        ev.extend(b.push(ParseEvent::Content("lo".into())));
        ev.extend(b.push(ParseEvent::ToolCallBegin { index: 0, id: "call_1".into(), name: "add".into() }));
        ev.extend(b.push(ParseEvent::ToolCallArguments { index: 0, fragment: "{\"a\":".into() }));
        ev.extend(b.push(ParseEvent::ToolCallArguments { index: 0, fragment: "1}".into() }));
        ev.extend(b.finish("completed"));
        assert_eq!(
            kinds(&ev),
            [
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
            ]
        );
        assert_eq!(ev[4]["text"], "Hello");
        assert_eq!(ev[10]["arguments"], "{\"a\":1}");
        assert_eq!(ev[7]["output_index"], 1);
        let items = b.into_items();
        assert!(matches!(&items[0], OutputItem::Message { status, content, .. } if status == "completed" && content[0].text == "Hello"));
        assert!(matches!(&items[1], OutputItem::FunctionCall { call_id, arguments, status, .. } if call_id == "call_1" && arguments == "{\"a\":1}" && status == "completed"));
        let id = match &items[0] {
            OutputItem::Message { id, .. } => id.clone(),
            _ => unreachable!(),
        };
        assert!(id.starts_with("msg_") && id.len() == 28, "{id}");
    }

    #[test]
    fn an_empty_answer_is_one_empty_message_and_a_cut_one_is_incomplete() {
        let mut b = OutputBuilder::new();
        let ev = b.finish("completed");
        assert_eq!(kinds(&ev).len(), 5);
        assert!(matches!(&b.items()[0], OutputItem::Message { content, .. } if content[0].text.is_empty()));
        let mut b = OutputBuilder::new();
        b.push(ParseEvent::Reasoning("hmm".into()));
        b.push(ParseEvent::Content("partial".into()));
        b.finish("incomplete");
        let items = b.into_items();
        assert!(matches!(&items[0], OutputItem::Reasoning { status, content, .. } if status == "completed" && content[0].text == "hmm"));
        assert!(matches!(&items[1], OutputItem::Message { status, .. } if status == "incomplete"));
    }
}
