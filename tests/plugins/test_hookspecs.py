"""Meta-tests of the plugin contract: every hookspec is documented and has tests of its own.

Adding a hookspec to ``llamakit/_plugins/hookspecs.py`` fails
``test_every_hookspec_has_tests`` until the new hook is listed in ``HOOK_TESTS`` with tests
that pytest collects and that exercise that hook, and ``test_every_hookspec_is_documented``
until its docstring lists its parameters and return value and docs/plugins.md describes it.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from llamakit._plugins import hookspecs
from llamakit._plugins.manager import hook_names

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "examples/llamakit-example-plugin/tests"

#: Each hookspec -> the tests that exercise it, as pytest node ids relative to the repository
#: root. The first registers an in-process plugin implementing the hook; the second goes
#: through the installed example plugin's entry point and the public API.
HOOK_TESTS: dict[str, list[str]] = {
    "llamakit_register_backends": [
        "tests/plugins/test_manager.py::test_registered_backend_is_tagged_with_its_plugin",
        "tests/plugins/test_manager.py::test_entry_point_plugins_are_loaded",
    ],
    "llamakit_register_samplers": [
        "tests/samplers/test_sampler_plugins.py::test_registered_sampler_is_tagged_with_its_plugin",
        f"{EXAMPLE}/test_example_sampler.py::test_generation_with_the_sampler_repeats_no_ngram",
    ],
    "llamakit_register_chat_templates": [
        "tests/chat/test_chat_resolve.py::test_hook_registers_templates_tagged_with_their_plugin",
        f"{EXAMPLE}/test_example_template.py::test_renders_by_name_with_the_models_eos",
    ],
    "llamakit_register_quantizers": [
        "tests/quantize/test_quantize_recipes.py::test_registered_recipe_is_tagged_with_its_plugin",
        f"{EXAMPLE}/test_example_recipe.py::test_keeps_attention_at_q8_0",
    ],
    "llamakit_register_commands": [
        "tests/plugins/test_plugins_cli.py::test_plugin_command_runs_with_its_arguments",
        f"{EXAMPLE}/test_example_command.py::test_stats_of_a_synthetic_model",
    ],
    "llamakit_register_model_resolvers": [
        "tests/test_resolvers.py::test_registered_resolver_is_tagged_with_its_plugin",
        f"{EXAMPLE}/test_example_resolver.py::test_load_model_by_name_from_the_models_folder",
    ],
}


def _returned_type(annotation: str) -> str:
    """``"Sequence[CommandSpec]"`` -> ``"CommandSpec"``."""
    match = re.fullmatch(r"(?:\w+\.)*Sequence\[(?:\w+\.)*(\w+)\]", annotation.replace(" ", ""))
    return match.group(1) if match else annotation


def doc_problems(namespace: type, docs: str) -> list[str]:
    """What is missing from the documentation of the hookspecs in ``namespace``."""
    problems = []
    for name, function in vars(namespace).items():
        if not name.startswith("llamakit_"):
            continue
        doc = inspect.getdoc(function) or ""
        parameters = [p for p in inspect.signature(function).parameters if p != "self"]
        section = re.search(r"^Parameters:(.*?)^Returns:(.*)", doc, re.S | re.M)
        if section is None:
            problems.append(f"{name}: the docstring needs a 'Parameters:' then a 'Returns:' "
                            "section")
            continue
        listed, returns = section.group(1), section.group(2)
        if not parameters and "none" not in listed.lower():
            problems.append(f"{name}: 'Parameters:' must say 'none' for a hook without any")
        problems += [f"{name}: 'Parameters:' does not describe {p!r}" for p in parameters
                     if not re.search(rf"\b{p}\b", listed)]
        annotation = function.__annotations__.get("return")
        wanted = _returned_type(str(annotation))
        if annotation is None or wanted not in returns:
            problems.append(f"{name}: 'Returns:' must name the returned type {wanted!r}")
        if f"`{name}`" not in docs:
            problems.append(f"{name}: docs/plugins.md does not describe it")
    return problems


def _functions(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def coverage_problems(names: Sequence[str], registry: Mapping[str, Sequence[str]],
                      root: Path) -> list[str]:
    """Which hooks lack a listed test, and which listed tests do not exist or do not
    mention their hook (in the test's own code or its module's)."""
    problems = [f"{name}: no tests listed in HOOK_TESTS; write one and list it"
                for name in names if not registry.get(name)]
    problems += [f"{name}: listed in HOOK_TESTS but not a hookspec" for name in registry
                 if name not in names]
    for hook, node_ids in registry.items():
        mentioned = False
        for node_id in node_ids:
            path_text, _, function = node_id.partition("::")
            path = root / path_text
            if not path.is_file():
                problems.append(f"{hook}: {node_id}: no such file")
                continue
            found = _functions(path).get(function)
            if found is None or not function.startswith("test"):
                problems.append(f"{hook}: {node_id}: no such test function")
                continue
            source = path.read_text()
            body = ast.get_source_segment(source, found) or ""
            facade = hook.removeprefix("llamakit_register_")
            mentioned |= hook in body or hook in source or facade in body
        if node_ids and not mentioned:
            problems.append(f"{hook}: none of its tests mentions {hook!r} or {facade!r}")
    return problems


def test_every_hookspec_is_documented() -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert doc_problems(hookspecs.Hookspecs, docs) == []


def test_every_hookspec_has_tests() -> None:
    assert coverage_problems(hook_names(), HOOK_TESTS, ROOT) == []


def test_listed_tests_are_collected() -> None:
    """pytest itself finds every test HOOK_TESTS lists."""
    node_ids = sorted({node for nodes in HOOK_TESTS.values() for node in nodes})
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                          "-p", "no:cacheprovider", *node_ids],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    collected = {line.split("[")[0] for line in run.stdout.splitlines() if "::" in line}
    assert collected == set(node_ids)


class Widget:
    """What the careless hook below returns."""


class _NewSpecs:
    """A hookspec namespace as a careless change would leave it."""

    @hookspecs.hookspec
    def llamakit_register_backends(self) -> Sequence[object]:  # type: ignore[empty-body]
        """Return things.

        Parameters: none.

        Returns: a sequence of :class:`llamakit.BackendSpec`.
        """

    @hookspecs.hookspec
    def llamakit_register_widgets(  # type: ignore[empty-body]
            self, model: object) -> Sequence[Widget]:
        """Return the widgets."""


def test_checks_fail_on_an_undocumented_untested_hook() -> None:
    """The checks above really fail when a hook is added without docs or tests."""
    docs = "`llamakit_register_backends`"
    problems = doc_problems(_NewSpecs, docs)
    assert problems == [
        "llamakit_register_backends: 'Returns:' must name the returned type 'object'",
        "llamakit_register_widgets: the docstring needs a 'Parameters:' then a 'Returns:' "
        "section"]
    _NewSpecs.llamakit_register_widgets.__doc__ = "Parameters: none.\n\nReturns: widgets."
    assert doc_problems(_NewSpecs, docs)[1:] == [
        "llamakit_register_widgets: 'Parameters:' does not describe 'model'",
        "llamakit_register_widgets: 'Returns:' must name the returned type 'Widget'",
        "llamakit_register_widgets: docs/plugins.md does not describe it"]
    names = [*hook_names(), "llamakit_register_widgets"]
    assert coverage_problems(names, HOOK_TESTS, ROOT) == [
        "llamakit_register_widgets: no tests listed in HOOK_TESTS; write one and list it"]
    wrong = {**HOOK_TESTS, "llamakit_register_widgets": [
        "tests/plugins/test_hookspecs.py::test_no_such_test",
        "tests/plugins/test_hookspecs.py::test_every_hookspec_is_documented"]}
    assert coverage_problems(names, wrong, ROOT) == [
        "llamakit_register_widgets: tests/plugins/test_hookspecs.py::test_no_such_test: "
        "no such test function"]


@pytest.mark.parametrize("annotation, expected", [
    ("Sequence[CommandSpec]", "CommandSpec"), ("collections.abc.Sequence[x.Y]", "Y"),
    ("int", "int")])
def test_returned_type(annotation: str, expected: str) -> None:
    assert _returned_type(annotation) == expected
