"""The stored assignment and the vector snapshot, for real: a refit rewrites no chunk metadata,
a reopened index (with and without the snapshot file) finds every chunk in its fitted topic,
adds and deletes after the fit survive a reopen, a refit SIGKILLed while writing the assignment
leaves the previous version complete, and a second client's refit through a server is seen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.store import RESERVED_PREFIX, snapshots
from tests.fixtures import FakeEmbedder
from tests.integration.test_living_index import wait_for

pytestmark = pytest.mark.integration

CFG = IndexConfig(progress=False)
TOPICS = {
    "pets": "dog cat puppy kitten leash bark meow vet",
    "space": "rocket orbit moon mars launch astronaut nasa planet",
    "food": "pasta pizza recipe oven garlic tomato cheese bake",
    "music": "guitar drum melody chord piano concert song bass",
}


def build(path: Path, *, k: int = 3) -> ClusterIndex:
    """120 chunks in 4 topics, fitted with ``k`` clusters."""
    index = ClusterIndex.open(path, embedder=FakeEmbedder(), config=CFG)
    rng = np.random.default_rng(0)
    for name, words in TOPICS.items():
        texts = [" ".join(rng.choice(words.split(), size=6)) + f" {name} {i}" for i in range(30)]
        index.add_texts(texts, ids=[f"{name}-{i}" for i in range(30)])
    index.fit(k=k)
    return index


def topics_by_id(index: ClusterIndex) -> dict[str, int]:
    """Each stored chunk's topic id as an exhaustive search with its own vector reports it;
    asserts the chunk comes back first."""
    ids, vectors, _ = index.store.load_all()
    model = index.model
    out: dict[str, int] = {}
    for cid, vec in zip(ids, vectors, strict=True):
        hits = index.search_by_vector(vec, k=1, n_probe=model.k)
        assert hits and hits[0].id == cid and hits[0].score > 0.9999, cid
        out[cid] = hits[0].topic_id
    assert len(model.backend) == len(ids)
    return out


def reopen(path: Path) -> ClusterIndex:
    return ClusterIndex.open(path, embedder=FakeEmbedder(), config=CFG, create=False)


def test_refit_writes_no_chunk_metadata_and_a_reopen_finds_every_chunk(tmp_path: Path) -> None:
    index = build(tmp_path / "kb")
    index.fit(k=4)  # a refit: v2
    metas = index.store.load_all()[2]
    assert not any(key.startswith(f"{RESERVED_PREFIX}v") for m in metas for key in m)
    payload = index.store.load_model(2)
    assert payload is not None and payload["assignment"]["n"] == 120
    folder = snapshots.snapshot_folder(index.store)
    assert folder is not None and [p.name for p in folder.glob("v2-*.npy")]
    fitted = topics_by_id(index)
    # a new index object reads the version from the store: mmap snapshot, then without it
    again = reopen(tmp_path / "kb")
    assert not again.model.loaded
    assert topics_by_id(again) == fitted
    assert {h.id: h.topic_id for h in again.get(list(fitted))} == fitted
    shutil.rmtree(folder)
    assert topics_by_id(reopen(tmp_path / "kb")) == fitted


def test_adds_and_deletes_after_the_fit_survive_a_reopen(tmp_path: Path) -> None:
    index = build(tmp_path / "kb")
    index.add_texts(
        [f"late note {i} about {n}" for i, n in enumerate(TOPICS)], ids=[f"late-{i}" for i in range(4)]
    )
    index.delete(["pets-0", "space-1", "late-2"])
    live = topics_by_id(index)
    assert len(live) == 121
    for drop_snapshot in (False, True):
        if drop_snapshot:
            folder = snapshots.snapshot_folder(index.store)
            assert folder is not None
            shutil.rmtree(folder)
        again = reopen(tmp_path / "kb")
        assert topics_by_id(again) == live
        assert sorted(again.model.added.ids()) == ["late-0", "late-1", "late-3"]
        assert again.search_by_vector(
            index.store.get(["late-1"], include=["embeddings"])["embeddings"][0], k=1
        )


def test_an_unchanged_store_opens_without_a_full_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No chunk written since the fit (the change token is the one the fit read): a new process
    neither counts the chunks nor scans for added ones. Any write moves the token, so the next
    open scans again and finds it; so does a fit that began while a write was in flight, and
    `cluster-rag repair` after a plain Chroma client wrote past the journal."""
    index = build(tmp_path / "kb")
    live = topics_by_id(index)

    def full_pass(*args: object, **kwargs: object) -> None:
        raise AssertionError("a full pass over the chunks on opening an unchanged store")

    again = reopen(tmp_path / "kb")
    monkeypatch.setattr(again.store, "count", full_pass)
    monkeypatch.setattr(again.store, "iter_all", full_pass)
    vec = index.store.get(["food-3"], include=["embeddings"])["embeddings"][0]
    assert again.search_by_vector(vec, k=1)[0].id == "food-3"
    assert len(again.model.backend) == 120 and not again.model.added.ids()
    monkeypatch.undo()
    assert topics_by_id(again) == live

    index.add_texts(["late pasta note"], ids=["late-0"])  # another writer: the token moves
    index.delete(["pets-0"])
    third = reopen(tmp_path / "kb")
    assert third.model.added.ids() == ["late-0"]
    assert set(topics_by_id(third)) == set(live) - {"pets-0"} | {"late-0"}

    # a fit that starts while a write is in flight cannot vouch for the chunks it read
    key = index.store.put_journal({"op": "add", "token": "t", "ids": [], "version": index.model.version})
    index.fit(k=3)
    payload = index.store.load_model(index.model.version)
    assert payload is not None and payload["assignment"]["changes_seen"] is None
    index.store.drop_journal(key)
    index.fit(k=3)
    payload = index.store.load_model(index.model.version)
    assert payload is not None and payload["assignment"]["changes_seen"]
    assert not index.store.changes_since(payload["assignment"]["changes_seen"])

    # a plain Chroma client writing past the journal is listed after `cluster-rag repair`
    from cluster_rag.cli import main

    raw = index.store.get(["food-3"], include=["embeddings", "metadatas"])
    index.store.chunks.add(ids=["raw-1"], embeddings=raw["embeddings"], documents=["raw pasta"])
    del index, again, third
    assert main(["repair", "--path", str(tmp_path / "kb"), "--quiet"]) == 0
    fourth = reopen(tmp_path / "kb")
    assert "raw-1" in fourth.model.added.ids()
    hits = fourth.search_by_vector(raw["embeddings"][0], k=2, n_probe=fourth.model.k)
    assert {h.id for h in hits} == {"food-3", "raw-1"}


