"""Every [model], [context] and [sampling] key: the keyword and the TOML key agree.

Candidate values come from each field's type and constraints in the schema (bounds and
their neighbours, wrong types, non-finite floats, empty strings), not from a hand list;
each is given once as a keyword and once in a config file, and both must accept it or
both refuse it, naming the key.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

import llamakit
from llamakit._config.errors import _format_value
from llamakit._config.fields import check_field
from llamakit._config.schema import ContextConfig, ModelConfig, SamplingConfig
from llamakit._from_config import context_from_config, model_from_config
from llamakit._sampling import SamplingKwargs

# Not keywords of any call: given as the positional path, or read relative to the file.
_NOT_KEYWORDS = {("model", "path"): "load_model's positional argument",
                 ("sampling", "grammar_file"): "a file relative to the config file"}
# A bound this large is checked from outside only: a context or window that size would
# allocate gigabytes.
_HUGE = 2**16


def _bounds(info: FieldInfo | Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in getattr(info, "metadata", ()):
        for attr in ("gt", "ge", "lt", "le", "min_length"):
            if getattr(item, attr, None) is not None:
                found[attr] = getattr(item, attr)
    return found


def _numbers(kind: type, bounds: dict[str, Any]) -> list[Any]:
    step = 1 if kind is int else 0.5
    values: list[Any] = []
    low = bounds.get("ge", bounds.get("gt"))
    high = bounds.get("le", bounds.get("lt"))
    for edge, inside, outside in ((low, step, -step), (high, -step, step)):
        if edge is None:
            continue
        strict = ("gt" in bounds and edge is low) or ("lt" in bounds and edge is high)
        if abs(edge) < _HUGE:
            values.append(kind(edge + inside) if strict else kind(edge))
        values.append(kind(edge) if strict else kind(edge + outside))
    if low is None and high is None:
        values += [kind(0), kind(step), kind(-step)]
    if kind is float:
        values += [math.nan, math.inf, -math.inf, 1]  # an integer is a float in TOML too
        values.append("0.5")
    else:
        values += [1.5, "1"]
    values.append(True)
    return values


def _candidates(annotation: Any, info: FieldInfo | None) -> list[Any]:
    """Good and bad values for a field of this type, from its type and constraints."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        found: list[Any] = []
        for arm in typing.get_args(annotation):
            if arm is not type(None):
                found += [v for v in _candidates(arm, info) if v not in found]
        return found
    if origin is typing.Annotated:
        inner, *metadata = typing.get_args(annotation)
        return _candidates(inner, metadata[0] if metadata else None)
    bounds = _bounds(info) if info is not None else {}
    if origin is typing.Literal:
        choices = list(typing.get_args(annotation))
        bad = max(choices) + 1 if isinstance(choices[0], int) else "nope"
        return [*choices, bad, True if isinstance(choices[0], int) else 1]
    if annotation is bool:
        return [True, False, 1, "true"]
    if annotation in (int, float):
        return _numbers(annotation, bounds)
    if annotation is str:
        return ["x", "", 1]
    if origin is list:
        (item,) = typing.get_args(annotation)
        items = _candidates(item, None)
        return [[], *([value] for value in items[:4]), "x"]
    if origin is dict:
        return [{}, {"1": 1.0}, {"x": 1.0}, {"1": "a"}, []]
    raise AssertionError(f"no candidates for {annotation!r}: teach _candidates this type")


def _cases(section: type[BaseModel], name: str) -> Iterator[Any]:
    for key, info in section.model_fields.items():
        if (name, key) in _NOT_KEYWORDS:
            continue
        for value in _candidates(info.annotation, info):
            yield pytest.param(key, value, id=f"{key}={value!r}")


def _toml(section: str, key: str, value: Any, model: Path) -> str:
    text = f'[backend]\nname = "cpu"\n[model]\npath = {_format_value(str(model), 10**6)}\n'
    if section != "model":
        text += f"[{section}]\n"
    text += f"{key} = {_format_value(value, 10**6)}\n"
    if section == "sampling":  # the context the keyword path makes too
        text += "[context]\nn_ctx = 64\nn_threads = 1\n"
    return text


