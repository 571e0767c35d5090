"""Pure logic of the living index: online centroid updates, topic matching, drift metrics."""

from __future__ import annotations

import numpy as np
import pytest

from cluster_rag.clustering.online import initial_state, partial_fit_step
from cluster_rag.drift import Baseline, DriftThresholds, compare, compute_baseline, js_divergence
from cluster_rag.errors import InvalidInputError
from cluster_rag.types import Topic
from cluster_rag.versioning import RefitReport, TopicMatching, match_topics


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def spherical_means(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return unit(np.stack([x[labels == c].astype(np.float64).sum(axis=0) for c in range(k)]))


def test_partial_fit_equals_spherical_mean_of_all_members() -> None:
    rng = np.random.default_rng(0)
    x = unit(rng.normal(size=(300, 12)))
    labels = rng.integers(0, 4, size=300)
    centroids = spherical_means(x[:100], labels[:100], 4)
    state = initial_state(x[:100], labels[:100], 4)
    for start in (100, 180, 250):  # three batches of different sizes
        stop = {100: 180, 180: 250, 250: 300}[start]
        centroids, state = partial_fit_step(centroids, state, x[start:stop], labels[start:stop])
    np.testing.assert_allclose(centroids, spherical_means(x, labels, 4), atol=1e-6)
    assert state.counts.tolist() == np.bincount(labels, minlength=4).tolist()
    assert (state.updates, state.folded) == (3, 200)


def test_partial_fit_leaves_untouched_clusters_bit_identical() -> None:
    rng = np.random.default_rng(1)
    x = unit(rng.normal(size=(50, 8)))
    labels = np.repeat([0, 1], 25)
    centroids = spherical_means(x, labels, 2)
    state = initial_state(x, labels, 2)
    moved, _ = partial_fit_step(centroids, state, unit(rng.normal(size=(5, 8))), np.zeros(5, np.int64))
    assert np.array_equal(moved[1], centroids[1]) and not np.allclose(moved[0], centroids[0])
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), 1.0, rtol=1e-6)


# topic matching ------------------------------------------------------------------------
def topic(tid: int, label: str, **kw: object) -> Topic:
    return Topic(id=tid, size=0, keywords=[label], representative_ids=[], label=label, **kw)  # type: ignore[arg-type]


