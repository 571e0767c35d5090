"""Representative chunks: nearest the centroid, diversified with maximal marginal relevance.

The chunks nearest a centroid are often near-copies of one another (the same
question asked five ways); showing five of them to a labeler wastes its token
budget. MMR picks greedily the chunk that maximizes
``(1 - diversity) * cos(chunk, centroid) - diversity * max cos(chunk, already picked)``
among the ``pool`` chunks nearest the centroid.
"""

from __future__ import annotations

import numpy as np

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
    m = len(vectors)
    if m == 0 or n <= 0:
        return np.empty(0, dtype=np.int64)
    sims = vectors @ centroid
    cand = np.argsort(-sims, kind="stable")[: max(pool, n)]
    picked = [int(cand[0])]
    rest = list(int(c) for c in cand[1:])
    # running max similarity of each remaining candidate to the picked set
    redundancy = vectors[rest] @ vectors[picked[0]] if rest else np.empty(0)
    while rest and len(picked) < n:
        scores = (1.0 - diversity) * sims[rest] - diversity * redundancy
        j = int(np.argmax(scores))
        chosen = rest.pop(j)
        redundancy = np.delete(redundancy, j)
        picked.append(chosen)
        if rest:
            redundancy = np.maximum(redundancy, vectors[rest] @ vectors[chosen])
    return np.asarray(picked, dtype=np.int64)
