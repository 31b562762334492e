"""Rendering Jinja chat templates in a sandbox, as Hugging Face renders them, with limits.

Chat templates come with model files from anywhere, so they are untrusted code. They run in
jinja2's ``ImmutableSandboxedEnvironment`` set up like ``transformers`` sets it up
(``trim_blocks``, ``lstrip_blocks``, ``loopcontrols``, the ``{% generation %}`` tag, its
``tojson``, ``raise_exception``, ``strftime_now``, ``dict`` and ``namespace``), so that a
template renders the same text here as there. On top of that:

* Reaching for an unsafe attribute (``__class__``, ``__globals__``, ...) raises at once
  instead of yielding an undefined value (the payload class of CVE-2024-34359).
* Every loop iteration, call, filter, intercepted operator, buffer join and output chunk
  checks a deadline, so no template runs past ``max_render_seconds``.
* Every value that can outlive one expression (output, captured blocks, call and filter
  results, namespace attributes) is checked against ``max_output_chars``, and the operations
  that can multiply sizes in one step (``*``, ``+``, ``%``, ``**``, ``str.replace``/
  ``join``/``center``/``format``..., the ``center``/``indent``/``batch``/``tojson``...
  filters) are checked *before* they run, so memory stays bounded too.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any, NoReturn, cast

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

__all__ = ["LimitExceeded", "RenderLimits", "TemplateRaised", "compile_template",
           "render_template"]

# Ints beyond this many bits only come from a template trying to burn CPU on bignums.
_MAX_INT_BITS = 1 << 17
_TICK_FILTER = "_llamakit_ticking"
_SIZED = (str, bytes, list, tuple, dict, set, frozenset)


class LimitExceeded(Exception):
    """Internal: a render passed one of its limits (becomes ``TemplateLimitError``)."""

    def __init__(self, message: str, limit: str) -> None:
        self.limit = limit
        super().__init__(message)


class TemplateRaised(TemplateError):
    """Internal: the template called ``raise_exception(message)``."""


def _too_many_bits(bits: int, what: str) -> NoReturn:
    raise LimitExceeded(f"{what} would be an integer of {bits} bits; templates get at most "
                        f"{_MAX_INT_BITS} bits (with max_output_chars, the size limits)",
                        "max_output_chars")


class RenderLimits:
    """The time and size budget of one rendering."""

    __slots__ = ("deadline", "max_chars", "max_seconds")

    def __init__(self, max_chars: int, max_seconds: float) -> None:
        self.max_chars = max_chars
        self.max_seconds = max_seconds
        self.deadline = time.monotonic() + max_seconds

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"rendering took longer than max_render_seconds="
                                f"{self.max_seconds:g}", "max_render_seconds")

    def size(self, n: int, what: str) -> None:
        if n > self.max_chars:
            raise LimitExceeded(f"{what} would have {n} items/characters, more than "
                                f"max_output_chars={self.max_chars}", "max_output_chars")

    def value(self, value: Any, what: str) -> None:
        if isinstance(value, _SIZED):
            self.size(len(value), what)
        elif isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
            _too_many_bits(value.bit_length(), what)

    def number(self, value: Any, what: str) -> None:
        """A width or count that sizes what an operation allocates."""
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value) and abs(value) > self.max_chars:
            self.size(int(abs(value)), what)


_limits: ContextVar[RenderLimits | None] = ContextVar("llamakit_render_limits", default=None)


def _current() -> RenderLimits:
    limits = _limits.get()
    if limits is None:  # only reachable by calling sandbox objects outside a render
        raise LimitExceeded("template code ran outside a rendering", "max_render_seconds")
    return limits


# -- size estimates of operations that can multiply sizes ------------------------------------

_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")


def _check_digits(limits: RenderLimits, text: str, what: str) -> None:
    for match in _DIGITS.finditer(text):
        digits = match.group()
        if len(digits) > 12 or int(digits) > limits.max_chars:
            limits.size(10**min(len(digits), 12), what)


def _check_printf(limits: RenderLimits, fmt: str, args: Any) -> None:
    star = False
    for match in _PRINTF_SPEC.finditer(fmt):
        for group in match.groups():
            if group == "*":
                star = True
            elif group:
                _check_digits(limits, group, "a %-format width")
    if star:
        for value in args if isinstance(args, tuple) else (args,):
            limits.number(value, "a %-format width")


def _check_binop(limits: RenderLimits, operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, _SIZED) and isinstance(count, int):
                limits.size(len(seq) * max(count, 0), "a repeated sequence")
        if isinstance(left, int) and isinstance(right, int):
            bits = left.bit_length() + right.bit_length()
            if bits > _MAX_INT_BITS:
                limits.value(1 << bits, "a product")
    elif operator == "+":
        if isinstance(left, _SIZED) and isinstance(right, _SIZED):
            limits.size(len(left) + len(right), "a concatenation")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
            power_bits = right * math.log2(abs(left))
            if power_bits > _MAX_INT_BITS:
                _too_many_bits(int(power_bits), "a power")
    elif operator == "%" and isinstance(left, str):
        _check_printf(limits, left, right)


def _json_extra(value: Any, indent: int, item_sep: int, key_sep: int) -> int:
    """Characters that indentation and separators add to the compact JSON of ``value``."""
    total, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, Mapping):
            children = item.values()
            total += len(item) * (key_sep + 1)
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        count = 0
        for child in children:
            count += 1
            stack.append((child, depth + 1))
        total += count * (indent * (depth + 1) + item_sep + 1) + indent * depth + 1
    return total


def _json_separator_length(separators: Any, index: int, default: int) -> int:
    if isinstance(separators, (list, tuple)) and len(separators) > index:
        return len(str(separators[index]))
    return default


def _estimate_str_method(limits: RenderLimits, target: str | bytes, name: str,
                         args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Check a str/bytes method call that can grow its result; returns the args to use."""
    size = len(target)
    if name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        if isinstance(old, (str, bytes)) and isinstance(new, (str, bytes)):
            found = target.count(old) if old else size + 1  # type: ignore[arg-type]
            if isinstance(count, int) and count >= 0:
                found = min(found, count)
            limits.size(size + found * max(len(new) - len(old), 0), "the result of replace()")
    elif name == "join" and args:
        items = list(args[0])
        limits.size(len(items), "the items of join()")
        total = sum(len(i) for i in items if isinstance(i, (str, bytes)))
        limits.size(total + size * max(len(items) - 1, 0), "the result of join()")
        return (items, *args[1:])
    elif name in ("center", "ljust", "rjust", "zfill") and args:
        limits.number(args[0], f"the width of {name}()")
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tabsize, int):
            tabs = target.count("\t") if isinstance(target, str) else target.count(b"\t")
            limits.size(size + tabs * max(tabsize, 0), "the result of expandtabs()")
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, (str, bytes))),
                      default=1)
        limits.size(size * max(longest, 1), "the result of translate()")
    return args


