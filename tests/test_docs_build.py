"""The documentation site: it builds with warnings as errors, its configuration reference is
the schema's, and the API reference covers every public name."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import llamakit

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llamakit_docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _have_mkdocs() -> bool:
    return all(importlib.util.find_spec(name) is not None
               for name in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python"))


def test_docs_build_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict`` succeeds: no broken link, no page outside the navigation,
    no docstring that mkdocstrings cannot read. (Skipped only where the dev extra is not
    installed; CI installs it, and there a missing mkdocs fails.)"""
    if not _have_mkdocs():
        if os.environ.get("CI"):
            pytest.fail("mkdocs and mkdocstrings[python] must be installed in CI "
                        "(pip install -e .[dev])")
        pytest.skip("mkdocs is not installed (pip install -e .[dev])")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-6000:]}"
    for page in ("index.html", "quickstart.html", "configuration.html", "api/models.html"):
        assert (site / page).is_file(), page
    # Code is highlighted at build time; pages fetch no script or stylesheet.
    assert (site / "pygments.css").stat().st_size > 0
    quickstart = (site / "quickstart.html").read_text(encoding="utf-8")
    assert 'class="highlight"' in quickstart
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', quickstart)
    api = (site / "api" / "models.html").read_text(encoding="utf-8")
    assert "new_context" in api and "n_gpu_layers" in api


def test_configuration_reference_is_current() -> None:
    """The generated part of docs/configuration.md is exactly what the schema gives now
    (run ``python docs/hooks.py`` after changing the schema)."""
    hooks = _hooks()
    assert hooks.config_page_is_current(), (
        "docs/configuration.md is stale: run `python docs/hooks.py`")
    _, generated, _ = hooks.split_config_page(hooks.CONFIG_PAGE.read_text(encoding="utf-8"))
    for section in llamakit.Config.model_fields:
        if section != "source":
            assert f"[{section}" in generated, section


def test_split_config_page_needs_its_markers() -> None:
    """A page without the markers is an error, not silently regenerated whole."""
    hooks = _hooks()
    with pytest.raises(ValueError, match="lacks the markers"):
        hooks.split_config_page("# Configuration\n\nno markers here\n")
    before, generated, after = hooks.split_config_page(
        f"intro\n{hooks.BEGIN}\nold table\n{hooks.END}\nend\n")
    assert (before, generated, after) == (f"intro\n{hooks.BEGIN}\n", "old table\n",
                                          f"{hooks.END}\nend\n")


def test_api_reference_covers_every_public_name() -> None:
    """Each name of ``llamakit.__all__`` is rendered by a ``::: llamakit.<name>`` directive
    of docs/api/ (or, for the error classes, by the ``llamakit._errors`` module page)."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((DOCS / "api").glob("*.md")))
    directives = set(re.findall(r"^::: llamakit\.(\w+)\s*$", text, flags=re.MULTILINE))
    errors_page = "::: llamakit._errors" in text
    missing = []
    for name in llamakit.__all__:
        obj = getattr(llamakit, name)
        if name in directives:
            continue
        if errors_page and isinstance(obj, type) and issubclass(obj, BaseException) \
                and obj.__module__ == "llamakit._errors":
            continue
        if name in ("__version__", "hookimpl") and f"`{name}`" in text:
            continue
        missing.append(name)
    assert not missing, f"public names missing from docs/api/: {missing}"


def test_every_page_is_in_the_navigation() -> None:
    """mkdocs.yml's nav lists every Markdown page of docs/ (mkdocs only warns about an
    omitted page when it builds; this names it without building)."""
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, flags=re.MULTILINE))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert not pages - listed, f"pages missing from mkdocs.yml's nav: {sorted(pages - listed)}"


def test_rst_markup_of_docstrings_becomes_markdown() -> None:
    """docs/griffe_rst.py turns reST roles and ``::`` markers into Markdown, and leaves
    everything else alone."""
    spec = importlib.util.spec_from_file_location("llamakit_docs_griffe_rst",
                                                  DOCS / "griffe_rst.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    convert = module.markdown_from_rst
    assert convert("Build a :class:`Config` with :func:`~llamakit.testing.vocab_path`.") \
        == "Build a `Config` with `vocab_path`."
    assert convert("See :meth:`llamakit.Model.new_context`") \
        == "See `llamakit.Model.new_context`"
    assert convert("Like this::\n\n    code\n") == "Like this:\n\n    code\n"
    assert convert("Text.\n\n::\n\n    code\n") == "Text.\n\n\n    code\n"
    plain = "``x`` and `y`: a :: b, http://host::port"
    assert convert(plain) == plain
