"""``llamakit chat``: an interactive conversation, streamed, with history.

Each line read from stdin is a user message (a line ending in ``\\`` continues on the next
one); the reply is streamed to stdout as it is generated. The conversation is a list of
messages passed whole to ``Context.chat_stream`` every turn: the chat template renders it
and the context's prefix reuse evaluates only what is new since the previous reply. When
the rendered conversation no longer fits the context, the oldest exchanges are dropped (the
system prompt stays). Works the same on a terminal and with piped stdin; only the ``>``
prompt and the notes on stderr are left out when stdin is not a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from .._errors import ChatTemplateError, ContextOverflowError
from ._common import cli_config, new_context, open_model, write
from ._options import add_config_flags
from .generate import GENERATION_SECTIONS

if TYPE_CHECKING:
    from .._config.schema import Config
    from .._context import Context

__all__ = ["register"]

_HELP = """commands:
  /exit, /quit       leave (Ctrl-D too)
  /reset             forget the conversation (the system prompt stays)
  /system [TEXT]     set (or clear) the system prompt and start over
  /history           print the conversation as JSON
  /help              this list"""


class _Session:
    def __init__(self, ctx: Context, args: argparse.Namespace, interactive: bool) -> None:
        self.ctx = ctx
        self.args = args
        self.interactive = interactive
        self.system: str | None = args.system
        self.messages: list[dict[str, Any]] = []
        self.reset()

    def note(self, text: str) -> None:
        """A remark for the person at the terminal (stderr; left out when piped)."""
        if self.interactive:
            write(f"[{text}]\n", err=True)

    def reset(self) -> None:
        self.messages = [] if self.system is None else [{"role": "system", "content": self.system}]

    def command(self, line: str) -> bool:
        """Run a ``/command``; False to leave."""
        name, _, rest = line[1:].partition(" ")
        if name in ("exit", "quit", "q"):
            return False
        if name == "reset":
            self.reset()
            self.note("conversation reset")
        elif name == "system":
            self.system = rest.strip() or None
            self.reset()
            self.note("system prompt " + ("set" if self.system else "cleared")
                      + "; conversation reset")
        elif name == "history":
            write(json.dumps(self.messages, indent=2, ensure_ascii=False) + "\n")
        elif name == "help":
            write(_HELP + "\n", err=True)
        else:
            write(f"llamakit: unknown command /{name} (/help lists them)\n", err=True)
        return True

    def _drop_oldest(self) -> bool:
        """Drop the oldest exchange (keeping the system prompt and the new message)."""
        first = 1 if self.messages and self.messages[0]["role"] == "system" else 0
        if len(self.messages) - first <= 1:
            return False
        del self.messages[first:first + 2]
        return True

    def turn(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})
        while True:
            stream = self.ctx.chat_stream(self.messages)
            try:
                first = next(stream, None)
            except KeyboardInterrupt:  # stopped before the reply began: forget the message
                stream.close()
                self.messages.pop()
                write("\n")
                self.note("reply stopped")
                return
            except ContextOverflowError as exc:
                if exc.result is None and self._drop_oldest():
                    self.note("the conversation no longer fits n_ctx; dropped the oldest "
                              "exchange")
                    continue
                if exc.result is None:  # the message alone does not fit
                    self.messages.pop()
                raise
            break
        if self.args.show_prompt:
            write(f"--- prompt ---\n{stream.prompt}\n--- reply ---\n", err=True)
        pieces = [] if first is None else [first]
        if first is not None:
            write(first)
        try:
            for piece in stream:
                pieces.append(piece)
                write(piece)
        except ContextOverflowError as exc:  # the reply filled the context
            if exc.result is not None:
                pieces = [exc.result.text]
            self.note("the context is full: reply cut short; /reset to start over")
        except KeyboardInterrupt:  # Ctrl-C ends the reply, not the chat
            stream.close()
            write("\n")
            self.note("reply stopped")
            self.messages.append({"role": "assistant", "content": "".join(pieces)})
            return
        write("\n")
        # The parsed reply when there is one (no reasoning, no template markers: those end
        # the reply and never reach the history).
        result = stream.result
        self.messages.append(result.message if result is not None
                             else {"role": "assistant", "content": "".join(pieces)})


def _read_message(source: TextIO, interactive: bool) -> str | None:
    """One message: a line, or several joined where a line ends with a backslash."""
    lines: list[str] = []
    while True:
        if interactive:
            try:
                line = input("> " if not lines else ". ")
            except EOFError:
                return None if not lines else "\n".join(lines)
        else:
            raw = source.readline()
            if not raw:
                return None if not lines else "\n".join(lines)
            line = raw.rstrip("\r\n")
        if line.endswith("\\"):
            lines.append(line[:-1])
            continue
        lines.append(line)
        return "\n".join(lines)


def _template_file(config: Config) -> Config:
    """``--chat-template FILE`` (or ``[chat] template`` naming a file): its Jinja source.
    Anything else (a built-in or plugin name, Jinja source) is resolved as usual."""
    from pathlib import Path

    from .._chat.template import is_jinja_source

    name = config.chat.template
    if name is None or is_jinja_source(name) or "\n" in name or not Path(name).is_file():
        return config
    try:
        source = Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatTemplateError(f"cannot read the chat template file {name}: {exc}") from exc
    chat = config.chat.model_copy(update={"template": source})
    return config.model_copy(update={"chat": chat})


def _cmd_chat(args: argparse.Namespace) -> int:
    config, _ = cli_config(args, model=args.model)
    config = _template_file(config)
    interactive = sys.stdin is not None and sys.stdin.isatty()
    with open_model(config) as model, new_context(model, config) as ctx:
        session = _Session(ctx, args, interactive)
        if interactive:
            import contextlib

            with contextlib.suppress(ImportError):
                import readline  # noqa: F401 - line editing and history for input()
            write(f"chatting with {model.path.name} ({model.backend}); /help for commands, "
                  "/exit or Ctrl-D to leave\n", err=True)
        while True:
            text = _read_message(sys.stdin, interactive)
            if text is None:
                break
            if text.startswith("/"):
                if not session.command(text.strip()):
                    break
                continue
            if not text.strip():
                continue
            session.turn(text)
    return 0


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "chat", parents=parents, help="an interactive chat (streamed, with history)",
        description="Chat with MODEL: each line of stdin is a message (end a line with \\ to "
        "continue it), the reply streams to stdout. /help lists the commands (/reset, "
        "/system, /history, /exit). Works with piped stdin too.")
    p.add_argument("model", nargs="?", metavar="MODEL", default=None,
                   help="the .gguf file (default: -m, [model] path of the config)")
    p.add_argument("-s", "--system", default=None, metavar="TEXT", help="a system prompt")
    p.add_argument("--show-prompt", action="store_true",
                   help="print each rendered prompt (the whole conversation) on stderr")
    add_config_flags(p, (*GENERATION_SECTIONS, "chat"))  # --chat-template NAME|FILE|JINJA
    p.set_defaults(func=_cmd_chat)