def _check_call(limits: RenderLimits, obj: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> tuple[Any, ...]:
    wrapped = getattr(obj, "__wrapped__", None)  # jinja's sandboxed str.format
    target = getattr(wrapped if wrapped is not None else obj, "__self__", None)
    name = getattr(wrapped if wrapped is not None else obj, "__name__", "")
    if isinstance(target, (str, bytes)):
        if name in ("format", "format_map"):
            _check_digits(limits, str(target), "a format() width")
            values = [*args, *kwargs.values()]
            if name == "format_map" and args and isinstance(args[0], Mapping):
                values = list(args[0].values())
            for value in values:
                limits.number(value, "a format() argument")
        else:
            return _estimate_str_method(limits, target, name, args, kwargs)
    return args


# -- filters and globals ----------------------------------------------------------------------

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "gteq": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lteq": lambda a, b: a <= b,
    "in": lambda a, b: a in b, "notin": lambda a, b: a not in b,
}
#: How deeply a value handed to a filter or printed may nest (json.dumps and repr recurse).
MAX_VALUE_DEPTH = 200
_CONTAINERS = (list, tuple, dict, set, frozenset)


def check_expanded(limits: RenderLimits, value: Any, what: str) -> None:
    """Refuse a value whose *written-out* size passes ``max_output_chars`` before a C-level
    call (``json.dumps``, ``str``, ``repr``) writes it out. A template can build a list that
    holds the same list twice, n times over: ``len()`` stays 2, its text is 2**n long, and
    the limits checked around the call never get a chance. Shared parts are counted every
    time they appear, as serialising them does; the walk stops at the limit."""
    if not isinstance(value, _CONTAINERS):
        return
    total, steps = 0, 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        total += 1
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, _CONTAINERS):
            if depth >= MAX_VALUE_DEPTH:
                raise LimitExceeded(f"{what} nests deeper than {MAX_VALUE_DEPTH} levels "
                                    "(with max_output_chars, the size limits)",
                                    "max_output_chars")
            children = (x for pair in item.items() for x in pair) \
                if isinstance(item, dict) else item
            for child in children:  # scalars are counted here, only containers are pushed
                if isinstance(child, _CONTAINERS):
                    stack.append((child, depth + 1))
                else:
                    total += 1 + (len(child) if isinstance(child, (str, bytes)) else 0)
        if total > limits.max_chars:
            limits.size(total, f"{what} written out")
        steps += 1
        if not steps & 0xFFF:
            limits.tick()


