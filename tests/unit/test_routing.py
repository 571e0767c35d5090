import numpy as np
import pytest

from cluster_rag.clustering import SphericalKMeans
from cluster_rag.embedding import normalize
from cluster_rag.errors import DimensionMismatchError, InvalidInputError
from cluster_rag.routing import RoutingIndex, choose_n_probe, probe_recall_curve


def make(n: int = 2000, dim: int = 32, k: int = 20, seed: int = 0) -> tuple[RoutingIndex, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = normalize(rng.normal(size=(n, dim)))
    km = SphericalKMeans(k, random_state=0).fit(X)
    ids = [f"c{i}" for i in range(n)]
    return RoutingIndex(km.cluster_centers_, ids, X, km.labels_), X


def test_all_probes_equal_exact_brute_force() -> None:
    index, X = make()
    q = normalize(np.random.default_rng(1).normal(size=32))
    got = index.candidates(q, n_probe=index.k, limit=10)
    truth = np.argsort(-(X @ q))[:10]
    assert list(got.ids) == [f"c{i}" for i in truth]
    np.testing.assert_allclose(got.scores, (X @ q)[truth], rtol=1e-5)
    assert np.all(np.diff(got.scores) <= 0)


def test_routing_searches_only_probed_clusters() -> None:
    index, _ = make()
    q = normalize(np.random.default_rng(2).normal(size=32))
    probed = set(index.route(q, 3).tolist())
    got = index.candidates(q, n_probe=3)
    assert set(got.labels.tolist()) <= probed
    assert len(got) == sum(int(index.sizes()[c]) for c in probed)


def test_topics_restrict_search() -> None:
    index, _ = make()
    q = normalize(np.ones(32))
    got = index.candidates(q, n_probe=1, topics=[4, 7])
    assert set(got.labels.tolist()) <= {4, 7}


def test_with_added_is_copy_on_write() -> None:
    index, X = make()
    new = normalize(np.random.default_rng(5).normal(size=(3, 32)))
    grown = index.with_added(["n0", "n1", "n2"], new, np.array([0, 1, 2]))
    assert len(index) == 2000 and len(grown) == 2003
    got = grown.candidates(new[1], n_probe=1, topics=[1], limit=1)
    assert got.ids[0] == "n1"
    assert grown.sizes().sum() == 2003
    ids, vecs = grown.members(2)
    assert "n2" in set(ids) and len(ids) == len(vecs)
    # many adds trigger a merge that keeps everything
    big = normalize(np.random.default_rng(6).normal(size=(1500, 32)))
    merged = grown.with_added([f"m{i}" for i in range(1500)], big, np.zeros(1500, dtype=int))
    assert len(merged) == 3503 and merged.sizes()[0] == index.sizes()[0] + 1 + 1500


def test_query_validation() -> None:
    index, _ = make()
    with pytest.raises(DimensionMismatchError, match="dimension 5"):
        index.check_query(np.ones(5))
    with pytest.raises(InvalidInputError):
        index.check_query(np.zeros(32))


def test_recall_curve_is_monotone_and_reaches_one() -> None:
    index, X = make()
    curve = probe_recall_curve(X, index.labels()[np.argsort([int(i[1:]) for i in index.ids()])],
                               index.centroids, n_queries=100)
    assert curve.shape == (20,)
    assert np.all(np.diff(curve) >= -1e-12)
    assert curve[-1] == pytest.approx(1.0)
    p = choose_n_probe(curve, 0.9)
    assert curve[p - 1] >= 0.9 and (p == 1 or curve[p - 2] < 0.9)
