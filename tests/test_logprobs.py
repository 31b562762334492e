"""logprobs= on generate, stream and chat: values, shapes, validation."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

import llamakit
from llamakit._logprobs import StreamPiece


def _log_softmax(row: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    x = row.astype(np.float64)
    return x - x.max() - math.log(float(np.exp(x - x.max()).sum()))


@pytest.mark.parametrize("k", [1, 5, 20])
def test_logprobs_are_the_models_distribution(ctx: llamakit.Context, k: int) -> None:
    """Each token's logprob and top-k equal numpy's log-softmax of the logits it came from."""
    result = ctx.generate("Hello world", max_new_tokens=3, temperature=0, logprobs=k)
    assert result.logprobs is not None and len(result.logprobs) == len(result.tokens)
    ctx.reset()
    prompt = list(result.prompt_tokens)
    for entry, token in zip(result.logprobs, result.tokens, strict=True):
        expected = _log_softmax(ctx.eval(prompt))
        ctx.reset()
        prompt.append(token)
        assert entry.token == token
        assert entry.logprob == pytest.approx(expected[token], abs=1e-5)
        best = np.argsort(-expected, kind="stable")[:k]
        assert [t.token for t in entry.top_logprobs] == best.tolist()
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(expected[best],
                                                                        abs=1e-5)
        assert entry.top_logprobs[0].token == token  # greedy picks the best
        assert entry.text == ctx.model.token_to_piece(token, special=True)


def test_logprobs_zero_gives_no_alternatives(ctx: llamakit.Context) -> None:
    """logprobs=0 reports only the chosen token's log-probability."""
    result = ctx.generate("Hi", max_new_tokens=3, temperature=0.7, seed=3, logprobs=0)
    assert result.logprobs is not None and len(result.logprobs) == 3
    assert all(e.top_logprobs == () and e.logprob < 0 for e in result.logprobs)


def test_no_logprobs_by_default(ctx: llamakit.Context) -> None:
    """Without logprobs nothing is recorded and stream pieces are plain str."""
    assert ctx.generate("Hi", max_new_tokens=2, temperature=0).logprobs is None
    pieces = list(ctx.stream("Hi", max_new_tokens=3, temperature=0))
    assert pieces and all(type(p) is str for p in pieces)


@pytest.mark.parametrize("value", [-1, 21, True, 2.0, "3"])
def test_logprobs_out_of_range_is_a_config_error(ctx: llamakit.Context, value: object) -> None:
    """logprobs outside 0..20 (OpenAI's limit) is ConfigError, a ValueError."""
    with pytest.raises(llamakit.ConfigError, match="logprobs"):
        ctx.generate("Hi", max_new_tokens=1, logprobs=value)  # type: ignore[arg-type]


def test_post_sampling_probs_needs_logprobs(ctx: llamakit.Context) -> None:
    """post_sampling_probs without logprobs (or not a bool) is ConfigError."""
    with pytest.raises(llamakit.ConfigError, match="post_sampling_probs"):
        ctx.generate("Hi", max_new_tokens=1, post_sampling_probs=True)
    with pytest.raises(llamakit.ConfigError, match="post_sampling_probs"):
        ctx.generate("Hi", max_new_tokens=1, logprobs=1,
                     post_sampling_probs=1)  # type: ignore[arg-type]


def test_post_sampling_probs_describe_the_chains_candidates(ctx: llamakit.Context) -> None:
    """With top_k=3 the post-sampling distribution has 3 candidates whose probabilities
    sum to 1, the chosen token among them; the raw distribution has all 5 asked for."""
    post = ctx.generate("Once upon", max_new_tokens=4, temperature=1.0, top_k=3, top_p=1.0,
                        min_p=0.0, seed=5, logprobs=5, post_sampling_probs=True)
    raw = ctx.generate("Once upon", max_new_tokens=4, temperature=1.0, top_k=3, top_p=1.0,
                       min_p=0.0, seed=5, logprobs=5)
    assert post.tokens == raw.tokens
    assert post.logprobs is not None and raw.logprobs is not None
    for p, r in zip(post.logprobs, raw.logprobs, strict=True):
        assert len(p.top_logprobs) == 3 and len(r.top_logprobs) == 5
        assert sum(math.exp(t.logprob) for t in p.top_logprobs) == pytest.approx(1.0)
        assert p.token in [t.token for t in p.top_logprobs]
        assert [t.token for t in p.top_logprobs] == [t.token for t in r.top_logprobs[:3]]
        assert p.logprob > r.logprob  # renormalised over 3 candidates out of 32000


def test_greedy_post_sampling_is_the_model_distribution(ctx: llamakit.Context) -> None:
    """A greedy chain keeps every candidate: post-sampling equals the raw figures."""
    post = ctx.generate("Hi", max_new_tokens=2, temperature=0, logprobs=2,
                        post_sampling_probs=True)
    raw = ctx.generate("Hi", max_new_tokens=2, temperature=0, logprobs=2)
    assert post.logprobs is not None and raw.logprobs is not None
    for p, r in zip(post.logprobs, raw.logprobs, strict=True):
        assert p.logprob == pytest.approx(r.logprob, abs=1e-6)
        assert [t.token for t in p.top_logprobs] == [t.token for t in r.top_logprobs]


def test_stream_pieces_carry_their_tokens_logprobs(ctx: llamakit.Context) -> None:
    """Each streamed piece is a StreamPiece; together they hold the result's entries."""
    stream = ctx.stream("Hello", max_new_tokens=6, temperature=0, logprobs=2)
    pieces = list(stream)
    assert pieces and all(isinstance(p, StreamPiece) for p in pieces)
    assert stream.result is not None and stream.result.logprobs is not None
    carried = [e for p in pieces for e in p.logprobs]
    assert carried == stream.result.logprobs
    assert "".join(pieces) == stream.result.text


def test_chat_reports_openai_shaped_logprobs(ctx: llamakit.Context) -> None:
    """chat(logprobs=) fills generation.logprobs and to_dict()'s logprobs.content."""
    reply = ctx.chat([{"role": "user", "content": "Hi"}], template="chatml",
                     max_new_tokens=3, temperature=0, logprobs=1)
    entries = reply.generation.logprobs
    assert entries is not None and len(entries) == len(reply.generation.tokens)
    content = reply.to_dict()["logprobs"]["content"]
    assert [c["logprob"] for c in content] == [e.logprob for e in entries]
    assert all(len(c["top_logprobs"]) == 1 and isinstance(c["bytes"], list) for c in content)
    stream = ctx.chat_stream([{"role": "user", "content": "Hi"}], template="chatml",
                             max_new_tokens=3, temperature=0, logprobs=1)
    assert all(isinstance(p, StreamPiece) for p in stream)