def _filter_checks(limits: RenderLimits, name: str, value: Any, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> None:
    if name == "center":
        limits.number(args[0] if args else kwargs.get("width", 80), "the width of center")
    elif name == "indent" and isinstance(value, str):
        width = args[0] if args else kwargs.get("width", 4)
        per_line = len(width) if isinstance(width, str) else width
        if isinstance(per_line, int):
            limits.size(len(value) + (value.count("\n") + 1) * max(per_line, 0),
                        "the result of indent")
    elif name == "wordwrap" and isinstance(value, str):
        width = args[0] if args else kwargs.get("width", 79)
        wrap = (args[2] if len(args) > 2 else kwargs.get("wrapstring")) or "\n"
        if isinstance(width, int) and isinstance(wrap, str):
            lines = len(value) // max(width, 1) + value.count("\n") + 1
            limits.size(len(value) + lines * len(wrap), "the result of wordwrap")
    elif name in ("batch", "slice"):
        limits.number(args[0] if args else kwargs.get("linecount", kwargs.get("slices")),
                      f"the count of {name}")
    elif name == "format" and isinstance(value, str):
        _check_printf(limits, value, tuple(args) or kwargs)
    elif name == "replace" and isinstance(value, str):
        _estimate_str_method(limits, value, "replace", args, kwargs)


def _materialize(limits: RenderLimits, value: Any, what: str) -> Any:
    if isinstance(value, Iterator):
        value = list(value)
        limits.size(len(value), what)
    return value


def _check_join_sum(limits: RenderLimits, name: str, items: Any, rest: Sequence[Any],
                    kwargs: Mapping[str, Any]) -> None:
    if not isinstance(items, Sequence):
        return
    total = sum(len(i) for i in items if isinstance(i, _SIZED))
    if name == "join":
        sep = rest[0] if rest else kwargs.get("d", "")
        total += len(sep) * max(len(items) - 1, 0) if isinstance(sep, str) else 0
    limits.size(total, f"the result of {name}")


def _wrap_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        limits = _current()
        limits.tick()
        args_list = list(args)
        if len(args_list) > skip:
            check_expanded(limits, args_list[skip], f"the input of the {name} filter")
            if name in ("join", "sum"):
                args_list[skip] = _materialize(limits, args_list[skip], f"the input of {name}")
                _check_join_sum(limits, name, args_list[skip], args_list[skip + 1:], kwargs)
            _filter_checks(limits, name, args_list[skip], tuple(args_list[skip + 1:]), kwargs)
        result = func(*args_list, **kwargs)
        limits.value(result, f"the result of the {name} filter")
        return result

    return checked


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | str | None = None,
            separators: Sequence[str] | None = None, sort_keys: bool = False) -> str:
    # transformers' tojson: plain json.dumps (jinja's own escapes HTML) with its options.
    if indent is not None or separators is not None:
        indent_len = len(indent) if isinstance(indent, str) else max(int(indent or 0), 0)
        extra = _json_extra(x, indent_len, _json_separator_length(separators, 0, 2),
                            _json_separator_length(separators, 1, 2))
        _current().size(extra, "the indentation of tojson")
    # json.dumps unpacks two separators itself (and complains about any other count).
    seps = cast("tuple[str, str] | None", None if separators is None else tuple(separators))
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=seps,
                      sort_keys=sort_keys)


def _ticking(value: Any) -> Any:
    return _Ticking(value)


class _Ticking:
    """A loop's iterable that checks the deadline on every item (keeps ``len`` for
    ``loop.length``)."""

    __slots__ = ("_items",)

    def __init__(self, items: Any) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        limits = _current()
        for item in self._items:
            limits.tick()
            yield item

    def __len__(self) -> int:
        return len(self._items)


def _raise_exception(message: Any) -> NoReturn:
    raise TemplateRaised(str(message))


def _now() -> datetime:
    """The time ``strftime_now`` formats (tests pin it)."""
    return datetime.now()


def _strftime_now(format: str) -> str:  # noqa: A002 - the name templates use
    _check_digits(_current(), str(format), "a strftime width")
    return _now().strftime(format)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    from jinja2.utils import generate_lorem_ipsum

    limits = _current()
    if isinstance(n, int) and isinstance(max, int):
        limits.size(n * max * 12, "lipsum")
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


