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
import logging
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from ._errors import GrammarError, SamplerError
from ._grammar import Grammar, JsonSchema, grammar_from_response_format
from ._native.sampler import MAX_LAST_N
from ._sampler_protocol import SEQUENCE_STAGES, check_sampler

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["DEFAULTS", "SamplingKwargs", "SamplingParams", "Stage", "check_seed",
           "random_seed"]

logger = logging.getLogger("llamakit.sampling")
_SEED_MAX = 0xFFFFFFFE  # 0xFFFFFFFF is llama.cpp's "pick a random seed"


def random_seed() -> int:
    return secrets.randbelow(_SEED_MAX + 1)


def check_seed(seed: Any, name: str = "seed") -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _SEED_MAX:
        raise SamplerError(f"{name} must be an integer in 0..{_SEED_MAX} or None, got {seed!r}")
    return seed


class SamplingKwargs(TypedDict, total=False):
    """The sampling keywords of ``generate``/``stream`` (see ``SamplingParams``)."""

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


#: llamakit's defaults: llama.cpp's ``common_params_sampling``.
DEFAULTS: dict[str, Any] = {
    "temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "typical_p": 1.0,
    "top_n_sigma": -1.0, "min_keep": 1, "xtc_probability": 0.0, "xtc_threshold": 0.1,
    "dynatemp_range": 0.0, "dynatemp_exponent": 1.0, "repeat_penalty": 1.0,
    "repeat_last_n": 64, "frequency_penalty": 0.0, "presence_penalty": 0.0,
    "dry_multiplier": 0.0, "dry_base": 1.75, "dry_allowed_length": 2,
    "dry_penalty_last_n": 64, "dry_sequence_breakers": ("\n", ":", '"', "*"),
    "mirostat": 0, "mirostat_tau": 5.0, "mirostat_eta": 0.1, "adaptive_target": -1.0,
    "adaptive_decay": 0.9,
    "samplers": ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p",
                 "xtc", "temperature"),
}

# (low, high) for numbers; floats must be finite.
_FLOATS: dict[str, tuple[float, float]] = {
    "temperature": (0.0, math.inf), "top_p": (0.0, 1.0), "min_p": (0.0, 1.0),
    "typical_p": (0.0, 1.0), "top_n_sigma": (-math.inf, math.inf),
    "xtc_probability": (0.0, 1.0), "xtc_threshold": (0.0, 1.0),
    "dynatemp_range": (0.0, math.inf), "dynatemp_exponent": (0.0, math.inf),
    "repeat_penalty": (0.0, math.inf), "frequency_penalty": (-math.inf, math.inf),
    "presence_penalty": (-math.inf, math.inf), "dry_multiplier": (0.0, math.inf),
    "dry_base": (0.0, math.inf), "mirostat_tau": (0.0, math.inf),
    "mirostat_eta": (0.0, math.inf), "adaptive_target": (-math.inf, 1.0),
    "adaptive_decay": (0.0, 0.99),
}
_INTS: dict[str, tuple[int, int]] = {
    "top_k": (0, 2**31 - 1), "min_keep": (1, 2**31 - 1), "repeat_last_n": (-1, MAX_LAST_N),
    "dry_allowed_length": (0, 2**31 - 1), "dry_penalty_last_n": (-1, MAX_LAST_N),
    "mirostat": (0, 2),
}
# llama.cpp's sequence names (common_sampler_types_from_names) and their aliases.
_SEQUENCE = SEQUENCE_STAGES  # the names are the plugin host's reserved names too
_RESHAPING = frozenset({"top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc",
                        "temperature", "infill", "adaptive_p"})


@dataclass(frozen=True)
class Stage:
    """One stage of a chain to build: a native stage (``NATIVE_STAGES`` name), a plugin
    sampler by name, or a Python ``sampler`` object."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    sampler: object | None = None


def _float(name: str, value: Any) -> float:
    low, high = _FLOATS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SamplerError(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise SamplerError(f"{name} must be in [{low}, {high}], got {value!r}")
    if name == "repeat_penalty" and value == 0:
        raise SamplerError("repeat_penalty must be > 0 (1 = off)")
    return float(value)


def _int(name: str, value: Any) -> int:
    low, high = _INTS[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SamplerError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return value


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) \
            or not all(isinstance(v, str) and v for v in value):
        raise SamplerError(f"{name} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def _logit_bias(value: Any) -> tuple[tuple[int, float], ...]:
    if not isinstance(value, Mapping):
        raise SamplerError(f"logit_bias must be a mapping {{token_id: bias}}, got {value!r}")
    entries = []
    for key, bias in value.items():
        token = int(key) if isinstance(key, str) and key.strip().lstrip("-").isdigit() else key
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


_DEFAULT_SEQUENCE = _sequence(DEFAULTS["samplers"])


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
            if name in _FLOATS:
                values[name] = _float(name, value)
            elif name in _INTS:
                values[name] = _int(name, value)
            elif name == "seed":
                values[name] = check_seed(value)
            elif name in ("dry_sequence_breakers", "grammar_trigger_patterns",
                          "grammar_trigger_words"):
                values[name] = _strings(name, value)
            elif name == "grammar_trigger_tokens":
                tokens = tuple(value) if isinstance(value, Sequence) else value
                if not isinstance(tokens, tuple) or not all(
                        isinstance(t, int) and not isinstance(t, bool) for t in tokens):
                    raise SamplerError(f"grammar_trigger_tokens must be a list of token ids, "
                                       f"got {value!r}")
                values[name] = tokens
            elif name == "logit_bias":
                values[name] = _logit_bias(value)
            elif name == "samplers":
                values[name] = _sequence(value)
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
                number: float = int(raw) if name in _INTS else float(raw)
                values[name] = _int(name, number) if name in _INTS else _float(name, number)
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
        return self.values.get(name, DEFAULTS.get(name))

    @property
    def greedy(self) -> bool:
        return bool(self.get("temperature") == 0)

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
        final = "adaptive_p" if get("adaptive_target") >= 0 or any(
            s.name == "adaptive_p" and s.sampler is None for s in sequence) else "dist"
        for stage in sequence:
            if self.greedy and stage.name in _RESHAPING:
                continue
            if mirostat and stage.name in _SEQUENCE.values():
                continue
            built = self._stage(stage, seed, n_ctx)
            if built is not None:
                stages.append(built)
        if self.greedy:
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
    if value is None:
        pass
    elif given[0] == "json_schema":
        grammar = Grammar.from_json_schema(value, model=model)
    elif given[0] == "response_format":
        grammar = grammar_from_response_format(value, model)
    elif isinstance(value, Grammar):
        grammar = value
    elif isinstance(value, str):
        grammar = Grammar.from_string(value)
    elif isinstance(value, os.PathLike):
        grammar = Grammar.from_file(value)
    else:
        raise GrammarError(f"grammar must be GBNF text, a Grammar or a path, got {value!r}")
    patterns = kwargs.get("grammar_trigger_patterns") or ()
    words = kwargs.get("grammar_trigger_words") or ()
    tokens = kwargs.get("grammar_trigger_tokens") or ()
    if patterns or words or tokens:
        if grammar is None:
            raise SamplerError("grammar_trigger_* need a grammar (grammar=, json_schema= or "
                               "response_format=)")
        grammar = grammar.lazy_on(patterns=patterns, words=words, tokens=tokens)
    return grammar


def sequence_names() -> frozenset[str]:
    """The names (and aliases) of llama.cpp's sequence stages; plugins may not take them."""
    return frozenset(_SEQUENCE)
