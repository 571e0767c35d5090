"""The stored assignment (parts in the meta collection, digest-checked) and the vector snapshot,
and the numpy backend built over cluster-sorted (memory-mapped) rows without a copy."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import chromadb
import numpy as np
import pytest

from cluster_rag.routing import RoutingIndex
from cluster_rag.store import ChromaStore, snapshots


@pytest.fixture
def store() -> ChromaStore:
    client = chromadb.EphemeralClient()
    return ChromaStore(client, f"t{uuid.uuid4().hex[:8]}", model_name="m", dimension=8)


def blobs(n: int = 300, k: int = 7, d: int = 8, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, d)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [f"id-{i}" for i in range(n)], vectors, rng.integers(k, size=n)


def test_assignment_round_trips_in_parts(store: ChromaStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshots, "PART_ROWS", 64)
    ids, _, labels = blobs()
    order, offsets = snapshots.sort_by_cluster(labels, 7)
    sorted_ids = [ids[i] for i in order]
    entry = snapshots.save_assignment(store, 3, sorted_ids, offsets)
    assert entry["parts"] == 5 and entry["n"] == 300
    got = snapshots.load_assignment(store, 3, entry)
    assert got is not None and list(got.ids) == sorted_ids
    assert got.position_of == {cid: int(labels[i]) for i, cid in enumerate(ids)}
    assert np.array_equal(np.bincount(got.labels, minlength=7), np.bincount(labels, minlength=7))


def test_a_missing_part_or_another_digest_reads_as_absent(store: ChromaStore) -> None:
    ids, _, labels = blobs(50)
    order, offsets = snapshots.sort_by_cluster(labels, 7)
    entry = snapshots.save_assignment(store, 1, [ids[i] for i in order], offsets)
    assert snapshots.load_assignment(store, 1, {**entry, "digest": "0" * 16}) is None
    assert snapshots.load_assignment(store, 1, {**entry, "parts": 2}) is None
    # a later attempt at the same version replaces what an interrupted one left
    entry2 = snapshots.save_assignment(store, 1, [ids[i] for i in order[:10]], np.array([0, 10] + [10] * 6))
    assert snapshots.load_assignment(store, 1, entry) is None
    found = snapshots.load_assignment(store, 1, entry2)
    assert found is not None and len(found) == 10
    snapshots.delete_assignment(store, 1)
    assert snapshots.load_assignment(store, 1, entry2) is None


def test_snapshot_is_mapped_and_checked(tmp_path: Path) -> None:
    _, vectors, _ = blobs(40)
    path = tmp_path / "v1-abc.npy"
    snapshots.write_snapshot(path, vectors)
    mapped = snapshots.read_snapshot(path, 40, 8)
    assert isinstance(mapped, np.memmap) and np.array_equal(mapped, vectors)
    assert snapshots.read_snapshot(path, 41, 8) is None  # another assignment's shape
    order = np.random.default_rng(2).permutation(40)
    snapshots.write_snapshot(tmp_path / "v1-sorted.npy", vectors, order)
    assert np.array_equal(np.load(tmp_path / "v1-sorted.npy"), vectors[order])
    assert snapshots.read_snapshot(tmp_path / "none.npy", 40, 8) is None
    path.write_bytes(b"not a npy file")
    assert snapshots.read_snapshot(path, 40, 8) is None


def test_snapshot_folder_only_for_an_embedded_store(store: ChromaStore, tmp_path: Path) -> None:
    assert snapshots.snapshot_folder(store) is None  # ephemeral: no folder
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    disk = ChromaStore(client, "kb1", model_name="m", dimension=8)
    assert snapshots.snapshot_path(disk, 2, "abc") == tmp_path / "db" / "cluster_rag" / "kb1" / "v2-abc.npy"


def test_from_sorted_matches_the_sorting_constructor(tmp_path: Path) -> None:
    ids, vectors, labels = blobs()
    rng = np.random.default_rng(1)
    centroids = rng.normal(size=(7, 8)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    order, offsets = snapshots.sort_by_cluster(labels, 7)
    snapshots.write_snapshot(tmp_path / "s.npy", vectors[order])
    mapped = snapshots.read_snapshot(tmp_path / "s.npy", 300, 8)
    assert mapped is not None
    extra = (["new-0", "new-1"], vectors[:2] * -1, np.array([3, 5]))
    fast = RoutingIndex.from_sorted(
        centroids, np.asarray([ids[i] for i in order], dtype=object), mapped, offsets, extra
    )
    slow = RoutingIndex(centroids, ids, vectors, labels).with_added(*extra)
    assert len(fast) == len(slow) == 302 and np.array_equal(fast.sizes(), slow.sizes())
    for q in vectors[:20]:
        for clusters in (np.array([0, 3]), np.arange(7)):
            a, b = fast.search(q, clusters, 10), slow.search(q, clusters, 10)
            assert list(a.ids) == list(b.ids) and np.allclose(a.scores, b.scores)
    ids_a, vec_a = fast.members(3)
    ids_b, vec_b = slow.members(3)
    assert sorted(ids_a) == sorted(ids_b)
    assert fast.without({"new-0", ids[order[0]]}).sizes().sum() == 300


def test_stored_ids_read_only_the_parts_a_search_needs(store: ChromaStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server client opens a version without reading its ids; a search reads the parts its clusters
    sit in; asking for every id reads the rest and checks the digest; a part lost or swapped after the
    open is a StoreCorruptedError, never wrong ids."""
    from cluster_rag.backends_chroma import ChromaQueryBackend, StoredIds
    from cluster_rag.errors import StoreCorruptedError

    monkeypatch.setattr(snapshots, "PART_ROWS", 7)
    ids, _, labels = blobs(50)
    order, offsets = snapshots.sort_by_cluster(labels, 7)
    sorted_ids = [ids[i] for i in order]
    entry = snapshots.save_assignment(store, 1, sorted_ids, offsets)
    assert entry["parts"] == 8 and snapshots.parts_readable_singly(store, 1, entry)
    assert snapshots.parts_readable_singly(store, 1, {k: v for k, v in entry.items() if k != "parts_signed"})
    held = StoredIds(store, 1, entry)
    assert len(held) == 50 and held._loaded == {}
    assert held.rows(10, 20) == sorted_ids[10:20]
    assert sorted(held._loaded) == [1, 2]
    backend = ChromaQueryBackend(store, held, offsets)
    c = int(np.argmax(np.diff(offsets)))
    got, got_labels = backend._cluster_ids(np.asarray([c]))
    assert got == sorted_ids[offsets[c] : offsets[c + 1]] and set(got_labels) == {c}
    assert list(held.array()) == sorted_ids and list(backend.labels()) == sorted(labels.tolist())

    # another attempt at version 1 swaps a part's ids: a fresh reader refuses it
    fresh = StoredIds(store, 1, entry)
    store.meta.upsert(
        ids=["assign:v1:3"], documents=['["x1","x2","x3","x4","x5","x6","x7"]'], embeddings=[[1.0]],
        metadatas=[{"kind": "assign", "version": 1, "part": 3, "digest": "another"}],
    )
    with pytest.raises(StoreCorruptedError):
        fresh.rows(21, 23)
    # an entry written before entries said so is checked part by part (metadata only)
    older = {key: value for key, value in entry.items() if key != "parts_signed"}
    assert not snapshots.parts_readable_singly(store, 1, older)


