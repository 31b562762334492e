"""Turning sampling keywords into a validated llama.cpp sampler chain.

The keywords of ``generate``/``stream`` (and the ``[sampling]`` config keys) are those of
llama.cpp's ``common_params_sampling`` under llama-cpp-python's names. Values come in
layers, each overriding the one before: llamakit's defaults (llama.cpp's), the model's
recommendations (GGUF ``general.sampling.*``), the context's settings (``[sampling]``
config, ``Context.sampling``), then the call's keywords.

The chain is built the way llama.cpp's ``common_sampler`` builds it: grammar, logit bias,
then the ``samplers`` sequence (default ``penalties; dry; top_n_sigma; top_k; typ_p; top_p;
min_p; xtc; temperature``, stages whose settings disable them left out), then the stage that
picks the token: ``dist`` (``adaptive_p`` when ``adaptive_target >= 0``). ``mirostat`` 1 or
2 replaces the sequence by temperature + mirostat (as in llama.cpp; plugin and Python stages
are kept). ``temperature=0`` is greedy: stages that only reshape or truncate the
distribution are left out, stages that change logits (penalties, DRY, logit bias, grammar,
plugin and Python stages) stay, and ``greedy`` picks the token.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from ._config.fields import check_field, field_default
from ._config.schema import MAX_SEED, SamplingConfig
from ._errors import GrammarError, SamplerError
from ._grammar import Grammar, JsonSchema, grammar_from_response_format
from ._sampler_protocol import SEQUENCE_STAGES, check_sampler

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["SamplingKwargs", "SamplingParams", "Stage", "check_seed", "random_seed"]

logger = logging.getLogger("llamakit.sampling")


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """``seed`` checked as the schema's ``[sampling] seed``; ``name`` is the key to name."""
    if seed is None:
        return None
    try:
        checked: int | None = check_field(SamplingConfig, "seed", seed, error=SamplerError)
    except SamplerError as exc:
        raise SamplerError(str(exc).replace("seed", name, 1)) from None
    return checked


class SamplingKwargs(TypedDict, total=False):
    """The sampling keywords of ``generate``/``stream`` (see ``SamplingParams``).

    The ``[sampling]`` keys by another route: their types, ranges and defaults are those of
    ``SamplingConfig`` (a test keeps these names and that schema in step; mypy needs them
    written out). Python callers may also pass richer values (a ``Grammar``, ``Sampler``
    objects, int token ids).
    """

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    top_n_sigma: float
    min_keep: int
    xtc_probability: float
    xtc_threshold: float
    dynatemp_range: float
    dynatemp_exponent: float
    repeat_penalty: float
    repeat_last_n: int
    frequency_penalty: float
    presence_penalty: float
    dry_multiplier: float
    dry_base: float
    dry_allowed_length: int
    dry_penalty_last_n: int
    dry_sequence_breakers: Sequence[str]
    mirostat: int
    mirostat_tau: float
    mirostat_eta: float
    adaptive_target: float
    adaptive_decay: float
    seed: int | None
    logit_bias: Mapping[int, float]
    grammar: str | Grammar | os.PathLike[str]
    grammar_trigger_patterns: Sequence[str]
    grammar_trigger_words: Sequence[str]
    grammar_trigger_tokens: Sequence[int]
    json_schema: JsonSchema
    response_format: Mapping[str, Any]
    samplers: Sequence[Any]
    backend_sampling: bool


# Keywords whose Python values are richer than the [sampling] key's TOML value: they have
# their own converters below (the TOML values pass through them too).
_CONVERTED = frozenset({"logit_bias", "samplers", "grammar", "json_schema", "response_format"})
# The llama.cpp sequence used when neither the call, the config nor the model sets one.
_LLAMA_CPP_SEQUENCE = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p",
                       "xtc", "temperature")
# llama.cpp's sequence names (common_sampler_types_from_names) and their aliases.
_SEQUENCE = SEQUENCE_STAGES  # the names are the plugin host's reserved names too
#: The native stages that llama.cpp can run inside a decode's graph (backend sampling:
#: each has a ``backend_apply``).
GRAPH_STAGES = frozenset({"logit_bias", "penalties", "top_k", "top_p", "min_p", "temp",
                          "temp_ext", "greedy", "dist"})
