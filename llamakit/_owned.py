"""``Owned``: the lifecycle every public object over one native handle shares."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

__all__ = ["Owned"]


class _Closable(Protocol):
    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...


class Owned:
    """``close()``, ``closed`` and the ``with`` block of an object that owns ``_handle``
    (``Model``, ``Context``, ``LoraAdapter``, ``SamplerChain``). The handle does the work:
    closing is idempotent and closes what depends on it first."""

    _handle: _Closable

    def close(self) -> None:
        """Free it and everything made from it; a second call does nothing."""
        self._handle.close()

    @property
    def closed(self) -> bool:
        return self._handle.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
