"""Backend sampling (``backend_sampling``, llama.cpp's ``--backend-sampling``): the chain runs
inside the decode's graph, the host takes the sampled token.

On the CPU backend llama.cpp runs the same graph stages on the CPU, so these tests check
the plumbing (the token really comes from the graph, greedy and penalties give the host's
tokens, unsupported settings fall back, attaching never aborts); the GPU figures are in
docs/performance.md.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
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
        # parked for the next call; the next host-sampled decode detaches it
        assert ctx._handle.backend_samplers == 1 and 0 in ctx._handle.parked


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


def _run_script(script: str, model_path: Path) -> None:
    """Run ``script`` on ``model_path`` in a subprocess: an abort there (a regression)
    is reported as a failure instead of killing the test run; it must print "done"."""
    proc = subprocess.run([sys.executable, "-c", script, str(model_path)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode < 0:
        pytest.fail(f"the process died by {signal.Signals(-proc.returncode).name}:\n"
                    f"{proc.stderr[-2000:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "done"


def test_attach_edge_cases_never_abort(tiny_model_path: Path) -> None:
    """Attaching twice (llama.cpp aborts when one chain is initialised twice), replacing,
    a sequence out of range, a chain of another model, a closed chain, a chain freed while
    attached, detaching nothing, and closing the context with chains attached. In a
    subprocess: a regression aborts that process, which the test reports."""
    _run_script(_EDGE_CASES, tiny_model_path)


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


# -- parking: a generate call's chain stays attached for the next call like it ---------------

@contextlib.contextmanager
def _reserves(ctx: llamakit.Context) -> Iterator[list[str]]:
    """The times llama.cpp re-reserves its graphs while in the block (sched_reserve logs
    "reserving ..." at INFO each time; a listener sees every level)."""
    lines: list[str] = []

    def listen(level: int, line: str) -> None:
        if "reserving ..." in line:
            lines.append(line)

    with ctx._handle.native.log_listener(listen):
        yield lines


def _rebind(ctx: llamakit.Context, chain: llamakit.SamplerChain) -> int:
    handle = ctx._handle
    with handle.pinned() as ptr, chain._handle.pinned() as chain_ptr:
        return int(handle.lib.lk_backend_sampler_rebind(ptr, 0, chain_ptr))


def test_rebind_takes_only_a_chain_like_the_attached_one(model: llamakit.Model,
                                                         ctx: llamakit.Context) -> None:
    """lk_backend_sampler_rebind: 0 with nothing attached, other stages (their kinds or
    their number) or a stage without llama.cpp's copy_state (top_k(0) is an "empty"
    stage); 1 for the same stages, whose state then drives the graph's sampling without
    a re-reserve."""
    def chain(seed: int, k: int = 50) -> llamakit.SamplerChain:
        return llamakit.SamplerChain(model).add_logit_bias({5: 1.0}).add_top_k(k) \
            .add_temp(1.5).add_dist(seed=seed)

    first, other, again = chain(1), chain(2), chain(1)
    shorter = llamakit.SamplerChain(model).add_top_k(50).add_temp(1.5).add_dist(seed=1)
    kinds = llamakit.SamplerChain(model).add_logit_bias({5: 1.0}).add_top_p(1.0) \
        .add_temp(1.5).add_dist(seed=1)
    assert _rebind(ctx, first) == 0  # nothing attached
    tokens = model.tokenize("hello world")
    runs, reserved = [], []
    for used in (first, other, again):
        if used is first:
            assert attach_backend(ctx._handle, 0, used._handle)
        else:
            assert _rebind(ctx, shorter) == 0 and _rebind(ctx, kinds) == 0
            assert _rebind(ctx, used) == 1
        ctx.reset()
        with _reserves(ctx) as reserves:
            ctx._handle.decode(tokens, False)
            runs.append(used._handle.sample(ctx._handle, -1))
        reserved.append(len(reserves))
    assert reserved == [1, 0, 0]
    assert runs[0] == runs[2]  # seed 1's generator, copied in twice
    empty, empty_too = chain(1, k=0), chain(1, k=0)
    assert attach_backend(ctx._handle, 0, empty._handle)
    assert _rebind(ctx, empty_too) == 0
    detach_backend(ctx._handle, 0)
    for item in (first, other, again, shorter, kinds, empty, empty_too):
        item.close()


def test_a_second_call_reuses_the_attachment(ctx: llamakit.Context) -> None:
    """The chain stays attached between calls with the same settings (another seed
    included): llama.cpp re-reserves its graphs for the first call only; other settings
    attach afresh, and a decode without backend sampling detaches the parked chain."""
    settings = {"temperature": 0.7, "top_k": 20, "logit_bias": {7: -2.0}}
    with _reserves(ctx) as reserves:
        ctx.generate(PROMPTS[0], max_new_tokens=6, seed=1, backend_sampling=True, **settings)
        assert len(reserves) == 1  # attaching
        assert ctx._handle.parked and ctx._handle.backend_samplers == 1
        for seed in (1, 2, 3):
            ctx.generate(PROMPTS[1], max_new_tokens=6, seed=seed, backend_sampling=True,
                         **settings)
        stream = ctx.stream(PROMPTS[2], max_new_tokens=6, seed=4, backend_sampling=True,
                            **settings)
        assert "".join(stream) == stream.result.text
        assert len(reserves) == 1
        assert ctx._handle.sampled_in_graph
        ctx.generate(PROMPTS[1], max_new_tokens=6, seed=1, backend_sampling=True,
                     **{**settings, "logit_bias": {7: -3.0}})
        assert len(reserves) == 2  # another bias: a new device copy
        ctx.generate(PROMPTS[1], max_new_tokens=6, seed=1, backend_sampling=True,
                     **{**settings, "top_k": 21})
        assert len(reserves) == 3
        ctx.generate(PROMPTS[1], max_new_tokens=6, seed=1, **settings)
        assert len(reserves) == 4  # detached before the host-sampled call's decode
        assert not ctx._handle.parked and ctx._handle.backend_samplers == 0
        assert not ctx._handle.sampled_in_graph


def test_consecutive_calls_equal_host_sampling(ctx: llamakit.Context) -> None:
    """Each reuse of the parked chain samples with the new call's chain state: greedy with
    a ban, penalties (the history is the new prompt, not the last call's) and seeds (seed
    1, then 2, then 1 again: the first run again, as on the host)."""
    cases: list[tuple[dict[str, object], list[str], list[int | None]]] = [
        ({"temperature": 0, "logit_bias": {2: float("-inf"), 13: -1.0}}, PROMPTS[:4],
         [None] * 4),
        ({"temperature": 0, "repeat_penalty": 1.5, "frequency_penalty": 0.5,
          "presence_penalty": 0.3}, [PROMPTS[0], PROMPTS[0], PROMPTS[2], PROMPTS[0]],
         [None] * 4),
        ({}, [PROMPTS[3]] * 3, [1, 2, 1]),
        ({"temperature": 1.5, "top_k": 0, "top_p": 1.0, "min_p": 0.0},
         [PROMPTS[3]] * 3, [1, 2, 1]),
    ]
    for settings, prompts, seeds in cases:
        host = [ctx.generate(p, max_new_tokens=16, seed=s, **settings).tokens  # type: ignore[arg-type]
                for p, s in zip(prompts, seeds, strict=True)]
        with _reserves(ctx) as reserves:
            graph = [ctx.generate(p, max_new_tokens=16, seed=s, backend_sampling=True,  # type: ignore[arg-type]
                                  **settings).tokens
                     for p, s in zip(prompts, seeds, strict=True)]
        assert len(reserves) == 1, settings  # one attach, then the parked chain each time
        assert graph == host, settings
        if seeds[0] is not None:
            assert graph[0] == graph[2] != graph[1]


def test_other_decodes_after_a_parked_call_read_their_logits(model: llamakit.Model,
                                                             ctx: llamakit.Context) -> None:
    """A parked chain is detached before any decode that did not claim it: eval, logits,
    logprobs and host sampling read the values of a fresh context."""
    with model.new_context(n_ctx=256, n_batch=64, n_threads=2) as fresh:
        want_eval = fresh.eval(PROMPTS[1], all_logits=True)
        fresh.reset()
        want_logprobs = fresh.generate(PROMPTS[2], max_new_tokens=8, temperature=0,
                                       logprobs=2)
        fresh.reset()
        want_host = fresh.generate(PROMPTS[0], max_new_tokens=8, seed=3, temperature=1.5)
    ctx.generate(PROMPTS[0], max_new_tokens=8, temperature=0, backend_sampling=True)
    assert ctx._handle.parked
    ctx.reset()  # no decode: the chain stays parked
    assert ctx._handle.parked
    got = ctx.eval(PROMPTS[1], all_logits=True)
    assert not ctx._handle.parked and not ctx._handle.sampled_in_graph
    np.testing.assert_allclose(got, want_eval, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ctx.logits(), want_eval[-1], rtol=1e-5, atol=1e-5)
    for call in ("logprobs", "host"):
        ctx.generate(PROMPTS[0], max_new_tokens=8, temperature=0, backend_sampling=True)
        assert ctx._handle.parked
        ctx.reset()
        if call == "logprobs":
            result = ctx.generate(PROMPTS[2], max_new_tokens=8, temperature=0, logprobs=2,
                                  backend_sampling=True)  # logprobs: sampled on the host
            assert result.tokens == want_logprobs.tokens
            assert result.logprobs is not None and want_logprobs.logprobs is not None
            for mine, theirs in zip(result.logprobs, want_logprobs.logprobs, strict=True):
                assert mine.token == theirs.token
                assert abs(mine.logprob - theirs.logprob) < 1e-4
        else:
            result = ctx.generate(PROMPTS[0], max_new_tokens=8, seed=3, temperature=1.5)
            assert result.tokens == want_host.tokens
        assert not ctx._handle.sampled_in_graph and not ctx._handle.parked


def test_batches_and_the_engine_after_a_parked_call(model: llamakit.Model) -> None:
    """generate_batch (its slots attach without a key: sequence 0's parked chain is
    replaced or detached) and an Engine beside a context with a parked chain give the
    host's tokens; the parked context goes on as before afterwards."""
    with model.new_context(n_ctx=1024, n_batch=128, n_seq_max=3, n_threads=2) as context:
        host = context.generate_batch(PROMPTS[:4], max_new_tokens=8, temperature=0)
        single = context.generate(PROMPTS[0], max_new_tokens=8, temperature=0).tokens
        for graph in (True, False):
            assert context.generate(PROMPTS[0], max_new_tokens=8, temperature=0,
                                    backend_sampling=True).tokens == single
            assert context._handle.parked
            batch = context.generate_batch(PROMPTS[:4], max_new_tokens=8, temperature=0,
                                           backend_sampling=graph)
            assert [r.tokens for r in batch] == [r.tokens for r in host]
            assert not context._handle.parked
            assert context._handle.backend_samplers == 0
        assert context.generate(PROMPTS[0], max_new_tokens=8, temperature=0,
                                backend_sampling=True).tokens == single
        with llamakit.Engine(model, n_parallel=2, n_ctx=512, n_batch=64,
                             n_threads=2) as engine:
            requests = [engine.submit(p, max_new_tokens=8, temperature=0,
                                      backend_sampling=i % 2 == 0)
                        for i, p in enumerate(PROMPTS[:4])]
            assert [r.result(timeout=120).tokens for r in requests] == \
                [r.tokens for r in host]
        assert context._handle.parked
        assert context.generate(PROMPTS[0], max_new_tokens=8, temperature=0,
                                backend_sampling=True).tokens == single


