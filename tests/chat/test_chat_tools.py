"""Tool calls through llama.cpp's own chat layer (common/chat.*, compiled into the module):
real templates from the pinned tree render with tools, canned outputs of each family parse
into OpenAI-shaped calls, and a required call on a random-weight model is well formed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import llamakit
from llamakit._backends import resolve_backend
from llamakit._native.chat_tools import chat_apply_native, chat_parse_native

PARAMETERS = {"type": "object", "required": ["city"], "properties": {
    "city": {"type": "string", "enum": ["Paris", "Tokyo"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 7}}}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city.",
    "parameters": PARAMETERS}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Local time of a city.",
        "parameters": {"type": "object", "required": ["city"],
                       "properties": {"city": {"type": "string", "maxLength": 12}}}}}]
ASK = [{"role": "user", "content": "Weather in Paris?"}]

#: template file -> (vocabulary of its synthetic model, a canned output in the family's
#: tool-call syntax, written here from the format llama.cpp parses)
FAMILIES: dict[str, tuple[str, str]] = {
    "meta-llama-Llama-3.1-8B-Instruct.jinja": (
        "llama-bpe", '{"name": "get_weather", "parameters": {"city": "Paris"}}'),
    "meta-llama-Llama-3.2-3B-Instruct.jinja": (
        "llama-bpe", '{"type": "function", "name": "get_weather", '
                     '"parameters": {"city": "Paris"}}'),
    "Qwen-Qwen2.5-7B-Instruct.jinja": (
        "qwen2", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
                 '</tool_call>'),
    "Qwen-Qwen3-0.6B.jinja": (
        "qwen2", '<think>\nThe user wants weather.\n</think>\n\n<tool_call>\n{"name": '
                 '"get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'),
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": (
        "llama-bpe", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
                     '</tool_call>'),
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": (
        "llama-bpe", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
                     '</tool_call>'),
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": (
        "llama-spm", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, '
                     '"id": "abc123xyz"}]'),
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": (
        "qwen2", 'The user wants weather.\n</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>'
                 'function<｜tool▁sep｜>get_weather\n```json\n{"city": "Paris"}\n```'
                 '<｜tool▁call▁end｜><｜tool▁calls▁end｜>'),
    "meetkai-functionary-medium-v3.2.jinja": (
        "llama-bpe", 'get_weather\n{"city": "Paris"}'),
    "openai-gpt-oss-120b.jinja": (
        "qwen2", '<|channel|>analysis<|message|>The user wants weather.<|end|><|start|>assistant'
                 '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>'
                 '{"city": "Paris"}'),
}


#: A plain answer in the families whose replies have a form of their own (a channel, or a
#: thinking block the generation prompt opened).
PLAIN = {"meetkai-functionary-medium-v3.2.jinja": "all\nIt is sunny.",
         "openai-gpt-oss-120b.jinja": "<|channel|>final<|message|>It is sunny.",
         "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": "Easy.</think>It is sunny."}

#: Templates that never list the tools in the prompt (the model was trained without).
SILENT_ABOUT_TOOLS = {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"}


@pytest.fixture(scope="module")
def native() -> Any:
    return resolve_backend("cpu")


@pytest.fixture(scope="module")
def sources(templates_dir: Path) -> dict[str, str]:
    return {name: (templates_dir / name).read_text(encoding="utf-8") for name in FAMILIES}


def _apply(native: Any, source: str, **request: Any) -> dict[str, Any]:
    body = {"messages": ASK, "tools": TOOLS, "tool_choice": "auto",
            "reasoning_format": "auto", **request}
    return chat_apply_native(native, source, "<s>", "</s>", body)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_renders_tools(native: Any, sources: dict[str, str], family: str) -> None:
    """The template shows the tools to the model and ends with the generation prompt; a
    required call gets a grammar, an automatic one a lazy grammar or none."""
    params = _apply(native, sources[family])
    if family not in SILENT_ABOUT_TOOLS:
        assert "get_weather" in params["prompt"] and "get_time" in params["prompt"]
    assert params["prompt"].endswith(params["generation_prompt"])
    assert params["format_name"]
    required = _apply(native, sources[family], tool_choice="required")
    assert required["grammar"] and not required["grammar_lazy"]
    if params["grammar"]:
        assert params["grammar_lazy"] and params["grammar_triggers"]
    assert "get_weather" not in _apply(native, sources[family], tools=[])["prompt"]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_parses_canned_tool_calls(native: Any, sources: dict[str, str], family: str) -> None:
    """llama.cpp's parser turns the family's own syntax into a call with JSON arguments."""
    params = _apply(native, sources[family])
    output = FAMILIES[family][1]
    parse = {"format": params["format"], "parser": params["parser"],
             "generation_prompt": params["generation_prompt"], "reasoning_format": "auto"}
    parsed = chat_parse_native(native, output, parse, partial=False)
    assert [c["name"] for c in parsed["tool_calls"]] == ["get_weather"]
    assert json.loads(parsed["tool_calls"][0]["arguments"]) == {"city": "Paris"}
    assert "get_weather" not in parsed["content"]
    if "The user wants weather." in output:
        assert parsed["reasoning_content"].strip() == "The user wants weather."
    plain = chat_parse_native(native, PLAIN.get(family, "It is sunny."), parse, partial=False)
    assert plain["tool_calls"] == [] and plain["content"].strip() == "It is sunny."


def test_parse_reports_bad_input_as_errors(native: Any, sources: dict[str, str]) -> None:
    with pytest.raises(llamakit.ChatTemplateError):
        chat_apply_native(native, "{% if %}", "", "", {"messages": ASK})
    with pytest.raises(llamakit.ChatTemplateError):
        _apply(native, sources["Qwen-Qwen2.5-7B-Instruct.jinja"], tool_choice="sometimes")
    with pytest.raises(llamakit.ChatTemplateError, match="NUL"):
        chat_parse_native(native, "a\0b", {"format": 0}, partial=False)


@pytest.fixture(scope="module")
def family_model(synthetic_model: Callable[..., Path], sources: dict[str, str]
                 ) -> Callable[[str], Iterator[llamakit.Context]]:
    import contextlib

    @contextlib.contextmanager
    def make(family: str) -> Iterator[llamakit.Context]:
        path = synthetic_model(vocab=FAMILIES[family][0], n_embd=32, n_layer=1, n_head=4,
                               n_head_kv=2, chat_template=sources[family])
        with llamakit.load_model(path, backend="cpu") as model, \
                model.new_context(n_ctx=2048, n_batch=512, n_threads=2) as ctx:
            yield ctx

    return make  # type: ignore[return-value]


def _check_call(call: dict[str, Any], name: str = "get_weather") -> None:
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == name
    arguments = json.loads(call["function"]["arguments"])
    schema = next(t["function"]["parameters"] for t in TOOLS
                  if t["function"]["name"] == name)
    jsonschema.validate(arguments, schema)


#: gpt-oss's grammar lets a call carry an open-ended ``<|constrain|>`` identifier
#: (``[A-Za-z0-9_-]+``) that random weights extend until max_new_tokens; its rendering and
#: parsing are tested above.
RANDOM_WEIGHTS = sorted(set(FAMILIES) - {"openai-gpt-oss-120b.jinja"})


@pytest.mark.parametrize("family", RANDOM_WEIGHTS)
def test_required_call_on_random_weights(family_model: Any, family: str) -> None:
    """tool_choice='required' (and a named function) constrain a random-weight model with
    llama.cpp's grammar: the reply is a well-formed call with valid arguments."""
    with family_model(family) as ctx:
        for seed in (1,):
            result = ctx.chat(ASK, tools=TOOLS, tool_choice="required", max_new_tokens=160,
                              temperature=0.8, seed=seed)
            assert result.finish_reason == "tool_calls", result.generation.text
            assert result.tool_calls
            for call in result.tool_calls:
                _check_call(call, call["function"]["name"])
        named = ctx.chat(ASK, tools=TOOLS, max_new_tokens=160, temperature=0.8, seed=3,
                         tool_choice={"type": "function", "function": {"name": "get_time"}})
        assert named.finish_reason == "tool_calls", named.generation.text
        assert {c["function"]["name"] for c in named.tool_calls} == {"get_time"}
        _check_call(named.tool_calls[0], "get_time")
        assert named.message["tool_calls"] == list(named.tool_calls)


