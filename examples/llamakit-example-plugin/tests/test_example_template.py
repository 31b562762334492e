"""The ``example-plain`` chat template, selected by name through the public API."""

from __future__ import annotations

import llamakit

from llamakit_example_plugin import EXAMPLE_PLAIN

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello"},
    {"role": "user", "content": "  How are you?  "},
]


def expected(eos: str) -> str:
    return ("### System:\nBe brief.\n"
            "### User:\nHi\n"
            f"### Assistant:\nHello{eos}\n"
            "### User:\nHow are you?\n"
            "### Assistant:\n")


def test_renders_by_name_with_the_models_eos(model: llamakit.Model) -> None:
    assert model.eos_token is not None
    eos = model.token_to_piece(model.eos_token, special=True)
    assert model.apply_chat_template(CONVERSATION, template="example-plain") == expected(eos)


def test_renders_without_a_model() -> None:
    """``llamakit.apply_chat_template`` with no model: no eos_token to append."""
    text = llamakit.apply_chat_template(CONVERSATION[:2], "example-plain",
                                        add_generation_prompt=False)
    assert text == "### System:\nBe brief.\n### User:\nHi\n"


def test_chat_uses_it(model: llamakit.Model, ctx: llamakit.Context) -> None:
    reply = ctx.chat(CONVERSATION, template="example-plain", max_new_tokens=4, temperature=0)
    assert reply.prompt == model.apply_chat_template(CONVERSATION, template="example-plain")
    assert reply.usage.prompt_tokens == len(reply.generation.prompt_tokens) > 20


def test_does_not_replace_a_models_own_template(model: llamakit.Model) -> None:
    """Without ``matches`` the template applies only by name."""
    assert EXAMPLE_PLAIN not in model.apply_chat_template(CONVERSATION)
    assert "### User:" not in model.apply_chat_template(CONVERSATION)
