"""Backend sampling (``backend_sampling``, llama.cpp's ``--backend-sampling``): the chain runs
inside the decode's graph, the host takes the sampled token.

On the CPU backend llama.cpp runs the same graph stages on the CPU, so these tests check
the plumbing (the token really comes from the graph, greedy and penalties give the host's
tokens, unsupported settings fall back, attaching never aborts); the GPU figures are in
docs/performance.md.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import llamakit
from llamakit._native.sampler import attach_backend, detach_backend

PROMPTS = ["Hello there, how are you", "The quick brown fox", "1 2 3 4 5", "Once upon a time",
           "A", "What is the capital of France?"]


def _in_graph_token(ctx: llamakit.Context) -> int:
    handle = ctx._handle
    return int(handle.lib.llama_get_sampled_token_ith(handle.ptr, -1))


def test_token_comes_from_the_graph(model: llamakit.Model, ctx: llamakit.Context) -> None:
    """An attached chain's token is the one llama.cpp sampled in the graph; after detaching,
    decodes sample nothing there and the raw logits are back."""
    handle = ctx._handle
    chain = llamakit.SamplerChain(model).add_logit_bias({5: 100.0}).add_greedy()
    assert attach_backend(handle, 0, chain._handle)
    assert handle.backend_samplers == 1
    handle.decode(model.tokenize("hello world"), False)
    assert _in_graph_token(ctx) == 5
    assert chain._handle.sample(handle, -1) == 5
    with pytest.raises(llamakit.ContextError, match="backend_sampling"):
        ctx.logits()
    detach_backend(handle, 0)
    assert handle.backend_samplers == 0
    handle.decode([100], False)
    assert _in_graph_token(ctx) == -1
    assert ctx.logits().shape == (model.n_vocab,)
    chain.close()


@pytest.mark.parametrize("settings", [
    {"temperature": 0},
    {"temperature": 0, "logit_bias": {2: float("-inf"), 13: 5.0}},
    {"temperature": 0, "repeat_penalty": 1.5, "frequency_penalty": 0.5,
     "presence_penalty": 0.3},
])
def test_generate_equals_host_sampling(ctx: llamakit.Context,
                                       settings: dict[str, object]) -> None:
    """Greedy with bans, biases and penalties in the graph gives the host's tokens."""
    for prompt in PROMPTS[:3]:
        host = ctx.generate(prompt, max_new_tokens=24, **settings)
        graph = ctx.generate(prompt, max_new_tokens=24, backend_sampling=True, **settings)
        assert ctx._handle.sampled_in_graph
        assert graph.tokens == host.tokens
        assert graph.text == host.text
        assert ctx._handle.backend_samplers == 0  # detached when the call ends


def test_seeded_default_chain_is_reproducible(ctx: llamakit.Context) -> None:
    """top_k, top_p, min_p, temperature and dist in the graph: the same seed, the same
    tokens; another seed, other tokens; a banned token never comes."""
    banned = {t: float("-inf") for t in range(3, 400)}
    runs = [ctx.generate(PROMPTS[0], max_new_tokens=32, seed=seed, temperature=1.5,
                         top_k=0, top_p=1.0, min_p=0.0, logit_bias=banned,
                         backend_sampling=True).tokens for seed in (11, 11, 12)]
    assert ctx._handle.sampled_in_graph
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert not set(runs[0] + runs[2]) & set(banned)
    default = ctx.generate(PROMPTS[1], max_new_tokens=16, seed=3, backend_sampling=True)
    assert default.tokens == ctx.generate(PROMPTS[1], max_new_tokens=16, seed=3,
                                          backend_sampling=True).tokens


@pytest.mark.parametrize("settings", [
    {"temperature": 0, "logprobs": 2},
    {"temperature": 0, "grammar": 'root ::= [a-z]+'},
    {"seed": 5, "typical_p": 0.9},
    {"seed": 5, "dry_multiplier": 0.8},
    {"seed": 5, "xtc_probability": 0.5, "xtc_threshold": 0.1},
    {"seed": 5, "mirostat": 2},
])
def test_settings_the_graph_cannot_run_sample_on_the_host(
        ctx: llamakit.Context, settings: dict[str, object]) -> None:
    """A stage without a graph form, a grammar or logprobs: the host samples, exactly as
    without the option."""
    host = ctx.generate(PROMPTS[0], max_new_tokens=12, **settings)
    graph = ctx.generate(PROMPTS[0], max_new_tokens=12, backend_sampling=True, **settings)
    assert not ctx._handle.sampled_in_graph
    assert graph.tokens == host.tokens
    if "logprobs" in settings:
        assert graph.logprobs == host.logprobs


