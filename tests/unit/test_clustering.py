import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering, KMeans

from cluster_rag.clustering import SphericalKMeans, fit_any
from cluster_rag.errors import InvalidInputError, InvalidKError, NotFittedError


def blobs(k: int = 5, per: int = 60, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim))
    X = np.concatenate([c + 0.15 * rng.normal(size=(per, dim)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(k), per)
    return X, y


def purity(labels: np.ndarray, truth: np.ndarray) -> float:
    total = 0
    for c in np.unique(labels):
        total += np.bincount(truth[labels == c]).max()
    return total / len(truth)


@pytest.mark.parametrize("engine", ["sklearn", "minibatch", "faiss"])
def test_engines_recover_blobs(engine: str) -> None:
    X, y = blobs()
    km = SphericalKMeans(5, engine=engine, random_state=0).fit(X)
    assert km.cluster_centers_.shape == (5, 16)
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1.0, rtol=1e-5)
    assert purity(km.labels_, y) > 0.98
    assert km.engine_ == engine
    assert km.inertia_ >= 0
    np.testing.assert_array_equal(km.predict(X), km.labels_)


def test_same_seed_same_clusters() -> None:
    X, _ = blobs(seed=3)
    a = SphericalKMeans(5, random_state=7).fit(X)
    b = SphericalKMeans(5, random_state=7).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_)


def test_auto_uses_sklearn_for_small_data() -> None:
    X, _ = blobs()
    assert SphericalKMeans(5).fit(X).engine_ == "sklearn"


@pytest.mark.parametrize("k", [1, 0, -3, 301])
def test_bad_k(k: int) -> None:
    X, _ = blobs()
    with pytest.raises(InvalidKError, match=f"k={k}"):
        SphericalKMeans(k).fit(X)


def test_k_must_be_int() -> None:
    with pytest.raises(InvalidKError):
        SphericalKMeans(2.5).fit(blobs()[0])  # type: ignore[arg-type]


def test_predict_before_fit_and_wrong_dim() -> None:
    with pytest.raises(NotFittedError):
        SphericalKMeans(3).predict(np.ones((2, 4)))
    km = SphericalKMeans(5).fit(blobs()[0])
    with pytest.raises(InvalidInputError, match="expected"):
        km.predict(np.ones((2, 4)))


def test_unknown_engine() -> None:
    with pytest.raises(InvalidInputError, match="engine"):
        SphericalKMeans(3, engine="magic").fit(blobs()[0])


def test_any_estimator_can_stand_in() -> None:
    X, y = blobs()
    centroids, labels = fit_any(KMeans(5, n_init=2, random_state=0), X)
    assert centroids.shape == (5, 16) and purity(labels, y) > 0.98
    # an estimator without cluster_centers_: centroids are member means
    centroids, labels = fit_any(AgglomerativeClustering(5), X)
    assert centroids.shape == (5, 16) and purity(labels, y) > 0.98
