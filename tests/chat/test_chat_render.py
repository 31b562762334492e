"""apply_chat_template: what templates see, errors, prefills, llama.cpp's built-in formats."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pydantic
import pytest

import llamakit

USER = [{"role": "user", "content": "Hello"}]
SHOW = "{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}"
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + "
          "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")


def test_template_sees_hugging_face_variables(fixed_now: dt.datetime) -> None:
    """bos_token, eos_token, add_generation_prompt, tools, documents, extra kwargs and
    strftime_now are there as transformers provides them."""
    source = ("{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools|length }}|"
              "{{ documents is none }}|{{ enable_thinking }}|{{ strftime_now('%d %b %Y') }}")
    text = llamakit.apply_chat_template(USER, source, tools=[{"type": "function"}],
                                        bos_token="<s>", eos_token="</s>",
                                        enable_thinking=False)
    assert text == "<s>|</s>|True|1|True|False|14 Jul 2025"


def test_tojson_takes_its_arguments_and_keeps_unicode() -> None:
    """tojson is transformers' json.dumps (no HTML escaping) with indent/sort_keys/..."""
    source = "{{ tools[0]|tojson(indent=2, sort_keys=True) }}|{{ 'é<&>'|tojson }}"
    text = llamakit.apply_chat_template(USER, source, tools=[{"b": 1, "a": "x"}])
    assert text == '{\n  "a": "x",\n  "b": 1\n}|"é<&>"'


def test_raise_exception_becomes_chat_template_error() -> None:
    """A template's raise_exception(...) is a ChatTemplateError carrying its message."""
    with pytest.raises(llamakit.ChatTemplateError, match="Only user and assistant"):
        llamakit.apply_chat_template(
            [{"role": "system", "content": "x"}],
            "{% if messages[0].role == 'system' %}"
            "{{ raise_exception('Only user and assistant roles') }}{% endif %}")


def test_syntax_error_names_the_line() -> None:
    """A broken template is a ChatTemplateError that says where."""
    with pytest.raises(llamakit.ChatTemplateError, match="line 2"):
        llamakit.apply_chat_template(USER, "ok\n{% for m in messages %}")


def test_openai_shaped_messages_are_normalised() -> None:
    """None values are dropped, content parts pass through, reasoning is aliased."""
    messages = [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}],
         "reasoning": "because"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ]
    source = ("{% for m in messages %}{{ m.content is defined }},{{ m.reasoning_content }},"
              "{{ m.thinking }};{% endfor %}{{ messages[1].content[0].text }}")
    assert llamakit.apply_chat_template(messages, source) == \
        "False,because,because;True,,;hi"
    assert messages[0]["content"] is None  # the caller's messages are not changed


def test_message_objects_are_accepted() -> None:
    """Dataclasses and pydantic models (the OpenAI SDK's messages) work like dicts."""
    @dataclasses.dataclass
    class Message:
        role: str
        content: str

    class Pydantic(pydantic.BaseModel):
        role: str
        content: str
        name: str | None = None

    text = llamakit.apply_chat_template([Message("user", "a"), Pydantic(role="assistant",
                                                                        content="b")], SHOW)
    assert text == "[user:a][assistant:b]"


def test_rich_values_reach_templates_as_placeholders() -> None:
    """Objects other than JSON data become "<TypeName>", so no method reaches the sandbox."""
    class Secret:
        def delete(self) -> None:
            raise AssertionError("must not be reachable")

    text = llamakit.apply_chat_template([{"role": "user", "content": Secret()}], SHOW)
    assert text == "[user:<Secret>]"


@pytest.mark.parametrize("messages", [[], "hello", [{"content": "no role"}], [42],
                                      {"role": "user", "content": "not a list"}])
def test_bad_conversations_are_chat_template_errors(messages: Any) -> None:
    """Empty or malformed conversations are ChatTemplateError (a ValueError)."""
    with pytest.raises(llamakit.ChatTemplateError):
        llamakit.apply_chat_template(messages, SHOW)


