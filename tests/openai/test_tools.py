"""Tool calling, structured output and an agent loop through the official SDK, on the real
SmolLM2 135M. Its chat template knows no tools, so the server uses the generic format (tools in
the system turn, a JSON envelope for the answer) and constrains decoding: even this small model's
calls always parse and match their schemas. Strings in the schemas are bounded (`maxLength`) so a
constrained answer ends within `max_tokens`.
"""

import ast
import json
import operator

import jsonschema
import openai
import pydantic
import pytest

from conftest import MODEL, http

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 24}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluates an arithmetic expression such as 9.7 * 2",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "pattern": "^[0-9][0-9+*/. -]{0,23}$"}},
            "required": ["expression"],
            "additionalProperties": False,
        },
    },
}
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Looks a fact up in the encyclopedia",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "maxLength": 24}},
            "required": ["query"],
            "additionalProperties": False,
        },
    },
}
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, CALCULATOR, LOOKUP)}


def named(name):
    return {"type": "function", "function": {"name": name}}


def check_call(call, names):
    assert call.type == "function" and call.id.startswith("call_"), call
    assert call.function.name in names, call
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, SCHEMAS[call.function.name])
    return args


def test_forced_call_parses_and_stream_helper_agrees(client):
    kw = dict(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER, LOOKUP],
        tool_choice=named("get_weather"),
        temperature=0,
        max_tokens=64,
    )
    r = client.chat.completions.create(**kw)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls", c
    assert len(c.message.tool_calls) == 1
    check_call(c.message.tool_calls[0], {"get_weather"})
    # The SDK's stream helper accumulates the streamed tool-call pieces into the same call.
    with client.chat.completions.stream(**kw) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    fc = final.choices[0]
    assert fc.finish_reason == "tool_calls"
    got = [(t.function.name, t.function.arguments) for t in fc.message.tool_calls]
    assert got == [(t.function.name, t.function.arguments) for t in c.message.tool_calls]


def test_raw_stream_names_the_call_first(client):
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Weather in Seoul?"}],
            tools=[WEATHER],
            tool_choice="required",
            temperature=0,
            max_tokens=64,
            stream=True,
        )
    )
    pieces = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert pieces, chunks
    first = pieces[0]
    assert first.index == 0 and first.id.startswith("call_") and first.type == "function"
    assert first.function.name == "get_weather"
    assert all(p.id is None and p.function.name is None for p in pieces[1:])
    args = "".join(p.function.arguments or "" for p in pieces)
    jsonschema.validate(json.loads(args), SCHEMAS["get_weather"])
    # The arguments come in pieces as they are generated, not as one fragment at the end.
    assert len([p for p in pieces[1:] if p.function.arguments]) >= 2, pieces
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["tool_calls"]


def test_required_with_parallel_calls_and_auto(client):
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Rome, and look up the Colosseum."}],
        tools=[WEATHER, LOOKUP],
        tool_choice="required",
        temperature=0,
        max_tokens=160,
    )
    c = r.choices[0]
    assert c.finish_reason == "tool_calls" and c.message.tool_calls, c
    ids = [t.id for t in c.message.tool_calls]
    assert len(set(ids)) == len(ids)
    for t in c.message.tool_calls:
        check_call(t, {"get_weather", "lookup"})
    # auto: either a direct answer or calls, always well-formed.
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        tools=[WEATHER],
        temperature=0,
        max_tokens=96,
    )
    c = r.choices[0]
    if c.message.tool_calls:
        assert c.finish_reason == "tool_calls"
        for t in c.message.tool_calls:
            check_call(t, {"get_weather"})
    else:
        assert c.finish_reason in ("stop", "length") and c.message.content, c


class City(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=24)
    country: str = pydantic.Field(max_length=24)
    population_millions: float


