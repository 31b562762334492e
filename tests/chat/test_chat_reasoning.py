"""Reasoning: llama.cpp's parsers split ``<think>`` (and family forms) into
``reasoning_content``, in results and in streams; ``reasoning_budget=0`` turns thinking off;
structured output applies after the reasoning block."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import llamakit
from llamakit._chat.tools import ParsedChatStream, plan_native, result_from

QWEN3 = "Qwen-Qwen3-0.6B.jinja"
ASK = [{"role": "user", "content": "2+2?"}]


@pytest.fixture(scope="module")
def qwen3_ctx(synthetic_model: Callable[..., Path], templates_dir: Path
              ) -> Iterator[llamakit.Context]:
    source = (templates_dir / QWEN3).read_text(encoding="utf-8")
    path = synthetic_model(vocab="qwen2", n_embd=32, n_layer=1, n_head=4, n_head_kv=2,
                           chat_template=source)
    with llamakit.load_model(path, backend="cpu") as model, \
            model.new_context(n_ctx=1024, n_threads=2) as ctx:
        yield ctx


def _plan(ctx: llamakit.Context, templates_dir: Path, name: str = QWEN3, **options: Any
          ) -> Any:
    source = (templates_dir / name).read_text(encoding="utf-8")
    values: dict[str, Any] = {"tools": None, "tool_choice": None, "parallel_tool_calls": None,
                              "reasoning_format": None, "reasoning_budget": None,
                              "continue_final_message": False, "chat_template_kwargs": None,
                              "json_schema": None, **options}
    return plan_native(ctx.model, source, ASK, **values)


def _as_generation(ctx: llamakit.Context, text: str) -> Any:
    base = ctx.generate("x", max_new_tokens=1, temperature=0)
    return dataclasses.replace(base, text=text, finish_reason="eog")


@pytest.mark.parametrize("fmt,reasoning,content", [
    ("auto", "Two and two.", "4"),
    ("deepseek", "Two and two.", "4"),
    ("none", None, "<think>\nTwo and two.\n</think>\n\n4"),
])
def test_think_block_becomes_reasoning_content(qwen3_ctx: llamakit.Context,
                                               templates_dir: Path, fmt: str,
                                               reasoning: str | None, content: str) -> None:
    plan = _plan(qwen3_ctx, templates_dir, reasoning_format=fmt)
    output = "<think>\nTwo and two.\n</think>\n\n4"
    result = result_from(plan, _as_generation(qwen3_ctx, output), plan.prompt)
    assert (result.reasoning_content or "").strip() == (reasoning or "")
    assert (result.reasoning_content is None) == (reasoning is None)
    assert result.content.strip() == content.strip()
    assert result.finish_reason == "stop"
    if reasoning:
        assert result.message["reasoning_content"] == result.reasoning_content
        assert result.to_dict()["reasoning_content"] == result.reasoning_content


def test_deepseek_r1_opened_block(qwen3_ctx: llamakit.Context, templates_dir: Path) -> None:
    """DeepSeek R1's generation prompt opens ``<think>`` itself: the output only closes it."""
    plan = _plan(qwen3_ctx, templates_dir, "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja")
    assert plan.parse["generation_prompt"].endswith("<think>\n")
    result = result_from(plan, _as_generation(qwen3_ctx, "Add them.\n</think>\n\n4"),
                         plan.prompt)
    assert (result.reasoning_content or "").strip() == "Add them."
    assert result.content.strip() == "4"


def test_stream_separates_reasoning(qwen3_ctx: llamakit.Context, templates_dir: Path) -> None:
    """Streamed deltas carry reasoning and content apart; iterating gives content only."""
    plan = _plan(qwen3_ctx, templates_dir)
    output = "<think>\nTwo and two.\n</think>\n\nIt is 4."
    pieces = [output[i:i + 3] for i in range(0, len(output), 3)]

    class Replay:
        result = _as_generation(qwen3_ctx, output)

        def __iter__(self) -> Iterator[str]:
            return iter(pieces)

    stream = ParsedChatStream(Replay(), plan.prompt, plan)  # type: ignore[arg-type]
    deltas = list(stream.deltas())
    assert "".join(d.reasoning_content for d in deltas).strip() == "Two and two."
    assert "".join(d.content for d in deltas).strip() == "It is 4."
    assert len([d for d in deltas if d.reasoning_content]) > 1, "reasoning streams in pieces"
    assert stream.result is not None and stream.result.content.strip() == "It is 4."
    again = ParsedChatStream(Replay(), plan.prompt, plan)  # type: ignore[arg-type]
    assert "".join(again).strip() == "It is 4."


def test_budget_zero_disables_thinking(qwen3_ctx: llamakit.Context) -> None:
    result = qwen3_ctx.chat(ASK, reasoning_budget=0, max_new_tokens=4, temperature=0)
    assert result.prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    thinking = qwen3_ctx.chat(ASK, max_new_tokens=4, temperature=0)
    assert thinking.prompt.endswith("<|im_start|>assistant\n")
    with pytest.raises(llamakit.ChatTemplateError, match="reasoning_budget"):
        qwen3_ctx.chat(ASK, reasoning_budget=100, max_new_tokens=1)
    with pytest.raises(llamakit.ChatTemplateError, match="reasoning_format"):
        qwen3_ctx.chat(ASK, reasoning_format="sometimes", max_new_tokens=1)


def test_structured_output_after_reasoning(qwen3_ctx: llamakit.Context) -> None:
    """A json_schema on a reasoning template goes to llama.cpp's chat layer, whose grammar
    lets the reasoning block come first; with thinking off, random weights still give JSON
    that validates."""
    import jsonschema

    schema = {"type": "object", "required": ["answer"],
              "properties": {"answer": {"type": "integer", "minimum": 0, "maximum": 9}}}
    result = qwen3_ctx.chat(ASK, reasoning_budget=0, json_schema=schema, max_new_tokens=64,
                            temperature=0.8, seed=4)
    jsonschema.validate(json.loads(result.content), schema)


def test_plain_templates_keep_the_plain_path(ctx: llamakit.Context) -> None:
    """Without tools or a reasoning template nothing changes: no parser, raw text."""
    result = ctx.chat(ASK, template="chatml", max_new_tokens=4, temperature=0)
    assert result.reasoning_content is None and result.tool_calls == ()
