"""Bad requests are 4xx in OpenAI's error shape, never 500; API keys; the bind check; every
LlamakitError leaf has a status."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from llamakit_server.errors import STATUS, from_exception
from server_helpers import KEY, Served, serve_command

import llamakit
from llamakit import _errors

ASK = [{"role": "user", "content": "What is 1 + 1?"}]


def chat(**fields: object) -> bytes:
    return json.dumps({"model": "demo-model", "messages": ASK, **fields}).encode()


BAD = {
    "not json": (b"{nope", 400),
    "not an object": (b"[1, 2]", 400),
    "NaN": (b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', 400),
    "no messages": (json.dumps({"model": "demo-model"}).encode(), 400),
    "empty messages": (chat(messages=[]), 400),
    "messages not a list": (chat(messages="hi"), 400),
    "bad role": (chat(messages=[{"role": "wizard", "content": "x"}]), 400),
    "content a number": (chat(messages=[{"role": "user", "content": 5}]), 400),
    "image part": (chat(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x"}}]}]), 400),
    "unknown model": (chat(model="gpt-4"), 404),
    "temperature a string": (chat(temperature="hot"), 400),
    "negative max_tokens": (chat(max_tokens=-1), 400),
    "huge max_tokens": (chat(max_tokens=10**9), 400),
    "huge seed": (chat(seed=10**30), 400),
    "top_p above 1": (chat(top_p=1.5), 400),
    "n = 2": (chat(n=2), 400),
    "stream a string": (chat(stream="yes"), 400),
    "bad response_format": (chat(response_format={"type": "xml"}), 400),
    "invalid schema": (chat(response_format={"type": "json_schema", "json_schema": {
        "schema": {"type": "nonsense"}}}), 400),
    "invalid grammar": (chat(grammar="root ::= ("), 400),
    "logit_bias bad key": (chat(logit_bias={"abc": 1}), 400),
    "logit_bias token out of range": (chat(logit_bias={"99999999": 1}), 400),
    "too many stops": (chat(stop=[str(i) for i in range(17)]), 400),
    "tools not a list": (chat(tools={"type": "function"}), 400),
    "tool_choice required without tools": (chat(tool_choice="required"), 400),
    "prompt too long": (chat(messages=[{"role": "user", "content": "1 + 1 " * 600}]), 400),
    "completion: no prompt": (json.dumps({"max_tokens": 3}).encode(), 400),
    "completion: two prompts": (json.dumps({"prompt": ["a", "b"]}).encode(), 400),
    "completion: suffix": (json.dumps({"prompt": "a", "suffix": "b"}).encode(), 400),
    "completion: bad token": (json.dumps({"prompt": [10**7]}).encode(), 400),
    "completion: empty token list": (json.dumps({"prompt": []}).encode(), 400),
}
HOSTILE = ("{{ ''.__class__.__mro__[1].__subclasses__() }}{% for x in range(10**9) %}x"
           "{% endfor %}")


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_request_is_a_4xx_in_openai_shape(server: Served, case: str) -> None:
    body, want = BAD[case]
    path = "/v1/completions" if case.startswith("completion:") else "/v1/chat/completions"
    status, _, answer = server.raw("POST", path, body)
    assert status == want, answer
    assert set(answer["error"]) == {"message", "type", "param", "code"}
    assert answer["error"]["message"]


def test_hostile_content_is_just_text(server: Served) -> None:
    """Template syntax in a message is data, not code: the reply is an ordinary one."""
    status, _, answer = server.raw("POST", "/v1/chat/completions", chat(messages=[
        {"role": "user", "content": HOSTILE}], max_tokens=4))
    assert status == 200, answer


def test_body_too_large_is_413(server: Served) -> None:
    status, _, answer = server.raw("POST", "/v1/chat/completions", b" " * 70_000)
    assert status == 413 and answer["error"]["code"] == "body_too_large"


def test_unknown_path_and_method(server: Served) -> None:
    assert server.raw("GET", "/v1/nothing")[0] == 404
    status, _, answer = server.raw("GET", "/v1/chat/completions")
    assert status == 405 and "error" in answer


@pytest.mark.parametrize("key", [None, "wrong", KEY + "x", KEY[:-1]])
def test_wrong_or_missing_key_is_401(server: Served, key: str | None) -> None:
    for method, path, body in (("GET", "/v1/models", None), ("GET", "/metrics", None),
                               ("POST", "/v1/chat/completions", chat())):
        status, _, answer = server.raw(method, path, body, key=key)
        assert status == 401
        assert answer["error"]["code"] == "invalid_api_key"


def test_openai_client_with_a_wrong_key(server: Served) -> None:
    import openai
    with pytest.raises(openai.AuthenticationError):
        server.client(key="sk-wrong").models.list()


def test_every_error_leaf_has_a_status() -> None:
    def leaves(cls: type[BaseException]) -> set[type[BaseException]]:
        found = {cls}
        for sub in cls.__subclasses__():
            found |= leaves(sub)
        return found

    ours = {c for c in leaves(llamakit.LlamakitError) if c.__module__ == _errors.__name__}
    assert ours - set(STATUS) == set()
    assert from_exception(llamakit.QueueFullError("full", retry_after=2.4)).headers == {
        "Retry-After": "2"}
    assert from_exception(llamakit.QueueFullError("full")).status == 429
    assert from_exception(llamakit.ContextOverflowError(9, 4)).status == 400


def test_public_bind_without_key_refuses_to_start() -> None:
    done = subprocess.run(serve_command("--host", "0.0.0.0", "--port", "1"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "refusing to listen on 0.0.0.0 without an API key" in done.stderr


def test_server_table_of_a_config_file_is_read(tmp_path: Path) -> None:
    config = tmp_path / "llamakit.toml"
    config.write_text('[server]\nhost = "0.0.0.0"\nport = 1\n')
    done = subprocess.run([*serve_command(), "--config", str(config)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert "refusing to listen on 0.0.0.0" in done.stderr
    config.write_text('[server]\nmax_tokens = 0\n')
    done = subprocess.run([*serve_command(), "--config", str(config)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and "max_tokens" in done.stderr