def test_stream_and_chain_argument(model: llamakit.Model, ctx: llamakit.Context) -> None:
    """stream() samples in the graph too; an explicit sampler= chain stays on the host."""
    host = ctx.generate(PROMPTS[2], max_new_tokens=16, temperature=0)
    stream = ctx.stream(PROMPTS[2], max_new_tokens=16, temperature=0, backend_sampling=True)
    assert "".join(stream) == host.text
    assert stream.result.tokens == host.tokens
    chain = llamakit.SamplerChain(model).add_greedy()
    assert ctx.generate(PROMPTS[2], max_new_tokens=16, sampler=chain).tokens == host.tokens
    assert not ctx._handle.sampled_in_graph
    chain.close()


def test_generate_batch_in_graph(model: llamakit.Model) -> None:
    """generate_batch with more prompts than sequences (slots reused, finished sequences'
    chains replaced) and enough of them a step for the threaded sampling path."""
    with model.new_context(n_ctx=1024, n_batch=128, n_seq_max=4, n_threads=2) as context:
        host = context.generate_batch(PROMPTS, max_new_tokens=12, temperature=0)
        graph = context.generate_batch(PROMPTS, max_new_tokens=12, temperature=0,
                                       backend_sampling=True)
        assert [r.tokens for r in graph] == [r.tokens for r in host]
        assert context._handle.backend_samplers == 0
        seeded = [context.generate_batch(PROMPTS, max_new_tokens=8, seed=9,
                                         backend_sampling=True) for _ in range(2)]
        assert [r.tokens for r in seeded[0]] == [r.tokens for r in seeded[1]]
        mixed = context.generate_batch(PROMPTS[:2], max_new_tokens=6, temperature=0,
                                       backend_sampling=True, logprobs=1)
        assert [r.tokens for r in mixed] == [r.tokens[:6] for r in host[:2]]
        assert all(r.logprobs is not None for r in mixed)


