"""logprobs through the real OpenAI client: chat (logprobs/top_logprobs) and legacy
completions (logprobs: k), streamed and not, against the demo model."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from server_helpers import Served


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def check_entry(entry: Any, k: int) -> None:
    """One chat logprobs entry: a log-probability, bytes that decode to the token, k
    alternatives best first (greedy: the token itself first)."""
    assert entry.logprob <= 0
    assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token
    assert len(entry.top_logprobs) == k
    values = [t.logprob for t in entry.top_logprobs]
    assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
    for top in entry.top_logprobs:
        assert bytes(top.bytes).decode("utf-8", "replace") == top.token
    if k:
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)


@pytest.mark.parametrize("k", [0, 3, 20])
def test_chat_logprobs(server: Served, k: int) -> None:
    reply = server.client().chat.completions.create(
        model="demo-model", messages=ask("What is 48 + 37?"), max_tokens=16, temperature=0,
        logprobs=True, top_logprobs=k)
    choice = reply.choices[0]
    assert choice.message.content == "85"
    content = choice.logprobs.content
    assert len(content) == reply.usage.completion_tokens
    for entry in content:
        check_entry(entry, k)
    assert "".join(e.token for e in content) == choice.message.content


def test_chat_without_logprobs_has_none(server: Served) -> None:
    reply = server.client().chat.completions.create(
        model="demo-model", messages=ask("What is 48 + 37?"), max_tokens=16, temperature=0)
    assert reply.choices[0].logprobs is None


def test_chat_stream_chunks_carry_their_tokens(server: Served) -> None:
    """Each chunk's logprobs are those of the tokens in its delta; together they spell the
    content and match the non-streamed reply's."""
    client = server.client()
    chunks = list(client.chat.completions.create(
        model="demo-model", messages=ask("Hi! What can you do?"), max_tokens=24,
        temperature=0, logprobs=True, top_logprobs=2, stream=True))
    assert chunks[0].choices[0].logprobs is None  # the role chunk has no tokens
    entries = []
    for chunk in chunks:
        choice = chunk.choices[0]
        if choice.delta.content:
            tokens = [e.token for e in choice.logprobs.content]
            assert "".join(tokens) == choice.delta.content
            entries.extend(choice.logprobs.content)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text and "".join(e.token for e in entries) == text
    for entry in entries:
        check_entry(entry, 2)
    whole = client.chat.completions.create(
        model="demo-model", messages=ask("Hi! What can you do?"), max_tokens=24,
        temperature=0, logprobs=True, top_logprobs=2)
    assert whole.choices[0].message.content == text
    assert [(e.token, round(e.logprob, 4)) for e in whole.choices[0].logprobs.content] == \
        [(e.token, round(e.logprob, 4)) for e in entries]


def check_completion(logprobs: Any, text: str, k: int, start: int = 0) -> None:
    assert "".join(logprobs.tokens) == text
    assert len(logprobs.token_logprobs) == len(logprobs.tokens) == len(logprobs.top_logprobs)
    assert all(v <= 0 for v in logprobs.token_logprobs)
    offset = start
    for token, value, top, at in zip(logprobs.tokens, logprobs.token_logprobs,
                                     logprobs.top_logprobs, logprobs.text_offset, strict=True):
        assert at == offset
        offset += len(token)
        # the k best plus the chosen token (OpenAI: up to logprobs + 1 entries)
        assert token in top and top[token] == pytest.approx(value)
        assert 1 <= len(top) <= k + 1
        assert all(v <= 0 for v in top.values())


@pytest.mark.parametrize("k", [0, 2, 5])
def test_completions_logprobs(server: Served, k: int) -> None:
    client = server.client()
    whole = client.completions.create(model="demo-model", prompt="Hello", max_tokens=6,
                                      temperature=0, logprobs=k)
    choice = whole.choices[0]
    assert len(choice.logprobs.tokens) == whole.usage.completion_tokens
    check_completion(choice.logprobs, choice.text, k)
    if k:  # greedy: the chosen token is the best
        for value, top in zip(choice.logprobs.token_logprobs, choice.logprobs.top_logprobs,
                              strict=True):
            assert value == pytest.approx(max(top.values()))
    pieces = list(client.completions.create(model="demo-model", prompt="Hello",
                                            max_tokens=6, temperature=0, logprobs=k,
                                            stream=True))
    tokens: list[str] = []
    offsets: list[int] = []
    for piece in pieces:
        if piece.choices[0].text:
            assert "".join(piece.choices[0].logprobs.tokens) == piece.choices[0].text
            tokens.extend(piece.choices[0].logprobs.tokens)
            offsets.extend(piece.choices[0].logprobs.text_offset)
    assert tokens == choice.logprobs.tokens and offsets == choice.logprobs.text_offset
    echoed = client.completions.create(model="demo-model", prompt="Hello", max_tokens=6,
                                       temperature=0, logprobs=k, echo=True)
    assert echoed.choices[0].logprobs.text_offset[0] == len("Hello")
    plain = client.completions.create(model="demo-model", prompt="Hello", max_tokens=2)
    assert plain.choices[0].logprobs is None


def test_post_sampling_probs_extra_field(server: Served) -> None:
    """llama-server's post_sampling_probs: the alternatives are those the sampler kept
    (top_k=2 leaves at most two), whose probabilities add up to 1."""
    reply = server.client().chat.completions.create(
        model="demo-model", messages=ask("Hi! What can you do?"), max_tokens=8,
        temperature=0.8, seed=4, logprobs=True, top_logprobs=5,
        extra_body={"top_k": 2, "post_sampling_probs": True})
    for entry in reply.choices[0].logprobs.content:
        assert 1 <= len(entry.top_logprobs) <= 2
        assert sum(math.exp(t.logprob) for t in entry.top_logprobs) == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {"logprobs": 3}, "logprobs"),
    ("/v1/completions", {"logprobs": 6}, "logprobs"),
    ("/v1/completions", {"logprobs": -1}, "logprobs"),
    ("/v1/completions", {"logprobs": True}, "logprobs"),
])
def test_logprobs_out_of_range_is_a_400(server: Served, path: str, body: dict[str, Any],
                                        param: str) -> None:
    base: dict[str, Any] = {"messages": ask("Hi")} if "chat" in path else {"prompt": "Hi"}
    status, _, answer = server.raw("POST", path, json.dumps({**base, **body}).encode())
    assert status == 400
    assert answer["error"]["param"] == param


def test_backend_sampling_extra_field(server: Served) -> None:
    """llama-server's backend_sampling: the same greedy reply sampled inside the graph; a
    non-boolean is a 400 naming the field; with logprobs the host samples (they need the
    raw logits) and the figures are there."""
    client = server.client()
    plain = client.chat.completions.create(
        model="demo-model", messages=ask("What is 48 + 37?"), max_tokens=16, temperature=0)
    graph = client.chat.completions.create(
        model="demo-model", messages=ask("What is 48 + 37?"), max_tokens=16, temperature=0,
        extra_body={"backend_sampling": True})
    assert graph.choices[0].message.content == plain.choices[0].message.content == "85"
    both = client.chat.completions.create(
        model="demo-model", messages=ask("What is 48 + 37?"), max_tokens=16, temperature=0,
        logprobs=True, top_logprobs=1, extra_body={"backend_sampling": True})
    assert len(both.choices[0].logprobs.content) == both.usage.completion_tokens
    status, _, body = server.raw("POST", "/v1/chat/completions", json.dumps(
        {"messages": ask("Hi"), "max_tokens": 2, "backend_sampling": "yes"}).encode())
    assert status == 400 and body["error"]["param"] == "backend_sampling"