def test_parts_without_a_digest_are_read_whole(store: ChromaStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts written before they carried the digest are not read singly (the loader reads and checks
    them all at open, as before)."""
    monkeypatch.setattr(snapshots, "PART_ROWS", 7)
    ids, _, labels = blobs(20)
    order, offsets = snapshots.sort_by_cluster(labels, 7)
    entry = snapshots.save_assignment(store, 2, [ids[i] for i in order], offsets)
    got = store.meta.get(ids=["assign:v2:0"], include=["metadatas"])
    store.meta.update(ids=["assign:v2:0"], metadatas=[{**got["metadatas"][0], "digest": ""}])
    older = {key: value for key, value in entry.items() if key != "parts_signed"}
    assert not snapshots.parts_readable_singly(store, 2, older)
    assert snapshots.load_assignment(store, 2, older) is not None


def test_journal_and_token_bodies_are_metadata_and_lasting_records_documents(store: ChromaStore) -> None:
    """A write's journal record and the change token keep their bodies out of the full-text index
    (metadata); the payload and centroid copy stay documents (every write to a collection costs in
    proportion to the metadata it holds). A journal record an earlier release wrote is still read."""
    from cluster_rag.store.chroma_store import BODY_KEY, put_records

    store.save_model(1, {"info": {"k": 3}, "topics": [{}, {}, {}]}, np.eye(3, 8, dtype=np.float32))
    key = store.put_journal({"op": "add", "ids": ["a"]})
    got = store.meta.get(include=["metadatas", "documents"])
    rows = zip(got["ids"], got["metadatas"], got["documents"], strict=True)
    kinds = {rid: BODY_KEY in (meta or {}) and not doc for rid, meta, doc in rows}
    assert kinds == {"model:v1": False, "centroids:v1": False, key: True, "changes": True}
    token = store.change_token()
    assert token is None  # a journaled write is in flight
    store.drop_journal(key)
    token = store.change_token()
    assert token and not store.changes_since(token)
    store.meta.upsert(ids=["journal:old"], documents=['{"op": "delete", "ids": ["b"]}'], embeddings=[[1.0]])
    assert store.journal() == {"journal:old": {"op": "delete", "ids": ["b"]}}
    put_records(store.meta, ["journal:old"], ['{"op": "delete", "ids": ["c"]}'])
    assert store.journal()["journal:old"]["ids"] == ["c"]
    assert store.meta.get(ids=["journal:old"], include=["documents"])["documents"] == [""]
    store.note_change()
    assert store.changes_since(token)


def test_large_meta_documents_are_packed_and_earlier_ones_still_read(store: ChromaStore) -> None:
    """The payload and the assignment's id parts are deflated before Chroma full-text indexes them;
    documents an earlier release wrote as plain JSON read the same; a damaged one is a ValueError."""
    from cluster_rag.errors import VersionError
    from cluster_rag.store.chroma_store import pack_text, unpack_text

    payload = {"info": {"k": 3}, "topics": [{"keywords": ["alpha beta"] * 50}] * 3}
    store.save_model(1, payload, np.eye(3, 8, dtype=np.float32))
    ids = [f"chunk-{i:06d}" for i in range(500)]
    entry = snapshots.save_assignment(store, 1, ids, np.array([0, 200, 400, 500]))
    got = store.meta.get(ids=["model:v1", "assign:v1:0"], include=["documents"])
    for rid, doc in zip(got["ids"], got["documents"], strict=True):
        assert doc.startswith("z1:") and len(doc) < len(unpack_text(doc)) / 2, rid
    assert store.load_model(1) == payload and list(snapshots.load_assignment(store, 1, entry).ids) == ids
    store.meta.upsert(ids=["model:v1"], documents=[json.dumps(payload)], embeddings=[[1.0]])  # earlier release
    assert store.load_model(1) == payload
    assert unpack_text(pack_text("ünïcode ✓")) == "ünïcode ✓"
    store.meta.upsert(ids=["model:v1"], documents=["z1:bm90IHpsaWI="], embeddings=[[1.0]])  # damaged
    with pytest.raises(ValueError):
        store.load_model(1)
    with pytest.raises(VersionError, match="unreadable record"):
        store.check_version(1)
