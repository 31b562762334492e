"""Model loading, facts, metadata, vocabulary and lifecycle."""

from __future__ import annotations

from pathlib import Path

import pytest

import llamakit


def test_info_reports_the_synthetic_shape(model: llamakit.Model) -> None:
    """Model.info matches what the synthetic writer put in the file."""
    info = model.info
    assert info.architecture == "llama"
    assert (info.n_embd, info.n_layer, info.n_head, info.n_head_kv) == (64, 2, 4, 2)
    assert info.n_vocab == 32000 == model.n_vocab
    assert info.n_ctx_train == 2048
    assert info.n_params > 0 and info.size > 0
    assert "llama" in info.description


def test_metadata_has_every_gguf_key(model: llamakit.Model) -> None:
    """metadata exposes the GGUF keys as strings."""
    meta = model.metadata
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == "2"
    assert "tokenizer.ggml.model" in meta


def test_special_token_ids(model: llamakit.Model) -> None:
    """llama-spm's BOS/EOS are 1/2, and absent tokens are None."""
    assert model.bos_token == 1
    assert model.eos_token == 2
    assert model.is_eog(2) and not model.is_eog(15043)
    assert model.nl_token == 13
    assert model.pad_token is None or isinstance(model.pad_token, int)
    assert 1 in model.special_tokens and 2 in model.special_tokens
    assert 15043 not in model.special_tokens


def test_tokenize_roundtrip(model: llamakit.Model) -> None:
    """tokenize adds BOS by default; detokenize inverts it."""
    tokens = model.tokenize("Hello world")
    assert tokens == [1, 15043, 3186]
    assert model.tokenize("Hello world", add_special=False) == [15043, 3186]
    assert model.detokenize(tokens[1:]) == "Hello world"
    # llama.cpp strips SPM's space prefix only when a text token comes first
    assert model.detokenize(tokens, remove_special=True) == " Hello world"
    assert model.token_to_piece(15043) == " Hello"
    assert model.token_to_bytes(15043) == b" Hello"


def test_parse_special_turns_marker_text_into_ids(model: llamakit.Model) -> None:
    """'<s>' is the BOS token only with parse_special=True."""
    assert model.tokenize("<s>", add_special=False, parse_special=True) == [1]
    assert 1 not in model.tokenize("<s>", add_special=False, parse_special=False)
    assert model.detokenize([1, 15043], unparse_special=True).startswith("<s>")


def test_tokens_outside_the_vocab_raise(model: llamakit.Model) -> None:
    """Out-of-range ids are a typed error everywhere they are accepted, never an abort."""
    for bad in (-1, 32000, 10**12):
        with pytest.raises(llamakit.InvalidTokenError):
            model.detokenize([1, bad])
        with pytest.raises(llamakit.InvalidTokenError):
            model.token_to_piece(bad)
        with pytest.raises(llamakit.InvalidTokenError):
            model.is_eog(bad)
    with pytest.raises(llamakit.TokenizeError):
        model.detokenize(["a"])  # type: ignore[list-item]
    with pytest.raises(llamakit.TokenizeError):
        model.tokenize(123)  # type: ignore[arg-type]


def test_missing_file_raises_model_not_found(tmp_path: Path) -> None:
    """A path that does not exist is ModelNotFoundError (a FileNotFoundError)."""
    with pytest.raises(llamakit.ModelNotFoundError) as info:
        llamakit.load_model(tmp_path / "nope.gguf", backend="cpu")
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.path == tmp_path / "nope.gguf"


def test_directory_and_non_gguf_raise(tmp_path: Path) -> None:
    """A directory or a file without the GGUF magic is ModelLoadError."""
    with pytest.raises(llamakit.ModelLoadError, match="directory"):
        llamakit.load_model(tmp_path, backend="cpu")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(llamakit.ModelLoadError, match="not a GGUF"):
        llamakit.load_model(junk, backend="cpu")
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(llamakit.ModelLoadError):
        llamakit.load_model(empty, backend="cpu")


