"""Python samplers: the ``Candidates`` they see, the ``Sampler`` protocol they implement and
the ``SamplerSpec`` a plugin registers them with.

A Python sampler is a stage of a native llama.cpp sampler chain: llama.cpp calls it through
its ``llama_sampler_i`` interface, so it can sit between any two native stages. It costs a
Python call per token (and per ``accept``), so it is opt-in: chains without one never call
into Python while sampling.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ._errors import PluginError, SamplerError

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["NATIVE_STAGE_NAMES", "RESERVED_SAMPLER_NAMES", "SEQUENCE_STAGES", "TOKEN_DATA",
           "Candidates", "Sampler", "SamplerSpec", "check_sampler"]

#: The layout of llama.cpp's ``llama_token_data`` (id, logit, p); the handle layer checks
#: it against the compiled struct before it hands any memory to numpy.
TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

#: llama.cpp's own sampler stages, by the names a chain is built from
#: (``SamplerChain.from_stages``); the handle layer has one builder for each.
NATIVE_STAGE_NAMES = frozenset({
    "greedy", "dist", "top_k", "top_p", "min_p", "typical", "temp", "temp_ext", "xtc",
    "top_n_sigma", "mirostat", "mirostat_v2", "penalties", "dry", "adaptive_p",
    "logit_bias", "grammar", "infill"})


def _sequence_stages() -> dict[str, str]:
    names = {"penalties": "penalties", "dry": "dry", "top_n_sigma": "top_n_sigma",
             "top_k": "top_k", "typ_p": "typ_p", "top_p": "top_p", "min_p": "min_p",
             "temperature": "temperature", "xtc": "xtc", "infill": "infill",
             "adaptive_p": "adaptive_p", "nucleus": "top_p", "temp": "temperature",
             "typ": "typ_p", "typical": "typ_p", "typical_p": "typ_p"}
    for name in list(names):
        if "_" in name:  # llama.cpp's CLI accepts "top-k" and "topk" as well
            names.setdefault(name.replace("_", "-"), names[name])
            names.setdefault(name.replace("_", ""), names[name])
    return names


#: The stages of llama.cpp's sampling sequence (``general.sampling.sequence``, ``--samplers``)
#: by every name and alias llama.cpp accepts, each mapped to its canonical name.
SEQUENCE_STAGES: dict[str, str] = _sequence_stages()

#: Names a plugin sampler may not take: a chain or a sequence naming one would be ambiguous.
RESERVED_SAMPLER_NAMES = NATIVE_STAGE_NAMES | frozenset(SEQUENCE_STAGES)


class Candidates:
    """The candidate tokens at one sampling step, as numpy views of llama.cpp's array.

    ``logits`` and ``probs`` are writable views: changing them changes what later stages
    see. ``ids`` is read-only (a wrong id would crash later stages); reorder or drop
    candidates with :meth:`keep`. ``probs`` holds what the previous stages left there
    (llama.cpp fills it only in stages that need it); call :meth:`softmax` for fresh values.
    A stage that picks the token sets ``selected`` (an index into the candidates).
    """

    __slots__ = ("_data", "_size", "selected", "sorted")

    def __init__(self, data: npt.NDArray[np.void], *, selected: int = -1,
                 sorted: bool = False) -> None:
        if data.dtype != TOKEN_DATA or data.ndim != 1:
            raise SamplerError(f"candidates must be a 1-D array of dtype {TOKEN_DATA}")
        self._data = data
        self._size = len(data)
        self.selected = selected
        self.sorted = sorted

    @classmethod
    def from_logits(cls, logits: npt.ArrayLike) -> Candidates:
        """Candidates over a whole vocabulary (ids 0..n-1) with these logits: for testing
        a sampler outside a model."""
        values = np.asarray(logits, dtype=np.float32)
        if values.ndim != 1 or values.size == 0:
            raise SamplerError("logits must be a non-empty 1-D array")
        data = np.zeros(values.size, dtype=TOKEN_DATA)
        data["id"] = np.arange(values.size, dtype=np.int32)
        data["logit"] = values
        return cls(data)

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"<Candidates size={self._size} selected={self.selected} sorted={self.sorted}>"

    @property
    def ids(self) -> npt.NDArray[np.int32]:
        view: npt.NDArray[np.int32] = self._data["id"][:self._size]
        view.flags.writeable = False
        return view

    @property
    def logits(self) -> npt.NDArray[np.float32]:
        view: npt.NDArray[np.float32] = self._data["logit"][:self._size]
        return view

    @property
    def probs(self) -> npt.NDArray[np.float32]:
        view: npt.NDArray[np.float32] = self._data["p"][:self._size]
        return view

    @property
    def selected_token(self) -> int | None:
        """The id of the selected candidate, or None before a stage selects one."""
        if 0 <= self.selected < self._size:
            return int(self._data["id"][self.selected])
        return None

    def keep(self, indices: Sequence[int] | npt.NDArray[np.integer[Any]]) -> None:
        """Keep only the candidates at ``indices`` (positions, not token ids), in that
        order: filters, truncates or reorders. Clears ``selected``."""
        order = np.asarray(indices)
        if order.ndim != 1 or order.size == 0 or order.dtype.kind not in "iu":
            raise SamplerError("keep() takes a non-empty 1-D sequence of integer positions")
        if int(order.min()) < 0 or int(order.max()) >= self._size:
            raise SamplerError(f"keep(): positions must be in 0..{self._size - 1}")
        if np.unique(order).size != order.size:
            raise SamplerError("keep(): positions must not repeat")
        self._data[:order.size] = self._data[order]  # fancy indexing copies first
        self._size = int(order.size)
        self.selected = -1
        self.sorted = False

    def softmax(self) -> None:
        """Set ``probs`` to the softmax of ``logits`` (``-inf`` logits get 0)."""
        logits = self.logits.astype(np.float64)
        top = np.max(logits)
        if not np.isfinite(top):
            self.probs[:] = 1.0 / self._size
            return
        weights = np.exp(logits - top)
        self.probs[:] = weights / weights.sum()

    def _result(self) -> tuple[int, int, bool]:
        """``(size, selected, sorted)`` to write back into llama.cpp's array, validated."""
        selected = self.selected
        if isinstance(selected, bool) or not isinstance(selected, (int, np.integer)) \
                or not -1 <= selected < self._size:
            raise SamplerError(f"Candidates.selected must be -1 or an index in "
                               f"0..{self._size - 1}, got {selected!r}")
        return self._size, int(selected), bool(self.sorted)


