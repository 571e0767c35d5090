"""The Chroma-side backend against a real ``chroma run`` server: the same candidates as the numpy
backend over the same rows (scores within float32 rounding), through adds and deletes, with no
chunk vectors held in the client."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.backends_chroma import ChromaQueryBackend
from cluster_rag.routing import RoutingIndex
from tests.fixtures import FakeEmbedder

pytestmark = pytest.mark.integration

WORDS = "dog cat rocket orbit pasta pizza guitar drum moon garlic piano leash".split()


def same_candidates(chroma: ChromaQueryBackend, numpy_backend: RoutingIndex, queries: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    for q in queries:
        for clusters in (np.arange(chroma.k), rng.choice(chroma.k, size=2, replace=False)):
            for limit in (5, None):
                a = chroma.search(q, clusters, limit)
                b = numpy_backend.search(q, clusters, limit)
                # same scores in the same order (ties may list different ids), and each id
                # with its own score and cluster
                assert np.allclose(a.scores, b.scores, atol=1e-4)
                every = numpy_backend.search(q, clusters)
                truth = {cid: (s, c) for cid, s, c in zip(every.ids, every.scores, every.labels, strict=True)}
                for cid, score, label in zip(a.ids, a.scores, a.labels, strict=True):
                    assert abs(truth[cid][0] - score) < 1e-4 and truth[cid][1] == label
                if limit is None:
                    assert set(a.ids) == set(b.ids)


def fitted_on_server(
    url: str, prefix: str, n: int, k: int, *, seed: int, metadatas: list[dict[str, object]] | None = None
) -> tuple[ClusterIndex, IndexConfig, list[str]]:
    """A fresh collection on the server with ``n`` random word texts (ids ``<prefix><i>``), fitted at ``k``."""
    cfg = IndexConfig(progress=False, collection=f"{prefix}{uuid.uuid4().hex[:8]}")
    index = ClusterIndex.connect(url, embedder=FakeEmbedder(), config=cfg)
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=5)) + f" {i}" for i in range(n)]
    index.add_texts(texts, metadatas=metadatas, ids=[f"{prefix}{i}" for i in range(n)])
    index.fit(k=k)
    return index, cfg, texts


def test_chroma_backend_matches_numpy_through_adds_and_deletes(chroma_server: str) -> None:
    index, cfg, _ = fitted_on_server(chroma_server, "c", 150, 4, seed=0)
    backend = index.model.backend
    assert isinstance(backend, ChromaQueryBackend)
    assert not index.model.loaded or len(backend) == 150
    queries = FakeEmbedder().embed(["dog rocket", "pizza garlic", "piano drum moon"])

    def check() -> None:
        live = index.model.backend
        assert isinstance(live, ChromaQueryBackend)
        ref = RoutingIndex(index.model.centroids, live.ids(), live.vectors(), live.labels())
        assert len(live) == index.store.count()
        same_candidates(live, ref, queries)

    check()
    index.add_texts(["dog leash walk", "rocket to the moon"], ids=["late-0", "late-1"])
    index.delete(["c0", "c1", "late-0"])
    check()
    again = ClusterIndex.connect(chroma_server, embedder=FakeEmbedder(), config=cfg, create=False)
    hits = again.search_by_vector(queries[0], k=5)
    assert [h.id for h in hits] == [h.id for h in index.search_by_vector(queries[0], k=5)]
    assert isinstance(again.model.backend, ChromaQueryBackend)
    assert sorted(again.model.added.ids()) == ["late-1"]
    assert "c0" not in set(again.model.backend.ids())


def test_server_collection_searches_with_the_raised_ef(chroma_server: str, tmp_path) -> None:
    """The server backend's id-restricted queries run on Chroma's HNSW graph: a chunk collection that
    cluster-rag creates on a server gets ``SERVER_EF_SEARCH`` and ``SERVER_MAX_NEIGHBORS``; an embedded
    one keeps Chroma's defaults."""
    from cluster_rag.store.chroma_store import SERVER_EF_SEARCH, SERVER_MAX_NEIGHBORS

    cfg = IndexConfig(progress=False, collection=f"ef{uuid.uuid4().hex[:8]}")
    remote = ClusterIndex.connect(chroma_server, embedder=FakeEmbedder(), config=cfg)
    remote.add_texts(["dog leash", "rocket moon"], ids=["a", "b"])
    assert remote.store.is_remote
    hnsw = remote.store.chunks.configuration["hnsw"]
    assert hnsw["ef_search"] == SERVER_EF_SEARCH > 100 and hnsw["space"] == "cosine"
    assert hnsw["max_neighbors"] == SERVER_MAX_NEIGHBORS > 16
    local = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=cfg)
    local.add_texts(["dog leash"], ids=["a"])
    assert not local.store.is_remote
    assert local.store.chunks.configuration["hnsw"]["ef_search"] == 100
    assert local.store.chunks.configuration["hnsw"]["max_neighbors"] == 16


