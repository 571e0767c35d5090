"""Representative chunks: nearest the centroid, diversified with maximal marginal relevance.

The chunks nearest a centroid are often near-copies of one another (the same
question asked five ways); showing five of them to a labeler wastes its token
budget. MMR picks greedily the chunk that maximizes
``(1 - diversity) * cos(chunk, centroid) - diversity * max cos(chunk, already picked)``
among the ``pool`` chunks nearest the centroid (:func:`cluster_rag.mmr.mmr_select`).
"""

from __future__ import annotations

import numpy as np

from ..mmr import mmr_select

__all__ = ["mmr_indices"]


def mmr_indices(
    vectors: np.ndarray,
    centroid: np.ndarray,
    n: int = 5,
    *,
    diversity: float = 0.3,
    pool: int = 40,
) -> np.ndarray:
    """Rows of one cluster to show as its representatives.

    Args:
        vectors: ``(m, d)`` float32, L2-normalized members of the cluster.
        centroid: ``(d,)`` float32, L2-normalized.
        n: how many to pick.
        diversity: 0 = nearest the centroid only; 1 = most spread out.
        pool: candidates considered, the ``pool`` nearest the centroid.

    Returns:
        ``(min(n, m),)`` int64 row indices in pick order (the first is the most central).
    """
    if len(vectors) == 0 or n <= 0:
        return np.empty(0, dtype=np.int64)
    sims = vectors @ centroid
    cand = np.argsort(-sims, kind="stable")[: max(pool, n)]
    picks = mmr_select(sims[cand], vectors[cand], n, lambda_mult=1.0 - diversity)
    return np.asarray(cand[picks], dtype=np.int64)
