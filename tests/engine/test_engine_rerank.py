"""Engine.submit_rerank / Engine.rerank: Context.rerank run between decode steps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import llamakit
from llamakit.testing import write_reranker_model

DOCUMENTS = ["hi", "The giant panda is a bear.", "It is sunny.", "Pandas eat bamboo."]


def test_engine_rerank_equals_context_rerank(tmp_path: Path, model: llamakit.Model) -> None:
    path = write_reranker_model(tmp_path / "reranker.gguf")
    with llamakit.load_model(path, backend="cpu") as reranker:
        with reranker.new_context(embeddings=True, n_ctx=512) as ctx:
            expected = ctx.rerank("panda?", DOCUMENTS, top_n=3)
        with llamakit.Engine(reranker, embeddings=True, n_parallel=2, n_ctx=512,
                             n_threads=2) as engine:
            got = engine.submit_rerank("panda?", DOCUMENTS, top_n=3).result()
            assert got.ranking == expected.ranking
            assert got.scores == pytest.approx(expected.scores, abs=1e-4)
            again = asyncio.run(engine.rerank("panda?", DOCUMENTS))
            assert again.scores == pytest.approx(expected.scores, abs=1e-4)
            with pytest.raises(llamakit.EmptyPromptError):
                engine.submit_rerank("panda?", []).result()
            with pytest.raises(llamakit.ConfigError, match="top_n"):
                asyncio.run(engine.rerank("panda?", DOCUMENTS, top_n=0))
            assert engine.stats().requests_failed == 2
    with llamakit.Engine(model, n_parallel=1, n_ctx=256, n_threads=2) as engine, \
            pytest.raises(llamakit.ContextError, match="embeddings=True"):
        engine.submit_rerank("q", ["d"])
