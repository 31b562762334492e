"""The sandbox: hostile templates are refused, and rendering is bounded in size and time."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import llamakit
from llamakit._config.schema import ChatConfig

MESSAGES = [{"role": "user", "content": "hi"}]
SMALL = ChatConfig(max_output_chars=100_000, max_render_seconds=1.0)

# The payload class of CVE-2024-34359 (llama-cpp-python rendered GGUF templates unsandboxed)
# and its relatives: reach Python's object graph, then os or subprocess.
ESCAPES = {
    "mro_subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "class_only": "{{ ''.__class__ }}",
    "cycler_globals_popen": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "joiner_globals": "{{ joiner.__init__.__globals__ }}",
    "namespace_init_globals": "{{ namespace.__init__.__globals__ }}",
    "raise_exception_globals": "{{ raise_exception.__globals__ }}",
    "getitem_dunder": "{{ ''['__class__'] }}",
    "format_attribute": "{{ '{0.__class__.__mro__}'.format('') }}",
    "self_context": "{{ self._TemplateReference__context }}",
    "list_append": "{% set x = [] %}{{ x.append(1) }}",
    "dict_update": "{% set d = {} %}{{ d.update({'a': 1}) }}",
    "namespace_underscore": "{% set ns = namespace(_private=1) %}",
    "namespace_underscore_set": "{% set ns = namespace() %}{% set ns._x = 1 %}",
}


@pytest.mark.parametrize("source", ESCAPES.values(), ids=ESCAPES.keys())
def test_reaching_python_internals_is_a_security_error(source: str) -> None:
    """Templates that reach for Python internals or mutate inputs raise
    TemplateSecurityError, which callers may catch as PermissionError."""
    with pytest.raises(llamakit.TemplateSecurityError) as info:
        llamakit.apply_chat_template(MESSAGES, source)
    assert isinstance(info.value, PermissionError)
    assert isinstance(info.value, llamakit.ChatTemplateError)


def test_escape_in_a_model_file_is_refused(synthetic_model: Callable[..., Path],
                                           tmp_path: Path) -> None:
    """The payload stored as a GGUF's own template is refused when a model chats, and its
    command never runs."""
    marker = tmp_path / "pwned"
    payload = ("{% for m in messages %}{{ cycler.__init__.__globals__.os.popen('touch "
               f"{marker}').read() }}}}{{% endfor %}}")
    with llamakit.load_model(synthetic_model(chat_template=payload), backend="cpu") as model, \
            model.new_context(n_ctx=64, n_threads=1) as ctx, \
            pytest.raises(llamakit.TemplateSecurityError):
        ctx.chat(MESSAGES, max_new_tokens=1)
    assert not marker.exists()


# Each would allocate gigabytes or run for minutes if it ran unchecked.
HOSTILE = {
    "str_repeat": "{{ 'a' * 1000000000 }}",
    "list_repeat": "{{ [1] * 1000000000 }}",
    "big_power": "{{ 2 ** 100000000 }}",
    "squaring": "{% set ns = namespace(x=3) %}{% for i in range(40) %}"
                "{% set ns.x = ns.x * ns.x %}{% endfor %}",
    "namespace_doubling": "{% set ns = namespace(s='ab') %}{% for i in range(100) %}"
                          "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "macro_doubling": "{% macro f(s, n) %}{{ f(s ~ s, n - 1) if n else s|length }}"
                      "{% endmacro %}{{ f('ab', 60) }}",
    "center_filter": "{{ 'x'|center(1000000000) }}",
    "center_method": "{{ 'x'.center(1000000000) }}",
    "replace_method": "{{ ('a' * 50000).replace('', 'b' * 30) }}",
    "join_method": "{{ ('x' * 50000).join(range(100000)) }}",
    "format_width": "{{ '{:>1000000000}'.format('x') }}",
    "printf_width": "{{ '%1000000000s' % 'x' }}",
    "printf_star": "{{ '%*s' % (1000000000, 'x') }}",
    "format_filter": "{{ '%1000000000s'|format('x') }}",
    "batch_fill": "{{ [1]|batch(1000000000, 'x')|list|length }}",
    "indent_filter": "{{ ('a\\n' * 40000)|indent(100000) }}",
    "tojson_indent": "{{ ([[1]] * 50000)|tojson(indent=100000) }}",
    "captured_block": "{% set big = 'x' * 90000 %}{% macro m() %}{% for i in range(100000) %}"
                      "{{ big }}{% endfor %}{% endmacro %}{{ m()|length }}",
    "output_flood": "{% for i in range(100000) %}{{ 'x' * 50000 }}{% endfor %}",
    "lipsum": "{{ lipsum(100000000) }}",
    "strftime_width": "{{ strftime_now('%1000000000Y') }}",
    "sum_of_lists": "{{ ([[1] * 50000] * 50000)|sum(start=[])|length }}",
}


@pytest.mark.parametrize("source", HOSTILE.values(), ids=HOSTILE.keys())
def test_size_bombs_stop_before_allocating(source: str) -> None:
    """Templates that would build huge values raise TemplateLimitError naming
    max_output_chars, without the process growing by more than a few dozen MB."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(llamakit.TemplateLimitError) as info:
        llamakit.apply_chat_template(MESSAGES, source, config=SMALL)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert info.value.limit == "max_output_chars"
    assert "max_output_chars" in str(info.value)
    assert grown_mb < 200