@runtime_checkable
class Sampler(Protocol):
    """What a Python sampler stage implements.

    ``apply`` changes the candidates (logits, probabilities, which are kept, which is
    selected). ``accept`` sees each token that becomes part of the text: the prompt's tokens
    at the start of a generation, then each generated token. ``reset`` starts over. A
    sampler that ``SamplerChain.clone`` should copy may define ``clone()``; otherwise it is
    deep-copied. ``accept`` and ``reset`` may be left out (then they cost nothing per token).
    A ``name`` attribute, if any, names the stage in ``SamplerChain.stages``.
    """

    def apply(self, candidates: Candidates) -> None: ...

    def accept(self, token: int) -> None: ...

    def reset(self) -> None: ...


def check_sampler(sampler: object) -> None:
    """Raise ``SamplerError`` unless ``sampler`` has a callable ``apply``."""
    if not callable(getattr(sampler, "apply", None)):
        raise SamplerError(f"{sampler!r} is not a sampler: it needs an apply(candidates) "
                           "method (see llamakit.Sampler)")
    for name in ("accept", "reset", "clone"):
        method = getattr(sampler, name, None)
        if method is not None and not callable(method):
            raise SamplerError(f"{sampler!r}.{name} is not callable")


@dataclass(frozen=True)
class SamplerSpec:
    """A named Python sampler, registered by a plugin through ``llamakit_register_samplers``.

    ``factory(model, **params)`` returns a new :class:`Sampler` for one chain; ``params``
    are what a chain (``SamplerChain.add(name, **params)``), the ``samplers=`` keyword or
    the ``[sampling]`` config give for that stage.
    """

    name: str
    factory: Callable[..., Sampler]
    description: str = ""
    plugin: str | None = None
    """Set by llamakit to the registering plugin's name."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise PluginError(f"sampler name {self.name!r} must be lower-case letters, digits "
                              "and '_', starting with a letter", plugin=self.plugin)
        if not callable(self.factory):
            raise PluginError(f"sampler {self.name!r}: factory must be callable",
                              plugin=self.plugin)

    def create(self, model: Model, params: dict[str, Any]) -> Sampler:
        """Call the factory; its failures name the sampler and the plugin."""
        try:
            sampler = self.factory(model, **params)
        except (TypeError, ValueError) as exc:
            raise SamplerError(f"sampler {self.name!r} (plugin {self.plugin!r}) rejected its "
                               f"parameters {params!r}: {exc}") from exc
        check_sampler(sampler)
        return sampler
