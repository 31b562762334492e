"""``llamakit.quantize``: llama.cpp's quantizer with checked inputs and atomic output."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ConfigError, PluginError, QuantizeError, QuantizeFileError
from .._native.lib import NativeLib
from .._native.quantize import GgmlType, QuantizeParams, ggml_types, model_quantize, split_path
from .._progress import ProgressBar, progress_bar, resolve_mode
from .catalog import COPY, QuantizationType, catalog, resolve_ftype, resolve_ggml_type
from .checks import check_destination, check_plan, parse_tensor_types, read_source
from .gguf_header import GgufHeader, read_header
from .imatrix import Imatrix, load_imatrix
from .plan import QuantizationRecipe, QuantizePlan, TensorInfo
from .progress import ProgressCallback, TensorLog
from .sizes import predict_sizes, tensor_bytes

__all__ = ["QuantizeResult", "quantization_recipes", "quantization_types", "quantize"]


@dataclass(frozen=True)
class QuantizeResult:
    """What ``quantize`` did (or, for a dry run, would do)."""

    src: Path
    """The source given to ``quantize`` (a recipe's rewritten source is gone by now)."""
    dst: Path | None
    """The output file (the first shard with ``keep_split``); None for a dry run."""
    files: tuple[Path, ...]
    """Every file written: one, or one per shard with ``keep_split``."""
    ftype: str
    recipe: str | None
    dry_run: bool
    nthread: int
    n_tensors: int
    n_params: int
    src_size: int
    """Bytes of the file(s) quantized (the recipe's rewritten source, if any)."""
    size: int
    """Bytes of the output file(s): measured, or predicted exactly for a dry run."""
    tensor_bytes: int
    """Bytes of tensor data in the output (llama.cpp's "quant size")."""
    tensor_types: Mapping[str, str]
    """The ggml type of each tensor in the output."""
    elapsed_s: float

    @property
    def bits_per_weight(self) -> float:
        """Tensor data bits per parameter, as llama.cpp's quantizer reports "BPW"."""
        return 8.0 * self.tensor_bytes / self.n_params if self.n_params else 0.0


def _resolve(backend: str | None) -> NativeLib:
    from .._backends import resolve_backend

    return resolve_backend(backend)


def quantization_types(backend: str | None = "cpu") -> list[QuantizationType]:
    """Every file type the pinned llama.cpp's quantizer offers, in ``llama_ftype`` order."""
    return list(catalog(_resolve(backend)).values())


def quantization_recipes() -> dict[str, QuantizationRecipe]:
    """The recipes plugins registered (``llamakit_register_quantizers``), by name."""
    from .._plugins.manager import get_plugin_host

    return {name: entry.recipe for name, entry in get_plugin_host().quantizers().items()}


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise QuantizeError(f"{name} must be True or False, got {value!r}")
    return value


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _tensors(headers: Sequence[GgufHeader], types: Mapping[str, GgmlType],
             path: Path) -> tuple[TensorInfo, ...]:
    by_id = {t.id: t for t in types.values()}
    found = []
    for header in headers:
        for tensor in header.tensors:
            ggml = by_id.get(tensor.type)
            if ggml is None or tensor.shape[0] % ggml.blck_size:
                raise QuantizeError(f"source {path}: tensor {tensor.name} has a type (id "
                                    f"{tensor.type}) or shape this llama.cpp cannot read",
                                    path=path)
            found.append(TensorInfo(tensor.name, tensor.shape, ggml.name,
                                    tensor_bytes(tensor.shape, ggml)))
    return tuple(found)


def _metadata(header: GgufHeader) -> dict[str, Any]:
    return {kv.key: kv.value for kv in header.kvs
            if isinstance(kv.value, (str, int, float, bool))}


def _n_split(headers: Sequence[GgufHeader], keep_split: bool) -> int:
    """Files the quantizer writes: one per source shard up to the last holding tensors."""
    return max(i for i, h in enumerate(headers) if h.tensors) + 1 if keep_split else 1


def _outputs(native: NativeLib, dst: Path, n_split: int) -> list[Path]:
    if n_split == 1:
        return [dst]
    prefix = str(dst)[:-len(".gguf")] if dst.name.endswith(".gguf") else str(dst)
    return [Path(split_path(native, prefix, i, n_split)) for i in range(n_split)]


def _apply_recipe(name: object, plan: QuantizePlan) -> QuantizePlan:
    from .._plugins.manager import get_plugin_host

    recipes = get_plugin_host().quantizers()
    entry = recipes.get(name) if isinstance(name, str) else None
    if entry is None:
        known = ", ".join(sorted(recipes)) or "none are installed"
        raise QuantizeError(f"unknown quantization recipe {name!r} (known: {known})")
    try:
        changed = entry.recipe.prepare(plan)
    except QuantizeError:
        raise
    except Exception as exc:
        raise PluginError(f"recipe {name!r} of plugin {entry.plugin!r} failed: {exc}",
                          plugin=entry.plugin) from exc
    if not isinstance(changed, QuantizePlan):
        raise PluginError(f"recipe {name!r} of plugin {entry.plugin!r} returned "
                          f"{type(changed).__name__}, not a QuantizePlan", plugin=entry.plugin)
    return changed


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[list[int]]:
    """Hold Ctrl-C until llama.cpp returns: it cannot be stopped half-way, and an
    exception raised inside its log callback would be lost."""
    hits: list[int] = []
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield hits
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: hits.append(signum))
    try:
        yield hits
    finally:
        signal.signal(signal.SIGINT, previous)


