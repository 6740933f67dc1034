"""OpenAI's Responses API (`client.responses`) through the official SDK, on the real SmolLM2 model:
text, streaming events, stateful follow-ups (`previous_response_id`), retrieve and delete,
structured output (`text.format` through `responses.parse`) and function calls."""

import json

import openai
import pytest
from pydantic import BaseModel, Field

from conftest import MODEL, http

QUESTION = "What color is grass? Answer in one short sentence."


def create(client, **kw):
    kw.setdefault("temperature", 0)
    kw.setdefault("max_output_tokens", 32)
    return client.responses.create(model=MODEL, **kw)


def test_text_response_matches_chat_completions(client):
    r = create(client, input=QUESTION)
    assert r.object == "response" and r.id.startswith("resp_") and r.model == MODEL
    assert r.status in ("completed", "incomplete"), r.status
    assert [o.type for o in r.output] == ["message"]
    msg = r.output[0]
    assert msg.role == "assistant" and msg.id.startswith("msg_") and msg.content[0].type == "output_text"
    assert r.output_text and r.output_text == msg.content[0].text
    u = r.usage
    assert u.input_tokens > 5 and 1 <= u.output_tokens <= 32 and u.total_tokens == u.input_tokens + u.output_tokens
    # The same conversation through chat completions gives the same greedy answer.
    c = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=32)
    assert c.choices[0].message.content == r.output_text
    assert c.usage.prompt_tokens == u.input_tokens
    # Cut at max_output_tokens: incomplete, and it says why.
    short = create(client, input=QUESTION, max_output_tokens=3, store=False)
    assert short.status == "incomplete" and short.incomplete_details.reason == "max_output_tokens"
    assert short.usage.output_tokens == 3 and r.output_text.startswith(short.output_text)
    # `instructions` is a system message first.
    sys = create(client, input=QUESTION, instructions="You are a pirate.", store=False)
    assert sys.instructions == "You are a pirate."
    c = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=32,
    )
    assert c.usage.prompt_tokens == sys.usage.input_tokens and c.choices[0].message.content == sys.output_text


def test_streaming_events_build_the_same_response(client):
    # Room for the whole answer: the SDK's stream helper only accepts a `response.completed` end
    # (a cut answer ends with `response.incomplete`, checked below on the raw stream).
    full = create(client, input=QUESTION, store=False, max_output_tokens=96)
    assert full.status == "completed", (full.status, full.output_text)
    with client.responses.stream(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=96, store=False) as s:
        events = list(s)
        final = s.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"], kinds
    assert kinds[-1] == "response.completed", kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    body = [k for k in kinds[2:-1] if k != "response.output_text.delta"]
    assert body == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ], kinds
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) >= 2
    assert "".join(deltas) == full.output_text == final.output_text
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.text == full.output_text
    ids = {e.item_id for e in events if hasattr(e, "item_id")}
    assert ids == {final.output[0].id}
    assert events[0].response.id == final.id and events[0].response.status == "in_progress"
    assert final.usage.input_tokens == full.usage.input_tokens and final.usage.output_tokens == full.usage.output_tokens
    # The raw stream (no helper) has the same events.
    raw = list(client.responses.create(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=96, store=False, stream=True))
    assert [e.type for e in raw] == kinds
    # Cut at max_output_tokens, the stream ends with `response.incomplete`, saying why.
    cut = list(client.responses.create(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=3, store=False, stream=True))
    assert cut[-1].type == "response.incomplete", [e.type for e in cut]
    assert cut[-1].response.status == "incomplete" and cut[-1].response.incomplete_details.reason == "max_output_tokens"
    assert cut[-1].response.usage.output_tokens == 3
    assert [e.sequence_number for e in cut] == list(range(len(cut)))
    assert full.output_text.startswith("".join(e.delta for e in cut if e.type == "response.output_text.delta"))


def test_previous_response_id_continues_the_conversation_from_the_cache(client):
    intro = (
        "My name is Mina and I live in Busan, a port city in the south of Korea. I work at the fish market "
        "near the harbour and I like hiking on the weekends. Please greet me."
    )
    first = create(client, input=intro, max_output_tokens=24)
    follow = create(client, input="What is my name?", previous_response_id=first.id, max_output_tokens=24)
    assert follow.previous_response_id == first.id
    # The whole conversation was the prompt, and its start came from the prefix cache.
    assert follow.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert follow.usage.input_tokens_details.cached_tokens >= 32, follow.usage
    # The same turns sent in full give the same greedy answer.
    stateless = create(
        client,
        input=[
            {"role": "user", "content": intro},
            {"role": "assistant", "content": first.output_text},
            {"role": "user", "content": "What is my name?"},
        ],
        max_output_tokens=24,
        store=False,
    )
    assert stateless.output_text == follow.output_text
    assert stateless.usage.input_tokens == follow.usage.input_tokens
    # A chain of three: the third sees both earlier turns.
    third = create(client, input="And where do I live?", previous_response_id=follow.id, max_output_tokens=24)
    assert third.usage.input_tokens > follow.usage.input_tokens + follow.usage.output_tokens