def test_streamed_tool_call_deltas(family_model: Any) -> None:
    """chat_stream's deltas carry the call: id and name first, then the arguments text in
    pieces that add up to the final call's arguments."""
    with family_model("Qwen-Qwen2.5-7B-Instruct.jinja") as ctx:
        stream = ctx.chat_stream(ASK, tools=TOOLS, tool_choice="required", max_new_tokens=160,
                                 temperature=0.8, seed=5)
        deltas = list(stream.deltas())
        assert stream.result is not None and stream.result.finish_reason == "tool_calls"
        calls = [c for d in deltas for c in d.tool_calls]
        first = calls[0]
        final = stream.result.tool_calls[0]
        assert first["index"] == 0 and first["function"]["name"] == final["function"]["name"]
        assert first["id"] == final["id"]
        text = "".join(c["function"].get("arguments", "") for c in calls if c["index"] == 0)
        assert text == final["function"]["arguments"]
        _check_call(final, final["function"]["name"])


def test_tool_results_go_back(family_model: Any) -> None:
    """A tool message answers a call by its id; the template shows the result and the
    assistant's call to the model; tool_choice='none' gives no grammar and no calls."""
    call = {"id": "call12345", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    conversation = [*ASK, {"role": "assistant", "content": "", "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": "call12345", "content": "18 C, sunny"}]
    with family_model("Qwen-Qwen2.5-7B-Instruct.jinja") as ctx:
        result = ctx.chat(conversation, tools=TOOLS, tool_choice="none", max_new_tokens=8,
                          temperature=0)
        assert "18 C, sunny" in result.prompt and '"city": "Paris"' in result.prompt
        assert result.tool_calls == () and result.finish_reason in ("stop", "length")


def test_tool_choice_errors(family_model: Any, ctx: llamakit.Context) -> None:
    with family_model("Qwen-Qwen2.5-7B-Instruct.jinja") as chat_ctx:
        with pytest.raises(llamakit.ChatTemplateError, match="not among the tools"):
            chat_ctx.chat(ASK, tools=TOOLS, max_new_tokens=1, tool_choice={
                "type": "function", "function": {"name": "nope"}})
        with pytest.raises(llamakit.ChatTemplateError, match="tool_choice"):
            chat_ctx.chat(ASK, tools=TOOLS, tool_choice="always", max_new_tokens=1)
        with pytest.raises(llamakit.ChatTemplateError, match="grammar"):
            chat_ctx.chat(ASK, tools=TOOLS, grammar='root ::= "x"', max_new_tokens=1)
    with pytest.raises(llamakit.ChatTemplateError, match="needs tools"):
        ctx.chat(ASK, tool_choice="required", template="chatml", max_new_tokens=1)
