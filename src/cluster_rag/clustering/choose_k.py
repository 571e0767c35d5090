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

**Broad topics from the topic tree** (:func:`choose_broad_k`). The leaves stay the
routing clusters (``k = round(sqrt(n))``); the number ``m`` of broad topics is a cut
of the tree over their centroids (:mod:`cluster_rag.hierarchy`), scored per ``m`` in
``[2, k // 2]`` by

- **silhouette** of the leaf centroids under the cut (cosine, each leaf weighted by its
  chunks): separation of the broad topics. Within-leaf noise is averaged away, so it is
  far less flat than the chunk silhouette above;
- **stability**: the chunk-weighted adjusted Rand index between the cut and the same
  cut of trees built on random 80 % subsets of the leaves (20 subsets), every leaf
  assigned to the nearest group of the subset's cut: would the same broad topics
  come out of a different set of leaves?
- the **gap** between consecutive merge heights (kept as evidence; measured below,
  it points at ``m = 2`` on 20NG and is flat on Banking77, so the rule does not use it).

:data:`BROAD_RULE`: take the best-separated cut (highest silhouette) as the coarsest
allowed, then among it and the finer cuts the finest whose stability is within one
standard error of the most stable. In words: never merge across the clearest boundary,
and stop where finer cuts stop being reproducible. Why each part, measured in
``bench/results/hierarchy.md`` (all-MiniLM-L6-v2, seeds 0-4):

- silhouette alone picks well-separated cuts (5 desks → 5-6) but on corpora without
  broad structure (Banking77) its maximum wanders with the leaf fit (33-47: V spread
  0.032 across seeds), and on 20NG subjects it once peaked at a 2-way outlier split;
- stability alone is noisy at small ``m`` (a 2-way split can be reproducible: it chose
  2 on one 5-desk seed, V 0.46 vs 0.84);
- together (within one standard error, finer preferred, because on every set measured
  a cut finer than the true label count costs little V-measure and a coarser one costs
  much): 5-desk stand-in 5-6 topics (V 0.785-0.842 vs 0.822 for flat K-Means at 5),
  20NG messages 27-31 (0.986-1.011x of flat K-Means at 20), 20NG subjects 15-30
  (0.951-0.989x), Banking77 57 on every seed (0.991-1.000x at 77).

Limits: with no broad structure (Banking77, 20NG), finer cuts stay reproducible and the
rule goes to the ``k // 2`` bound: the "broad" level then holds about half as many
topics as leaves. A corpus with clear desks gets its desks.
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
    "BROAD_RULE",
    "RULE",
    "BroadCandidate",
    "BroadCut",
    "KScore",
    "KSweep",
    "auto_k",
    "auto_k_range",
    "broad_rule",
    "choose_broad_k",
    "k_grid",
    "kneedle",
    "recommend_k",
    "sweep_k",
    "weighted_ari",
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
    rng = np.random.default_rng(random_state)
    data = _sweep_sample(vectors, sample, silhouette_sample, rng)
    n = len(data)
    grid = _sweep_grid(ks, k_min, k_max, n_points, n)
    sil_rows = np.arange(n)
    if n > silhouette_sample:
        sil_rows = np.sort(rng.choice(n, silhouette_sample, replace=False))
    scores = [
        _score_k(data, k, sil_rows, random_state, batch_size)
        for k in tqdm(grid, desc="k sweep", disable=not progress, leave=False)
    ]
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


def _sweep_sample(
    vectors: np.ndarray, sample: int | None, silhouette_sample: int, rng: np.random.Generator
) -> np.ndarray:
    """Validate :func:`sweep_k`'s data and sizes; the rows swept.

    Returns:
        ``(min(n, sample), d)`` float32, L2-normalized: a random subset (rows kept in order)
        when ``vectors`` holds more than ``sample`` rows, else all of them.

    Raises:
        InvalidInputError: ``vectors`` is not a non-empty 2-D array, or bad sample sizes.
    """
    data = np.asarray(vectors, dtype=np.float32)
    if data.ndim != 2 or len(data) == 0:
        raise InvalidInputError(f"vectors must be a non-empty 2-D array, got shape {data.shape}")
    if sample is not None and (isinstance(sample, bool) or sample < 10):
        raise InvalidInputError(f"sample={sample!r} must be >= 10 rows or None for all rows")
    if silhouette_sample < 10:
        raise InvalidInputError(f"silhouette_sample={silhouette_sample} must be >= 10 rows")
    if sample is not None and len(data) > sample:
        data = data[np.sort(rng.choice(len(data), sample, replace=False))]
    return normalize(data)


def _sweep_grid(ks: Sequence[int] | None, k_min: int, k_max: int, n_points: int, n: int) -> list[int]:
    """The ks :func:`sweep_k` fits, ascending: ``ks`` deduplicated, or :func:`k_grid` over the range.

    Raises:
        InvalidKError: a bound not an int, ``k_min < 2``, ``k_max < k_min`` or ``k_max >= n`` rows.
    """
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
    return grid or k_grid(lo, hi, n_points)


def _score_k(data: np.ndarray, k: int, sil_rows: np.ndarray, seed: int, batch_size: int) -> KScore:
    """Fit ``k`` clusters on ``data`` and score the fit.

    Args:
        data: ``(n, d)`` float32, L2-normalized rows.
        k: clusters.
        sil_rows: ``(m,)`` int row positions the cosine silhouette is computed on.
        seed: seed of the fit.
        batch_size: MiniBatch K-Means batch size.

    Returns:
        The :class:`KScore`; a degenerate fit (one cluster) scores silhouette -1, Davies-Bouldin
        inf and Calinski-Harabasz 0.
    """
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    start = time.perf_counter()
    labels, sims = _fit_one(data, k, seed, batch_size)
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
    return KScore(
        k=int(k),
        inertia=float(np.sum(1.0 - sims, dtype=np.float64)),
        silhouette=sil,
        davies_bouldin=db,
        calinski_harabasz=ch,
        seconds=time.perf_counter() - start,
    )


def auto_k_range(n_rows: int, sample: int | None = 10_000) -> tuple[int, int]:
    """The k range ``cluster-rag choose-k`` sweeps by default for ``n_rows`` chunks.

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
    """A k sweep over the default range: :func:`sweep_k` over :func:`auto_k_range`."""
    lo, hi = auto_k_range(len(vectors), sample)
    return sweep_k(vectors, lo, hi, sample=sample, random_state=random_state, progress=progress)


# ----------------------------------------------------------------------------- broad topics
BROAD_RULE = (
    "among the cuts no coarser than the best-separated one (highest size-weighted centroid silhouette), "
    "the finest whose leaf-subset stability is within one standard error of the most stable; m in [2, k // 2]"
)


@dataclass(frozen=True)
class BroadCandidate:
    """Scores of one candidate number of broad topics ``m`` (a cut of the topic tree).

    Attributes:
        m: groups in the cut.
        gap: height of the merge that would make ``m - 1`` groups over the height of the
            merge that made ``m`` (> 1: the next merge joins groups that are farther apart).
        silhouette: size-weighted cosine silhouette of the leaf centroids under the cut.
        stability: mean chunk-weighted adjusted Rand index between the cut and the cuts
            of trees built on random subsets of the leaves (each leaf assigned to the
            nearest group of the subset's cut), in ``[-1, 1]``; ``nan`` when ``m`` is more
            groups than a subset holds.
        stability_se: standard error of that mean over the subsets.
        silhouette_resampled: mean of the silhouette of the same cut of each subset's tree,
            on the subset's leaves (the silhouette curve with the tree's chance merges averaged out).
    """

    m: int
    gap: float
    silhouette: float
    stability: float
    stability_se: float = math.nan
    silhouette_resampled: float = math.nan


@dataclass(frozen=True)
class BroadCut:
    """How the number of broad topics was chosen (stored as the tree's evidence).

    Attributes:
        chosen: the number of broad topics.
        candidates: one :class:`BroadCandidate` per ``m`` scored, ascending.
        rule: the rule, in words.
        n_leaves: leaves of the tree.
        method: linkage method of the tree.
        n_resamples: leaf subsets drawn for the stability score.
        subsample: share of leaves in each subset.
    """

    chosen: int
    candidates: tuple[BroadCandidate, ...]
    rule: str = BROAD_RULE
    n_leaves: int = 0
    method: str = "ward"
    n_resamples: int = 0
    subsample: float = 0.8

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``nan`` written as ``None``)."""
        data = asdict(self)
        data["candidates"] = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(c).items()}
            for c in self.candidates
        ]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BroadCut:
        """Inverse of :meth:`to_dict`."""
        cands = tuple(
            BroadCandidate(
                m=int(c["m"]),
                **{k: (math.nan if v is None else float(v)) for k, v in c.items() if k != "m"},
            )
            for c in data.get("candidates", [])
        )
        return cls(**{**{k: v for k, v in data.items() if k != "candidates"}, "candidates": cands})


