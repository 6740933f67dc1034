//! `/v1/messages` with `stream: true`: Anthropic's events. `message_start` (the message with
//! empty `content`), then per content block `content_block_start`, `content_block_delta`s
//! (`text_delta`, `thinking_delta`, `input_json_delta`) and `content_block_stop`, then
//! `message_delta` (`stop_reason`, usage) and `message_stop`; a `ping` after the start, as
//! Anthropic sends one. A failure mid-stream is an `error` event.

use serde_json::{json, Value};

use super::{stop_reason, tool_use_id, usage};
use crate::chat::{ParseEvent, ToolCall};
use crate::routes::converse::{Answer, EventFormat, Named};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Thinking,
    Tool,
}

pub struct MessageEvents {
    id: String,
    model: String,
    prompt_tokens: usize,
    /// The index of the next content block.
    next: usize,
    open: Open,
}

impl MessageEvents {
    pub fn new(id: String, model: String, prompt_tokens: usize) -> Self {
        MessageEvents { id, model, prompt_tokens, next: 0, open: Open::None }
    }

    fn close(&mut self, out: &mut Vec<Named>) {
        if self.open != Open::None {
            out.push(("content_block_stop", json!({"type": "content_block_stop", "index": self.next - 1})));
            self.open = Open::None;
        }
    }

    fn open(&mut self, kind: Open, block: Value, out: &mut Vec<Named>) {
        self.close(out);
        out.push(("content_block_start", json!({"type": "content_block_start", "index": self.next, "content_block": block})));
        self.next += 1;
        self.open = kind;
    }

    fn delta(&self, delta: Value) -> Named {
        ("content_block_delta", json!({"type": "content_block_delta", "index": self.next - 1, "delta": delta}))
    }
}

impl EventFormat for MessageEvents {
    fn start(&mut self) -> Vec<Named> {
        let message = json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        });
        vec![("message_start", json!({"type": "message_start", "message": message})), ("ping", json!({"type": "ping"}))]
    }

    fn events(&mut self, events: Vec<ParseEvent>) -> Vec<Named> {
        let mut out = Vec::new();
        for e in events {
            match e {
                ParseEvent::Content(s) => {
                    if self.open != Open::Text {
                        self.open(Open::Text, json!({"type": "text", "text": ""}), &mut out);
                    }
                    out.push(self.delta(json!({"type": "text_delta", "text": s})));
                }
                ParseEvent::Reasoning(s) => {
                    if self.open != Open::Thinking {
                        self.open(Open::Thinking, json!({"type": "thinking", "thinking": "", "signature": ""}), &mut out);
                    }
                    out.push(self.delta(json!({"type": "thinking_delta", "thinking": s})));
                }
                ParseEvent::ToolCallBegin { id, name, .. } => {
                    let id = tool_use_id(&ToolCall { id, name: String::new(), arguments: String::new() });
                    self.open(Open::Tool, json!({"type": "tool_use", "id": id, "name": name, "input": {}}), &mut out);
                }
                ParseEvent::ToolCallArguments { fragment, .. } => {
                    if self.open == Open::Tool && !fragment.is_empty() {
                        out.push(self.delta(json!({"type": "input_json_delta", "partial_json": fragment})));
                    }
                }
            }
        }
        out
    }

    fn finish(&mut self, answer: &Answer) -> Vec<Named> {
        let mut out = Vec::new();
        if self.next == 0 && answer.message.tool_calls.is_empty() {
            // An empty answer still has its (empty) text block, as in the non-streamed message.
            self.open(Open::Text, json!({"type": "text", "text": ""}), &mut out);
        }
        self.close(&mut out);
        let u = usage(&answer.usage);
        out.push((
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(answer.finish, &answer.message, answer.stop_sequence.as_deref()), "stop_sequence": answer.stop_sequence},
                "usage": {"output_tokens": u.output_tokens, "input_tokens": u.input_tokens, "cache_read_input_tokens": u.cache_read_input_tokens, "cache_creation_input_tokens": 0},
            }),
        ));
        out.push(("message_stop", json!({"type": "message_stop"})));
        out
    }

    fn error(&mut self, message: &str) -> Named {
        ("error", json!({"type": "error", "error": {"type": "api_error", "message": message}}))
    }
}