def test_tools_must_be_schemas() -> None:
    """Tools are JSON-schema dicts; anything else is a ChatTemplateError."""
    with pytest.raises(llamakit.ChatTemplateError, match="tool 0"):
        llamakit.apply_chat_template(USER, SHOW, tools=["get_weather"])  # type: ignore[list-item]


def test_continue_final_message_ends_inside_the_last_message() -> None:
    """A prefill renders the last message without its end-of-turn markers."""
    messages = [*USER, {"role": "assistant", "content": "Sure, "}]
    text = llamakit.apply_chat_template(messages, CHATML, add_generation_prompt=False,
                                        continue_final_message=True)
    assert text == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nSure, "
    with pytest.raises(llamakit.ChatTemplateError, match="exclude each other"):
        llamakit.apply_chat_template(messages, CHATML, continue_final_message=True)


def test_python_callable_templates_get_the_same_variables() -> None:
    """A callable template receives normalised messages and the template variables."""
    seen: dict[str, Any] = {}

    def render(messages: list[dict[str, Any]], **kwargs: Any) -> str:
        seen.update(kwargs, messages=messages)
        return "".join(m["content"] for m in messages)

    assert llamakit.apply_chat_template(USER, render, bos_token="<s>", foo=1) == "Hello"
    assert seen == {"messages": USER, "add_generation_prompt": True, "tools": None,
                    "documents": None, "bos_token": "<s>", "foo": 1}


def test_builtin_names_come_from_llama_cpp() -> None:
    """llamakit lists llama.cpp's built-in formats."""
    names = llamakit.builtin_chat_templates()
    assert {"chatml", "llama3", "gemma", "mistral-v7"} <= set(names)
    assert len(names) == len(set(names)) > 30


def test_builtin_format_renders_in_llama_cpp() -> None:
    """A built-in name renders with llama.cpp's formatter, like the template it stands for."""
    messages = [{"role": "system", "content": "Be brief."}, *USER,
                {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Bye"}]
    assert llamakit.apply_chat_template(messages, "chatml") == \
        llamakit.apply_chat_template(messages, CHATML)
    llama3 = llamakit.apply_chat_template(messages, "llama3", add_generation_prompt=False)
    assert llama3.startswith("<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>")
    assert llama3.endswith("<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>")


def test_builtin_format_joins_text_parts() -> None:
    """List content reaches llama.cpp's formatter as its text parts joined by newlines."""
    messages = [{"role": "user", "content": [{"type": "text", "text": "a"},
                                             {"type": "image_url", "image_url": {}},
                                             {"type": "text", "text": "b"}]}]
    assert llamakit.apply_chat_template(messages, "chatml") == \
        "<|im_start|>user\na\nb<|im_end|>\n<|im_start|>assistant\n"


def test_builtin_format_rejects_what_it_cannot_carry() -> None:
    """Tools and NUL characters are errors for built-in formats, not silently dropped."""
    with pytest.raises(llamakit.ChatTemplateError, match="tools"):
        llamakit.apply_chat_template(USER, "chatml", tools=[{"type": "function"}])
    with pytest.raises(llamakit.ChatTemplateError, match="NUL"):
        llamakit.apply_chat_template([{"role": "user", "content": "a\0b"}], "chatml")


def test_unknown_template_name_lists_the_known_ones() -> None:
    """A name that is no template says which names exist."""
    with pytest.raises(llamakit.ChatTemplateError, match="chatml") as info:
        llamakit.apply_chat_template(USER, "no-such-template")
    assert info.value.template == "no-such-template"


def test_without_any_template_llama_cpp_default_applies() -> None:
    """No template and no model: llama.cpp's default, ChatML."""
    assert llamakit.apply_chat_template(USER) == llamakit.apply_chat_template(USER, "chatml")
