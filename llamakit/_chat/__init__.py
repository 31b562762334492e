"""Chat: finding a model's template, rendering it safely, and chatting with a context.

Modules (imported one by one, so that the plugin manager can import ``template`` without
pulling in the rest):

* ``template``: ``ChatTemplate``, what plugins register.
* ``messages``: messages normalised the way Hugging Face's renderer does.
* ``sandbox``: the Jinja sandbox with its time and size limits.
* ``builtin``: llama.cpp's built-in formatters (``chatml``, ``llama3``, ...).
* ``resolve``: which template applies (argument > config > plugin > GGUF > llama.cpp).
* ``render``: ``apply_chat_template``.
* ``results`` and ``mixin``: ``Context.chat``/``chat_stream`` and what they return.
"""
