"""llama.cpp's chat layer (``common/chat.*``, compiled into the module by ``lk_chat.cpp``) in
the handle layer: render with tools and get the grammar, triggers and parser; parse output.

Both calls exchange JSON with C (the C side never throws). Inputs are checked here for what
C strings cannot carry: a NUL byte would end the text early and silently.
"""

from __future__ import annotations

import json
from typing import Any

from .._errors import ChatTemplateError
from .lib import NativeLib

__all__ = ["chat_apply_native", "chat_parse_native", "has_chat_layer"]


def has_chat_layer(native: NativeLib) -> bool:
    """Whether this module carries llama.cpp's chat layer (a module built before it did
    not)."""
    return hasattr(native.lib, "lk_chat_apply")


def _c(text: str, what: str) -> bytes:
    if "\0" in text:
        raise ChatTemplateError(f"{what} contains a NUL character")
    return text.encode("utf-8", "surrogatepass")


def _call(native: NativeLib, name: str, *args: Any) -> tuple[int, str]:
    lib, ffi = native.lib, native.ffi
    status = ffi.new("int32_t *")
    raw = getattr(lib, name)(*args, status)
    if raw == ffi.NULL:
        raise MemoryError(f"out of memory in {name}")
    try:
        return int(status[0]), ffi.string(raw).decode("utf-8", "replace")
    finally:
        lib.lk_free(raw)


def chat_apply_native(native: NativeLib, template: str, bos: str, eos: str,
                      request: dict[str, Any]) -> dict[str, Any]:
    """``common_chat_templates_apply`` on an OpenAI-shaped request (messages, tools,
    tool_choice, reasoning_format, enable_thinking, ...). Returns its ``common_chat_params``
    as a dict; a template or request llama.cpp refuses raises ``ChatTemplateError``."""
    body = json.dumps(request, ensure_ascii=False)
    status, text = _call(native, "lk_chat_apply", _c(template, "the chat template"),
                         _c(bos, "bos_token"), _c(eos, "eos_token"), _c(body, "the request"))
    if status != 0:
        raise ChatTemplateError(f"llama.cpp's chat layer refused the conversation: {text}")
    result: dict[str, Any] = json.loads(text)
    return result


def chat_parse_native(native: NativeLib, output: str, params: dict[str, Any], *,
                      partial: bool) -> dict[str, Any]:
    """``common_chat_parse``: the model's raw output to ``content``, ``reasoning_content``
    and ``tool_calls`` (name, arguments as JSON text, id) with the parser ``params`` from
    ``chat_apply_native``. ``partial``: the output may still grow (streaming)."""
    body = json.dumps(params, ensure_ascii=False)
    status, text = _call(native, "lk_chat_parse", _c(output, "the model's output"),
                         1 if partial else 0, _c(body, "the parser parameters"))
    if status != 0:
        raise ChatTemplateError(f"llama.cpp's chat parser failed on the model's output: {text}")
    result: dict[str, Any] = json.loads(text)
    return result
