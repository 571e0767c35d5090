"""A re-ingest replaces edited chunks in one journaled write (issue 16): a process killed at any step
of it leaves every edited chunk with its old or its new text (never missing, never both), and the next
open settles the journal so the version's topic sizes match what the chunks hold.

The kills are deterministic: a child process runs the sync with a hook that SIGKILLs itself at a
chosen point of :func:`cluster_rag.living.replace_rows` (before Chroma's first upsert, between two
upsert batches, after the sizes were counted but before the journal record is dropped).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.ingest import sync_files
from tests.fixtures import FakeEmbedder

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CFG = IndexConfig(progress=False)
OLD = "rocket launch number {i} reached orbit around the moon"
NEW = "bake pizza number {i} in a hot oven with cheese"

CHILD = r"""
import os, signal, sys
from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.ingest import sync_files
from tests.fixtures import FakeEmbedder

path, docs, point = sys.argv[1], sys.argv[2], sys.argv[3]
idx = ClusterIndex.open(path, embedder=FakeEmbedder(), config=IndexConfig(progress=False), create=False)
idx.store.batch_size = 2  # six edited chunks: three upsert batches
chunks, store = idx.store.chunks, idx.store
upsert, drop = chunks.upsert, store.drop_journal
calls = []

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def hooked_upsert(**kw):
    calls.append(1)
    if point == "before upsert":
        die()
    upsert(**kw)
    if point == "between batches" and len(calls) == 2:
        die()

def hooked_drop(key):
    if point == "before journal drop":
        die()
    drop(key)

chunks.upsert = hooked_upsert
store.drop_journal = hooked_drop
sync_files(idx, [docs])
print("NOT KILLED", flush=True)
"""


def _prepared(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A fitted store of 12 one-chunk files; six of them then edited on disk (not yet synced)."""
    docs = tmp_path / "docs"
    docs.mkdir(parents=True)
    for i in range(6):
        (docs / f"s{i}.txt").write_text(OLD.format(i=i))
        (docs / f"p{i}.txt").write_text(f"guitar drum number {i} played loud")
    index = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)
    sync_files(index, [docs])
    index.fit(k=2)
    del index
    for i in range(6):
        (docs / f"s{i}.txt").write_text(NEW.format(i=i))
    return tmp_path / "kb", docs, [f"{(docs / f's{i}.txt').as_posix()}#0" for i in range(6)]


def _reopen(path: Path) -> ClusterIndex:
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()  # as a fresh process would see the store
    return ClusterIndex.open(path, embedder=FakeEmbedder(), config=CFG, create=False)


def _check_consistent(index: ClusterIndex, edited: list[str]) -> int:
    """No journal left; every edited chunk holds its old or new text; the topic sizes match the
    chunks' clusters. Returns how many edited chunks hold the new text."""
    assert index.store.journal() == {}
    got = index.store.get(edited, include=["documents"])
    assert got["ids"] == edited, f"edited chunks missing: {sorted(set(edited) - set(got['ids']))}"
    new = 0
    for cid, text in zip(got["ids"], got["documents"], strict=True):
        i = int(cid.split("/s")[-1].split(".txt")[0])
        assert text in (OLD.format(i=i), NEW.format(i=i)), text
        new += text == NEW.format(i=i)
    model = index.model
    held = np.bincount(model.backend.labels(), minlength=model.k)
    assert len(index) == 12 and len(model.backend) == 12
    assert model.sizes.tolist() == held.tolist()
    return new


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize(
    ("point", "expect_new"), [("before upsert", 0), ("between batches", 4), ("before journal drop", 6)]
)
def test_a_replace_killed_at_each_step_is_settled_on_open(
    tmp_path: Path, point: str, expect_new: int
) -> None:
    path, docs, edited = _prepared(tmp_path)
    before = _reopen(path).model.sizes.tolist()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(docs), point],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )
    assert child.returncode == -9, child.stdout + child.stderr[-2000:]
    assert _reopen(path).store.journal() == {}  # the open settled it
    index = _reopen(path)
    assert _check_consistent(index, edited) == expect_new
    if expect_new == 6:  # the moves were counted before the kill: the sizes changed exactly once
        assert index.model.sizes.tolist() != before
    report = sync_files(index, [docs])  # running it again finishes the edit
    assert sorted(report.updated) == sorted(edited[expect_new:]) if expect_new < 6 else not report.updated
    assert _check_consistent(_reopen(path), edited) == 6


def test_a_replace_that_fails_inside_chroma_settles_at_once(tmp_path: Path) -> None:
    path, docs, edited = _prepared(tmp_path)
    index = _reopen(path)
    index.store.batch_size = 2
    real, calls = index.store.chunks.upsert, []

    def failing(**kw: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        real(**kw)

    index.store.chunks.upsert = failing  # type: ignore[method-assign]
    with pytest.raises(Exception, match="disk full"):
        sync_files(index, [docs])
    index.store.chunks.upsert = real  # type: ignore[method-assign]
    index.refresh()
    assert _check_consistent(index, edited) == 2
    sync_files(index, [docs])
    assert _check_consistent(_reopen(path), edited) == 6


def test_replace_before_any_fit_and_sizes_after_fit(tmp_path: Path) -> None:
    """The edited chunk keeps no stale metadata key; after a fit the moves are counted at once."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.jsonl").write_text('{"id": "x", "text": "rocket moon", "tag": "old"}\n')
    index = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)
    sync_files(index, [docs])
    (docs / "a.jsonl").write_text('{"id": "x", "text": "pizza oven"}\n')
    assert sync_files(index, [docs]).updated == ["x"]
    meta = index.store.get(["x"], include=["metadatas"])["metadatas"][0]
    assert "tag" not in meta and index.store.get(["x"])["documents"] == ["pizza oven"]
    path, docs2, edited = _prepared(tmp_path / "second")
    index = _reopen(path)
    sync_files(index, [docs2])
    assert _check_consistent(index, edited) == 6
    assert _check_consistent(_reopen(path), edited) == 6
