"""Every ```python block of the docs and the README runs, against synthetic models.

The blocks of one page run in order in one fresh namespace (a page's later blocks may use
its earlier ones' names), in a fresh working directory that holds the files the docs name:

``model.gguf``
    A small random-weight llama (F16, n_embd 256, llama-spm vocabulary): wide enough for
    every quantization type's block size.
``instruct-model.gguf``
    A random-weight model with qwen2's vocabulary and its ChatML chat template (both read
    from llama.cpp's own vocab file at test time).
``embedding-model.gguf``
    A random-weight llama whose GGUF says to mean-pool (``llama.pooling_type = 1``).
``lora.gguf``
    A LoRA adapter for ``model.gguf``.
``reranker.gguf``
    A random-weight BERT reranker (``pooling_type`` rank, a classification head).
``sharded-00001-of-00002.gguf``, ``sharded-00002-of-00002.gguf``
    A small model split in two by llama.cpp's own ``llama-gguf-split``.

A block that cannot run here (a GPU, a network, user input) must be fenced as something
other than ``python`` (```text, ```console, ```pycon). A failure names the page and the line
of the block's opening fence. ```toml blocks whose first line is ``# llamakit.toml`` are
loaded with ``llamakit.load_config`` (other TOML, such as a plugin's ``pyproject.toml``, is
not llamakit's to check).
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import textwrap
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import llamakit
from llamakit.testing import build_tool, write_lora_adapter, write_reranker_model

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: The shape of ``model.gguf`` (the quantization tests' model: rows fit every block size).
MODEL_SHAPE = {"dtype": "f16", "n_embd": 256, "n_ff": 512, "n_head": 4, "n_head_kv": 2}
#: The shape of ``instruct-model.gguf`` (the vocabulary is most of its size).
INSTRUCT_SHAPE = {"vocab": "qwen2", "n_embd": 32, "n_layer": 1, "n_head": 4, "n_head_kv": 2,
                  "n_ff": 64}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)")
_RUNNABLE = {"python", "py", "python3"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    language: str
    source: str


def code_blocks(path: Path, page: str | None = None) -> list[Block]:
    """The fenced code blocks of a Markdown file, in order (indented fences included)."""
    page = page or path.relative_to(ROOT).as_posix()
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        language = match["info"].lower().lstrip("{.").rstrip("}")
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence) and stripped.strip(fence[0]) == "":
                break
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        else:
            raise AssertionError(f"{page}:{start + 1}: unclosed code fence")
        blocks.append(Block(page, start + 1, language, textwrap.dedent("\n".join(body))))
        i += 1
    return blocks


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md")) + [ROOT / "README.md"]


def _blocks(languages: set[str]) -> dict[str, list[Block]]:
    found: dict[str, list[Block]] = {}
    for path in pages():
        blocks = [b for b in code_blocks(path) if b.language in languages]
        if blocks:
            found[blocks[0].page] = blocks
    return found


PYTHON_PAGES = _blocks(_RUNNABLE)
CONFIG_BLOCKS = [b for blocks in _blocks({"toml"}).values() for b in blocks
                 if b.source.startswith("# llamakit.toml")]


@pytest.fixture(scope="session")
def docs_files(tmp_path_factory: pytest.TempPathFactory,
               synthetic_model: Callable[..., Path]) -> dict[str, Path]:
    """The files the docs name, written once per session."""
    folder = tmp_path_factory.mktemp("docs-files")
    write_lora_adapter(folder / "lora.gguf", n_embd=256, n_ff=512, n_head=4, n_head_kv=2,
                       rank=8)
    write_reranker_model(folder / "reranker.gguf")
    subprocess.run([str(build_tool("llama-gguf-split")), "--split", "--split-max-tensors", "12",
                    str(synthetic_model()), str(folder / "sharded")], check=True,
                   capture_output=True)
    return {
        "reranker.gguf": folder / "reranker.gguf",
        "sharded-00001-of-00002.gguf": folder / "sharded-00001-of-00002.gguf",
        "sharded-00002-of-00002.gguf": folder / "sharded-00002-of-00002.gguf",
        "model.gguf": synthetic_model(**MODEL_SHAPE),
        "instruct-model.gguf": synthetic_model(**INSTRUCT_SHAPE),
        "embedding-model.gguf": synthetic_model(metadata={"llama.pooling_type": 1},
                                                name="synthetic embedding model"),
        "lora.gguf": folder / "lora.gguf",
    }


@pytest.fixture
def docs_workdir(tmp_path: Path, docs_files: dict[str, Path],
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory with links to the docs' files; environment, cwd and the native
    log threshold are restored afterwards."""
    for name, target in docs_files.items():
        (tmp_path / name).symlink_to(target)
    monkeypatch.chdir(tmp_path)
    saved_env = dict(os.environ)
    verbosity = llamakit.get_verbosity()
    try:
        yield tmp_path
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        llamakit.set_verbosity(verbosity)
        gc.collect()  # models and contexts an example left open


