"""Loading a backend's native module and routing its log lines."""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .. import _logging
from .._backend_spec import BackendSpec, DeviceInfo

if TYPE_CHECKING:
    from .._build.variant import BuiltVariant

__all__ = ["NativeLib", "import_native", "loaded_natives"]

# ggml_log_level -> logging level; CONT continues the previous line's level.
_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}


@dataclass
class _LogState:
    level: int = logging.INFO
    pending: list[str] = field(default_factory=list)


@dataclass(eq=False)
class NativeLib:
    """One loaded variant: its cffi ``ffi`` and ``lib`` plus where it came from."""

    backend: str
    module: ModuleType
    variant: BuiltVariant
    # Per thread: llama.cpp builds a line from several calls, and two threads logging at
    # once (two quantizations, say) must not splice each other's pieces.
    _log: threading.local = field(default_factory=threading.local)
    _log_lock: threading.Lock = field(default_factory=threading.Lock)
    # Callbacks that see every whole log line, whatever the threshold (quantization
    # progress reads llama.cpp's INFO lines); a tuple, so the C callback reads it unlocked.
    _listeners: tuple[Callable[[int, str], None], ...] = ()

    @property
    def ffi(self) -> Any:
        return self.module.ffi

    @property
    def lib(self) -> Any:
        return self.module.lib

    def devices(self) -> list[DeviceInfo]:
        """Every device ggml registered in this variant."""
        lib, ffi = self.lib, self.ffi
        found = []
        free, total = ffi.new("size_t *"), ffi.new("size_t *")
        for index in range(lib.ggml_backend_dev_count()):
            dev = lib.ggml_backend_dev_get(index)
            lib.ggml_backend_dev_memory(dev, free, total)
            found.append(DeviceInfo(
                index=index,
                name=ffi.string(lib.ggml_backend_dev_name(dev)).decode(errors="replace"),
                description=ffi.string(lib.ggml_backend_dev_description(dev)).decode(
                    errors="replace"),
                type=_DEVICE_TYPES.get(lib.ggml_backend_dev_type(dev), "other"),  # type: ignore[arg-type]
                memory_free=int(free[0]), memory_total=int(total[0]),
                registry=ffi.string(lib.ggml_backend_reg_name(
                    lib.ggml_backend_dev_backend_reg(dev))).decode(errors="replace")))
        return found

    def max_devices(self) -> int:
        return int(self.lib.llama_max_devices())

    def supports_gpu_offload(self) -> bool:
        return bool(self.lib.llama_supports_gpu_offload())

    def system_info(self) -> str:
        return str(self.ffi.string(self.lib.llama_print_system_info()).decode())

    @contextmanager
    def log_listener(self, callback: Callable[[int, str], None]) -> Iterator[None]:
        """Call ``callback(level, line)`` for each whole log line while in the block.

        Lines from every thread reach it, on the thread that logs them; it must be cheap
        and must not raise.
        """
        with self._log_lock:
            self._listeners = (*self._listeners, callback)
        try:
            yield
        finally:
            with self._log_lock:
                rest = list(self._listeners)
                rest.remove(callback)
                self._listeners = tuple(rest)

    @contextmanager
    def capture_errors(self) -> Iterator[list[str]]:
        """Collect the ERROR lines llama.cpp logs while in the block (the reason behind a
        NULL it returns). Lines of other threads' calls may be collected too."""
        lines: list[str] = []

        def listen(level: int, line: str) -> None:
            if level >= logging.ERROR:
                lines.append(line.strip())

        with self.log_listener(listen):
            yield lines

    def _log_state(self) -> _LogState:
        state: _LogState | None = getattr(self._log, "state", None)
        if state is None:
            state = self._log.state = _LogState()
        return state

    def _on_log(self, level: int, text: bytes) -> None:
        state = self._log_state()
        if level != 5:
            state.level = _LEVELS.get(level, logging.INFO)
        listeners = self._listeners
        if state.level < _logging.threshold() and not listeners:
            return
        state.pending.append(text.decode("utf-8", errors="replace"))
        if not state.pending[-1].endswith("\n"):
            return
        line = "".join(state.pending).rstrip("\n")
        state.pending.clear()
        line_level = state.level
        for listener in listeners:
            listener(line_level, line)
        if line_level >= _logging.threshold():
            _logging.native_logger.log(line_level, "[%s] %s", self.backend, line)


_loaded: dict[str, NativeLib] = {}
_load_lock = threading.Lock()


def _import(variant: BuiltVariant, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, variant.module_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_native(spec: BackendSpec, settings: Mapping[str, Any] | None,
                  variant: Callable[[BackendSpec], BuiltVariant]) -> NativeLib:
    """Import the native module of ``spec`` from the variant ``variant(spec)`` supplies
    (the backend layer finds or builds it: this layer neither builds nor draws).

    ``settings`` (the backend's config table) reach ``spec.before_load`` on the first
    load only: a variant is initialised once per process. The lock is held while
    ``variant`` runs, so two threads never build or import one variant twice.
    """
    with _load_lock:
        native = _loaded.get(spec.name)
        if native is not None:
            return native
        built = variant(spec)
        spec.before_load(settings or {})
        module = _import(built, spec.module_name)
        native = NativeLib(backend=spec.name, module=module, variant=built)
        ffi, lib = module.ffi, module.lib

        @ffi.def_extern(name="lk_py_log")  # type: ignore[untyped-decorator]
        def _log(level: int, text: Any, _user_data: Any) -> None:
            if (level != 5 and _LEVELS.get(level, logging.INFO) < _logging.threshold()
                    and not native._listeners):
                native._log_state().level = _LEVELS.get(level, logging.INFO)
                return
            native._on_log(level, ffi.string(text))

        lib.llama_log_set(lib.lk_py_log, ffi.NULL)
        lib.llama_backend_init()
        _loaded[spec.name] = native
        return native


def loaded_natives() -> dict[str, NativeLib]:
    """The variants imported into this process so far."""
    return dict(_loaded)
