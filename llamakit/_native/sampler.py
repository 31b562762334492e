"""``SamplerHandle``: a ``llama_sampler`` chain whose stages are validated before any C call.

Every stage of the pinned llama.cpp has a builder here that checks its parameters where
llama.cpp would assert, allocate without bound or divide by zero. Sampling, accepting,
resetting and cloning go through the shim (native/lk_sampling.h), which reports instead of
aborting; its statuses become exceptions in ``status.raise_for_sample``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._config.schema import INT32_MAX, MAX_LAST_N, MAX_SEED
from .._errors import SamplerError
from .._sampler_protocol import TOKEN_DATA, Candidates
from .context import ContextHandle
from .grammar import grammar_stage
from .handle import Handle, pinned
from .lib import NativeLib
from .model import ModelHandle
from .pysampler import new_python_stage, take_error
from .status import raise_for_sample

__all__ = ["MAX_LAST_N", "NATIVE_STAGES", "SELECTING_STAGES", "SamplerHandle", "sample_many",
           "sample_piece_at"]

# The stage parameters of SamplerChain.add and plugin stages reach llama.cpp without the
# [sampling] schema, so this layer keeps the bounds that protect llama.cpp's fixed-width
# fields; the numbers themselves are the schema's.
_SEED_MAX = MAX_SEED
_INT32_MAX = INT32_MAX

Params = Mapping[str, Any]


# -- parameter checks ------------------------------------------------------------------------
def _pop(stage: str, params: Params, name: str, default: Any = ...) -> Any:
    if name in params:
        return params[name]
    if default is ...:
        raise SamplerError(f"{stage}: missing parameter {name!r}")
    return default


def _float(stage: str, name: str, value: Any, low: float = -math.inf, high: float = math.inf,
           *, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise SamplerError(f"{stage}: {name} must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number) or (math.isinf(number) and not allow_inf):
        raise SamplerError(f"{stage}: {name} must be a finite number, got {value!r}")
    if not low <= number <= high:
        raise SamplerError(f"{stage}: {name} must be in [{low}, {high}], got {value!r}")
    return number


def _int(stage: str, name: str, value: Any, low: int, high: int = _INT32_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SamplerError(f"{stage}: {name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise SamplerError(f"{stage}: {name} must be in {low}..{high}, got {value!r}")
    return int(value)


def _seed(stage: str, value: Any) -> int:
    return _int(stage, "seed", value, 0, _SEED_MAX)


@pinned
def _last_n(stage: str, name: str, value: Any, model: ModelHandle) -> int:
    """A history window: -1 means the model's training context (llama.cpp's convention)."""
    n = _int(stage, name, value, -1, MAX_LAST_N)
    return int(model.lib.llama_model_n_ctx_train(model.ptr)) if n == -1 else n


def _known(stage: str, params: Params, names: Sequence[str]) -> None:
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise SamplerError(f"{stage}: unknown parameter(s) {unknown}; it takes "
                           f"{', '.join(names) or 'none'}")


# -- stage builders: (native, model, params) -> llama_sampler * -------------------------------
Builder = Callable[[NativeLib, ModelHandle, Params], Any]


def _greedy(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("greedy", p, ())
    return native.lib.llama_sampler_init_greedy()


def _dist(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("dist", p, ("seed",))
    return native.lib.llama_sampler_init_dist(_seed("dist", _pop("dist", p, "seed")))


def _top_k(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("top_k", p, ("k",))
    return native.lib.llama_sampler_init_top_k(_int("top_k", "k", _pop("top_k", p, "k"), 0))


def _min_keep(stage: str, p: Params) -> int:
    return _int(stage, "min_keep", p.get("min_keep", 1), 1)


def _top_p(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("top_p", p, ("p", "min_keep"))
    return native.lib.llama_sampler_init_top_p(
        _float("top_p", "p", _pop("top_p", p, "p"), 0.0, 1.0), _min_keep("top_p", p))


def _min_p(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("min_p", p, ("p", "min_keep"))
    return native.lib.llama_sampler_init_min_p(
        _float("min_p", "p", _pop("min_p", p, "p"), 0.0, 1.0), _min_keep("min_p", p))


def _typical(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("typical", p, ("p", "min_keep"))
    return native.lib.llama_sampler_init_typical(
        _float("typical", "p", _pop("typical", p, "p"), 0.0, 1.0), _min_keep("typical", p))


def _temp(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("temp", p, ("t",))
    return native.lib.llama_sampler_init_temp(_float("temp", "t", _pop("temp", p, "t"), 0.0))


def _temp_ext(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("temp_ext", p, ("t", "delta", "exponent"))
    return native.lib.llama_sampler_init_temp_ext(
        _float("temp_ext", "t", _pop("temp_ext", p, "t"), 0.0),
        _float("temp_ext", "delta", p.get("delta", 0.0), 0.0),
        _float("temp_ext", "exponent", p.get("exponent", 1.0), 0.0))


def _xtc(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("xtc", p, ("p", "t", "min_keep", "seed"))
    return native.lib.llama_sampler_init_xtc(
        _float("xtc", "p", _pop("xtc", p, "p"), 0.0, 1.0),
        _float("xtc", "t", _pop("xtc", p, "t"), 0.0, 1.0),
        _min_keep("xtc", p), _seed("xtc", _pop("xtc", p, "seed")))


def _top_n_sigma(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("top_n_sigma", p, ("n",))
    return native.lib.llama_sampler_init_top_n_sigma(
        _float("top_n_sigma", "n", _pop("top_n_sigma", p, "n")))


def _mirostat(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("mirostat", p, ("seed", "tau", "eta", "m"))
    return native.lib.llama_sampler_init_mirostat(
        model.n_vocab, _seed("mirostat", _pop("mirostat", p, "seed")),
        _float("mirostat", "tau", p.get("tau", 5.0), 0.0),
        _float("mirostat", "eta", p.get("eta", 0.1), 0.0),
        _int("mirostat", "m", p.get("m", 100), 1))


def _mirostat_v2(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("mirostat_v2", p, ("seed", "tau", "eta"))
    return native.lib.llama_sampler_init_mirostat_v2(
        _seed("mirostat_v2", _pop("mirostat_v2", p, "seed")),
        _float("mirostat_v2", "tau", p.get("tau", 5.0), 0.0),
        _float("mirostat_v2", "eta", p.get("eta", 0.1), 0.0))


def _penalties(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    names = ("penalty_last_n", "penalty_repeat", "penalty_freq", "penalty_present")
    _known("penalties", p, names)
    repeat = _float("penalties", "penalty_repeat", p.get("penalty_repeat", 1.0), 0.0)
    if repeat <= 0.0 or not math.isfinite(1.0 / repeat):
        raise SamplerError(f"penalties: penalty_repeat must be > 0, got {repeat!r}")
    return native.lib.llama_sampler_init_penalties(
        model.n_vocab, _last_n("penalties", "penalty_last_n", p.get("penalty_last_n", 64), model),
        repeat, _float("penalties", "penalty_freq", p.get("penalty_freq", 0.0)),
        _float("penalties", "penalty_present", p.get("penalty_present", 0.0)))


@pinned
def _dry(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    names = ("dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
             "seq_breakers")
    _known("dry", p, names)
    breakers = p.get("seq_breakers", ("\n", ":", '"', "*"))
    if isinstance(breakers, str) or not all(isinstance(b, str) and b and "\0" not in b
                                            for b in breakers):
        raise SamplerError("dry: seq_breakers must be a list of non-empty strings without NUL")
    encoded = [native.ffi.new("char[]", b.encode()) for b in breakers]
    array = native.ffi.new("const char *[]", encoded) if encoded else native.ffi.NULL
    return native.lib.llama_sampler_init_dry(
        model.vocab, _float("dry", "dry_multiplier", _pop("dry", p, "dry_multiplier"), 0.0),
        _float("dry", "dry_base", p.get("dry_base", 1.75), 0.0),
        _int("dry", "dry_allowed_length", p.get("dry_allowed_length", 2), 0),
        _last_n("dry", "dry_penalty_last_n", p.get("dry_penalty_last_n", -1), model),
        array, len(encoded))


def _adaptive_p(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("adaptive_p", p, ("target", "decay", "seed"))
    return native.lib.llama_sampler_init_adaptive_p(
        _float("adaptive_p", "target", _pop("adaptive_p", p, "target"), -1.0, 1.0),
        _float("adaptive_p", "decay", p.get("decay", 0.9), 0.0, 0.99),
        _seed("adaptive_p", _pop("adaptive_p", p, "seed")))


def _logit_bias(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("logit_bias", p, ("logit_bias",))
    biases = _pop("logit_bias", p, "logit_bias")
    items = list(biases.items()) if isinstance(biases, Mapping) else list(biases)
    entries = []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise SamplerError("logit_bias: give a mapping {token_id: bias} or (id, bias) pairs")
        token, bias = item
        token = model.check_token(token)
        # -inf bans a token; +inf would turn every probability into NaN.
        value = _float("logit_bias", f"bias of token {token}", bias, -math.inf, math.inf,
                       allow_inf=True)
        if value == math.inf:
            raise SamplerError(f"logit_bias: bias of token {token} must not be +inf")
        entries.append((token, value))
    array = native.ffi.new("llama_logit_bias[]", len(entries) or 1)
    for i, (token, value) in enumerate(entries):
        array[i].token, array[i].bias = token, value
    # The shim's stage applies as llama.cpp's does, and lets lk_sampler_sample fold these
    # few biases into its fast paths instead of scanning the whole vocabulary.
    return native.lib.lk_sampler_init_logit_bias(model.n_vocab, len(entries), array)


@pinned
def _grammar(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("grammar", p, ("grammar", "root", "lazy", "trigger_patterns", "trigger_tokens",
                          "prefill"))
    text, root = _pop("grammar", p, "grammar"), p.get("root", "root")
    if not isinstance(text, str) or not isinstance(root, str):
        raise SamplerError("grammar: grammar and root must be str")
    patterns = list(p.get("trigger_patterns", ()))
    if not all(isinstance(x, str) for x in patterns):
        raise SamplerError("grammar: trigger_patterns must be strings")
    tokens = model.check_tokens(p.get("trigger_tokens", ()))
    lazy = bool(p.get("lazy", False))
    if not lazy and (patterns or tokens):
        raise SamplerError("grammar: trigger_patterns/trigger_tokens need lazy=True")
    return grammar_stage(native, model.vocab, text, root, lazy=lazy,
                         trigger_patterns=patterns, trigger_tokens=tokens,
                         prefill=model.check_tokens(p.get("prefill", ())))


@pinned
def _infill(native: NativeLib, model: ModelHandle, p: Params) -> Any:
    _known("infill", p, ())
    # llama.cpp asserts when infill has to fall back to EOT/EOS and the vocab has neither.
    if model.special_token("eot") is None and model.special_token("eos") is None:
        raise SamplerError("infill: the model has neither an EOT nor an EOS token")
    return native.lib.llama_sampler_init_infill(model.vocab)


#: Every stage of the pinned llama.cpp, by the name of its ``llama_sampler_init_*``.
NATIVE_STAGES: dict[str, Builder] = {
    "greedy": _greedy, "dist": _dist, "top_k": _top_k, "top_p": _top_p, "min_p": _min_p,
    "typical": _typical, "temp": _temp, "temp_ext": _temp_ext, "xtc": _xtc,
    "top_n_sigma": _top_n_sigma, "mirostat": _mirostat, "mirostat_v2": _mirostat_v2,
    "penalties": _penalties, "dry": _dry, "adaptive_p": _adaptive_p,
    "logit_bias": _logit_bias, "grammar": _grammar, "infill": _infill,
}
# The names are owned by _sampler_protocol.NATIVE_STAGE_NAMES (the plugin host reserves
# them without importing this layer); tests/test_architecture.py checks that they agree.
#: Stages that pick the token; a chain must end with one.
SELECTING_STAGES = frozenset({"greedy", "dist", "mirostat", "mirostat_v2", "adaptive_p"})
#: llama.cpp stages whose ``accept`` is a no-op (their interface has none): a chain of
#: only these gains nothing from a prompt's history, so ``accept_history`` skips copying it.
_NO_ACCEPT_STAGES = frozenset({"greedy", "top_k", "top_p", "min_p", "typical", "temp",
                               "temp_ext", "xtc", "top_n_sigma", "mirostat", "mirostat_v2",
                               "infill"})


# Out-parameters of lk_sampler_sample_piece, allocated once per thread and module: a cffi
# allocation per generated token would cost more than the call saves.
_PIECE_CAP = 256
logger = logging.getLogger("llamakit.sampling")
_local = threading.local()


class _Scratch:
    __slots__ = ("is_eog", "n_piece", "piece")

    def __init__(self, ffi: Any) -> None:
        self.is_eog = ffi.new("bool[1]")
        self.piece = ffi.new("char[]", _PIECE_CAP)
        self.n_piece = ffi.new("int32_t[1]")


def _scratch(ffi: Any) -> _Scratch:
    cache: dict[Any, _Scratch] | None = getattr(_local, "scratch", None)
    if cache is None:
        cache = _local.scratch = {}
    found = cache.get(ffi)
    if found is None:
        found = cache[ffi] = _Scratch(ffi)
    return found


def sample_piece_at(sampler: SamplerHandle, chain: Any, ctx: Any, index: int, top_k: int,
                    special: bool, out: _Scratch) -> tuple[int, bool, bytes]:
    """``SamplerHandle.sample_piece`` on pointers the caller holds pinned (``chain`` of
    ``sampler``, ``ctx``), with out-parameters ``out`` and the fast-path promise
    ``top_k`` (``sampler._promise``)."""
    token = int(sampler.lib.lk_sampler_sample_piece(chain, ctx, index, top_k, special,
                                                    out.is_eog, out.piece, _PIECE_CAP,
                                                    out.n_piece))
    if token < 0:
        sampler._raise(token)
    n = out.n_piece[0]
    piece = sampler.ffi.unpack(out.piece, n) if n >= 0 else sampler.model.piece(token, special)
    return token, bool(out.is_eog[0]), piece


class SamplerHandle(Handle):
    """A ``llama_sampler`` chain over a model's vocabulary."""

    kind = "sampler"

    def __init__(self, model: ModelHandle, ptr: Any, names: Sequence[str] = ()) -> None:
        # lk_sampler_free: llama_sampler_free, and a chain attached for backend sampling
        # stops being looked up (its device copy stays attached until detached)
        super().__init__(model.native, ptr, model.native.lib.lk_sampler_free)
        self.model = model
        self.names = list(names)
        #: k of a first top-k stage (0: none): lets the shim skip writing all n_vocab
        #: candidates (``lk_sampler_sample``).
        self.first_top_k = 0
        #: False forces the shim's slow path (the whole chain over all n_vocab candidates):
        #: tests compare the two.
        self.fast_paths = True
        self._bias_prefix = not self.names  # only logit_bias stages so far
        #: whether some stage may accept tokens (unknown stages of a clone count as such)
        self.takes_history = bool(self.names)
        model.add_dependent(self)

    @classmethod
    @pinned
    def new(cls, model: ModelHandle) -> SamplerHandle:
        """An empty chain (add stages with ``add``/``add_python``)."""
        model.check_open()
        lib = model.lib
        params = lib.llama_sampler_chain_default_params()
        params.no_perf = False
        return cls(model, lib.llama_sampler_chain_init(params))

    @pinned
    def add(self, name: str, params: Params) -> None:
        """Append the native stage ``name`` (a key of ``NATIVE_STAGES``)."""
        builder = NATIVE_STAGES.get(name)
        if builder is None:
            raise SamplerError(f"unknown sampler stage {name!r}; native stages are "
                               f"{', '.join(sorted(NATIVE_STAGES))}")
        self.check_open()
        self.model.check_open()
        stage = builder(self.native, self.model, params)
        if stage == self.ffi.NULL:
            raise SamplerError(f"llama.cpp could not create the {name!r} sampler")
        self.lib.llama_sampler_chain_add(self.ptr, stage)  # the chain owns it from here on
        if self._bias_prefix and name == "top_k":
            self.first_top_k = int(params["k"])
        self._bias_prefix = self._bias_prefix and name == "logit_bias"
        self.takes_history = self.takes_history or name not in _NO_ACCEPT_STAGES
        self.names.append(name)

    @pinned
    def add_python(self, sampler: Any, name: str) -> None:
        """Append a stage that calls the Python object ``sampler`` (see ``Sampler``)."""
        self.check_open()
        stage = new_python_stage(self.native, sampler, name)
        self.lib.llama_sampler_chain_add(self.ptr, stage)
        self._bias_prefix = False
        self.takes_history = True
        self.names.append(name)

    # -- using the chain ---------------------------------------------------------------------
    def _raise(self, status: int) -> None:
        if status == self.lib.LK_SAMPLE_PYTHON:
            raise take_error()
        raise_for_sample(status, self.ffi.string(self.lib.lk_last_error()).decode(
            "utf-8", "replace"))

    @property
    def _promise(self) -> int:
        return self.first_top_k if self.fast_paths else -1

    @pinned
    def sample(self, context: ContextHandle, index: int = -1) -> int:
        """Sample from output ``index`` of the last decode and accept the token."""
        token = int(self.lib.lk_sampler_sample(self.ptr, context.ptr, index, self._promise))
        if token < 0:
            self._raise(token)
        return token

    @pinned
    def sample_piece(self, context: ContextHandle, index: int = -1,
                     special: bool = False) -> tuple[int, bool, bytes]:
        """``sample``, plus the token's end-of-generation flag and its text piece
        (``token_to_piece`` with ``special``), in one native call."""
        return sample_piece_at(self, self.ptr, context.ptr, index, self._promise, special,
                               _scratch(self.ffi))

    @pinned
    def sample_logits(self, logits: npt.NDArray[np.float32]) -> int:
        """Sample from these logits (ids 0..n_vocab-1) as ``sample`` does from a context's,
        fast paths included, and accept the token."""
        self.check_open()
        values = np.ascontiguousarray(logits, dtype=np.float32)
        if values.shape != (self.model.n_vocab,):
            raise SamplerError(f"logits must have shape ({self.model.n_vocab},), "
                               f"got {values.shape}")
        pointer = self.ffi.cast("const float *", self.ffi.from_buffer(values))
        token = int(self.lib.lk_sampler_sample_logits(self.ptr, pointer, values.size,
                                                      self._promise))
        if token < 0:
            self._raise(token)
        return token

    @pinned
    def accept(self, token: int) -> None:
        status = self.lib.lk_sampler_accept(self.ptr, self.model.check_token(token))
        if status != 0:
            self._raise(status)

    @pinned
    def accept_history(self, tokens: Sequence[int]) -> None:
        """Accept valid ``tokens`` into every stage but grammars (a prompt's tokens)."""
        if not tokens or not self.takes_history:
            return
        array = self.ffi.new("llama_token[]", tokens)
        status = self.lib.lk_sampler_accept_history(self.ptr, array, len(tokens))
        if status != 0:
            self._raise(status)

    @pinned
    def reset(self) -> None:
        status = self.lib.lk_sampler_reset(self.ptr)
        if status != 0:
            self._raise(status)

    @pinned
    def clone(self) -> SamplerHandle:
        ptr = self.lib.lk_sampler_clone(self.ptr)
        if ptr == self.ffi.NULL:
            if self.ffi.string(self.lib.lk_last_error()) == b"python":
                raise take_error()
            self._raise(self.lib.LK_SAMPLE_FAILED)
        clone = SamplerHandle(self.model, ptr, self.names)
        clone.first_top_k, clone.fast_paths = self.first_top_k, self.fast_paths
        clone._bias_prefix = self._bias_prefix
        clone.takes_history = self.takes_history
        return clone

    @pinned
    def apply(self, logits: npt.NDArray[np.float32]) -> Candidates:
        """Run the chain over candidates with these logits (ids 0..n_vocab-1), accepting
        nothing; the candidates as the chain leaves them."""
        self.check_open()
        values = np.ascontiguousarray(logits, dtype=np.float32)
        if values.shape != (self.model.n_vocab,):
            raise SamplerError(f"logits must have shape ({self.model.n_vocab},), "
                               f"got {values.shape}")
        data = np.zeros(values.size, dtype=TOKEN_DATA)
        data["id"] = np.arange(values.size, dtype=np.int32)
        data["logit"] = values
        ffi = self.ffi
        array = ffi.new("llama_token_data_array *")
        array.data = ffi.cast("llama_token_data *", ffi.from_buffer(data))
        array.size, array.selected, array.sorted = values.size, -1, False
        base = int(ffi.cast("uintptr_t", array.data))
        status = self.lib.lk_sampler_apply(self.ptr, array)
        if status != 0:
            self._raise(status)
        # Stages may move the start of the array forward (XTC drops the top choices so).
        start = (int(ffi.cast("uintptr_t", array.data)) - base) // TOKEN_DATA.itemsize
        return Candidates(data[start:start + int(array.size)].copy(),
                          selected=int(array.selected), sorted=bool(array.sorted))

    @pinned
    def seed(self) -> int:
        return int(self.lib.llama_sampler_get_seed(self.ptr))

    @pinned
    def stage_names(self) -> list[str]:
        """llama.cpp's name of each stage (``"?top-k"`` marks a stage that does nothing)."""
        lib, ptr = self.lib, self.ptr
        return [self.ffi.string(lib.llama_sampler_name(lib.llama_sampler_chain_get(ptr, i)))
                .decode() for i in range(lib.llama_sampler_chain_n(ptr))]

    @pinned
    def perf(self) -> dict[str, float]:
        data = self.lib.llama_perf_sampler(self.ptr)
        return {"t_sample_ms": data.t_sample_ms, "n_sample": data.n_sample}


