"""Grammars: GBNF text and files, parser errors, lazy triggers, grammar dead ends."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np
import pytest

import llamakit
from llamakit import Grammar, GrammarError, SamplerChain

DIGITS = 'root ::= [0-9]{1,3} "."'


def test_generation_follows_a_gbnf_grammar(ctx: llamakit.Context) -> None:
    """Output under a grammar matches it, and ends when the grammar is complete."""
    for seed in range(5):
        result = ctx.generate("Count:", max_new_tokens=20, grammar=DIGITS, seed=seed)
        body = result.text
        assert body.endswith(".") and body[:-1].isdigit() and 1 <= len(body) <= 4, body
        assert result.finish_reason == "eog"


def test_grammar_from_file(ctx: llamakit.Context, tmp_path: Path) -> None:
    """A .gbnf file given as a path or through Grammar.from_file constrains the same way."""
    path = tmp_path / "yes.gbnf"
    path.write_text('root ::= ("yes" | "no") "!"\n', encoding="utf-8")
    assert ctx.generate("?", max_new_tokens=8, grammar=path, seed=1).text in ("yes!", "no!")
    chain = SamplerChain(ctx.model).add_grammar(Grammar.from_file(path)).add_dist(seed=2)
    assert ctx.generate("?", max_new_tokens=8, sampler=chain).text in ("yes!", "no!")
    with pytest.raises(GrammarError, match="cannot read"):
        Grammar.from_file(tmp_path / "missing.gbnf")


def test_llama_cpp_example_grammars_load(model: llamakit.Model, llama_cpp_dir: Path) -> None:
    """Every grammar shipped in llama.cpp's grammars/ folder builds a stage."""
    files = sorted((llama_cpp_dir / "grammars").glob("*.gbnf"))
    assert len(files) >= 5
    for path in files:
        SamplerChain(model).add_grammar(Grammar.from_file(path)).close()


@pytest.mark.parametrize(("text", "message"), [
    ('root ::= "a', "unexpected end of input (the grammar ends inside a string, character "
                    "class or group) in the rule at line 1, column 1"),
    ("root ::= foo", "undefined rule 'foo'"),
    ('root ::= "a"\nroot2 :: "b"', "expecting ::= at line 2, column 7"),
    ('root ::= ("a"', "expecting ')' at the end of the grammar"),
    ('x ::= "b"\n  root ::= [a-', "unexpected end of input (the grammar ends inside a string, "
                                 "character class or group) in the rule at line 2, column 3"),
    ('root ::= "a"{5,2}', "maximum is smaller"),
    ('root ::= "a"{9999}', "number of repetitions exceeds"),
    ('root ::= *"a"', "expecting preceding item"),
    ('root ::= <[99999999999]>', "token id is too big"),
    ('root ::= root "a"', "left recursion"),
    ('other ::= "a"', "no rule named 'root'"),
    ("# only a comment\n", "no rules"),
    ("root ::= " + "(" * 300 + '"a"' + ")" * 300, "nests parentheses 300 deep"),
], ids=lambda v: (v or "")[:24])
def test_invalid_grammars_raise_with_the_parsers_message(model: llamakit.Model, text: str,
                                                         message: str | None) -> None:
    """A bad grammar is GrammarError carrying llama.cpp's reason, never an abort."""
    with pytest.raises(GrammarError) as info:
        SamplerChain(model).add_grammar(text)
    if message is not None:
        assert message in str(info.value)


def test_invalid_grammar_in_generate(ctx: llamakit.Context) -> None:
    """generate(grammar=...) raises GrammarError too, and llama.cpp prints nothing."""
    with pytest.raises(GrammarError, match="undefined rule"):
        ctx.generate("Hi", max_new_tokens=2, grammar="root ::= missing")
    with pytest.raises(GrammarError):
        ctx.generate("Hi", max_new_tokens=2, grammar="   ")


def test_lazy_grammar_applies_after_its_trigger(ctx: llamakit.Context) -> None:
    """A lazy grammar leaves text free until a trigger word, then constrains the rest."""
    grammar = Grammar.from_string('root ::= "the" [0-9]{2} ";"').lazy_on(words=["the"])
    the = ctx.model.tokenize("the", add_special=False)[-1:]  # SPM: the token " the"
    by_keywords = {"grammar": grammar.text, "grammar_trigger_words": ["the"]}
    for seed, constraint in enumerate([{"grammar": grammar}, by_keywords, by_keywords]):
        # The bias makes " the" come first; after it only the grammar's tokens may follow.
        result = ctx.generate("x", max_new_tokens=40, seed=seed, logit_bias={the[0]: 30.0},
                              temperature=1.0, **constraint)
        tail = result.text[result.text.index("the") + 3:]
        assert tail[:2].isdigit() and tail[2:] == ";", result.text
        assert result.finish_reason == "eog"


