"""Spherical K-Means: k-means++ init on L2-normalized vectors, cosine assignment.

Three engines behind one estimator (scikit-learn conventions: constructor stores
parameters, ``fit`` returns ``self`` and sets attributes ending in ``_``):

- ``"sklearn"``: :class:`sklearn.cluster.KMeans`, best quality, slowest init.
- ``"minibatch"``: :class:`sklearn.cluster.MiniBatchKMeans`, ~3x faster at similar inertia.
- ``"faiss"``: ``faiss.Kmeans(spherical=True)`` seeded with k-means++ centroids, ~10x faster
  (needs ``pip install "cluster-rag[faiss]"``). Its cost over raw FAISS with the same k and
  iterations is the seeding plus one nearest-centroid pass (which gives ``labels_``): at 1M rows,
  k=1,000, one core, 2.3 s + 6.4 s of CPU next to ~124 s of FAISS training (was 7-11 s + two passes).

``"auto"`` picks sklearn below :data:`AUTO_MINIBATCH_ROWS` rows, then faiss when
importable, else minibatch. Any estimator with ``fit`` and ``labels_`` or
``predict`` can stand in via :func:`fit_any`.

Two optional transforms of the space the clusters are *found* in (the centroids
always live in the original space, as normalized means of their members, so
routing and new chunks use the original vectors):

- **neighbour smoothing** (``smooth``, on by default below :data:`AUTO_SMOOTH_ROWS`
  rows): each row is replaced by the normalized mean of itself and its ``m``
  nearest neighbours, twice, before K-Means. Near-duplicate and same-thread texts
  pull together and stray rows follow their neighbourhood, which K-Means alone
  does not see. Measured in ``bench/results/quality.md`` at the true k: V-measure
  +0.019 on 20NG messages, +0.021 on Banking77, +0.02 on 20NG subjects over plain
  spherical k-means, routed-search cost unchanged; it costs one exact k-NN pass,
  O(n^2 d), hence the row limit.
- **PCA** (``reduce_dim``): cluster in the top principal components.

Either way the clusters found give the centroids (normalized member means in the
original space) and every row is then assigned to its nearest centroid, so
``labels_`` always equals ``predict(X)``: routing, new chunks and topic membership
follow one rule.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..embedding import normalize
from ..errors import InvalidInputError, InvalidKError, NotFittedError, missing_dependency

__all__ = [
    "AUTO_MINIBATCH_ROWS",
    "AUTO_SMOOTH_ROWS",
    "SphericalKMeans",
    "assign",
    "fit_any",
    "neighbour_smooth",
    "resolve_engine",
    "validate_k",
]

#: Above this many rows "auto" stops using full-batch KMeans.
AUTO_MINIBATCH_ROWS = 20_000
#: Above this many rows ``smooth="auto"`` turns neighbour smoothing off: its exact k-NN pass is
#: O(n^2 d) (measured ~10-15 s at 19k rows on one busy core, so ~40 s here; pass ``smooth=20`` to force it).
AUTO_SMOOTH_ROWS = 30_000
#: Neighbours averaged by ``smooth="auto"`` (capped at a fifth of the mean cluster size).
SMOOTH_NEIGHBORS = 20
ENGINES = ("auto", "sklearn", "minibatch", "faiss")


def default_k(n_chunks: int) -> int:
    """Default number of clusters: ``round(sqrt(n))`` clamped to ``[2, n]``.

    sqrt(n) keeps both the number of centroids scored per query and the chunks
    per cluster near sqrt(n), which minimizes routed-search work; pick k from
    evidence (silhouette, Davies-Bouldin; :mod:`cluster_rag.clustering.choose_k`)
    when topics matter more than speed.
    """
    return max(2, min(n_chunks, round(math.sqrt(n_chunks))))


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
        smooth: neighbours ``m`` averaged into each row before clustering (see the
            module docstring); ``0`` turns it off; ``"auto"``: ``min(20, n // (5 k))``
            when ``n <= AUTO_SMOOTH_ROWS`` (off below 2), else off.
        smooth_steps: smoothing rounds over the same neighbour lists.
        reduce_dim: cluster in this many principal components (``None``: no PCA).

    Attributes:
        cluster_centers_: ``(k, d)`` float32, L2-normalized, in the original space.
        labels_: ``(n,)`` int64 nearest centroid of each training row.
        inertia_: sum of ``1 - cos(row, centroid of its cluster)`` (float).
        engine_: engine actually used.
        smooth_: neighbours actually averaged (0: none).
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
        smooth: int | str = "auto",
        smooth_steps: int = 2,
        reduce_dim: int | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.engine = engine
        self.random_state = random_state
        self.n_init = n_init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.progress = progress
        self.smooth = smooth
        self.smooth_steps = smooth_steps
        self.reduce_dim = reduce_dim

    def fit(self, X: np.ndarray) -> SphericalKMeans:
        """Fit on ``X`` ``(n, d)``; rows are L2-normalized here."""
        if self.engine not in ENGINES:
            raise InvalidInputError(f"engine={self.engine!r}; choose one of {ENGINES}")
        data = _unit_rows(X)
        if data.ndim != 2 or len(data) == 0:
            raise InvalidInputError(f"X must be a non-empty 2-D array, got shape {data.shape}")
        validate_k(self.n_clusters, len(data))
        self._check_transforms(data.shape[1])
        engine = resolve_engine(self.engine, len(data))
        space = data
        if self.reduce_dim is not None:
            space = _pca(data, int(self.reduce_dim), self.random_state)
        m = self._resolve_smooth(len(data))
        if m:
            space = neighbour_smooth(space, m, steps=self.smooth_steps, progress=self.progress)
        if engine == "faiss":
            centers, found = self._fit_faiss(space)
        elif engine == "minibatch":
            centers, found = self._fit_minibatch(space)
        else:
            centers = normalize(self._fit_sklearn(space))
            found = assign(space, centers)
        if space is data:  # the engines' final assignment is the nearest-centroid one: not redone
            self.cluster_centers_ = centers
            self.labels_, sims = found
        else:  # clusters found in the transformed space; centroids back in the original one
            self.cluster_centers_ = _member_means(data, found[0], space, centers)
            self.labels_, sims = assign(data, self.cluster_centers_)
        self.inertia_ = float(np.sum(1.0 - sims, dtype=np.float64))
        self.engine_ = engine
        self.smooth_ = m
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

    # transforms ----------------------------------------------------------------
    def _check_transforms(self, dim: int) -> None:
        if self.smooth != "auto" and not _is_int(self.smooth, 0):
            raise InvalidInputError(
                f"smooth={self.smooth!r} must be 'auto' or an int >= 0 (0 turns smoothing off)"
            )
        if not _is_int(self.smooth_steps, 1):
            raise InvalidInputError(f"smooth_steps={self.smooth_steps!r} must be an int >= 1")
        rd = self.reduce_dim
        if rd is not None and not (_is_int(rd, 2) and rd < dim):
            raise InvalidInputError(
                f"reduce_dim={rd!r} must be an int in [2, {dim}) for {dim}-d vectors, or None for no PCA"
            )

    def _resolve_smooth(self, n_rows: int) -> int:
        if self.smooth == "auto":
            if n_rows > AUTO_SMOOTH_ROWS:
                return 0
            m = min(SMOOTH_NEIGHBORS, n_rows // (5 * self.n_clusters))
            return m if m >= 2 else 0
        return min(int(self.smooth), n_rows - 1)

    # engines -------------------------------------------------------------------
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

    def _fit_minibatch(self, data: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Normalized centroids ``(k, d)`` of the best restart, with its :func:`assign` of ``data``."""
        from sklearn.cluster import MiniBatchKMeans

        rng = np.random.default_rng(self.random_state)
        best: tuple[float, np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None
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
            found = assign(data, centers)
            inertia = float(np.sum(1.0 - found[1], dtype=np.float64))
            if best is None or inertia < best[0]:
                best = (inertia, centers, found)
        bar.close()
        assert best is not None
        return best[1], best[2]

    def _fit_faiss(self, data: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Normalized centroids ``(k, d)`` of the best restart, with its :func:`assign` of ``data``.

        The same training as ``faiss.Kmeans(d, k, niter, spherical=True,
        max_points_per_centroid=100_000)`` (every row up to 100,000 per centroid), seeded with
        k-means++ (:func:`_kmeans_plusplus`); one nearest-centroid pass per restart gives the
        labels (and picks the restart), so a fit costs ``niter + 1`` assignment passes and the seeding.
        """
        try:
            import faiss
        except ImportError:
            raise missing_dependency("faiss", '"cluster-rag[faiss]"') from None
        best: tuple[float, np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None
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
            centers = normalize(np.asarray(km.centroids))
            found = assign(data, centers)
            inertia = float(np.sum(1.0 - found[1], dtype=np.float64))
            if best is None or inertia < best[0]:
                best = (inertia, centers, found)
        assert best is not None
        return best[1], best[2]


def resolve_engine(engine: str, n_rows: int) -> str:
    """The engine ``engine`` (one of :data:`ENGINES`) runs as on ``n_rows`` rows ("auto" resolved)."""
    if engine != "auto":
        return engine
    if n_rows < AUTO_MINIBATCH_ROWS:
        return "sklearn"
    try:
        import faiss  # noqa: F401
    except ImportError:
        return "minibatch"
    return "faiss"


def _unit_rows(X: np.ndarray) -> np.ndarray:
    """``X`` as float32 L2-normalized rows; float32 rows already of unit length are used as
    they are (no copy: a fit over stored, normalized vectors holds them once)."""
    arr = np.asarray(X)
    if arr.dtype == np.float32 and arr.ndim == 2 and len(arr):
        norms = np.einsum("ij,ij->i", arr, arr)
        if bool(np.all(np.abs(norms - 1.0) < 1e-4)):
            return arr
    return normalize(arr)


def _is_int(value: object, minimum: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= minimum)


def neighbour_smooth(vectors: np.ndarray, m: int, *, steps: int = 2, progress: bool = False) -> np.ndarray:
    """Replace each row by the normalized mean of itself and its ``m`` nearest neighbours.

    The neighbour lists come from one exact cosine k-NN pass (chunked, O(n^2 d));
    ``steps`` rounds of averaging reuse them (a short diffusion on the k-NN graph).

    Args:
        vectors: ``(n, d)`` float32, L2-normalized.
        m: neighbours per row (self excluded), ``1 <= m < n``.
        steps: averaging rounds.

    Returns:
        ``(n, d)`` float32, L2-normalized.
    """
    n = len(vectors)
    m = min(m, n - 1)
    if m < 1:
        return vectors
    idx = np.empty((n, m + 1), dtype=np.int64)
    step = max(64, (1 << 24) // max(n, 1))  # ~64 MB of scores per chunk
    for start in tqdm(range(0, n, step), desc="k-NN", disable=not progress, leave=False):
        scores = vectors[start : start + step] @ vectors.T
        rows = np.arange(len(scores))
        scores[rows, start + rows] = np.inf  # self always first among the m + 1
        idx[start : start + step] = np.argpartition(-scores, m, axis=1)[:, : m + 1]
    out = vectors
    for _ in range(steps):
        out = normalize(out[idx].mean(axis=1))
    return np.ascontiguousarray(out, dtype=np.float32)


def _pca(data: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """Rows projected on the top ``dim`` principal components, L2-normalized ``(n, dim)`` float32."""
    from sklearn.decomposition import PCA

    reduced = PCA(n_components=dim, random_state=seed).fit_transform(data)
    return normalize(np.asarray(reduced, dtype=np.float32))


def _member_means(
    data: np.ndarray, labels: np.ndarray, space: np.ndarray, space_centers: np.ndarray
) -> np.ndarray:
    """Normalized mean of each cluster's rows in the original space ``(k, d)`` float32.

    A cluster left without members takes the original vector of the row closest
    to its centroid in the transformed space.
    """
    from scipy.sparse import csr_matrix

    k = len(space_centers)
    members = csr_matrix((np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels)))
    sums = np.asarray(members @ data.astype(np.float64))
    counts = np.bincount(labels, minlength=k)
    for c in np.nonzero(counts == 0)[0]:
        sums[c] = data[int(np.argmax(space @ space_centers[c]))]
    return normalize(sums.astype(np.float32))


def _kmeans_plusplus(data: np.ndarray, k: int, seed: int, sample: int | None = None) -> np.ndarray:
    """k-means++ seeds from a sample of at most ``sample`` rows (float32, ``(k, d)``).

    The default sample, ``min(20_000, max(4_096, 8·k))`` rows, seeds as well as 20,000 did
    (100k synthetic blobs, k=316, then 25 FAISS iterations: inertia 40,564 vs 40,606) in a
    sixth of the time (1.9 s vs 12.2 s on one core); seeding costs ``O(k · sample · d)``
    and was most of the k-means time (``python -m bench scale``).

    Args:
        data: ``(n, d)`` float32, L2-normalized rows.
    """
    if sample is None:
        sample = min(20_000, max(4_096, 8 * k))
    rng = np.random.default_rng(seed)
    rows = data if len(data) <= max(sample, k) else data[rng.choice(len(data), max(sample, k), replace=False)]
    return _greedy_plusplus(np.ascontiguousarray(rows, dtype=np.float32), k, rng)


def _greedy_plusplus(rows: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ (scikit-learn's ``kmeans_plusplus``: ``2 + ln k`` candidates per seed, the one
    that lowers the potential most is kept) on unit rows ``(m, d)`` float32 → ``(k, d)`` float32.

    Squared distances of unit rows are ``2 - 2 cos``: one float32 product per step, where
    scikit-learn's general version casts each block to float64 and recomputes norms (k=1,000 on
    8,000 rows: ~1.5 s instead of 6.7 s of CPU).
    """
    m = len(rows)
    trials = 2 + int(np.log(k))
    centers = np.empty((k, rows.shape[1]), dtype=np.float32)
    first = int(rng.integers(m))
    centers[0] = rows[first]
    closest = np.maximum(2.0 - 2.0 * (rows @ rows[first]), 0.0).astype(np.float64)
    potential = float(closest.sum())
    for c in range(1, k):
        if potential <= 0.0:  # every row already is a seed: repeat rows (faiss splits empty clusters)
            centers[c] = rows[int(rng.integers(m))]
            continue
        picks = np.searchsorted(np.cumsum(closest), rng.random(trials) * potential)
        picks = np.minimum(picks, m - 1)
        dist = np.maximum(2.0 - 2.0 * (rows[picks] @ rows.T), 0.0).astype(np.float64)  # (trials, m)
        np.minimum(dist, closest, out=dist)
        pots = dist.sum(1)
        best = int(np.argmin(pots))
        closest, potential = dist[best], float(pots[best])
        centers[c] = rows[picks[best]]
    return centers


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
