"""How far the chunks added since the fit have moved from the fitted model.

At fit time every model version stores a :class:`Baseline`: the cluster sizes,
the mean and the 95th percentile of the cosine distance ``1 - cos(chunk,
centroid)`` of the fitted chunks, each measured *leave-one-out* (to the centroid of
its cluster without itself). In-sample distances are optimistic for small clusters,
whose centroid leans toward its own members: on the 400-row Banking77 sample (12
chunks per cluster) the in-sample p95 flagged 18-21% of new rows of the *same*
intents, leave-one-out 13-17%; at 60+ chunks per cluster the two agree (5-6%).
Chunks added afterwards are marked in Chroma
(``cr_added_v<N>``) so the index always knows which chunks the version was *not*
fitted on. :func:`compare` measures those against the baseline:

``outlier_share``
    share of added chunks farther from their nearest centroid than the baseline
    p95 distance. About 0.05 when the new data looks like the old, much more when
    it holds topics the model has never seen.
``inertia_ratio``
    mean distance of added chunks / mean distance of fitted chunks ("inertia per chunk").
``js_divergence``
    Jensen-Shannon divergence (base 2, in ``[0, 1]``) between the cluster-size
    distribution at fit and the distribution now (fit + added). Uniform growth
    gives ~0; growth concentrated on a few topics gives more.
``growth``
    per topic: chunks added / size at fit.

and recommends one of :data:`RECOMMENDATIONS` with :class:`DriftThresholds`:

- ``"refit"`` — new data lies outside the model (new topics): run ``fit()``.
- ``"partial_update"`` — new data fits the topics but their balance or spread moved:
  fold it into the centroids with ``partial_fit()`` (or refit when convenient).
- ``"ok"`` — nothing to do.

Default thresholds come from Banking77 (all-MiniLM-L6-v2; 5 seeds of the 400-row
sample, 15 of 20 intents fitted at k=15, and 2 seeds of the full 13,083 rows, 67 of
77 intents fitted at k=67). Adding more rows of the fitted intents gave outlier
share 0.05-0.17, inertia ratio 1.00-1.18 and JS < 0.003; adding the held-out
intents gave outlier share 0.30-0.76, inertia ratio 1.61-2.62 and JS 0.011-0.063.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from .clustering.online import cluster_sums, leave_one_out_distances
from .errors import InvalidInputError

__all__ = [
    "RECOMMENDATIONS",
    "Baseline",
    "DriftReport",
    "DriftThresholds",
    "TopicGrowth",
    "compare",
    "compute_baseline",
    "js_divergence",
]

Recommendation = Literal["ok", "partial_update", "refit"]
RECOMMENDATIONS: tuple[Recommendation, ...] = ("ok", "partial_update", "refit")


@dataclass(frozen=True)
class Baseline:
    """What one fitted version looked like on the chunks it was fitted on.

    Attributes:
        n_chunks: chunks fitted.
        sizes: chunks per cluster position at fit, ``k`` ints.
        mean_distance: mean leave-one-out ``1 - cos(chunk, centroid)`` (inertia per chunk).
        p95_distance: 95th percentile of that distance.
    """

    n_chunks: int
    sizes: list[int]
    mean_distance: float
    p95_distance: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Baseline:
        """Inverse of :meth:`to_dict`."""
        return cls(
            n_chunks=int(data["n_chunks"]),
            sizes=[int(s) for s in data["sizes"]],
            mean_distance=float(data["mean_distance"]),
            p95_distance=float(data["p95_distance"]),
        )


def compute_baseline(
    vectors: np.ndarray, labels: np.ndarray, k: int, sums: np.ndarray | None = None
) -> Baseline:
    """Baseline of a fit, with leave-one-out distances (computed in blocks, no float64 copy).

    Each chunk's distance is ``1 - cos(x, normalize(S_c - x))`` where ``S_c`` is the sum
    of its cluster's members: the distance to the centroid the cluster would have
    without it. Members of single-chunk clusters have no such centroid and are left out.

    Args:
        vectors: ``(n, d)`` float32, L2-normalized fitted chunks (may be a memory map).
        labels: ``(n,)`` int cluster position of each chunk in ``[0, k)``.
        k: number of clusters.
        sums: ``(k, d)`` float64 cluster sums of exactly these rows, when the caller has them.
    """
    labels = np.asarray(labels, dtype=np.int64)
    sums = cluster_sums(vectors, labels, k) if sums is None else sums
    dist = leave_one_out_distances(vectors, labels, sums)
    sizes = np.bincount(labels, minlength=k)
    return Baseline(
        n_chunks=int(len(labels)),
        sizes=[int(s) for s in sizes],
        mean_distance=float(dist.mean()) if len(dist) else 0.0,
        p95_distance=float(np.quantile(dist, 0.95)) if len(dist) else 0.0,
    )


@dataclass(frozen=True)
class DriftThresholds:
    """When :func:`compare` recommends a partial update or a refit.

    A metric at or above its ``refit_*`` threshold recommends ``"refit"``; else one
    at or above its ``partial_*`` threshold recommends ``"partial_update"``; else
    ``"ok"``. Fewer than ``min_added`` new chunks always give ``"ok"`` (too few to judge).

    Attributes:
        min_added: new chunks needed before anything is recommended.
        partial_outlier_share: share of new chunks beyond the baseline p95 distance.
        refit_outlier_share: same, for a refit (no drift gives ~0.05-0.17).
        partial_inertia_ratio: mean distance of new chunks / baseline mean distance.
        refit_inertia_ratio: same, for a refit.
        partial_js: Jensen-Shannon divergence of the size distribution (base 2).
        refit_js: same, for a refit.
    """

    min_added: int = 20
    partial_outlier_share: float = 0.20
    refit_outlier_share: float = 0.35
    partial_inertia_ratio: float = 1.25
    refit_inertia_ratio: float = 1.5
    partial_js: float = 0.01
    refit_js: float = 0.10

    def __post_init__(self) -> None:
        if isinstance(self.min_added, bool) or not isinstance(self.min_added, int) or self.min_added < 1:
            raise InvalidInputError(f"min_added={self.min_added!r} must be an int >= 1")
        pairs = (
            ("outlier_share", self.partial_outlier_share, self.refit_outlier_share, 1.0),
            ("inertia_ratio", self.partial_inertia_ratio, self.refit_inertia_ratio, math.inf),
            ("js", self.partial_js, self.refit_js, 1.0),
        )
        for name, partial, refit, top in pairs:
            if not (0.0 < partial <= refit <= top):
                raise InvalidInputError(
                    f"partial_{name}={partial} and refit_{name}={refit} must satisfy "
                    f"0 < partial <= refit <= {top}; raise refit_{name} or lower partial_{name}"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class TopicGrowth:
    """How much one topic grew since the fit.

    Attributes:
        topic_id: stable topic id.
        size_at_fit: chunks at fit.
        added: chunks added since whose nearest centroid is this topic's.
        growth: ``added / max(size_at_fit, 1)``.
    """

    topic_id: int
    size_at_fit: int
    added: int
    growth: float


@dataclass(frozen=True)
class DriftReport:
    """Chunks added since the fit, compared with the fit's :class:`Baseline`.

    Attributes:
        version: model version compared against.
        n_fit: chunks the version was fitted on.
        n_added: chunks added since (still stored).
        outlier_share: share of added chunks beyond ``p95_distance`` of their nearest centroid.
        p95_distance: baseline 95th percentile of ``1 - cos`` at fit.
        inertia_per_chunk_fit: baseline mean ``1 - cos``.
        inertia_per_chunk_added: mean ``1 - cos`` of the added chunks to their nearest centroid.
        inertia_ratio: ``inertia_per_chunk_added / inertia_per_chunk_fit``.
        js_divergence: Jensen-Shannon divergence (base 2) of sizes at fit vs now.
        growth: per topic, by topic id.
        recommendation: ``"ok"``, ``"partial_update"`` or ``"refit"``.
        reasons: why, one line per threshold crossed (or why nothing is recommended).
        thresholds: the thresholds used.
    """

    version: int
    n_fit: int
    n_added: int
    outlier_share: float
    p95_distance: float
    inertia_per_chunk_fit: float
    inertia_per_chunk_added: float
    inertia_ratio: float
    js_divergence: float
    growth: list[TopicGrowth]
    recommendation: Recommendation
    reasons: list[str]
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    @property
    def drifted(self) -> bool:
        """``True`` unless the recommendation is ``"ok"``."""
        return self.recommendation != "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence, base 2, of two non-negative count vectors of one length."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))

    return max(0.0, min(1.0, 0.5 * kl(p, m) + 0.5 * kl(q, m)))


def compare(
    similarities: np.ndarray,
    labels: np.ndarray,
    baseline: Baseline,
    topic_ids: list[int],
    *,
    version: int,
    thresholds: DriftThresholds | None = None,
    n_unfolded: int | None = None,
) -> DriftReport:
    """Compare added chunks with the fit's baseline and recommend what to do.

    Args:
        similarities: ``(m,)`` cosine of each added chunk to its nearest centroid.
        labels: ``(m,)`` int position of that centroid in ``[0, k)``.
        baseline: the version's baseline (``k = len(baseline.sizes)``).
        topic_ids: stable topic id of each position, ``k`` ints.
        version: the model version (reported).
        thresholds: decision thresholds (default :class:`DriftThresholds`).
        n_unfolded: added chunks not yet folded into the centroids by a partial update
            (``None``: unknown). When it is 0, a partial update has nothing left to do, so
            ``"partial_update"`` becomes ``"ok"`` (only a refit can change the picture).
    """
    th = thresholds or DriftThresholds()
    k = len(baseline.sizes)
    sims = np.asarray(similarities, dtype=np.float64)
    m = len(sims)
    dist = 1.0 - sims
    added = np.bincount(np.asarray(labels, dtype=np.int64), minlength=k) if m else np.zeros(k, np.int64)
    sizes = np.asarray(baseline.sizes, dtype=np.int64)
    growth = [
        TopicGrowth(int(tid), int(s), int(a), float(a) / max(int(s), 1))
        for tid, s, a in zip(topic_ids, sizes, added, strict=True)
    ]
    outlier = float(np.mean(dist > baseline.p95_distance)) if m else 0.0
    mean_added = float(dist.mean()) if m else 0.0
    ratio = mean_added / baseline.mean_distance if m and baseline.mean_distance > 0 else 0.0
    js = js_divergence(sizes, sizes + added) if m else 0.0
    recommendation, reasons = _recommend(m, outlier, ratio, js, th)
    if recommendation == "partial_update" and n_unfolded == 0:
        recommendation = "ok"
        reasons = [*reasons, "every added chunk is already folded into the centroids; refit when a refit "
                   "threshold is reached"]
    return DriftReport(
        version=version,
        n_fit=baseline.n_chunks,
        n_added=m,
        outlier_share=outlier,
        p95_distance=baseline.p95_distance,
        inertia_per_chunk_fit=baseline.mean_distance,
        inertia_per_chunk_added=mean_added,
        inertia_ratio=ratio,
        js_divergence=js,
        growth=growth,
        recommendation=recommendation,
        reasons=reasons,
        thresholds=th,
    )


def _recommend(
    n_added: int, outlier: float, ratio: float, js: float, th: DriftThresholds
) -> tuple[Recommendation, list[str]]:
    if n_added == 0:
        return "ok", ["no chunks added since the fit"]
    if n_added < th.min_added:
        return "ok", [f"only {n_added} chunk(s) added since the fit (min_added={th.min_added})"]
    metrics = (
        ("outlier_share", outlier, th.partial_outlier_share, th.refit_outlier_share),
        ("inertia_ratio", ratio, th.partial_inertia_ratio, th.refit_inertia_ratio),
        ("js_divergence", js, th.partial_js, th.refit_js),
    )
    refit = [f"{n} {v:.3f} >= refit threshold {r}" for n, v, _, r in metrics if v >= r]
    if refit:
        return "refit", refit
    partial = [f"{n} {v:.3f} >= partial threshold {p}" for n, v, p, _ in metrics if v >= p]
    if partial:
        return "partial_update", partial
    return "ok", ["every metric below its partial threshold"]