def _progress_callback(progress: object, label: str) -> tuple[ProgressCallback | None,
                                                               ProgressBar | None]:
    if callable(progress):
        return progress, None
    try:
        mode = resolve_mode(progress)
    except ConfigError as exc:
        raise QuantizeError(str(exc)) from None
    bar = progress_bar(mode, label)
    return bar, bar


def _resolve_plan_types(native: NativeLib, plan: QuantizePlan) -> QuantizePlan:
    """Canonical ggml type names in the plan; ``QuantizeError`` for unknown ones."""
    def canon(name: str | None, what: str) -> str | None:
        return None if name is None else resolve_ggml_type(native, name, what).name

    pairs = parse_tensor_types(plan.tensor_types)
    return plan.replace(
        output_tensor_type=canon(plan.output_tensor_type, "output_tensor_type"),
        token_embedding_type=canon(plan.token_embedding_type, "token_embedding_type"),
        tensor_types=tuple((p, resolve_ggml_type(native, t, f"tensor_types[{p!r}]").name)
                           for p, t in pairs))


def quantize(src: str | os.PathLike[str], dst: str | os.PathLike[str] | None,
             ftype: str = "Q4_K_M", *, nthread: int | None = None,
             allow_requantize: bool = False, quantize_output_tensor: bool = True,
             output_tensor_type: str | None = None, token_embedding_type: str | None = None,
             pure: bool = False, keep_split: bool = False,
             imatrix: str | os.PathLike[str] | Mapping[str, Any] | None = None,
             tensor_types: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
             dry_run: bool = False, progress: bool | str | ProgressCallback | None = None,
             recipe: str | None = None, backend: str | None = "cpu") -> QuantizeResult:
    """Quantize the GGUF model ``src`` to ``ftype``, writing ``dst`` atomically.

    ``ftype`` is one of ``quantization_types()`` (``"Q4_K_M"``, ``"Q8_0"``, ...; any case;
    llama-quantize's ``Q4_K``-style aliases and ``"COPY"`` too). The options are those of
    llama.cpp's ``llama-quantize``: ``output_tensor_type``/``token_embedding_type`` and the
    values of ``tensor_types`` (``{regex: type}``, first match wins) are ggml types such as
    ``"q8_0"``; ``imatrix`` is a file written by llama-imatrix (GGUF or ``.dat``) or a
    ``{tensor name: values}`` mapping. ``keep_split`` writes one output per shard of a split
    source (``dst`` then names the prefix). ``dry_run`` writes nothing and predicts the
    output's exact size (``dst`` may be None). ``recipe`` names a registered recipe that
    may change the plan first. ``progress`` (default: the ``[ui] progress`` setting, "auto")
    draws a bar on stderr: ``True``/``"auto"`` when it is a terminal, ``"always"``,
    ``False``/``"never"``; a callable gets ``(tensors_done, n_tensors, name)`` instead.
    ``nthread`` defaults to the CPUs this process may use.

    The output appears only when complete: llama.cpp writes a temporary file in the
    destination folder, renamed over ``dst`` at the end. Bad inputs (unknown type, missing
    or non-GGUF source, ``dst`` equal to ``src``, missing destination folder, ...) raise
    ``QuantizeError`` before any work; so does a failure of llama.cpp's quantizer.
    """
    started = time.perf_counter()
    flags = {name: _flag(name, value) for name, value in (
        ("allow_requantize", allow_requantize), ("quantize_output_tensor", quantize_output_tensor),
        ("pure", pure), ("keep_split", keep_split), ("dry_run", dry_run))}
    if nthread is None:
        nthread = _default_threads()
    elif isinstance(nthread, bool) or not isinstance(nthread, int) or nthread < 1:
        raise QuantizeError(f"nthread must be an integer >= 1, got {nthread!r}")
    src_path, headers = read_source(src)
    given_src = src_path
    if dst is None and not dry_run:
        raise QuantizeError("dst is needed unless dry_run=True")
    dst_path = Path(os.fspath(dst)) if dst is not None else None
    if dst_path is not None:  # before the backend loads: a wrong path fails fast
        check_destination([dst_path], [h.path for h in headers])
    on_tensor, bar = _progress_callback(progress, f"quantizing {src_path.name}")
    native = _resolve(backend)
    types = ggml_types(native)
    qtype = resolve_ftype(native, ftype)
    tensors = _tensors(headers, types, src_path)
    loaded_imatrix: Imatrix | None = load_imatrix(imatrix) if imatrix is not None else None
    try:
        workdir = Path(tempfile.mkdtemp(prefix=".llamakit-quantize-",
                                        dir=dst_path.parent if dst_path is not None else None))
    except OSError as exc:
        raise QuantizeFileError(f"cannot write next to {dst_path}: {exc.strerror or exc} (the "
                                "output is written to a temporary file in its folder first)",
                                path=dst_path, cause=exc) from exc
    try:
        plan = QuantizePlan(
            src=src_path, ftype=COPY if qtype is None else qtype.name, tensors=tensors,
            metadata=_metadata(headers[0]), tensor_types=parse_tensor_types(tensor_types),
            output_tensor_type=output_tensor_type, token_embedding_type=token_embedding_type,
            quantize_output_tensor=flags["quantize_output_tensor"],
            allow_requantize=flags["allow_requantize"], pure=flags["pure"], workdir=workdir)
        plan = _resolve_plan_types(native, plan)
        if recipe is not None:
            plan = _resolve_plan_types(native, _apply_recipe(recipe, plan))
            if plan.src != src_path:
                src_path, headers = read_source(plan.src)
                tensors = _tensors(headers, types, src_path)
                plan = plan.replace(src=src_path, tensors=tensors)
            qtype = resolve_ftype(native, plan.ftype)
            plan = plan.replace(ftype=COPY if qtype is None else qtype.name)
        n_split = _n_split(headers, flags["keep_split"])
        outputs = _outputs(native, dst_path, n_split) if dst_path is not None else []
        check_destination(outputs, [h.path for h in headers])
        if qtype is not None:
            check_plan(plan, types[qtype.ggml_type], types, loaded_imatrix)
        keep_split_on = n_split > 1
        overrides = loaded_imatrix.kv_overrides() if loaded_imatrix is not None else []
        params = QuantizeParams(
            ftype=qtype.ftype if qtype is not None else catalog(native)["F32"].ftype,
            nthread=nthread, output_tensor_type=plan.output_tensor_type,
            token_embedding_type=plan.token_embedding_type,
            allow_requantize=plan.allow_requantize,
            quantize_output_tensor=plan.quantize_output_tensor, only_copy=qtype is None,
            pure=plan.pure, keep_split=keep_split_on, dry_run=flags["dry_run"],
            imatrix=loaded_imatrix.entries if loaded_imatrix is not None else None,
            kv_overrides=overrides, tensor_types=plan.tensor_types)
        temporary = workdir / ("out" if keep_split_on else "out.gguf")
        log = TensorLog(on_tensor)
        try:
            with _deferred_interrupt() as interrupted, native.log_listener(log):
                model_quantize(native, str(src_path), str(temporary), params)
        finally:
            if bar is not None:
                bar.close()
        if interrupted:
            raise KeyboardInterrupt
        if log.error is not None:
            raise log.error
        if flags["dry_run"]:
            targets = {t.name: types[log.targets.get(t.name, t.type)] for t in tensors}
            sizes = predict_sizes(headers, targets, overrides, keep_split_on)
            files: tuple[Path, ...] = ()
        else:
            written = ([Path(split_path(native, str(temporary), i, n_split))
                        for i in range(n_split)] if keep_split_on else [temporary])
            out_headers = [read_header(path) for path in written]
            by_id = {t.id: t for t in types.values()}
            targets = {t.name: by_id[t.type] for h in out_headers for t in h.tensors}
            sizes = [path.stat().st_size for path in written]
            for path, final in zip(written, outputs, strict=True):
                try:
                    os.replace(path, final)
                except OSError as exc:
                    raise QuantizeFileError(f"cannot write {final}: {exc.strerror or exc}",
                                            path=final, cause=exc) from exc
            files = tuple(outputs)
        src_size = sum(h.path.stat().st_size for h in headers)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return QuantizeResult(
        src=given_src, dst=files[0] if files else None, files=files, ftype=plan.ftype,
        recipe=recipe, dry_run=flags["dry_run"], nthread=nthread, n_tensors=len(tensors),
        n_params=sum(t.n_elements for t in tensors), src_size=src_size, size=sum(sizes),
        tensor_bytes=sum(tensor_bytes(t.shape, targets[t.name]) for t in tensors),
        tensor_types={t.name: targets[t.name].name for t in tensors},
        elapsed_s=time.perf_counter() - started)
