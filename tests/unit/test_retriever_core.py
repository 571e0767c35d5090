"""The framework-free ClusteredRetriever: options, overrides, rerankers, async, adapter imports."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from cluster_rag import ClusterIndex, Hit, IndexConfig, InvalidInputError, MissingDependencyError
from cluster_rag.mmr import mmr_select
from cluster_rag.retriever import (
    ClusteredRetriever,
    CrossEncoderReranker,
    MMRReranker,
    Reranker,
)
from tests.fixtures import FakeEmbedder

CFG = IndexConfig(progress=False)
WORDS = {
    "pets": "dog cat puppy kitten leash bark meow vet",
    "space": "rocket orbit moon mars launch astronaut nasa planet",
    "food": "pasta pizza recipe oven garlic tomato cheese bake",
}


class ThreadRecordingEmbedder(FakeEmbedder):
    """FakeEmbedder that remembers which thread embedded each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        self.threads.append(threading.get_ident())
        return super().embed(texts, progress=progress)


@pytest.fixture
def index(tmp_path: Path) -> ClusterIndex:
    rng = np.random.default_rng(0)
    texts, metas, ids = [], [], []
    for name, words in WORDS.items():
        vocab = words.split()
        for i in range(20):
            texts.append(" ".join(rng.choice(vocab, size=6)) + f" note {name} {i}")
            metas.append({"topic": name, "parity": "even" if i % 2 == 0 else "odd"})
            ids.append(f"{name}-{i}")
    kb = ClusterIndex.open(tmp_path / "kb", embedder=ThreadRecordingEmbedder(), config=CFG)
    kb.add_texts(texts, metas, ids)
    kb.fit(k=3)
    return kb


def topic_of(index: ClusterIndex, name: str) -> int:
    return index.search(WORDS[name], k=1)[0].topic_id


def test_defaults_and_per_call_overrides(index: ClusterIndex) -> None:
    space = topic_of(index, "space")
    retriever = ClusteredRetriever(index, k=4, topics=[space])
    hits = retriever.retrieve("pizza oven garlic")
    assert len(hits) == 4 and all(h.topic_id == space for h in hits)
    # per call: k, topics=None clears the default restriction, where filters
    # n_probe=1: only the nearest (food) cluster; the default gap route may also probe a
    # second cluster whose chunks legitimately outscore some food chunks under the fake embedder
    hits = retriever.retrieve(
        "pizza oven garlic", k=6, topics=None, where={"parity": "odd"}, n_probe=1, mode="dense"
    )
    assert len(hits) == 6
    assert all(h.metadata["topic"] == "food" and h.metadata["parity"] == "odd" for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # labels work as topics; k=None keeps the default
    label = index.topics()[space].label
    assert [h.id for h in retriever.retrieve("rocket", topics=[label], k=None)] == [
        h.id for h in retriever.retrieve("rocket")
    ]
    # the result equals a plain search with the same options
    plain = index.search("moon launch", k=4, n_probe=1, topics=[space])
    assert [h.id for h in retriever.retrieve("moon launch", n_probe=1)] == [h.id for h in plain]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k=0 must be a positive int"),
        ({"k": 2.5}, "k=2.5"),
        ({"k": True}, "k=True"),
        ({"n_probe": 0}, "n_probe=0"),
        ({"topics": "space"}, "must be a list of topic ids or labels"),
        ({"topics": []}, "selects nothing"),
        ({"topics": [1.5]}, "topics item 1.5"),
        ({"where": "parity=odd"}, "must be a non-empty Chroma filter dict"),
        ({"reranker": 3}, "reranker must be callable"),
        ({"fetch_k": -1}, "fetch_k=-1"),
    ],
)
def test_bad_options_raise_typed_errors(index: ClusterIndex, kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        ClusteredRetriever(index, **kwargs)
    overrides = {k: v for k, v in kwargs.items() if k not in ("reranker", "fetch_k")}
    if overrides:
        with pytest.raises(InvalidInputError, match=match):
            ClusteredRetriever(index).retrieve("rocket", **overrides)


def test_unknown_option_bad_index_and_blank_query(index: ClusterIndex) -> None:
    retriever = ClusteredRetriever(index)
    with pytest.raises(InvalidInputError, match=r"unknown retrieval option\(s\) \['top_k'\]"):
        retriever.retrieve("rocket", top_k=3)
    with pytest.raises(InvalidInputError, match="index must be a cluster_rag.ClusterIndex, got str"):
        ClusteredRetriever("./kb")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="non-blank"):
        retriever.retrieve("   ")