def _outcome(call: Callable[[], object], key: str) -> str:
    """``"ok"`` or ``"refused"``; a refusal must be a typed error naming the key."""
    try:
        call()
    except (llamakit.LlamakitError, TypeError) as exc:
        assert key in str(exc), f"{type(exc).__name__} does not name {key!r}: {exc}"
        return "refused"
    return "ok"


@pytest.fixture
def config_file(tmp_path: Path, tiny_model_path: Path) -> Callable[[str, str, Any], Path]:
    def write(section: str, key: str, value: Any) -> Path:
        path = tmp_path / "llamakit.toml"
        path.write_text(_toml(section, key, value, tiny_model_path), encoding="utf-8")
        return path
    return write


def test_every_sampling_key_is_a_keyword() -> None:
    """The typed generate() keywords are the [sampling] keys (less config-only ones)."""
    config_only = {"grammar_file", "max_new_tokens", "stop"}  # stop, max_new_tokens: own args
    python_only = {"response_format"}
    assert set(SamplingKwargs.__annotations__) - python_only \
        == set(SamplingConfig.model_fields) - config_only


@pytest.mark.parametrize(("key", "value"), list(_cases(SamplingConfig, "sampling")))
def test_sampling_keyword_and_toml_agree(key: str, value: Any, model: llamakit.Model,
                                         config_file: Callable[[str, str, Any], Path]) -> None:
    """generate(key=value) and [sampling] key = value are accepted or refused alike."""
    call = {"max_new_tokens": 1, key: value} if key != "max_new_tokens" else {key: value}

    def by_keyword() -> None:
        with model.new_context(n_ctx=64, n_threads=1) as ctx:
            ctx.generate("a", **call)

    def by_toml() -> None:
        config = llamakit.load_config(config_file("sampling", key, value))
        with context_from_config(model, config) as ctx:
            ctx.generate("a", max_new_tokens=1 if key != "max_new_tokens" else None)

    assert _outcome(by_keyword, key) == _outcome(by_toml, key)


@pytest.mark.parametrize(("key", "value"), list(_cases(ContextConfig, "context")))
def test_context_keyword_and_toml_agree(key: str, value: Any, model: llamakit.Model,
                                        config_file: Callable[[str, str, Any], Path]) -> None:
    """model.new_context(key=value) and [context] key = value are accepted or refused alike."""
    def by_keyword() -> None:
        model.new_context(**{key: value}).close()

    def by_toml() -> None:
        context_from_config(model, llamakit.load_config(config_file("context", key, value))
                            ).close()

    assert _outcome(by_keyword, key) == _outcome(by_toml, key)


@pytest.mark.parametrize(("key", "value"), list(_cases(ModelConfig, "model")))
def test_model_keyword_and_toml_agree(key: str, value: Any, tiny_model_path: Path,
                                      config_file: Callable[[str, str, Any], Path]) -> None:
    """load_model(key=value) and [model] key = value are accepted or refused alike."""
    def by_keyword() -> None:
        llamakit.load_model(tiny_model_path, backend="cpu", **{key: value}).close()

    def by_toml() -> None:
        model_from_config(llamakit.load_config(config_file("model", key, value))).close()

    assert _outcome(by_keyword, key) == _outcome(by_toml, key)


def test_candidates_cover_both_outcomes() -> None:
    """For every key the generated values include some the schema accepts and some it
    refuses, so the agreement tests above test both ways."""
    for name, section in (("model", ModelConfig), ("context", ContextConfig),
                          ("sampling", SamplingConfig)):
        for key, info in section.model_fields.items():
            if (name, key) in _NOT_KEYWORDS:
                continue
            outcomes = set()
            for value in _candidates(info.annotation, info):
                try:
                    check_field(section, key, value)
                    outcomes.add("ok")
                except llamakit.ConfigError:
                    outcomes.add("refused")
            assert outcomes == {"ok", "refused"}, (name, key)


def test_load_and_context_defaults_are_the_schema_defaults() -> None:
    """The defaults written in load_model's and new_context's signatures are the schema's."""
    import inspect

    for function, section in ((llamakit.load_model, ModelConfig),
                              (llamakit.Model.new_context, ContextConfig)):
        for name, parameter in inspect.signature(function).parameters.items():
            if name in section.model_fields and name != "path":
                assert parameter.default == section.model_fields[name].get_default(
                    call_default_factory=True), (function.__name__, name)
