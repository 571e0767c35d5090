"""The living index on a real embedded Chroma with the fast fake embedder: stable topic ids
across refits, online centroid updates, partial_fit, delete, drift bookkeeping, and readers
that search from other threads while a refit switches versions."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest

from cluster_rag import ClusterIndex, IndexConfig, InvalidInputError, UnknownTopicError
from cluster_rag.errors import UnknownDocumentError, VersionError
from cluster_rag.store import added_key, snapshots, version_key
from tests.fixtures import FakeEmbedder

CFG = IndexConfig(progress=False)
VOCAB = {
    "pets": "dog cat puppy kitten leash bark meow vet",
    "space": "rocket orbit moon mars launch astronaut nasa planet",
    "food": "pasta pizza recipe oven garlic tomato cheese bake",
    "music": "guitar drum melody chord piano concert song bass",
}


def texts_of(name: str, n: int = 30, start: int = 0, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed + start + len(name))
    words = VOCAB[name].split()
    return [" ".join(rng.choice(words, size=6)) + f" {name} note {i}" for i in range(start, start + n)]


def add(index: ClusterIndex, name: str, n: int = 30, start: int = 0, **kw: object) -> list[str]:
    ids = [f"{name}-{i}" for i in range(start, start + n)]
    return index.add_texts(texts_of(name, n, start), [{"topic": name}] * n, ids, **kw)  # type: ignore[arg-type]


def topic_of(index: ClusterIndex, name: str) -> int:
    """Topic id holding most chunks of ``name``."""
    hits = index.get([f"{name}-{i}" for i in range(10)])
    return int(np.bincount([h.topic_id for h in hits]).argmax())


@pytest.fixture
def index(tmp_path: Path) -> ClusterIndex:
    idx = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)
    for name in ("pets", "space", "food"):
        add(idx, name)
    idx.fit(k=3)
    return idx


def test_refit_keeps_ids_and_labels_new_topic_gets_new_id(index: ClusterIndex) -> None:
    assert [t.id for t in index.topics()] == [0, 1, 2] and index.refit_report() is None
    pets, space, food = (topic_of(index, n) for n in ("pets", "space", "food"))
    index.rename_topic(pets, "Animals", description="pets and vets")
    before = {t.id: t.label for t in index.topics()}
    add(index, "music")
    info = index.fit(k=4)
    report = index.refit_report()
    assert info.version == 2 and report is not None and report.previous_version == 1
    # a new topic gets an id never used: past the topics and the topic-tree parents of version 1
    fresh = report.new[0]
    assert sorted(m.topic_id for m in report.kept) == [0, 1, 2] and report.new == [fresh] and fresh >= 3
    assert not report.gone and not report.merged and not report.split
    assert (topic_of(index, "pets"), topic_of(index, "space"), topic_of(index, "food")) == (pets, space, food)
    assert topic_of(index, "music") == fresh
    animals = index.topic(pets)
    assert animals.label == "Animals" and animals.pinned and animals.description == "pets and vets"
    assert index.topic(space).label == before[space]  # content unchanged: label carried, not redone
    assert index.refit_report(1) is None
    with pytest.raises(VersionError, match="version 9 does not exist"):
        index.refit_report(9)


def test_non_contiguous_ids_at_the_boundary(index: ClusterIndex) -> None:
    add(index, "music")
    index.fit(k=4)
    space = topic_of(index, "space")
    before = {t.id for t in index.topics()}
    assert index.delete([f"space-{i}" for i in range(30)]) == 30
    index.fit(k=3)
    report = index.refit_report()
    assert report is not None and report.gone == [space]
    ids = sorted(t.id for t in index.topics())
    assert ids == sorted(before - {space})
    music = topic_of(index, "music")
    hits = index.search("guitar drum chord", k=5, topics=[music])
    assert hits and all(h.topic_id == music and h.metadata["topic"] == "music" for h in hits)
    assert all(h.model_version == 3 for h in hits)
    by_label = index.search("guitar", k=3, topics=[index.topic(music).label])
    assert {h.topic_id for h in by_label} == {music}
    assert index.topic(music).size == 30
    with pytest.raises(
        UnknownTopicError, match=re.escape(f"topic {space} does not exist; topic ids are {ids}")
    ):
        index.search("rocket", topics=[space])
    routed = index.search("pizza garlic oven", k=3)
    assert {h.topic_id for h in routed} <= set(ids) and routed[0].topic_label


def test_update_centroids_moves_only_touched_centroids_and_persists(tmp_path: Path) -> None:
    idx = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)
    for name in ("pets", "space", "food"):
        add(idx, name)
    idx.fit(k=3)
    before = idx.model
    centroids = before.centroids.copy()
    pets = before.position_of[topic_of(idx, "pets")]
    add(idx, "pets", n=10, start=30, update_centroids=True)
    after = idx.model.centroids
    moved = np.nonzero(np.any(after != centroids, axis=1))[0]
    assert moved.tolist() == [pets]
    assert np.array_equal(before.centroids, centroids)  # the old snapshot is untouched
    assert idx.model_info.version == 1  # updated in place, same version
    reopened = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)
    np.testing.assert_allclose(reopened.model.centroids, after, atol=1e-6)
    online = reopened.model.online
    assert online is not None and online.folded == 10 and online.counts[pets] == 40
    marks = {m[added_key(1)] for m in idx.store.get([f"pets-{i}" for i in range(30, 40)])["metadatas"]}
    assert marks == {2}
    assert idx.partial_fit() == 0  # already folded
    with pytest.raises(InvalidInputError, match="update_centroids='yes'"):
        idx.add_texts(["x y"], update_centroids="yes")  # type: ignore[arg-type]


def test_partial_fit_folds_what_was_added(index: ClusterIndex) -> None:
    add(index, "food", n=20, start=30)
    state = index.model
    food = state.position_of[topic_of(index, "food")]
    assert len(state.added) == 20 and index.info()["added_since_fit"] == 20
    assert index.partial_fit() == 20
    online = index.model.online
    assert online is not None and online.counts[food] == 50 and online.folded == 20
    assert index.partial_fit() == 0
    report = index.drift()
    assert report.n_added == 20 and report.version == 1


def test_delete_is_all_or_nothing_and_removes_from_search(index: ClusterIndex) -> None:
    with pytest.raises(UnknownDocumentError, match="nothing was deleted"):
        index.delete(["pets-0", "no-such-id"])
    assert len(index) == 90
    with pytest.raises(InvalidInputError, match="wrap it in a list"):
        index.delete("pets-0")  # type: ignore[arg-type]
    assert index.delete(["pets-0", "pets-1"]) == 2 and len(index) == 88
    hits = index.search(texts_of("pets", 2)[0], k=90, n_probe=3)
    assert not {"pets-0", "pets-1"} & {h.id for h in hits} and len(hits) == 88
    assert sum(t.size for t in index.topics()) == 88
    assert index.delete([]) == 0


def test_refit_clears_added_marks_and_prune_drops_keys(tmp_path: Path) -> None:
    idx = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG.with_(keep_versions=1))
    add(idx, "pets")
    add(idx, "space")
    idx.fit(k=2)
    add(idx, "food")
    assert len(idx.model.added) == 30
    idx.fit(k=3)
    metas = idx.store.load_all()[2]
    assert len(metas) == 90  # nothing deleted by refit or prune
    # the refit wrote no chunk metadata (its assignment is stored once); v1's keys were pruned
    assert not any(version_key(v) in m or added_key(v) in m for m in metas for v in (1, 2))
    payload = idx.store.load_model(2)
    assert payload is not None and snapshots.load_assignment(idx.store, 2, payload["assignment"]) is not None
    assert not idx.store.meta.get(where={"$and": [{"kind": "assign"}, {"version": 1}]}, include=[])["ids"]
    assert idx.drift().n_added == 0 and idx.drift().recommendation == "ok"


def test_other_process_refit_is_picked_up_by_writers(tmp_path: Path) -> None:
    a = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)
    for name in ("pets", "space", "food"):
        add(a, name)
    a.fit(k=3)
    b = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)
    assert b.model_info.version == 1
    a.fit(k=3)  # "another process" switches to v2
    [new] = b.add_texts(["rocket moon orbit launch"], ids=["late"])
    meta = b.store.get([new])["metadatas"][0]
    assert meta[version_key(2)] >= 0 and meta[added_key(2)] == 1 and b.model_info.version == 2


def test_readers_see_one_version_per_search_while_refitting(tmp_path: Path) -> None:
    idx = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG.with_(keep_versions=10))
    for name in VOCAB:
        add(idx, name)
    idx.fit(k=2)
    emb = FakeEmbedder()
    queries = emb.embed([texts_of(n, 1, 99)[0] for n in VOCAB])
    results: list[list[tuple[int | None, str, int]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    started = threading.Barrier(4)

    def reader(q: np.ndarray) -> None:
        try:
            first = True
            while first or not stop.is_set():
                hits = idx.search_by_vector(q, k=20, n_probe=1)
                results.append([(h.model_version, h.id, h.topic_id) for h in hits])
                if first:
                    started.wait()
                    first = False
            hits = idx.search_by_vector(q, k=20, n_probe=1)  # one more after the last switch
            results.append([(h.model_version, h.id, h.topic_id) for h in hits])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(q,)) for q in queries[:3]]
    for t in threads:
        t.start()
    started.wait()
    for k in (3, 4, 5, 4):
        idx.fit(k=k)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    # the truth: each version's stored assignment, translated to its stable topic ids
    truth = {}
    for v in idx.store.versions():
        payload = idx.store.load_model(v)
        assert payload is not None
        topic_ids = [t["id"] for t in payload["topics"]]
        fitted = snapshots.fitted_positions(idx.store, v, payload["assignment"])
        assert len(fitted) == idx.store.count()
        truth[v] = {cid: topic_ids[pos] for cid, pos in fitted.items()}
    seen = set()
    for hits in results:
        versions = {v for v, _, _ in hits}
        assert len(versions) == 1, versions
        (v,) = versions
        seen.add(v)
        assert all(truth[v][cid] == tid for _, cid, tid in hits)
    assert {1, 5} <= seen