def blob_world(seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Six well-separated directions a..f in 32-d, 40 unit vectors around each."""
    rng = np.random.default_rng(seed)
    dirs = unit(rng.normal(size=(6, 32)) * 3)
    points = {n: unit(d + 0.05 * rng.normal(size=(40, 32))) for n, d in zip("abcdef", dirs, strict=True)}
    return dirs, points


def test_match_keeps_ids_labels_and_reports_merge_split_new_gone() -> None:
    dirs, pts = blob_world()
    # old model (ids 10, 11, 12, 13; positions 0..3): a, b, c, d+e mixed
    old_x = np.concatenate([pts["a"], pts["b"], pts["c"], pts["d"], pts["e"]])
    old_lab = np.repeat([0, 1, 2, 3, 3], 40)
    old_c = spherical_means(old_x, old_lab, 4)
    old_topics = [
        topic(10, "alpha", label_source="llm", description="all about a", label_key="k-a"),
        topic(11, "beta"),
        topic(12, "gamma"),
        topic(13, "delta-epsilon", pinned=True, label_source="human"),
    ]
    # new model, positions: 0 = b+c merged, 1 = e, 2 = a, 3 = d  (f is new data, in its own cluster 4)
    new_x = np.concatenate([old_x, pts["f"]])
    new_lab = np.concatenate([np.repeat([2, 0, 0, 3, 1], 40), np.full(40, 4)])
    new_c = spherical_means(new_x, new_lab, 5)
    fresh = [topic(p, f"kw{p}") for p in range(5)]
    topics, report, next_id = match_topics(
        old_topics, old_c, old_lab, fresh, new_c, new_lab[:200], next_topic_id=14, previous_version=3
    )
    by_pos = {p: t for p, t in enumerate(topics)}
    assert by_pos[2].id == 10 and by_pos[2].label == "alpha" and by_pos[2].label_source == "llm"
    assert by_pos[2].description == "all about a" and by_pos[2].label_key == "k-a"
    # b+c and d/e centroids sit at cosine ~0.7 from any old one: below 0.85, so fresh ids in position order
    assert [t.id for t in topics] == [14, 15, 10, 16, 17] and next_id == 18
    assert [m.topic_id for m in report.merged] == [by_pos[0].id] and report.merged[0].sources == [11, 12]
    assert [s.topic_id for s in report.split] == [13]
    assert report.split[0].into == sorted([by_pos[1].id, by_pos[3].id])
    assert report.new == [by_pos[4].id] and report.gone == []
    assert by_pos[4].label == "kw4" and not by_pos[4].pinned
    assert "merged 1" in report.summary() and "split 1" in report.summary()
    assert RefitReport.from_dict(report.to_dict()) == report


def test_pinned_label_survives_content_change_unpinned_is_relabeled() -> None:
    _, pts = blob_world(2)
    x = np.concatenate([pts["a"], pts["b"]])
    old_lab = np.repeat([0, 1], 40)
    # new: the same two directions but a third of b's chunks now sit in a's cluster
    new_lab = old_lab.copy()
    new_lab[40:54] = 0
    c = spherical_means(x, old_lab, 2)
    olds = [topic(0, "pinned name", pinned=True, label_source="human"), topic(1, "old b", label_source="llm")]
    fresh = [topic(0, "kw-a"), topic(1, "kw-b")]
    topics, report, _ = match_topics(
        olds,
        c,
        old_lab,
        fresh,
        c,
        new_lab,
        next_topic_id=2,
        previous_version=1,
        matching=TopicMatching(keep_label_overlap=0.8),
    )
    assert [t.id for t in topics] == [0, 1]
    assert topics[0].label == "pinned name" and topics[0].pinned and topics[0].label_source == "human"
    assert topics[1].label == "kw-b" and topics[1].label_source == "keywords"  # overlap 26/40 < 0.8
    assert report.relabeled == [1] and not report.new and not report.gone


def test_unmatched_old_topic_is_gone_and_ids_are_never_reused() -> None:
    _, pts = blob_world(3)
    x = np.concatenate([pts["a"], pts["b"], pts["c"]])
    old_lab = np.repeat([0, 1, 2], 40)
    old_c = spherical_means(x, old_lab, 3)
    olds = [topic(0, "a"), topic(1, "b"), topic(7, "c")]
    # new clustering lost "c" entirely (its chunks were deleted): only a and b remain
    new_lab = old_lab[:80]
    new_c = spherical_means(x[:80], new_lab, 2)
    topics, report, next_id = match_topics(
        olds,
        old_c,
        old_lab[:80],
        [topic(0, "x"), topic(1, "y")],
        new_c,
        new_lab,
        next_topic_id=8,
        previous_version=1,
    )
    assert [t.id for t in topics] == [0, 1] and report.gone == [7] and next_id == 8
    with pytest.raises(InvalidInputError, match="min_similarity=1.5"):
        TopicMatching(min_similarity=1.5)


# drift -----------------------------------------------------------------------------------
def test_js_divergence_bounds() -> None:
    assert js_divergence(np.array([5, 5]), np.array([10, 10])) == pytest.approx(0.0)
    assert js_divergence(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)


def test_baseline_distances_are_leave_one_out() -> None:
    rng = np.random.default_rng(0)
    x = unit(rng.normal(size=(31, 6)))
    labels = np.array([0] * 20 + [1] * 10 + [2])  # cluster 2 is a singleton: left out
    base = compute_baseline(x, labels, 3)
    expected = []
    for i in range(30):
        others = [j for j in range(30) if labels[j] == labels[i] and j != i]
        centroid = unit(x[others].astype(np.float64).sum(axis=0))
        expected.append(1 - float(x[i] @ centroid))
    assert base.sizes == [20, 10, 1] and base.n_chunks == 31
    assert base.mean_distance == pytest.approx(np.mean(expected), rel=1e-5)
    assert base.p95_distance == pytest.approx(np.quantile(expected, 0.95), rel=1e-5)
    in_sample = 1 - np.einsum("ij,ij->i", x[:30], spherical_means(x, labels, 3)[labels[:30]])
    assert base.mean_distance > in_sample.mean()  # in-sample distances are optimistic


def test_compare_flags_far_data_and_not_near_data() -> None:
    rng = np.random.default_rng(0)
    fit_dist = 1 - rng.uniform(0.6, 0.9, size=1000)
    base = Baseline(1000, [250] * 4, float(fit_dist.mean()), float(np.quantile(fit_dist, 0.95)))
    near = compare(rng.uniform(0.6, 0.9, 200), rng.integers(0, 4, 200), base, [3, 5, 8, 9], version=2)
    assert near.recommendation == "ok" and not near.drifted and near.outlier_share < 0.15
    assert [g.topic_id for g in near.growth] == [3, 5, 8, 9] and sum(g.added for g in near.growth) == 200
    far = compare(rng.uniform(0.2, 0.5, 200), np.zeros(200, np.int64), base, [3, 5, 8, 9], version=2)
    assert far.recommendation == "refit" and far.outlier_share == 1.0 and far.inertia_ratio > 2
    assert any("outlier_share" in r for r in far.reasons)
    # near the centroids but all in one topic: the balance moved -> partial update
    skew = compare(rng.uniform(0.6, 0.9, 200), np.zeros(200, np.int64), base, [3, 5, 8, 9], version=2)
    assert skew.recommendation == "partial_update" and skew.js_divergence >= 0.01
    few = compare(rng.uniform(0.1, 0.2, 5), np.zeros(5, np.int64), base, [3, 5, 8, 9], version=2)
    assert few.recommendation == "ok" and "min_added" in few.reasons[0]
    assert compare(np.zeros(0), np.zeros(0, np.int64), base, [3, 5, 8, 9], version=2).n_added == 0
    assert Baseline.from_dict(base.to_dict()) == base


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_added": 0}, "min_added=0"),
        ({"partial_outlier_share": 0.5, "refit_outlier_share": 0.3}, "partial_outlier_share=0.5"),
        ({"refit_js": 1.5}, "refit_js=1.5"),
        ({"partial_inertia_ratio": 0}, "partial_inertia_ratio=0"),
    ],
)
def test_bad_thresholds(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        DriftThresholds(**kwargs)  # type: ignore[arg-type]