def weighted_ari(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> float:
    """Adjusted Rand index of two labelings of weighted items (a leaf of ``w`` chunks counts ``w`` times).

    Args:
        a: ``(k,)`` int labels in ``[0, max]``.
        b: ``(k,)`` int labels.
        weights: ``(k,)`` non-negative counts.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    nb = int(b.max()) + 1
    table = np.bincount(a * nb + b, weights=weights, minlength=(int(a.max()) + 1) * nb).reshape(-1, nb)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1.0) / 2.0).sum())

    total = pairs(np.asarray([table.sum()]))
    if total <= 0:
        return 1.0
    both, ra, rb = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = ra * rb / total
    top = (ra + rb) / 2.0
    return 1.0 if top == expected else (both - expected) / (top - expected)


def _onehot(labels: np.ndarray, m: int, values: np.ndarray) -> np.ndarray:
    """Dense ``(len(labels), m)`` float64 indicator with ``values`` at ``(i, labels[i])``: ``X @ onehot``
    sums the columns of each group with one BLAS product (m <= ``BROAD_MAX`` columns; a scipy
    sparse product was ~3x slower here, copying the dense operand on every call)."""
    out = np.zeros((len(labels), m))
    out[np.arange(len(labels)), labels] = values
    return out


def _weighted_silhouette(dist: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Silhouette of weighted points: mean distances and the final mean weighted by chunk counts.

    Args:
        dist: ``(k, k)`` cosine distances between leaf centroids.
        labels: ``(k,)`` group ids (any ints).
        weights: ``(k,)`` chunks per leaf.
    """
    _, lab = np.unique(labels, return_inverse=True)
    lab = lab.reshape(-1)
    m = int(lab.max()) + 1
    if not 2 <= m < len(lab):
        return math.nan
    return _silhouette_from_sums(dist @ _onehot(lab, m, weights), lab, weights)


def _silhouette_from_sums(sums: np.ndarray, lab: np.ndarray, weights: np.ndarray) -> float:
    """:func:`_weighted_silhouette` from each point's weighted distance sum to every group.

    Args:
        sums: ``(k, m)`` float64, ``sums[i, g]`` = sum over the members ``j`` of group ``g`` of
            ``weights[j] * dist[i, j]``.
        lab: ``(k,)`` int64 group of each point in ``[0, m)``, ``2 <= m < k``.
        weights: ``(k,)`` chunks per leaf.
    """
    m = sums.shape[1]
    totals = np.bincount(lab, weights=weights, minlength=m)
    mean = sums / np.maximum(totals, 1e-12)  # (k, m) weighted mean distance to each group
    own_total = totals[lab] - weights  # own group without the leaf itself
    rows = np.arange(len(lab))
    a = np.where(own_total > 0, (mean[rows, lab] * totals[lab]) / np.maximum(own_total, 1e-12), 0.0)
    other = mean.copy()
    other[rows, lab] = np.inf
    b = other.min(1)
    s = np.where(own_total > 0, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float((s * weights).sum() / weights.sum())


#: Default upper bound on the number of broad topics (see :func:`choose_broad_k`).
BROAD_MAX = 64


def choose_broad_k(
    centroids: np.ndarray,
    sizes: np.ndarray,
    *,
    method: str = "ward",
    m_min: int = 2,
    m_max: int | None = None,
    n_resamples: int = 20,
    subsample: float = 0.8,
    random_state: int = 0,
    merges: np.ndarray | None = None,
) -> BroadCut:
    """Choose the number of broad topics from the topic tree over the leaf clusters.

    Args:
        centroids: ``(k, d)`` float, L2-normalized leaf centroids.
        sizes: ``(k,)`` chunks per leaf.
        method: linkage method of the tree (see :mod:`cluster_rag.hierarchy`).
        m_min: smallest number of broad topics considered (>= 2).
        m_max: largest (default ``min(k // 2, 64)``: a broad topic holds two leaves on average at
            least, and a "broad" level of more than 64 nodes is no overview for a person or an
            agent; the cap also bounds the cost, which grows with ``k**2 * m_max``: k=500 took
            over 5 minutes uncapped, ~20 s capped; since the subset cuts are scored incrementally and
            the trees built by the nearest-neighbour chain, k=707 takes ~4 s on one core, was ~12-18 s).
        n_resamples: leaf subsets for the stability score.
        subsample: share of leaves in each subset, in ``(0, 1)``.
        random_state: seed of the subsets.
        merges: the tree's linkage (recomputed when ``None``).

    Returns:
        The :class:`BroadCut` with every candidate's scores and the choice.

    Raises:
        InvalidInputError: bad shapes or parameters.
    """
    from ..hierarchy import all_cuts, linkage

    c = np.asarray(centroids, dtype=np.float64)
    w = np.asarray(sizes, dtype=np.float64).reshape(-1)
    k = len(c)
    lo, hi = _broad_range(c, w, m_min, m_max, n_resamples, subsample)
    w = np.maximum(w, 1e-9)
    unit = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    z = linkage(unit, w, method, random_state=random_state) if merges is None else np.asarray(merges)
    heights = z[:, 2]
    cuts = all_cuts(z, k)
    dist = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    span = (lo, hi)
    stab, sub_sil = _broad_resamples(unit, w, dist, cuts, span, method, n_resamples, subsample, random_state)
    cands = [
        _broad_candidate(m, cuts, heights, stab[:, m - lo], sub_sil[:, m - lo], dist, w)
        for m in range(lo, hi + 1)
    ]
    chosen = broad_rule(cands)
    return BroadCut(
        chosen=chosen,
        candidates=tuple(cands),
        n_leaves=k,
        method=method,
        n_resamples=n_resamples,
        subsample=subsample,
    )


def _broad_range(
    c: np.ndarray, w: np.ndarray, m_min: int, m_max: int | None, n_resamples: int, subsample: float
) -> tuple[int, int]:
    """Validate :func:`choose_broad_k`'s inputs; the candidate counts ``(lo, hi)``, inclusive.

    Raises:
        InvalidInputError: shapes not ``(k, d)`` and ``(k,)``, fewer than 4 leaves, bad
            ``subsample`` or ``n_resamples``, or an empty ``[m_min, m_max]``.
    """
    k = len(c)
    if c.ndim != 2 or w.shape != (k,):
        raise InvalidInputError(f"centroids {c.shape} and sizes {w.shape} must be (k, d) and (k,)")
    if k < 4:
        raise InvalidInputError(f"choosing broad topics needs at least 4 leaves, got {k}")
    if not 0.0 < subsample < 1.0:
        raise InvalidInputError(f"subsample={subsample!r} must be in (0, 1)")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise InvalidInputError(f"n_resamples={n_resamples!r} must be an int >= 1")
    hi = min(k // 2, BROAD_MAX) if m_max is None else min(int(m_max), k - 1)
    lo = max(2, int(m_min))
    if hi < lo:
        raise InvalidInputError(f"m_min={m_min} and m_max={m_max} leave no candidate for {k} leaves")
    return lo, hi


def _broad_resamples(
    unit: np.ndarray,
    w: np.ndarray,
    dist: np.ndarray,
    cuts: np.ndarray,
    span: tuple[int, int],
    method: str,
    n_resamples: int,
    subsample: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Stability and subset silhouette of every candidate cut, over leaf subsets with their own trees.

    Args:
        unit: ``(k, d)`` float64 unit leaf centroids; w: ``(k,)`` float64 positive weights.
        dist: ``(k, k)`` float64 cosine distances between leaves (0 diagonal).
        cuts: ``(k + 1, k)`` int64 every cut of the full tree (:func:`cluster_rag.hierarchy.all_cuts`).
        span: ``(lo, hi)`` the candidate numbers of groups, inclusive.
        method: linkage method; n_resamples: subsets; subsample: share of leaves in each.
        seed: seed of the subsets and of ``"bisect"``.

    Returns:
        ``(stability, silhouette)``, each ``(n_resamples, hi - lo + 1)`` float64 (``nan`` where a
        subset has fewer leaves than groups): the chunk-weighted ARI of the full tree's cut against
        the subset tree's cut extended to every leaf (each leaf joins the group whose centre, the
        normalized sum of its weighted members, is nearest), and the subset cut's silhouette.
    """
    from ..hierarchy import linkage

    k = len(unit)
    lo, hi = span
    rng = np.random.default_rng(seed)
    size_sub = max(3, int(round(subsample * k)))
    full = [_renumber(cuts[m]) for m in range(lo, hi + 1)]
    stab = np.full((n_resamples, hi - lo + 1), math.nan)
    sil = np.full((n_resamples, hi - lo + 1), math.nan)
    for r in range(n_resamples):
        idx = np.sort(rng.choice(k, size_sub, replace=False))
        merges = linkage(unit[idx], w[idx], method, random_state=seed)
        _score_subset(unit, w, dist, idx, merges, full, lo, stab[r], sil[r])
    return stab, sil


def _score_subset(
    unit: np.ndarray,
    w: np.ndarray,
    dist: np.ndarray,
    idx: np.ndarray,
    merges: np.ndarray,
    full: list[np.ndarray],
    lo: int,
    stab: np.ndarray,
    sil: np.ndarray,
) -> None:
    """Fill ``stab`` and ``sil`` ``(len(full),)`` for one leaf subset (see :func:`_broad_resamples`).

    The cuts of the subset's tree are walked from ``lo`` groups down: each step undoes one
    merge, so only the two groups it separates get new sums (the smaller one summed, the
    other by difference). Per group ``g`` (raw tree id) three sums over its members are kept:
    weighted distances of every subset leaf to them (silhouette), scores of every leaf against
    them (which group each leaf joins) and their Gram rows (the centre's norm).

    Args:
        idx: ``(s,)`` sorted leaf positions of the subset; merges: ``(s - 1, 4)`` its tree.
        full: the full tree's cut for ``lo, lo + 1, ...`` groups, each ``(k,)`` int64 renumbered.
    """
    from ..hierarchy import all_cuts

    s = len(idx)
    weighted = unit[idx] * w[idx, None]
    sims = unit @ weighted.T  # (k, s) every leaf against the weighted subset leaves
    gram = weighted @ weighted.T  # (s, s)
    dsub = dist[np.ix_(idx, idx)] * w[idx]  # (s, s) weighted distances
    ws = w[idx]
    cuts = all_cuts(merges, s)
    hi = min(lo + len(full) - 1, s)
    if lo > hi:
        return
    dsum: dict[int, np.ndarray] = {}
    ssum: dict[int, np.ndarray] = {}
    gsum: dict[int, np.ndarray] = {}

    def add(g: int, members: np.ndarray) -> None:
        dsum[g] = dsub[:, members].sum(1)
        ssum[g] = sims[:, members].sum(1)
        gsum[g] = gram[:, members].sum(1)

    for g in np.unique(cuts[lo]).tolist():
        add(g, np.flatnonzero(cuts[lo] == g))
    for m in range(lo, hi + 1):
        if m > lo:  # undo the merge that made cut m - 1 from cut m
            row = merges[s - m]
            parent, a, b = s + (s - m), int(row[0]), int(row[1])
            in_a, in_b = np.flatnonzero(cuts[m] == a), np.flatnonzero(cuts[m] == b)
            small, big = (a, b) if len(in_a) <= len(in_b) else (b, a)
            add(small, in_a if small == a else in_b)
            dsum[big] = dsum[parent] - dsum[small]
            ssum[big] = ssum[parent] - ssum[small]
            gsum[big] = gsum[parent] - gsum[small]
            del dsum[parent], ssum[parent], gsum[parent]
        uniq, first, inverse = np.unique(cuts[m], return_index=True, return_inverse=True)
        order = np.argsort(first)  # groups numbered by first leaf, as renumber does
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        lab = rank[inverse.reshape(-1)]
        groups = uniq[order].tolist()
        if 2 <= m < s:
            sil[m - lo] = _silhouette_from_sums(np.stack([dsum[g] for g in groups], 1), lab, ws)
        within = np.asarray([gsum[g][cuts[m] == g].sum() for g in groups])
        norms = np.sqrt(np.maximum(within, 1e-24))
        scores = np.stack([ssum[g] for g in groups], 1) / norms
        stab[m - lo] = weighted_ari(full[m - lo], scores.argmax(1), w)


def _renumber(labels: np.ndarray) -> np.ndarray:
    from ..hierarchy import renumber

    return renumber(labels)


def _broad_candidate(
    m: int,
    cuts: np.ndarray,
    heights: np.ndarray,
    stab: np.ndarray,
    sub_sil: np.ndarray,
    dist: np.ndarray,
    w: np.ndarray,
) -> BroadCandidate:
    """Score ``m`` broad topics.

    Args:
        m: number of broad topics.
        cuts: ``(k + 1, k)`` int64 every cut of the full tree (:func:`cluster_rag.hierarchy.all_cuts`).
        heights: ``(k - 1,)`` float64 its merge heights, in merge order.
        stab: ``(n_resamples,)`` weighted ARI of the cut against each subset tree's (``nan``: skipped).
        sub_sil: ``(n_resamples,)`` silhouette of each subset tree's cut at ``m``.
        dist: ``(k, k)`` float64 cosine distances between leaves (0 diagonal).
        w: ``(k,)`` float64 leaf weights.

    Returns:
        The :class:`BroadCandidate`: height gap (merge height just above the cut over the one
        below), silhouette on all leaves, stability (mean and standard error over the subsets)
        and mean subset silhouette.
    """
    k = len(w)
    lab = _renumber(cuts[m])
    gap = float(heights[k - m] / max(heights[k - m - 1], 1e-12))
    scores = stab[~np.isnan(stab)]
    mean = float(np.mean(scores)) if len(scores) else math.nan
    se = float(np.std(scores, ddof=1) / math.sqrt(len(scores))) if len(scores) > 1 else math.nan
    return BroadCandidate(
        m,
        round(gap, 6),
        round(_weighted_silhouette(dist, lab, w), 6),
        round(mean, 6),
        round(se, 6),
        _nanmean(list(sub_sil)),
    )


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=float)
    return math.nan if not len(arr) or np.all(np.isnan(arr)) else round(float(np.nanmean(arr)), 6)


def broad_rule(cands: Sequence[BroadCandidate]) -> int:
    """Apply :data:`BROAD_RULE` to scored candidates (ascending ``m``)."""
    sil = np.asarray([c.silhouette for c in cands], dtype=float)
    stab = np.asarray([c.stability for c in cands], dtype=float)
    se = np.nan_to_num(np.asarray([c.stability_se for c in cands], dtype=float))
    if np.all(np.isnan(sil)):
        return int(cands[0].m)
    first = int(np.nanargmax(sil))
    tail = stab[first:]
    if np.all(np.isnan(tail)):
        return int(cands[first].m)
    best = first + int(np.nanargmax(tail))
    within = np.flatnonzero(np.nan_to_num(tail, nan=-np.inf) >= stab[best] - se[best] - 1e-12)
    return int(cands[first + int(within[-1])].m)
