"""Spherical K-Means: k-means++ init on L2-normalized vectors, cosine assignment.

Three engines behind one estimator (scikit-learn conventions: constructor stores
parameters, ``fit`` returns ``self`` and sets attributes ending in ``_``):

- ``"sklearn"``: :class:`sklearn.cluster.KMeans`, best quality, slowest init.
- ``"minibatch"``: :class:`sklearn.cluster.MiniBatchKMeans`, ~3x faster at similar inertia.
- ``"faiss"``: ``faiss.Kmeans(spherical=True)`` seeded with k-means++ centroids, ~10x faster
  (needs ``pip install "cluster-rag[faiss]"``).

``"auto"`` picks sklearn below :data:`AUTO_MINIBATCH_ROWS` rows, then faiss when
importable, else minibatch. Any estimator with ``fit`` and ``labels_`` or
``predict`` can stand in via :func:`fit_any`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..embedding import normalize
from ..errors import InvalidInputError, InvalidKError, NotFittedError, missing_dependency

__all__ = ["AUTO_MINIBATCH_ROWS", "SphericalKMeans", "assign", "fit_any", "validate_k"]

#: Above this many rows "auto" stops using full-batch KMeans.
AUTO_MINIBATCH_ROWS = 20_000
ENGINES = ("auto", "sklearn", "minibatch", "faiss")


def validate_k(k: int, n_rows: int) -> None:
    """Raise :class:`InvalidKError` unless ``2 <= k <= n_rows``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidKError(f"k={k!r} must be an int (or None for the default)")
    if k < 2:
        raise InvalidKError(f"k={k} is too small: need at least 2 clusters")
    if k > n_rows:
        raise InvalidKError(
            f"k={k} but only {n_rows} chunks are stored; add data or choose k <= {n_rows}"
        )