class _TemplateDict:
    """``dict`` for templates: builds dicts, exposes nothing else of the type."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(Namespace):
    """``namespace`` that refuses underscore names (transformers' rule) and oversized values."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 - Namespace's own trick
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name, value in attrs.items():
            _TemplateNamespace._check(name, value)
        Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check(name, value)
        Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any, value: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise SecurityError(f"chat templates cannot store underscore-prefixed attributes "
                                f"on a namespace, got {name!r}")
        _current().value(value, f"namespace attribute {name!r}")


class _GenerationTag(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}``: marks the assistant's part for training
    masks in transformers; rendering is unchanged."""

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Callable[[], str]) -> str:
        return caller()


class _CodeGenerator(CodeGenerator):
    """jinja2's compiler, but ``a ~ b`` goes through ``checked_concat`` (jinja2 writes it as
    a plain ``str()`` join that no sandbox hook sees)."""

    def visit_Compare(self, node: nodes.Compare, frame: Frame) -> None:
        # ==, in, < ... of two containers walk both in C, as far as they are written out.
        self.write("environment.checked_compare(")
        self.visit(node.expr, frame)
        self.write(", (")
        for operand in node.ops:
            self.write(f"({operand.op!r}, ")
            self.visit(operand.expr, frame)
            self.write("), ")
        self.write("))")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _CodeGenerator

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} "
                            "object is unsafe")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limits = _current()
        limits.tick()
        _check_binop(limits, operator, left, right)
        result = self.binop_table[operator](left, right)
        limits.value(result, f"the result of {operator!r}")
        return result

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        limits = _current()
        limits.tick()
        for value in (*args, *kwargs.values()):  # macro arguments carry state across calls
            limits.value(value, "an argument")
        args = _check_call(limits, obj, args, kwargs)
        result = ImmutableSandboxedEnvironment.call(self, context, obj, *args, **kwargs)
        limits.value(result, f"the result of {getattr(obj, '__name__', 'a call')}()")
        return result

    def checked_compare(self, left: Any, operands: Sequence[tuple[str, Any]]) -> bool:
        """A comparison chain (``a < b < c``), each side bounded by its written-out size."""
        limits = _current()
        limits.tick()
        check_expanded(limits, left, "an operand of a comparison")
        for op, right in operands:
            check_expanded(limits, right, "an operand of a comparison")
            if not _COMPARE[op](left, right):
                return False
            left = right
        return True

    def checked_concat(self, parts: Sequence[Any]) -> str:
        """The ``~`` operator: each operand is written out, so it is bounded first."""
        limits = _current()
        limits.tick()
        for part in parts:
            check_expanded(limits, part, "an operand of '~'")
        result = "".join(str(part) for part in parts)
        limits.value(result, "the result of '~'")
        return result

    @staticmethod
    def concat(parts: Iterable[Any]) -> str:
        # Joins the buffers of captured blocks and macro bodies, which bypass the output count.
        limits = _current()
        limits.tick()
        items = parts if isinstance(parts, list) else list(parts)
        limits.size(sum(len(p) for p in items if isinstance(p, str)), "a captured block")
        return "".join(items)


def _finalize(value: Any) -> Any:
    # Every {{ ... }} value is written out with str() after this.
    check_expanded(_current(), value, "a printed value")
    return value


def _make_environment() -> _Environment:
    env = _Environment(trim_blocks=True, lstrip_blocks=True, finalize=_finalize,
                       extensions=[_GenerationTag, jinja2.ext.loopcontrols])
    env.filters = {name: _wrap_filter(name, func) for name, func in env.filters.items()}
    env.filters["tojson"] = _wrap_filter("tojson", _tojson)
    env.filters[_TICK_FILTER] = _ticking
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now,
                       dict=_TemplateDict(), namespace=_TemplateNamespace, lipsum=_lipsum)
    return env


_ENV = _make_environment()


@functools.lru_cache(maxsize=128)
def _compile_cached(source: str) -> jinja2.Template:
    tree = _ENV.parse(source)
    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, _TICK_FILTER, [], [], None, None,
                                 lineno=loop.lineno)
    code = _ENV.compile(tree)
    return _ENV.template_class.from_code(_ENV, code, _ENV.make_globals(None), None)


def compile_template(source: str, limits: RenderLimits) -> jinja2.Template:
    """The compiled template (cached by source); raises jinja2's syntax errors."""
    token = _limits.set(limits)  # constant folding runs filters at compile time
    try:
        return _compile_cached(source)
    finally:
        _limits.reset(token)


def render_template(template: jinja2.Template, variables: Mapping[str, Any],
                    limits: RenderLimits) -> str:
    """Render with ``limits``; raises jinja2's errors, ``LimitExceeded`` or
    ``TemplateRaised`` for the caller to translate."""
    token = _limits.set(limits)
    chunks = cast(Generator[str, None, None], template.generate(**variables))
    try:
        parts: list[str] = []
        total = 0
        for chunk in chunks:
            limits.tick()
            total += len(chunk)
            limits.size(total, "the rendered prompt")
            parts.append(chunk)
        return "".join(parts)
    finally:
        chunks.close()
        _limits.reset(token)
