"""Add logs (:mod:`cluster_rag.store.vector_log`): an embedded store keeps each add's vectors next
to it until a fit's snapshot holds them, and a fit reads them there instead of through Chroma,
only for rows Chroma still stores as that add wrote them."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cluster_rag import ClusterIndex, IndexConfig, fitting
from cluster_rag.store import vector_log
from tests.fixtures import FakeEmbedder

WORDS = ["dog cat puppy", "rocket moon orbit", "pasta pizza basil"]


DEFAULT_MIN_LOG_ROWS = vector_log.MIN_LOG_ROWS


@pytest.fixture(autouse=True)
def log_every_add(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small adds keep logs here (the default skips adds under MIN_LOG_ROWS rows)."""
    monkeypatch.setattr(vector_log, "MIN_LOG_ROWS", 1)


def open_index(path: Path) -> ClusterIndex:
    return ClusterIndex.open(path / "kb", embedder=FakeEmbedder(), config=IndexConfig(progress=False))


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def chroma_vectors(index: ClusterIndex, ids: list[str]) -> np.ndarray:
    got = index.store.get(ids, include=["embeddings"])
    assert got["ids"] == ids
    return np.asarray(got["embeddings"], dtype=np.float32)


class CountVectorReads:
    """Counts the chunk vectors read from Chroma through ``ChromaStore.get``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, index: ClusterIndex) -> None:
        self.rows = 0
        real = type(index.store).get

        def get(store: Any, ids: Any, include: Any = ("documents", "metadatas")) -> dict[str, Any]:
            got = real(store, ids, include)
            if "embeddings" in include:
                self.rows += len(got["ids"])
            return got

        monkeypatch.setattr(type(index.store), "get", get)


def test_an_add_logs_its_vectors_and_they_match_chromas(tmp_path: Path) -> None:
    index = open_index(tmp_path)
    ids = index.add_texts([f"{WORDS[i % 3]} note {i}" for i in range(40)], ids=[f"c{i}" for i in range(40)])
    tokens = vector_log.log_tokens(index.store)
    assert len(tokens) == 1
    folder = tmp_path / "kb" / "cluster_rag" / index.store.name / vector_log.LOG_FOLDER
    assert sorted(p.name for p in folder.iterdir()) == [f"{tokens[0]}.json", f"{tokens[0]}.npy"]
    vectors, found = vector_log.read_logged(index.store, ids)
    assert found.all()
    assert np.allclose(vectors, chroma_vectors(index, ids), rtol=0, atol=1e-6)
    # an id not stored, and one the log does not hold, are not found
    _, found = vector_log.read_logged(index.store, ["nope", ids[0]])
    assert found.tolist() == [False, True]


def test_first_fit_reads_logged_vectors_not_chroma_and_drops_the_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = open_index(tmp_path)
    index.add_texts([f"{WORDS[i % 3]} note {i}" for i in range(60)], ids=[f"c{i}" for i in range(60)])
    index.add_texts([f"{WORDS[i % 3]} more {i}" for i in range(30)], ids=[f"d{i}" for i in range(30)])
    assert len(vector_log.log_tokens(index.store)) == 2
    want_ids, want = fitting._read_all_vectors(index.store)  # Chroma only
    reads = CountVectorReads(monkeypatch, index)
    logs = vector_log.log_tokens(index.store)
    ids, vectors = fitting._read_all_vectors(index.store, logs)
    assert reads.rows == 0 and ids == want_ids
    assert np.allclose(vectors, want, rtol=0, atol=1e-6)

    index.fit(k=3)
    assert reads.rows == 0  # the fit read no vector from Chroma
    assert vector_log.log_tokens(index.store) == []  # its snapshot holds them now
    # an add after the fit is logged, and the refit reads it there (the rest from the snapshot)
    index.add_texts(["rocket launch pad", "basil pesto"], ids=["new1", "new2"])
    assert len(vector_log.log_tokens(index.store)) == 1
    index.fit(k=3)
    assert reads.rows == 0
    assert index.model.info.n_chunks == 92
    assert vector_log.log_tokens(index.store) == []


def test_replaced_deleted_and_readded_rows_are_never_read_from_an_old_log(tmp_path: Path) -> None:
    index = open_index(tmp_path)
    d = index.store.dimension
    ids = [f"c{i}" for i in range(10)]
    index.add_embeddings([f"text {i}" for i in range(10)], unit_rows(10, d, 0), ids=ids)
    index.update_embeddings(["c1"], ["text one, edited"], unit_rows(1, d, 1))  # replaced: a new stamp
    index.delete(["c2", "c3"])
    index.add_embeddings(["text three again"], unit_rows(1, d, 2), ids=["c3"])  # re-added
    # written around cluster-rag, stamped by no log (as an older release or a raw add would)
    index.store.add(["raw"], ["raw text"], unit_rows(1, d, 3), [{"cr_hash": "x"}])
    assert len(vector_log.log_tokens(index.store)) == 3
    every = [cid for cid in ids if cid != "c2"] + ["raw"]
    vectors, found = vector_log.read_logged(index.store, every + ["c2"])
    assert found.tolist() == [True] * 9 + [False, False]  # "raw" and the deleted "c2" are not
    assert np.allclose(vectors[:9], chroma_vectors(index, every[:9]), rtol=0, atol=1e-6)
    # and a fit over all of it sees exactly what Chroma holds
    listed, fitted = fitting._read_all_vectors(index.store, vector_log.log_tokens(index.store))
    want_ids, want = fitting._read_all_vectors(index.store)
    assert listed == want_ids and np.allclose(fitted, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "ids"])
def test_a_damaged_log_is_ignored_and_the_fit_reads_chroma(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    index = open_index(tmp_path)
    ids = index.add_texts([f"{WORDS[i % 3]} note {i}" for i in range(45)], ids=[f"c{i}" for i in range(45)])
    (token,) = vector_log.log_tokens(index.store)
    folder = tmp_path / "kb" / "cluster_rag" / index.store.name / vector_log.LOG_FOLDER
    npy = folder / f"{token}.npy"
    raw = bytearray(npy.read_bytes())
    if damage == "truncated":
        npy.write_bytes(raw[: len(raw) - 100])
    elif damage == "flipped":  # same size: only the CRC tells
        raw[-7] ^= 0x40
        npy.write_bytes(bytes(raw))
    else:
        (folder / f"{token}.json").write_text("{not json")
    _, found = vector_log.read_logged(index.store, ids)
    assert not found.any()
    reads = CountVectorReads(monkeypatch, index)
    info = index.fit(k=3)
    assert info.n_chunks == 45 and reads.rows == 45  # every vector from Chroma
    assert vector_log.log_tokens(index.store) == []


def test_a_failed_log_write_leaves_the_add_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    index = open_index(tmp_path)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vector_log.np, "save", full_disk)
    with caplog.at_level(logging.WARNING, logger="cluster_rag"):
        ids = index.add_texts([f"note {i}" for i in range(5)])
    assert index.store.count() == 5 and len(ids) == 5
    assert "No space left" in caplog.text
    assert vector_log.log_tokens(index.store) == []
    folder = tmp_path / "kb" / "cluster_rag" / index.store.name / vector_log.LOG_FOLDER
    assert list(folder.glob("*")) == []  # no temp file left behind


def test_drop_logs_removes_what_killed_writers_left(tmp_path: Path) -> None:
    index = open_index(tmp_path)
    index.add_texts(["a note", "another note"])
    folder = tmp_path / "kb" / "cluster_rag" / index.store.name / vector_log.LOG_FOLDER
    dead = 2**22 + 12345  # above the default pid_max: no such process
    (folder / f"aaaa.tmp{dead}").write_bytes(b"half a file")
    (folder / f"bbbb.tmp{dead}j").write_text("{}")
    (folder / f"cccc.tmp{os.getpid()}").write_bytes(b"being written")  # a live writer's
    lone = folder / "dddd.json"
    lone.write_text("{}")
    os.utime(lone, (1_000_000, 1_000_000))  # killed between its two renames, long ago
    vector_log.drop_logs(index.store, vector_log.log_tokens(index.store))
    assert sorted(p.name for p in folder.iterdir()) == [f"cccc.tmp{os.getpid()}"]


def test_small_adds_keep_no_log_and_the_fit_reads_them_from_chroma(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert DEFAULT_MIN_LOG_ROWS == 1_000
    monkeypatch.setattr(vector_log, "MIN_LOG_ROWS", DEFAULT_MIN_LOG_ROWS)
    index = open_index(tmp_path)
    d = index.store.dimension
    index.add_embeddings([f"text {i}" for i in range(999)], unit_rows(999, d, 0))
    assert vector_log.log_tokens(index.store) == []
    index.add_embeddings([f"more {i}" for i in range(1_000)], unit_rows(1_000, d, 1))
    assert len(vector_log.log_tokens(index.store)) == 1
    reads = CountVectorReads(monkeypatch, index)
    index.fit(k=4)
    assert reads.rows == 999  # the small add from Chroma, the logged one from its log
    assert index.model.info.n_chunks == 1_999


def test_a_store_without_a_folder_keeps_no_log() -> None:
    import chromadb

    index = ClusterIndex.from_client(
        chromadb.EphemeralClient(),
        collection="vector_log_memory",
        embedder=FakeEmbedder(),
        config=IndexConfig(progress=False),
    )
    ids = index.add_texts(["a note", "another note"])
    assert vector_log.log_tokens(index.store) == []
    _, found = vector_log.read_logged(index.store, ids)
    assert not found.any()
