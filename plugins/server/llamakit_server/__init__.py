"""llamakit's OpenAI-compatible server: ``llamakit serve -m model.gguf`` (or ``--demo``).

The HTTP layer (Starlette on uvicorn) turns OpenAI requests into keywords of
``llamakit.Engine``; the engine batches all of them on one context. See docs/server.md.
"""

from __future__ import annotations

from llamakit import CommandSpec, hookimpl

__all__ = ["llamakit_register_commands"]


@hookimpl
def llamakit_register_commands() -> list[CommandSpec]:
    from . import cli

    return [CommandSpec(
        name="serve",
        help="serve a model over an OpenAI-compatible HTTP API (chat, completions, "
             "embeddings, metrics)",
        configure=cli.add_arguments, run=cli.run)]
