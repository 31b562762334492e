"""Lazy grammars wait for their trigger in the shim (native/lk_trigger.cpp): a bounded tail
of the output is searched each token, and once triggered the grammar constrains exactly as
llama.cpp's own lazy grammar does (compared token by token against the unwrapped
``llama_sampler_init_grammar_lazy_patterns``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

import llamakit
from llamakit import Grammar, GrammarError
from llamakit._config.schema import GrammarConfig
from llamakit._grammar_limits import set_grammar_limits
from llamakit._grammar_triggers import trigger_plan
from llamakit._native.grammar import grammar_stage
from llamakit._native.sampler import TOKEN_DATA

FILLER = ("Some words come before the call, with commas, digits 12345 and marks \"x\"; "
          "then more of them. ")


class _Stage:
    """One grammar sampler, applied to all n_vocab candidates and fed tokens directly."""

    def __init__(self, model: llamakit.Model, ptr: Any) -> None:
        self.native = model._handle.native
        self.ptr = ptr
        self.n_vocab = model.n_vocab

    def mask(self, logits: np.ndarray) -> np.ndarray:
        lib, ffi = self.native.lib, self.native.ffi
        data = np.zeros(self.n_vocab, dtype=TOKEN_DATA)
        data["id"] = np.arange(self.n_vocab, dtype=np.int32)
        data["logit"] = logits
        array = ffi.new("llama_token_data_array *")
        array.data = ffi.cast("llama_token_data *", ffi.from_buffer(data))
        array.size, array.selected, array.sorted = self.n_vocab, -1, False
        assert lib.lk_sampler_apply(self.ptr, array) == 0
        return np.asarray(data["logit"])

    def accept(self, token: int) -> None:
        assert self.native.lib.lk_sampler_accept(self.ptr, token) == 0, \
            self.native.ffi.string(self.native.lib.lk_last_error())

    @property
    def scanned(self) -> int:
        return int(self.native.lib.lk_sampler_grammar_scanned(self.ptr))

    def free(self) -> None:
        self.native.lib.llama_sampler_free(self.ptr)


def _ours(model: llamakit.Model, text: str, patterns: Sequence[str],
          tokens: Sequence[int] = ()) -> _Stage:
    handle = model._handle
    return _Stage(model, grammar_stage(handle.native, handle.vocab, text, "root", lazy=True,
                                       trigger_patterns=patterns, trigger_tokens=tokens))


def _llama_cpp(model: llamakit.Model, text: str, patterns: Sequence[str],
               tokens: Sequence[int] = ()) -> _Stage:
    handle = model._handle
    ffi, lib = handle.native.ffi, handle.native.lib
    kept = [ffi.new("char[]", p.encode()) for p in patterns]
    ptr = lib.llama_sampler_init_grammar_lazy_patterns(
        handle.vocab, text.encode(), b"root", ffi.new("const char *[]", kept) if kept
        else ffi.NULL, len(kept), ffi.new("llama_token[]", list(tokens)) if tokens
        else ffi.NULL, len(tokens))
    assert ptr != ffi.NULL
    return _Stage(model, ptr)


GRAMMAR = 'root ::= [a-z<>0-9 ]* "(" [0-9]+ ")" [ .]*'

#: (id, trigger patterns, scripted text before the random part, what llama.cpp gives the
#: grammar at the trigger, trigger token text). The script ends with the trigger; the
#: match's start often falls inside a token, whose piece the grammar then gets cut. The
#: grammar starts with exactly that text, so a replay that differs breaks it.
CASES = [
    ("word", ["<tool>"], FILLER * 2 + "okay <tool>", "<tool>", None),
    ("full-match", [r"^[\s\S]*?(<tool>)[\s\S]*$"], FILLER * 3 + "ab<tool>", "<tool>", None),
    ("group-mid-token", ["call(ing)"], FILLER + " calling", "ing", None),
    ("lazy-prefix-unanchored", [r"[\s\S]*?(tool)"], FILLER + " a toolbox", "toolbox", None),
    ("bounded-class", ["x[0-9]{2,4}y"], FILLER + " x1234y", "x1234y", None),
    ("lookahead-boundary", [r"\bfoo(?=bar)"], FILLER + " foobar", "foobar", None),
    ("second-pattern", ["never", "said (quo)tes"], FILLER * 2 + " he said quotes", "quotes",
     None),
    ("anchored-start", [r"^\s?so"], "some", " some", None),
    ("backreference", [r"(o)\1k"], FILLER + " look", "ook", None),
    ("anchor-mid-output", [r"^\s?(tool)", "<t>"], FILLER + " tool <t>", "<t>", None),
    ("long-wait", ["<tool>"], FILLER * 60 + "<tool>", "<tool>", None),
    ("token", [], FILLER + " the end", " end", " end"),
]


@pytest.mark.parametrize(("patterns", "script", "expected", "token_text"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_same_constraint_as_llama_cpp(model: llamakit.Model, patterns: list[str],
                                      script: str, expected: str,
                                      token_text: str | None) -> None:
    """Token by token, the shim's lazy grammar allows exactly what llama.cpp's does, before
    and after the trigger (seeded random logits pick each token after the script)."""
    grammar = f'root ::= "{expected}" [a-z ]{{0,20}} "(" [0-9]{{1,3}} ")" [ .]*'
    script_tokens = model.tokenize(script, add_special=False)
    tokens = [model.tokenize(token_text, add_special=False)[-1]] if token_text else []
    ours, theirs = _ours(model, grammar, patterns, tokens), _llama_cpp(model, grammar,
                                                                        patterns, tokens)
    rng = np.random.default_rng(7)
    triggered_at = None
    try:
        for step in range(len(script_tokens) + 40):
            logits = rng.normal(size=model.n_vocab).astype(np.float32)
            a, b = ours.mask(logits), theirs.mask(logits)
            np.testing.assert_array_equal(a, b)
            if triggered_at is None and np.isinf(a).any():
                triggered_at = step
            token = script_tokens[step] if step < len(script_tokens) else int(np.argmax(a))
            if model.is_eog(token):
                break
            ours.accept(token)
            theirs.accept(token)
    finally:
        ours.free()
        theirs.free()
    assert triggered_at is not None and triggered_at <= len(script_tokens)


def test_reset_and_clone_wait_again(model: llamakit.Model) -> None:
    """After a trigger, reset waits for the trigger again; a clone keeps the state."""
    chain = llamakit.SamplerChain(model).add_grammar(Grammar(GRAMMAR).lazy_on(words=["<t>"]))
    for token in model.tokenize("hi <t>", add_special=False):
        chain.accept(token)
    logits = np.zeros(model.n_vocab, dtype=np.float32)
    assert np.isinf(chain.apply(logits).logits).any()
    twin = chain.clone()
    chain.reset()
    assert not np.isinf(chain.apply(logits).logits).any()
    assert np.isinf(twin.apply(logits).logits).any()


def _scanned_per_token(model: llamakit.Model, pattern: str, n: int) -> list[int]:
    stage = _ours(model, GRAMMAR, [pattern])
    tokens = model.tokenize(FILLER * (n // 20 + 2), add_special=False)[:n]
    counts = []
    try:
        for token in tokens:
            before = stage.scanned
            stage.accept(token)
            counts.append(stage.scanned - before)
    finally:
        stage.free()
    return counts


@pytest.mark.parametrize("pattern", ["<tool>", r"^[\s\S]*?(<tool_call>)[\s\S]*$",
                                     r"x[0-9]{1,40}y"])
def test_work_per_token_does_not_grow_with_the_output(model: llamakit.Model,
                                                      pattern: str) -> None:
    """The bytes given to std::regex for one token are bounded by the pattern's reach and
    the token's piece, however long the output already is."""
    _, reach = trigger_plan(pattern, 1024)
    counts = _scanned_per_token(model, pattern, 4000)
    longest = max(len(model.token_to_bytes(t, special=True))
                  for t in model.tokenize(FILLER, add_special=False))
    assert max(counts) <= reach + longest
    assert sum(counts[-200:]) <= sum(counts[200:400]) + 200 * longest
    assert sum(counts) > 0


