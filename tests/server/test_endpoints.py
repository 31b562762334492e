"""Every endpoint through the real OpenAI client, streamed and not, against the demo model."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import jsonschema
import numpy as np
import pytest
from server_helpers import Served, start, stop


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def test_models_lists_the_one_model(server: Served) -> None:
    models = server.client().models.list().data
    assert [m.id for m in models] == ["demo-model"]


def test_health_needs_no_key(server: Served) -> None:
    assert server.raw("GET", "/health", key=None)[:3:2] == (200, {"status": "ok"})


def test_chat_answers(server: Served) -> None:
    reply = server.client().chat.completions.create(
        model="demo-model", messages=ask("What is 48 + 37?"), max_tokens=16)
    choice = reply.choices[0]
    assert choice.message.content == "85"
    assert choice.finish_reason == "stop"
    assert reply.usage.completion_tokens >= 1
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_chat_streams_with_usage(server: Served) -> None:
    chunks = list(server.client().chat.completions.create(
        model="demo-model", messages=ask("What is 7 times 8?"), stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "56"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 2


def test_max_tokens_cuts_with_length(server: Served) -> None:
    reply = server.client().chat.completions.create(
        model="demo-model", messages=ask("Hi! What can you do?"), max_completion_tokens=3)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 3


def test_stop_strings(server: Served) -> None:
    reply = server.client().chat.completions.create(
        model="demo-model", messages=ask("Hi! What can you do?"), stop=["demo"])
    assert reply.choices[0].message.content == "Hi! I am the llamakit "
    assert reply.choices[0].finish_reason == "stop"


def test_completions_stream_and_not(server: Served) -> None:
    client = server.client()
    whole = client.completions.create(model="demo-model", prompt="Hello", max_tokens=5,
                                      seed=1)
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 5
    pieces = list(client.completions.create(model="demo-model", prompt="Hello", max_tokens=5,
                                            seed=1, stream=True))
    assert "".join(p.choices[0].text for p in pieces) == whole.choices[0].text
    assert pieces[-1].choices[0].finish_reason == "length"
    echoed = client.completions.create(model="demo-model", prompt="Hello", max_tokens=5,
                                       seed=1, echo=True)
    assert echoed.choices[0].text == "Hello" + whole.choices[0].text


SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}},
          "required": ["answer"], "additionalProperties": False}


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_end_to_end(server: Served, stream: bool) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "sum", "schema": SCHEMA}}
    result = server.client().chat.completions.create(
        model="demo-model", messages=ask("What is 2 + 3?"), response_format=fmt,
        max_tokens=48, stream=stream)
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in result if c.choices)
    else:
        text = result.choices[0].message.content
    jsonschema.validate(json.loads(text), SCHEMA)


def test_json_object(server: Served) -> None:
    reply = server.client().chat.completions.create(
        model="demo-model", messages=ask("What is 2 + 3?"), max_tokens=48,
        response_format={"type": "json_object"})
    # The tiny model may ramble inside a string until max_tokens; the grammar still holds
    # it to JSON: an object from the first character, a whole one when it stops by itself.
    text, reason = reply.choices[0].message.content, reply.choices[0].finish_reason
    assert text.lstrip().startswith("{")
    if reason == "stop":
        assert isinstance(json.loads(text), dict)


def test_extra_llama_sampling_fields_are_used(server: Served) -> None:
    """top_k=1 is greedy whatever the temperature: a llama.cpp field reaches the sampler."""
    client = server.client()
    replies = {client.chat.completions.create(
        model="demo-model", messages=ask("Hi!"), temperature=5.0, max_tokens=12, seed=s,
        extra_body={"top_k": 1}).choices[0].message.content for s in (1, 2, 3)}
    assert len(replies) == 1


@pytest.fixture(scope="module")
def embedder() -> Iterator[Served]:
    served = start("--embeddings", "-np", "2", "-c", "1024", key=None)
    try:
        yield served
    finally:
        stop(served)


def test_embeddings(embedder: Served) -> None:
    client = embedder.client()
    texts = ["What is 2 + 3?", "Spell llama backwards."]
    floats = client.embeddings.create(model="demo-model", input=texts, encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1]
    vectors = np.array([d.embedding for d in floats.data])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert not np.allclose(vectors[0], vectors[1])
    assert floats.usage.prompt_tokens > 0
    _, _, raw = embedder.raw("POST", "/v1/embeddings", json.dumps(
        {"input": texts[0], "encoding_format": "base64"}).encode())
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, vectors[0], atol=1e-6)


def test_embedding_server_refuses_chat_and_chat_server_refuses_embeddings(
        embedder: Served, server: Served) -> None:
    status, _, body = embedder.raw("POST", "/v1/chat/completions", json.dumps(
        {"messages": ask("Hi")}).encode())
    assert status == 400 and "--embeddings" in body["error"]["message"]
    status, _, body = server.raw("POST", "/v1/embeddings", json.dumps({"input": "x"}).encode())
    assert status == 400 and "--embeddings" in body["error"]["message"]


@pytest.mark.parametrize("value", ["", ["a", ""], [], [1, 2], [[1], [2]]])
def test_empty_or_token_embedding_input_is_a_400(embedder: Served, value: object) -> None:
    """OpenAI refuses an empty string; the vector of nothing (or of BOS) is no answer."""
    status, _, body = embedder.raw("POST", "/v1/embeddings", json.dumps(
        {"input": value}).encode())
    assert status == 400, body
    assert body["error"]["param"] == "input"