@pinned
def sample_many(context: ContextHandle, items: Sequence[tuple[SamplerHandle, int]],
                special: bool = False, n_threads: int | None = 1) -> list[tuple[int, bool, bytes]]:
    """Sample every ``(chain, output index)`` of one decode in one native call: for each,
    the accepted token, its end-of-generation flag and its text piece (``token_to_piece``
    with ``special``), in order. ``n_threads`` > 1 (``None``: the context's ``n_threads``)
    lets the shim sample the chains on that many threads, with the same results.
    If chains fail, the first failing one's error is raised; the chains before it have
    accepted their tokens, and on several threads some after it may have too."""
    if not items:
        return []
    handles = [handle for handle, _ in items]
    for handle in handles:
        if handle.native is not context.native:
            raise SamplerError("every sampler chain must belong to the context's backend")
    ffi, lib = context.ffi, context.lib
    n = len(items)
    idxs = ffi.new("int32_t[]", [int(index) for _, index in items])
    promises = ffi.new("int32_t[]", [handle._promise for handle in handles])
    tokens = ffi.new("llama_token[]", n)
    eog = ffi.new("bool[]", n)
    capacity = max(_PIECE_CAP, 32 * n)
    pieces = ffi.new("char[]", capacity)
    lengths = ffi.new("int32_t[]", n)
    # The chains (the decorator pins the context), each once; _begin_call/_end_call
    # straight, as @pinned does (an ExitStack of 64 pins cost more than the sampling).
    unique = list({id(h): h for h in handles}.values())
    held: list[SamplerHandle] = []
    try:
        for chain_handle in unique:
            chain_handle._begin_call()
            held.append(chain_handle)
        chains = ffi.new("struct llama_sampler *[]", [handle.ptr for handle in handles])
        threads = 0 if n_threads is None else max(1, int(n_threads))
        done = lib.lk_sampler_sample_many(chains, idxs, promises, n, context.ptr, special,
                                          tokens, eog, pieces, capacity, lengths, threads)
        if done < n:
            handles[done]._raise(int(tokens[done]))
        buffer = ffi.buffer(pieces, capacity)
        result: list[tuple[int, bool, bytes]] = []
        offset = 0
        for i in range(n):
            token, length = int(tokens[i]), int(lengths[i])
            if length >= 0:
                piece = buffer[offset:offset + length]
                offset += length
            else:  # did not fit the buffer
                piece = handles[i].model.piece(token, special)
            result.append((token, bool(eog[i]), piece))
        return result
    finally:
        for chain_handle in reversed(held):
            chain_handle._end_call()


