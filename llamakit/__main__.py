"""``python -m llamakit``: the command line (``llamakit/_cli/``, one module per command)."""

from __future__ import annotations

from ._cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