def test_aretrieve_runs_off_the_event_loop_thread(index: ClusterIndex) -> None:
    retriever = ClusteredRetriever(index, k=3)
    embedder = index.embedder
    assert isinstance(embedder, ThreadRecordingEmbedder)

    async def main() -> tuple[list[Hit], int]:
        return await retriever.aretrieve("moon rocket", k=2), threading.get_ident()

    hits, loop_thread = asyncio.run(main())
    assert len(hits) == 2 and embedder.threads[-1] != loop_thread
    assert [h.id for h in hits] == [h.id for h in retriever.retrieve("moon rocket", k=2)]


def test_mmr_prefers_diverse_vectors() -> None:
    a = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    near_a = np.array([0.99, 0.141, 0.0], dtype=np.float32)
    b = np.array([0.0, 0.0, 1.0], dtype=np.float32)
    vectors = np.stack([a, near_a / np.linalg.norm(near_a), b])
    relevance = np.array([0.9, 0.89, 0.6], dtype=np.float32)
    assert mmr_select(relevance, vectors, 3, lambda_mult=1.0).tolist() == [0, 1, 2]
    assert mmr_select(relevance, vectors, 3, lambda_mult=0.5).tolist() == [0, 2, 1]
    assert mmr_select(relevance, vectors, 2, lambda_mult=0.5).tolist() == [0, 2]


def test_mmr_reranker_on_stored_vectors(index: ClusterIndex) -> None:
    reranker = MMRReranker.for_index(index, diversity=0.7)
    assert isinstance(reranker, Reranker)
    # n_probe=3 searches every cluster, so the candidate pool spans the topics
    plain = ClusteredRetriever(index, k=5, n_probe=3, mode="dense").retrieve("rocket moon pizza")
    reranked = ClusteredRetriever(
        index, k=5, n_probe=3, reranker=reranker, fetch_k=30, mode="dense"
    ).retrieve("rocket moon pizza")
    assert len(reranked) == 5 and reranked[0].id == plain[0].id
    # diversity: MMR spreads the answer over more topics than pure similarity does
    assert len({h.metadata["topic"] for h in reranked}) > len({h.metadata["topic"] for h in plain})
    assert all(h.score <= plain[0].score for h in reranked)  # scores stay cosine similarities
    with pytest.raises(InvalidInputError, match="diversity=1.5"):
        MMRReranker.for_index(index, diversity=1.5)


class LengthScorer:
    """Cross-encoder stand-in: scores a pair by how short the passage is."""

    def __init__(self, extra: int = 0) -> None:
        self.extra = extra

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 32) -> list[float]:
        return [-float(len(passage)) for _, passage in pairs] + [0.0] * self.extra


def test_cross_encoder_reranker_orders_by_model_score(index: ClusterIndex) -> None:
    retriever = ClusteredRetriever(
        index, k=3, reranker=CrossEncoderReranker(LengthScorer()), fetch_k=12, mode="dense"
    )
    hits = retriever.retrieve("rocket moon")
    pool = index.search("rocket moon", k=12, mode="dense")
    shortest = sorted(pool, key=lambda h: len(h.text))[:3]
    assert [len(h.text) for h in hits] == [len(h.text) for h in shortest]
    assert all(h.metadata["rerank_score"] == -len(h.text) for h in hits)
    assert {h.id for h in hits} <= {h.id for h in pool}
    with pytest.raises(InvalidInputError, match="returned 14 scores for 12 hits"):
        bad = CrossEncoderReranker(LengthScorer(2))
        ClusteredRetriever(index, k=3, reranker=bad, fetch_k=12).retrieve("x")
    with pytest.raises(InvalidInputError, match="predict"):
        CrossEncoderReranker(object())


@pytest.mark.parametrize(
    ("method", "module", "pip_line"),
    [
        ("as_langchain_retriever", "langchain_cluster_rag", "pip install langchain-cluster-rag"),
        (
            "as_llama_index_retriever",
            "llama_index.retrievers.cluster_rag",
            "pip install llama-index-retrievers-cluster-rag",
        ),
    ],
)
def test_missing_adapter_names_the_pip_command(
    index: ClusterIndex, monkeypatch: pytest.MonkeyPatch, method: str, module: str, pip_line: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail like a missing package
    with pytest.raises(MissingDependencyError, match=pip_line) as info:
        getattr(index, method)(k=3) if method == "as_langchain_retriever" else getattr(index, method)()
    assert "pip install -e integrations/" in str(info.value)
    assert isinstance(info.value, ImportError)
