"""Query vector → nearest centroids → exact search inside those clusters (pure numpy).

A :class:`RoutingIndex` is an immutable snapshot of one cluster-model version:
centroids plus every chunk vector grouped into one contiguous block per cluster.
Adding chunks returns a new snapshot (copy-on-write), so a reader holding a
snapshot always sees one consistent version while writers move on.

Why numpy and not Chroma for the scoring (measured on this 2-core machine at 100k
vectors, d=384, k=316, n_probe=8; see ``bench/``): Chroma ``where={"cluster_id":
{"$in": …}}`` p50 40 ms (local mode has no metadata index), a collection per
cluster 9 ms, contiguous numpy blocks 0.4 ms and exact inside the probed clusters.
Chroma stays the store of text and metadata, fetched by id.

How many clusters to probe (measured on SciFact, 5,183 abstracts, k=72, 300 test
questions; ``python -m bench core``): a fixed ``n_probe`` calibrated on chunks used
as pseudo-queries under-probes real questions, which sit farther from the data
(cosine to the nearest centroid ~0.50 vs ~0.63 for chunks): calibrated for recall
0.95 on chunks it gave 0.90 on questions. The default therefore routes by the
*centroid score gap*: probe every cluster whose centroid similarity is within
``gap`` of the best one. A query far from every centroid sees flat scores and
probes more clusters, a query inside a tight cluster probes few, so a ``gap``
calibrated on chunks transfers to questions (recall 0.95 on chunks gave >= 0.95
on questions) at the same cost per recall as a fixed ``n_probe``. SPANN-style
spill (boundary chunks also listed in their second cluster) bought no recall per
vector scored here, so it is not used.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DimensionMismatchError, InvalidInputError

__all__ = [
    "Calibration",
    "Candidates",
    "PseudoQueries",
    "RoutingIndex",
    "calibrate",
    "check_query",
    "choose_gap",
    "choose_n_probe",
    "needed_gaps",
    "probe_count",
    "pseudo_queries",
    "route",
]

#: Appended rows are kept in a small side block and merged into the sorted blocks
#: once they exceed this share of the base (amortized O(1) per added row).
_MERGE_SHARE = 0.1
#: Scores held at once by the calibration (float32 entries: 16M = 64 MB).
_SCORE_BLOCK = 1 << 24


def check_query(query: np.ndarray, dimension: int) -> np.ndarray:
    """Validate and normalize one query vector → ``(d,)`` float32.

    Raises:
        DimensionMismatchError: not ``dimension`` wide.
        InvalidInputError: zero, NaN or inf.
    """
    try:
        q = np.asarray(query, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"query vector must be a sequence of {dimension} numbers, got {type(query).__name__}"
        ) from None
    if q.shape[0] != dimension:
        raise DimensionMismatchError(
            f"query vector has dimension {q.shape[0]} but the index holds {dimension}-d "
            "vectors; embed the query with the index's model"
        )
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm == 0.0:
        raise InvalidInputError("query vector is zero or not finite")
    return q / norm


def route(
    centroids: np.ndarray, query: np.ndarray, n_probe: int | None = None, *, gap: float | None = None
) -> np.ndarray:
    """Clusters to probe for ``query`` ``(d,)``, most similar centroid first.

    Args:
        centroids: ``(k, d)`` float32, L2-normalized.
        query: ``(d,)`` float32, L2-normalized.
        n_probe: the ``n_probe`` clusters whose centroids are most similar.
        gap: instead, every cluster whose centroid similarity is at least
            ``max similarity - gap`` (always at least one cluster).

    Returns:
        ``(p,)`` int64 cluster positions.
    """
    k = len(centroids)
    sims = centroids @ query
    if gap is not None:
        if n_probe is not None:
            raise InvalidInputError("pass n_probe or gap, not both")
        n_probe = int(np.count_nonzero(sims >= sims.max() - gap))
    elif n_probe is None:
        raise InvalidInputError("pass n_probe (clusters searched) or gap (centroid score margin)")
    n_probe = max(1, min(int(n_probe), k))
    if n_probe >= k:
        return np.argsort(-sims, kind="stable")
    top = np.argpartition(-sims, n_probe - 1)[:n_probe]
    return top[np.argsort(-sims[top], kind="stable")]


def probe_count(centroids: np.ndarray, query: np.ndarray, gap: float) -> int:
    """How many clusters ``route(centroids, query, gap=gap)`` probes."""
    sims = centroids @ query
    return max(1, int(np.count_nonzero(sims >= sims.max() - gap)))


class Candidates:
    """Scored candidates of one query, best first.

    Attributes:
        ids: ``(m,)`` object array of chunk ids.
        scores: ``(m,)`` float32 cosine similarities, descending.
        labels: ``(m,)`` int64 cluster of each candidate.
        records: ``(texts, metadatas)``, ``m`` each, when the backend read them in the same call
            as the scores (a search inside Chroma); ``None``: the caller reads them by id.
    """

    __slots__ = ("ids", "labels", "records", "scores")

    def __init__(
        self,
        ids: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        records: tuple[list[str | None], list[dict[str, Any] | None]] | None = None,
    ) -> None:
        self.ids, self.scores, self.labels, self.records = ids, scores, labels, records

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray) -> Candidates:
        """The candidates at ``rows`` ``(r,)`` int64, in that order (records kept)."""
        records = None
        if self.records is not None:
            texts, metas = self.records
            records = ([texts[i] for i in rows.tolist()], [metas[i] for i in rows.tolist()])
        return Candidates(self.ids[rows], self.scores[rows], self.labels[rows], records)


class RoutingIndex:
    """Centroids and per-cluster vector blocks of one model version.

    Args:
        centroids: ``(k, d)`` float32, L2-normalized.
        ids: ``(n,)`` chunk ids.
        vectors: ``(n, d)`` float32, L2-normalized.
        labels: ``(n,)`` int cluster of each row in ``[0, k)``.
    """

    def __init__(
        self,
        centroids: np.ndarray,
        ids: Sequence[str] | np.ndarray,
        vectors: np.ndarray,
        labels: np.ndarray,
        *,
        _delta: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        k, dim = self.centroids.shape
        labels = np.asarray(labels, dtype=np.int64)
        order = np.argsort(labels, kind="stable")
        self._ids = np.asarray(ids, dtype=object)[order]
        self._vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32)[order])
        self._labels = labels[order]
        counts = np.bincount(self._labels, minlength=k) if len(labels) else np.zeros(k, np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        empty = (np.empty(0, dtype=object), np.empty((0, dim), np.float32), np.empty(0, np.int64))
        self._delta = _delta or empty

    @classmethod
    def from_sorted(
        cls,
        centroids: np.ndarray,
        ids: np.ndarray,
        vectors: np.ndarray,
        offsets: np.ndarray,
        added: tuple[Sequence[str], np.ndarray, np.ndarray] | None = None,
    ) -> RoutingIndex:
        """A snapshot over rows already grouped by cluster, without copying them.

        Args:
            centroids: ``(k, d)`` float32, L2-normalized.
            ids: ``(n,)`` object chunk ids, cluster-sorted.
            vectors: ``(n, d)`` float32 in ``ids`` order; may be a read-only memory map
                (:mod:`cluster_rag.store.snapshots`), which is then never copied whole.
            offsets: ``(k+1,)`` int64; cluster ``c`` is rows ``offsets[c]:offsets[c+1]``.
            added: ``(ids, vectors (b, d), labels (b,))`` rows kept in the side block.
        """
        self = cls.__new__(cls)
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        k, dim = self.centroids.shape
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._ids = np.asarray(ids, dtype=object)
        self._vectors = vectors
        self._labels = np.repeat(np.arange(k, dtype=np.int64), np.diff(self._offsets))
        self._delta = (np.empty(0, dtype=object), np.empty((0, dim), np.float32), np.empty(0, np.int64))
        if added is not None and len(added[0]):
            self._delta = (
                np.asarray(added[0], dtype=object),
                np.asarray(added[1], dtype=np.float32).reshape(-1, dim),
                np.asarray(added[2], dtype=np.int64),
            )
        return self

    # shape -----------------------------------------------------------------------
    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dimension(self) -> int:
        return int(self.centroids.shape[1])

    def __len__(self) -> int:
        return len(self._ids) + len(self._delta[0])

    def sizes(self) -> np.ndarray:
        """``(k,)`` int64 number of chunks per cluster (added rows included)."""
        base = np.diff(self._offsets)
        return base + np.bincount(self._delta[2], minlength=self.k)

    def ids(self) -> np.ndarray:
        """All chunk ids, ``(n,)`` object array."""
        return np.concatenate([self._ids, self._delta[0]])

    def labels(self) -> np.ndarray:
        """Cluster of each id in :meth:`ids` order, ``(n,)`` int64."""
        return np.concatenate([self._labels, self._delta[2]])

    def vectors(self) -> np.ndarray:
        """Vectors in :meth:`ids` order, ``(n, d)`` float32."""
        return np.concatenate([self._vectors, self._delta[1]])

    def members(self, cluster: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids ``(m,)`` and vectors ``(m, d)`` of one cluster."""
        lo, hi = self._offsets[cluster], self._offsets[cluster + 1]
        mask = self._delta[2] == cluster
        return (
            np.concatenate([self._ids[lo:hi], self._delta[0][mask]]),
            np.concatenate([self._vectors[lo:hi], self._delta[1][mask]]),
        )

    # writes (copy-on-write) --------------------------------------------------------
    def with_added(self, ids: Sequence[str], vectors: np.ndarray, labels: np.ndarray) -> RoutingIndex:
        """A new snapshot that also holds the given rows; ``self`` is unchanged."""
        d_ids, d_vec, d_lab = self._delta
        new_delta = (
            np.concatenate([d_ids, np.asarray(ids, dtype=object)]),
            np.concatenate([d_vec, np.asarray(vectors, dtype=np.float32)]),
            np.concatenate([d_lab, np.asarray(labels, dtype=np.int64)]),
        )
        if len(new_delta[0]) > max(1000, _MERGE_SHARE * len(self._ids)):
            return RoutingIndex(
                self.centroids,
                np.concatenate([self._ids, new_delta[0]]),
                np.concatenate([self._vectors, new_delta[1]]),
                np.concatenate([self._labels, new_delta[2]]),
            )
        clone = copy.copy(self)  # shares the sorted blocks; only the delta is new
        clone.__dict__["_delta"] = new_delta
        return clone

    # reads -------------------------------------------------------------------------
    def check_query(self, query: np.ndarray) -> np.ndarray:
        """Validate and normalize one query vector → ``(d,)`` float32 (see :func:`check_query`)."""
        return check_query(query, self.dimension)

    def route(self, query: np.ndarray, n_probe: int | None = None, *, gap: float | None = None) -> np.ndarray:
        """Clusters to probe for ``query`` (see :func:`route`)."""
        return route(self.centroids, query, n_probe, gap=gap)

    def probe_count(self, query: np.ndarray, gap: float) -> int:
        """How many clusters ``route(query, gap=gap)`` probes."""
        return probe_count(self.centroids, query, gap)

    def search(self, query: np.ndarray, clusters: np.ndarray, limit: int | None = None) -> Candidates:
        """Best chunks of the given cluster positions (:class:`~cluster_rag.backends.SearchBackend`)."""
        return self.candidates(query, topics=[int(c) for c in clusters], limit=limit)

    def search_where(
        self, query: np.ndarray, clusters: np.ndarray, limit: int, where: dict[str, Any]
    ) -> Candidates | None:
        """``None``: the vectors are in this process, the metadata in Chroma; the caller filters."""
        return None

    def search_whole(self, query: np.ndarray, limit: int, order: np.ndarray) -> Candidates | None:
        """``None``: no index over the whole collection of its own; the probed clusters are scanned."""
        return None

    def without(self, ids: set[str]) -> RoutingIndex:
        """A new snapshot without these chunk ids; ``self`` is unchanged."""
        all_ids = self.ids()
        keep = np.fromiter((cid not in ids for cid in all_ids), dtype=bool, count=len(all_ids))
        return RoutingIndex(self.centroids, all_ids[keep], self.vectors()[keep], self.labels()[keep])

    def candidates(
        self,
        query: np.ndarray,
        *,
        n_probe: int | None = None,
        gap: float | None = None,
        topics: Sequence[int] | None = None,
        limit: int | None = None,
    ) -> Candidates:
        """Exact cosine scores of every chunk in the probed clusters, best first.

        Args:
            query: ``(d,)`` float32, L2-normalized (see :meth:`check_query`).
            n_probe: clusters to search; ignored when ``topics`` is given.
            gap: instead of ``n_probe``, the centroid score margin (see :meth:`route`).
            topics: search exactly these clusters instead of routing.
            limit: keep only the best ``limit`` candidates (``None``: all).
        """
        clusters = (
            np.asarray(sorted(set(topics)), dtype=np.int64)
            if topics is not None
            else self.route(query, n_probe, gap=gap)
        )
        id_parts: list[np.ndarray] = []
        score_parts: list[np.ndarray] = []
        label_parts: list[np.ndarray] = []
        for c in clusters:
            lo, hi = self._offsets[c], self._offsets[c + 1]
            if hi > lo:
                id_parts.append(self._ids[lo:hi])
                score_parts.append(self._vectors[lo:hi] @ query)
                label_parts.append(self._labels[lo:hi])
        if len(self._delta[0]):
            mask = np.isin(self._delta[2], clusters)
            if mask.any():
                id_parts.append(self._delta[0][mask])
                score_parts.append(self._delta[1][mask] @ query)
                label_parts.append(self._delta[2][mask])
        if not id_parts:
            return Candidates(np.empty(0, object), np.empty(0, np.float32), np.empty(0, np.int64))
        ids = np.concatenate(id_parts)
        scores = np.concatenate(score_parts)
        labels = np.concatenate(label_parts)
        if limit is not None and limit < len(scores):
            top = np.argpartition(-scores, limit - 1)[:limit]
        else:
            top = np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return Candidates(ids[top], scores[top], labels[top])

    def exact(self, query: np.ndarray, limit: int) -> Candidates:
        """Brute-force search over every chunk (the ground truth routing is measured against)."""
        return self.candidates(query, n_probe=self.k, limit=limit)


