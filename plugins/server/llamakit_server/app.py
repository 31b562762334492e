"""The Starlette application: OpenAI's endpoints over one ``llamakit.Engine``.

Each handler parses and bounds its body (protocol.py), awaits the engine's asyncio API and
shapes OpenAI's answer. Every exception ends in ``_error_response`` (errors.py maps it), so
no request can produce a traceback or a bare 500. Streams submit and wait for their first
piece *before* the response starts, so a full queue or a bad grammar is still an HTTP
status; after that an error is an SSE ``error`` event. A client that goes away cancels its
stream task: the engine's ``AsyncStream`` then cancels the request and frees the slot.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llamakit._errors import ContextOverflowError
from llamakit._rerank import pair_tokens

from . import protocol
from .errors import ApiError, error_body, from_exception
from .logprobs import TextOffsets, chat_logprobs, completion_logprobs, piece_entries
from .metrics import Metrics

if TYPE_CHECKING:
    from llamakit import Engine
    from llamakit._config import Config

__all__ = ["create_app"]

Handler = Callable[[Request], Awaitable[Response]]


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


class _Service:
    def __init__(self, engine: Engine, config: Config, model_id: str) -> None:
        self.engine = engine
        self.config = config
        self.server = config.server
        self.model_id = model_id
        self.created = int(time.time())
        self.metrics = Metrics(engine)
        self.default_max = config.sampling.max_new_tokens
        self.keys = [key.encode() for key in self.server.api_key]

    # -- shared steps ------------------------------------------------------------------
    def authorize(self, request: Request) -> None:
        if not self.keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        token = given.strip().encode() if scheme.lower() == "bearer" else b""
        ok = False
        for key in self.keys:  # every key compared, each in constant time
            ok |= hmac.compare_digest(token, key)
        if not ok:
            raise ApiError(401, "invalid or missing API key (send 'Authorization: Bearer "
                           "KEY')", code="invalid_api_key")

    async def body(self, request: Request) -> bytes:
        limit = self.server.max_body_bytes
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise ApiError(413, f"the body is {length} bytes; this server takes at most "
                           f"{limit}", code="body_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the body is over {limit} bytes", code="body_too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    def check_model(self, name: str | None) -> None:
        if name and name != self.model_id:
            raise ApiError(404, f"the model {name!r} does not exist; this server serves "
                           f"{self.model_id!r}", param="model", code="model_not_found")

    def check_mode(self, embeddings: bool) -> None:
        if self.server.reranking:
            raise ApiError(400, "this server was started with --reranking and serves "
                           "/v1/rerank only", code="not_supported")
        if embeddings and not self.engine.embeddings:
            raise ApiError(400, "this server does not serve embeddings: start it with "
                           "--embeddings", code="not_supported")
        if not embeddings and self.engine.embeddings:
            raise ApiError(400, "this server was started with --embeddings and serves "
                           "/v1/embeddings only", code="not_supported")

    # -- endpoints ---------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        if self.engine.closed:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def models(self, request: Request) -> Response:
        info = self.engine.model.info
        return JSONResponse({"object": "list", "data": [{
            "id": self.model_id, "object": "model", "created": self.created,
            "owned_by": "llamakit",
            "meta": {"n_ctx": self.engine.n_ctx, "n_ctx_slot": self.engine.n_ctx_slot,
                     "n_parallel": self.engine.n_parallel,
                     "n_ctx_train": info.n_ctx_train, "n_vocab": self.engine.model.n_vocab}}]})

    async def chat(self, request: Request) -> Response:
        body = protocol.parse_body(await self.body(request), protocol.ChatRequest)
        self.check_model(body.model)
        self.check_mode(False)
        messages, kwargs = protocol.chat_kwargs(body, self.server, self.default_max)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "created": created, "model": self.model_id}
        stream = self.engine.chat_stream(messages, **kwargs)
        if body.stream:
            usage = body.stream_options is not None and body.stream_options.include_usage
            return await self._sse(stream, head, "chat.completion.chunk", usage, chat=True,
                                   whole="tools" in kwargs, logprobs="logprobs" in kwargs)
        try:
            result = await _collect(request, stream)
            content, reason = result.content, str(result.finish_reason)
            n_prompt, n_reply = result.usage.prompt_tokens, result.usage.completion_tokens
            entries = result.generation.logprobs
        except ContextOverflowError as exc:  # the slot filled up while generating
            partial = getattr(exc, "result", None)
            if partial is None:
                raise
            content, reason = partial.text, "length"
            n_prompt, n_reply = len(partial.prompt_tokens), len(partial.tokens)
            entries = partial.logprobs
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reason != "length":
            message.update(_extras(result))
            if "tool_calls" in message:
                reason = "tool_calls"
        return JSONResponse({**head, "object": "chat.completion", "choices": [{
            "index": 0, "message": message, "logprobs": chat_logprobs(entries),
            "finish_reason": _finish(reason) if reason != "tool_calls" else reason}],
            "usage": _usage(n_prompt, n_reply)})

    async def completions(self, request: Request) -> Response:
        body = protocol.parse_body(await self.body(request), protocol.CompletionRequest)
        self.check_model(body.model)
        self.check_mode(False)
        prompt, kwargs = protocol.completion_kwargs(body, self.server, self.default_max)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "created": created, "model": self.model_id}
        if isinstance(prompt, str):
            stream = self.engine.stream(prompt, **kwargs)
        else:
            stream = self.engine.stream(tokens=prompt, **kwargs)
        echo = _echo(self.engine.model, prompt) if body.echo else ""
        if body.stream:
            usage = body.stream_options is not None and body.stream_options.include_usage
            return await self._sse(stream, head, "text_completion", usage, chat=False,
                                   echo=echo, logprobs="logprobs" in kwargs)
        try:
            result = await _collect(request, stream)
            reason: str = result.finish_reason
        except ContextOverflowError as exc:
            partial = getattr(exc, "result", None)
            if partial is None:
                raise
            result, reason = partial, "length"
        return JSONResponse({**head, "object": "text_completion", "choices": [{
            "index": 0, "text": echo + result.text,
            "logprobs": completion_logprobs(result.logprobs, TextOffsets(len(echo))),
            "finish_reason": _finish(reason)}],
            "usage": _usage(len(result.prompt_tokens), len(result.tokens))})

    async def embeddings(self, request: Request) -> Response:
        body = protocol.parse_body(await self.body(request), protocol.EmbeddingRequest)
        self.check_model(body.model)
        self.check_mode(True)
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "input must be a non-empty string or list of strings (token "
                           "arrays are not supported by this build)", param="input",
                           code="invalid_value")
        if not all(texts):  # OpenAI's rule; else the vector is that of BOS, or nothing
            raise ApiError(400, "input must not be or hold an empty string", param="input",
                           code="invalid_value")
        if body.dimensions is not None:
            raise ApiError(400, "dimensions is not supported by this build of "
                           "llamakit-server", param="dimensions", code="not_supported")
        if sum(len(str(t)) for t in texts) > self.server.max_prompt_chars:
            raise ApiError(400, "the input is longer than this server takes "
                           f"({self.server.max_prompt_chars} characters)", param="input",
                           code="context_length_exceeded")
        vectors = await self.engine.embed([str(t) for t in texts])
        n_tokens = sum(len(self.engine.model.tokenize(str(t))) for t in texts)
        data = []
        for index, row in enumerate(vectors.reshape(len(texts), -1)):
            value: Any = (base64.b64encode(row.astype("<f4").tobytes()).decode()
                          if body.encoding_format == "base64" else row.tolist())
            data.append({"object": "embedding", "index": index, "embedding": value})
        return JSONResponse({"object": "list", "data": data, "model": self.model_id,
                             "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})

    async def rerank(self, request: Request) -> Response:
        body = protocol.parse_body(await self.body(request), protocol.RerankRequest)
        self.check_model(body.model)
        if not self.server.reranking:
            raise ApiError(400, "this server does not rerank: start it with --reranking and a "
                           "reranking model", code="not_supported")
        documents = body.documents
        if len(body.query) + sum(len(d) for d in documents) > self.server.max_prompt_chars:
            raise ApiError(400, "the query and documents are longer than this server takes "
                           f"({self.server.max_prompt_chars} characters)", param="documents",
                           code="context_length_exceeded")
        result = await self.engine.rerank(body.query, documents, top_n=body.top_n)
        model = self.engine.model
        n_tokens = await asyncio.to_thread(
            lambda: sum(len(pair_tokens(model, body.query, d)) for d in documents))
        results = []
        for index in result.ranking:
            item: dict[str, Any] = {"index": index, "relevance_score": result.scores[index]}
            if body.return_documents:
                item["document"] = {"text": documents[index]}
            results.append(item)
        return JSONResponse({"model": self.model_id, "object": "list", "results": results,
                             "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})

    # -- streaming ---------------------------------------------------------------------
    async def _sse(self, stream: Any, head: dict[str, Any], kind: str, include_usage: bool,
                   *, chat: bool, echo: str = "", whole: bool = False,
                   logprobs: bool = False) -> Response:
        """``whole``: hold the text back and send the parsed reply (content, tool calls) in
        one delta at the end, since the raw pieces hold the tool-call markup (with all the
        log-probabilities). ``logprobs``: each chunk carries those of the tokens of its
        text."""
        try:
            first: str | None = await stream.__anext__()
        except StopAsyncIteration:
            first = None
        except ContextOverflowError as exc:
            if getattr(exc, "result", None) is None:
                raise
            first = None

        offsets = TextOffsets(len(echo))

        def chunk(text: str | None, reason: str | None, role: bool = False,
                  tokens: bool = False) -> str:
            """``tokens``: ``text`` is a generated piece, with its log-probabilities."""
            entries = piece_entries(text or "") if logprobs and tokens else None
            if chat:
                delta: dict[str, Any] = {"role": "assistant"} if role else {}
                if text is not None:
                    delta["content"] = text
                choice: dict[str, Any] = {"index": 0, "delta": delta,
                                          "logprobs": chat_logprobs(entries),
                                          "finish_reason": reason}
            else:
                choice = {"index": 0, "text": text or "",
                          "logprobs": completion_logprobs(entries, offsets),
                          "finish_reason": reason}
            return _event({**head, "object": kind, "choices": [choice]})

        async def events() -> AsyncIterator[str]:
            reason = "stop"
            try:
                if chat:
                    yield chunk("", None, role=True)
                elif echo:
                    yield chunk(echo, None)
                if first is not None:
                    if not whole:
                        yield chunk(first, None, tokens=True)
                    try:
                        async for piece in stream:
                            if not whole:
                                yield chunk(piece, None, tokens=True)
                    except ContextOverflowError as exc:
                        if getattr(exc, "result", None) is None:
                            raise
                        reason = "length"
                result = stream.result
                if result is not None:
                    generation = getattr(result, "generation", result)
                    reason = _finish(generation.finish_reason) if reason != "length" \
                        else reason
                    if whole:
                        delta: dict[str, Any] = {"content": result.content or None}
                        delta.update(_extras(result))
                        if "tool_calls" in delta:
                            reason = "tool_calls"
                            delta["tool_calls"] = [{"index": i, **call} for i, call
                                                   in enumerate(delta["tool_calls"])]
                        yield _event({**head, "object": kind, "choices": [{
                            "index": 0, "delta": delta,
                            "logprobs": chat_logprobs(generation.logprobs),
                            "finish_reason": None}]})
                yield chunk(None, reason)
                if include_usage:
                    generation = getattr(result, "generation", result)
                    n_prompt = len(generation.prompt_tokens) if generation else 0
                    n_reply = len(generation.tokens) if generation else 0
                    yield _event({**head, "object": kind, "choices": [],
                                  "usage": _usage(n_prompt, n_reply)})
                yield "data: [DONE]\n\n"
            except Exception as exc:  # headers are sent: the error becomes an event
                error = from_exception(exc)
                self.metrics.count("stream_error", error.status)
                yield _event(error.body())
            finally:
                await stream.aclose()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})


async def _collect(request: Request, stream: Any) -> Any:
    """``stream.collect()``, cancelled (with its engine request) if the client goes away:
    once the body is read, the next ASGI message can only be the disconnect."""
    work = asyncio.ensure_future(stream.collect())

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not work.done():
            work.cancel()
            await stream.aclose()
    if work.cancelled():
        raise ApiError(499, "the client closed the connection", code="client_closed")
    return work.result()


def _echo(model: Any, prompt: str | list[int]) -> str:
    """The prompt as ``echo`` shows it: token ids as their text (control tokens too). Ids
    outside the vocabulary are left to the engine, which refuses them with a 400, since
    detokenizing them would read past llama.cpp's tables."""
    if isinstance(prompt, str):
        return prompt
    if not all(0 <= t < model.n_vocab for t in prompt):
        return ""
    return str(model.detokenize(prompt, unparse_special=True))


