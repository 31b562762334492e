"""Grammar stages and llama.cpp's JSON-schema-to-GBNF converter, through the sampling shim.

The shim parses a grammar with llama.cpp's own parser before llama.cpp does, so a syntax
error comes back as text instead of a line on stderr; the one error llama.cpp only logs
(left recursion) is caught from the log for the calling thread. Inputs that would overflow
the C stack (the parser recurses per nesting level) are refused here first.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from typing import Any

from .._errors import GrammarError
from .._grammar_limits import check_grammar_counts, trigger_plans
from .lib import NativeLib

__all__ = ["MAX_NESTING", "check_nesting", "grammar_stage", "json_schema_to_gbnf"]

#: Deepest nesting of parentheses in a grammar, and of containers in a JSON schema. The
#: parsers recurse once per level; far below what a thread's stack holds.
MAX_NESTING = 256

_AT = re.compile(r"^(?P<what>.*?) at (?P<rest>.*)$", re.DOTALL)
logger = logging.getLogger("llamakit.sampling")


_REPEAT = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


def check_nesting(text: str) -> None:
    """Refuse what would exhaust llama.cpp's parser instead of failing in it: nesting deeper
    than ``MAX_NESTING``, ``{m,n}`` with ``n < m`` (it then loops, allocating, until the
    process dies), and more rules, alternatives or characters than the ``[grammar]``
    limits. Strings, character classes and comments are skipped."""
    depth = deepest = 0
    rules = alternatives = 0
    quote = ""
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif char == '"':
            quote = '"'
        elif char == "[":
            quote = "]"
        elif char == "(":
            depth += 1
            rules += 1  # each group becomes a rule of its own
            deepest = max(deepest, depth)
        elif char == "|":
            alternatives += 1
        elif char == ":" and text.startswith("::=", i):
            rules += 1
        elif char == ")":
            depth -= 1
        elif char == "{":
            match = _REPEAT.match(text, i)
            if match and match.group(2) and int(match.group(2)) < int(match.group(1)):
                raise GrammarError(f"invalid repetition {match.group(0)!r}: the maximum is "
                                   "smaller than the minimum")
        i += 1
    if deepest > MAX_NESTING:
        raise GrammarError(f"the grammar nests parentheses {deepest} deep; at most "
                           f"{MAX_NESTING} levels are supported")
    check_grammar_counts(len(text), rules, alternatives)


def _locate(message: str, text: str) -> str:
    """Turn llama.cpp's "<what> at <rest of the grammar>" into a line and column."""
    match = _AT.match(message)
    if match is None or not text.endswith(match.group("rest")):
        return message
    if not match.group("rest"):
        return f"{match.group('what')} at the end of the grammar"
    offset = len(text) - len(match.group("rest"))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    snippet = text[offset:offset + 40].split("\n", 1)[0]
    return f"{match.group('what')} at line {line}, column {column}: {snippet!r}"


def grammar_stage(native: NativeLib, vocab: Any, text: str, root: str, *, lazy: bool,
                  trigger_patterns: Sequence[str], trigger_tokens: Sequence[int],
                  prefill: Sequence[int] = ()) -> Any:
    """A guarded grammar ``llama_sampler`` (see native/lk_sampling.h); ``GrammarError``
    with the parser's message when the grammar is invalid. Tokens must be valid ids."""
    if "\0" in text or "\0" in root or any("\0" in p for p in trigger_patterns):
        raise GrammarError("grammar text, root and trigger patterns must not contain NUL")
    if not text.strip():
        raise GrammarError("the grammar is empty")
    check_nesting(text)
    plans = trigger_plans(trigger_patterns) if lazy else []
    lib, ffi = native.lib, native.ffi
    patterns = [ffi.new("char[]", p.encode()) for p in trigger_patterns]
    searches = [ffi.new("char[]", search.encode()) for search, _ in plans]
    pattern_array = ffi.new("const char *[]", patterns) if patterns else ffi.NULL
    search_array = ffi.new("const char *[]", searches) if searches else ffi.NULL
    reach_array = ffi.new("int32_t[]", [r for _, r in plans]) if plans else ffi.NULL
    token_array = ffi.new("llama_token[]", list(trigger_tokens)) if trigger_tokens else ffi.NULL
    me = threading.get_ident()
    logged: list[str] = []

    def listen(level: int, line: str) -> None:
        if level >= logging.ERROR and threading.get_ident() == me:
            logged.append(line)

    with native.log_listener(listen):
        ptr = lib.lk_sampler_init_grammar(vocab, text.encode(), root.encode(), lazy,
                                          pattern_array, search_array, reach_array,
                                          len(searches), token_array, len(trigger_tokens))
    if ptr != ffi.NULL:
        if prefill:
            status = lib.lk_sampler_grammar_prefill(ptr, ffi.new("llama_token[]", list(prefill)),
                                                    len(prefill))
            if status != 0:
                reason = ffi.string(lib.lk_last_error()).decode("utf-8", "replace")
                lib.llama_sampler_free(ptr)
                raise GrammarError(f"the grammar refuses its prefill: {reason}")
        return ptr
    reason = ffi.string(lib.lk_last_error()).decode("utf-8", "replace")
    if reason:
        reason = _locate(reason, text)
    else:
        reason = "; ".join(line.strip() for line in logged) or "llama.cpp rejected it"
    if lazy and patterns and "regex" in reason.lower():
        reason = f"a trigger pattern is not a valid regular expression: {reason}"
    raise GrammarError(f"invalid grammar: {reason}")


def json_schema_to_gbnf(native: NativeLib, schema_json: str) -> str:
    """GBNF for a JSON schema (as JSON text), by llama.cpp's converter. Its warnings (a
    pattern it cannot express, accepted as any string) go to the ``llamakit.sampling``
    logger; its errors are ``GrammarError``."""
    lib, ffi = native.lib, native.ffi
    status = ffi.new("int32_t *")
    warnings = ffi.new("char **")
    raw = lib.lk_json_schema_to_grammar(schema_json.encode(), status, warnings)
    try:
        text = ffi.string(raw).decode("utf-8", "replace") if raw != ffi.NULL else ""
    finally:
        lib.lk_free(raw)
    if warnings[0] != ffi.NULL:
        message = ffi.string(warnings[0]).decode("utf-8", "replace").strip()
        lib.lk_free(warnings[0])
        logger.warning("%s", message)
    if raw == ffi.NULL:
        raise MemoryError("out of memory while converting a JSON schema")
    if status[0] != 0:
        raise GrammarError(f"cannot convert the JSON schema to a grammar: {text.strip()}")
    return text
