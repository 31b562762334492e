"""Context.chat / chat_stream: prompt building, stopping, OpenAI shape, KV cache reuse."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import llamakit
from llamakit._config.schema import ChatConfig

USER = [{"role": "user", "content": "Hi there"}]


@pytest.fixture
def scripted_ctx(scripted_model: llamakit.Model) -> Iterator[llamakit.Context]:
    with scripted_model.new_context(n_ctx=512, n_batch=64, n_threads=2) as context:
        yield context


def test_scripted_model_follows_its_script(scripted_model: llamakit.Model,
                                           scripted_model_path: Any) -> None:
    """The crafted weights make greedy decoding say "Hello" "!" and then <|im_end|>
    (checked on the raw generate API, so the chat tests below rest on it)."""
    with scripted_model.new_context(n_ctx=64, n_threads=1) as ctx:
        out = ctx.generate([scripted_model_path.newline], max_new_tokens=5, temperature=0)
    assert out.tokens == [scripted_model_path.hello, scripted_model_path.bang]
    assert out.finish_reason == "eog"


def test_chat_stops_at_end_of_generation(scripted_ctx: llamakit.Context) -> None:
    """The reply ends at <|im_end|>: content without it, finish_reason "stop"."""
    result = scripted_ctx.chat(USER, temperature=0, max_new_tokens=20)
    assert result.content == "Hello!"
    assert result.finish_reason == "stop" and result.generation.finish_reason == "eog"
    assert result.role == "assistant"
    assert result.prompt.endswith("<|im_start|>user\nHi there<|im_end|>\n"
                                  "<|im_start|>assistant\n")


def test_chat_result_is_openai_shaped(scripted_ctx: llamakit.Context) -> None:
    """role/content/finish_reason/usage, with usage counting prompt and reply tokens."""
    result = scripted_ctx.chat(USER, temperature=0)
    prompt_tokens = len(result.generation.prompt_tokens)
    assert result.to_dict() == {
        "role": "assistant", "content": "Hello!", "finish_reason": "stop",
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2,
                  "total_tokens": prompt_tokens + 2}}
    assert result.message == {"role": "assistant", "content": "Hello!"}


def test_chat_length_and_stop_string(scripted_ctx: llamakit.Context) -> None:
    """max_new_tokens ends with "length"; a stop string ends with "stop" and is cut."""
    short = scripted_ctx.chat(USER, temperature=0, max_new_tokens=1)
    assert (short.content, short.finish_reason) == ("Hello", "length")
    stopped = scripted_ctx.chat(USER, temperature=0, stop=["lo"])
    assert (stopped.content, stopped.finish_reason) == ("Hel", "stop")
    assert stopped.generation.finish_reason == "stop"


def test_chat_stream_yields_the_reply(scripted_ctx: llamakit.Context) -> None:
    """Streamed pieces join to chat()'s content; the stream's result is the ChatResult."""
    stream = scripted_ctx.chat_stream(USER, temperature=0)
    assert "".join(stream) == "Hello!"
    assert stream.result is not None and stream.result.finish_reason == "stop"
    assert stream.result.usage.completion_tokens == 2


def test_multi_turn_reuses_the_kv_cache(scripted_ctx: llamakit.Context) -> None:
    """Turns 2 and 3 evaluate only what is new: the previous prompt and reply are cached."""
    scripted_ctx.deterministic = False  # reuse the whole shared prefix, as this test checks
    messages: list[dict[str, str]] = [{"role": "system", "content": "You are brief."},
                                      {"role": "user", "content": "Hi"}]
    previous = None
    for turn in range(3):
        result = scripted_ctx.chat(messages, temperature=0)
        timings = result.generation.timings
        if previous is None:
            assert timings.prompt_tokens_cached == 0
        else:
            seen = len(previous.generation.prompt_tokens) + len(previous.generation.tokens)
            assert timings.prompt_tokens_cached == seen
            assert result.generation.prompt_tokens[:seen] == \
                previous.generation.prompt_tokens + previous.generation.tokens
        messages += [result.message, {"role": "user", "content": f"Again {turn}"}]
        previous = result


def test_prefill_continues_the_last_assistant_message(scripted_ctx: llamakit.Context) -> None:
    """A conversation ending with the assistant's words is continued, not closed."""
    result = scripted_ctx.chat([*USER, {"role": "assistant", "content": "Well,"}],
                               temperature=0, max_new_tokens=2)
    assert result.prompt.endswith("<|im_start|>assistant\nWell,")
    assert "<|im_end|>" not in result.prompt.rsplit("<|im_start|>", 1)[1]