def test_unbounded_patterns_are_refused(model: llamakit.Model) -> None:
    """A trigger pattern that can match without bound is refused at creation, naming the
    [grammar] limit; the any-text prefix and suffix of full patterns are fine."""
    # Without a first group that always matches, llama.cpp's start is the output's start.
    for pattern in ["<tool>.*", r"^[\s\S]*(<tool>)", "a+b", r"(a)\2", r"[\s\S]*?<tool>",
                    r"[\s\S]*?(a?)<tool>"]:
        with pytest.raises(GrammarError, match="max_trigger_match_bytes"):
            Grammar(GRAMMAR).lazy_on(patterns=[pattern])
    Grammar(GRAMMAR).lazy_on(patterns=[r"^[\s\S]*?(<tool>)[\s\S]*$", r"[\s\S]*?(a|b)"])
    assert trigger_plan(r"^[\s\S]*?(<tool>)[\s\S]*$", 100) == ("(<tool>)", 7)
    assert trigger_plan(r"^(ab)[\s\S]*$", 100) == ("^(ab)", 3)
    assert trigger_plan(r"a{2,5}(b|cd)?", 100) == (r"a{2,5}(b|cd)?", 8)
    with pytest.raises(GrammarError, match="unbounded"):
        trigger_plan(r"a|[\s\S]*?b", 1000)