@pytest.mark.parametrize("source", [
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "{% for a in 'x' * 90000 %}{% for b in 'y' * 90000 %}{{ '' }}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{% for i in range(n) %}{{ f(n) if i > 99990 else '' }}{% endfor %}"
    "{% endmacro %}{{ f(100000) }}",
], ids=["nested_ranges", "nested_strings", "recursive_macro_loops"])
def test_endless_templates_stop_at_the_time_limit(source: str) -> None:
    """A template that would run for hours raises TemplateLimitError naming
    max_render_seconds."""
    config = ChatConfig(max_render_seconds=0.2)
    started = time.monotonic()
    with pytest.raises(llamakit.TemplateLimitError) as info:
        llamakit.apply_chat_template(MESSAGES, source, config=config)
    assert info.value.limit == "max_render_seconds"
    assert time.monotonic() - started < 30  # generous: only "it did stop" is checked


def test_limits_are_configurable() -> None:
    """A template within the default limits fails under tighter ones."""
    source = "{{ 'x' * 5000 }}"
    assert len(llamakit.apply_chat_template(MESSAGES, source)) == 5000
    with pytest.raises(llamakit.TemplateLimitError):
        llamakit.apply_chat_template(MESSAGES, source,
                                     config=ChatConfig(max_output_chars=4999))


def test_limits_apply_to_python_templates_output() -> None:
    """A Python template's result is held to max_output_chars too."""
    def huge(messages: list[dict[str, object]], **kwargs: object) -> str:
        return "x" * 2000

    with pytest.raises(llamakit.TemplateLimitError):
        llamakit.apply_chat_template(MESSAGES, huge, config=ChatConfig(max_output_chars=1000))


def test_deep_recursion_is_a_template_error() -> None:
    """Infinite macro recursion ends as a ChatTemplateError, not a crash."""
    with pytest.raises(llamakit.ChatTemplateError, match="recursed"):
        llamakit.apply_chat_template(MESSAGES, "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}")


def test_sandbox_keeps_ordinary_features() -> None:
    """Loops with loop.length, namespaces, macros, filters and str methods still work."""
    source = ("{% set ns = namespace(n=0) %}{% macro up(s) %}{{ s|upper }}{% endmacro %}"
              "{% for m in messages %}{% set ns.n = ns.n + loop.length %}{{ up(m.content) }}"
              "{{ m.content.replace('h', 'H')|center(6) }}{{ '%03d' % ns.n }}"
              "{{ ', '.join(['a', 'b']) }}{{ [1, 2]|tojson(indent=1) }}{% endfor %}")
    assert llamakit.apply_chat_template(MESSAGES, source) == \
        "HI  Hi  001a, b[\n 1,\n 2\n]"
