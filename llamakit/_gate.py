"""``ContextGate``: who may use a context now, with streams that pause between pieces.

A context's calls are serialised by a reentrant lock. A stream (``Context.stream``,
``stream_batch``, ``generate``'s own loop) owns the context's prompt cache from its first
piece to its end, but it must not hold the lock while it is suspended between two
pieces: a stream left half read by a thread that has since ended would block every other
thread forever, and another stream started on the same thread would walk over its cache.
So a stream holds the lock only while it computes a piece and is otherwise registered
as the context's *open stream*; a call that finds one:

* waits for it, when another live thread is reading it (the usual hand-over between
  threads, as before);
* takes the context over, when the thread that last read it has ended; the abandoned
  stream raises ``ContextBusyError`` if anyone resumes it;
* raises ``ContextBusyError`` at once, when the open stream belongs to the calling thread
  (two interleaved streams on one context): waiting would never end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TypeVar

from ._errors import ContextBusyError

__all__ = ["ContextGate", "StreamTurn"]

# How often a waiting call checks whether the thread of the open stream is still alive.
_LIVENESS_POLL_S = 0.05

T = TypeVar("T")


class StreamTurn:
    """One stream's registration at a gate (``with gate.stream() as turn``)."""

    __slots__ = ("abandoned", "gate", "held", "running", "thread")

    def __init__(self, gate: ContextGate) -> None:
        self.gate = gate
        self.thread = threading.current_thread()
        self.running = False  # computing a piece (then it holds the gate's lock)
        self.held = False
        self.abandoned = False

    def __enter__(self) -> StreamTurn:
        self.gate._open(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.gate._close(self)

    def paused(self) -> _Pause:
        """``with turn.paused(): yield piece`` lets other threads in while suspended."""
        return _Pause(self)

    def relay(self, items: Iterator[T]) -> Iterator[T]:
        """``yield from turn.relay(gen)``: each item of ``gen`` yielded while paused."""
        for item in items:
            with self.paused():
                yield item


class _Pause:
    __slots__ = ("turn",)

    def __init__(self, turn: StreamTurn) -> None:
        self.turn = turn

    def __enter__(self) -> None:
        self.turn.gate._pause(self.turn)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # Resumed normally, or closed while suspended (GeneratorExit, maybe from the
        # garbage collector on any thread): take the lock back so that the stream's
        # clean-up runs under it too. An abandoned stream must not touch the context
        # again: resuming it raises, closing it only lets its own objects go.
        if exc_type is None:
            self.turn.gate._resume(self.turn)
        elif not self.turn.abandoned:
            self.turn.gate._reenter(self.turn)


class ContextGate:
    """The lock of one context, aware of its open stream (see the module docstring)."""

    def __init__(self, on_takeover: Callable[[], None] | None = None) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._open_stream: StreamTurn | None = None
        #: Called (holding the lock, in the taking thread) when a call takes the context
        #: over from an abandoned stream: what that stream left set on the context and
        #: would have undone at its end (a backend-sampling chain) is undone here.
        self.on_takeover = on_takeover

    # -- ordinary calls: ``with gate:`` ------------------------------------------------------
    def __enter__(self) -> ContextGate:
        self._cond.acquire()
        try:
            self._wait(None)
        except BaseException:
            self._cond.release()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._cond.release()

    def stream(self) -> StreamTurn:
        return StreamTurn(self)

    # -- internals, with the lock held -------------------------------------------------------
    def _wait(self, newcomer: StreamTurn | None) -> None:
        while True:
            active = self._open_stream
            if active is None:
                return
            if active.running and newcomer is None:
                return  # a call made by the stream's own piece (same thread: we hold the lock)
            current = threading.current_thread()
            if active.running or active.thread is current:
                raise ContextBusyError(
                    "this context has an unfinished stream on this thread; read it to the "
                    "end or close() it before starting another call on the context (or "
                    "use a second context)")
            if not active.thread.is_alive():
                active.abandoned = True
                self._open_stream = None
                if self.on_takeover is not None:
                    self.on_takeover()
                return
            self._cond.wait(_LIVENESS_POLL_S)

    def _open(self, turn: StreamTurn) -> None:
        self._cond.acquire()
        try:
            self._wait(turn)
        except BaseException:
            self._cond.release()
            raise
        self._open_stream = turn
        turn.running = turn.held = True

    def _pause(self, turn: StreamTurn) -> None:
        turn.running = False
        turn.thread = threading.current_thread()
        turn.held = False
        self._cond.release()

    def _resume(self, turn: StreamTurn) -> None:
        self._cond.acquire()
        if turn.abandoned:
            self._cond.release()
            raise ContextBusyError(
                "this stream was abandoned: the thread that read it ended and another "
                "thread's call took the context over")
        turn.thread = threading.current_thread()
        turn.running = turn.held = True

    def _reenter(self, turn: StreamTurn) -> None:
        self._cond.acquire()
        turn.running = turn.held = True

    def _close(self, turn: StreamTurn) -> None:
        if not turn.held:
            if turn.abandoned:
                return
            self._cond.acquire()
        try:
            turn.running = turn.held = False
            if self._open_stream is turn:
                self._open_stream = None
                self._cond.notify_all()
        finally:
            self._cond.release()
