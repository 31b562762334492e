"""Limits on grammars, JSON schemas and lazy-grammar triggers, checked before llama.cpp.

llama.cpp's GBNF parser and its left-recursion check recurse along chains of rules (a
chain of 200,000 rules overflows the C stack); its JSON-schema converter follows ``$ref``
through ``allOf`` without end on a loop; a grammar's alternatives are all tried for every
token, inside one C call that Ctrl-C cannot interrupt (an enum of 200,000 values takes
minutes a token). Bounding what reaches C bounds the time of each call, so Ctrl-C, checked
between tokens, stays responsive. The limits are the ``[grammar]`` config section
(``$LLAMAKIT_CONFIG``, ``LLAMAKIT_GRAMMAR__MAX_RULES``, ...) of the process's ambient
config; ``set_grammar_limits`` replaces them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._config.schema import GrammarConfig
from ._errors import GrammarError
from ._grammar_triggers import trigger_plan

__all__ = ["check_grammar_counts", "check_schema", "check_triggers", "grammar_limits",
           "set_grammar_limits", "trigger_plans"]

_current: list[GrammarConfig] = []


def grammar_limits() -> GrammarConfig:
    """The limits in force: those set with ``set_grammar_limits``, else the ``[grammar]``
    section of the process's config (``$LLAMAKIT_CONFIG`` and the environment)."""
    if _current:
        return _current[0]
    from ._config import ambient_config

    return ambient_config().grammar


def set_grammar_limits(limits: GrammarConfig | None) -> None:
    """Use ``limits`` from now on (None: the process's config again)."""
    _current.clear()
    if limits is not None:
        _current.append(limits)


def _refuse(what: str, count: int, limit: str, value: int) -> None:
    if count > value:
        raise GrammarError(f"{what} ({count}) is more than [grammar] {limit}={value}; raise "
                           f"the limit in the config (LLAMAKIT_GRAMMAR__{limit.upper()}) if "
                           "the grammar is meant to be this large")


def check_grammar_counts(chars: int, rules: int, alternatives: int) -> None:
    """Refuse a grammar over the size limits (the counts come from the nesting scan)."""
    limits = grammar_limits()
    _refuse("the grammar's length in characters", chars, "max_chars", limits.max_chars)
    _refuse("the grammar's number of rules and groups", rules, "max_rules", limits.max_rules)
    _refuse("the grammar's number of alternatives", alternatives, "max_alternatives",
            limits.max_alternatives)


# A group with a quantifier inside and one after it: (a+)+, (a*)*, (?:x|y+){2,}...:
# backtracking regex engines (std::regex is one) take exponential time on them.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{]")


def check_triggers(patterns: Sequence[str]) -> None:
    """Bound a lazy grammar's trigger patterns: the shim runs each one with std::regex (a
    backtracking engine) over the last ``max_trigger_match_bytes`` of the output, every
    token, until one matches (``_grammar_triggers``)."""
    limits = grammar_limits()
    _refuse("the number of trigger patterns", len(patterns), "max_trigger_patterns",
            limits.max_trigger_patterns)
    for pattern in patterns:
        _refuse(f"the length of trigger pattern {pattern[:40]!r}", len(pattern),
                "max_trigger_pattern_chars", limits.max_trigger_pattern_chars)
        if _NESTED_QUANTIFIER.search(pattern):
            raise GrammarError(f"trigger pattern {pattern[:80]!r} repeats a group that holds "
                               "a repetition, e.g. (a+)+: std::regex backtracks "
                               "exponentially on it; write it without the nesting")
        trigger_plan(pattern, limits.max_trigger_match_bytes)


def trigger_plans(patterns: Sequence[str]) -> list[tuple[str, int]]:
    """What the shim searches for each (checked) trigger pattern, and how far back."""
    check_triggers(patterns)
    limit = grammar_limits().max_trigger_match_bytes
    return [trigger_plan(pattern, limit) for pattern in patterns]


def _pointer(root: Any, ref: str) -> Any:
    node = root
    for raw in ref[2:].split("/") if ref != "#" else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isascii() and part.isdecimal() \
                and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _inline_refs(node: Any) -> list[str]:
    """The ``$ref``s a schema node reaches without consuming input: itself and through
    ``allOf``/``anyOf``/``oneOf`` (not through properties or items)."""
    found, stack = [], [node]
    while stack:
        item = stack.pop()
        if not isinstance(item, Mapping):
            continue
        ref = item.get("$ref")
        if isinstance(ref, str):
            found.append(ref)
        for key in ("allOf", "anyOf", "oneOf"):
            children = item.get(key)
            if isinstance(children, list):
                stack.extend(children)
    return found


def check_schema(schema: Any, text: str) -> None:
    """Refuse a JSON schema over the size limits, or one whose ``$ref``s loop back to
    themselves through ``allOf``/``anyOf``/``oneOf`` (llama.cpp's converter recurses on
    them until the stack overflows)."""
    limits = grammar_limits()
    _refuse("the JSON schema's length in characters", len(text), "max_chars", limits.max_chars)
    values, stack = 0, [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            enum = item.get("enum")
            if isinstance(enum, list):
                values += len(enum)
            stack.extend(v for k, v in item.items() if k not in ("enum", "const"))
        elif isinstance(item, list):
            stack.extend(item)
    _refuse("the number of enum values in the JSON schema", values, "max_alternatives",
            limits.max_alternatives)
    # Depth-first search for a cycle among $ref targets, through inline references only.
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in ["#", *(r for r in _inline_refs(schema) if r.startswith("#"))]:
        if state.get(start):
            continue
        path: list[tuple[str, list[str]]] = [(start, _inline_refs(_pointer(schema, start)))]
        state[start] = 1
        while path:
            node, pending = path[-1]
            if not pending:
                state[node] = 2
                path.pop()
                continue
            ref = pending.pop()
            if not ref.startswith("#/") and ref != "#":
                continue
            if state.get(ref) == 1:
                raise GrammarError(f"the JSON schema's $ref {ref!r} refers back to itself "
                                   "through allOf/anyOf/oneOf without any property or item "
                                   "in between: the schema has no finite form")
            if not state.get(ref):
                state[ref] = 1
                path.append((ref, _inline_refs(_pointer(schema, ref))))
