"""Online centroid updates: MiniBatchKMeans ``partial_fit`` semantics on the unit sphere.

scikit-learn's ``MiniBatchKMeans.partial_fit`` assigns a batch to the current
centroids, then moves each centroid to the running mean of every row it has
absorbed: with ``n_c`` rows so far and ``b`` new ones, ``c <- c * n_c / (n_c + b) +
sum(batch rows) / (n_c + b)`` (a per-row learning rate ``1 / count``). Old rows are
not reassigned.

On the sphere the centroid is the *normalized* mean, which forgets the mean's
length; :class:`OnlineState` keeps it (``norms``) with the counts, so the update
below is the exact spherical mean of all members, ``normalize(sum of members)``,
not an approximation. sklearn's random reassignment of starved centroids is not
done: the topics of a fitted version keep their meaning until the next refit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BLOCK_ROWS",
    "OnlineState",
    "cluster_sums",
    "initial_state",
    "leave_one_out_distances",
    "partial_fit_step",
]


@dataclass(frozen=True)
class OnlineState:
    """Per-cluster statistics that make centroid updates exact running means.

    Attributes:
        counts: ``(k,)`` float64 rows absorbed by each cluster (fit members + folded adds).
        norms: ``(k,)`` float64 length of each cluster's mean member vector (in ``[0, 1]``).
        updates: number of batches folded in since the fit.
        folded: rows folded in since the fit.
    """

    counts: np.ndarray
    norms: np.ndarray
    updates: int = 0
    folded: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "counts": [float(c) for c in self.counts],
            "norms": [float(n) for n in self.norms],
            "updates": int(self.updates),
            "folded": int(self.folded),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OnlineState:
        """Inverse of :meth:`to_dict`."""
        return cls(
            counts=np.asarray(data["counts"], dtype=np.float64),
            norms=np.asarray(data["norms"], dtype=np.float64),
            updates=int(data.get("updates", 0)),
            folded=int(data.get("folded", 0)),
        )


#: Rows cast to float64 at once by :func:`cluster_sums` and :func:`leave_one_out_distances`
#: (16,384 x 384 float64 = 48 MB): a fit never holds a float64 copy of every vector.
BLOCK_ROWS = 16_384


def cluster_sums(vectors: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Sum of the rows of each cluster, ``(k, d)`` float64 (a sparse one-hot product: ~6x
    faster than ``np.add.at`` at 100k rows), accumulated over blocks of :data:`BLOCK_ROWS`.

    Args:
        vectors: ``(n, d)`` (any float dtype; may be a read-only memory map).
        labels: ``(n,)`` int cluster of each row in ``[0, k)``.
    """
    from scipy.sparse import csr_matrix

    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    sums = np.zeros((k, vectors.shape[1]), dtype=np.float64)
    for start in range(0, n, BLOCK_ROWS):
        part = labels[start : start + BLOCK_ROWS]
        m = len(part)
        onehot = csr_matrix((np.ones(m), (part, np.arange(m))), shape=(k, m))
        sums += onehot @ np.asarray(vectors[start : start + m], dtype=np.float64)
    return sums


def leave_one_out_distances(vectors: np.ndarray, labels: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """Each row's ``1 - cos(x, normalize(S_c - x))``: its distance to the centroid its cluster
    would have without it (``S_c`` = ``sums[c]``, see :func:`cluster_sums`), in blocks.

    Args:
        vectors: ``(n, d)`` L2-normalized rows.
        labels: ``(n,)`` int cluster of each row.
        sums: ``(k, d)`` float64 cluster sums over exactly these rows.

    Returns:
        ``(m,)`` float64 distances of the rows whose cluster has another member (rows alone in
        their cluster have no such centroid and are left out), in row order.
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(sums))
    sq = np.einsum("ij,ij->i", sums, sums)
    out: list[np.ndarray] = []
    for start in range(0, len(labels), BLOCK_ROWS):
        x = np.asarray(vectors[start : start + BLOCK_ROWS], dtype=np.float64)
        lab = labels[start : start + BLOCK_ROWS]
        t = np.einsum("ij,ij->i", x, sums[lab])  # x . S_c, without an (rows, d) S_c - x array
        xx = np.einsum("ij,ij->i", x, x)
        rest = np.maximum(sq[lab] - 2.0 * t + xx, 0.0)  # |S_c - x|^2
        ok = (counts[lab] > 1) & (rest > 1e-18)
        out.append(1.0 - (t[ok] - xx[ok]) / np.sqrt(rest[ok]))
    return np.concatenate(out) if out else np.zeros(0)


def initial_state(
    vectors: np.ndarray, labels: np.ndarray, k: int, *, sums: np.ndarray | None = None
) -> OnlineState:
    """Statistics of a fit.

    Args:
        vectors: ``(n, d)`` float32, L2-normalized.
        labels: ``(n,)`` int cluster of each row in ``[0, k)``.
        k: number of clusters.
        sums: ``(k, d)`` float64 :func:`cluster_sums` of these rows when already computed.
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    if sums is None:
        sums = cluster_sums(vectors, labels, k)
    norms = np.linalg.norm(sums, axis=1) / np.maximum(counts, 1.0)
    return OnlineState(counts=counts, norms=norms)


def partial_fit_step(
    centroids: np.ndarray, state: OnlineState, vectors: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, OnlineState]:
    """Fold a batch into the centroids of the clusters it was assigned to.

    Args:
        centroids: ``(k, d)`` float32, L2-normalized; not modified.
        state: statistics before the batch.
        vectors: ``(b, d)`` float32, L2-normalized.
        labels: ``(b,)`` int nearest centroid of each row (assigned before the update).

    Returns:
        New centroids ``(k, d)`` float32 L2-normalized (untouched clusters are bit-identical)
        and the new state.
    """
    k = len(centroids)
    labels = np.asarray(labels, dtype=np.int64)
    batch = np.bincount(labels, minlength=k).astype(np.float64)
    sums = cluster_sums(vectors, labels, k)
    touched = batch > 0
    total = centroids.astype(np.float64) * (state.norms * state.counts)[:, None] + sums
    counts = state.counts + batch
    length = np.linalg.norm(total, axis=1)
    out = np.array(centroids, dtype=np.float32, copy=True)
    ok = touched & (length > 0)
    out[ok] = (total[ok] / length[ok, None]).astype(np.float32)
    norms = state.norms.copy()
    norms[ok] = length[ok] / counts[ok]
    return out, OnlineState(counts, norms, state.updates + 1, state.folded + int(len(labels)))
