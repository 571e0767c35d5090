"""Issue 16's table of bad inputs, one regression test per row: each is a ClusterRagError with our
own message (never Chroma's text, never a raw Python error), raised at the door with the store
unchanged. Plus the journal, version claims, complete-version checks and foreign-error wrapping.
Real embedded Chroma, the fast fake embedder."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.errors import (
    ClusterRagError,
    ConcurrentWriteError,
    DuplicateIdError,
    EmptyTextError,
    InvalidInputError,
    MetadataError,
    StoreConnectionError,
    StoreError,
    StoreNotFoundError,
    UnknownTopicError,
    VersionError,
)
from cluster_rag.fitting import prune_versions
from cluster_rag.guard import translate
from cluster_rag.journal import WRITE_KEY
from cluster_rag.repair import recover_journal
from cluster_rag.store import snapshots
from cluster_rag.store.chroma_store import put_records
from cluster_rag.validation import check_collection_name, check_where
from tests.fixtures import FakeEmbedder

CFG = IndexConfig(progress=False)
WORDS = {
    "pets": "dog cat puppy kitten leash bark meow vet",
    "space": "rocket orbit moon mars launch astronaut nasa planet",
    "food": "pasta pizza recipe oven garlic tomato cheese bake",
}


def texts(name: str, n: int = 20) -> list[str]:
    rng = np.random.default_rng(len(name))
    words = WORDS[name].split()
    return [" ".join(rng.choice(words, size=6)) + f" {name} {i}" for i in range(n)]


def fingerprint(index: ClusterIndex) -> tuple[int, str, Any]:
    """Chunk count, a hash of every record (id, text, metadata), and the active version."""
    got = index.store.chunks.get(include=["documents", "metadatas"])
    metas = [json.dumps(m, sort_keys=True) for m in got["metadatas"]]
    rows = sorted(zip(got["ids"], got["documents"], metas, strict=True))
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    return len(rows), digest, index.store.active_version()


@pytest.fixture(scope="module")
def fitted_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hardening")
    index = ClusterIndex.open(path, embedder=FakeEmbedder(), config=CFG)
    for name in WORDS:
        index.add_texts(texts(name), [{"topic": name}] * 20, [f"{name}-{i}" for i in range(20)])
    index.fit(k=3)
    return path


@pytest.fixture(scope="module")
def index(fitted_path: Path) -> ClusterIndex:
    """Shared by the read-only checks: every one of them must leave it unchanged."""
    return ClusterIndex.open(fitted_path, embedder=FakeEmbedder(), config=CFG, create=False)


@pytest.fixture
def fresh(tmp_path: Path) -> ClusterIndex:
    index = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)
    for name in WORDS:
        index.add_texts(texts(name), [{"topic": name}] * 20, [f"{name}-{i}" for i in range(20)])
    index.fit(k=3)
    return index


def assert_rejected(index: ClusterIndex, call: Any, error: type[ClusterRagError], *words: str) -> str:
    before = fingerprint(index)
    with pytest.raises(error) as info:
        call()
    text = str(info.value)
    for word in words:
        assert word in text, text
    assert "Expected" not in text  # Chroma's own validator wording never leaks
    assert fingerprint(index) == before
    return text


# --- add_texts / add_embeddings ----------------------------------------------------------
@pytest.mark.parametrize("bad", [None, 7])
def test_add_texts_not_a_list(index: ClusterIndex, bad: Any) -> None:
    assert_rejected(index, lambda: index.add_texts(bad), EmptyTextError, "list of strings")


@pytest.mark.parametrize("where", ["text", "query", "id", "metadata value", "metadata key", "get id"])
def test_lone_surrogate_is_named(index: ClusterIndex, where: str) -> None:
    bad = "ok \ud800 there"
    calls = {
        "text": lambda: index.add_texts([bad]),
        "query": lambda: index.search(bad),
        "id": lambda: index.add_texts(["fine text"], ids=[bad]),
        "metadata value": lambda: index.add_texts(["fine text"], [{"k": bad}]),
        "metadata key": lambda: index.add_texts(["fine text"], [{bad: 1}]),
        "get id": lambda: index.get([bad]),
    }
    text = assert_rejected(index, calls[where], InvalidInputError, "lone surrogate", "U+D800", "position")
    assert "\ud800" not in text.replace("'\\ud800'", "")  # the message itself is printable


def test_ids_as_a_bare_string(index: ClusterIndex) -> None:
    assert_rejected(
        index, lambda: index.add_texts(["a b", "c d", "e f"], ids="abc"), InvalidInputError, "abc"
    )


@pytest.mark.parametrize(
    "value, words",
    [
        (float("inf"), ("inf", "finite")),
        (float("-inf"), ("finite",)),
        (float("nan"), ("finite",)),
        (2**63, ("64-bit",)),
        (-(2**63) - 1, ("64-bit",)),
        ([1.0, float("inf")], ("finite",)),
        ([2**70], ("64-bit",)),
        ({"nested": 1}, ("cannot be stored",)),
        ([], ("cannot be stored",)),
        ([1, "a"], ("cannot be stored",)),
    ],
)
def test_metadata_values_chroma_cannot_store(index: ClusterIndex, value: Any, words: tuple[str, ...]) -> None:
    assert_rejected(index, lambda: index.add_texts(["some text"], [{"v": value}]), MetadataError, *words)


def test_int64_bounds_are_accepted(fresh: ClusterIndex) -> None:
    ids = fresh.add_texts(["big number one", "big number two"], [{"v": 2**63 - 1}, {"v": -(2**63)}])
    assert [h.metadata["v"] for h in fresh.get(ids)] == [2**63 - 1, -(2**63)]


@pytest.mark.parametrize("key", ["$and", "chroma:document", "#document", "cr_v1", "", 5])
def test_reserved_metadata_keys(index: ClusterIndex, key: Any) -> None:
    assert_rejected(index, lambda: index.add_texts(["some text"], [{key: 1}]), MetadataError)


def test_bad_last_row_of_6000_fails_at_the_door(tmp_path: Path) -> None:
    emb = FakeEmbedder()
    idx = ClusterIndex.open(tmp_path / "kb", embedder=emb, config=CFG)
    rows = [f"row number {i} text" for i in range(6000)]
    for key in ("$and", "chroma:document"):
        metas: list[dict[str, Any]] = [{"n": i} for i in range(6000)]
        metas[-1] = {key: "x"}
        with pytest.raises(MetadataError, match="5999"):
            idx.add_texts(rows, metas)
    assert emb.calls == 0 and len(idx) == 0  # nothing embedded, nothing written


def test_add_embeddings_zero_vector_and_strings(index: ClusterIndex) -> None:
    d = index.store.dimension
    zero = np.zeros((1, d), np.float32)
    assert_rejected(index, lambda: index.add_embeddings(["t"], zero), InvalidInputError, "zero vector")
    strings = [["a"] * d]
    assert_rejected(
        index, lambda: index.add_embeddings(["t"], strings), InvalidInputError, "array of numbers"
    )


@pytest.mark.parametrize("kwargs", [{"n_init": 0}, {"n_init": -1}, {"clusterer": object()}])
def test_fit_arguments(index: ClusterIndex, kwargs: dict[str, Any]) -> None:
    assert_rejected(index, lambda: index.fit(k=3, **kwargs), InvalidInputError)


# --- search ---------------------------------------------------------------------------
@pytest.mark.parametrize("topics", [5, "0", [], [None], [True], [1.5]])
def test_search_topics_shape(index: ClusterIndex, topics: Any) -> None:
    assert_rejected(index, lambda: index.search("dog", topics=topics), InvalidInputError)


@pytest.mark.parametrize("topic", [10**100, "1" * 100, "9" * 5000, -1])
def test_huge_topic_ids_are_unknown_not_parsed(index: ClusterIndex, topic: Any) -> None:
    assert_rejected(index, lambda: index.topic(topic), UnknownTopicError)
    assert_rejected(index, lambda: index.search("dog", topics=[topic]), UnknownTopicError)


@pytest.mark.parametrize(
    "where",
    [
        {},
        "label",
        {"$bogus": 1},
        {"topic": {"$regex": "p.*"}},
        {"topic": {"$in": []}},
        {"topic": ["pets", "food"]},
        {"topic": "pets", "n": 1},
        {"$and": [{"topic": "pets"}]},
        {"$or": "x"},
        {"topic": {"$gt": "a"}},
        {"topic": {"$in": [1, "a"]}},
        {"topic": {"$eq": "a", "$ne": "b"}},
        {"topic": None},
        {"topic": float("nan")},
        {5: "x"},
        {"$contains": "x"},
    ],
)
def test_where_grammar_checked_before_work(index: ClusterIndex, where: Any) -> None:
    emb = index.embedder
    assert isinstance(emb, FakeEmbedder)
    calls = emb.calls
    assert_rejected(index, lambda: index.search("dog", where=where), InvalidInputError, "where")
    assert emb.calls == calls  # rejected before the query was embedded


@pytest.mark.parametrize(
    "where",
    [
        {"topic": "pets"},
        {"topic": {"$in": ["pets", "food"]}},
        {"$and": [{"topic": {"$ne": "food"}}, {"topic": {"$nin": ["space"]}}]},
        {"$or": [{"topic": "pets"}, {"topic": {"$eq": "food"}}]},
    ],
)
def test_valid_where_filters_still_work(index: ClusterIndex, where: dict[str, Any]) -> None:
    assert check_where(where) == where
    assert index.search("dog cat", k=3, where=where)


# --- get / delete -------------------------------------------------------------------
@pytest.mark.parametrize("ids", [[None], [123], None, 7, "pets-1", [""], {"a": 1}])
def test_get_and_delete_bad_ids(index: ClusterIndex, ids: Any) -> None:
    assert_rejected(index, lambda: index.get(ids), InvalidInputError)
    assert_rejected(index, lambda: index.delete(ids), InvalidInputError)


# --- open -----------------------------------------------------------------------------
def test_open_a_regular_file(tmp_path: Path) -> None:
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(StoreNotFoundError, match="is a file"):
        ClusterIndex.open(f, embedder=FakeEmbedder(), config=CFG)


@pytest.mark.parametrize(
    "name", ["a", "../x", "-x-", "a..b", "x" * 600, "10.0.0.1", "has space", "ok\ud800ok"]
)
def test_collection_names_chroma_rejects(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInputError, match="collection name"):
        ClusterIndex.open(tmp_path / "kb", collection=name, embedder=FakeEmbedder(), config=CFG)
    assert check_collection_name("docs_v2.1") == "docs_v2.1"


# --- journal, duplicate-id race, versions ------------------------------------------------
def test_add_leaves_no_journal_and_stamps_rows(fresh: ClusterIndex) -> None:
    ids = fresh.add_texts(["a new dog text", "another cat text"])
    assert fresh.store.journal() == {}
    metas = fresh.store.get(ids, include=["metadatas"])["metadatas"]
    assert all(m.get(WRITE_KEY) for m in metas)
    assert all(WRITE_KEY not in h.metadata for h in fresh.get(ids))  # reserved keys stay hidden


def test_killed_add_is_undone_on_recovery(fresh: ClusterIndex) -> None:
    """A journal entry of a dead process: its stamped rows go, other rows stay, sizes are restored."""
    before = fingerprint(fresh)
    sizes = list(fresh.store.load_model(fresh.model.version)["sizes"])  # type: ignore[index]
    token = "deadbeef0001"
    ids = [f"ghost-{i}" for i in range(7)]
    vectors = np.asarray(FakeEmbedder().embed([f"ghost {i}" for i in range(7)]), np.float32)
    key = fresh.store.put_journal({"op": "add", "token": token, "ids": ids, "version": fresh.model.version})
    entry = fresh.store.journal()[key]
    entry.update(pid=2**22 + 12345)  # no such process
    put_records(fresh.store.meta, [key], [json.dumps(entry)])
    metas = [{WRITE_KEY: token, "cr_hash": "x", f"cr_v{fresh.model.version}": 0}] * 5
    fresh.store.add(ids[:5], ["ghost"] * 5, vectors[:5], metas)  # killed after 5 of 7 rows
    payload = fresh.store.load_model(fresh.model.version)
    assert payload is not None
    payload["sizes"][0] += 5
    payload["applied_writes"] = [token]
    fresh.store.update_model(fresh.model.version, payload)
    done = recover_journal(fresh.store)
    assert len(done) == 1 and "undid an add of 7" in done[0]
    assert fingerprint(fresh) == before
    assert fresh.store.load_model(fresh.model.version)["sizes"] == sizes  # type: ignore[index]
    assert fresh.store.journal() == {}


def test_live_writers_journal_is_left_alone(fresh: ClusterIndex) -> None:
    key = fresh.store.put_journal({"op": "add", "token": "t", "ids": ["pets-1"], "version": None})
    assert recover_journal(fresh.store) == []  # our own pid: alive
    assert key in fresh.store.journal() and len(fresh.get(["pets-1"])) == 1


def test_same_ids_race_loser_gets_duplicate_id_error(fresh: ClusterIndex) -> None:
    """The second writer passed the stored-id check before the first wrote: Chroma ignores its
    rows for the clashing ids, the stamps show it, its own rows are removed."""
    from cluster_rag import living

    first = fresh.add_texts(["race winner text one", "race winner text two"], ids=["r1", "r2"])
    vectors = np.asarray(FakeEmbedder().embed(["loser one", "loser two", "loser three"]), np.float32)
    before = fingerprint(fresh)
    with pytest.raises(DuplicateIdError, match="another process"):
        batch = living.Batch(["l1", "l3", "l2"], [{}, {}, {}], ["r1", "r3", "r2"], ["h1", "h3", "h2"])
        living.add_rows(fresh.store, fresh.model, batch, vectors)
    assert fingerprint(fresh) == before
    assert [h.text for h in fresh.get(first)] == ["race winner text one", "race winner text two"]


def test_version_claims_are_compare_and_swap(fresh: ClusterIndex) -> None:
    store = fresh.store
    a, base = store.claim_version()
    b, _ = store.claim_version()
    assert a != b and base == fresh.model.version
    with pytest.raises(ConcurrentWriteError, match="another process"):
        store.set_active(fresh.model.version, expect=base + 100)


def test_fit_after_another_process_fit_takes_a_new_number(fresh: ClusterIndex, tmp_path: Path) -> None:
    other = ClusterIndex.open(fresh.location, embedder=FakeEmbedder(), config=CFG, create=False)
    other.fit(k=2)
    infos = [v.version for v in fresh.versions()]
    info = fresh.fit(k=3)  # claims after the other switch: starts from it, no clash
    assert info.version not in infos


def test_rollback_skips_a_broken_version(fresh: ClusterIndex, caplog: pytest.LogCaptureFixture) -> None:
    v1 = fresh.model.version
    fresh.fit(k=2)
    fresh.fit(k=3)
    v2 = fresh.versions()[-2].version
    fresh.store.delete_centroids(v2)  # what a kill mid-prune left before the fix
    with pytest.raises(VersionError, match="centroids missing"):
        fresh.rollback(v2)
    info = fresh.rollback()
    assert info.version == v1
    assert any("skipped a broken version" in r.message for r in caplog.records)
    assert fresh.search("dog cat")


def test_prune_deletes_the_record_before_the_centroids(fresh: ClusterIndex) -> None:
    """Deleting a version removes its record first: its other parts (centroid rows and copy,
    assignment parts, snapshot file) are orphans the next prune removes although no claim names
    the version, never a listed version without centroids."""
    v1 = fresh.model.version
    fresh.fit(k=2)
    folder = snapshots.snapshot_folder(fresh.store)
    assert folder is not None and list(folder.glob(f"v{v1}-*.npy"))
    fresh.store.meta.delete(ids=[f"model:v{v1}"])  # a kill right after the first delete
    assert v1 not in fresh.store.versions() and v1 not in fresh.store.claims()
    assert v1 in fresh.store.centroid_versions()
    assert v1 in fresh.store.leftover_versions()
    prune_versions(fresh.store, 3)  # nothing to drop by count: only the orphan goes
    assert v1 not in fresh.store.leftover_versions() | snapshots.snapshot_versions(fresh.store)
    assert not list(folder.glob(f"v{v1}-*"))
    assert fresh.versions() and fresh.model.version in fresh.store.leftover_versions()
    assert fresh.search("dog cat")


# --- foreign errors ---------------------------------------------------------------------
def test_foreign_errors_are_translated() -> None:
    assert isinstance(translate(sqlite3.OperationalError("database is locked")), StoreError)
    assert isinstance(translate(PermissionError(13, "denied", "/x")), StoreError)
    assert translate(TypeError("our own bug")) is None  # bugs are not hidden
    assert translate(KeyboardInterrupt()) is None
    import httpx

    assert isinstance(translate(httpx.ConnectError("refused")), StoreConnectionError)


def test_a_chroma_error_inside_a_call_leaves_as_cluster_rag_error(fresh: ClusterIndex) -> None:
    fresh.store.client.delete_collection(fresh.store.name)  # another client deleted it
    with pytest.raises(ClusterRagError):
        fresh.get(["pets-1"])
    with pytest.raises(ClusterRagError):
        len(fresh)


def test_csv_field_too_large_is_an_unsupported_file(fresh: ClusterIndex, tmp_path: Path) -> None:
    from cluster_rag.errors import UnsupportedFileError

    path = tmp_path / "big.csv"
    path.write_text("text\n" + "y" * 140_000 + "\n", encoding="utf-8")
    before = fingerprint(fresh)
    with pytest.raises(UnsupportedFileError, match="131,072"):
        fresh.ingest_files([path])
    assert fingerprint(fresh) == before


@pytest.mark.parametrize("row", [{"id": "j1", "text": "x", "chroma:document": "y"}, {"text": "x", "$and": 1}])
def test_jsonl_reserved_fields_fail_at_the_door(
    fresh: ClusterIndex, tmp_path: Path, row: dict[str, Any]
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    assert_rejected(fresh, lambda: fresh.ingest_files([path]), MetadataError, "reserves")


def test_jsonl_duplicate_id_in_one_file(fresh: ClusterIndex, tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text(
        json.dumps({"id": "d1", "text": "one dog"})
        + "\n"
        + json.dumps({"id": "d1", "text": "two cats"})
        + "\n",
        encoding="utf-8",
    )
    assert_rejected(fresh, lambda: fresh.ingest_files([path]), DuplicateIdError)


def test_orphans_of_a_killed_fit_are_cleaned_by_the_next_fit(fresh: ClusterIndex) -> None:
    store = fresh.store
    dead = {
        "token": "t",
        "active": fresh.model.version,
        "pid": 2**22 + 999,
        "host": __import__("socket").gethostname(),
        "at": 0,
    }
    store.meta.add(ids=["claim:v77"], documents=[json.dumps(dead)], embeddings=[[1.0]])
    store.write_assignments(77, ["pets-1", "pets-2"], np.array([0, 1]))
    fresh.fit(k=3)
    assert 77 not in store.claims()
    metas = store.get(["pets-1", "pets-2"], include=["metadatas"])["metadatas"]
    assert all("cr_v77" not in m for m in metas)
    assert fresh.model.version != 77
