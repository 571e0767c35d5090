"""The living index for real: drift on Banking77 with held-out intents (real model vectors),
a refit SIGKILLed at several points in a real subprocess, and the `drift` / `cluster` CLI."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cluster_rag import ClusterIndex, IndexConfig, SentenceTransformerEmbedder
from cluster_rag.store import added_key, version_key
from tests.fixtures import FakeEmbedder

pytestmark = pytest.mark.integration


# drift on real data ---------------------------------------------------------------------------
def banking_split(index: ClusterIndex) -> dict[str, tuple[list[str], list[str], np.ndarray, list[dict]]]:
    """The fitted 400-row sample (20 intents x 20) split into fit / seen / unseen parts.

    fit: 12 rows of each of 15 intents; seen: the other 8 rows of those intents;
    unseen: all 20 rows of 5 held-out intents (chosen with a fixed seed).
    """
    ids, vectors, metas = index.store.load_all()
    texts = index.store.get(ids, include=["documents"])["documents"]
    labels = [m["label"] for m in metas]
    intents = sorted(set(labels))
    held = set(np.random.default_rng(0).choice(intents, size=5, replace=False).tolist())
    parts: dict[str, list[int]] = {"fit": [], "seen": [], "unseen": []}
    for intent in intents:
        rows = sorted((i for i, lab in enumerate(labels) if lab == intent), key=lambda i: ids[i])
        if intent in held:
            parts["unseen"] += rows
        else:
            parts["fit"] += rows[:12]
            parts["seen"] += rows[12:]
    return {
        name: (
            [ids[i] for i in rows],
            [texts[i] for i in rows],
            vectors[rows],
            [{"label": labels[i]} for i in rows],
        )
        for name, rows in parts.items()
    }


def add_part(index: ClusterIndex, part: tuple[list[str], list[str], np.ndarray, list[dict]]) -> None:
    ids, texts, vectors, metas = part
    index.add_embeddings(texts, vectors, metas, ids)


def test_drift_flags_held_out_intents_not_more_of_the_same(
    demo_index: ClusterIndex,
    embedder: SentenceTransformerEmbedder,
    quiet_config: IndexConfig,
    tmp_path: Path,
) -> None:
    parts = banking_split(demo_index)
    assert [len(parts[p][0]) for p in ("fit", "seen", "unseen")] == [180, 120, 100]
    index = ClusterIndex.open(tmp_path / "drift", embedder=embedder, config=quiet_config)
    add_part(index, parts["fit"])
    index.fit(k=15)
    assert index.drift().n_added == 0

    add_part(index, parts["seen"])  # 8 more rows of each fitted intent
    seen = index.drift()
    assert seen.n_added == 120 and seen.recommendation == "ok", seen
    assert seen.outlier_share < seen.thresholds.partial_outlier_share and seen.js_divergence < 0.01

    add_part(index, parts["unseen"])  # 5 intents the model never saw
    unseen = index.drift()
    assert unseen.n_added == 220 and unseen.recommendation == "refit", unseen
    assert unseen.outlier_share > seen.outlier_share + 0.15
    assert unseen.inertia_ratio > seen.inertia_ratio

    # the refit gives the held-out intents their own topics and keeps most old ids
    index.fit(k=20)
    report = index.refit_report()
    assert report is not None and report.previous_version == 1
    assert len(report.kept) >= 12
    old_ids = set(range(15))
    hits = index.get(parts["unseen"][0])
    by_intent: dict[str, list[int]] = {}
    for h in hits:
        by_intent.setdefault(h.metadata["label"], []).append(h.topic_id)
    majority = {intent: max(set(t), key=t.count) for intent, t in by_intent.items()}
    assert sum(tid not in old_ids for tid in majority.values()) >= 3, (majority, report)
    assert index.drift().n_added == 0

    # the CLI on a copy: `drift` as JSON, `cluster` prints the refit report
    del index
    kb = tmp_path / "kb-cli"
    shutil.copytree(tmp_path / "drift", kb)
    add_more = ClusterIndex.open(kb, embedder=embedder, config=quiet_config, create=False)
    assert add_more.model_info.version == 2
    del add_more
    out = cli("drift", "--path", str(kb), "--json", cwd=tmp_path)
    data = json.loads(out)
    assert data["version"] == 2 and data["n_added"] == 0 and data["recommendation"] == "ok"
    text = cli("cluster", "--path", str(kb), "--k", "20", "-q", cwd=tmp_path)
    assert "model version 3" in text and "topics vs version 2:" in text and "kept      20" in text


def cli(*args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "cluster_rag.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# SIGKILL mid-refit ------------------------------------------------------------------------------
WORKER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from sklearn.cluster import KMeans
    from cluster_rag import ClusterIndex, IndexConfig
    from cluster_rag.store import snapshots

    path, phase = sys.argv[1], sys.argv[2]

    class Named:  # the refit never embeds; only the stored model name must match
        name, dimension = "fake-hash-64", 64
        def embed(self, texts, *, progress=False):
            raise AssertionError("the refit worker must not embed")

    def pause(tag):
        if tag == phase:
            print("PAUSED", tag, flush=True)
            time.sleep(600)

    class PausingKMeans:
        def fit(self, X):
            pause("clustering")
            km = KMeans(4, n_init=1, random_state=0).fit(X)
            self.cluster_centers_, self.labels_ = km.cluster_centers_, km.labels_
            return self

    config = IndexConfig(progress=False, keep_versions=1 if phase == "prune" else 3)
    index = ClusterIndex.open(path, embedder=Named(), config=config, create=False)
    store = index.store
    snapshots.PART_ROWS = 25  # the assignment in several parts
    snapshots.PARTS_PER_WRITE = 2  # written in several upserts: the kill lands between two
    calls = {"parts": 0}
    real_meta_upsert, real_upsert = store.meta.upsert, store.centroids.upsert
    real_set_active, real_drop = store.set_active, store.drop_assignments

    def meta_upsert(**kw):
        real_meta_upsert(**kw)
        if any(str(i).startswith("assign:") for i in kw["ids"]):
            calls["parts"] += 1
            if calls["parts"] == 2:
                pause("assignments")

    def upsert(**kw):
        real_upsert(**kw)
        pause("centroids")

    def set_active(version, **kw):
        pause("switch")
        real_set_active(version, **kw)

    def drop(version):
        pause("prune")
        real_drop(version)

    store.meta.upsert, store.centroids.upsert = meta_upsert, upsert
    store.set_active, store.drop_assignments = set_active, drop
    index.fit(clusterer=PausingKMeans())
    print("DONE", flush=True)
    """
)

