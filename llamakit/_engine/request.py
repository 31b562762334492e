"""A request of the ``Engine`` and the bridges that hand its pieces to callers.

The scheduler thread is the only producer: it calls ``_emit`` for each text piece and
``_complete`` once. A synchronous caller reads pieces from a thread-safe queue; an asyncio
caller gives a *sink* at submission that moves each item onto an ``asyncio.Queue`` of its
own loop through ``loop.call_soon_threadsafe``, so the loop never waits on a lock or the
scheduler, and any number of loops in any threads can use one engine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._errors import AbortedError

if TYPE_CHECKING:
    from .._batch import BatchSlot

__all__ = ["END", "AsyncStream", "Request"]

#: Marks the end of a request's pieces (its result or error is then set).
END: Any = object()
_ids = itertools.count(1)
R = TypeVar("R")


class Request(Iterator[str], Generic[R]):
    """One completion, chat or embeddings request.

    Iterate it for the text pieces as ``Context.stream`` yields them; ``result()`` waits
    for the ``GenerationResult`` / ``ChatResult`` (or the vectors); ``cancel()`` stops it
    within one decode step and frees its slot.
    """

    def __init__(self, wake: Callable[[], None], *, kind: str = "generate",
                 sink: Callable[[Any], None] | None = None,
                 wrap: Callable[[Any], Any] | None = None) -> None:
        self.id = next(_ids)
        self.kind = kind
        self._wake = wake
        self._sink = sink
        self._wrap = wrap
        self._pieces: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._cancelled = False
        # Filled by the engine at submission; read by its thread.
        self.tokens: list[int] = []
        self.texts: list[str] = []
        self.payload: dict[str, Any] = {}
        self.submitted = 0.0
        self.slot: BatchSlot | None = None

    def __repr__(self) -> str:
        state = "done" if self.done else "cancelled" if self._cancelled else "pending"
        return f"<llamakit.engine.Request #{self.id} {self.kind} {state}>"

    # -- the scheduler's side --------------------------------------------------------
    def _deliver(self, item: Any) -> None:
        if self._sink is None:
            self._pieces.put(item)
            return
        try:
            self._sink(item)
        except RuntimeError:  # the caller's event loop is closed: nobody listens any more
            self._cancelled = True

    def _emit(self, piece: str) -> None:
        self._deliver(piece)

    def _complete(self, result: Any = None, error: BaseException | None = None) -> None:
        if self._done.is_set():
            return
        if error is None and self._wrap is not None:
            try:
                result = self._wrap(result)
            except Exception as exc:  # a chat result that cannot be built is the caller's
                error = exc
        self._result, self._error = result, error
        self._done.set()
        self._deliver(END)

    # -- the caller's side -------------------------------------------------------------
    @property
    def done(self) -> bool:
        """Whether the request has finished (with a result or an error)."""
        return self._done.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop the request (from any thread): queued, it leaves the queue; running, it
        stops before the next decode step. ``result()`` then raises ``AbortedError``."""
        if not self._done.is_set():
            self._cancelled = True
            self._wake()

    def __iter__(self) -> Request[R]:
        return self

    def __next__(self) -> str:
        if self._sink is not None:
            raise RuntimeError("this request streams to an event loop; use its async stream")
        item = self._pieces.get()
        if item is END:
            self._pieces.put(END)  # later calls stop too
            if self._error is not None:
                raise self._error
            raise StopIteration
        assert isinstance(item, str)
        return item

    def result(self, timeout: float | None = None) -> R:
        """Wait for the outcome. After ``timeout`` seconds the request is cancelled and
        ``TimeoutError`` raised (a caller that stops waiting frees the slot)."""
        if not self._done.wait(timeout):
            self.cancel()
            raise TimeoutError(f"request #{self.id} did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[no-any-return]

    def _cancelled_error(self) -> AbortedError:
        return AbortedError(f"request #{self.id} was cancelled")


class AsyncStream(AsyncIterator[str], Generic[R]):
    """Text pieces of one request on the running event loop; ``result`` is set once the
    stream is exhausted. The request is submitted at the first ``__anext__`` (so a full
    queue raises ``QueueFullError`` there); cancelling the awaiting task, ``aclose()`` or
    leaving an ``async with`` block cancels the request."""

    def __init__(self, submit: Callable[[Callable[[Any], None]], Awaitable[Request[R]]]
                 ) -> None:
        self._submit = submit
        self._request: Request[R] | None = None
        self._queue: asyncio.Queue[Any] | None = None
        self._finished = False
        self.result: R | None = None

    @property
    def request(self) -> Request[R] | None:
        """The engine request, once submitted."""
        return self._request

    async def _start(self) -> Request[R]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()
        self._queue = items

        def sink(item: Any) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        self._request = await self._submit(sink)
        return self._request

    async def __anext__(self) -> str:
        if self._finished:
            raise StopAsyncIteration
        try:
            request = self._request or await self._start()
            assert self._queue is not None
            item = await self._queue.get()
        except BaseException:
            self._finished = True
            if self._request is not None:
                self._request.cancel()
            raise
        if item is END:
            self._finished = True
            if request._error is not None:
                raise request._error
            self.result = request._result
            raise StopAsyncIteration
        assert isinstance(item, str)
        return item

    async def aclose(self) -> None:
        """Stop the request (if it still runs) and end the stream."""
        self._finished = True
        if self._request is not None:
            self._request.cancel()

    async def __aenter__(self) -> AsyncStream[R]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Leaving an ``async for`` early drops the stream: free the slot.
        request = self._request
        if request is not None and not request.done:
            request.cancel()

    async def collect(self) -> R:
        """Read the stream to its end and return its result."""
        try:
            async for _ in self:
                pass
        finally:
            await self.aclose()
        assert self.result is not None
        return self.result


async def submit_async(run: Callable[[], Request[R]], executor: Any) -> Request[R]:
    """Run a submission (tokenizing, rendering a template, building a grammar) off the
    event loop; a task cancelled meanwhile cancels the request once it exists (from the
    worker thread, so even a loop that has ended by then leaves no orphan running)."""
    future: concurrent.futures.Future[Request[R]] = executor.submit(run)
    try:
        return await asyncio.shield(asyncio.wrap_future(future))
    except asyncio.CancelledError:
        def cancel_later(done: concurrent.futures.Future[Request[R]]) -> None:
            if not done.cancelled() and done.exception() is None:
                done.result().cancel()
        future.add_done_callback(cancel_later)
        raise