@pinned
def attach_backend(context: ContextHandle, seq_id: int, sampler: SamplerHandle,
                   key: str | None = None) -> bool:
    """Backend sampling: llama.cpp samples ``seq_id``'s outputs inside the decode's graph
    with a device copy of ``sampler``'s chain (``lk_backend_sampler_attach``), and sampling
    with ``sampler`` on ``context`` returns those tokens. False, with nothing attached, when
    llama.cpp cannot run the chain in a graph. Detach with ``detach_backend``. ``key``
    (the chain's settings, see ``park_backend``): when the sequence's parked copy has the
    same, ``sampler``'s state goes into that copy (``lk_backend_sampler_rebind``) instead
    of a new one, which spares llama.cpp re-reserving its graphs."""
    if sampler.model is not context.model:
        # the device copy works on the context's logits with the chain's vocabulary (a
        # logit-bias id past the context's vocabulary would index outside the graph's row)
        raise SamplerError("the sampler chain must belong to the context's model")
    if not 0 <= seq_id < context.n_seq_max:
        raise SamplerError(f"sequence id {seq_id} is outside 0..{context.n_seq_max - 1}")
    with sampler.pinned() as chain:
        if key is not None and context.parked.get(seq_id) == key and int(
                context.lib.lk_backend_sampler_rebind(context.ptr, seq_id, chain)) == 1:
            del context.parked[seq_id]
            return True
        # Anything but a rebind replaces the copy. Should attaching raise, the parked copy
        # stays parked: the next decode detaches it.
        status = int(context.lib.lk_backend_sampler_attach(context.ptr, seq_id, chain))
    if status < 0:
        sampler._raise(status)
    context.parked.pop(seq_id, None)
    context.backend_samplers = int(context.lib.lk_backend_sampler_count(context.ptr))
    return status == 1


