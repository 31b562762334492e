"""A griffe extension (``mkdocs.yml`` loads it for mkdocstrings): reStructuredText markup
that some of llamakit's docstrings use, rendered the way Markdown readers expect.

- Roles: ``:class:`Config``` becomes `` `Config` ``; ``:func:`~llamakit.testing.vocab_path```
  becomes `` `vocab_path` `` (the ``~`` form shows the last component, as in Sphinx).
- Literal-block markers: a paragraph ending in ``::`` ends in ``:`` (the indented block
  after it is already a code block in Markdown); a line holding only ``::`` goes.

Docstrings stay as they are in the source; only what the site shows changes.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|exc|data|obj|const):`(~?)([^`]+)`")
_TRAILING = re.compile(r"(?m)(\S)::[ \t]*$")
_ALONE = re.compile(r"(?m)^[ \t]*::[ \t]*\n")


def _role(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2).strip()
    if short:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def markdown_from_rst(text: str) -> str:
    """``text`` with reST roles and literal-block markers turned into Markdown."""
    return _TRAILING.sub(r"\1:", _ALONE.sub("", _ROLE.sub(_role, text)))


class RstToMarkdown(griffe.Extension):
    """Rewrites each docstring's reST roles and ``::`` markers before it is rendered."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_from_rst(obj.docstring.value)
