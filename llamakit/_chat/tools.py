"""Tool calls and reasoning through llama.cpp's own chat layer (``common/chat.*``).

When a conversation offers tools or the template reasons (``<think>`` and family forms),
``common_chat_templates_apply`` renders the prompt and says how to generate: the tool-call
grammar (lazy, with its triggers, unless a call is required), the tokens whose text the
parser needs, extra stop strings, the parser itself. After generation ``common_chat_parse``
splits the output into ``content``, ``reasoning_content`` and ``tool_calls``, partially while
streaming. Nothing here parses model output itself: the families llama.cpp knows are the
families llamakit knows.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .._errors import ChatTemplateError
from .._grammar import Grammar
from .._native.chat_tools import chat_apply_native, chat_parse_native, has_chat_layer
from .._results import GenerationResult, TextStream
from .fallback import special_token_id
from .messages import Messages, normalize_messages, plain_data
from .render import model_special_tokens
from .results import ChatFinishReason, ChatResult, ChatStream, ChatUsage

if TYPE_CHECKING:
    from .._model import Model

logger = logging.getLogger("llamakit.chat")

__all__ = ["ChatDelta", "NativePlan", "ParsedChatStream", "ReasoningFormat", "ToolChoice",
           "plan_native", "wants_native"]

ReasoningFormat = Literal["none", "auto", "deepseek"]
ToolChoice = str | Mapping[str, Any]
_REASONING_FORMATS = ("none", "auto", "deepseek")
# Template text that marks a reasoning template (llama.cpp then reports supports_thinking).
_THINKING_MARKS = ("<think>", "reasoning_content", "enable_thinking", "<|channel|>")


def wants_native(source: str | None, tools: Sequence[Any] | None,
                 reasoning_format: str | None, reasoning_budget: int | None) -> bool:
    """Whether llama.cpp's chat layer handles this call: tools offered, or reasoning asked
    for or implied by the template (only Jinja templates go through it)."""
    if source is None:
        return False
    if tools or reasoning_budget is not None:
        return True
    if reasoning_format is not None:
        return reasoning_format != "none"
    return any(mark in source for mark in _THINKING_MARKS)


def _tool_choice(tools: Sequence[Mapping[str, Any]] | None, choice: ToolChoice | None
                 ) -> tuple[list[Any], str]:
    """OpenAI's ``tool_choice`` as llama.cpp takes it: a named function narrows the tools to
    that one and requires a call."""
    listed = list(plain_data(list(tools or ())))
    if choice is None:
        return listed, "auto"
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise ChatTemplateError(f"tool_choice must be 'auto', 'none', 'required' or "
                                    f"{{'type': 'function', 'function': {{'name': ...}}}}, "
                                    f"got {choice!r}")
        if choice == "required" and not listed:
            raise ChatTemplateError("tool_choice='required' needs tools")
        return listed, choice
    if isinstance(choice, Mapping) and choice.get("type") == "function" \
            and isinstance(choice.get("function"), Mapping):
        name = choice["function"].get("name")
        chosen = [t for t in listed if isinstance(t, Mapping)
                  and isinstance(t.get("function"), Mapping) and t["function"].get("name") == name]
        if not chosen:
            known = [t.get("function", {}).get("name") for t in listed if isinstance(t, Mapping)]
            raise ChatTemplateError(f"tool_choice names function {name!r}, which is not among "
                                    f"the tools {known}")
        return chosen, "required"
    raise ChatTemplateError(f"tool_choice must be a string or {{'type': 'function', "
                            f"'function': {{'name': ...}}}}, got {choice!r}")


def _tokens_of(model: Model, text: str) -> list[int]:
    return model.tokenize(text, add_special=False, parse_special=True)


def _prefill(model: Model, generation_prompt: str) -> tuple[int, ...]:
    """The generation prompt's tokens for a grammar that starts with it; a tokenizer that
    put a space token before the first special token does not count it."""
    tokens = _tokens_of(model, generation_prompt)
    if tokens and generation_prompt and not generation_prompt[0].isspace():
        first = model.token_to_piece(tokens[0], special=True)
        if first[:1].isspace():
            tokens = tokens[1:]
    return tuple(tokens)


_TOOL_RULES = ("tool-calls", "tools", "tool-call")
_RULE = re.compile(r"^([A-Za-z0-9_-]+)\s*::=", re.MULTILINE)


def _required_grammar(text: str, params: Mapping[str, Any]) -> Grammar | None:
    """A required call as the whole reply: llama.cpp's grammar from its tool-call rule.

    llama.cpp's own root lets free text (any length) come before the call, which a weak
    model fills until ``max_new_tokens``; OpenAI's ``required`` means the reply is the call.
    The rules stay llama.cpp's: one added rule starts at its tool-call rule, after the end
    of a thinking block the generation prompt left open."""
    rules = set(_RULE.findall(text))
    tool_rule = next((r for r in _TOOL_RULES if r in rules), None)
    if tool_rule is None:
        return None
    prompt = str(params.get("generation_prompt", ""))
    start = str(params.get("thinking_start_tag", "") or "")
    ends = [str(e) for e in params.get("thinking_end_tags", ()) if e]
    prefix = ""
    if start.strip() and ends and start.strip() in prompt \
            and not any(e.strip() in prompt[prompt.rindex(start.strip()):] for e in ends):
        prefix = json.dumps(ends[0]) + " space "
    rule = "lk-required-call"
    return Grammar(f"{text}\n{rule} ::= {prefix}{tool_rule}\n", root=rule)


def _grammar(model: Model, params: Mapping[str, Any], preserved: Sequence[int],
             required: bool) -> Grammar | None:
    text = params.get("grammar") or ""
    if not text:
        return None
    if required:
        grammar = _required_grammar(text, params)
        if grammar is not None:
            return grammar
    if not params.get("grammar_lazy"):
        return Grammar(text, prefill=_prefill(model, params.get("generation_prompt", "")))
    patterns: list[str] = []
    words: list[str] = []
    tokens: list[int] = []
    for trigger in params.get("grammar_triggers", ()):
        kind, value = trigger.get("type"), str(trigger.get("value", ""))
        if kind == "word":
            token = special_token_id(model, value)
            if token is not None and token in preserved:
                tokens.append(token)
            else:
                words.append(value)
        elif kind == "pattern":
            patterns.append(value)
        elif kind == "pattern_full":
            patterns.append(("" if value.startswith("^") else "^") + value
                            + ("" if value.endswith("$") else "$"))
        elif kind == "token":
            token = special_token_id(model, value)
            if token is not None:
                tokens.append(token)
    if not (patterns or words or tokens):
        raise ChatTemplateError("llama.cpp gave a lazy tool-call grammar without triggers")
    return Grammar(text).lazy_on(patterns=patterns, words=words, tokens=tokens)


@dataclass(frozen=True)
class NativePlan:
    """How to generate and parse one reply, from ``common_chat_templates_apply``."""

    model: Model
    prompt: str
    parse: dict[str, Any]
    grammar: Grammar | None
    preserved: tuple[int, ...]
    stops: tuple[str, ...]
    format_name: str
    thinking_end_tags: tuple[str, ...] = ()
    supports_thinking: bool = False
    log: str = ""

    def parse_output(self, text: str, *, partial: bool) -> dict[str, Any]:
        return chat_parse_native(self.model._handle.native, text, self.parse, partial=partial)


def plan_native(model: Model, source: str, messages: Messages, *,
                tools: Sequence[Mapping[str, Any]] | None, tool_choice: ToolChoice | None,
                parallel_tool_calls: bool | None, reasoning_format: str | None,
                reasoning_budget: int | None, continue_final_message: bool,
                chat_template_kwargs: Mapping[str, Any] | None,
                json_schema: Any | None) -> NativePlan:
    """Render ``messages`` with llama.cpp's chat layer and collect what generation needs."""
    native = model._handle.native
    if not has_chat_layer(native):
        raise ChatTemplateError(f"the '{native.backend}' native module predates llama.cpp's "
                                "chat layer; rebuild it (llamakit build) to use tools")
    fmt = reasoning_format if reasoning_format is not None else "auto"
    if fmt not in _REASONING_FORMATS:
        raise ChatTemplateError(f"reasoning_format must be one of {_REASONING_FORMATS}, got "
                                f"{reasoning_format!r}")
    if reasoning_budget is not None and (isinstance(reasoning_budget, bool)
                                         or not isinstance(reasoning_budget, int)
                                         or reasoning_budget not in (-1, 0)):
        raise ChatTemplateError(f"reasoning_budget must be -1 (unlimited) or 0 (no thinking); "
                                f"token budgets are not supported yet, got {reasoning_budget!r}")
    listed, choice = _tool_choice(tools, tool_choice)
    kwargs = dict(plain_data(dict(chat_template_kwargs or {})))
    enable_thinking = kwargs.get("enable_thinking", True) is not False
    if reasoning_budget == 0:
        enable_thinking = False
        kwargs["enable_thinking"] = False
    request: dict[str, Any] = {
        "messages": plain_data(normalize_messages(messages)),
        "tools": listed, "tool_choice": choice,
        "parallel_tool_calls": bool(parallel_tool_calls),
        "add_generation_prompt": not continue_final_message,
        "continue_final_message": continue_final_message,
        "reasoning_format": fmt, "enable_thinking": enable_thinking,
        "chat_template_kwargs": kwargs,
    }
    if json_schema is not None:
        request["json_schema"] = json_schema if isinstance(json_schema, str) \
            else json.dumps(plain_data(json_schema))
    special = model_special_tokens(model)
    params = chat_apply_native(native, source, special.get("bos_token", ""),
                               special.get("eos_token", ""), request)
    preserved = tuple(t for t in (special_token_id(model, text)
                                  for text in params.get("preserved_tokens", ()))
                      if t is not None)
    return NativePlan(
        model=model, prompt=params["prompt"],
        parse={"format": params["format"], "parser": params["parser"],
               "generation_prompt": params["generation_prompt"], "reasoning_format": fmt,
               "parse_tool_calls": bool(listed) and choice != "none"},
        grammar=_grammar(model, params, preserved, bool(listed) and choice == "required"),
        preserved=preserved,
        stops=tuple(params.get("additional_stops", ())), format_name=params["format_name"],
        thinking_end_tags=tuple(params.get("thinking_end_tags", ())),
        supports_thinking=bool(params.get("supports_thinking")), log=params.get("log", ""))


