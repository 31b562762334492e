"""POST /v1/rerank (llama-server's, Jina's and Cohere's shape) on a server started with
--reranking over a synthetic BERT reranker; refused elsewhere."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import Served, serve_command, start, stop

import llamakit
from llamakit.testing import write_reranker_model

QUERY = "What is a panda?"
DOCUMENTS = ["hi", "The giant panda is a bear species endemic to China.",
             "It is a sunny day.", "Pandas eat bamboo."]


@pytest.fixture(scope="module")
def reranker_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_reranker_model(tmp_path_factory.mktemp("rerank") / "reranker.gguf")


@pytest.fixture(scope="module")
def reranker(reranker_path: Path) -> Iterator[Served]:
    served = start("--reranking", "-np", "2", "-c", "512", key=None, model=reranker_path)
    try:
        yield served
    finally:
        stop(served)


def post(served: Served, body: dict[str, Any], path: str = "/v1/rerank"
         ) -> tuple[int, Any]:
    status, _, answer = served.raw("POST", path, json.dumps(body).encode())
    return status, answer


def test_rerank_scores_equal_context_rerank(reranker: Served, reranker_path: Path) -> None:
    status, answer = post(reranker, {"query": QUERY, "documents": DOCUMENTS})
    assert status == 200, answer
    with llamakit.load_model(reranker_path, backend="cpu") as model, \
            model.new_context(embeddings=True, n_ctx=512) as ctx:
        expected = ctx.rerank(QUERY, DOCUMENTS)
    results = answer["results"]
    assert [r["index"] for r in results] == expected.ranking
    for item in results:
        assert item["relevance_score"] == pytest.approx(expected.scores[item["index"]],
                                                        abs=1e-4)
        assert "document" not in item
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert answer["usage"]["prompt_tokens"] > len(DOCUMENTS)
    assert answer["model"] == "reranker"


def test_top_n_return_documents_and_aliases(reranker: Served) -> None:
    status, whole = post(reranker, {"query": QUERY, "documents": DOCUMENTS})
    assert status == 200
    for path in ("/v1/rerank", "/rerank", "/v1/reranking", "/reranking"):
        status, answer = post(reranker, {"query": QUERY, "documents": DOCUMENTS, "top_n": 2,
                                         "return_documents": True}, path)
        assert status == 200, answer
        assert [r["index"] for r in answer["results"]] == \
            [r["index"] for r in whole["results"][:2]]
        for item in answer["results"]:
            assert item["document"] == {"text": DOCUMENTS[item["index"]]}


@pytest.mark.parametrize(("body", "param"), [
    ({"query": QUERY, "documents": []}, "documents"),
    ({"query": QUERY, "documents": DOCUMENTS, "top_n": 0}, "top_n"),
    ({"query": 3, "documents": DOCUMENTS}, "query"),
    ({"query": QUERY, "documents": ["a", 2]}, "documents.1"),
    ({"documents": DOCUMENTS}, "query"),
    ({"query": QUERY, "documents": DOCUMENTS, "model": "other"}, "model"),
])
def test_bad_rerank_requests_are_4xx(reranker: Served, body: dict[str, Any],
                                     param: str) -> None:
    status, answer = post(reranker, body)
    assert 400 <= status < 500
    assert answer["error"]["param"] == param


def test_too_long_a_pair_is_a_400(reranker: Served) -> None:
    status, answer = post(reranker, {"query": QUERY, "documents": ["panda " * 400]})
    assert status == 400, answer


def test_reranking_server_serves_rerank_only(reranker: Served) -> None:
    status, answer = post(reranker, {"messages": [{"role": "user", "content": "Hi"}]},
                          "/v1/chat/completions")
    assert status == 400 and "--reranking" in answer["error"]["message"]
    status, answer = post(reranker, {"input": "Hi"}, "/v1/embeddings")
    assert status == 400 and "--reranking" in answer["error"]["message"]


def test_rerank_on_a_chat_server_is_a_400(server: Served) -> None:
    status, answer = post(server, {"query": QUERY, "documents": DOCUMENTS})
    assert status == 400 and "--reranking" in answer["error"]["message"]


def test_reranking_needs_a_reranking_model() -> None:
    done = subprocess.run([*serve_command("--reranking", "--port", "1")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "--reranking needs a reranking model" in done.stderr
