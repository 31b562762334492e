"""JSON schema constraints: llama.cpp's converter on a corpus, output validated by jsonschema."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

import llamakit
from llamakit import Grammar

# Strings carry a maxLength (or a format, enum or pattern) so that random weights cannot
# write one string until max_new_tokens runs out.
NAME = {"type": "string", "maxLength": 6}

CORPUS: dict[str, dict[str, Any]] = {
    "nested-objects": {
        "type": "object", "additionalProperties": False, "required": ["user"],
        "properties": {"user": {
            "type": "object", "additionalProperties": False, "required": ["name", "address"],
            "properties": {"name": NAME, "address": {
                "type": "object", "additionalProperties": False, "required": ["zip"],
                "properties": {"zip": {"type": "integer", "minimum": 1000, "maximum": 9999}},
            }},
        }},
    },
    "array-min-max-items": {
        "type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
        "minItems": 2, "maxItems": 4,
    },
    "enum": {"enum": ["red", "green", 3, None, True]},
    "const": {"type": "object", "additionalProperties": False, "required": ["v", "kind"],
              "properties": {"v": {"const": 1}, "kind": {"const": "point"}}},
    "required-and-optional": {
        "type": "object", "additionalProperties": False, "required": ["id"],
        "properties": {"id": {"type": "integer", "minimum": 0, "maximum": 99},
                       "note": NAME, "flag": {"type": "boolean"}},
    },
    "string-formats": {
        "type": "object", "additionalProperties": False,
        "required": ["day", "at", "when", "uid"],
        "properties": {"day": {"type": "string", "format": "date"},
                       "at": {"type": "string", "format": "time"},
                       "when": {"type": "string", "format": "date-time"},
                       "uid": {"type": "string", "format": "uuid"}},
    },
    "string-pattern": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
    "string-length": {"type": "string", "minLength": 2, "maxLength": 4},
    "number-bounds": {
        "type": "object", "additionalProperties": False, "required": ["i", "j", "x"],
        "properties": {"i": {"type": "integer", "minimum": -5, "maximum": 5},
                       "j": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
                       # llama.cpp's converter bounds integers only, not numbers.
                       "x": {"type": "number"}},
    },
    "any-of-and-nullable": {
        "anyOf": [{"type": "integer", "minimum": 0, "maximum": 50}, NAME, {"type": "null"}],
    },
    "refs-and-defs": {
        "$defs": {"point": {"type": "object", "additionalProperties": False,
                            "required": ["x", "y"],
                            "properties": {"x": {"type": "integer", "minimum": 0,
                                                 "maximum": 9},
                                           "y": {"type": "integer", "minimum": 0,
                                                 "maximum": 9}}}},
        "type": "array", "items": {"$ref": "#/$defs/point"}, "maxItems": 2,
    },
    "tuple": {"type": "array", "prefixItems": [{"type": "boolean"}, {"enum": ["a", "b"]}]},
}

RECORD = {
    "type": "object", "additionalProperties": False,
    "required": ["name", "age", "tags", "active", "kind"],
    "properties": {
        "name": NAME,
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
        "active": {"type": "boolean"},
        "kind": {"const": "person"},
        "score": {"type": "number"},
    },
}


@pytest.fixture
def json_ctx(model: llamakit.Model) -> Any:
    with model.new_context(n_ctx=512, n_batch=64, n_threads=1) as context:
        yield context


def _generate(ctx: llamakit.Context, seed: int, **kwargs: Any) -> Any:
    result = ctx.generate("JSON:", max_new_tokens=300, seed=seed, **kwargs)
    assert result.finish_reason == "eog", result.text
    return json.loads(result.text)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_schema_corpus_converts_and_constrains(json_ctx: llamakit.Context, name: str) -> None:
    """Each schema converts with llama.cpp's converter and its output validates."""
    schema = CORPUS[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    grammar = Grammar.from_json_schema(schema, model=json_ctx.model)
    assert "root ::=" in grammar.text
    for seed in range(2):
        jsonschema.validate(_generate(json_ctx, seed, json_schema=schema), schema)


def test_fifty_generations_parse_and_validate(json_ctx: llamakit.Context) -> None:
    """50 sampled generations under a schema all parse as JSON and validate."""
    validator = jsonschema.Draft202012Validator(RECORD)
    for seed in range(50):
        document = _generate(json_ctx, seed, json_schema=RECORD, temperature=1.0)
        assert not list(validator.iter_errors(document)), document


def test_response_format_json_object_and_schema(json_ctx: llamakit.Context) -> None:
    """response_format json_object gives a JSON object; json_schema a valid document."""
    schema = CORPUS["required-and-optional"]
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    jsonschema.validate(_generate(json_ctx, 1, response_format=fmt), schema)
    limited = {"type": "json_object", "schema": CORPUS["const"]}
    assert _generate(json_ctx, 2, response_format=limited) == {"v": 1, "kind": "point"}
    result = json_ctx.generate("JSON:", max_new_tokens=60, seed=3,
                               response_format={"type": "json_object"})
    assert result.text.lstrip().startswith("{")
    text = json_ctx.generate("x", max_new_tokens=3, temperature=0,
                             response_format={"type": "text"})
    assert text.tokens == json_ctx.generate("x", max_new_tokens=3, temperature=0).tokens


def test_schema_as_json_text_or_pydantic_model(json_ctx: llamakit.Context) -> None:
    """A schema may be JSON text or a pydantic model class."""
    import pydantic

    class Point(pydantic.BaseModel):
        x: int = pydantic.Field(ge=0, le=9)
        y: bool

    document = _generate(json_ctx, 4, json_schema=Point)
    assert Point.model_validate(document)
    text = json.dumps(CORPUS["enum"])
    assert _generate(json_ctx, 5, json_schema=text) in CORPUS["enum"]["enum"]


def test_chat_takes_json_schema(json_ctx: llamakit.Context) -> None:
    """chat() passes json_schema= and response_format= through to generation."""
    messages = [{"role": "user", "content": "Give me a point."}]
    schema = CORPUS["refs-and-defs"]
    reply = json_ctx.chat(messages, template="chatml", json_schema=schema, seed=6,
                          max_new_tokens=200)
    jsonschema.validate(json.loads(reply.content), schema)
    reply = json_ctx.chat(messages, template="chatml", seed=7, max_new_tokens=200,
                          response_format={"type": "json_object", "schema": CORPUS["enum"]})
    assert json.loads(reply.content) in CORPUS["enum"]["enum"]