def test_server_filtered_search_runs_the_filter_inside_chroma(
    chroma_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``where`` search on a server is filtered by Chroma inside the id-restricted query, widening
    the probe until ``k`` chunks pass: the hits are the exact best passing chunks of the probed
    clusters, and a filter passing few chunks still returns all of them."""
    groups: list[dict[str, object]] = [{"group": i % 6} for i in range(120)]
    index, _, texts = fitted_on_server(chroma_server, "w", 120, 4, seed=3, metadatas=groups)

    def no_second_pass(*args: object, **kwargs: object) -> set[str]:
        raise AssertionError("filtered after scoring instead of inside the Chroma query")

    monkeypatch.setattr(index.store, "filter_ids", no_second_pass)
    vectors = FakeEmbedder().embed(texts)
    query = FakeEmbedder().embed(["dog rocket pizza"])[0]
    passing = [i for i in range(120) if i % 6 == 2]
    best = sorted(passing, key=lambda i: -float(vectors[i] @ query))[:5]
    hits = index.search_by_vector(query, k=5, n_probe=4, where={"group": 2})
    assert [h.id for h in hits] == [f"w{i}" for i in best]
    assert all(h.metadata["group"] == 2 for h in hits)
    # one probed cluster first: the search widens until 5 pass
    assert len(index.search_by_vector(query, k=5, n_probe=1, where={"group": 2})) == 5
    few = index.search_by_vector(query, k=5, where={"$and": [{"group": 2}, {"group": {"$ne": 2}}]})
    assert few == []


def test_server_unrestricted_search_uses_chromas_index_and_places_hits(
    chroma_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unrestricted default-route search on a server is Chroma's own query over the collection,
    each hit carrying the topic of its cluster in the model; a hit the model does not hold yet (written
    by another client) hands the search to the routed id-restricted query; ``n_probe`` asks for the
    routed query directly."""
    index, cfg, texts = fitted_on_server(chroma_server, "u", 160, 5, seed=5)
    vectors = FakeEmbedder().embed(texts)
    ids, labels = index.model.assignments()
    topic_of = {str(cid): index.model.topics[int(lab)].id for cid, lab in zip(ids, labels, strict=True)}
    calls: list[int] = []
    whole = ChromaQueryBackend.search_whole

    def counted(self: ChromaQueryBackend, *args: object) -> object:
        calls.append(1)
        return whole(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ChromaQueryBackend, "search_whole", counted)
    for text in ("dog rocket", "pizza garlic moon", "piano leash"):
        query = FakeEmbedder().embed([text])[0]
        hits = index.search_by_vector(query, k=6)
        exact = np.sort(vectors @ query)[::-1][:6]  # 160 rows: Chroma's HNSW is exact here (ties aside)
        assert np.allclose([h.score for h in hits], exact, atol=1e-4)
        assert all(abs(float(vectors[int(h.id[1:])] @ query) - h.score) < 1e-4 for h in hits)
        assert all(h.topic_id == topic_of[h.id] for h in hits)
    assert len(calls) == 3

    # another client writes a chunk this client's model does not hold: the routed query answers
    other = ClusterIndex.connect(chroma_server, embedder=FakeEmbedder(), config=cfg, create=False)
    other.add_texts(["garlic pizza pasta pasta pasta"], ids=["late"])
    query = FakeEmbedder().embed(["garlic pizza pasta pasta pasta"])[0]
    assert "late" not in {h.id for h in index.search_by_vector(query, k=3)}
    index.refresh()
    assert index.search_by_vector(query, k=3)[0].id == "late"

    def refuse(*args: object) -> object:
        raise AssertionError("n_probe given: the routed query should answer")

    monkeypatch.setattr(ChromaQueryBackend, "search_whole", refuse)
    assert len(index.search_by_vector(query, k=3, n_probe=2)) == 3


def test_server_client_opens_an_unchanged_store_without_a_full_pass(
    chroma_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client connecting to a store nobody wrote to since the fit reads the version record and
    the ids its first search needs: no count, no scan for added chunks (both are full passes on the
    server). After another client writes, the next client scans and holds the new chunk."""
    index, cfg, texts = fitted_on_server(chroma_server, "c", 120, 4, seed=7)

    def full_pass(*args: object, **kwargs: object) -> None:
        raise AssertionError("a full pass over the chunks on opening an unchanged store")

    fresh = ClusterIndex.connect(chroma_server, embedder=FakeEmbedder(), config=cfg, create=False)
    monkeypatch.setattr(fresh.store, "count", full_pass)
    monkeypatch.setattr(fresh.store, "iter_all", full_pass)
    query = FakeEmbedder().embed([texts[17]])[0]
    assert fresh.search_by_vector(query, k=1)[0].id == "c17"
    assert isinstance(fresh.model.backend, ChromaQueryBackend) and len(fresh.model.backend) == 120
    monkeypatch.undo()

    index.add_texts(["garlic pizza pasta pasta pasta"], ids=["late"])
    later = ClusterIndex.connect(chroma_server, embedder=FakeEmbedder(), config=cfg, create=False)
    query = FakeEmbedder().embed(["garlic pizza pasta pasta pasta"])[0]
    assert later.search_by_vector(query, k=1, n_probe=1)[0].id == "late"
    assert later.model.added.ids() == ["late"]
