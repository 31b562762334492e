"""What ``Context.chat`` hands to generation: the rendered prompt, its tokens, and the
template's end-of-turn markers as stop strings and stop tokens.

The markers come from the template, not the vocabulary: a model whose vocabulary does not
flag ``<end_of_turn>`` (or ``<|im_end|>``) as end-of-generation, or that writes a marker as
plain text, still ends its reply there, and the reply reports ``finish_reason="stop"``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._config.schema import ChatConfig
from .fallback import END_OF_TURN_MARKERS, special_token_id
from .messages import Messages, normalize_messages
from .render import model_special_tokens, render_resolved
from .resolve import ResolvedTemplate, TemplateSpec, resolve_template
from .results import ChatResult

if TYPE_CHECKING:
    from .._model import Model
    from .._results import GenerationResult
    from .tools import NativePlan

__all__ = ["PreparedChat", "chat_result", "chat_tokens", "end_of_turn_markers", "generation_stops",
           "prepare_chat"]

_PROBE_REPLY, _PROBE_NEXT = "lkprobereply", "lkprobenext"
# gpt-oss (harmony) writes <|end|> between the analysis and the final channel of one reply:
# only <|return|> and <|call|> end it.
_HARMONY_MARKERS = ("<|return|>", "<|call|>")


def chat_tokens(model: Model, text: str) -> list[int]:
    """Token ids of a rendered prompt: special-token text parsed, BOS added only when the
    model wants one and the template did not write it (no doubled BOS), no EOS appended."""
    tokens = model.tokenize(text, add_special=False, parse_special=True)
    bos = model.bos_token
    if model.add_bos and bos is not None and (not tokens or tokens[0] != bos):
        tokens.insert(0, bos)
    return tokens


def _probe_tail(resolved: ResolvedTemplate, model: Model) -> str | None:
    """What the template writes after an assistant message, before the next user turn."""
    probe = [{"role": "user", "content": "lkprobeuser"},
             {"role": "assistant", "content": _PROBE_REPLY},
             {"role": "user", "content": _PROBE_NEXT}]
    try:
        text = render_resolved(resolved, probe, add_generation_prompt=False, tools=None,
                               continue_final_message=False,
                               special_tokens=model_special_tokens(model), template_kwargs={},
                               config=ChatConfig(), model=model)
    except Exception:  # noqa: BLE001 - a template that refuses the probe: scan its source
        return None
    start = text.find(_PROBE_REPLY)
    end = text.find(_PROBE_NEXT, start)
    if start < 0 or end < 0:
        return None
    return text[start + len(_PROBE_REPLY):end]


def end_of_turn_markers(resolved: ResolvedTemplate, model: Model) -> list[str]:
    """The known end-of-turn markers this template writes after an assistant message."""
    source = resolved.source or ""
    tail = _probe_tail(resolved, model)
    if "<|channel|>" in source or (tail is not None and "<|channel|>" in tail) \
            or resolved.builtin == "gpt-oss":
        return list(_HARMONY_MARKERS)
    where = tail if tail is not None else source
    found = [m for m in END_OF_TURN_MARKERS if m in where]
    eos = model_special_tokens(model).get("eos_token")
    if tail is not None and eos and eos in tail and eos not in found:
        found.append(eos)
    return found


_cache: dict[tuple[Any, ...], tuple[tuple[str, ...], tuple[int, ...]]] = {}
_cache_lock = threading.Lock()


def _stops(resolved: ResolvedTemplate, model: Model) -> tuple[tuple[str, ...], tuple[int, ...]]:
    key = (id(model), resolved.kind, resolved.source, resolved.builtin, id(resolved.render))
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    markers = end_of_turn_markers(resolved, model)
    ids = [special_token_id(model, m) for m in markers]
    tokens = tuple(t for t in ids if t is not None and not model.is_eog(t))
    value = (tuple(markers), tokens)
    with _cache_lock:
        if len(_cache) > 256:  # models come and go; the cache must not grow without end
            _cache.clear()
        _cache[key] = value
    return value


@dataclass(frozen=True)
class PreparedChat:
    """A rendered conversation ready to generate from."""

    prompt: str
    tokens: list[int]
    stop: tuple[str, ...]
    stop_tokens: tuple[int, ...]
    resolved: ResolvedTemplate
    #: Set when llama.cpp's chat layer renders and parses (tools, reasoning).
    plan: NativePlan | None = None


#: ``chat``'s keywords for tools and reasoning (OpenAI's and llama.cpp's names).
CHAT_OPTIONS = ("tool_choice", "parallel_tool_calls", "reasoning_format", "reasoning_budget")


def prepare_chat(model: Model, messages: Messages, template: TemplateSpec | None,
                 tools: Sequence[Mapping[str, Any]] | None,
                 continue_final_message: bool | None,
                 chat_template_kwargs: Mapping[str, Any] | None,
                 config: ChatConfig, options: Mapping[str, Any] | None = None,
                 sampling: dict[str, Any] | None = None) -> PreparedChat:
    """Resolve the template, render the conversation and find its end-of-turn markers.

    With tools, or reasoning asked for or implied by a Jinja template, llama.cpp's chat
    layer renders instead (``tools.plan_native``); a ``json_schema``/``response_format`` in
    ``sampling`` then moves into its request, so the constraint applies after the
    reasoning block."""
    if continue_final_message is None:
        continue_final_message = normalize_messages(messages)[-1]["role"] == "assistant"
    resolved = resolve_template(template, model=model, config_template=config.template)
    opts = dict(options or {})
    from .tools import wants_native

    if wants_native(resolved.source, tools, opts.get("reasoning_format"),
                    opts.get("reasoning_budget")):
        return _prepare_native(model, resolved, messages, tools, continue_final_message,
                               chat_template_kwargs, opts, sampling)
    if opts.get("tool_choice") not in (None, "auto", "none"):
        from .._errors import ChatTemplateError

        raise ChatTemplateError(f"tool_choice={opts['tool_choice']!r} needs tools and a Jinja "
                                f"chat template; {resolved.label} is not one")
    special = model_special_tokens(model)
    extra = dict(chat_template_kwargs or {})
    for name in ("bos_token", "eos_token"):
        value = extra.pop(name, None)
        if value is not None:
            special[name] = value
    text = render_resolved(resolved, messages, add_generation_prompt=not continue_final_message,
                           tools=tools, continue_final_message=continue_final_message,
                           special_tokens=special, template_kwargs=extra, config=config,
                           model=model)
    stop, stop_tokens = _stops(resolved, model)
    return PreparedChat(text, chat_tokens(model, text), stop, stop_tokens, resolved)


def _prepare_native(model: Model, resolved: ResolvedTemplate, messages: Messages,
                    tools: Sequence[Mapping[str, Any]] | None, continue_final_message: bool,
                    chat_template_kwargs: Mapping[str, Any] | None, opts: dict[str, Any],
                    sampling: dict[str, Any] | None) -> PreparedChat:
    from .._errors import ChatTemplateError
    from .tools import plan_native

    assert resolved.source is not None
    json_schema: Any = None
    if sampling is not None:
        if "json_schema" in sampling:
            json_schema = sampling.pop("json_schema")
        elif "response_format" in sampling:
            json_schema = _schema_of(sampling.pop("response_format"))
        if tools and sampling.get("grammar") is not None and \
                opts.get("tool_choice") != "none":
            raise ChatTemplateError("grammar= cannot be combined with tools: the tool-call "
                                    "grammar comes from the template")
    plan = plan_native(model, resolved.source, messages, tools=tools,
                       tool_choice=opts.get("tool_choice"),
                       parallel_tool_calls=opts.get("parallel_tool_calls"),
                       reasoning_format=opts.get("reasoning_format"),
                       reasoning_budget=opts.get("reasoning_budget"),
                       continue_final_message=continue_final_message,
                       chat_template_kwargs=chat_template_kwargs, json_schema=json_schema)
    stop, stop_tokens = _stops(resolved, model)
    stop = (*stop, *(s for s in plan.stops if s not in stop))
    # The parser must see the markers it looks for: never stop on a preserved token.
    stop_tokens = tuple(t for t in stop_tokens if t not in plan.preserved)
    return PreparedChat(plan.prompt, chat_tokens(model, plan.prompt), stop, stop_tokens,
                        resolved, plan)


def _schema_of(response_format: Any) -> Any:
    from .._errors import GrammarError

    if not isinstance(response_format, Mapping):
        raise GrammarError(f"response_format must be a dict, got {response_format!r}")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return response_format.get("schema") or {"type": "object"}
    if kind == "json_schema" and isinstance(response_format.get("json_schema"), Mapping) \
            and "schema" in response_format["json_schema"]:
        return response_format["json_schema"]["schema"]
    raise GrammarError(f"response_format type must be 'text', 'json_object' or 'json_schema' "
                       f"(with json_schema.schema), got {response_format!r}")


def generation_stops(prepared: PreparedChat, sampling: dict[str, Any],
                     default_stop: Sequence[str]) -> dict[str, Any]:
    """``sampling`` with the template's markers added to the caller's stop strings (or the
    context's default ones) and to ``stop_tokens``."""
    given = sampling.pop("stop", None)
    stops = list(default_stop if given is None else [given] if isinstance(given, str)
                 else given)
    stops += [m for m in prepared.stop if m not in stops]
    tokens = list(sampling.pop("stop_tokens", ()) or ())
    tokens += [t for t in prepared.stop_tokens if t not in tokens]
    extra: dict[str, Any] = {}
    plan = prepared.plan
    if plan is not None:
        extra["preserved_tokens"] = list(plan.preserved)
        if plan.grammar is not None:
            extra["grammar"] = plan.grammar
    return {**sampling, "stop": stops, "stop_tokens": tokens, **extra}


def chat_result(prepared: PreparedChat, generation: GenerationResult) -> ChatResult:
    """The ``ChatResult`` of a finished generation from ``prepared``: parsed by llama.cpp's
    chat layer (tool calls, reasoning) when it rendered the prompt."""
    if prepared.plan is not None:
        from .tools import result_from  # the native chat layer loads on first use

        return result_from(prepared.plan, generation, prepared.prompt)
    return ChatResult.from_generation(generation, prepared.prompt)