def choose_n_probe(curve: np.ndarray, target: float) -> int:
    """Smallest ``n_probe`` whose recall in ``curve`` (see :func:`probe_recall_curve`) reaches ``target``."""
    hits = np.nonzero(curve >= target - 1e-12)[0]
    return int(hits[0]) + 1 if len(hits) else len(curve)


def needed_gaps(
    vectors: np.ndarray,
    labels: np.ndarray,
    centroids: np.ndarray,
    *,
    n_queries: int = 300,
    top_k: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """Centroid score gap each true neighbour of each pseudo-query needs to be found.

    Pseudo-queries and ground truth as in :func:`probe_recall_curve`. A neighbour in
    cluster ``c`` is found by ``route(query, gap=g)`` exactly when
    ``max_j sim(query, centroid_j) - sim(query, centroid_c) <= g``.

    Args:
        vectors: ``(n, d)`` float32, L2-normalized.
        labels: ``(n,)`` int cluster of each row.
        centroids: ``(k, d)`` float32, L2-normalized.

    Returns:
        ``(q, top)`` float64, ``>= 0``; empty when ``n < 2``.
    """
    pseudo = pseudo_queries(vectors, n_queries, top_k, seed)
    csims, neighbour_labels = _query_centroid_scores(pseudo, labels, centroids)
    if len(csims) == 0:
        return np.zeros((0, 0))
    return _needed(csims, neighbour_labels)


def choose_gap(needed: np.ndarray, target: float) -> float:
    """Smallest gap at which a ``target`` share of :func:`needed_gaps` is found."""
    flat = np.sort(np.asarray(needed, dtype=np.float64).ravel())
    if flat.size == 0:
        return 0.0
    i = min(flat.size - 1, max(0, int(np.ceil(target * flat.size - 1e-9)) - 1))
    return float(flat[i]) + 1e-6  # float32 centroid scores at query time: keep the boundary in


class Calibration:
    """Default routing of one model version, chosen at fit time.

    Attributes:
        gap: centroid score margin of the default route (see :meth:`RoutingIndex.route`).
        recall: recall@``top_k`` vs exact at ``gap`` on the pseudo-queries.
        n_probe: median clusters probed at ``gap`` on the pseudo-queries (for display,
            and the fixed count older readers fall back to).
        curve: ``(k,)`` recall of a fixed ``n_probe = p`` at entry ``p - 1``.
    """

    __slots__ = ("curve", "gap", "n_probe", "recall")

    def __init__(self, gap: float, recall: float, n_probe: int, curve: np.ndarray) -> None:
        self.gap, self.recall, self.n_probe, self.curve = gap, recall, n_probe, curve


def calibrate(
    vectors: np.ndarray,
    labels: np.ndarray,
    centroids: np.ndarray,
    *,
    target: float,
    n_queries: int = 300,
    top_k: int = 10,
    seed: int = 0,
    pseudo: PseudoQueries | None = None,
) -> Calibration:
    """Choose the default gap so that pseudo-queries reach ``target`` recall@``top_k``.

    Args:
        vectors: ``(n, d)`` float32, L2-normalized.
        labels: ``(n,)`` int cluster of each row.
        centroids: ``(k, d)`` float32, L2-normalized.
        target: recall in ``(0, 1]``.
        pseudo: :func:`pseudo_queries` of ``vectors`` with these ``n_queries``/``top_k``/``seed``,
            when already computed (they do not depend on the clusters: a fit computes them while
            its k-means runs).
    """
    k = len(centroids)
    if pseudo is None:
        pseudo = pseudo_queries(vectors, n_queries, top_k, seed)
    csims, neighbour_labels = _query_centroid_scores(pseudo, labels, centroids)
    if len(csims) == 0:
        return Calibration(gap=0.0, recall=1.0, n_probe=1, curve=np.ones(k))
    needed = _needed(csims, neighbour_labels)
    gap = choose_gap(needed, target)
    probes = np.count_nonzero(csims >= csims.max(axis=1, keepdims=True) - gap, axis=1)
    return Calibration(
        gap=gap,
        recall=float(np.mean(needed <= gap)),
        n_probe=max(1, int(np.ceil(np.median(probes)))),
        curve=_fixed_curve(csims, neighbour_labels),
    )


def _query_centroid_scores(
    pseudo: PseudoQueries, labels: np.ndarray, centroids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-query to centroid scores ``(q, k)`` float64 and each true neighbour's cluster ``(q, top)``."""
    if len(pseudo.picks) == 0:
        return np.zeros((0, len(centroids))), np.zeros((0, 0), np.int64)
    return (pseudo.queries @ centroids.T).astype(np.float64), np.asarray(labels)[pseudo.neighbours]


def _needed(csims: np.ndarray, neighbour_labels: np.ndarray) -> np.ndarray:
    """Gap each true neighbour needs: best centroid score minus its cluster's score, ``>= 0``."""
    rows = np.arange(len(csims))[:, None]
    needed: np.ndarray = np.maximum(csims.max(axis=1, keepdims=True) - csims[rows, neighbour_labels], 0.0)
    return needed


@dataclass(frozen=True)
class PseudoQueries:
    """Random chunks as queries and their exact nearest chunks (:func:`pseudo_queries`).

    Attributes:
        queries: ``(q, d)`` float32 vectors of the picked chunks.
        picks: ``(q,)`` int64 row of each query.
        neighbours: ``(q, top)`` int64 rows of each query's exact top ``top`` among the other rows.
    """

    queries: np.ndarray
    picks: np.ndarray
    neighbours: np.ndarray


def pseudo_queries(vectors: np.ndarray, n_queries: int, top_k: int, seed: int) -> PseudoQueries:
    """``n_queries`` random rows of ``vectors`` ``(n, d)`` (``seed``) and their exact top-``top_k``
    among the other rows: an exact scan, ``O(q · n · d)``, in score blocks of bounded memory."""
    n = len(vectors)
    if n < 2:
        return PseudoQueries(vectors[:0], np.zeros(0, np.int64), np.zeros((0, 0), np.int64))
    rng = np.random.default_rng(seed)
    picks = rng.choice(n, size=min(n_queries, n), replace=False)
    top = min(top_k, n - 1)
    queries = vectors[picks]
    neighbours = np.empty((len(picks), top), dtype=np.int64)
    step = max(1, _SCORE_BLOCK // n)  # bound the (step, n) score block's memory
    for start in range(0, len(picks), step):
        rows = slice(start, start + step)
        sims = queries[rows] @ vectors.T
        sims[np.arange(sims.shape[0]), picks[rows]] = -np.inf
        # the top largest without a -sims copy of the (step, n) block
        neighbours[rows] = np.argpartition(sims, n - top, axis=1)[:, n - top :]
    return PseudoQueries(queries, picks, neighbours)


def _fixed_curve(csims: np.ndarray, neighbour_labels: np.ndarray) -> np.ndarray:
    """Recall at every fixed ``n_probe``.

    Args:
        csims: ``(q, k)`` query-to-centroid similarities.
        neighbour_labels: ``(q, top)`` cluster of each true neighbour.
    """
    q, k = csims.shape
    order = np.argsort(-csims, axis=1, kind="stable")
    rank_of_cluster = np.empty_like(order)
    rows = np.arange(q)[:, None]
    rank_of_cluster[rows, order] = np.arange(k)[None, :]
    ranks = rank_of_cluster[rows, neighbour_labels]
    found_at = np.bincount(ranks.ravel(), minlength=k).astype(np.float64)
    curve: np.ndarray = np.cumsum(found_at) / ranks.size
    return curve
