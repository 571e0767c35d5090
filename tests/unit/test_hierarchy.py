"""Topic tree over leaf centroids: linkage, cuts, levels, JSON round trip, stable parent ids, broad cut."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cluster_rag.clustering.choose_k import BroadCut, choose_broad_k
from cluster_rag.errors import InvalidInputError, UnknownTopicError
from cluster_rag.hierarchy import (
    TopicTree,
    build_tree,
    cut,
    level_counts,
    linkage,
    match_tree,
    node_centroids,
)


def _blobs(n_top: int, n_sub: int, per: int, seed: int, d: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Two-level synthetic topics on the sphere: ``(n, d)`` float32 rows and their top label."""
    rng = np.random.default_rng(seed)
    tops = rng.normal(size=(n_top, d))
    rows, top = [], []
    for t in range(n_top):
        for _ in range(n_sub):
            centre = tops[t] + rng.normal(size=d) * 0.45
            rows.append(centre + rng.normal(size=(per, d)) * 0.3)
            top += [t] * per
    x = np.vstack(rows)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), np.asarray(top)


def _leaves(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from cluster_rag.clustering import SphericalKMeans

    km = SphericalKMeans(k, random_state=seed, smooth=0).fit(x)
    return km.cluster_centers_, np.bincount(km.labels_, minlength=k), km.labels_


def test_ward_linkage_matches_scipy_with_unit_weights() -> None:
    from scipy.cluster.hierarchy import linkage as scipy_linkage

    rng = np.random.default_rng(0)
    c = rng.normal(size=(25, 6))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    ours = linkage(c, np.ones(25), "ward")
    assert np.allclose(ours, scipy_linkage(c, "ward"))


@pytest.mark.parametrize("method", ["ward", "average", "bisect"])
def test_cuts_are_nested_partitions(method: str) -> None:
    x, _ = _blobs(3, 3, 30, seed=1)
    c, w, _ = _leaves(x, 16, seed=0)
    z = linkage(c, w, method)
    assert z.shape == (15, 4)
    prev = cut(z, 16, 1)
    for m in range(2, 17):
        lab = cut(z, 16, m)
        assert len(np.unique(lab)) == m
        # each finer group sits inside one coarser group
        for g in range(m):
            assert len(np.unique(prev[lab == g])) == 1
        prev = lab


def test_level_counts_bound_the_fanout() -> None:
    for top, k in [(5, 140), (3, 47), (20, 137), (2, 300)]:
        counts = level_counts(top, k, 8)
        assert counts[0] == top and counts == sorted(counts)
        steps = [*counts, k]
        assert all(b / a <= 8 + 1e-9 for a, b in zip(steps, steps[1:], strict=False))
    assert level_counts(77, 77) == [77]


def test_tree_levels_partition_the_leaves_and_round_trip_json() -> None:
    x, _ = _blobs(3, 4, 25, seed=2)
    c, w, _ = _leaves(x, 40, seed=0)
    ids = [100 + 3 * i for i in range(40)]  # stable topic ids need not be 0..k-1
    tree = build_tree(c, w, ids, n_top=3, max_fanout=4, next_id=500)
    assert tree.depth >= 2
    assert len(tree.top) == 3 and all(n.level == tree.depth for n in tree.top)
    for level in range(tree.depth + 1):
        seen = sorted(p for n in tree.at_level(level) for p in n.leaves)
        assert seen == list(range(40))
    assert sorted(n.id for n in tree.at_level(0)) == sorted(ids)
    parents = [n for n in tree.nodes if n.level > 0]
    assert min(n.id for n in parents) == 500 and tree.next_id == 500 + len(parents)
    for n in parents:
        kids = [tree.node(i) for i in n.children]
        assert sorted(p for kid in kids for p in kid.leaves) == sorted(n.leaves)
        assert sum(kid.size for kid in kids) == n.size
        assert all(kid.parent == n.id and kid.level < n.level for kid in kids)
    assert sum(n.size for n in tree.top) == int(w.sum())
    cents = node_centroids(tree, [n.id for n in tree.top] + [ids[0]], c, w)
    assert cents.shape == (4, c.shape[1]) and np.allclose(np.linalg.norm(cents, axis=1), 1.0, atol=1e-5)
    assert np.allclose(cents[-1], c[0], atol=1e-5)  # a leaf's own centroid
    top_id = tree.top[0].id
    assert tree.parent_id(top_id) == top_id and tree.parent_id(str(top_id)) == top_id
    assert tree.parent_id(ids[0]) is None and tree.parent_id("fees") is None
    back = TopicTree.from_dict(json.loads(json.dumps(tree.to_dict())))
    assert back == tree
    assert tree.leaf_ids(tree.top[0].id) == [ids[p] for p in tree.top[0].leaves]


def test_unknown_node_and_bad_inputs_are_named() -> None:
    x, _ = _blobs(2, 2, 20, seed=3)
    c, w, _ = _leaves(x, 9, seed=0)
    tree = build_tree(c, w, n_top=2)
    with pytest.raises(UnknownTopicError, match="12345"):
        tree.node(12345)
    with pytest.raises(InvalidInputError, match="level=7"):
        tree.at_level(7)
    with pytest.raises(InvalidInputError, match="n_top=0"):
        build_tree(c, w, n_top=0)
    with pytest.raises(InvalidInputError, match="sizes"):
        build_tree(c, w[:-1], n_top=2)
    with pytest.raises(InvalidInputError, match="next_id"):
        build_tree(c, w, n_top=2, next_id=3)
    with pytest.raises(InvalidInputError, match="format"):
        TopicTree.from_dict({"nodes": []})


def test_match_tree_keeps_parent_ids_across_a_refit() -> None:
    x, _ = _blobs(4, 3, 30, seed=4)
    c0, w0, lab0 = _leaves(x, 19, seed=0)
    old = build_tree(c0, w0, n_top=4, next_id=19)
    # a refit with another seed: leaves matched by centroid (as versioning.match_topics does)
    c1, w1, lab1 = _leaves(x, 19, seed=1)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-(c1 @ c0.T))
    new_ids = [0] * 19
    for r, col in zip(rows, cols, strict=True):
        new_ids[r] = int(col)
    fresh = build_tree(c1, w1, new_ids, n_top=4, next_id=old.next_id)
    matched = match_tree(old, fresh)
    old_top = {frozenset(old.leaf_ids(n.id)): n.id for n in old.top}
    new_top = {frozenset(matched.leaf_ids(n.id)): n.id for n in matched.top}
    # every top-level group with the same leaf ids keeps its id
    same = set(old_top) & set(new_top)
    assert same, "the refit should reproduce at least one broad topic"
    assert all(old_top[s] == new_top[s] for s in same)
    old_ids = {n.id for n in old.top}
    kept = [n.id for n in matched.top if n.id in old_ids]
    assert len(kept) >= 3  # 4 planted broad topics; leaves moving between them may renew one
    assert all(n.id in old_ids or n.id >= old.next_id for n in matched.top)
    ids = [n.id for n in matched.nodes]
    assert len(ids) == len(set(ids))
    assert matched.next_id >= old.next_id
    # an unrelated tree gets fresh ids, never reused ones
    other = build_tree(c1, w1, [1000 + i for i in range(19)], n_top=4, next_id=2000)
    moved = match_tree(matched, other)
    old_parent_ids = {n.id for n in matched.nodes if n.level > 0}
    assert not old_parent_ids & {n.id for n in moved.nodes if n.level > 0}
    assert min(n.id for n in moved.nodes if n.level > 0) >= 2000


def test_broad_cut_finds_planted_top_level_for_every_seed() -> None:
    x, top = _blobs(5, 4, 40, seed=5)
    chosen = []
    for seed in range(3):
        c, w, _ = _leaves(x, 28, seed=seed)
        broad = choose_broad_k(c, w, random_state=seed)
        assert isinstance(broad, BroadCut)
        chosen.append(broad.chosen)
        data = json.loads(json.dumps(broad.to_dict()))
        assert data["chosen"] == broad.chosen and data["candidates"]
    assert chosen == [5, 5, 5]


def test_broad_cut_on_structureless_leaves_stays_fine() -> None:
    rng = np.random.default_rng(6)
    c = rng.normal(size=(40, 32))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    broad = choose_broad_k(c, np.full(40, 10), random_state=0)
    assert broad.chosen >= 10, broad.to_dict()