TOPICS = {
    "pets": "dog cat puppy kitten leash bark meow vet",
    "space": "rocket orbit moon mars launch astronaut nasa planet",
    "food": "pasta pizza recipe oven garlic tomato cheese bake",
    "music": "guitar drum melody chord piano concert song bass",
}


@pytest.fixture(scope="module")
def fitted_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 chunks, fitted (v1, k=3), then 10 more added since the fit."""
    path = tmp_path_factory.mktemp("kill") / "base"
    index = ClusterIndex.open(path, embedder=FakeEmbedder(), config=IndexConfig(progress=False))
    rng = np.random.default_rng(0)
    for name, words in TOPICS.items():
        texts = [" ".join(rng.choice(words.split(), size=6)) + f" {name} {i}" for i in range(30)]
        index.add_texts(texts, ids=[f"{name}-{i}" for i in range(30)])
    index.fit(k=3)
    index.add_texts(
        [f"late note number {i} about {name}" for i, name in enumerate(TOPICS)],
        ids=[f"late-{i}" for i in range(4)],
    )
    del index
    return path


def wait_for(proc: subprocess.Popen[str], timeout: float = 180) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    # a selector, not select.select: a test process holding Chroma clients of many earlier tests has
    # file descriptors past select()'s limit of 1024 ("filedescriptor out of range")
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=1.0):
                return proc.stdout.readline().strip()
            if proc.poll() is not None:
                break
    return ""


def every_chunk_found(index: ClusterIndex) -> bool:
    """Every stored chunk is in the active version's routing index: an exhaustive search
    (all clusters probed) with its own vector returns it first, with its stored topic."""
    ids, vectors, metas = index.store.load_all()
    state = index.model
    key = version_key(state.info.version)
    for cid, vec, meta in zip(ids, vectors, metas, strict=True):
        hits = index.search_by_vector(vec, k=1, n_probe=state.info.k)
        if not hits or hits[0].score < 0.9999 or hits[0].id != cid:
            return False
        if key in meta and hits[0].topic_id != state.topics[meta[key]].id:
            return False
    return len(ids) == 124 == len(state.backend)


@pytest.mark.parametrize(
    ("phase", "active", "versions"),
    [
        ("clustering", 1, [1]),  # before any write
        ("assignments", 1, [1]),  # 2 of v2's 5 assignment parts written, no centroids or payload
        ("centroids", 1, [1]),  # centroids of v2 written, payload not
        ("switch", 1, [1, 2]),  # v2 complete but never made active
        ("prune", 2, [2]),  # after the switch: v2 active, v1 being pruned
    ],
)
def test_sigkill_mid_refit_leaves_a_complete_active_version(
    fitted_base: Path, tmp_path: Path, phase: str, active: int, versions: list[int]
) -> None:
    path = tmp_path / "kb"
    shutil.copytree(fitted_base, path)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), phase],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = wait_for(proc)
        assert line == f"PAUSED {phase}", (
            f"worker said {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        )
    finally:
        proc.kill()  # SIGKILL
        proc.wait(timeout=60)
    assert proc.returncode == -9

    index = ClusterIndex.open(path, embedder=FakeEmbedder(), config=IndexConfig(progress=False), create=False)
    assert index.store.active_version() == active and index.model_info.version == active
    assert [v.version for v in index.versions()] == versions
    # the kill really landed mid-way
    parts = index.store.meta.get(where={"$and": [{"kind": "assign"}, {"version": 2}]}, include=[])
    partial = len(parts["ids"])
    v2_centroids = len(index.store.centroids.get(where={"version": 2}, include=[])["ids"])
    # 5 parts, written 2 an upsert: the kill after the second upsert leaves 4
    expect = {"clustering": (0, 0), "assignments": (4, 0), "centroids": (5, 4), "switch": (5, 4)}
    if phase in expect:
        assert (partial, v2_centroids) == expect[phase]
    assert every_chunk_found(index)
    if active == 1:
        assert index.drift().n_added == 4  # the bookkeeping of v1 survived

    info = index.fit(k=4)  # a new refit works and writes no chunk metadata
    # version numbers are claimed before any write and never reused, so the killed fit's number stays taken
    assert info.version > max(versions) and index.model_info.version == info.version
    report = index.refit_report()
    assert report is not None and report.previous_version == active
    metas = index.store.load_all()[2]
    assert not any(version_key(info.version) in m or added_key(info.version) in m for m in metas)
    assert every_chunk_found(index)
