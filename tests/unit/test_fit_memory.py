"""A fit holds its vectors once: blockwise cluster sums and leave-one-out distances equal the
whole-array figures, a large fit reads a sample of each topic's texts for its keywords, and the
fitted model searches the memory-mapped snapshot it just wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cluster_rag import ClusterIndex, IndexConfig, fitting, topic_texts
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
    assert np.array_equal(topic_texts.keyword_rows(order, offsets, 500, seed=0), order)  # small: every row
    monkeypatch.setattr(topic_texts, "KEYWORD_TEXTS", 200)
    monkeypatch.setattr(topic_texts, "KEYWORD_MIN_PER_TOPIC", 10)
    rows = topic_texts.keyword_rows(order, offsets, 500, seed=0)
    per_topic = np.bincount(labels[rows], minlength=4)
    assert per_topic.tolist() == [50, 20, 50, 30]  # capped at 200 // 4, small topics whole
    assert len(set(rows.tolist())) == len(rows)
    assert np.array_equal(rows, topic_texts.keyword_rows(order, offsets, 500, seed=0))  # seeded


def test_large_fit_samples_texts_and_searches_the_mapped_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(topic_texts, "KEYWORD_TEXTS", 40)
    monkeypatch.setattr(topic_texts, "KEYWORD_MIN_PER_TOPIC", 8)
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
    # the snapshot holds the vectors as they were added (the add logs), Chroma its own copy, which
    # its cosine space renormalizes: equal up to float32 rounding
    assert np.allclose(vectors, want_vectors, rtol=0, atol=1e-6)
    # without a readable snapshot the refit reads everything from Chroma
    for snap in (tmp_path / "kb" / "cluster_rag").rglob("*.npy"):
        snap.unlink()
    assert fitting._from_snapshot(index.store, active) is None
    info = index.fit(k=3)
    assert info.n_chunks == len(want_ids)


def test_keyword_rows_draw_rows_read_ahead_first_and_stay_even(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each topic's sample takes rows whose texts were read ahead first, tops up from the rest, and
    is still an even random sample: every member is drawn about equally often over seeds."""
    from cluster_rag.store import snapshots

    monkeypatch.setattr(topic_texts, "KEYWORD_TEXTS", 100)
    monkeypatch.setattr(topic_texts, "KEYWORD_MIN_PER_TOPIC", 10)
    labels = np.repeat(np.arange(4), [300, 20, 150, 30])  # cap 100 // 4 = 25
    order, offsets = snapshots.sort_by_cluster(labels, 4)
    hits = np.zeros(500)
    for trial in range(1500):
        known = np.random.default_rng(10_000 + trial).random(500) < 0.1
        rows = topic_texts.keyword_rows(order, offsets, 500, seed=trial, known=known)
        assert np.bincount(labels[rows], minlength=4).tolist() == [25, 20, 25, 25]
        for c in (0, 2):  # known rows first: a topic's sample holds all of them up to the cap
            members = order[offsets[c] : offsets[c + 1]]
            assert np.isin(rows, members).sum() == 25
            assert np.isin(members[known[members]], rows).sum() == min(25, known[members].sum())
        hits[rows] += 1
    freq = hits / 1500
    assert np.allclose(freq[labels == 1], 1.0)
    for c, size in ((0, 300), (2, 150), (3, 30)):  # each member near cap / size, read ahead or not
        assert np.abs(freq[labels == c] - 25 / size).max() < 0.06, (c, freq[labels == c])


def test_fit_reads_keyword_texts_beside_the_kmeans_when_a_core_is_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a core left idle the texts and the calibration's pseudo-queries are computed while the
    k-means runs: the same topics and route as after it, the sample (above KEYWORD_TEXTS) even per
    topic, and a failed k-means stops both."""
    import threading

    words = ["dog cat puppy", "rocket moon orbit", "pasta pizza basil"]
    texts = [f"{words[i % 3]} note {i}" for i in range(150)]

    def fitted(folder: str, idle: bool) -> list[tuple[object, ...]]:
        monkeypatch.setattr(fitting, "core_free_during_kmeans", lambda engine: idle)
        index = ClusterIndex.open(tmp_path / folder, embedder=FakeEmbedder(), config=IndexConfig(progress=False))
        index.add_texts(texts, ids=[f"c{i}" for i in range(150)])
        info = index.fit(k=3, engine="faiss")
        route = (info.n_probe, info.calibrated_recall, info.probe_gap, index.model.record.extras["recall_curve"])
        return [route] + [(t.size, t.keywords, t.representative_ids) for t in index.topics()]

    started: list[int] = []
    real = topic_texts.TextPrefetch.__init__

    def spy(self: topic_texts.TextPrefetch, store: object, ids: list[str], seed: int) -> None:
        started.append(len(ids))
        real(self, store, ids, seed)  # type: ignore[arg-type]

    monkeypatch.setattr(topic_texts.TextPrefetch, "__init__", spy)
    assert fitted("after", idle=False) == fitted("ahead", idle=True)  # every text: same topics
    assert started == [150]
    monkeypatch.setattr(topic_texts, "KEYWORD_TEXTS", 40)
    monkeypatch.setattr(topic_texts, "KEYWORD_MIN_PER_TOPIC", 8)
    monkeypatch.setattr(topic_texts, "PREFETCH_ROWS", 60)
    for topic in fitted("sampled", idle=True)[1:]:
        assert any(set(topic[1][:3]) & set(w.split()) for w in words), topic  # type: ignore[arg-type]

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("k-means failed")

    monkeypatch.setattr(fitting, "_cluster", broken)
    index = ClusterIndex.open(tmp_path / "after", embedder=FakeEmbedder(), config=IndexConfig(progress=False))
    with pytest.raises(RuntimeError, match="k-means failed"):
        index.fit(k=3, engine="faiss")
    assert not [t for t in threading.enumerate() if t.name.startswith("cluster-rag-ahead")]


def test_core_free_during_kmeans_follows_faiss_threads() -> None:
    faiss = pytest.importorskip("faiss")
    import os

    before = faiss.omp_get_max_threads()
    cores = len(os.sched_getaffinity(0))
    try:
        faiss.omp_set_num_threads(max(1, cores - 1))
        assert topic_texts.core_free_during_kmeans("faiss") is (cores > 1)
        faiss.omp_set_num_threads(cores)
        assert topic_texts.core_free_during_kmeans("faiss") is False
        assert topic_texts.core_free_during_kmeans("sklearn") is False
    finally:
        faiss.omp_set_num_threads(before)
