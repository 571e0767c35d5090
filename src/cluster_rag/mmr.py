"""Maximal marginal relevance, written once: every MMR in the package calls :func:`mmr_select`.

Greedy selection: at each step pick the candidate maximizing
``lambda_mult * relevance - (1 - lambda_mult) * max cos(candidate, already picked)``.
``lambda_mult`` follows LangChain's convention: 1.0 = pure relevance, 0.0 = pure
diversity. Representative chunks of a topic use relevance = cosine to the centroid;
re-ranking uses relevance = cosine to the query.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mmr_select"]


def mmr_select(relevance: np.ndarray, vectors: np.ndarray, n: int, *, lambda_mult: float = 0.5) -> np.ndarray:
    """Indices of ``n`` candidates in MMR pick order (the first is the most relevant).

    Args:
        relevance: ``(m,)`` similarity of each candidate to the target (query or centroid).
        vectors: ``(m, d)`` float32, L2-normalized candidate vectors.
        n: how many to pick (at most ``m``).
        lambda_mult: weight of relevance in ``[0, 1]``.

    Returns:
        ``(min(n, m),)`` int64 candidate indices.
    """
    rel = np.asarray(relevance, dtype=np.float64)
    m = len(rel)
    if m == 0 or n <= 0:
        return np.empty(0, dtype=np.int64)
    first = int(np.argmax(rel))
    picked = [first]
    redundancy = np.asarray(vectors @ vectors[first], dtype=np.float64)
    remaining = np.ones(m, dtype=bool)
    remaining[first] = False
    while len(picked) < min(n, m):
        value = lambda_mult * rel - (1.0 - lambda_mult) * redundancy
        value[~remaining] = -np.inf
        nxt = int(np.argmax(value))
        picked.append(nxt)
        remaining[nxt] = False
        redundancy = np.maximum(redundancy, vectors @ vectors[nxt])
    return np.asarray(picked, dtype=np.int64)
