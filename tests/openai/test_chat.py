"""Chat completions and models through the official SDK, on the real SmolLM2 model."""

from conftest import MODEL


def golden(goldens, needle):
    return next(g for g in goldens if any(needle in m["content"] for m in g["messages"]))


def greedy(client, messages, **kw):
    return client.chat.completions.create(model=MODEL, messages=messages, temperature=0, **kw)


def test_models_list_and_retrieve(client):
    ids = [m.id for m in client.models.list()]
    assert ids[0] == MODEL, ids
    m = client.models.retrieve(MODEL)
    assert m.id == MODEL and m.object == "model"
    # general.name is accepted too.
    for alias in ids[1:]:
        assert client.models.retrieve(alias).id == alias


def test_greedy_chat_matches_llama_cpp(client, goldens):
    g = golden(goldens, "what color is grass")
    r = greedy(client, g["messages"], max_tokens=48)
    c = r.choices[0]
    assert c.message.role == "assistant"
    assert c.message.content == g["generated_text"], (c.message.content, g["generated_text"])
    assert c.finish_reason == "stop"
    assert r.object == "chat.completion" and r.model == MODEL and r.id.startswith("chatcmpl-")
    u = r.usage
    assert u.prompt_tokens == len(g["prompt_token_ids"])
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert 1 <= u.completion_tokens <= 48


def test_stream_equals_non_stream(client, goldens):
    g = golden(goldens, "rainbows")
    full = greedy(client, g["messages"], max_tokens=24).choices[0]
    stream = greedy(client, g["messages"], max_tokens=24, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert text == full.message.content
    assert finishes == [full.finish_reason] == ["length"]
    assert len({ch.id for ch in chunks}) == 1


def test_stream_include_usage(client, goldens):
    g = golden(goldens, "what color is grass")
    chunks = list(greedy(client, g["messages"], max_tokens=48, stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens == len(g["prompt_token_ids"])
    assert all(ch.usage is None for ch in chunks[:-1])
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == g["generated_text"]


def test_max_tokens_reaches_length(client):
    for kw in ({"max_tokens": 5}, {"max_completion_tokens": 5}):
        r = greedy(client, [{"role": "user", "content": "Tell me a long story about a dragon."}], **kw)
        assert r.choices[0].finish_reason == "length"
        assert r.usage.completion_tokens == 5


def test_stop_string_cuts_and_never_leaks(client, goldens):
    g = golden(goldens, "rainbows")
    full = greedy(client, g["messages"], max_tokens=32).choices[0].message.content
    words = full.split(" ")
    assert len(words) > 6, full
    stop = " " + words[4]
    want = full[: full.index(stop)]
    r = greedy(client, g["messages"], max_tokens=32, stop=[stop, "@@never@@"])
    assert r.choices[0].message.content == want
    assert r.choices[0].finish_reason == "stop"
    streamed = "".join(
        ch.choices[0].delta.content or ""
        for ch in greedy(client, g["messages"], max_tokens=32, stop=stop, stream=True)
        if ch.choices
    )
    assert streamed == want


def test_seed_reproducible(client):
    msgs = [{"role": "user", "content": "Write a short poem about the sea."}]
    kw = dict(model=MODEL, messages=msgs, temperature=1.0, max_tokens=24)
    a = client.chat.completions.create(seed=42, **kw).choices[0].message.content
    b = client.chat.completions.create(seed=42, **kw).choices[0].message.content
    assert a == b
    # n choices get seeds seed, seed+1, ...: choice 0 of n=2 is the seed-42 answer.
    r = client.chat.completions.create(seed=42, n=2, **kw)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].message.content == a
    assert r.choices[1].message.content == client.chat.completions.create(seed=43, **kw).choices[0].message.content


def test_logprobs_one_entry_per_token(client):
    # Korean output exercises tokens that are incomplete UTF-8 sequences.
    msgs = [{"role": "user", "content": "Translate to Korean: I love you. Answer in Korean only: 사랑해요"}]
    r = greedy(client, msgs, max_tokens=24, logprobs=True, top_logprobs=3)
    c = r.choices[0]
    entries = c.logprobs.content
    assert len(entries) == r.usage.completion_tokens
    joined = b"".join(bytes(e.bytes) for e in entries)
    assert joined.decode("utf-8", errors="replace").startswith(c.message.content)
    for e in entries:
        assert e.logprob <= 0.0
        assert len(e.top_logprobs) == 3
        lps = [t.logprob for t in e.top_logprobs]
        assert lps == sorted(lps, reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert abs(e.logprob - lps[0]) < 1e-4, (e, lps)
    # The stream reports the same entries, one per token.
    streamed = []
    for ch in greedy(client, msgs, max_tokens=24, logprobs=True, top_logprobs=3, stream=True):
        if ch.choices and ch.choices[0].logprobs:
            streamed.extend(ch.choices[0].logprobs.content or [])
    assert [(e.bytes, round(e.logprob, 4)) for e in streamed] == [(e.bytes, round(e.logprob, 4)) for e in entries]


def test_text_parts_equal_string_content(client, goldens):
    g = golden(goldens, "what color is grass")
    text = g["messages"][0]["content"]
    r = greedy(client, [{"role": "user", "content": [{"type": "text", "text": text}]}], max_tokens=48)
    assert r.choices[0].message.content == g["generated_text"]


def test_follow_up_turn_reuses_the_prefix(client, goldens):
    g = golden(goldens, "My name is Alice")
    opening = g["messages"][:1]
    first = greedy(client, opening, max_tokens=16, user="alice")
    assert first.usage.prompt_tokens_details.cached_tokens < first.usage.prompt_tokens
    convo = opening + [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "What is my name?"},
    ]
    second = greedy(client, convo, max_tokens=8, user="alice")
    assert second.usage.prompt_tokens_details.cached_tokens > 0, second.usage
