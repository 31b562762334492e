"""The [sampling] config section builds the same chains as the keywords."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import llamakit
from llamakit._config.schema import SamplingConfig
from llamakit._sampling import SamplingKwargs, SamplingParams


def test_schema_defaults_are_the_sampling_defaults() -> None:
    """Every [sampling] default equals the default the keywords fall back to."""
    config = SamplingConfig()
    unset = SamplingParams()
    for name in SamplingKwargs.__annotations__:
        if name not in SamplingConfig.model_fields:
            continue  # Python-only keywords (response_format)
        value = unset.get(name)
        if name == "samplers":
            assert config.samplers is None  # unset: the model's sequence, else llama.cpp's
            continue
        assert getattr(config, name) == (list(value) if isinstance(value, tuple) else value), name


@pytest.fixture
def write_config(tmp_path: Path, tiny_model_path: Path) -> Iterator[Any]:
    """Write a config for the tiny model with the given [sampling] body; load it."""
    opened: list[llamakit.Model] = []

    def load(sampling: str) -> llamakit.Context:
        path = tmp_path / "llamakit.toml"
        path.write_text(f'[backend]\nname = "cpu"\n[model]\npath = "{tiny_model_path}"\n'
                        f"[context]\nn_ctx = 256\nn_threads = 1\n[sampling]\n{sampling}\n",
                        encoding="utf-8")
        model, ctx = llamakit.from_config(path)
        opened.append(model)
        return ctx

    yield load
    for model in opened:
        model.close()


def _names(ctx: llamakit.Context) -> list[str]:
    return [s.name for s in ctx._sampling({}).stages(1, ctx.n_ctx)]


@pytest.mark.parametrize(("body", "stages"), [
    ("", ["top_k", "top_p", "min_p", "temp", "dist"]),
    ("temperature = 0", ["greedy"]),
    ("typical_p = 0.8\ntop_n_sigma = 2.0",
     ["top_n_sigma", "top_k", "typical", "top_p", "min_p", "temp", "dist"]),
    ("xtc_probability = 0.3\nxtc_threshold = 0.2\ndynatemp_range = 0.4",
     ["top_k", "top_p", "min_p", "xtc", "temp_ext", "dist"]),
    ("repeat_penalty = 1.2\nfrequency_penalty = 0.1\npresence_penalty = 0.1\n"
     "repeat_last_n = -1", ["penalties", "top_k", "top_p", "min_p", "temp", "dist"]),
    ('dry_multiplier = 0.8\ndry_sequence_breakers = ["\\n"]',
     ["dry", "top_k", "top_p", "min_p", "temp", "dist"]),
    ("mirostat = 1\nmirostat_tau = 4.0\nmirostat_eta = 0.2", ["temp", "mirostat"]),
    ("mirostat = 2", ["temp", "mirostat_v2"]),
    ("adaptive_target = 0.5\nadaptive_decay = 0.8",
     ["top_k", "top_p", "min_p", "temp", "adaptive_p"]),
    ('logit_bias = {"5" = -inf}', ["logit_bias", "top_k", "top_p", "min_p", "temp", "dist"]),
    ('grammar = \'root ::= "x"\'', ["grammar", "top_k", "top_p", "min_p", "temp", "dist"]),
    ('grammar = \'root ::= "x"\'\ngrammar_trigger_words = ["x"]',
     ["grammar", "top_k", "top_p", "min_p", "temp", "dist"]),
    ('samplers = ["top_k", "infill", "temperature"]\nmin_keep = 2',
     ["top_k", "infill", "temp", "dist"]),
], ids=lambda v: v.split("\n")[0][:30] if "=" in v or not v else None)
def test_config_keys_build_their_stages(write_config: Any, body: str,
                                        stages: list[str]) -> None:
    """Each [sampling] key reaches its llama.cpp stage, and generation runs with it."""
    ctx = write_config(body)
    assert _names(ctx) == stages
    ctx.generate("Hello", max_new_tokens=2, seed=1)


def test_config_values_reach_the_stages(write_config: Any) -> None:
    """Values from the file are the stages' parameters; call keywords still override."""
    ctx = write_config("top_k = 3\nseed = 12\nlogit_bias = {\"9\" = -inf}\n"
                       "grammar_trigger_tokens = [5]\ngrammar = 'root ::= \"a\"'")
    stages = {s.name: s.params for s in ctx._sampling({}).stages(1, ctx.n_ctx)}
    assert stages["top_k"] == {"k": 3}
    assert stages["logit_bias"] == {"logit_bias": [(9, -math.inf)]}
    assert stages["grammar"]["lazy"] and stages["grammar"]["trigger_tokens"] == [5]
    assert ctx._sampling({}).get("seed") == 12
    assert ctx._sampling({"top_k": 8}).get("top_k") == 8


def test_config_json_schema_and_grammar_file(write_config: Any, tmp_path: Path) -> None:
    """json_schema (table or JSON text) and grammar_file (relative to the file) constrain."""
    ctx = write_config('json_schema = {type = "object", required = ["ok"], '
                       'additionalProperties = false, properties = {ok = {type = "boolean"}}}')
    assert set(json.loads(ctx.generate("J", max_new_tokens=40, seed=2).text)) == {"ok"}
    ctx = write_config(f"json_schema = '{json.dumps({'enum': ['yes', 'no']})}'")
    assert json.loads(ctx.generate("J", max_new_tokens=10, seed=3).text) in ("yes", "no")
    (tmp_path / "g.gbnf").write_text('root ::= "ok"', encoding="utf-8")
    ctx = write_config('grammar_file = "g.gbnf"')
    assert ctx.generate("J", max_new_tokens=5, seed=4).text == "ok"


def test_config_defaults_leave_gguf_recommendations(tmp_path: Path, synthetic_model: Any) -> None:
    """Keys the file does not set do not override the model's general.sampling.*."""
    path = synthetic_model(metadata={"general.sampling.temp": 0.0,
                                     "general.sampling.top_k": 3})
    config = tmp_path / "c.toml"
    config.write_text(f'[backend]\nname = "cpu"\n[model]\npath = "{path}"\n'
                      "[context]\nn_threads = 1\n[sampling]\ntop_k = 9\n", encoding="utf-8")
    model, ctx = llamakit.from_config(config)
    with model:
        params = ctx._sampling({})
        assert params.greedy and params.get("top_k") == 9


@pytest.mark.parametrize("body", ["grammar = 'root ::= nope'", "json_schema = '{bad'"],
                         ids=["bad-grammar", "bad-schema"])
def test_bad_constraints_in_config_raise_grammar_error(write_config: Any, body: str) -> None:
    """An invalid grammar or schema in the config is GrammarError with the reason."""
    with pytest.raises(llamakit.GrammarError):
        write_config(body).generate("x", max_new_tokens=1)


def test_grammar_and_grammar_file_exclude_each_other(write_config: Any, tmp_path: Path) -> None:
    """Setting both grammar and grammar_file is a ConfigError naming the key."""
    (tmp_path / "g.gbnf").write_text('root ::= "ok"', encoding="utf-8")
    with pytest.raises(llamakit.ConfigError, match="grammar_file"):
        write_config("grammar = 'root ::= \"a\"'\ngrammar_file = \"g.gbnf\"")