def test_engine_in_graph(model: llamakit.Model) -> None:
    """Engine requests with backend_sampling beside host-sampled ones, from several
    threads: each gives the tokens of Context.generate."""
    with model.new_context(n_ctx=512) as context:
        expected = {p: context.generate(p, max_new_tokens=10, temperature=0).tokens
                    for p in PROMPTS}
    with llamakit.Engine(model, n_parallel=3, n_ctx=1024, n_batch=64, n_threads=2) as engine:
        results: dict[str, list[int]] = {}

        def run(i: int, prompt: str) -> None:
            request = engine.submit(prompt, max_new_tokens=10, temperature=0,
                                    backend_sampling=i % 2 == 0)
            results[prompt] = request.result(timeout=120).tokens

        threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(PROMPTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == expected


def test_config_turns_it_on(tmp_path: Path, tiny_model_path: Path) -> None:
    """[sampling] backend_sampling = true in TOML is every call's default."""
    config = tmp_path / "llamakit.toml"
    config.write_text(f"""
[model]
path = "{tiny_model_path}"
[backend]
name = "cpu"
[sampling]
backend_sampling = true
temperature = 0
""")
    model, context = llamakit.from_config(config)
    with model, context:
        result = context.generate("Hello", max_new_tokens=5)
        assert context._handle.sampled_in_graph
        assert result.tokens == context.generate("Hello", max_new_tokens=5,
                                                 backend_sampling=False).tokens
        assert not context._handle.sampled_in_graph


_EDGE_CASES = """
import sys

import pytest

import llamakit
from llamakit._native.sampler import attach_backend, detach_backend

model = llamakit.load_model(sys.argv[1], backend="cpu")
context = model.new_context(n_ctx=256, n_seq_max=2)
handle = context._handle
chain = llamakit.SamplerChain(model).add_top_k(5).add_dist(seed=1)
assert attach_backend(handle, 0, chain._handle)
assert attach_backend(handle, 0, chain._handle)  # a fresh device copy each time
assert attach_backend(handle, 1, chain._handle)
assert handle.backend_samplers == 2
with pytest.raises(llamakit.SamplerError, match="sequence id"):
    attach_backend(handle, 2, chain._handle)
refused = llamakit.SamplerChain(model).add_typical(0.9).add_dist(seed=1)
assert not attach_backend(handle, 1, refused._handle)
assert handle.backend_samplers == 1  # llama.cpp dropped sequence 1's chain
refused.close()
with llamakit.load_model(sys.argv[1], backend="cpu") as other_model:
    foreign = llamakit.SamplerChain(other_model).add_logit_bias({5: 1.0}).add_greedy()
    with pytest.raises(llamakit.SamplerError, match="model"):
        attach_backend(handle, 1, foreign._handle)
    foreign.close()
chain.close()  # freed while attached: its copy stays until detached
with pytest.raises(llamakit.ClosedError):
    attach_backend(handle, 1, chain._handle)
handle.decode(model.tokenize("still fine"), False)
assert int(handle.lib.llama_get_sampled_token_ith(handle.ptr, -1)) >= 0
detach_backend(handle, 1)  # nothing attached there: a no-op
context.close()  # sequence 0's copy is freed after the context
empty = llamakit.SamplerChain(model)
with model.new_context(n_ctx=128) as other:
    assert not attach_backend(other._handle, 0, empty._handle)
empty.close()
print("done")
"""


def test_attach_edge_cases_never_abort(tiny_model_path: Path) -> None:
    """Attaching twice (llama.cpp aborts when one chain is initialised twice), replacing,
    a sequence out of range, a chain of another model, a closed chain, a chain freed while
    attached, detaching nothing, and closing the context with chains attached. In a
    subprocess: a regression aborts that process, which the test reports."""
    proc = subprocess.run([sys.executable, "-c", _EDGE_CASES, str(tiny_model_path)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode < 0:
        pytest.fail(f"the process died by {signal.Signals(-proc.returncode).name}:\n"
                    f"{proc.stderr[-2000:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "done"


def test_a_failed_attach_falls_back_to_the_host(ctx: llamakit.Context,
                                                monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """An error inside llama.cpp while attaching (its sampler buffers) is logged and the call
    samples on the host, in generate and in generate_batch alike."""
    from llamakit._native import sampler as native_sampler

    def failing(*args: object) -> bool:
        raise llamakit.SamplerError("llama.cpp could not allocate the sampler's buffers")

    monkeypatch.setattr(native_sampler, "attach_backend", failing)
    host = ctx.generate(PROMPTS[0], max_new_tokens=8, temperature=0)
    with caplog.at_level("WARNING", logger="llamakit.sampling"):
        graph = ctx.generate(PROMPTS[0], max_new_tokens=8, temperature=0,
                             backend_sampling=True)
        batch = ctx.generate_batch(PROMPTS[:1], max_new_tokens=8, temperature=0,
                                   backend_sampling=True)
    assert graph.tokens == batch[0].tokens == host.tokens
    assert not ctx._handle.sampled_in_graph
    assert "sampling on the host" in caplog.text


@pytest.mark.parametrize("kind", ["stream", "stream_batch"])
def test_an_abandoned_stream_leaves_no_chain_attached(ctx: llamakit.Context, kind: str) -> None:
    """A stream sampling in the graph, half read by a thread that then ends: the next call
    takes the context over and must not find the stream's chain still attached (its own
    outputs would then have no logits)."""
    expected = ctx.generate(PROMPTS[1], max_new_tokens=12, temperature=0).tokens
    kept: list[object] = []

    def start() -> None:
        if kind == "stream":
            stream = ctx.stream(PROMPTS[0], max_new_tokens=64, temperature=0,
                                backend_sampling=True)
        else:
            stream = ctx.stream_batch([PROMPTS[0]], max_new_tokens=64, temperature=0,
                                      backend_sampling=True)
        next(iter(stream))
        kept.append(stream)  # still referenced, never finished

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    assert ctx._handle.backend_samplers == 1
    assert ctx.generate(PROMPTS[1], max_new_tokens=12, temperature=0).tokens == expected
    assert ctx._handle.backend_samplers == 0
    assert ctx.logits().shape == (ctx.model.n_vocab,)
    with pytest.raises(llamakit.ContextBusyError):
        next(iter(kept[0]))  # type: ignore[call-overload]