_CLOSE_PARKED = """
import logging
import sys

import llamakit
from llamakit._native.sampler import park_backend

errors = []


class Catch(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.ERROR:
            errors.append(record.getMessage())


logging.getLogger("llamakit").addHandler(Catch())
model = llamakit.load_model(sys.argv[1], backend="cpu")
context = model.new_context(n_ctx=256, n_seq_max=2)
context.generate("Hello", max_new_tokens=4, temperature=0, backend_sampling=True)
assert context._handle.parked
context.close()  # the parked copy is freed after the context
context = model.new_context(n_ctx=256)
context.generate("Hello", max_new_tokens=4, seed=2, backend_sampling=True)
stream = context.stream("Hello", max_new_tokens=4, seed=2, backend_sampling=True)
"".join(stream)
assert context._handle.parked
park_backend(context._handle, 0, "unused")  # parked twice: one detach
context.eval("more")
assert not context._handle.parked and context._handle.backend_samplers == 0
context.generate("Hello", max_new_tokens=4, seed=2, backend_sampling=True)
other = model.new_context(n_ctx=256)
other.generate("Hello", max_new_tokens=4, seed=2, backend_sampling=True)
model.close()  # closes both contexts, each with a parked copy
assert context.closed and other.closed
assert not errors, errors
print("done")
"""


def test_closing_with_a_parked_chain(tiny_model_path: Path) -> None:
    """Closing the context or the model while a chain is parked: no crash, no error
    logged. In a subprocess: a regression aborts that process, which the test reports."""
    _run_script(_CLOSE_PARKED, tiny_model_path)
