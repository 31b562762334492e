"""Tool calls end to end: a random-weight model with Qwen2.5's chat template (from the
pinned tree), tool_choice="required", so llama.cpp's grammar makes the reply a call."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest
from server_helpers import Served, start, stop

PARAMETERS = {"type": "object", "required": ["city"], "properties": {
    "city": {"type": "string", "enum": ["Paris", "Tokyo"]}}}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city.",
    "parameters": PARAMETERS}}]
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def tool_server(synthetic_model: Callable[..., Path], llama_cpp_dir: Path) -> Iterator[Served]:
    template = (llama_cpp_dir / "models" / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja")
    path = synthetic_model(vocab="qwen2", n_embd=32, n_layer=1, n_head=4, n_head_kv=2,
                           chat_template=template.read_text(encoding="utf-8"))
    served = start("-np", "2", "-c", "4096", key=None, model=path)
    try:
        yield served
    finally:
        stop(served)


def check(call: dict[str, object]) -> None:
    assert call["type"] == "function" and call["id"]
    function = call["function"]
    assert isinstance(function, dict) and function["name"] == "get_weather"
    jsonschema.validate(json.loads(function["arguments"]), PARAMETERS)


def test_required_tool_call(tool_server: Served) -> None:
    reply = tool_server.client().chat.completions.create(
        model=tool_server.client().models.list().data[0].id,
        messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=160,
        temperature=0.8, seed=1)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls
    for call in choice.message.tool_calls:
        check(call.model_dump())


def test_required_tool_call_streamed(tool_server: Served) -> None:
    client = tool_server.client()
    chunks = list(client.chat.completions.create(
        model=client.models.list().data[0].id, messages=ASK, tools=TOOLS,
        tool_choice="required", max_tokens=160, temperature=0.8, seed=1, stream=True))
    calls = [c for chunk in chunks if chunk.choices
             for c in (chunk.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].index == 0
    check(calls[0].model_dump(exclude={"index"}))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_logprobs_cover_the_raw_tokens(tool_server: Served, stream: bool) -> None:
    """With tools, the logprobs are those of every generated token (the call's markup
    included), sent whole: in the reply, or with the one delta of a streamed request."""
    client = tool_server.client()
    kwargs = {"model": client.models.list().data[0].id, "messages": ASK, "tools": TOOLS,
              "tool_choice": "required", "max_tokens": 160, "temperature": 0.8, "seed": 1,
              "logprobs": True, "top_logprobs": 2}
    if stream:
        chunks = list(client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}))
        content = [e for chunk in chunks if chunk.choices and chunk.choices[0].logprobs
                   for e in chunk.choices[0].logprobs.content]
        n_tokens = chunks[-1].usage.completion_tokens
    else:
        reply = client.chat.completions.create(**kwargs)
        assert reply.choices[0].finish_reason == "tool_calls"
        content = reply.choices[0].logprobs.content
        n_tokens = reply.usage.completion_tokens
    assert len(content) == n_tokens > 0
    assert "get_weather" in "".join(e.token for e in content)
    assert all(e.logprob <= 0 and len(e.top_logprobs) == 2 for e in content)
