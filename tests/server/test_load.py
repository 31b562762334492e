"""Many clients at once, a client that leaves mid-stream, and SIGTERM draining."""

from __future__ import annotations

import json
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from server_helpers import Served, start, stop

import llamakit
from llamakit import _demo


def no_eog() -> dict[str, float]:
    """A logit_bias that bans every end-of-generation token of the demo model."""
    with llamakit.load_model(_demo.demo_model_path(), vocab_only=True) as model:
        return {str(t): -100 for t in range(model.n_vocab) if model.is_eog(t)}


def wait_for(check: object, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_sixteen_clients_each_get_their_own_right_answer(server: Served) -> None:
    questions = [q for q in _demo.demo_questions(3, 8) if q.task in ("add", "sub", "mul")]
    questions = questions[:16]
    assert len({q.question for q in questions}) == 16

    def ask(index: int) -> str:
        client = server.client()
        question = questions[index].question
        if index % 2:  # half stream, half do not
            chunks = client.chat.completions.create(
                model="demo-model", messages=[{"role": "user", "content": question}],
                max_tokens=16, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reply = client.chat.completions.create(
            model="demo-model", messages=[{"role": "user", "content": question}],
            max_tokens=16)
        return reply.choices[0].message.content or ""

    before = server.metric("llamakit_requests_total")
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(16)))
    assert answers == [q.answer for q in questions]
    assert server.metric("llamakit_requests_total") - before == 16


def test_a_client_leaving_mid_stream_frees_its_slot(server: Served) -> None:
    cancelled = server.metric("llamakit_requests_cancelled_total")
    client = server.client()
    stream = client.completions.create(model="demo-model", prompt="1", max_tokens=400,
                                       stream=True, logit_bias=no_eog())
    for pieces, _ in enumerate(stream, 1):
        if pieces == 3:
            break
    assert server.metric("llamakit_slots_busy") >= 1
    stream.close()  # the connection goes; the request must go with it
    wait_for(lambda: server.metric("llamakit_slots_busy") == 0, "the slot to be freed")
    assert server.metric("llamakit_requests_cancelled_total") == cancelled + 1


def test_a_client_leaving_a_plain_request_frees_its_slot(server: Served) -> None:
    cancelled = server.metric("llamakit_requests_cancelled_total")
    body = json.dumps({"prompt": "1", "max_tokens": 400, "logit_bias": no_eog()}).encode()
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nAuthorization: Bearer " + server.key.encode()
                     + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                     + body)
        wait_for(lambda: server.metric("llamakit_slots_busy") >= 1, "the request to run")
    wait_for(lambda: server.metric("llamakit_slots_busy") == 0, "the slot to be freed")
    assert server.metric("llamakit_requests_cancelled_total") == cancelled + 1


def test_sigterm_drains_in_flight_requests_then_exits() -> None:
    served = start("-np", "2", "-c", "1024", key=None)
    try:
        # A streamed request is known to be running once its first piece arrived (polling
        # the slot gauge could miss a short request that started and finished in between).
        stream = served.client().completions.create(
            model="demo-model", prompt="1", max_tokens=48, stream=True,
            stream_options={"include_usage": True}, logit_bias=no_eog())
        chunks = iter(stream)
        next(chunks)
        served.process.send_signal(signal.SIGTERM)
        rest = list(chunks)  # the drain lets it finish
        usage = rest[-1].usage
        assert usage is not None and usage.completion_tokens == 48
        assert [c.choices[0].finish_reason for c in rest if c.choices][-1] == "length"
        assert served.process.wait(60) == 0
    finally:
        stop(served)


def test_a_full_queue_is_429_with_retry_after() -> None:
    served = start("-np", "1", "-c", "512", "--max-queue", "0", key=None)
    try:
        client = served.client()
        busy = client.completions.create(model="demo-model", prompt="1", max_tokens=300,
                                         stream=True, logit_bias=no_eog())
        next(iter(busy))
        status, headers, body = served.raw("POST", "/v1/completions", json.dumps(
            {"prompt": "2", "max_tokens": 4}).encode())
        assert status == 429, body
        assert body["error"]["type"] == "rate_limit_error"
        assert int(headers["retry-after"]) >= 1
        busy.close()
    finally:
        stop(served)
