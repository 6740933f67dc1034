"""Text completions, and every error case raising the SDK's matching exception."""

import json

import openai
import pytest

from conftest import API_KEY, BASE_URL, MODEL, http


def test_completion_string_list_and_stream(client):
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert r.object == "text_completion"
    one = r.choices[0].text
    assert one and r.choices[0].finish_reason in ("length", "stop")
    r2 = client.completions.create(model=MODEL, prompt=["Once upon a time", "The capital of France is"], max_tokens=8, temperature=0)
    assert [c.index for c in r2.choices] == [0, 1]
    assert r2.choices[1].text == one
    streamed = "".join(
        ch.choices[0].text
        for ch in client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True)
        if ch.choices
    )
    assert streamed == one


def test_completion_logprobs(client):
    r = client.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=6, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == r.usage.completion_tokens
    assert all(len(t) <= 2 for t in lp.top_logprobs)
    assert lp.text_offset == sorted(lp.text_offset)


def expect(exc, fn, code=None, param=None):
    with pytest.raises(exc) as e:
        fn()
    if code is not None:
        assert e.value.code == code, e.value.body
    if param is not None:
        assert e.value.param == param, e.value.body
    return e.value


def test_bad_parameters_are_bad_request(client):
    msgs = [{"role": "user", "content": "hi"}]
    chat = client.chat.completions.create
    expect(openai.BadRequestError, lambda: chat(model=MODEL, messages=msgs, temperature=5), param="temperature")
    expect(openai.BadRequestError, lambda: chat(model=MODEL, messages=msgs, top_p=1.5), param="top_p")
    expect(openai.BadRequestError, lambda: chat(model=MODEL, messages=msgs, n=0), param="n")
    expect(openai.BadRequestError, lambda: chat(model=MODEL, messages=msgs, max_tokens=0), param="max_tokens")
    expect(openai.BadRequestError, lambda: chat(model=MODEL, messages=msgs, stop=["a", "b", "c", "d", "e"]), param="stop")
    expect(openai.BadRequestError, lambda: chat(model=MODEL, messages=msgs, logprobs=True, top_logprobs=50), param="top_logprobs")
    expect(openai.BadRequestError, lambda: chat(model=MODEL, messages=msgs, presence_penalty=-3), param="presence_penalty")
    expect(openai.BadRequestError, lambda: chat(model=MODEL, messages=[]), param="messages")
    expect(openai.BadRequestError, lambda: chat(model=MODEL, messages=[{"role": "critic", "content": "x"}]), param="messages[0].role")
    expect(openai.BadRequestError, lambda: chat(model=MODEL, messages=[{"role": "tool", "content": "x"}]), param="messages[0].tool_call_id")


def test_prompt_over_the_context(client):
    long = "hello " * 6000
    e = expect(
        openai.BadRequestError,
        lambda: client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": long}]),
        code="context_length_exceeded",
    )
    msg = e.body["message"] if isinstance(e.body, dict) else str(e)
    assert any(ch.isdigit() for ch in msg), msg


def test_unknown_model_not_found(client):
    expect(openai.NotFoundError, lambda: client.models.retrieve("gpt-4o"), code="model_not_found")
    expect(
        openai.NotFoundError,
        lambda: client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}]),
        code="model_not_found",
    )


def test_wrong_or_missing_key(client):
    assert API_KEY, "the test server runs with --api-key"
    bad = openai.OpenAI(base_url=BASE_URL, api_key="sk-wrong", max_retries=0)
    expect(openai.AuthenticationError, lambda: bad.models.list())
    expect(openai.AuthenticationError, lambda: bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}]))
    status, body = http("GET", "/v1/models", key="")
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    status, body = http("GET", "/health", key="")
    assert status == 200, body


def test_malformed_json_is_400_in_openai_shape(client):
    status, body = http("POST", "/v1/chat/completions", body='{"messages": [')
    assert status == 400
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