def _calls(parsed: Mapping[str, Any], ids: list[str]) -> tuple[dict[str, Any], ...]:
    calls = []
    for index, call in enumerate(parsed.get("tool_calls", ())):
        while len(ids) <= index:
            ids.append(f"call_{secrets.token_hex(12)}")
        calls.append({"id": call.get("id") or ids[index], "type": "function",
                      "function": {"name": call["name"], "arguments": call["arguments"]}})
    return tuple(calls)


def result_from(plan: NativePlan, generation: GenerationResult, prompt: str,
                ids: list[str] | None = None) -> ChatResult:
    """The ``ChatResult`` of a finished generation: the output parsed by llama.cpp."""
    try:
        parsed = plan.parse_output(generation.text,
                                   partial=generation.finish_reason == "length")
    except ChatTemplateError as exc:
        # A model that ignores its own format (or random weights) is not an error of the
        # caller's: the reply is its raw text, as llama.cpp's parser would not split it.
        logger.warning("%s; the reply is the raw output", exc)
        parsed = {"content": generation.text, "reasoning_content": "", "tool_calls": []}
    calls = _calls(parsed, ids if ids is not None else [])
    finish: ChatFinishReason = "tool_calls" if calls else (
        "length" if generation.finish_reason == "length" else "stop")
    n_prompt, n_reply = len(generation.prompt_tokens), len(generation.tokens)
    return ChatResult(content=parsed.get("content", ""), finish_reason=finish,
                      usage=ChatUsage(n_prompt, n_reply, n_prompt + n_reply),
                      generation=generation, prompt=prompt, tool_calls=calls,
                      reasoning_content=parsed.get("reasoning_content") or None)