def test_retrieve_delete_and_store_false(client):
    r = create(client, input=QUESTION, metadata={"case": "retrieve"})
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text and got.metadata == {"case": "retrieve"}
    items = client.responses.input_items.list(r.id)
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [("message", "user", QUESTION)]
    assert items.data[0].id and items.has_more is False
    # Two inputs, newest first by default, paged one at a time.
    two = create(client, input=[{"role": "user", "content": "first"}, {"role": "user", "content": QUESTION}])
    page = client.responses.input_items.list(two.id, limit=1)
    assert [i.content[0].text for i in page.data] == [QUESTION] and page.has_more is True
    rest = client.responses.input_items.list(two.id, limit=1, after=page.data[0].id)
    assert [i.content[0].text for i in rest.data] == ["first"] and rest.has_more is False
    assert [i.content[0].text for i in client.responses.input_items.list(two.id, order="asc").data] == ["first", QUESTION]
    with pytest.raises(openai.BadRequestError):
        client.responses.input_items.list(two.id, limit=0)
    assert got.usage.output_tokens == r.usage.output_tokens and got.status == r.status
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(r.id)
    with pytest.raises(openai.NotFoundError):
        create(client, input="again?", previous_response_id=r.id)
    unsaved = create(client, input=QUESTION, store=False)
    assert unsaved.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unsaved.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_does_not_exist")


class City(BaseModel):
    name: str = Field(max_length=24)
    country: str = Field(max_length=24)
    population: int = Field(ge=0, le=100_000_000)


def test_structured_output_with_text_format(client):
    r = client.responses.parse(
        model=MODEL,
        input="Describe Seoul, the capital of South Korea, as JSON.",
        text_format=City,
        temperature=0,
        max_output_tokens=120,
        store=False,
    )
    assert r.status == "completed", r.output_text
    city = r.output_parsed
    assert isinstance(city, City), r.output_text
    assert json.loads(r.output_text) == city.model_dump()
    # json_object: any JSON object. The prompt asks for a short one: SmolLM2's greedy answer to an
    # open "a JSON object about cats" goes on repeating itself past any budget.
    o = create(client, input="Give me a short JSON object about a cat: its name and age.", text={"format": {"type": "json_object"}}, max_output_tokens=80, store=False)
    assert o.status == "completed" and isinstance(json.loads(o.output_text), dict), o.output_text


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 32}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def test_function_call_and_its_output_as_a_follow_up(client):
    r = create(
        client,
        input="What is the weather in Seoul right now?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=64,
    )
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1, r.output
    call = calls[0]
    assert call.name == "get_weather" and call.call_id and call.id.startswith("fc_")
    args = json.loads(call.arguments)
    assert set(args) == {"city"} and isinstance(args["city"], str)
    # Streaming the same request gives the same call, argument deltas and all.
    with client.responses.stream(
        model=MODEL,
        input="What is the weather in Seoul right now?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        temperature=0,
        max_output_tokens=64,
        store=False,
    ) as s:
        events = list(s)
        final = s.get_final_response()
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds, kinds
    scall = next(o for o in final.output if o.type == "function_call")
    assert (scall.name, scall.arguments) == (call.name, call.arguments)
    # The tool's result goes back as a function_call_output item on the stored conversation.
    answer = create(
        client,
        previous_response_id=r.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 degrees Celsius."}],
        tools=[WEATHER],
        tool_choice="none",
        max_output_tokens=40,
    )
    assert [o.type for o in answer.output] == ["message"], answer.output
    assert answer.output_text.strip()
    # It is the same as sending the whole exchange as items.
    stateless = create(
        client,
        input=[
            {"role": "user", "content": "What is the weather in Seoul right now?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 degrees Celsius."},
        ],
        tools=[WEATHER],
        tool_choice="none",
        max_output_tokens=40,
        store=False,
    )
    assert (stateless.usage.input_tokens, stateless.output_text) == (answer.usage.input_tokens, answer.output_text)


def test_errors_name_the_parameter(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=MODEL, input=[{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}])
    assert e.value.body["param"] == "input[0].content[0].type"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=MODEL, input="x", tools=[{"type": "web_search"}])
    assert e.value.body["param"] == "tools[0].type"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=MODEL, input="x", background=True)
    assert e.value.body["param"] == "background"
    status, text = http("POST", "/v1/responses", json.dumps({"model": MODEL, "input": "x", "frobnicate": 1}))
    assert status == 400 and json.loads(text)["error"]["param"] == "frobnicate", text
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="x")