def test_truncated_gguf_raises(tmp_path: Path, tiny_model_path: Path) -> None:
    """A GGUF cut short is refused with ModelLoadError, not a crash."""
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_model_path.read_bytes()[:4096])
    with pytest.raises(llamakit.ModelLoadError):
        llamakit.load_model(cut, backend="cpu")


def test_bad_load_arguments_raise(tiny_model_path: Path) -> None:
    """n_gpu_layers below -1 or non-bool flags are ConfigError before anything loads."""
    with pytest.raises(llamakit.ConfigError, match="n_gpu_layers"):
        llamakit.load_model(tiny_model_path, backend="cpu", n_gpu_layers=-2)
    with pytest.raises(llamakit.ConfigError, match="use_mmap"):
        llamakit.load_model(tiny_model_path, backend="cpu", use_mmap="yes")  # type: ignore[arg-type]


def test_unknown_backend_raises(tiny_model_path: Path) -> None:
    """A backend nobody registered is BackendUnavailableError naming the installed ones."""
    with pytest.raises(llamakit.BackendUnavailableError, match="cpu"):
        llamakit.load_model(tiny_model_path, backend="nosuch")


def test_close_twice_and_use_after_close(tiny_model_path: Path) -> None:
    """close() is idempotent; any later use raises ClosedError; contexts close with it."""
    model = llamakit.load_model(tiny_model_path, backend="cpu")
    ctx = model.new_context(n_ctx=64)
    model.close()
    model.close()
    assert model.closed and ctx.closed
    for use in (lambda: model.tokenize("x"), lambda: model.info, lambda: model.n_vocab,
                lambda: model.bos_token, lambda: model.new_context(),
                lambda: ctx.generate("x"), lambda: ctx.n_ctx, lambda: model.is_eog(2)):
        with pytest.raises(llamakit.ClosedError):
            use()


def test_with_statement_closes(tiny_model_path: Path) -> None:
    """Leaving a with block closes the model."""
    with llamakit.load_model(tiny_model_path, backend="cpu") as model:
        assert not model.closed
    assert model.closed


def test_vocab_only_model_tokenizes(tiny_model_path: Path) -> None:
    """vocab_only loads just the tokenizer; shape queries do not abort."""
    with llamakit.load_model(tiny_model_path, backend="cpu", vocab_only=True) as model:
        assert model.tokenize("Hello world") == [1, 15043, 3186]
        assert model.info.n_vocab == 32000


def test_vocab_only_reports_the_files_type(synthetic_model) -> None:  # type: ignore[no-untyped-def]
    """A vocab-only load reads no tensors (llama.cpp then says ALL_F32): the file type
    comes from the GGUF, the same as a full load reports."""
    path = synthetic_model(dtype="f16")
    with llamakit.load_model(path, backend="cpu") as full, \
            llamakit.load_model(path, backend="cpu", vocab_only=True) as vocab:
        assert full.info.ftype == vocab.info.ftype == "F16"


def test_chat_template_absent_and_present(model: llamakit.Model,
                                          synthetic_model) -> None:  # type: ignore[no-untyped-def]
    """chat_template() is None when the GGUF has none and the text when it has one."""
    assert model.chat_template() is None
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    path = synthetic_model(chat_template=template)
    with llamakit.load_model(path, backend="cpu", vocab_only=True) as other:
        assert other.chat_template() == template


def test_backends_lists_cpu_as_available() -> None:
    """backends() reports the CPU backend, its plugin and a CPU device."""
    statuses = {s.name: s for s in llamakit.backends()}
    cpu = statuses["cpu"]
    assert cpu.available and cpu.built and cpu.plugin == "llamakit-cpu"
    assert any(d.type == "cpu" for d in cpu.devices)


def test_supports_gpu_is_false_on_cpu() -> None:
    """The CPU backend cannot offload."""
    assert llamakit.supports_gpu("cpu") is False
