"""llama.cpp's built-in chat formatters in the handle layer.

``llama_chat_apply_template`` renders a conversation in one of a fixed list of named formats
(``chatml``, ``llama3``, ...) without Jinja. It reads C strings, so text with a NUL byte
would be cut short silently; it returns an ``int32_t`` byte count, so the input is bounded
well below that. Both are checked here before the call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from .._errors import ChatTemplateError
from .lib import NativeLib

__all__ = ["chat_apply_builtin", "chat_builtin_templates"]

# The output is at most a few markers longer than the input; keeping the input well under
# INT32_MAX keeps the returned length representable.
_MAX_INPUT_BYTES = 2**30

_names: dict[int, tuple[str, ...]] = {}
_names_lock = threading.Lock()


def chat_builtin_templates(native: NativeLib) -> tuple[str, ...]:
    """The names llama.cpp's ``llama_chat_apply_template`` accepts, in llama.cpp's order."""
    with _names_lock:
        cached = _names.get(id(native))
        if cached is not None:
            return cached
        lib, ffi = native.lib, native.ffi
        count = int(lib.llama_chat_builtin_templates(ffi.NULL, 0))
        array = ffi.new("const char *[]", max(count, 1))
        filled = min(count, int(lib.llama_chat_builtin_templates(array, count)))
        names = tuple(ffi.string(array[i]).decode("utf-8", "replace") for i in range(filled))
        _names[id(native)] = names
        return names


def _c_text(value: str, what: str) -> bytes:
    data = value.encode("utf-8", errors="surrogatepass")
    if b"\0" in data:
        raise ChatTemplateError(f"{what} contains a NUL character, which llama.cpp's built-in "
                                "formatters cannot carry; remove it")
    return data


def chat_apply_builtin(native: NativeLib, name: str, messages: Sequence[tuple[str, str]],
                       add_assistant: bool) -> str:
    """Render ``(role, content)`` pairs with the built-in format ``name``."""
    if name not in chat_builtin_templates(native):
        raise ChatTemplateError(f"{name!r} is not one of llama.cpp's built-in chat formats")
    ffi, lib = native.ffi, native.lib
    keep: list[object] = []  # the C strings must outlive the call
    roles_contents = [(_c_text(role, f"the role of message {i}"),
                       _c_text(content, f"the content of message {i}"))
                      for i, (role, content) in enumerate(messages)]
    total = sum(len(r) + len(c) for r, c in roles_contents)
    if total > _MAX_INPUT_BYTES:
        raise ChatTemplateError(f"the conversation has {total} bytes; llama.cpp's built-in "
                                f"formatters take at most {_MAX_INPUT_BYTES}")
    chat = ffi.new("struct llama_chat_message[]", max(len(roles_contents), 1))
    for i, (role, content) in enumerate(roles_contents):
        role_c, content_c = ffi.new("char[]", role), ffi.new("char[]", content)
        keep.extend((role_c, content_c))
        chat[i].role = role_c
        chat[i].content = content_c
    tmpl = ffi.new("char[]", name.encode())
    capacity = 2 * total + 256
    while True:
        buf = ffi.new("char[]", capacity)
        n = int(lib.llama_chat_apply_template(tmpl, chat, len(roles_contents), add_assistant,
                                              buf, capacity))
        if n < 0:
            raise ChatTemplateError(f"llama.cpp's built-in chat format {name!r} could not render "
                                    f"this conversation (status {n})")
        if n <= capacity:
            return bytes(ffi.buffer(buf, n)).decode("utf-8", errors="replace")
        capacity = n