def _extras(result: Any) -> dict[str, Any]:
    """The tool calls and reasoning of a ``ChatResult``, in OpenAI's (and llama-server's)
    message fields, when it has any."""
    found: dict[str, Any] = {}
    calls = getattr(result, "tool_calls", None)
    if calls:
        found["tool_calls"] = [dict(call) for call in calls]
    reasoning = getattr(result, "reasoning_content", None)
    if reasoning:
        found["reasoning_content"] = reasoning
    return found


def _usage(n_prompt: int, n_reply: int) -> dict[str, int]:
    return {"prompt_tokens": n_prompt, "completion_tokens": n_reply,
            "total_tokens": n_prompt + n_reply}


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def create_app(engine: Engine, config: Config, model_id: str) -> Starlette:
    """The application serving ``engine`` as the model ``model_id``."""
    service = _Service(engine, config, model_id)

    def endpoint(name: str, handler: Handler, *, public: bool = False) -> Handler:
        async def run(request: Request) -> Response:
            try:
                if not public:
                    service.authorize(request)
                response = await handler(request)
            except Exception as exc:
                response = _error_response(from_exception(exc))
            service.metrics.count(name, response.status_code)
            return response
        return run

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = exc.detail if isinstance(exc, HTTPException) else "internal error"
        kind = "invalid_request_error" if status < 500 else "server_error"
        return JSONResponse(error_body(f"{message}: {request.method} {request.url.path}", kind,
                                       code="not_found" if status == 404 else None),
                            status_code=status)

    routes = [
        Route("/health", endpoint("health", service.health, public=True), methods=["GET"]),
        Route("/metrics", endpoint("metrics", service.metrics_endpoint), methods=["GET"]),
        Route("/v1/models", endpoint("models", service.models), methods=["GET"]),
        Route("/v1/chat/completions", endpoint("chat", service.chat), methods=["POST"]),
        Route("/v1/completions", endpoint("completions", service.completions),
              methods=["POST"]),
        Route("/v1/embeddings", endpoint("embeddings", service.embeddings), methods=["POST"]),
        # llama-server's four spellings
        *(Route(path, endpoint("rerank", service.rerank), methods=["POST"])
          for path in ("/v1/rerank", "/rerank", "/v1/reranking", "/reranking")),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    app.state.service = service
    return app
