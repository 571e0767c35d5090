"""A fit holds its vectors once: blockwise cluster sums and leave-one-out distances equal the
whole-array figures, a large fit reads a sample of each topic's texts for its keywords, and the
fitted model searches the memory-mapped snapshot it just wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cluster_rag import ClusterIndex, IndexConfig, fitting
from cluster_rag.clustering import online
from cluster_rag.drift import compute_baseline
from tests.fixtures import FakeEmbedder


def unit_rows(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_blockwise_sums_and_baseline_match_the_whole_array(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(online, "BLOCK_ROWS", 37)  # several blocks, the last one partial
    x = unit_rows(500)
    labels = np.random.default_rng(1).integers(9, size=500)
    labels[labels == 8] = 7
    labels[0] = 8  # a single-chunk cluster: left out of the leave-one-out distances
    sums = online.cluster_sums(x, labels, 9)
    direct = np.stack([x[labels == c].astype(np.float64).sum(0) for c in range(9)])
    assert np.allclose(sums, direct, atol=1e-9)
    got = compute_baseline(x, labels, 9, sums)
    # the whole-array formula: 1 - cos(x, S_c - x), single-chunk clusters left out
    xd = x.astype(np.float64)
    rest = direct[labels] - xd
    norms = np.linalg.norm(rest, axis=1)
    ok = norms > 1e-9
    dist = 1.0 - np.einsum("ij,ij->i", xd[ok], rest[ok]) / norms[ok]
    assert int(ok.sum()) == 499 and got.n_chunks == 500 and got.sizes == np.bincount(labels, minlength=9).tolist()
    assert got.mean_distance == pytest.approx(float(dist.mean()), abs=1e-9)
    assert got.p95_distance == pytest.approx(float(np.quantile(dist, 0.95)), abs=1e-9)
    assert compute_baseline(x, labels, 9) == got  # sums computed inside when not given
    state = online.initial_state(x, labels, 9, sums=sums)
    assert np.allclose(state.norms, online.initial_state(x, labels, 9).norms)


def test_inertia_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fitting, "BLOCK_ROWS", 29)
    x, c = unit_rows(200), unit_rows(5, seed=2)
    labels = np.random.default_rng(3).integers(5, size=200)
    want = float(np.sum(1.0 - np.einsum("ij,ij->i", x, c[labels]), dtype=np.float64))
    assert fitting._inertia(x, c, labels) == pytest.approx(want, rel=1e-6)


def test_keyword_rows_sample_each_topic_evenly(monkeypatch: pytest.MonkeyPatch) -> None:
    from cluster_rag.store import snapshots

    labels = np.repeat(np.arange(4), [300, 20, 150, 30])
    order, offsets = snapshots.sort_by_cluster(labels, 4)
    assert np.array_equal(fitting._keyword_rows(order, offsets, 500, seed=0), order)  # small: every row
    monkeypatch.setattr(fitting, "KEYWORD_TEXTS", 200)
    monkeypatch.setattr(fitting, "KEYWORD_MIN_PER_TOPIC", 10)
    rows = fitting._keyword_rows(order, offsets, 500, seed=0)
    per_topic = np.bincount(labels[rows], minlength=4)
    assert per_topic.tolist() == [50, 20, 50, 30]  # capped at 200 // 4, small topics whole
    assert len(set(rows.tolist())) == len(rows)
    assert np.array_equal(rows, fitting._keyword_rows(order, offsets, 500, seed=0))  # seeded


def test_large_fit_samples_texts_and_searches_the_mapped_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fitting, "KEYWORD_TEXTS", 40)
    monkeypatch.setattr(fitting, "KEYWORD_MIN_PER_TOPIC", 8)
    index = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=IndexConfig(progress=False))
    words = ["dog cat puppy", "rocket moon orbit", "pasta pizza basil"]
    index.add_texts([f"{words[i % 3]} note {i}" for i in range(150)])
    info = index.fit(k=3)
    assert info.k == 3
    topics = index.topics()
    # keywords from a sample of each topic's texts still name the topic's words
    for topic in topics:
        assert any(set(topic.keywords[:3]) & set(w.split()) for w in words), topic.keywords
    # the fresh model's backend is the snapshot the fit wrote, mapped: same rows as a reopen
    ids, vectors = index.model.backend.members(0)
    again = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=IndexConfig(progress=False))
    ids2, vectors2 = again.model.backend.members(0)
    assert list(ids) == list(ids2) and np.array_equal(vectors, vectors2)
    hits = index.search("rocket moon", k=3)
    assert hits and all("rocket" in h.text for h in hits)


def test_refit_reads_the_snapshot_and_sees_what_reading_everything_sees(tmp_path: Path) -> None:
    emb = FakeEmbedder()
    index = ClusterIndex.open(tmp_path / "kb", embedder=emb, config=IndexConfig(progress=False))
    words = ["dog cat puppy", "rocket moon orbit", "pasta pizza basil"]
    index.add_texts([f"{words[i % 3]} note {i}" for i in range(90)], ids=[f"c{i}" for i in range(90)])
    index.fit(k=3)
    index.add_texts(["rocket launch pad", "basil pesto"], ids=["new1", "new2"])  # marked as added
    index.delete(["c5", "c6"])
    index.delete(["c7"])
    index.add_texts(["a guitar now, not a dog"], ids=["c7"])  # a fitted id written again
    # written without this version's mark (as by a process still on an older version)
    index.store.add(["raw1"], ["drum solo"], emb.embed(["drum solo"]), [{"cr_hash": "x"}])
    active = index.model
    assert fitting._from_snapshot(index.store, active) is not None  # the snapshot path is taken
    ids, vectors = fitting._load_vectors(index.store, active)
    want_ids, want_vectors = fitting._read_all_vectors(index.store)
    assert ids == want_ids and len(ids) == 90 - 2 + 2 + 1
    assert np.array_equal(vectors, want_vectors)
    # without a readable snapshot the refit reads everything from Chroma
    for snap in (tmp_path / "kb" / "cluster_rag").rglob("*.npy"):
        snap.unlink()
    assert fitting._from_snapshot(index.store, active) is None
    info = index.fit(k=3)
    assert info.n_chunks == len(want_ids)
