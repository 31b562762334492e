"""``Context`` state save/load (``state_bytes``, ``save_state``, ``load_seq_state``, ...).

Built on ``ContextCore``. Saved states are wrapped in a small container that names the
model they belong to, so a state from another model is refused before llama.cpp sees it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._context_core import ContextCore
from ._errors import StateError
from ._native import memory

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["StateMixin"]

_MAGIC = b"LKSTATE1"
_HEADER = struct.Struct("<8sI")


@lru_cache(maxsize=16)
def _file_fingerprint(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 16))
        handle.seek(max(0, size - (1 << 16)))
        digest.update(handle.read(1 << 16))
    return digest.hexdigest()


def _model_identity(model: Model) -> dict[str, Any]:
    info = model.info
    stat = model.path.stat()
    return {"architecture": info.architecture, "n_vocab": info.n_vocab, "n_embd": info.n_embd,
            "n_layer": info.n_layer, "n_params": info.n_params, "size": info.size,
            "file": _file_fingerprint(str(model.path), stat.st_size, stat.st_mtime_ns)}


def _write_atomic(path: Path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` so that a failure leaves any previous file intact."""
    folder = path.parent
    if not folder.is_dir():
        raise StateError(f"folder {folder} does not exist", path=path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StateMixin(ContextCore):
    """Save and restore the state of a ``Context`` (all of it, or one sequence)."""

    # -- state -----------------------------------------------------------------------------
    def _pack(self, kind: str, seq_id: int | None, payload: bytes,
              tokens: list[int]) -> bytes:
        header = json.dumps({"format": 1, "kind": kind, "seq_id": seq_id,
                             "model": _model_identity(self.model), "tokens": tokens,
                             "size": len(payload),
                             "sha256": hashlib.sha256(payload).hexdigest()}).encode()
        return _HEADER.pack(_MAGIC, len(header)) + header + payload

    def _unpack(self, blob: bytes, kind: str,
                path: Path | None = None) -> tuple[dict[str, Any], memoryview]:
        view = memoryview(blob)
        if len(view) < _HEADER.size:
            raise StateError("state data is truncated (no header)", path=path)
        magic, length = _HEADER.unpack_from(view)
        if magic != _MAGIC:
            raise StateError("not a llamakit state (bad magic)", path=path)
        if _HEADER.size + length > len(view):
            raise StateError("state data is truncated (header)", path=path)
        try:
            header = json.loads(bytes(view[_HEADER.size:_HEADER.size + length]))
        except ValueError as exc:
            raise StateError(f"state header is damaged: {exc}", path=path) from None
        if not isinstance(header, dict) or header.get("format") != 1:
            raise StateError("unsupported state format", path=path)
        if header.get("kind") != kind:
            raise StateError(f"this is a {header.get('kind')} state, not a {kind} state",
                             path=path)
        if header.get("model") != _model_identity(self.model):
            raise StateError("this state was saved from another model", path=path)
        tokens = header.get("tokens")
        if not isinstance(tokens, list):
            raise StateError("state header is damaged: no token list", path=path)
        self.model._handle.check_tokens(tokens)
        payload = view[_HEADER.size + length:]
        if len(payload) != header.get("size"):
            raise StateError(f"state data is truncated: {len(payload)} of {header.get('size')} "
                             "bytes", path=path)
        if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            raise StateError("state data is corrupt (checksum mismatch)", path=path)
        return header, payload

    def state_bytes(self) -> bytes:
        """The whole context state (KV cache of every sequence, outputs) as bytes."""
        with self._lock:
            return self._pack("context", None, memory.get_state(self._handle),
                              self._cache.tokens)

    def set_state(self, data: bytes) -> None:
        """Restore ``state_bytes()`` output; anything that does not fit raises
        ``StateError`` and leaves the context as it was."""
        with self._lock:
            header, payload = self._unpack(bytes(data), "context")
            memory.set_state(self._handle, bytes(payload))
            self._cache.replace(header["tokens"])

    def seq_state_bytes(self, seq_id: int = 0) -> bytes:
        """The state of one sequence as bytes."""
        with self._lock:
            tokens = self._cache.tokens if seq_id == 0 else []
            return self._pack("sequence", seq_id, memory.get_state(self._handle, seq_id),
                              tokens)

    def set_seq_state(self, data: bytes, seq_id: int = 0) -> None:
        """Restore a sequence state (from any sequence id) into ``seq_id``."""
        with self._lock:
            header, payload = self._unpack(bytes(data), "sequence")
            memory.set_state(self._handle, bytes(payload), seq_id)
            if seq_id == 0:
                self._cache.replace(header["tokens"])

    def save_state(self, path: str | os.PathLike[str]) -> None:
        """Write ``state_bytes()`` to ``path`` atomically."""
        _write_atomic(Path(path), self.state_bytes())

    def load_state(self, path: str | os.PathLike[str]) -> None:
        """Restore a state written by ``save_state``."""
        try:
            self.set_state(self._read(Path(path)))
        except StateError as exc:
            exc.path = Path(path)
            raise

    def save_seq_state(self, path: str | os.PathLike[str], seq_id: int = 0) -> None:
        """Write one sequence's state to ``path`` atomically."""
        _write_atomic(Path(path), self.seq_state_bytes(seq_id))

    def load_seq_state(self, path: str | os.PathLike[str], seq_id: int = 0) -> None:
        """Restore a sequence state written by ``save_seq_state`` into ``seq_id``."""
        self.set_seq_state(self._read(Path(path)), seq_id)

    @staticmethod
    def _read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise StateError(f"cannot read state file {path}: {exc}", path=path) from exc
