"""Hybrid retrieval parts against real services: Chroma (embedded and server), an index, loopback HTTP."""

from __future__ import annotations

from pathlib import Path

import chromadb
import pytest

from cluster_rag.fusion import convex_combination, reciprocal_rank_fusion
from cluster_rag.keyword_index import KeywordIndex
from cluster_rag.rerank import LLMReranker, MMRReranker
from cluster_rag.types import Hit
from tests.llm_stub import Reply, ScriptedLLM, fitted_index, llm  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def _hits(n: int) -> list[Hit]:
    return [Hit(id=f"h{i}", text=f"passage {i}", score=0.0, topic_id=0) for i in range(n)]


def test_keyword_index_from_a_real_index_fuses_with_dense_hits(tmp_path: Path) -> None:
    index = fitted_index(tmp_path / "kb")
    kw = KeywordIndex.from_collection(index.store.chunks)
    assert len(kw) == index.store.count()
    query = "rocket launch orbit"
    keyword = kw.search(query, k=10)
    assert keyword.ids and all("space" in t for t in (h.text for h in index.get(keyword.ids)))
    dense = index.search(query, k=10)
    fused = reciprocal_rank_fusion([[h.id for h in dense], keyword.ids])
    assert set(fused.ids) == {h.id for h in dense} | set(keyword.ids)
    cvx = convex_combination(
        ([h.id for h in dense], [h.score for h in dense]), (keyword.ids, keyword.scores), 0.0
    )
    # alpha 0: keyword order first (the lowest keyword hit normalizes to 0 and ties with dense-only hits)
    assert cvx.ids[: len(keyword) - 1] == keyword.ids[:-1]
    # MMR wired to the index's embedder and stored vectors returns the same hits
    mmr = MMRReranker.for_index(index, diversity=0.5)
    assert sorted(h.id for h in mmr(query, dense)) == sorted(h.id for h in dense)
    # the keyword index persists in the store's meta collection and reloads
    kw.save(index.store.meta)
    again = KeywordIndex.load(index.store.meta)
    assert again is not None and again.search(query, k=10).ids == keyword.ids


@pytest.mark.server
def test_keyword_index_round_trips_through_a_chroma_server(chroma_server: str) -> None:
    host, port = chroma_server.removeprefix("http://").split(":")
    writer = chromadb.HttpClient(host=host, port=int(port))
    meta = writer.get_or_create_collection("hybrid_kw__meta", embedding_function=None)
    kw = KeywordIndex().build(["a", "b", "c"], ["gene expression in mice", "stock prices", "mouse genes"])
    kw.save(meta)
    reader = chromadb.HttpClient(host=host, port=int(port))  # another client, no shared disk
    loaded = KeywordIndex.load(reader.get_collection("hybrid_kw__meta", embedding_function=None))
    assert loaded is not None
    assert loaded.search("genes mice", k=3).ids == kw.search("genes mice", k=3).ids
    assert loaded.fingerprint() == kw.fingerprint()


def test_llm_reranker_over_http_reorders(llm: ScriptedLLM) -> None:  # noqa: F811
    llm.script = lambda body, n: Reply("[2] > [3] > [1]")
    rr = LLMReranker.connect(llm.url, "stub", timeout=5.0)
    assert [h.id for h in rr("which passage?", _hits(3))] == ["h1", "h2", "h0"]
    assert rr.fallbacks == 0 and len(llm.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [Reply("[2] > [1]", delay=1.5), Reply(status=500), Reply("no numbers here"), Reply(status=429)],
    ids=["timeout", "server-error", "junk", "rate-limited"],
)
def test_llm_reranker_over_http_falls_back(llm: ScriptedLLM, reply: Reply) -> None:  # noqa: F811
    llm.script = lambda body, n: reply
    rr = LLMReranker.connect(llm.url, "stub", timeout=0.5)
    hits = _hits(3)
    assert rr("which passage?", hits) == hits
    assert rr.fallbacks == 1
    assert len(llm.requests) == 1  # no retries: fall back at once


@pytest.mark.server
def test_hybrid_search_over_a_chroma_server(chroma_server: str) -> None:
    from cluster_rag import ClusterIndex, IndexConfig
    from tests.fixtures import FakeEmbedder

    cfg = IndexConfig(progress=False).with_(collection="hybrid_server")
    writer = ClusterIndex.connect(chroma_server, embedder=FakeEmbedder(), config=cfg)
    writer.add_texts([f"{w} note {i}" for i, w in enumerate("cat dog moon mars pasta pizza".split() * 4)])
    writer.fit(k=2)
    assert {h.text.split()[0] for h in writer.search("pizza", k=3, mode="keyword")} == {"pizza"}
    # a second client (no shared disk) loads the keyword index the first one saved in the server
    reader = ClusterIndex.connect(chroma_server, embedder=FakeEmbedder(), config=cfg, create=False)
    assert KeywordIndex.saved_fingerprint(reader.store.meta) is not None
    hits = reader.search("mars moon", k=4, mode="hybrid")
    assert len(hits) == 4 and {h.text.split()[0] for h in hits} <= {"mars", "moon"}
