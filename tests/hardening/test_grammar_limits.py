"""Class 5 of issue 21: grammars, JSON schemas and trigger patterns are bounded before
llama.cpp's recursive parser, converter and per-token matcher see them."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from attacks import Attack, failures, run_attacks

import llamakit
from llamakit._config.schema import GrammarConfig
from llamakit._grammar_limits import set_grammar_limits

_CTX = "ctx = model().new_context(n_ctx=64, n_batch=16, n_threads=1)\n"
_GEN = "ctx.generate('hi', max_new_tokens=4, temperature=0, "
_GRAMMAR = ("GrammarError", "SamplerError", "ValueError")

ATTACKS = [
    Attack("chain-of-200k-rules", _CTX + "g = 'root ::= r0\\n' + ''.join(f'r{i} ::= r{i + 1}\\n' "
           "for i in range(200000)) + 'r200000 ::= \"a\"\\n'\n" + _GEN + "grammar=g)", _GRAMMAR),
    Attack("chain-of-30k-short-rules", _CTX + "g = 'root ::= a0\\n' + ''.join(f'a{i}::=a{i + 1}\\n'"
           " for i in range(30000)) + 'a30000::=\"a\"\\n'\n" + _GEN + "grammar=g)", _GRAMMAR),
    Attack("ref-loop-in-allOf", _CTX + _GEN + "json_schema={'$defs': {"
           "'a': {'allOf': [{'$ref': '#/$defs/b'}]}, 'b': {'allOf': [{'$ref': '#/$defs/a'}]}},"
           " '$ref': '#/$defs/a'})", _GRAMMAR),
    Attack("ref-to-itself", _CTX + _GEN + "json_schema={'$defs': {'a': {'$ref': '#/$defs/a'}},"
           " '$ref': '#/$defs/a'})", _GRAMMAR),
    Attack("ref-loop-in-anyOf", _CTX + _GEN + "json_schema={'$defs': {'a': {'anyOf': ["
           "{'$ref': '#/$defs/a'}, {'type': 'string'}]}}, '$ref': '#/$defs/a'})", _GRAMMAR),
    Attack("enum-of-200k", _CTX + _GEN + "json_schema={'enum': [str(i) for i in range(200000)]})",
           _GRAMMAR, timeout=60),
    Attack("alternatives-50k", _CTX + _GEN + "grammar='root ::= ' + ' | '.join("
           "f'\"{i}\"' for i in range(50000)))", _GRAMMAR, timeout=60),
    Attack("trigger-nested-quantifier", _CTX + _GEN + "grammar='root ::= \"a\"', "
           "grammar_trigger_patterns=['(a+)+b'])", _GRAMMAR),
    Attack("trigger-too-long", _CTX + _GEN + "grammar='root ::= \"a\"', "
           "grammar_trigger_patterns=['a' * 5000])", _GRAMMAR),
    # llama.cpp's lazy grammar ran std::regex_match over the whole output every token; its
    # recursive executor died of SIGSEGV at about 45 KB with this pattern (8 MB stack).
    Attack("full-trigger-pattern-over-6-MB", "m = model()\n"
           "pieces = {t: m.token_to_bytes(t, special=True) for t in range(m.n_vocab)}\n"
           "t = max(pieces, key=lambda t: len(pieces[t]) if b'<' not in pieces[t] else 0)\n"
           "g = llamakit.Grammar('root ::= \"x\"').lazy_on("
           "patterns=[r'^[\\s\\S]*?(<tool_call>)[\\s\\S]*$'])\n"
           "chain = llamakit.SamplerChain(m).add_grammar(g)\n"
           "for _ in range(50000):\n    chain.accept(t)\n"
           "result = 50000 * len(pieces[t])", ("ok",), timeout=120),
    Attack("recursive-schema-through-properties", _CTX + _GEN + "json_schema={'$defs': {'n': "
           "{'type': 'object', 'properties': {'next': {'$ref': '#/$defs/n'}}}}, "
           "'$ref': '#/$defs/n'})", ("ok",)),
]


def test_grammar_attacks(tiny_model_path: Path, tmp_path: Path) -> None:
    """No grammar, schema or trigger crashes or hangs; each over a limit names it."""
    results = run_attacks(ATTACKS, tiny_model_path, tmp_path)
    assert failures(ATTACKS, results) == {}
    assert "max_rules" in results["chain-of-30k-short-rules"]["message"]
    assert "max_alternatives" in results["alternatives-50k"]["message"]
    assert int(results["full-trigger-pattern-over-6-MB"]["result"]) > 10**6


@pytest.fixture
def tight_limits() -> Iterator[None]:
    set_grammar_limits(GrammarConfig(max_rules=3, max_alternatives=2))
    try:
        yield
    finally:
        set_grammar_limits(None)


def test_the_limits_come_from_the_grammar_config(tight_limits: None) -> None:
    """Lowered [grammar] limits refuse what the defaults take, naming the setting."""
    with pytest.raises(llamakit.GrammarError, match="max_rules=3"):
        llamakit.Grammar.from_string('root ::= a\na ::= b\nb ::= c\nc ::= "x"')
    with pytest.raises(llamakit.GrammarError, match="max_alternatives=2"):
        llamakit.Grammar.from_string('root ::= "a" | "b" | "c" | "d"')
    llamakit.Grammar.from_string('root ::= "a" | "b"')


def test_ctrl_c_during_grammar_sampling_stops_generation(model: llamakit.Model) -> None:
    """SIGINT while a grammar samples raises KeyboardInterrupt before the output is done."""
    main = threading.main_thread().ident
    assert main is not None
    schema = {"enum": [f"value number {i}" for i in range(300)]}
    pieces: list[str] = []
    first = threading.Event()

    def interrupt() -> None:
        first.wait(60)
        signal.pthread_kill(main, signal.SIGINT)

    with model.new_context(n_ctx=256, n_threads=1) as ctx:
        thread = threading.Thread(target=interrupt)
        thread.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                for piece in ctx.stream("hi", max_new_tokens=200, temperature=0,
                                        json_schema=schema, stop=["\u2603"]):
                    pieces.append(piece)
                    first.set()
                    threading.Event().wait(0.05)
        finally:
            first.set()
            thread.join()
        assert 0 < len(pieces) < 200
        ctx.generate("hi", max_new_tokens=2)  # still usable
