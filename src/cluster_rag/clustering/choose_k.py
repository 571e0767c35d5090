"""Choosing k with evidence: a k sweep on a sample, four internal criteria, one rule.

:func:`sweep_k` fits MiniBatch K-Means (spherical: rows L2-normalized, centroids
re-normalized) for a grid of k on a random sample and scores each k with

- **inertia**: sum of ``1 - cos(row, centroid)``; always falls as k grows, so
  only its *knee* carries information. The knee is found with Kneedle
  (Satopää et al., 2011): normalize both axes to ``[0, 1]``, take the difference
  between the curve and the chord joining its ends, and return the first local
  maximum of that difference after which it drops by more than the mean x step.
  ``kneed`` is used when installed, else :func:`kneedle` (the same algorithm).
- **silhouette** (cosine, on a sub-sample): higher is better, in ``[-1, 1]``.
- **Davies-Bouldin**: lower is better.
- **Calinski-Harabasz**: higher is better.

Samples of at most :data:`FULL_BATCH_ROWS` rows are fitted with full-batch
K-Means instead (quicker there than MiniBatch's per-batch overhead).

The recommendation rule (:data:`RULE`), chosen by measurement on 20 Newsgroups
(subjects and messages, 20 labels) and Banking77 (77 labels), see
``bench/results/quality.md``, and explained in general terms:

1. The knee of the inertia curve marks where extra clusters stop buying much
   compactness. It is a good *scale* for k but a blunt pick: it moves with the
   range swept, and alone it landed at 0.93-0.98x the V-measure of the true k.
2. Silhouette measures separation and can be read at any k, but on sentence
   embeddings it is flat and noisy, and its maximum can sit at the edge of the
   grid (k = 200 on 20NG subjects), so the answer then depends on the range
   swept rather than on the data. Calinski-Harabasz always picked the smallest
   k swept (0.48-0.77x) and Davies-Bouldin the largest or nearly (0.88-1.01x):
   neither is used.
3. So the rule searches only the window ``[knee / 2, 2 * knee]`` around the
   knee and returns the k with the best silhouette there (ties → larger k).
   When no knee is found (a nearly straight inertia curve), the window is the
   whole grid. Measured: 0.97-0.99x the V-measure of the true k on all three sets.

Limits: every internal criterion measures geometry, not the topics a reader
wants; with overlapping topics (most real text) there is no "true" k to find,
only a useful granularity, and V-measure changes slowly above the true k, so
over-shooting costs little while under-shooting costs a lot. The sweep runs on
a sample, so k beyond ``sample / 10`` is poorly supported; sweep a range that
makes sense for the use (topics a person reads: tens; routing only: about
``sqrt(n)``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..embedding import normalize
from ..errors import InvalidInputError, InvalidKError

__all__ = [
    "RULE",
    "KScore",
    "KSweep",
    "auto_k",
    "auto_k_range",
    "k_grid",
    "kneedle",
    "recommend_k",
    "sweep_k",
]

RULE = (
    "best cosine silhouette among the swept k within [knee/2, 2*knee] of the inertia curve's "
    "Kneedle knee (whole grid when no knee)"
)


@dataclass(frozen=True)
class KScore:
    """Criteria of one k on the sweep sample.

    Attributes:
        k: number of clusters.
        inertia: sum of ``1 - cos(row, centroid)`` over the sample.
        silhouette: mean cosine silhouette on the silhouette sub-sample (higher is better).
        davies_bouldin: Davies-Bouldin index (lower is better).
        calinski_harabasz: Calinski-Harabasz index (higher is better).
        seconds: wall time of the fit and scores for this k.
    """

    k: int
    inertia: float
    silhouette: float
    davies_bouldin: float
    calinski_harabasz: float
    seconds: float


@dataclass(frozen=True)
class KSweep:
    """Result of :func:`sweep_k`.

    Attributes:
        scores: one :class:`KScore` per swept k, ascending k.
        knee: k at the knee of the inertia curve, or ``None`` when there is none.
        best_silhouette: k with the highest silhouette.
        best_davies_bouldin: k with the lowest Davies-Bouldin index.
        best_calinski_harabasz: k with the highest Calinski-Harabasz index.
        recommended: the k chosen by :data:`RULE`.
        rule: the rule, in words.
        n_sample: rows the k-means fits used.
        n_silhouette: rows the silhouette used.
        knee_method: ``"kneed"`` or ``"builtin"``.
    """

    scores: tuple[KScore, ...]
    knee: int | None
    best_silhouette: int
    best_davies_bouldin: int
    best_calinski_harabasz: int
    recommended: int
    rule: str = RULE
    n_sample: int = 0
    n_silhouette: int = 0
    knee_method: str = "builtin"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ks(self) -> list[int]:
        return [s.k for s in self.scores]

    def column(self, name: str) -> np.ndarray:
        """One criterion over the swept ks, ``(len(scores),)`` float64."""
        return np.asarray([getattr(s, name) for s in self.scores], dtype=np.float64)

    def rows(self) -> list[list[Any]]:
        """Table rows: k, inertia, silhouette, DB, CH and a marker column."""
        out = []
        for s in self.scores:
            marks = []
            if s.k == self.recommended:
                marks.append("recommended")
            if s.k == self.knee:
                marks.append("knee")
            if s.k == self.best_silhouette:
                marks.append("best silhouette")
            out.append(
                [
                    s.k,
                    f"{s.inertia:.1f}",
                    f"{s.silhouette:.4f}",
                    f"{s.davies_bouldin:.3f}",
                    f"{s.calinski_harabasz:.1f}",
                    ", ".join(marks),
                ]
            )
        return out

    HEADERS = ("k", "inertia", "silhouette", "davies_bouldin", "calinski_harabasz", "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = asdict(self)
        data["scores"] = [asdict(s) for s in self.scores]
        return data


def k_grid(k_min: int, k_max: int, n_points: int = 16) -> list[int]:
    """Ascending, de-duplicated, roughly geometric grid of k from ``k_min`` to ``k_max`` inclusive.

    Every k is kept when the range holds at most ``n_points`` values.
    """
    if k_max - k_min + 1 <= n_points:
        return list(range(k_min, k_max + 1))
    raw = np.geomspace(k_min, k_max, n_points)
    return sorted({int(round(v)) for v in raw} | {k_min, k_max})


def kneedle(x: Sequence[float], y: Sequence[float], sensitivity: float = 1.0) -> float | None:
    """Knee of a convex, decreasing curve (Kneedle, offline mode, no smoothing).

    Same algorithm as ``kneed.KneeLocator(x, y, S, curve="convex", direction="decreasing")``:
    normalize ``x`` and ``y`` to ``[0, 1]``, difference curve ``d = (1 - y_n) - x_n``,
    then the first local maximum of ``d`` after which ``d`` falls below
    ``d_max - sensitivity * mean(diff(x_n))`` (before any local minimum resets it).

    Args:
        x: ascending x values ``(m,)``.
        y: curve values ``(m,)``.
        sensitivity: Kneedle's ``S``; larger is more conservative.

    Returns:
        The x value at the knee, or ``None`` when there is none.
    """
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if len(xs) < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return None
    xn = (xs - xs.min()) / np.ptp(xs)
    yn = (ys - ys.min()) / np.ptp(ys)
    diff = (yn.max() - yn) - xn
    m = len(diff)
    # local extrema with ">=" / "<=" against clipped neighbours (scipy argrelextrema, order=1)
    left = np.concatenate([[diff[0]], diff[:-1]])
    right = np.concatenate([diff[1:], [diff[-1]]])
    maxima = np.nonzero((diff >= left) & (diff >= right))[0]
    minima = np.nonzero((diff <= left) & (diff <= right))[0]
    if not len(maxima):
        return None
    step = sensitivity * float(np.abs(np.diff(xn).mean()))
    max_set, min_set = set(maxima.tolist()), set(minima.tolist())
    threshold, threshold_index, active = 0.0, int(maxima[0]), True
    for i in range(int(maxima[0]), m - 1):
        if i in max_set:
            threshold, threshold_index, active = diff[i] - step, i, True
        if i in min_set:
            threshold, active = 0.0, False
        if active and diff[i + 1] < threshold:
            return float(xs[threshold_index])
    return None


def _find_knee(ks: Sequence[int], inertia: Sequence[float]) -> tuple[int | None, str]:
    try:
        from kneed import KneeLocator
    except ImportError:
        knee = kneedle(ks, inertia)
        return (int(knee) if knee is not None else None), "builtin"
    found = KneeLocator(list(ks), list(inertia), curve="convex", direction="decreasing").knee
    return (int(found) if found is not None else None), "kneed"


def recommend_k(ks: Sequence[int], silhouette: Sequence[float], knee: int | None) -> int:
    """Apply :data:`RULE`: best silhouette within ``[knee/2, 2*knee]`` (ties → larger k)."""
    ks_arr = np.asarray(ks)
    sil = np.asarray(silhouette, dtype=float)
    window = np.ones(len(ks_arr), dtype=bool)
    if knee is not None:
        window = (ks_arr >= knee / 2) & (ks_arr <= knee * 2)
        if not window.any():
            window[:] = True
    idx = np.nonzero(window)[0]
    best = idx[np.flatnonzero(sil[idx] == sil[idx].max())[-1]]
    return int(ks_arr[best])


#: Samples up to this many rows are fitted with full-batch K-Means (faster than MiniBatch there).
FULL_BATCH_ROWS = 3_000


def _fit_one(data: np.ndarray, k: int, seed: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if len(data) <= FULL_BATCH_ROWS:
        km: Any = KMeans(n_clusters=k, n_init=1, max_iter=100, random_state=seed).fit(data)
    else:
        km = MiniBatchKMeans(
            n_clusters=k,
            batch_size=max(batch_size, 3 * k),
            n_init=1,
            max_iter=100,
            random_state=seed,
        ).fit(data)
    centers = normalize(np.asarray(km.cluster_centers_, dtype=np.float32))
    scores = data @ centers.T
    labels = scores.argmax(axis=1)
    sims = scores[np.arange(len(data)), labels]
    return labels, sims


def sweep_k(
    vectors: np.ndarray,
    k_min: int = 5,
    k_max: int = 200,
    *,
    ks: Sequence[int] | None = None,
    n_points: int = 16,
    sample: int | None = 10_000,
    silhouette_sample: int = 3_000,
    random_state: int = 0,
    batch_size: int = 2048,
    progress: bool = False,
) -> KSweep:
    """Sweep k on a sample of ``vectors`` and recommend one.

    Args:
        vectors: ``(n, d)`` float; rows are L2-normalized here.
        k_min: smallest k swept (>= 2).
        k_max: largest k swept (<= rows in the sample).
        ks: explicit ks to sweep instead of :func:`k_grid` ``(k_min, k_max, n_points)``.
        n_points: grid size when ``ks`` is not given.
        sample: rows to fit on (``None``: all).
        silhouette_sample: rows the silhouette is computed on (O(m^2) memory and time).
        random_state: seed of the samples and fits.
        batch_size: MiniBatch K-Means batch size.
        progress: show a progress bar over ks.

    Returns:
        A :class:`KSweep` with one row per k and the recommendation.

    Raises:
        InvalidInputError: ``vectors`` is not a non-empty 2-D array, or bad sample sizes.
        InvalidKError: ``k_min < 2``, ``k_max < k_min`` or ``k_max`` above the rows sampled.
    """
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    data = np.asarray(vectors, dtype=np.float32)
    if data.ndim != 2 or len(data) == 0:
        raise InvalidInputError(f"vectors must be a non-empty 2-D array, got shape {data.shape}")
    if sample is not None and (isinstance(sample, bool) or sample < 10):
        raise InvalidInputError(f"sample={sample!r} must be >= 10 rows or None for all rows")
    if silhouette_sample < 10:
        raise InvalidInputError(f"silhouette_sample={silhouette_sample} must be >= 10 rows")
    rng = np.random.default_rng(random_state)
    if sample is not None and len(data) > sample:
        data = data[np.sort(rng.choice(len(data), sample, replace=False))]
    data = normalize(data)
    n = len(data)
    grid = sorted({int(k) for k in ks}) if ks is not None else None
    lo = grid[0] if grid else k_min
    hi = grid[-1] if grid else k_max
    for name, value in (("k_min", lo), ("k_max", hi)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidKError(f"{name}={value!r} must be an int")
    if lo < 2:
        raise InvalidKError(f"k_min={lo} is too small: need at least 2 clusters")
    if hi < lo:
        raise InvalidKError(f"k_max={hi} is below k_min={lo}; pass k_max >= k_min")
    if hi >= n:
        raise InvalidKError(
            f"k_max={hi} but the sweep sample holds {n} rows; choose k_max < {n} "
            "(or sample more rows)"
        )
    grid = grid or k_grid(lo, hi, n_points)
    sil_rows = np.arange(n)
    if n > silhouette_sample:
        sil_rows = np.sort(rng.choice(n, silhouette_sample, replace=False))
    scores: list[KScore] = []
    for k in tqdm(grid, desc="k sweep", disable=not progress, leave=False):
        start = time.perf_counter()
        labels, sims = _fit_one(data, k, random_state, batch_size)
        if len(np.unique(labels)) < 2:  # degenerate fit: every row in one cluster
            sil, db, ch = -1.0, math.inf, 0.0
        else:
            sub = labels[sil_rows]
            sil = (
                float(silhouette_score(data[sil_rows], sub, metric="cosine"))
                if 2 <= len(np.unique(sub)) < len(sil_rows)
                else -1.0
            )
            db = float(davies_bouldin_score(data, labels))
            ch = float(calinski_harabasz_score(data, labels))
        scores.append(
            KScore(
                k=int(k),
                inertia=float(np.sum(1.0 - sims, dtype=np.float64)),
                silhouette=sil,
                davies_bouldin=db,
                calinski_harabasz=ch,
                seconds=time.perf_counter() - start,
            )
        )
    ks_done = [s.k for s in scores]
    inertia = [s.inertia for s in scores]
    knee, method = _find_knee(ks_done, inertia)
    sil_col = [s.silhouette for s in scores]
    return KSweep(
        scores=tuple(scores),
        knee=knee,
        best_silhouette=ks_done[int(np.argmax(sil_col))],
        best_davies_bouldin=ks_done[int(np.argmin([s.davies_bouldin for s in scores]))],
        best_calinski_harabasz=ks_done[int(np.argmax([s.calinski_harabasz for s in scores]))],
        recommended=recommend_k(ks_done, sil_col, knee),
        n_sample=n,
        n_silhouette=len(sil_rows),
        knee_method=method,
    )


def auto_k_range(n_rows: int, sample: int | None = 10_000) -> tuple[int, int]:
    """The k range ``fit(k="auto")`` sweeps for ``n_rows`` chunks.

    ``[5, min(200, n // 10)]`` (at least ~10 chunks per cluster on average; ``k_min`` 2
    below 100 chunks), capped below the sweep sample size.

    Raises:
        InvalidKError: too few chunks to sweep (fewer than 4).
    """
    rows = n_rows if sample is None else min(n_rows, sample)
    lo = 5 if n_rows >= 100 else 2
    hi = min(max(lo + 1, min(200, n_rows // 10)), rows - 1)
    if hi <= lo:
        raise InvalidKError(
            f"k='auto' needs at least {lo + 2} chunks to sweep, the index holds {n_rows}; pass an int k"
        )
    return lo, hi


def auto_k(
    vectors: np.ndarray,
    *,
    sample: int | None = 10_000,
    random_state: int = 0,
    progress: bool = False,
) -> KSweep:
    """The sweep behind ``fit(k="auto")``: :func:`sweep_k` over :func:`auto_k_range`."""
    lo, hi = auto_k_range(len(vectors), sample)
    return sweep_k(vectors, lo, hi, sample=sample, random_state=random_state, progress=progress)
