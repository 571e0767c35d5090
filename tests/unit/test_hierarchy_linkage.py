"""The nearest-neighbour-chain linkage equals the greedy closest-pair merge, and the broad cut's
incremental scores equal the direct per-cut computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cluster_rag.clustering import choose_k
from cluster_rag.hierarchy import all_cuts, cut, linkage, renumber


def greedy(c: np.ndarray, w: np.ndarray, method: str) -> np.ndarray:
    """Reference: merge the globally closest pair, O(k^3), weighted Ward or average."""
    k = len(c)
    groups = {i: ([i], c[i] * w[i], w[i]) for i in range(k)}  # node -> (leaves, weighted sum, weight)
    unit = c / np.linalg.norm(c, axis=1, keepdims=True)
    out = []
    for step in range(k - 1):
        best = (math.inf, -1, -1)
        nodes = sorted(groups)
        for ai, a in enumerate(nodes):
            for b in nodes[ai + 1 :]:
                la, sa, wa = groups[a]
                lb, sb, wb = groups[b]
                if method == "ward":
                    d = wa * wb / (wa + wb) * float(((sa / wa - sb / wb) ** 2).sum())
                else:
                    pair = 1.0 - unit[la] @ unit[lb].T
                    d = float((w[la, None] * w[None, lb] * pair).sum() / (wa * wb))
                best = min(best, (d, a, b))
        d, a, b = best
        la, sa, wa = groups.pop(a)
        lb, sb, wb = groups.pop(b)
        groups[k + step] = (la + lb, sa + sb, wa + wb)
        out.append((a, b, math.sqrt(2.0 * d) if method == "ward" else d, len(la) + len(lb)))
    return np.asarray(out)


@pytest.mark.parametrize("method", ["ward", "average"])
@pytest.mark.parametrize("seed", [0, 1])
def test_chain_linkage_equals_greedy_merges(method: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(40, 8))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    w = rng.integers(1, 500, size=40).astype(float)
    ours, ref = linkage(c, w, method), greedy(c, w, method)
    np.testing.assert_array_equal(ours[:, [0, 1, 3]], ref[:, [0, 1, 3]])
    np.testing.assert_allclose(ours[:, 2], ref[:, 2], rtol=1e-9)


def test_duplicate_leaves_still_give_a_valid_tree() -> None:
    rng = np.random.default_rng(2)
    c = rng.normal(size=(6, 5))
    c = np.repeat(c / np.linalg.norm(c, axis=1, keepdims=True), 3, axis=0)  # every leaf three times
    z = linkage(c, np.ones(18), "ward")
    assert np.all(np.diff(z[:, 2]) >= 0) and z[-1, 3] == 18
    assert np.all(z[:6 * 2, 2] == 0)  # the duplicates merge first, at height 0
    assert len(np.unique(cut(z, 18, 6))) == 6


def test_incremental_broad_scores_equal_the_direct_ones() -> None:
    rng = np.random.default_rng(3)
    c = rng.normal(size=(30, 12))
    unit = c / np.linalg.norm(c, axis=1, keepdims=True)
    w = rng.integers(5, 300, size=30).astype(float)
    dist = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    cuts = all_cuts(linkage(unit, w), 30)
    lo, hi = 2, 15
    stab, sil = choose_k._broad_resamples(unit, w, dist, cuts, (lo, hi), "ward", 4, 0.8, 7)
    # the direct way: every subset cut's group centres and silhouette computed from scratch
    rng = np.random.default_rng(7)
    for r in range(4):
        idx = np.sort(rng.choice(30, 24, replace=False))
        sub_cuts = all_cuts(linkage(unit[idx], w[idx]), 24)
        for m in range(lo, hi + 1):
            sub = renumber(sub_cuts[m])
            centres = np.stack([(unit[idx][sub == g] * w[idx][sub == g, None]).sum(0) for g in range(m)])
            centres /= np.linalg.norm(centres, axis=1, keepdims=True)
            joined = (unit @ centres.T).argmax(1)
            want = choose_k.weighted_ari(renumber(cuts[m]), joined, w)
            assert stab[r, m - lo] == pytest.approx(want, abs=1e-12)
            got_sil = choose_k._weighted_silhouette(dist[np.ix_(idx, idx)], sub, w[idx])
            assert sil[r, m - lo] == pytest.approx(got_sil, abs=1e-12)
