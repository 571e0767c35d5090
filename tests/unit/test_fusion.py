"""Fusion maths: reciprocal rank fusion, min-max convex combination, alpha calibration."""

from __future__ import annotations

import numpy as np
import pytest

from cluster_rag.errors import InvalidInputError, LengthMismatchError
from cluster_rag.fusion import (
    RRF_C,
    calibrate_alpha,
    convex_combination,
    minmax,
    reciprocal_rank_fusion,
)


def test_rrf_scores_follow_the_formula() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]])
    expected = {
        "a": 1 / (RRF_C + 1) + 1 / (RRF_C + 2),
        "b": 1 / (RRF_C + 2),
        "c": 1 / (RRF_C + 3) + 1 / (RRF_C + 1),
    }
    assert fused.ids == sorted(expected, key=lambda d: -expected[d])
    np.testing.assert_allclose(fused.scores, [expected[d] for d in fused.ids])


def test_rrf_weights_constant_and_duplicates() -> None:
    # a heavy second list wins; a repeated id counts at its first rank only
    fused = reciprocal_rank_fusion([["a", "b"], ["b", "b", "a"]], weights=[1.0, 3.0], c=1)
    assert fused.ids == ["b", "a"]
    np.testing.assert_allclose(fused.scores, [1 / 3 + 3 / 2, 1 / 2 + 3 / 4])
    with pytest.raises(InvalidInputError):
        reciprocal_rank_fusion([["a"]], c=0)
    with pytest.raises(LengthMismatchError):
        reciprocal_rank_fusion([["a"], ["b"]], weights=[1.0])


def test_rrf_ties_keep_first_appearance() -> None:
    assert reciprocal_rank_fusion([["x", "y"], ["y", "x"]]).ids == ["x", "y"]
    assert reciprocal_rank_fusion([]).ids == []


def test_minmax() -> None:
    np.testing.assert_allclose(minmax(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(minmax(np.array([5.0, 5.0])), [1.0, 1.0])
    assert minmax(np.array([])).size == 0


def test_convex_endpoints_and_missing_documents() -> None:
    dense = (["a", "b", "c"], np.array([0.9, 0.5, 0.1]))
    keyword = (["c", "d"], np.array([12.0, 3.0]))
    assert convex_combination(dense, keyword, 1.0).ids[:3] == ["a", "b", "c"]
    assert convex_combination(dense, keyword, 0.0).ids[0] == "c"
    mid = convex_combination(dense, keyword, 0.5)
    # c: 0.5 * 0 (lowest dense) + 0.5 * 1 ; a: 0.5 * 1 + 0 (absent from keyword) ; d: 0.5 * 0 + 0
    got = dict(zip(mid.ids, mid.scores, strict=True))
    assert got["a"] == pytest.approx(0.5) and got["c"] == pytest.approx(0.5)
    assert got["b"] == pytest.approx(0.25) and got["d"] == pytest.approx(0.0)
    assert mid.ids.index("a") < mid.ids.index("c")  # tie: dense list first
    assert set(mid.ids) == {"a", "b", "c", "d"}


def test_convex_rejects_bad_input() -> None:
    with pytest.raises(InvalidInputError):
        convex_combination((["a"], [1.0]), (["a"], [1.0]), 1.5)
    with pytest.raises(LengthMismatchError):
        convex_combination((["a", "b"], [1.0]), (["a"], [1.0]), 0.5)


def _runs(rng: np.random.Generator, n_queries: int) -> tuple[list, list, list]:
    """Keyword lists hold the one relevant doc at rank 1; dense lists rank it last."""
    dense, keyword, qrels = [], [], []
    for q in range(n_queries):
        docs = [f"q{q}d{i}" for i in range(8)]
        rel = docs[0]
        others = [d for d in docs if d != rel]
        rng.shuffle(others)
        dense.append(([*others, rel], np.linspace(1.0, 0.3, 8)))
        keyword.append(([rel, *others[:3]], np.array([9.0, 4.0, 3.0, 2.0])))
        qrels.append({rel: 1})
    return dense, keyword, qrels


def test_calibrate_alpha_finds_the_informative_signal() -> None:
    dense, keyword, qrels = _runs(np.random.default_rng(0), 20)
    alpha, curve = calibrate_alpha(dense, keyword, qrels)
    assert curve[alpha] == pytest.approx(1.0)
    assert alpha < 0.5  # keyword weight dominates
    assert curve[1.0] < 1.0
    # swapping the roles flips the choice
    alpha2, _ = calibrate_alpha(keyword, dense, qrels)
    assert alpha2 > 0.5
    with pytest.raises(LengthMismatchError):
        calibrate_alpha(dense, keyword[:-1], qrels)