@dataclass(frozen=True)
class ChatDelta:
    """One step of a streamed reply, as OpenAI's ``choices[0].delta``: new ``content``,
    new ``reasoning_content``, and tool-call pieces (``index``; ``id``, ``type`` and the
    function's ``name`` when a call starts; ``arguments`` text as it grows)."""

    content: str = ""
    reasoning_content: str = ""
    tool_calls: tuple[dict[str, Any], ...] = field(default=())


def _grown(old: str, new: str) -> str:
    return new[len(old):] if new.startswith(old) else ""


class ParsedChatStream(ChatStream):
    """A ``ChatStream`` whose output goes through llama.cpp's parser as it grows: iterating
    yields content pieces; ``deltas()`` yields every ``ChatDelta`` (content, reasoning,
    tool calls)."""

    def __init__(self, stream: TextStream, prompt: str, plan: NativePlan) -> None:
        super().__init__(stream, prompt)
        self._plan = plan
        self._ids: list[str] = []
        self._events = self._run()

    def _run(self) -> Iterator[ChatDelta]:
        text = ""
        seen: dict[str, Any] = {"content": "", "reasoning_content": "", "tool_calls": []}
        for piece in self._stream:
            text += piece
            try:
                parsed = self._plan.parse_output(text, partial=True)
            except ChatTemplateError:
                continue  # not in the format (yet): the final result says what it was
            delta = self._delta(seen, parsed)
            seen = parsed
            if delta is not None:
                yield delta
        generation = self._stream.result
        if generation is None:
            return
        self.result = result_from(self._plan, generation, self.prompt, self._ids)
        final = {"content": self.result.content,
                 "reasoning_content": self.result.reasoning_content or "",
                 "tool_calls": [{"name": c["function"]["name"],
                                 "arguments": c["function"]["arguments"]}
                                for c in self.result.tool_calls]}
        delta = self._delta(seen, final)
        if delta is not None:
            yield delta

    def _delta(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> ChatDelta | None:
        content = _grown(old.get("content", ""), new.get("content", ""))
        reasoning = _grown(old.get("reasoning_content", ""), new.get("reasoning_content", ""))
        calls = []
        before = list(old.get("tool_calls", ()))
        for index, call in enumerate(new.get("tool_calls", ())):
            while len(self._ids) <= index:
                self._ids.append(call.get("id") or f"call_{secrets.token_hex(12)}")
            if index >= len(before):
                calls.append({"index": index, "id": self._ids[index], "type": "function",
                              "function": {"name": call["name"],
                                           "arguments": call["arguments"]}})
            else:
                grown = _grown(before[index].get("arguments", ""), call["arguments"])
                if grown:
                    calls.append({"index": index, "function": {"arguments": grown}})
        if not (content or reasoning or calls):
            return None
        return ChatDelta(content, reasoning, tuple(calls))

    def deltas(self) -> Iterator[ChatDelta]:
        """Every step of the reply (see ``ChatDelta``); ``result`` is set at the end."""
        return self._events

    def __next__(self) -> str:
        for delta in self._events:
            if delta.content:
                return delta.content
        raise StopIteration
