"""Gemma 3 270M, a real published model: generation, tokenization and chat against llama.cpp's
own programs and Hugging Face's template rendering."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

import llamakit
from llamakit._build.variant import build_variant
from llamakit._plugins.manager import get_plugin_host
from llamakit.testing import build_tool, compile_greedy_reference, run_greedy_reference

#: Code, CJK, emoji, whitespace runs and special-token strings in one text.
MIXED = ('def f(x):\n    return x ** 2  # 平方\n\t「日本語のテキスト」한국어 中文 🦙🚀👍🏽 '
         '<start_of_turn>user\nhi<end_of_turn>\n<bos>   trailing  \n\n')

GEMMA_MARKERS = ("<start_of_turn>", "<end_of_turn>")


def test_model_is_the_published_file(gemma: llamakit.Model) -> None:
    """The checksum-verified file is Gemma 3 and carries no chat template (the case that
    the template fallback exists for)."""
    assert gemma.metadata["general.architecture"] == "gemma3"
    assert gemma.chat_template() is None
    assert gemma.n_vocab == 262144


def test_greedy_matches_c_reference(gemma_path: Path, gemma: llamakit.Model,
                                    tmp_path: Path) -> None:
    """Greedy generation equals llama.cpp's C API driven directly, token for token."""
    built = build_variant(get_plugin_host().backends()["cpu"])
    binary = compile_greedy_reference(built.include_dir, built.libraries, built.link_args,
                                      tmp_path)
    tokens = gemma.tokenize("The capital of France is")
    expected = run_greedy_reference(binary, gemma_path, tokens, n_predict=16, n_ctx=256)
    with gemma.new_context(n_ctx=256, n_threads=2) as ctx:
        result = ctx.generate(tokens, max_new_tokens=16, temperature=0)
    assert len(expected) > 0
    assert result.tokens == expected[:len(result.tokens)]
    assert len(result.tokens) == len(expected) or result.finish_reason == "eog"
    assert "France" in result.text  # real weights: the 270M base model stays on topic


@pytest.mark.parametrize("parse_special", [True, False])
def test_tokenize_matches_llama_tokenize(gemma_path: Path, gemma: llamakit.Model,
                                         tmp_path: Path, parse_special: bool) -> None:
    """The mixed text tokenizes exactly as llama.cpp's llama-tokenize does."""
    text_file = tmp_path / "mixed.txt"
    text_file.write_text(MIXED, encoding="utf-8")
    command = [str(build_tool("llama-tokenize")), "-m", str(gemma_path), "-f", str(text_file),
               "--ids", "--log-disable"]
    if not parse_special:
        command.append("--no-parse-special")
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    expected = [int(t) for t in out.strip().splitlines()[-1].strip("[]").split(",")]
    ours = gemma.tokenize(MIXED, add_special=True, parse_special=parse_special)
    assert ours == expected
    assert (105 in ours) == parse_special  # <start_of_turn> is one token only when parsed
    assert gemma.detokenize(ours[1:], unparse_special=True) == MIXED


def _hf_render(source: str, messages: list[dict[str, str]]) -> str:
    from transformers.utils import chat_template_utils as hf

    rendered, _ = hf.render_jinja_template([hf._normalize_chat_messages(messages)],
                                           chat_template=source, bos_token="<bos>",
                                           eos_token="<eos>", add_generation_prompt=True)
    return str(rendered[0])


CONVERSATION = [{"role": "user", "content": "Hi!"},
                {"role": "assistant", "content": "Hello. How can I help?"},
                {"role": "user", "content": "Name a color."}]


def test_chat_renders_like_hugging_face(gemma: llamakit.Model, gemma_ctx: llamakit.Context,
                                        llama_cpp_dir: Path) -> None:
    """The Gemma template (llama.cpp's models/templates copy of Google's, shared by Gemma 2
    and 3 for text turns) renders the prompt exactly as transformers does, and the built-in
    format the fallback picks gives the same tokens."""
    source = (llama_cpp_dir / "models" / "templates" / "google-gemma-2-2b-it.jinja").read_text()
    expected = _hf_render(source, CONVERSATION)
    result = gemma_ctx.chat(CONVERSATION, template=source, max_new_tokens=1, temperature=0)
    assert result.prompt == expected
    fallback = gemma_ctx.chat(CONVERSATION, max_new_tokens=1, temperature=0)
    tokens = gemma.tokenize(expected, add_special=False, parse_special=True)
    assert fallback.generation.prompt_tokens == tokens


def test_fallback_picks_gemma_and_warns_once(gemma: llamakit.Model,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """No template in the GGUF: the built-in 'gemma' format is chosen from the vocabulary,
    and the warning names it and the three ways to override it."""
    from llamakit._chat import fallback

    fallback._warned.clear()
    with caplog.at_level(logging.WARNING, logger="llamakit.chat"):
        for _ in range(2):
            text = gemma.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert text == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    warnings = [r.getMessage() for r in caplog.records if r.name == "llamakit.chat"]
    assert len(warnings) == 1
    for needle in ("'gemma'", "<start_of_turn>", "template=", "[chat] template",
                   "--chat-template"):
        assert needle in warnings[0]


@pytest.mark.parametrize("stream", [False, True])
def test_reply_never_contains_turn_markers(gemma_ctx: llamakit.Context, stream: bool) -> None:
    """A reply ends at the turn's end: no template marker in it, finish_reason 'stop' when
    the model ended the turn (a base model may also run to max_new_tokens)."""
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    if stream:
        chunks = gemma_ctx.chat_stream(messages, max_new_tokens=48, temperature=0)
        text = "".join(chunks)
        assert chunks.result is not None
        result = chunks.result
        assert result.content == text
    else:
        result = gemma_ctx.chat(messages, max_new_tokens=48, temperature=0)
    for marker in (*GEMMA_MARKERS, "<|im_end|>", "<|im_start|>"):
        assert marker not in result.content
    assert result.finish_reason in ("stop", "length")
    if result.finish_reason == "length":
        assert result.usage.completion_tokens == 48


def test_chatml_on_gemma_stops_at_im_end(gemma_ctx: llamakit.Context) -> None:
    """The issue's case: ChatML forced on a vocabulary that lacks its tokens. The model
    writes '<|im_end|>' as plain text; the reply is cut there and reports 'stop'."""
    messages = [{"role": "user", "content": "Say hello."},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Say hello again."}]
    result = gemma_ctx.chat(messages, template="chatml", max_new_tokens=64, temperature=0)
    assert "<|im_end|>" not in result.content and "<|im_start|>" not in result.content
    if "<|im_end|>" in gemma_ctx.generate(result.generation.prompt_tokens,
                                          max_new_tokens=64, temperature=0).text:
        assert result.finish_reason == "stop"


def test_cli_history_has_no_turn_markers(gemma_path: Path) -> None:
    """`llamakit chat` on the real model: /history holds the replies without the
    template's markers."""
    import json
    import os
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "llamakit", "chat", str(gemma_path), "--max-new-tokens", "24",
         "--temperature", "0", "--n-ctx", "512"],
        input="What is the capital of France?\nAnd of Spain?\n/history\n", capture_output=True,
        text=True, env={**os.environ, "LLAMAKIT_BACKEND": "cpu"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    history = json.loads(proc.stdout[proc.stdout.index("\n[") + 1:])
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    for message in history:
        for marker in (*GEMMA_MARKERS, "<|im_end|>", "<|im_start|>"):
            assert marker not in message["content"]