def assign(vectors: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid by cosine.

    Args:
        vectors: ``(n, d)`` float32, L2-normalized.
        centroids: ``(k, d)`` float32, L2-normalized.

    Returns:
        ``labels`` ``(n,)`` int64 and ``similarity`` ``(n,)`` float32 to the chosen centroid.
    """
    labels = np.empty(len(vectors), dtype=np.int64)
    sims = np.empty(len(vectors), dtype=np.float32)
    step = 8192
    for start in range(0, len(vectors), step):
        scores = vectors[start : start + step] @ centroids.T
        labels[start : start + step] = scores.argmax(axis=1)
        sims[start : start + step] = scores[np.arange(len(scores)), labels[start : start + step]]
    return labels, sims


class SphericalKMeans:
    """K-Means on the unit sphere.

    Args:
        n_clusters: k.
        engine: ``"auto"``, ``"sklearn"``, ``"minibatch"`` or ``"faiss"``.
        random_state: seed; the same data and seed give the same clusters.
        n_init: restarts (best inertia kept); ``None``: 3 for sklearn, 1 otherwise.
        max_iter: Lloyd iterations (epochs for minibatch).
        batch_size: minibatch size.
        progress: show a progress bar over restarts / epochs.

    Attributes:
        cluster_centers_: ``(k, d)`` float32, L2-normalized.
        labels_: ``(n,)`` int64 nearest centroid of each training row.
        inertia_: sum of ``1 - cos(row, centroid)`` (float).
        engine_: engine actually used.
    """

    def __init__(
        self,
        n_clusters: int,
        *,
        engine: str = "auto",
        random_state: int = 0,
        n_init: int | None = None,
        max_iter: int = 100,
        batch_size: int = 1024,
        progress: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.engine = engine
        self.random_state = random_state
        self.n_init = n_init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.progress = progress

    def fit(self, X: np.ndarray) -> SphericalKMeans:
        """Fit on ``X`` ``(n, d)``; rows are L2-normalized here."""
        if self.engine not in ENGINES:
            raise InvalidInputError(f"engine={self.engine!r}; choose one of {ENGINES}")
        data = normalize(np.asarray(X))
        if data.ndim != 2 or len(data) == 0:
            raise InvalidInputError(f"X must be a non-empty 2-D array, got shape {data.shape}")
        validate_k(self.n_clusters, len(data))
        engine = self._resolve_engine(len(data))
        if engine == "faiss":
            centers = self._fit_faiss(data)
        elif engine == "minibatch":
            centers = self._fit_minibatch(data)
        else:
            centers = self._fit_sklearn(data)
        self.cluster_centers_ = normalize(centers)
        self.labels_, sims = assign(data, self.cluster_centers_)
        self.inertia_ = float(np.sum(1.0 - sims, dtype=np.float64))
        self.engine_ = engine
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Nearest centroid of each row of ``X`` ``(n, d)`` → ``(n,)`` int64."""
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError("SphericalKMeans is not fitted; call fit(X) first")
        data = normalize(np.asarray(X))
        if data.ndim != 2 or data.shape[1] != self.cluster_centers_.shape[1]:
            raise InvalidInputError(
                f"X has shape {data.shape}; expected (n, {self.cluster_centers_.shape[1]})"
            )
        return assign(data, self.cluster_centers_)[0]

    # engines -------------------------------------------------------------------
    def _resolve_engine(self, n_rows: int) -> str:
        if self.engine != "auto":
            return self.engine
        if n_rows < AUTO_MINIBATCH_ROWS:
            return "sklearn"
        try:
            import faiss  # noqa: F401
        except ImportError:
            return "minibatch"
        return "faiss"

    def _fit_sklearn(self, data: np.ndarray) -> np.ndarray:
        from sklearn.cluster import KMeans

        n_init = self.n_init or 3
        best: tuple[float, np.ndarray] | None = None
        for run in tqdm(range(n_init), desc="k-means", disable=not self.progress, leave=False):
            km = KMeans(
                n_clusters=self.n_clusters,
                init="k-means++",
                n_init=1,
                max_iter=self.max_iter,
                random_state=self.random_state + run,
            ).fit(data)
            if best is None or km.inertia_ < best[0]:
                best = (float(km.inertia_), km.cluster_centers_)
        assert best is not None
        return np.asarray(best[1], dtype=np.float32)

    def _fit_minibatch(self, data: np.ndarray) -> np.ndarray:
        from sklearn.cluster import MiniBatchKMeans

        rng = np.random.default_rng(self.random_state)
        best: tuple[float, np.ndarray] | None = None
        n_init = self.n_init or 1
        epochs = max(1, min(self.max_iter, 20))
        bar = tqdm(total=n_init * epochs, desc="k-means (minibatch)", disable=not self.progress, leave=False)
        for run in range(n_init):
            init = _kmeans_plusplus(data, self.n_clusters, self.random_state + run)
            km = MiniBatchKMeans(
                n_clusters=self.n_clusters,
                init=init,
                n_init=1,
                batch_size=max(self.batch_size, self.n_clusters),
                random_state=self.random_state + run,
            )
            for _ in range(epochs):
                order = rng.permutation(len(data))
                for start in range(0, len(data), km.batch_size):
                    km.partial_fit(data[order[start : start + km.batch_size]])
                bar.update(1)
            centers = normalize(km.cluster_centers_)
            _, sims = assign(data, centers)
            inertia = float(np.sum(1.0 - sims))
            if best is None or inertia < best[0]:
                best = (inertia, centers)
        bar.close()
        assert best is not None
        return best[1]

    def _fit_faiss(self, data: np.ndarray) -> np.ndarray:
        try:
            import faiss
        except ImportError:
            raise missing_dependency("faiss", '"cluster-rag[faiss]"') from None
        best: tuple[float, np.ndarray] | None = None
        n_init = self.n_init or 1
        for run in tqdm(range(n_init), desc="k-means (faiss)", disable=not self.progress, leave=False):
            init = _kmeans_plusplus(data, self.n_clusters, self.random_state + run)
            km = faiss.Kmeans(
                data.shape[1],
                self.n_clusters,
                niter=min(self.max_iter, 25),
                spherical=True,
                seed=self.random_state + run,
                max_points_per_centroid=100_000,
            )
            km.train(np.ascontiguousarray(data), init_centroids=init)
            centers = normalize(km.centroids)
            _, sims = assign(data, centers)
            inertia = float(np.sum(1.0 - sims))
            if best is None or inertia < best[0]:
                best = (inertia, centers)
        assert best is not None
        return best[1]


def _kmeans_plusplus(data: np.ndarray, k: int, seed: int, sample: int = 20_000) -> np.ndarray:
    """k-means++ seeds from a sample of at most ``sample`` rows (float32, ``(k, d)``)."""
    from sklearn.cluster import kmeans_plusplus

    rng = np.random.default_rng(seed)
    rows = data if len(data) <= max(sample, k) else data[rng.choice(len(data), max(sample, k), replace=False)]
    centers, _ = kmeans_plusplus(rows, k, random_state=seed)
    return np.ascontiguousarray(centers, dtype=np.float32)


def fit_any(estimator: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fit any scikit-learn-style clusterer and return spherical centroids and labels.

    Centroids come from ``cluster_centers_`` when the estimator has them, else from
    the normalized mean of each cluster's rows. Labels are then re-derived as the
    nearest centroid by cosine so that routing and assignments agree.

    Returns:
        ``centroids`` ``(k, d)`` float32 L2-normalized and ``labels`` ``(n,)`` int64 in ``[0, k)``.
    """
    data = normalize(np.asarray(X))
    fitted = estimator.fit(data)
    model = fitted if fitted is not None else estimator
    centers = getattr(model, "cluster_centers_", None)
    if centers is None:
        labels = getattr(model, "labels_", None)
        if labels is None:
            labels = model.predict(data)
        labels = np.asarray(labels)
        uniq = [c for c in np.unique(labels) if c >= 0]  # drop noise (-1) of density clusterers
        centers = np.stack([data[labels == c].mean(axis=0) for c in uniq])
    centroids = normalize(np.asarray(centers))
    new_labels, _ = assign(data, centroids)
    return centroids, new_labels