_RESHAPING = frozenset({"top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc",
                        "temperature", "infill", "adaptive_p"})


@dataclass(frozen=True)
class Stage:
    """One stage of a chain to build: a native stage (``NATIVE_STAGES`` name), a plugin
    sampler by name, or a Python ``sampler`` object."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    sampler: object | None = None


_TOKEN_KEY = re.compile(r"\s*-?[0-9]{1,20}\s*", re.ASCII)


def _logit_bias(value: Any) -> tuple[tuple[int, float], ...]:
    if not isinstance(value, Mapping):
        raise SamplerError(f"logit_bias must be a mapping {{token_id: bias}}, got {value!r}")
    entries = []
    for key, bias in value.items():
        # ASCII digits only: str.isdigit() takes "²" and int() takes "٣", and a very long
        # digit string passes Python's int() limit; none of them is a token id.
        token = int(key) if isinstance(key, str) and _TOKEN_KEY.fullmatch(key) else key
        if isinstance(token, bool) or not isinstance(token, int):
            raise SamplerError(f"logit_bias keys are token ids, got {key!r}")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or math.isnan(bias) \
                or bias == math.inf:
            raise SamplerError(f"logit_bias[{key!r}] must be a number or -inf, got {bias!r}")
        entries.append((token, float(bias)))
    return tuple(entries)


def _sequence(value: Any, *, strict: bool = True) -> tuple[Stage, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise SamplerError(f"samplers must be a list of stage names, (name, params) pairs or "
                           f"Sampler objects, got {value!r}")
    stages = []
    for item in value:
        if isinstance(item, str):
            name, params = item.strip().lower(), {}
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            name, params = item["name"], {k: v for k, v in item.items() if k != "name"}
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) \
                and isinstance(item[1], Mapping):
            name, params = item[0], dict(item[1])
        elif callable(getattr(item, "apply", None)):
            check_sampler(item)
            stages.append(Stage(type(item).__name__.lower(), sampler=item))
            continue
        else:
            raise SamplerError(f"samplers entry {item!r} is not a name, a (name, params) pair, "
                               "a {'name': ...} table or a Sampler object")
        if name in _SEQUENCE:
            if params:
                raise SamplerError(f"the built-in stage {name!r} takes its settings from the "
                                   "sampling keywords, not from parameters in samplers")
            name = _SEQUENCE[name]
        elif not strict:
            logger.warning("unknown sampler %r in the model's general.sampling.sequence; "
                           "skipped", name)
            continue
        stages.append(Stage(name, dict(params)))
    return tuple(stages)


_DEFAULT_SEQUENCE = _sequence(_LLAMA_CPP_SEQUENCE)


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings, each ``None`` when unset (a lower layer then decides).

    Build one with ``SamplingParams.from_kwargs``; combine layers with ``merged``. See the
    module docstring for how they become a chain.
    """

    values: Mapping[str, Any] = field(default_factory=dict)
    grammar: Grammar | None = None

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], *, model: Model | None = None,
                    where: str = "generate()") -> SamplingParams:
        """Validate keywords; unknown names are a ``TypeError`` as for any call."""
        known = SamplingKwargs.__annotations__
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise TypeError(f"{where} got an unexpected keyword argument {unknown[0]!r}")
        values: dict[str, Any] = {}
        for name, value in kwargs.items():
            if value is None:
                continue
            if name == "logit_bias":
                values[name] = _logit_bias(value)
            elif name == "samplers":
                values[name] = _sequence(value)
            elif name not in _CONVERTED:
                checked = check_field(SamplingConfig, name, value, error=SamplerError)
                values[name] = tuple(checked) if isinstance(checked, list) else checked
        return cls(values, _grammar(kwargs, model))

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> SamplingParams:
        """The model's recommended settings (GGUF ``general.sampling.*``), as llama.cpp's
        ``common_init`` reads them; an unreadable or invalid value is logged and skipped."""
        keys = {"top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
                "xtc_probability": "xtc_probability", "xtc_threshold": "xtc_threshold",
                "temp": "temperature", "penalty_last_n": "repeat_last_n",
                "penalty_repeat": "repeat_penalty", "mirostat": "mirostat",
                "mirostat_tau": "mirostat_tau", "mirostat_eta": "mirostat_eta"}
        values: dict[str, Any] = {}
        for key, name in keys.items():
            raw = metadata.get(f"general.sampling.{key}")
            if raw is None:
                continue
            try:
                number: float = int(raw) if raw.strip().lstrip("-").isdigit() else float(raw)
                values[name] = check_field(SamplingConfig, name, number, error=SamplerError)
            except (ValueError, SamplerError) as exc:
                logger.warning("ignoring the model's general.sampling.%s = %r: %s", key, raw, exc)
        sequence = metadata.get("general.sampling.sequence")
        if sequence:
            names = [n for n in sequence.split(";") if n.strip()]
            values["samplers"] = _sequence(names, strict=False)
        return cls(values)

    def merged(self, other: SamplingParams) -> SamplingParams:
        """``self`` with every setting that ``other`` sets taken from ``other``."""
        return SamplingParams({**self.values, **other.values}, other.grammar or self.grammar)

    def get(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        return _default(name)

    @property
    def greedy(self) -> bool:
        return bool(self.get("temperature") == 0)

    def in_graph(self, stages: Sequence[Stage], logprobs: int | None = None) -> bool:
        """Whether these settings ask for backend sampling and its chain ``stages`` can
        run in llama.cpp's graph: every stage one of ``GRAPH_STAGES``, no grammar, and no
        ``logprobs`` (they read the raw logits that an in-graph sample does not copy)."""
        return (bool(self.get("backend_sampling")) and self.grammar is None
                and logprobs is None
                and all(s.sampler is None and s.name in GRAPH_STAGES for s in stages))

    def replace(self, **values: Any) -> SamplingParams:
        return dataclasses.replace(self, values={**self.values, **values})

    def stages(self, seed: int, n_ctx: int) -> list[Stage]:
        """The chain these settings describe; ``seed`` feeds every random stage and
        ``n_ctx`` replaces the -1 ("whole context") of the penalty windows."""
        get = self.get
        stages: list[Stage] = []
        if self.grammar is not None:
            stages.append(Stage("grammar", self.grammar.stage_params()))
        if self.values.get("logit_bias"):
            stages.append(Stage("logit_bias", {"logit_bias": list(get("logit_bias"))}))
        sequence: Sequence[Stage] = self.values.get("samplers", _DEFAULT_SEQUENCE)
        mirostat = get("mirostat")
        greedy = self.greedy
        final = "adaptive_p" if get("adaptive_target") >= 0 or any(
            s.name == "adaptive_p" and s.sampler is None for s in sequence) else "dist"
        for stage in sequence:
            if greedy and stage.name in _RESHAPING:
                continue
            if mirostat and stage.name in _SEQUENCE.values():
                continue
            built = self._stage(stage, seed, n_ctx)
            if built is not None:
                stages.append(built)
        if greedy:
            stages.append(Stage("greedy"))
        elif mirostat:
            stages.append(Stage("temp", {"t": get("temperature")}))
            name = "mirostat" if mirostat == 1 else "mirostat_v2"
            stages.append(Stage(name, {"seed": seed, "tau": get("mirostat_tau"),
                                       "eta": get("mirostat_eta")}))
        elif final == "adaptive_p":
            stages.append(Stage("adaptive_p", {"target": get("adaptive_target"),
                                               "decay": get("adaptive_decay"), "seed": seed}))
        else:
            stages.append(Stage("dist", {"seed": seed}))
        return stages

    def _stage(self, stage: Stage, seed: int, n_ctx: int) -> Stage | None:
        """The native form of a sequence entry, None when its settings disable it."""
        get, name = self.get, stage.name
        keep = get("min_keep")
        if name == "penalties":
            last_n = n_ctx if get("repeat_last_n") == -1 else get("repeat_last_n")
            if last_n == 0 or (get("repeat_penalty") == 1.0 and get("frequency_penalty") == 0
                               and get("presence_penalty") == 0):
                return None
            return Stage("penalties", {"penalty_last_n": last_n,
                                       "penalty_repeat": get("repeat_penalty"),
                                       "penalty_freq": get("frequency_penalty"),
                                       "penalty_present": get("presence_penalty")})
        if name == "dry":
            last_n = n_ctx if get("dry_penalty_last_n") == -1 else get("dry_penalty_last_n")
            if get("dry_multiplier") == 0 or get("dry_base") < 1.0 or last_n == 0:
                return None
            return Stage("dry", {"dry_multiplier": get("dry_multiplier"),
                                 "dry_base": get("dry_base"),
                                 "dry_allowed_length": get("dry_allowed_length"),
                                 "dry_penalty_last_n": last_n,
                                 "seq_breakers": list(get("dry_sequence_breakers"))})
        if name == "top_n_sigma":
            return Stage(name, {"n": get("top_n_sigma")}) if get("top_n_sigma") > 0 else None
        if name == "top_k":
            return Stage(name, {"k": get("top_k")}) if get("top_k") > 0 else None
        if name == "typ_p":
            return (Stage("typical", {"p": get("typical_p"), "min_keep": keep})
                    if get("typical_p") < 1.0 else None)
        if name == "top_p":
            return (Stage(name, {"p": get("top_p"), "min_keep": keep})
                    if get("top_p") < 1.0 else None)
        if name == "min_p":
            return (Stage(name, {"p": get("min_p"), "min_keep": keep})
                    if get("min_p") > 0.0 else None)
        if name == "xtc":
            if get("xtc_probability") <= 0.0 or get("xtc_threshold") > 0.5:
                return None
            return Stage(name, {"p": get("xtc_probability"), "t": get("xtc_threshold"),
                                "min_keep": keep, "seed": seed})
        if name == "temperature":
            if get("dynatemp_range") > 0:
                return Stage("temp_ext", {"t": get("temperature"),
                                          "delta": get("dynatemp_range"),
                                          "exponent": get("dynatemp_exponent")})
            return Stage("temp", {"t": get("temperature")})
        if name == "infill":
            return Stage("infill")
        if name == "adaptive_p":
            return None  # always the last stage; see stages()
        return stage  # a plugin sampler by name, or a Python sampler object


def _grammar(kwargs: Mapping[str, Any], model: Model | None) -> Grammar | None:
    """The one grammar that ``grammar``, ``json_schema`` and ``response_format`` give."""
    given = [k for k in ("grammar", "json_schema", "response_format")
             if kwargs.get(k) is not None]
    if len(given) > 1:
        raise SamplerError(f"give only one of {', '.join(given)}")
    grammar: Grammar | None = None
    value = kwargs.get(given[0]) if given else None
    try:
        grammar = _one_grammar(given[0], value, model) if given else None
    except GrammarError as exc:
        if given[0] in str(exc):
            raise
        raise GrammarError(f"{given[0]}: {exc}") from exc
    patterns = kwargs.get("grammar_trigger_patterns") or ()
    words = kwargs.get("grammar_trigger_words") or ()
    tokens = kwargs.get("grammar_trigger_tokens") or ()
    if patterns or words or tokens:
        if grammar is None:
            named = [k for k in ("grammar_trigger_patterns", "grammar_trigger_words",
                                 "grammar_trigger_tokens") if kwargs.get(k)]
            raise SamplerError(f"{', '.join(named)} need a grammar (grammar=, json_schema= or "
                               "response_format=)")
        grammar = grammar.lazy_on(patterns=patterns, words=words, tokens=tokens)
    return grammar


@functools.cache
def _default(name: str) -> Any:
    value = field_default(SamplingConfig, name)
    return tuple(value) if isinstance(value, list) else value


def _one_grammar(key: str, value: Any, model: Model | None) -> Grammar | None:
    if value is None:
        return None
    if key == "json_schema":
        return Grammar.from_json_schema(value, model=model)
    if key == "response_format":
        return grammar_from_response_format(value, model)
    if isinstance(value, Grammar):
        return value
    if isinstance(value, str):
        return Grammar.from_string(value)
    if isinstance(value, os.PathLike):
        return Grammar.from_file(value)
    raise GrammarError(f"grammar must be GBNF text, a Grammar or a path, got {value!r}")