def test_parse_returns_a_validated_pydantic_object(client):
    r = client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe Paris as JSON: name, country, population in millions."}],
        response_format=City,
        temperature=0,
        max_tokens=120,
    )
    c = r.choices[0]
    assert c.finish_reason == "stop", c
    assert isinstance(c.message.parsed, City), c.message
    assert City.model_validate_json(c.message.content) == c.message.parsed


def test_json_object_and_unsupported_schema(client):
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give me a JSON object with your name."}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=48,
    )
    c = r.choices[0]
    if c.finish_reason == "stop":
        assert isinstance(json.loads(c.message.content), dict), c.message.content
    else:
        assert c.message.content.lstrip().startswith("{")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "frobnicate"}}},
            max_tokens=8,
        )
    assert e.value.body["param"] == "response_format", e.value.body


BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def calculate(expression):
    """Arithmetic only (numbers and + - * /), no eval."""

    def ev(n):
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)):
            return n.value
        if isinstance(n, ast.BinOp) and type(n.op) in BINOPS:
            return BINOPS[type(n.op)](ev(n.left), ev(n.right))
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return -ev(n.operand)
        raise ValueError("not arithmetic")

    try:
        return str(ev(ast.parse(expression, mode="eval").body))
    except (SyntaxError, ValueError, ZeroDivisionError) as e:
        return f"error: {e}"


FACT = "Seoul has 9.7 million inhabitants (2024)."


def test_agent_loop_with_two_tools(client):
    """Look a number up, compute with it, answer: the calls are forced in turn (tool_choice), the
    results go back as tool messages, and the loop ends with a text answer."""
    tools = [CALCULATOR, LOOKUP]
    messages = [
        {"role": "system", "content": "You are a helpful assistant. Use the tools."},
        {"role": "user", "content": "How many people live in Seoul, doubled?"},
    ]
    plan = [named("lookup"), named("calculator"), "none"]
    used = []
    final = None
    for step, choice in enumerate(plan):
        r = client.chat.completions.create(
            model=MODEL, messages=messages, tools=tools, tool_choice=choice, temperature=0, max_tokens=96
        )
        m = r.choices[0].message
        if not m.tool_calls:
            final = r
            break
        assert r.choices[0].finish_reason == "tool_calls"
        messages.append(m.model_dump(exclude_none=True))
        for call in m.tool_calls:
            args = check_call(call, {"calculator", "lookup"})
            result = FACT if call.function.name == "lookup" else calculate(args["expression"])
            used.append(call.function.name)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    assert used == ["lookup", "calculator"], used
    assert final is not None, "the loop did not end with an answer"
    c = final.choices[0]
    assert c.finish_reason in ("stop", "length") and c.message.content and not c.message.tool_calls, c
    # The tool results are in the final answer's prompt: blanking them shortens it by their tokens.
    blank = [dict(m, content="") if m["role"] == "tool" else m for m in messages]
    r0 = client.chat.completions.create(model=MODEL, messages=blank, tools=tools, tool_choice="none", max_tokens=1)
    assert final.usage.prompt_tokens - r0.usage.prompt_tokens >= 8, (final.usage, r0.usage)
    assert http("GET", "/health")[0] == 200


def test_auto_stream_equals_non_stream(client):
    """At temperature 0 a streamed answer (text or calls) is the non-streamed one."""
    for content in ("Say hello to Anna.", "Is it raining in Oslo?"):
        kw = dict(
            model=MODEL,
            messages=[{"role": "user", "content": content}],
            tools=[WEATHER],
            temperature=0,
            max_tokens=64,
        )
        full = client.chat.completions.create(**kw).choices[0]
        with client.chat.completions.stream(**kw) as s:
            for _ in s:
                pass
            streamed = s.get_final_completion().choices[0]
        assert (streamed.message.content or "") == (full.message.content or ""), (streamed, full)
        calls = lambda m: [(t.function.name, t.function.arguments) for t in (m.tool_calls or [])]
        assert calls(streamed.message) == calls(full.message)
        assert streamed.finish_reason == full.finish_reason
