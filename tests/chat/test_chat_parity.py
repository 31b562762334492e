"""Every real template in llama.cpp's models/templates renders byte for byte as in transformers.

The reference is ``transformers.utils.chat_template_utils.render_jinja_template`` (what a
Hugging Face tokenizer's ``apply_chat_template`` calls), fed the same normalised messages
and the same ``bos_token``/``eos_token``; no tokenizer is downloaded. A conversation a
template rejects must be rejected by both renderers, for the same reason.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from transformers.utils import chat_template_utils as hf

import llamakit

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city.",
    "parameters": {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string", "description": "The city's name"}}}}}]


def _tool_call(arguments: Any) -> dict[str, Any]:
    # Mistral's templates want 9-character alphanumeric ids.
    return {"id": "call12345", "type": "function",
            "function": {"name": "get_weather", "arguments": arguments}}


def _tool_turns(arguments: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [_tool_call(arguments)]},
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
             "content": "18 C, sunny"}]


CONVERSATIONS: dict[str, dict[str, Any]] = {
    "system_user": {"messages": [{"role": "system", "content": "You are terse."},
                                 {"role": "user", "content": "Hello, who are you?"}]},
    "user_only": {"messages": [{"role": "user", "content": "Hello"}]},
    "multi_turn": {"messages": [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello. How can I help?"},
        {"role": "user", "content": "Tell me a joke."}]},
    "reasoning_history": {"messages": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Add two and two."},
        {"role": "user", "content": "And 3+3?"}]},
    "assistant_prefill": {"messages": [{"role": "user", "content": "Write a haiku."},
                                       {"role": "assistant", "content": "Autumn leaves"}],
                          "add_generation_prompt": False, "continue_final_message": True},
    "ends_with_assistant": {"messages": [{"role": "user", "content": "Write a haiku."},
                                         {"role": "assistant", "content": "Autumn leaves"}],
                            "add_generation_prompt": False},
    "content_parts": {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Describe this."}]}]},
    "no_thinking": {"messages": [{"role": "user", "content": "Hi"}],
                    "enable_thinking": False},
    "tools_offered": {"messages": [{"role": "user", "content": "Weather in Paris?"}],
                      "tools": TOOLS},
    "tool_calls": {"messages": _tool_turns({"city": "Paris"}), "tools": TOOLS},
    "tool_calls_json_arguments": {"messages": _tool_turns('{"city": "Paris"}'),
                                  "tools": TOOLS},
}


def _frozen_datetime(moment: dt.datetime) -> type[dt.datetime]:
    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Frozen:
            return moment  # type: ignore[return-value]

    return Frozen


def _reference(source: str, case: dict[str, Any]) -> str:
    options = dict(case)
    messages = hf._normalize_chat_messages(options.pop("messages"))
    options.setdefault("add_generation_prompt", True)
    rendered, _ = hf.render_jinja_template([messages], chat_template=source, bos_token="<s>",
                                           eos_token="</s>", **options)
    return str(rendered[0])


def _ours(source: str, case: dict[str, Any]) -> str:
    options = dict(case)
    return llamakit.apply_chat_template(options.pop("messages"), source, bos_token="<s>",
                                        eos_token="</s>", **options)


def _outcome(render: Any, source: str, case: dict[str, Any]) -> tuple[str, str]:
    try:
        return "ok", render(source, case)
    except Exception as exc:  # noqa: BLE001 - the reason is compared below
        return "error", str(exc).rstrip(".")


@pytest.fixture(scope="module")
def templates(templates_dir: Path) -> dict[str, str]:
    found = {p.name: p.read_text(encoding="utf-8")
             for p in sorted(templates_dir.glob("*.jinja"))}
    assert len(found) >= 60, f"expected llama.cpp's ~70 templates in {templates_dir}"
    return found


@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
def test_real_templates_render_like_transformers(
        conversation: str, templates: dict[str, str], fixed_now: dt.datetime,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each real template renders this conversation exactly as transformers does (or both
    refuse it for the same reason)."""
    monkeypatch.setattr(hf, "datetime", _frozen_datetime(fixed_now))
    case = CONVERSATIONS[conversation]
    matched, differences = 0, []
    for name, source in templates.items():
        expected = _outcome(_reference, source, case)
        actual = _outcome(_ours, source, case)
        if expected[0] == "ok" and actual == expected:
            matched += 1
        elif expected[0] == actual[0] == "error" and expected[1] in actual[1]:
            continue
        else:
            differences.append(f"{name}: transformers {expected!r:.300} != ours {actual!r:.300}")
    assert differences == []
    assert matched >= len(templates) // 2, "most templates must render, not just fail alike"


def test_real_templates_cover_the_features(templates: dict[str, str]) -> None:
    """The collection exercises what the renderer must support (so the comparison means
    something): strftime_now, tools, the generation tag, loop controls, namespaces."""
    text = "\n".join(templates.values())
    for feature in ("strftime_now", "tools", "{%- generation", "namespace(",
                    "raise_exception", "tojson", "bos_token", "{%- break"):
        assert feature in text, feature
