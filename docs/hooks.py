"""Build hooks of the documentation site (``mkdocs.yml`` names this file under ``hooks``).

- ``docs/configuration.md`` holds, between two markers, the reference that
  ``llamakit.config_schema_markdown()`` generates from the config schema. The build fails
  when that part is not what the schema gives now; ``python docs/hooks.py`` rewrites it.
- Code is highlighted by Pygments at build time (no script is loaded by the pages); the
  stylesheet is written into the site as ``pygments.css``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

CONFIG_PAGE = Path(__file__).resolve().parent / "configuration.md"
BEGIN = "<!-- BEGIN GENERATED: llamakit.config_schema_markdown(); update: python docs/hooks.py -->"
END = "<!-- END GENERATED -->"


def generated_reference() -> str:
    """The configuration reference as the schema gives it now."""
    import llamakit

    return llamakit.config_schema_markdown()


def split_config_page(text: str) -> tuple[str, str, str]:
    """``(before, generated, after)`` of the configuration page's text."""
    start = text.find(BEGIN)
    end = text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{CONFIG_PAGE.name} lacks the markers {BEGIN!r} ... {END!r}")
    body_start = start + len(BEGIN) + 1
    return text[:body_start], text[body_start:end], text[end:]


def config_page_is_current() -> bool:
    """Whether the generated part of ``docs/configuration.md`` matches the schema."""
    _, generated, _ = split_config_page(CONFIG_PAGE.read_text(encoding="utf-8"))
    return generated == generated_reference() + "\n"


def write_config_page() -> bool:
    """Rewrite the generated part of ``docs/configuration.md``; True when it changed."""
    text = CONFIG_PAGE.read_text(encoding="utf-8")
    before, _, after = split_config_page(text)
    new = before + generated_reference() + "\n" + after
    if new == text:
        return False
    CONFIG_PAGE.write_text(new, encoding="utf-8")
    return True


def on_pre_build(config: Any) -> None:
    from mkdocs.exceptions import PluginError

    if not config_page_is_current():
        raise PluginError(f"{CONFIG_PAGE} is out of date with the config schema; "
                          "run `python docs/hooks.py` to regenerate it")


def on_post_build(config: Any) -> None:
    from pygments.formatters import HtmlFormatter

    css = HtmlFormatter(style="default").get_style_defs(".highlight")
    Path(config["site_dir"], "pygments.css").write_text(css + "\n", encoding="utf-8")


if __name__ == "__main__":
    changed = write_config_page()
    print(f"{CONFIG_PAGE}: {'updated' if changed else 'already current'}")
    sys.exit(0)
