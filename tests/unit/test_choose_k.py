"""k sweep, Kneedle and the recommendation rule on synthetic data with a known k."""

from __future__ import annotations

import numpy as np
import pytest

from cluster_rag.clustering.choose_k import (
    KSweep,
    auto_k_range,
    k_grid,
    kneedle,
    recommend_k,
    sweep_k,
)
from cluster_rag.errors import InvalidInputError, InvalidKError


@pytest.fixture(autouse=True)
def _one_thread():
    """OpenMP/BLAS threads spin-wait on a busy 2-core box; one thread is faster and steadier here."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def sphere_blobs(k: int, per: int = 80, dim: int = 24, spread: float = 0.25, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    X = np.concatenate([c + spread * rng.normal(size=(per, dim)) / np.sqrt(dim) for c in centers])
    return X.astype(np.float32)


def test_k_grid() -> None:
    assert k_grid(2, 9) == list(range(2, 10))
    grid = k_grid(5, 200, 16)
    assert grid[0] == 5 and grid[-1] == 200 and grid == sorted(set(grid)) and 12 <= len(grid) <= 17


@pytest.mark.parametrize("seed", range(4))
def test_builtin_kneedle_matches_kneed(seed: int) -> None:
    kneed = pytest.importorskip("kneed")
    rng = np.random.default_rng(seed)
    x = np.asarray(k_grid(2, 150, 18), dtype=float)
    y = 1000.0 / x**rng.uniform(0.3, 1.2) + rng.normal(scale=rng.uniform(0, 3), size=len(x))
    y = np.sort(y)[::-1]
    expected = kneed.KneeLocator(x, y, curve="convex", direction="decreasing").knee
    assert kneedle(x, y) == expected


def test_kneedle_finds_the_elbow_and_none_on_a_line() -> None:
    x = np.arange(1, 21, dtype=float)
    y = np.where(x <= 6, 100 - 15 * (x - 1), 25 - 0.5 * (x - 6))  # sharp bend at x = 6
    assert kneedle(x, y) == 6
    assert kneedle(x, 50 - 2 * x) is None
    assert kneedle([1, 2], [3, 1]) is None


def test_recommend_rule() -> None:
    ks = [5, 10, 20, 40, 80, 160]
    sil = [0.30, 0.10, 0.12, 0.15, 0.11, 0.05]
    assert recommend_k(ks, sil, knee=40) == 40  # best silhouette in [20, 80]; the global best (5) is outside
    assert recommend_k(ks, sil, knee=None) == 5  # no knee: whole grid
    assert recommend_k(ks, [0.2, 0.2, 0.1, 0.1, 0.1, 0.1], knee=None) == 10  # tie: larger k


def test_sweep_recovers_known_k() -> None:
    X = sphere_blobs(8)
    sweep = sweep_k(X, ks=range(2, 17), silhouette_sample=400)
    assert isinstance(sweep, KSweep)
    assert sweep.ks == list(range(2, 17))
    assert sweep.recommended == 8
    assert sweep.best_silhouette == 8
    after = sweep.scores[6:]  # k >= 8: inertia keeps falling
    assert all(a.inertia >= b.inertia - 1e-6 for a, b in zip(after, after[1:], strict=False))
    data = sweep.to_dict()
    assert data["recommended"] == 8 and len(data["scores"]) == len(sweep.ks)
    assert len(sweep.rows()) == len(sweep.ks) and "recommended" in sweep.rows()[6][-1]


def test_sweep_is_deterministic_and_samples() -> None:
    X = sphere_blobs(5, per=60)
    a = sweep_k(X, 2, 10, sample=200, silhouette_sample=150, random_state=3)
    b = sweep_k(X, 2, 10, sample=200, silhouette_sample=150, random_state=3)
    assert a.n_sample == 200 and a.n_silhouette == 150
    np.testing.assert_allclose(a.column("inertia"), b.column("inertia"))
    assert a.recommended == b.recommended


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k_min": 1, "k_max": 5}, InvalidKError, "k_min=1"),
        ({"k_min": 8, "k_max": 4}, InvalidKError, "k_max=4 is below k_min=8"),
        ({"k_min": 2, "k_max": 300}, InvalidKError, "k_max=300 but the sweep sample holds 240"),
        ({"k_min": 2, "k_max": 5, "sample": 3}, InvalidInputError, "sample=3"),
        ({"k_min": 2, "k_max": 5, "silhouette_sample": 1}, InvalidInputError, "silhouette_sample=1"),
        ({"k_min": 2.5, "k_max": 5}, InvalidKError, "k_min=2.5"),
    ],
)
def test_sweep_bad_input(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        sweep_k(sphere_blobs(3), **kwargs)


def test_sweep_bad_vectors() -> None:
    with pytest.raises(InvalidInputError, match="2-D"):
        sweep_k(np.ones(5), 2, 3)


def test_auto_k_range() -> None:
    assert auto_k_range(400) == (5, 40)
    assert auto_k_range(100_000) == (5, 200)
    assert auto_k_range(30) == (2, 3)
    with pytest.raises(InvalidKError, match="k='auto' needs at least 4 chunks"):
        auto_k_range(3)
