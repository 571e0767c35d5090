import numpy as np
import pytest

from cluster_rag.clustering import SphericalKMeans
from cluster_rag.embedding import normalize
from cluster_rag.errors import DimensionMismatchError, InvalidInputError
from cluster_rag.routing import (
    RoutingIndex,
    calibrate,
    choose_gap,
    choose_n_probe,
    needed_gaps,
)


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
    labels = index.labels()[np.argsort([int(i[1:]) for i in index.ids()])]
    curve = calibrate(X, labels, index.centroids, target=0.9, n_queries=100).curve
    assert curve.shape == (20,)
    assert np.all(np.diff(curve) >= -1e-12)
    assert curve[-1] == pytest.approx(1.0)
    p = choose_n_probe(curve, 0.9)
    assert curve[p - 1] >= 0.9 and (p == 1 or curve[p - 2] < 0.9)


def test_gap_route_probes_every_cluster_within_the_margin() -> None:
    index, _ = make()
    q = normalize(np.random.default_rng(3).normal(size=32))
    sims = index.centroids @ q
    for gap in (0.0, 0.05, 0.2, 5.0):
        got = index.route(q, gap=gap)
        assert set(got.tolist()) == set(np.nonzero(sims >= sims.max() - gap)[0].tolist())
        assert np.all(np.diff(sims[got]) <= 0)  # most similar first
        assert index.probe_count(q, gap) == len(got)
    assert len(index.route(q, gap=0.0)) == 1 and len(index.route(q, gap=5.0)) == index.k
    cands = index.candidates(q, gap=0.05)
    assert set(cands.labels.tolist()) <= set(index.route(q, gap=0.05).tolist())
    with pytest.raises(InvalidInputError, match="not both"):
        index.route(q, 3, gap=0.1)
    with pytest.raises(InvalidInputError, match="n_probe"):
        index.route(q)


def test_needed_gap_is_exactly_where_a_neighbour_is_found() -> None:
    index, X = make(n=600, k=12)
    labels = index.labels()[np.argsort([int(i[1:]) for i in index.ids()])]
    x = X[7]
    sims = X @ x
    sims[7] = -np.inf
    for j in np.argsort(-sims)[:10]:
        csims = index.centroids @ x
        needed = float(csims.max() - csims[labels[j]])
        assert labels[j] in index.route(x, gap=needed + 1e-6)
        if needed > 1e-3:
            assert labels[j] not in index.route(x, gap=needed - 1e-3)


def test_calibrate_picks_the_smallest_gap_reaching_the_target() -> None:
    index, X = make()
    labels = index.labels()[np.argsort([int(i[1:]) for i in index.ids()])]
    needed = needed_gaps(X, labels, index.centroids, n_queries=100, seed=4)
    assert needed.shape == (100, 10) and np.all(needed >= 0)
    cal = calibrate(X, labels, index.centroids, target=0.9, n_queries=100, seed=4)
    assert cal.recall == pytest.approx(np.mean(needed <= cal.gap)) and cal.recall >= 0.9
    assert np.mean(needed < cal.gap - 2e-6) < 0.9  # any smaller gap misses the target
    assert 1 <= cal.n_probe <= index.k and cal.curve.shape == (index.k,)
    assert choose_gap(needed, 1.0) >= needed.max()
    assert calibrate(X[:1], labels[:1], index.centroids, target=0.9).recall == 1.0


def test_gap_calibrated_on_chunks_transfers_to_harder_queries() -> None:
    """Queries farther from the data than the chunks (as real questions are) keep their
    recall with the gap rule; a fixed n_probe calibrated on chunks loses it."""
    rng = np.random.default_rng(0)
    centers = normalize(rng.normal(size=(12, 32)) + 1.5 * normalize(rng.normal(size=32)))
    pick = rng.integers(12, size=2000)
    X = normalize(centers[pick] + 0.35 * rng.normal(size=(2000, 32)))
    km = SphericalKMeans(12, random_state=0).fit(X)
    index = RoutingIndex(km.cluster_centers_, [f"c{i}" for i in range(2000)], X, km.labels_)
    cal = calibrate(X, km.labels_, km.cluster_centers_, target=0.95, seed=0)
    fixed = choose_n_probe(cal.curve, 0.95)
    queries = normalize(centers[rng.integers(12, size=200)] + 0.7 * rng.normal(size=(200, 32)))

    def recall(**route: float) -> float:
        found = []
        for q in queries:
            truth = {f"c{i}" for i in np.argsort(-(X @ q))[:10]}
            found.append(len(truth & set(index.candidates(q, limit=10, **route).ids)) / 10)
        return float(np.mean(found))

    assert recall(gap=cal.gap) >= 0.9
    assert recall(gap=cal.gap) > recall(n_probe=fixed) + 0.02
