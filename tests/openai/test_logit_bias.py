"""`logit_bias` through the official SDK on the real model: -100 bans greedy's choice, +100
forces a token, and bad values or ids outside the vocabulary are a 400 naming the parameter."""

import openai
import pytest

from conftest import MODEL


def golden(goldens, name):
    return next(g for g in goldens if g["name"] == name)


def first_token(client, messages, **kw):
    r = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=1, **kw)
    return r.choices[0].message.content


def test_logit_bias_bans_and_forces_tokens(client, goldens):
    # A prompt whose first token is no near-tie (llama.cpp's top two are 1.11 log-prob apart), so
    # greedy's first token is llama.cpp's.
    code = golden(goldens, "code_python")
    plain = first_token(client, code["messages"])
    assert plain and code["generated_text"].startswith(plain), plain  # llama.cpp's first token
    banned = first_token(client, code["messages"], logit_bias={str(code["generated_token_ids"][0]): -100})
    assert banned != plain, banned
    g = golden(goldens, "capital")
    msgs = g["messages"]
    france = g["prompt_token_ids"][g["prompt_token_pieces"].index(" France")]
    assert first_token(client, msgs, logit_bias={str(france): 100}) == " France"
    # The same on /v1/completions, with the prompt as token ids.
    r = client.completions.create(model=MODEL, prompt=g["prompt_token_ids"], temperature=0, max_tokens=1, logit_bias={str(france): 100})
    assert r.choices[0].text == " France"


@pytest.mark.parametrize("bias", [{"1": 101}, {"x": 1}, {"99999999": 5}])
def test_bad_logit_bias_is_a_400(client, bias):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1, logit_bias=bias)
    assert e.value.body["param"] == "logit_bias", e.value.body
