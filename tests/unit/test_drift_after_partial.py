"""Regression (issue 12 item 9): after a partial update, drift must not keep recommending one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cluster_rag import ClusterIndex
from cluster_rag.drift import Baseline, DriftThresholds, compare
from tests.fixtures import FakeEmbedder
from tests.unit.test_living_index import CFG, add


def test_compare_drops_partial_update_when_nothing_is_left_to_fold() -> None:
    baseline = Baseline(n_chunks=100, sizes=[50, 50], mean_distance=0.2, p95_distance=0.4)
    sims = np.full(30, 0.8)  # inside the baseline's spread, but all in one topic: the sizes shift
    labels = np.zeros(30, np.int64)
    th = DriftThresholds(partial_js=0.005)
    assert (
        compare(sims, labels, baseline, [0, 1], version=1, thresholds=th).recommendation == "partial_update"
    )
    assert compare(
        sims, labels, baseline, [0, 1], version=1, thresholds=th, n_unfolded=30
    ).recommendation == ("partial_update")
    done = compare(sims, labels, baseline, [0, 1], version=1, thresholds=th, n_unfolded=0)
    assert done.recommendation == "ok" and "already folded" in done.reasons[-1]


def test_drift_stops_recommending_partial_after_partial_fit(tmp_path: Path) -> None:
    index = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)
    for name in ("pets", "space", "food"):
        add(index, name)
    index.fit(k=3)
    add(index, "pets", n=40, start=30)  # one topic grows: the size distribution shifts
    th = DriftThresholds(partial_js=0.005, refit_js=0.9, refit_outlier_share=1.0, refit_inertia_ratio=100.0)
    assert index.drift(th).recommendation == "partial_update"
    assert index.partial_fit() == 40
    after = index.drift(th)
    assert after.recommendation == "ok" and after.n_added == 40
    assert index.partial_fit() == 0
