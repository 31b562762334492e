"""A hostile client's requests (beyond test_safety.py's matrix): every one is a 4xx in
OpenAI's error shape naming the field where there is one, or an ordinary answer; the server
stays healthy and keeps answering correctly afterwards."""

from __future__ import annotations

import json
from typing import Any

import pytest
from server_helpers import Served

from llamakit._demo import demo_model

ASK = [{"role": "user", "content": "What is 1 + 1?"}]
CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"


def chat(**fields: Any) -> bytes:
    return json.dumps({"model": "demo-model", "messages": ASK, "max_tokens": 4,
                       **fields}).encode()


def completion(**fields: Any) -> bytes:
    return json.dumps({"max_tokens": 4, **fields}).encode()


def schema(value: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": value}}


def nested(levels: int) -> str:
    """A JSON schema ``levels`` objects deep, as text (json.dumps recurses too deep)."""
    return ('{"type":"object","properties":{"a":' * levels + '{"type":"string"}'
            + ',"required":["a"]}' * levels)


LOOP = {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}

#: name -> (path, body, status, param: the field the error must name, or None: any)
HOSTILE: dict[str, tuple[str, bytes, int, str | None]] = {
    # bodies that are not objects, or not JSON
    "body a string": (CHAT, b'"hi"', 400, None),
    "body null": (CHAT, b"null", 400, None),
    "body empty": (CHAT, b"", 400, None),
    "invalid UTF-8": (CHAT, b'{"messages": [{"role": "user", "content": "\xff"}]}', 400, None),
    "Infinity": (CHAT, b'{"messages": [], "top_p": Infinity}', 400, None),
    "1e400": (CHAT, chat()[:-1] + b', "temperature": 1e400}', 400, "temperature"),
    "5000-digit integer": (CHAT, chat()[:-1] + b', "seed": ' + b"9" * 5000 + b"}", 400, None),
    "JSON nested 20000 deep": (CHAT, chat()[:-1] + b', "x": ' + b"[" * 20000 + b"]" * 20000
                               + b"}", 400, None),
    # numbers out of range
    "max_tokens 2**64": (CHAT, chat(max_tokens=2**64), 400, "max_tokens"),
    "max_tokens true": (CHAT, chat(max_tokens=True), 400, "max_tokens"),
    "max_completion_tokens -5": (CHAT, chat(max_completion_tokens=-5), 400,
                                 "max_completion_tokens"),
    "seed -1": (CHAT, chat(seed=-1), 400, "seed"),
    "top_k 2**64": (CHAT, chat(top_k=2**64), 400, "top_k"),
    "top_k -1": (CHAT, chat(top_k=-1), 400, "top_k"),
    "top_logprobs 2**64": (CHAT, chat(logprobs=True, top_logprobs=2**64), 400,
                           "top_logprobs"),
    "n 2**64": (CHAT, chat(n=2**64), 400, "n"),
    "temperature -1": (CHAT, chat(temperature=-1), 400, "temperature"),
    "repeat_penalty 0": (CHAT, chat(repeat_penalty=0), 400, "repeat_penalty"),
    "logit_bias value 2**64": (CHAT, chat(logit_bias={"1": 2**64}), 400, "logit_bias.1"),
    "logit_bias key 2**64": (CHAT, chat(logit_bias={str(2**64): 1}), 400, "logit_bias"),
    # str.isdigit() and int() take these; a token id is ASCII digits
    "logit_bias key Arabic-Indic digit": (CHAT, chat(logit_bias={"\u0661": 5}), 400,
                                          "logit_bias"),
    "logit_bias key superscript": (CHAT, chat(logit_bias={"\u00b2": 5}), 400, "logit_bias"),
    "logit_bias key with a space": (CHAT, chat(logit_bias={" 1": 5}), 400, "logit_bias"),
    # strings and lists
    "model an int": (CHAT, chat(model=5), 400, "model"),
    "model 60000 chars": (CHAT, chat(model="m" * 60000), 404, "model"),
    "stop 10000 strings": (CHAT, chat(stop=["x"] * 10000), 400, "stop"),
    "stop empty": (CHAT, chat(stop=""), 400, "stop"),
    "stop ints": (CHAT, chat(stop=[1, 2]), 400, None),
    # messages
    "message null": (CHAT, chat(messages=[None]), 400, "messages.0"),
    "role function": (CHAT, chat(messages=[{"role": "function", "content": "x"}]), 400,
                      "messages.0.role"),
    "unknown part type": (CHAT, chat(messages=[{"role": "user", "content": [
        {"type": "wat"}]}]), 400, "messages.0.content"),
    "audio part": (CHAT, chat(messages=[{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]), 400,
        "messages.0.content"),
    "text part text an int": (CHAT, chat(messages=[{"role": "user", "content": [
        {"type": "text", "text": 5}]}]), 400, "messages.0.content"),
    "tool_calls not objects": (CHAT, chat(messages=[*ASK, {"role": "assistant",
                                                           "tool_calls": ["x"]}]), 400,
                               "messages.1.tool_calls.0"),
    "name an int": (CHAT, chat(messages=[{"role": "user", "content": "x", "name": 5}]), 400,
                    "messages.0.name"),
    # tools, schemas, grammars
    "tool without function": (CHAT, chat(tools=[{"type": "function"}]), 400, None),
    "tool type retrieval": (CHAT, chat(tools=[{"type": "retrieval"}]), 400, None),
    "tool_choice names no tool": (CHAT, chat(
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        tool_choice={"type": "function", "function": {"name": "nope"}}), 400, None),
    "tool_choice an int": (CHAT, chat(tool_choice=3), 400, None),
    "tools nested 1000 deep": (CHAT, chat()[:-1] + b', "tools": [{"type": "function", '
                               b'"function": {"name": "f", "parameters": '
                               + nested(1000).encode() + b"}}]}", 400, None),
    "schema $ref loop": (CHAT, chat(response_format=schema(LOOP)), 400, None),
    "schema $ref outside": (CHAT, chat(response_format=schema({"$ref": "http://x/y"})), 400,
                            None),
    "schema nested 200 deep": (CHAT, chat()[:-1] + b', "response_format": {"type": '
                               b'"json_schema", "json_schema": {"name": "x", "schema": '
                               + nested(200).encode() + b"}}}", 400, None),
    "schema minLength 10**9": (CHAT, chat(response_format=schema(
        {"type": "string", "minLength": 10**9})), 400, None),
    "schema empty enum": (CHAT, chat(response_format=schema({"enum": []})), 400, None),
    "schema an int": (CHAT, chat(response_format=schema(5)), 400, None),
    "json_schema and grammar": (CHAT, chat(json_schema={"type": "object"},
                                           grammar='root ::= "a"'), 400, None),
    "grammar left-recursive": (CHAT, chat(grammar='root ::= root "a" | "a"'), 400, None),
    "grammar 5000 parentheses": (CHAT, chat(grammar="root ::= " + "(" * 5000 + '"a"'
                                            + ")" * 5000), 400, None),
    "grammar nested repetitions": (CHAT, chat(
        grammar='root ::= (("a"{0,1000}){0,1000}){0,1000}'), 400, None),
    "grammar NUL": (CHAT, chat(grammar='root ::= "a\u0000"'), 400, None),
    "stream_options a list": (CHAT, chat(stream=True, stream_options=[1]), 400,
                              "stream_options"),
    # the prompt is over the slot's context, streamed and not
    "chat over the context": (CHAT, chat(messages=[{"role": "user", "content": "1 + 1 " *
                                                    2500}]), 400, None),
    "chat over the context, streamed": (CHAT, chat(stream=True, messages=[
        {"role": "user", "content": "1 + 1 " * 2500}]), 400, None),
    "completion over the context, streamed": (COMPLETIONS, completion(
        prompt=[5] * 3000, stream=True), 400, None),
    # completions' token ids
    "token -1": (COMPLETIONS, completion(prompt=[-1]), 400, None),
    "token 2**63": (COMPLETIONS, completion(prompt=[2**63]), 400, None),
    "token 2**64": (COMPLETIONS, completion(prompt=[2**64]), 400, None),
    "token -1, streamed": (COMPLETIONS, completion(prompt=[-1], stream=True), 400, None),
    "token -1, echoed": (COMPLETIONS, completion(prompt=[-1], echo=True), 400, None),
    "tokens nested": (COMPLETIONS, completion(prompt=[[1, 2]]), 400, None),
    "logprobs true": (COMPLETIONS, completion(prompt="x", logprobs=True), 400, "logprobs"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_request_is_a_4xx_in_openai_shape(server: Served, case: str) -> None:
    path, body, want, param = HOSTILE[case]
    status, _, answer = server.raw("POST", path, body)
    assert status == want, answer
    assert isinstance(answer, dict), answer
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param, error
    assert server.raw("GET", "/health")[0] == 200


def test_echo_of_token_ids_is_their_text(server: Served) -> None:
    """``echo`` with a prompt of token ids shows those tokens as text (it was dropped)."""
    model = demo_model()
    tokens = model.tokenize("What is 2 + 3?")
    text = model.detokenize(tokens, unparse_special=True)
    assert text
    for stream in (False, True):
        status, _, answer = server.raw("POST", COMPLETIONS, completion(
            prompt=tokens, echo=True, max_tokens=2, stream=stream))
        assert status == 200, answer
        if stream:
            chunks = [json.loads(line[6:]) for line in answer.splitlines()
                      if line.startswith("data: {")]
            answer = {"choices": [{"text": "".join(c["choices"][0]["text"] for c in chunks
                                                   if c["choices"])}]}
        assert answer["choices"][0]["text"].startswith(text), answer


def test_the_server_still_answers_right_after_the_attack(server: Served) -> None:
    reply = server.client().chat.completions.create(
        model="demo-model", messages=[{"role": "user", "content": "What is 48 + 37?"}],
        max_tokens=16)
    assert reply.choices[0].message.content == "85"
    assert server.metric("llamakit_slots_busy") == 0
