"""Neighbour smoothing and PCA inside SphericalKMeans: centroids stay in the original space."""

from __future__ import annotations

import numpy as np
import pytest

from cluster_rag.clustering import SphericalKMeans
from cluster_rag.clustering.kmeans import AUTO_SMOOTH_ROWS, neighbour_smooth
from cluster_rag.errors import InvalidInputError


def noisy_blobs(k: int = 6, per: int = 100, dim: int = 32, noise: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim))
    X = np.concatenate([c + noise * rng.normal(size=(per, dim)) for c in centers]).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), np.repeat(np.arange(k), per)


def test_neighbour_smooth_averages_true_neighbours() -> None:
    X = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99]], dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    out = neighbour_smooth(X, 1, steps=1)
    expected = (X[0] + X[1]) / np.linalg.norm(X[0] + X[1])
    np.testing.assert_allclose(out[0], expected, rtol=1e-5)
    np.testing.assert_allclose(out[1], expected, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(neighbour_smooth(X[:1], 5), X[:1])  # nothing to average


@pytest.mark.parametrize("kw", [{"smooth": 10}, {"reduce_dim": 8}, {"smooth": 10, "reduce_dim": 8}])
def test_transforms_keep_centroids_in_original_space(kw: dict) -> None:
    from sklearn.metrics import v_measure_score

    X, y = noisy_blobs()
    km = SphericalKMeans(6, random_state=0, **kw).fit(X)
    assert km.cluster_centers_.shape == (6, 32)
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(km.predict(X), km.labels_)  # labels are nearest centroids
    sims = np.einsum("ij,ij->i", X, km.cluster_centers_[km.labels_])
    assert km.inertia_ == pytest.approx(float(np.sum(1 - sims)), rel=1e-5)
    assert v_measure_score(y, km.labels_) > 0.8


def test_smoothing_is_deterministic_and_auto_rule() -> None:
    X, _ = noisy_blobs(noise=1.6, seed=1)
    plain = SphericalKMeans(6, random_state=0, smooth=0).fit(X)
    a = SphericalKMeans(6, random_state=0, smooth=10).fit(X)
    b = SphericalKMeans(6, random_state=0, smooth=10).fit(X)
    assert plain.smooth_ == 0 and a.smooth_ == 10
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert not np.allclose(a.cluster_centers_, plain.cluster_centers_)  # the transform changed the fit
    auto = SphericalKMeans(6, random_state=0).fit(X)
    assert auto.smooth_ == min(20, len(X) // (5 * 6))  # 600 rows, k=6 -> 20
    assert SphericalKMeans(60, random_state=0).fit(X).smooth_ == 2  # 600 // 300
    assert SphericalKMeans(150, random_state=0).fit(X).smooth_ == 0  # clusters too small to smooth
    assert AUTO_SMOOTH_ROWS >= 20_000


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"smooth": -1}, "smooth=-1"),
        ({"smooth": "lots"}, "smooth='lots'"),
        ({"smooth": True}, "smooth=True"),
        ({"smooth_steps": 0}, "smooth_steps=0"),
        ({"reduce_dim": 32}, r"reduce_dim=32 must be an int in \[2, 32\)"),
        ({"reduce_dim": 1}, "reduce_dim=1"),
        ({"reduce_dim": 4.0}, "reduce_dim=4.0"),
    ],
)
def test_bad_transform_parameters(kw: dict, match: str) -> None:
    X, _ = noisy_blobs(per=10)
    with pytest.raises(InvalidInputError, match=match):
        SphericalKMeans(3, **kw).fit(X)