WORKER = textwrap.dedent(
    """
    import sys, time
    from cluster_rag import ClusterIndex, IndexConfig
    from cluster_rag.store import snapshots

    path = sys.argv[1]
    snapshots.PART_ROWS = 25  # several parts
    snapshots.PARTS_PER_WRITE = 1  # one a write: the kill lands between two

    class Named:  # the refit never embeds; only the stored model name must match
        name, dimension = "fake-hash-64", 64
        def embed(self, texts, *, progress=False):
            raise AssertionError("the refit worker must not embed")

    index = ClusterIndex.open(path, embedder=Named(), config=IndexConfig(progress=False), create=False)
    real = index.store.meta.upsert
    calls = {"parts": 0}

    def upsert(**kw):
        real(**kw)
        if any(str(i).startswith("assign:") for i in kw["ids"]):
            calls["parts"] += 1
            if calls["parts"] == 2:
                print("PAUSED", flush=True)
                time.sleep(600)

    index.store.meta.upsert = upsert
    index.fit(k=4)
    print("DONE", flush=True)
    """
)


def run_worker(script: str, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    path = tmp_path / "worker.py"
    path.write_text(script)
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(path), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_sigkill_while_writing_the_assignment_keeps_the_previous_version(tmp_path: Path) -> None:
    index = build(tmp_path / "kb")
    index.add_texts(["late note about a rocket"], ids=["late-0"])
    before = topics_by_id(index)
    del index
    proc = run_worker(WORKER, tmp_path, str(tmp_path / "kb"))
    try:
        line = wait_for(proc)
        assert line == "PAUSED", f"worker said {line!r}; {proc.stderr.read() if proc.stderr else ''}"
    finally:
        proc.kill()  # SIGKILL
        proc.wait(timeout=60)
    assert proc.returncode == -9

    index = reopen(tmp_path / "kb")
    leftover = index.store.meta.get(where={"$and": [{"kind": "assign"}, {"version": 2}]}, include=[])
    assert len(leftover["ids"]) == 2  # the kill landed mid-write
    assert index.store.active_version() == 1 and [v.version for v in index.versions()] == [1]
    assert topics_by_id(index) == before
    assert index.drift().n_added == 1
    info = index.fit(k=4)  # the next attempt works (a reused number would replace the leftovers)
    assert info.version >= 2 and index.model_info.version == info.version
    parts = index.store.meta.get(where={"$and": [{"kind": "assign"}, {"version": info.version}]}, include=[])
    assert len(parts["ids"]) == 1
    assert set(topics_by_id(reopen(tmp_path / "kb"))) == set(before)


REFIT = textwrap.dedent(
    """
    import sys
    from cluster_rag import ClusterIndex, IndexConfig

    class Named:
        name, dimension = "fake-hash-64", 64
        def embed(self, texts, *, progress=False):
            raise AssertionError("the refit worker must not embed")

    cfg = IndexConfig(progress=False, collection=sys.argv[2])
    index = ClusterIndex.connect(sys.argv[1], embedder=Named(), config=cfg, create=False)
    print("FITTED", index.fit(k=4).version, flush=True)
    """
)


def test_a_second_process_refit_is_seen_through_a_server(chroma_server: str, tmp_path: Path) -> None:
    """Two clients of one ``chroma run`` server (embedded Chroma is one process per folder):
    no snapshot file, so vectors come from the server by id; a refit by the other process is
    seen (after ``refresh()`` at the latest)."""
    cfg = CFG.with_(collection="stored_refit")
    index = ClusterIndex.connect(chroma_server, embedder=FakeEmbedder(), config=cfg)
    rng = np.random.default_rng(0)
    for name, words in TOPICS.items():
        texts = [" ".join(rng.choice(words.split(), size=6)) + f" {name} {i}" for i in range(30)]
        index.add_texts(texts, ids=[f"{name}-{i}" for i in range(30)])
    index.fit(k=3)
    assert snapshots.snapshot_folder(index.store) is None
    before = topics_by_id(index)
    again = ClusterIndex.connect(chroma_server, embedder=FakeEmbedder(), config=cfg, create=False)
    assert topics_by_id(again) == before  # a fresh client: assignment + vectors by id

    proc = run_worker(REFIT, tmp_path, chroma_server, "stored_refit")
    line = wait_for(proc)
    assert line == "FITTED 2", f"worker said {line!r}; {proc.stderr.read() if proc.stderr else ''}"
    proc.wait(timeout=60)
    index.refresh()
    assert index.model_info.version == 2 and index.model.k == 4
    fresh = ClusterIndex.connect(chroma_server, embedder=FakeEmbedder(), config=cfg, create=False)
    assert topics_by_id(index) == topics_by_id(fresh)