@pytest.fixture
def small_reach() -> Iterator[None]:
    set_grammar_limits(GrammarConfig(max_trigger_match_bytes=8))
    try:
        yield
    finally:
        set_grammar_limits(None)


def test_the_reach_limit_comes_from_the_grammar_config(small_reach: None,
                                                       ctx: llamakit.Context) -> None:
    with pytest.raises(GrammarError, match="max_trigger_match_bytes=8"):
        Grammar(GRAMMAR).lazy_on(words=["a long trigger word"])
    with pytest.raises(GrammarError, match="max_trigger_match_bytes=8"):
        ctx.generate("x", max_new_tokens=1, grammar=GRAMMAR,
                     grammar_trigger_patterns=["[a-z]{1,20}"])
    Grammar(GRAMMAR).lazy_on(words=["<t>"])


def test_chat_tool_call_grammar_same_as_llama_cpp(synthetic_model: Any,
                                                  llama_cpp_dir: Any) -> None:
    """The Hermes 2 Pro template's lazy tool-call grammar and trigger, as Context.chat builds
    them, constrain exactly as llama.cpp's own lazy grammar after text and the trigger."""
    from llamakit._chat.tools import plan_native

    source = (llama_cpp_dir / "models/templates/"
              "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja").read_text()
    path = synthetic_model(vocab="llama-bpe", n_embd=32, n_layer=1, n_head=4, n_head_kv=2,
                           chat_template=source)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}]
    with llamakit.load_model(path, backend="cpu") as model:
        plan = plan_native(model, source, [{"role": "user", "content": "Weather?"}],
                           tools=tools, tool_choice="auto", parallel_tool_calls=None,
                           reasoning_format=None, reasoning_budget=None,
                           continue_final_message=False, chat_template_kwargs=None,
                           json_schema=None)
        grammar = plan.grammar
        assert grammar is not None and grammar.lazy and grammar.trigger_patterns
        args = (model, grammar.text, list(grammar.trigger_patterns),
                list(grammar.trigger_tokens))
        ours, theirs = _ours(*args), _llama_cpp(*args)
        script = model.tokenize(FILLER + "Let me check.<tool_call>\n", add_special=False)
        rng = np.random.default_rng(3)
        constrained = 0
        try:
            for step in range(len(script) + 30):
                logits = rng.normal(size=model.n_vocab).astype(np.float32)
                a, b = ours.mask(logits), theirs.mask(logits)
                np.testing.assert_array_equal(a, b)
                constrained += bool(np.isinf(a).any())
                token = script[step] if step < len(script) else int(np.argmax(a))
                if model.is_eog(token):
                    break
                ours.accept(token)
                theirs.accept(token)
        finally:
            ours.free()
            theirs.free()
        assert constrained >= 20