def test_template_kwargs_and_template_choice(scripted_ctx: llamakit.Context) -> None:
    """chat_template_kwargs reach the template; template= and chat_config pick one."""
    source = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
              "{% endfor %}<|im_start|>assistant\n{{ 'quiet' if not loud else 'loud' }}\n")
    result = scripted_ctx.chat(USER, template=source, chat_template_kwargs={"loud": False},
                               max_new_tokens=0)
    assert result.prompt.endswith("assistant\nquiet")  # Jinja drops the last newline
    scripted_ctx.chat_config = ChatConfig(template="llama3")
    try:
        llama3 = scripted_ctx.chat(USER, max_new_tokens=0)
    finally:
        del scripted_ctx.chat_config
    assert llama3.prompt.startswith("<|start_header_id|>user")


def test_special_tokens_in_the_prompt_are_parsed(chatml_model: llamakit.Model) -> None:
    """Template markers become their special tokens, not text pieces."""
    with chatml_model.new_context(n_ctx=256, n_threads=2) as ctx:
        result = ctx.chat(USER, max_new_tokens=0)
    im_start = chatml_model.tokenize("<|im_start|>", add_special=False, parse_special=True)
    assert len(im_start) == 1
    assert result.generation.prompt_tokens.count(im_start[0]) == 3  # system, user, assistant
    assert result.usage.completion_tokens == 0 and result.finish_reason == "length"


BOS_FIRST = ("{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
             "assistant:")
NO_BOS = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:"


@pytest.mark.parametrize("source", [BOS_FIRST, NO_BOS], ids=["template_writes_bos",
                                                             "template_omits_bos"])
@pytest.mark.parametrize("vocab", ["llama-bpe", "llama-spm"])
def test_prompt_has_exactly_one_bos(synthetic_model: Callable[..., Path], vocab: str,
                                    source: str) -> None:
    """Whether or not the template writes BOS, a model that wants one gets exactly one."""
    with llamakit.load_model(synthetic_model(vocab=vocab), backend="cpu") as model, \
            model.new_context(n_ctx=256, n_threads=2) as ctx:
        assert model.add_bos and model.bos_token is not None
        result = ctx.chat(USER, template=source, max_new_tokens=0)
        tokens = result.generation.prompt_tokens
        assert tokens[0] == model.bos_token and tokens.count(model.bos_token) == 1
        assert result.prompt.startswith(model.token_text(model.bos_token)) == \
            (source is BOS_FIRST)


def test_model_without_bos_gets_none(chatml_model: llamakit.Model) -> None:
    """A model that adds no BOS (qwen2) gets no token the template did not write."""
    with chatml_model.new_context(n_ctx=256, n_threads=2) as ctx:
        result = ctx.chat(USER, max_new_tokens=0)
    assert not chatml_model.add_bos
    assert result.generation.prompt_tokens == chatml_model.tokenize(
        result.prompt, add_special=False, parse_special=True)


def test_chat_on_a_random_chatml_model_runs(chatml_model: llamakit.Model) -> None:
    """Sampling keywords pass through to generate; the reply is at most max_new_tokens."""
    with chatml_model.new_context(n_ctx=256, n_threads=2) as ctx:
        result = ctx.chat(USER, max_new_tokens=4, temperature=0.7, seed=3)
        again = ctx.chat(USER, max_new_tokens=4, temperature=0.7, seed=3)
    assert result.usage.completion_tokens <= 4 and result.generation.seed == 3
    assert again.content == result.content
