"""Class 7 of issue 21: templates that build huge shared structures, messages that contain
themselves, sequence states restored into another sequence, odd logit_bias keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from attacks import Attack, failures, run_attacks

import llamakit

_GROW = ("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}"
         "{% set ns.l = [ns.l, ns.l] %}{% endfor %}")
_RENDER = ("from llamakit._chat.render import apply_chat_template\n"
           "result = apply_chat_template([{'role': 'user', 'content': 'hi'}], {!r})\n")
_CTX = "ctx = model().new_context(n_ctx=64, n_batch=16, n_threads=1)\n"
_LIMIT = ("TemplateLimitError", "ChatTemplateError", "ValueError")

ATTACKS = [
    Attack("tojson-of-shared-list", _RENDER.replace("{!r}", repr(_GROW + "{{ ns.l | tojson }}")),
           _LIMIT, timeout=30),
    Attack("string-of-shared-list",
           _RENDER.replace("{!r}", repr(_GROW + "{{ ns.l | string }}")), _LIMIT, timeout=30),
    Attack("print-shared-list", _RENDER.replace("{!r}", repr(_GROW + "{{ ns.l }}")), _LIMIT,
           timeout=30),
    Attack("tilde-shared-list", _RENDER.replace("{!r}", repr(_GROW + "{{ 'a' ~ ns.l }}")),
           _LIMIT, timeout=30),
    Attack("tojson-of-shared-dict", _RENDER.replace("{!r}", repr(
        "{% set ns = namespace(d={'a': 1}) %}{% for i in range(64) %}"
        "{% set ns.d = {'x': ns.d, 'y': ns.d} %}{% endfor %}{{ ns.d | tojson }}")),
           _LIMIT, timeout=30),
    Attack("compare-shared-lists", _RENDER.replace("{!r}", repr(
        "{% set ns = namespace(a=[1], b=[1]) %}{% for i in range(40) %}"
        "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}"
        "{{ ns.a == ns.b }}")), _LIMIT, timeout=30),
    Attack("tojson-3000-deep", _RENDER.replace("{!r}", repr(
        "{% set ns = namespace(l=[1]) %}{% for i in range(3000) %}{% set ns.l = [ns.l] %}"
        "{% endfor %}{{ ns.l | tojson }}")), _LIMIT, timeout=30),
    Attack("message-contains-itself", _CTX + "m = {'role': 'user', 'content': 'hi'}\n"
           "m['self'] = m\nctx.chat([m], max_new_tokens=1)", ("ChatTemplateError",)),
    Attack("tool-contains-itself", _CTX + "t = {'type': 'function'}; t['function'] = [t]\n"
           "ctx.chat([{'role': 'user', 'content': 'hi'}], tools=[t], max_new_tokens=1)",
           ("ChatTemplateError",)),
    Attack("tools-5000-deep", _CTX + "d = {}\nfor _ in range(5000): d = {'a': d}\n"
           "ctx.chat([{'role': 'user', 'content': 'hi'}], tools=[d], max_new_tokens=1)",
           ("ChatTemplateError",)),
    Attack("logit_bias-superscript", _CTX + "ctx.generate('hi', max_new_tokens=1, "
           "logit_bias={'²': 1.0})", ("SamplerError", "ValueError")),
    Attack("logit_bias-arabic-digit", _CTX + "ctx.generate('hi', max_new_tokens=1, "
           "logit_bias={'٣': 1.0})", ("SamplerError",)),
    Attack("logit_bias-5000-digits", _CTX + "ctx.generate('hi', max_new_tokens=1, "
           "logit_bias={'9' * 5000: 1.0})", ("SamplerError",)),
]


def test_chat_and_sequence_attacks(tiny_model_path: Path, tmp_path: Path) -> None:
    """No attack of the class crashes, hangs or raises an untyped error."""
    results = run_attacks(ATTACKS, tiny_model_path, tmp_path)
    assert failures(ATTACKS, results) == {}
    # Size or time, whichever the walk reaches first on a busy machine; both are limits.
    assert "max_" in results["tojson-of-shared-list"]["message"]


def test_a_shared_sub_structure_that_is_not_a_cycle_is_fine(ctx: llamakit.Context) -> None:
    """The same dict twice in a message is data, not a cycle."""
    shared = {"k": "v"}
    ctx.chat([{"role": "user", "content": "hi", "a": shared, "b": [shared, shared]}],
             max_new_tokens=1)


def test_a_sequence_restored_into_another_one_generates_as_a_fresh_context(
        model: llamakit.Model) -> None:
    """Sequence 1's state restored into sequence 0 does not leak into the next prompt."""
    def new() -> llamakit.Context:
        return model.new_context(n_ctx=128, n_batch=32, n_threads=1, n_seq_max=2)

    with new() as first, new() as second, new() as third, new() as fresh:
        first.generate("once upon a time", max_new_tokens=4, temperature=0)
        second.set_seq_state(first.seq_state_bytes(0), seq_id=1)
        third.set_seq_state(second.seq_state_bytes(1), seq_id=0)
        assert third.kv.seq_pos_max(0) >= 0  # the restored cells are there
        got = third.generate("the cat", max_new_tokens=8, temperature=0).tokens
        want = fresh.generate("the cat", max_new_tokens=8, temperature=0).tokens
    assert got == want


@pytest.mark.parametrize("key", [" 15 ", "-1", "15"])
def test_ascii_digit_keys_are_still_token_ids(ctx: llamakit.Context, key: str) -> None:
    """logit_bias keeps taking token ids written as ASCII digits."""
    if key == "-1":
        with pytest.raises(llamakit.TokenizeError):
            ctx.generate("hi", max_new_tokens=1, logit_bias={key: 1.0})
    else:
        ctx.generate("hi", max_new_tokens=1, logit_bias={key: 1.0})
