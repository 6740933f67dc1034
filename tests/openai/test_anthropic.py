"""Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`) through the
official `anthropic` SDK (which authenticates with `x-api-key`), on the real SmolLM2 model:
messages, streaming, forced tool use with a `tool_result` follow-up, count_tokens and errors."""

import json

import anthropic
import pytest

from conftest import API_KEY, BASE_URL, MODEL, _require_server, http

QUESTION = "What color is grass? Answer in one short sentence."


@pytest.fixture(scope="module")
def claude():
    _require_server()
    root = BASE_URL[: -len("/v1")] if BASE_URL.endswith("/v1") else BASE_URL
    return anthropic.Anthropic(base_url=root, api_key=API_KEY or "unused", max_retries=0, timeout=300)


# anthropic 2.x has no `temperature` argument (Anthropic's newer models take none); the server
# does, and greedy decoding makes answers comparable, so it goes in the body.
GREEDY = {"temperature": 0}


def create(claude, **kw):
    kw.setdefault("extra_body", GREEDY)
    kw.setdefault("max_tokens", 32)
    return claude.messages.create(model=MODEL, **kw)


def test_message_matches_chat_completions(claude, client):
    m = create(claude, messages=[{"role": "user", "content": QUESTION}])
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_") and m.model == MODEL
    assert [b.type for b in m.content] == ["text"]
    assert m.stop_reason in ("end_turn", "max_tokens")
    c = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=32)
    assert m.content[0].text == c.choices[0].message.content
    assert m.usage.input_tokens + m.usage.cache_read_input_tokens == c.usage.prompt_tokens
    assert m.usage.output_tokens == c.usage.completion_tokens
    cut = create(claude, messages=[{"role": "user", "content": QUESTION}], max_tokens=3)
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3
    assert m.content[0].text.startswith(cut.content[0].text)
    # `system` as a string and as text blocks is the same system turn.
    a = create(claude, system="You are a pirate.", messages=[{"role": "user", "content": QUESTION}])
    b = create(claude, system=[{"type": "text", "text": "You are a pirate."}], messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}])
    assert a.content[0].text == b.content[0].text
    assert a.usage.input_tokens + a.usage.cache_read_input_tokens != m.usage.input_tokens + m.usage.cache_read_input_tokens


def test_stop_sequence_is_reported(claude):
    """A stop sequence taken from the greedy answer ends it there, named as Anthropic names it."""
    full = create(claude, messages=[{"role": "user", "content": QUESTION}])
    words = full.content[0].text.split()
    assert len(words) >= 3, full
    stop = " " + words[2]
    m = create(claude, messages=[{"role": "user", "content": QUESTION}], stop_sequences=["@@never@@", stop])
    assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", stop), m
    assert full.content[0].text.startswith(m.content[0].text) and stop not in m.content[0].text
    with claude.messages.stream(model=MODEL, max_tokens=32, extra_body=GREEDY, stop_sequences=[stop], messages=[{"role": "user", "content": QUESTION}]) as s:
        final = s.get_final_message()
    assert (final.stop_reason, final.stop_sequence, final.content[0].text) == ("stop_sequence", stop, m.content[0].text)
    assert full.stop_sequence is None


def test_stream_text_and_final_message(claude):
    full = create(claude, messages=[{"role": "user", "content": QUESTION}])
    with claude.messages.stream(model=MODEL, max_tokens=32, extra_body=GREEDY, messages=[{"role": "user", "content": QUESTION}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == full.content[0].text == final.content[0].text
    assert final.stop_reason == full.stop_reason and final.usage.output_tokens == full.usage.output_tokens
    raw = list(create(claude, messages=[{"role": "user", "content": QUESTION}], stream=True))
    kinds = [e.type for e in raw]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"], kinds
    body = [k for k in kinds if k not in ("ping", "content_block_delta")]
    assert body == ["message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop"], kinds
    deltas = [e.delta for e in raw if e.type == "content_block_delta"]
    assert len(deltas) >= 2 and all(d.type == "text_delta" for d in deltas)
    assert "".join(d.text for d in deltas) == full.content[0].text


WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 32}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def test_forced_tool_use_and_tool_result_follow_up(claude):
    ask = [{"role": "user", "content": "What is the weather in Seoul right now?"}]
    m = create(claude, messages=ask, tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}, max_tokens=64)
    assert m.stop_reason == "tool_use", m
    uses = [b for b in m.content if b.type == "tool_use"]
    assert len(uses) == 1
    use = uses[0]
    assert use.name == "get_weather" and use.id.startswith("toolu_")
    assert set(use.input) == {"city"} and isinstance(use.input["city"], str)
    # Streaming gives the same call (input_json_delta pieces).
    with claude.messages.stream(
        model=MODEL, max_tokens=64, extra_body=GREEDY, messages=ask, tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}
    ) as s:
        events = list(s)
        final = s.get_final_message()
    assert any(e.type == "content_block_delta" and e.delta.type == "input_json_delta" for e in events)
    suse = next(b for b in final.content if b.type == "tool_use")
    assert (suse.name, suse.input) == (use.name, use.input) and final.stop_reason == "tool_use"
    # The result goes back as a tool_result block; the answer is text.
    follow = ask + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21 degrees Celsius."}]},
    ]
    answer = create(claude, messages=follow, tools=[WEATHER], tool_choice={"type": "none"}, max_tokens=40)
    assert [b.type for b in answer.content] == ["text"] and answer.content[0].text.strip()
    assert answer.stop_reason in ("end_turn", "max_tokens")
    # `any` forces some call too.
    anyc = create(claude, messages=ask, tools=[WEATHER], tool_choice={"type": "any"}, max_tokens=64)
    assert anyc.stop_reason == "tool_use" and any(b.type == "tool_use" for b in anyc.content)


def test_count_tokens_uses_the_template_and_tokenizer(claude, client):
    msgs = [{"role": "user", "content": QUESTION}]
    n = claude.messages.count_tokens(model=MODEL, messages=msgs)
    c = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=1)
    assert n.input_tokens == c.usage.prompt_tokens
    s = claude.messages.count_tokens(model=MODEL, system="You are a pirate.", messages=msgs)
    c = client.chat.completions.create(
        model=MODEL, messages=[{"role": "system", "content": "You are a pirate."}] + msgs, temperature=0, max_tokens=1
    )
    assert s.input_tokens == c.usage.prompt_tokens
    t = claude.messages.count_tokens(model=MODEL, messages=msgs, tools=[WEATHER])
    assert t.input_tokens > n.input_tokens


def test_errors_in_anthropic_shape(claude):
    with pytest.raises(anthropic.BadRequestError) as e:
        create(claude, messages=[{"role": "user", "content": QUESTION}], extra_body={"temperature": 5})
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    bad = anthropic.Anthropic(base_url=claude.base_url, api_key="wrong-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "authentication_error"
    # `max_tokens` is required; an unknown field is named.
    status, text = http("POST", "/v1/messages", json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x"}]}))
    body = json.loads(text)
    assert status == 400 and body["type"] == "error" and "max_tokens" in body["error"]["message"], text
    status, text = http("POST", "/v1/messages", json.dumps({"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "x"}], "frobnicate": 1}))
    assert status == 400 and "frobnicate" in json.loads(text)["error"]["message"], text
