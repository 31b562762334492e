"""``Grammar``: a GBNF constraint on generation, from text, a file or a JSON schema.

JSON schemas are converted by llama.cpp's own converter (``common/json-schema-to-grammar``
of the pinned tree, compiled into the native module), so a schema constrains llamakit the
way it constrains llama.cpp's server.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import GrammarError
from ._grammar_limits import check_schema, check_triggers
from ._native.grammar import MAX_NESTING, check_nesting, json_schema_to_gbnf

if TYPE_CHECKING:
    from ._model import Model
    from ._native.lib import NativeLib

__all__ = ["Grammar", "JsonSchema", "grammar_from_response_format"]

#: What ``json_schema=`` accepts: a schema as a mapping (or ``True``), JSON text, or a
#: pydantic model class (anything with ``model_json_schema()``).
JsonSchema = Mapping[str, Any] | bool | str | type

_REGEX_SPECIAL = re.compile(r"([.^$|()*+?\[\]{}\\])")


def _regex_escape(word: str) -> str:
    """llama.cpp's ``regex_escape`` (ECMAScript): a trigger word as a literal pattern."""
    return _REGEX_SPECIAL.sub(r"\\\1", word)


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
    return deepest


def _schema_json(schema: JsonSchema) -> str:
    if isinstance(schema, type):
        maker = getattr(schema, "model_json_schema", None)
        if maker is None:
            raise GrammarError(f"{schema.__name__} is not a pydantic model; give a JSON "
                               "schema as a dict or JSON text")
        schema = maker()
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise GrammarError(f"the JSON schema is not valid JSON: {exc}") from None
    if not isinstance(schema, (Mapping, bool)):
        raise GrammarError(f"a JSON schema is an object (dict) or a boolean, got "
                           f"{type(schema).__name__}")
    if _depth(schema) > MAX_NESTING:
        raise GrammarError(f"the JSON schema nests deeper than {MAX_NESTING} levels")
    try:
        text = json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise GrammarError(f"the JSON schema cannot be written as JSON: {exc}") from None
    check_schema(schema, text)
    return text


def _native_for(model: Model | None) -> NativeLib:
    if model is not None:
        native: NativeLib = model._handle.native
        return native
    from ._backends import default_native  # the converter lives in every variant

    return default_native()


@functools.lru_cache(maxsize=64)
def _convert(native: NativeLib, schema_json: str) -> str:
    """Converted schemas are kept: ``json_schema=`` on every call of a loop costs one
    conversion (a warning, if any, is logged the first time only)."""
    return json_schema_to_gbnf(native, schema_json)


@dataclass(frozen=True)
class Grammar:
    """A GBNF grammar (llama.cpp's ``grammars/README.md`` describes the format).

    ``lazy`` grammars constrain nothing until the output matches one of ``trigger_patterns``
    (regular expressions, ECMAScript flavour, searched in the output; a ``^...$`` pattern
    must match the whole output, as with llama.cpp) or a ``trigger_tokens`` id appears; the
    grammar then applies from the first capturing group's match (else the match's start)
    on. A pattern may match at most ``[grammar] max_trigger_match_bytes`` bytes: only that
    much of the output before each new token is searched. The text is
    checked by llama.cpp's parser when a chain is built; an error is ``GrammarError`` with
    the parser's message and position.
    """

    text: str
    root: str = "root"
    lazy: bool = False
    trigger_patterns: tuple[str, ...] = ()
    trigger_tokens: tuple[int, ...] = ()
    #: Token ids the grammar has already seen when generation starts: a chat template's
    #: generation prompt, which llama.cpp's tool-call grammars begin with.
    prefill: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise GrammarError("a grammar needs GBNF text (got an empty or non-str value)")
        if not isinstance(self.root, str) or not self.root:
            raise GrammarError(f"the root rule must be a non-empty name, got {self.root!r}")
        check_nesting(self.text)
        if not self.lazy and (self.trigger_patterns or self.trigger_tokens):
            raise GrammarError("trigger_patterns/trigger_tokens need lazy=True")
        if self.lazy and not (self.trigger_patterns or self.trigger_tokens):
            raise GrammarError("a lazy grammar needs trigger_patterns or trigger_tokens")
        check_triggers(self.trigger_patterns)

    @classmethod
    def from_string(cls, text: str, root: str = "root") -> Grammar:
        """A grammar from GBNF text."""
        return cls(text, root)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], root: str = "root") -> Grammar:
        """A grammar from a ``.gbnf`` file (UTF-8)."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise GrammarError(f"cannot read grammar file {file}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise GrammarError(f"grammar file {file} is not UTF-8: {exc}") from exc
        return cls(text, root)

    @classmethod
    def from_json_schema(cls, schema: JsonSchema, *, model: Model | None = None) -> Grammar:
        """A grammar for JSON documents that validate against ``schema``.

        The conversion runs in a native module: ``model``'s, else any loaded one, else the
        default backend's. Schema features llama.cpp cannot express (some regex
        constructs in ``pattern``) are relaxed with a warning on the ``llamakit.sampling``
        logger, as llama.cpp does.
        """
        return cls(_convert(_native_for(model), _schema_json(schema)))

    @classmethod
    def json_object(cls, *, model: Model | None = None) -> Grammar:
        """Any JSON object (``response_format={"type": "json_object"}``)."""
        return cls.from_json_schema({"type": "object"}, model=model)

    def lazy_on(self, *, patterns: Sequence[str] = (), words: Sequence[str] = (),
                tokens: Sequence[int] = ()) -> Grammar:
        """This grammar, applied only once a trigger appears: a regex in ``patterns``, a
        literal string in ``words``, or a token id in ``tokens``."""
        return Grammar(self.text, self.root, True,
                       (*self.trigger_patterns, *patterns, *map(_regex_escape, words)),
                       (*self.trigger_tokens, *tokens), self.prefill)

    def stage_params(self) -> dict[str, Any]:
        """The parameters of the native ``grammar`` stage."""
        params = {"grammar": self.text, "root": self.root, "lazy": self.lazy,
                  "trigger_patterns": list(self.trigger_patterns),
                  "trigger_tokens": list(self.trigger_tokens)}
        if self.prefill:
            params["prefill"] = list(self.prefill)
        return params


def grammar_from_response_format(response_format: Mapping[str, Any],
                                 model: Model | None) -> Grammar | None:
    """The grammar of an OpenAI-style ``response_format``: ``{"type": "text"}`` (none),
    ``{"type": "json_object"}`` (optionally with ``"schema"``) or ``{"type": "json_schema",
    "json_schema": {"schema": ...}}``."""
    if not isinstance(response_format, Mapping):
        raise GrammarError(f"response_format must be a dict, got {response_format!r}")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
        if schema is None:
            return Grammar.json_object(model=model)
        return Grammar.from_json_schema(schema, model=model)
    if kind == "json_schema":
        inner = response_format.get("json_schema")
        if not isinstance(inner, Mapping) or "schema" not in inner:
            raise GrammarError('response_format {"type": "json_schema"} needs '
                               '"json_schema": {"schema": {...}}')
        return Grammar.from_json_schema(inner["schema"], model=model)
    raise GrammarError(f"response_format type must be 'text', 'json_object' or "
                       f"'json_schema', got {kind!r}")