def test_the_examples_are_found() -> None:
    """The pages this suite relies on have runnable examples (a renamed fence would hide
    them)."""
    for page in ("README.md", "docs/quickstart.md", "docs/chat.md", "docs/sampling.md",
                 "docs/embeddings.md", "docs/lora.md", "docs/state.md",
                 "docs/quantization.md", "docs/backends.md", "docs/configuration.md",
                 "docs/models.md", "docs/context.md"):
        assert page in PYTHON_PAGES, f"{page} has no ```python block"
    assert any(b.page == "docs/configuration.md" for b in CONFIG_BLOCKS)


def test_fence_parser_handles_indentation_and_languages(tmp_path: Path) -> None:
    """Indented fences (inside lists) are found and dedented; the info string is the
    language; an unclosed fence is an error."""
    page = tmp_path / "page.md"
    text = ("intro\n\n- item\n\n    ```python\n    x = 1\n    if x:\n        y = 2\n    ```\n\n"
            "~~~text\nnot code\n~~~\n\n````py\nz = 3\n````\n")
    page.write_text(text, encoding="utf-8")
    blocks = code_blocks(page, "page.md")
    assert [(b.line, b.language) for b in blocks] == [(5, "python"), (11, "text"), (15, "py")]
    assert blocks[0].source == "x = 1\nif x:\n    y = 2"
    page.write_text("```python\nx = 1\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="page.md:1: unclosed"):
        code_blocks(page, "page.md")


class ExampleError(AssertionError):
    """An example raised; the message names the page and the line of its opening fence."""


def run_blocks(blocks: list[Block]) -> dict[str, object]:
    """Run ``blocks`` in order in one fresh namespace; returns the namespace."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    for block in blocks:
        where = f"{block.page}:{block.line}"
        try:
            exec(compile(block.source, where, "exec"), namespace)
        except (Exception, SystemExit) as exc:
            details = "".join(traceback.format_exception(exc))
            raise ExampleError(f"example at {where} raised {type(exc).__name__}: {exc}\n"
                               f"{details}") from exc
    return namespace


def test_a_failing_example_names_its_page_and_line(tmp_path: Path) -> None:
    """The harness reports the block that raised, and runs a page's blocks in one
    namespace, in order."""
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 2\n```\n\ntext\n\n```python\nassert x == 2\n"
                    "y = x / 0\n```\n", encoding="utf-8")
    with pytest.raises(ExampleError, match=r"example at page.md:7 raised ZeroDivisionError"):
        run_blocks(code_blocks(page, "page.md"))
    page.write_text("```python\nx = 2\n```\n```text\nnot python\n```\n```python\n"
                    "y = x + 1\n```\n", encoding="utf-8")
    assert run_blocks([b for b in code_blocks(page, "page.md")
                       if b.language in _RUNNABLE])["y"] == 3


@pytest.mark.parametrize("page", sorted(PYTHON_PAGES))
def test_examples_run(page: str, docs_workdir: Path) -> None:
    """The page's ```python blocks run in order in one namespace without raising."""
    failure = None
    try:
        run_blocks(PYTHON_PAGES[page])
    except ExampleError as exc:
        failure = str(exc)
    if failure is not None:  # outside the except block: one traceback, not two chained
        pytest.fail(failure, pytrace=False)


@pytest.mark.parametrize("block", CONFIG_BLOCKS, ids=lambda b: f"{b.page}:{b.line}")
def test_config_examples_load(block: Block, docs_workdir: Path) -> None:
    """Each ```toml block marked ``# llamakit.toml`` is a valid llamakit config file."""
    path = docs_workdir / "llamakit.toml"
    path.write_text(block.source + "\n", encoding="utf-8")
    failure = None
    try:
        llamakit.load_config(path, env={})
    except llamakit.ConfigError as exc:
        failure = f"config example at {block.page}:{block.line} is invalid: {exc}"
    if failure is not None:
        pytest.fail(failure, pytrace=False)