def park_backend(context: ContextHandle, seq_id: int, key: str) -> None:
    """Leave ``seq_id``'s device copy attached after its call (instead of
    ``detach_backend``), for the next ``attach_backend`` with the same ``key`` to reuse.
    The next decode of ``context`` that did not claim it detaches it first
    (``ContextHandle.unpark``), so that no other path finds its outputs without logits.
    The caller still frees its chain: the copy outlives it."""
    context.parked[seq_id] = key


def try_attach_backend(context: ContextHandle, seq_id: int, sampler: SamplerHandle,
                       key: str | None = None) -> bool:
    """``attach_backend``, except that a failure inside llama.cpp (its sampler buffers, a
    device error) is logged and leaves the sequence to host sampling (False), as
    llama.cpp's own callers fall back."""
    try:
        return attach_backend(context, seq_id, sampler, key)
    except SamplerError as error:
        logger.warning("backend sampling unavailable for sequence %d, sampling on the host: "
                       "%s", seq_id, error)
        return False


@pinned
def detach_backend(context: ContextHandle, seq_id: int) -> None:
    """Take back what ``attach_backend`` gave llama.cpp for ``seq_id`` (nothing if none)."""
    context.parked.pop(seq_id, None)
    status = int(context.lib.lk_backend_sampler_detach(context.ptr, seq_id))
    context.backend_samplers = int(context.lib.lk_backend_sampler_count(context.ptr))
    if status < 0:
        raise_for_sample(status, context.ffi.string(context.lib.lk_last_error()).decode(
            "utf-8", "replace"))
