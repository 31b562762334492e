"""The embedded demo model: shipped exactly as trained, and it answers questions it has not
been asked before (greedy replies through the public chat API)."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import llamakit
from llamakit import _demo
from llamakit.__main__ import main

#: Seeds the held-out questions; tools/train_demo.py never draws with it (a test checks).
HELD_OUT_SEED = 314159
N_PER_TASK = 20  # five tasks: 100 questions
CPU_TARGET = 0.90
QUANTIZED_TARGET = 0.85
QUANTIZED_TYPE = "Q4_K_M"


def accuracy(model: llamakit.Model, questions: list[_demo.DemoQuestion]
             ) -> tuple[float, dict[str, float], list[str]]:
    """Share of exact answers overall and per task, and the wrong replies."""
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    wrong = []
    with model.new_context(n_ctx=256, n_threads=2) as ctx:
        for q in questions:
            reply = ctx.chat([{"role": "user", "content": q.question}], temperature=0,
                             max_new_tokens=16).content
            total[q.task] += 1
            right[q.task] += reply == q.answer
            if reply != q.answer:
                wrong.append(f"{q.question!r}: {reply!r} (expected {q.answer!r})")
    per_task = {task: right[task] / total[task] for task in total}
    return sum(right.values()) / len(questions), per_task, wrong


@pytest.fixture(scope="module")
def held_out() -> list[_demo.DemoQuestion]:
    return _demo.demo_questions(HELD_OUT_SEED, N_PER_TASK)


@pytest.fixture(scope="module")
def demo() -> Iterator[llamakit.Model]:
    with llamakit.demo_model(backend="cpu") as model:
        yield model


def test_shipped_file_matches_recorded_checksum() -> None:
    """The shipped GGUF is byte for byte the file tools/train_demo.py recorded."""
    record = _demo.demo_model_record()
    path = llamakit.demo_model_path()
    assert record["file"] == path.name
    assert path.stat().st_size == record["size"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]


def test_shipped_data_fits_the_size_budget() -> None:
    """Everything shipped under llamakit/data takes at most 10 MB."""
    folder = llamakit.demo_model_path().parent
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) <= 10_000_000


def test_held_out_seed_is_not_a_training_seed() -> None:
    """The held-out questions come from a seed the training run did not draw with."""
    hyper = _demo.demo_model_record()["hyper"]
    assert HELD_OUT_SEED not in (hyper["data_seed"], hyper["validation_seed"], hyper["seed"])


def test_demo_model_is_a_chatml_llama(demo: llamakit.Model) -> None:
    """A llama with an SPM vocabulary whose end-of-turn token is ChatML's <|im_end|>."""
    assert demo.info.architecture == "llama"
    assert demo.metadata["tokenizer.ggml.model"] == "llama"
    assert demo.token_text(demo.eos_token or 0) == "<|im_end|>"
    assert demo.is_eog(demo.eos_token or 0)
    assert demo.is_control(demo.tokenize("<|im_start|>", add_special=False,
                                         parse_special=True)[0])
    assert demo.apply_chat_template([{"role": "user", "content": "Hi"}]) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_bytes_outside_the_vocabulary_fall_back_to_byte_tokens(demo: llamakit.Model) -> None:
    """Text the pieces do not cover becomes <0xNN> tokens and detokenizes unchanged."""
    text = "naïve ☃\ttab"
    tokens = demo.tokenize(text, add_special=False)
    assert sum(demo.token_text(t).startswith("<0x") for t in tokens) >= len("ï☃\t".encode())
    assert demo.detokenize(tokens) == text


def test_answers_held_out_questions_on_cpu(demo: llamakit.Model,
                                          held_out: list[_demo.DemoQuestion]) -> None:
    """At least 90 of 100 held-out questions get exactly the right answer (greedy chat)."""
    overall, per_task, wrong = accuracy(demo, held_out)
    assert overall >= CPU_TARGET, (per_task, wrong)


def test_quantized_model_keeps_answering(held_out: list[_demo.DemoQuestion],
                                         tmp_path: Path) -> None:
    """The demo model quantized to Q4_K_M with llamakit.quantize keeps >= 85% exact answers."""
    result = llamakit.quantize(llamakit.demo_model_path(), tmp_path / "demo-q4_k_m.gguf",
                               QUANTIZED_TYPE, progress=False)
    assert result.size < llamakit.demo_model_path().stat().st_size / 2
    with llamakit.load_model(result.files[0], backend="cpu") as quantized:
        overall, per_task, wrong = accuracy(quantized, held_out)
    assert overall >= QUANTIZED_TARGET, (per_task, wrong)


@pytest.fixture(scope="module")
def vulkan_demo() -> Iterator[llamakit.Model]:
    """The demo model with every layer on a Vulkan device (lavapipe allowed)."""
    llamakit_vulkan = pytest.importorskip("llamakit_vulkan")
    from llamakit_vulkan._loader import physical_devices

    problems = llamakit_vulkan.vulkan_backend().check_prerequisites()
    if problems:
        pytest.skip("Vulkan prerequisites missing: " + "; ".join(map(str, problems)))
    if not physical_devices():
        pytest.skip("no Vulkan device (install mesa-vulkan-drivers for lavapipe)")
    with llamakit.demo_model(backend="vulkan", n_gpu_layers=-1,
                             backend_settings={"vulkan": {"allow_cpu_device": True}}) as model:
        yield model


def test_answers_held_out_questions_on_vulkan(vulkan_demo: llamakit.Model,
                                             held_out: list[_demo.DemoQuestion]) -> None:
    """Through the Vulkan backend (lavapipe in CI) the model also answers >= 90%."""
    assert vulkan_demo.offload.n_layers_offloaded == vulkan_demo.offload.n_layers_total
    overall, per_task, wrong = accuracy(vulkan_demo, held_out)
    assert overall >= CPU_TARGET, (per_task, wrong)


def test_demo_command_answers_a_question(capsys: pytest.CaptureFixture[str]) -> None:
    """`llamakit demo QUESTION` prints the question and the model's answer."""
    assert main(["--backend", "cpu", "demo", "What is 48 + 37?"]) == 0
    assert capsys.readouterr().out == "> What is 48 + 37?\n85\n"


def test_demo_command_asks_sample_questions(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a question, `llamakit demo` asks one sample question of each kind."""
    assert main(["--backend", "cpu", "demo"]) == 0
    out = capsys.readouterr().out
    for question in _demo.DEMO_QUESTIONS:
        assert f"> {question}\n" in out
    assert "> What is 7 times 8?\n56\n" in out
    assert f"\n{_demo.GREETING_ANSWER}\n" in out


def test_missing_model_file_says_how_to_rebuild(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """Without the shipped file, demo_model_path names the file and the training script."""
    monkeypatch.setattr(_demo, "_data_file", lambda name: tmp_path / name)
    with pytest.raises(llamakit.ModelNotFoundError, match="tools/train_demo.py") as info:
        llamakit.demo_model()
    assert info.value.path == tmp_path / _demo.MODEL_FILE


def test_questions_are_reproducible_and_cover_every_task() -> None:
    """The same seed draws the same questions, N of each task, each with its one answer."""
    first = _demo.demo_questions(HELD_OUT_SEED, 3)
    assert first == _demo.demo_questions(HELD_OUT_SEED, 3)
    assert [q.task for q in first] == [t for t in _demo.TASKS for _ in range(3)]
    samples = {q.task: q for q in _demo.demo_questions(1, 1)}
    assert set(samples) == set(_demo.TASKS)
    with pytest.raises(ValueError, match="unknown demo task"):
        _demo.make_question(random.Random(0), "poetry")