def test_lazy_grammar_by_pattern_and_token(model: llamakit.Model) -> None:
    """Lazy grammars take regex trigger patterns and trigger tokens; bad regexes raise."""
    chain = SamplerChain(model).add_grammar_lazy_patterns(
        'root ::= "x"', trigger_patterns=["[\\s\\S]*?(<tool>)"], trigger_tokens=[5])
    assert chain.stages == ["grammar"]
    with pytest.raises(GrammarError, match="regular expression"):
        SamplerChain(model).add_grammar_lazy_patterns('root ::= "x"', trigger_patterns=["(("])
    with pytest.raises(GrammarError, match="trigger"):
        Grammar('root ::= "x"', lazy=True)
    with pytest.raises(llamakit.InvalidTokenError):
        SamplerChain(model).add_grammar_lazy_patterns('root ::= "x"', trigger_tokens=[-4])


def test_grammar_dead_end_is_an_error_not_an_abort(ctx: llamakit.Context) -> None:
    """When other stages ban every token the grammar allows, sampling raises GrammarError."""
    allowed = [t for t in range(ctx.model.n_vocab)
               if ctx.model.token_to_piece(t) in ("a", "▁a", " a")]
    bans = {t: -math.inf for t in allowed}
    with pytest.raises(GrammarError, match="grammar"):
        ctx.generate("Hi", max_new_tokens=3, grammar='root ::= "a"', logit_bias=bans,
                     temperature=0)
    chain = SamplerChain(ctx.model).add_grammar('root ::= "b"').add_greedy()
    with pytest.raises(GrammarError, match="does not allow"):
        chain.accept(ctx.model.tokenize("zzz", add_special=False)[0])


def test_grammar_fast_and_slow_paths_both_constrain(ctx: llamakit.Context) -> None:
    """Whether the chain's first choice fits the grammar or not, the token is the best one
    the grammar allows; both paths run in one generation."""
    class Last:
        """Records, for each accepted token, what the last apply before it saw."""

        def __init__(self) -> None:
            self.seen: tuple[bool, int] = (False, -1)
            self.steps: list[tuple[bool, int, int]] = []

        def apply(self, candidates: llamakit.Candidates) -> None:
            masked = bool(np.isneginf(candidates.logits).any())
            self.seen = (masked, int(candidates.ids[np.argmax(candidates.logits)]))

        def accept(self, token: int) -> None:
            self.steps.append((*self.seen, token))

    letters = {t: 8.0 for t in range(ctx.model.n_vocab)
               if re.fullmatch("[a-z ]+", ctx.model.token_to_piece(t))}
    last = Last()
    chain = (SamplerChain(ctx.model).add_grammar('root ::= [a-z ]{1,12} "."')
             .add_logit_bias(letters).add_custom(last).add_greedy())
    result = ctx.generate("Words:", max_new_tokens=30, sampler=chain)
    assert re.fullmatch("[a-z ]{1,12}[.]", result.text), result.text
    generated = last.steps[len(result.prompt_tokens):]
    assert all(best == token for _, best, token in generated)
    assert {masked for masked, _, _ in generated} == {True, False}


def test_json_schema_warning_is_logged(model: llamakit.Model,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """A pattern llama.cpp cannot express relaxes to any string, with a logged warning."""
    with caplog.at_level(logging.WARNING, logger="llamakit.sampling"):
        grammar = Grammar.from_json_schema({"type": "string", "pattern": "abc"}, model=model)
    assert "pattern abc is not supported" in caplog.text
    assert "root ::=" in grammar.text


@pytest.mark.parametrize("schema", [
    "{not json", {"type": "object", "properties": {"a": {"$ref": "#/missing"}}},
    {"type": "string", "pattern": "^(ab$"}, 42, [1, 2],
], ids=["bad-json", "bad-ref", "bad-pattern", "number", "list"])
def test_invalid_json_schemas_raise(model: llamakit.Model, schema: object) -> None:
    """Schemas llama.cpp's converter rejects are GrammarError with its message."""
    with pytest.raises(GrammarError):
        Grammar.from_json_schema(schema, model=model)  # type: ignore[arg-type]


def test_deep_json_schema_is_refused(model: llamakit.Model) -> None:
    """A schema nested deeper than the converter can recurse is refused up front."""
    schema: dict[str, object] = {"type": "string"}
    for _ in range(300):
        schema = {"type": "array", "items": schema}
    with pytest.raises(GrammarError, match="nests deeper"):
        Grammar.from_json_schema(schema, model=model)


def test_only_one_constraint_at_a_time(ctx: llamakit.Context) -> None:
    """grammar, json_schema and response_format exclude each other."""
    with pytest.raises(llamakit.SamplerError, match="only one"):
        ctx.generate("x", max_new_tokens=1, grammar=DIGITS, json_schema={"type": "object"})
    with pytest.raises(GrammarError, match="response_format"):
        ctx.generate("x", max_new_tokens=1, response_format={"type": "xml"})
    with pytest.raises(llamakit.SamplerError, match="need a grammar"):
        ctx.generate("x", max_new_tokens=1, grammar_trigger_words=["a"])
