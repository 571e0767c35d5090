"""ClusterIndex's default route: the centroid score gap calibrated at fit time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.routing import probe_count, route
from cluster_rag.types import ModelInfo
from tests.fixtures import FakeEmbedder

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda omicron sigma tau".split()


@pytest.fixture
def fitted(tmp_path: Path) -> ClusterIndex:
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=5)) + f" n{i}" for i in range(200)]
    index = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=IndexConfig(progress=False))
    index.add_texts(texts)
    index.fit(k=8)
    return index


def test_fit_stores_the_calibrated_gap(fitted: ClusterIndex, tmp_path: Path) -> None:
    info = fitted.model_info
    assert info.probe_gap is not None and info.probe_gap >= 0
    assert info.calibrated_recall >= IndexConfig().target_recall
    assert 1 <= info.n_probe <= info.k
    reopened = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), create=False)
    assert reopened.model_info.probe_gap == info.probe_gap


def test_default_search_routes_by_gap_and_n_probe_overrides(fitted: ClusterIndex) -> None:
    state = fitted.model
    gap = state.info.probe_gap
    assert gap is not None
    queries = ("alpha beta", "sigma tau iota", "kappa")
    counts = [probe_count(state.centroids, fitted.embed_query(t), gap) for t in queries]
    assert min(counts) < state.info.k and len(set(counts)) > 1  # per-query, not one fixed count
    for text in queries:
        q = fitted.embed_query(text)
        pool = state.backend.search(q, route(state.centroids, q, gap=gap))  # every chunk of the gap-routed clusters
        hits = fitted.search(text, k=5, mode="dense")
        assert {h.id for h in hits} <= set(pool.ids)
        np.testing.assert_allclose([h.score for h in hits], pool.scores[:5], rtol=1e-5)
        allowed = set(route(state.centroids, q, gap=gap).tolist())
        assert {h.topic_id for h in hits} <= allowed
        one = fitted.search(text, k=5, n_probe=1, mode="dense")
        assert {h.topic_id for h in one} <= {int(route(state.centroids, q, 1)[0])}


def test_versions_without_a_gap_use_the_fixed_n_probe(fitted: ClusterIndex) -> None:
    stored = fitted.model_info.to_dict()
    del stored["probe_gap"]
    assert ModelInfo.from_dict(stored).probe_gap is None
    payload = fitted.store.load_model(fitted.model_info.version)
    assert payload is not None
    payload["info"] = {**stored, "n_probe": 1}  # a version written before gap routing existed
    fitted.store.update_model(fitted.model_info.version, payload)
    fitted.refresh()
    state = fitted.model
    q = fitted.embed_query("alpha beta")
    hits = fitted.search("alpha beta", k=5, mode="dense")
    assert {h.topic_id for h in hits} == {int(route(state.centroids, q, 1)[0])}
