"""Concurrent writers and long-lived readers in separate processes, on an embedded store and on a
``chroma run`` server: two fits at once never share a version number (the loser gets a new
number or ConcurrentWriteError, never a silent replace); two adds of the same ids at once leave
one side's rows and a DuplicateIdError for the other (nothing vanishes); a reader that holds an
index notices another process's refit and rollback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cluster_rag import ClusterIndex, IndexConfig
from tests.fixtures import FakeEmbedder

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CFG = IndexConfig(progress=False, keep_versions=10)
WORDS = "dog cat rocket moon pasta pizza guitar drum leash orbit oven chord".split()

CHILD = r"""
import json, os, sys, time
from pathlib import Path
from cluster_rag import ClusterIndex, IndexConfig
from tests.fixtures import FakeEmbedder

where, collection, op, arg, go = sys.argv[1:6]
cfg = IndexConfig(progress=False, keep_versions=10, collection=collection)
if where.startswith("http"):
    idx = ClusterIndex.connect(where, embedder=FakeEmbedder(), config=cfg, create=False)
else:
    idx = ClusterIndex.open(where, embedder=FakeEmbedder(), config=cfg, create=False)
print("READY", flush=True)
while not Path(go).exists():
    time.sleep(0.005)
try:
    if op == "fit":
        out = {"version": idx.fit(k=int(arg)).version}
    elif op == "add":
        texts = [f"{arg} side text number {i}" for i in range(200)]
        idx.add_texts(texts, ids=[f"same-{i}" for i in range(200)])
        out = {"added": 200}
    elif op == "refit-loop":
        versions = []
        for i in range(int(arg)):
            versions.append(idx.fit(k=2 + i % 3).version)
            versions.append(idx.rollback().version)
        out = {"versions": versions}
except Exception as exc:
    out = {"error": type(exc).__name__, "message": str(exc)}
print(json.dumps(out), flush=True)
"""


def seed(index: ClusterIndex) -> None:
    rng = np.random.default_rng(0)
    index.add_texts([" ".join(rng.choice(WORDS, 5)) + f" {i}" for i in range(80)])
    index.fit(k=3)


def start(where: str, collection: str, op: str, arg: str, go: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, where, collection, op, arg, str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "READY" in line, (line, proc.stderr.read() if proc.stderr else "")
    return proc


def race(where: str, collection: str, jobs: list[tuple[str, str]], go: Path) -> list[dict[str, Any]]:
    """Start every job, release them at once, return their JSON results."""
    procs = [start(where, collection, op, arg, go) for op, arg in jobs]
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    go.unlink()
    return results


def check_two_fits(index: ClusterIndex, results: list[dict[str, Any]]) -> None:
    versions = [r["version"] for r in results if "version" in r]
    errors = [r for r in results if "error" in r]
    assert all(e["error"] == "ConcurrentWriteError" for e in errors), errors
    assert len(set(versions)) == len(versions), f"two fits reported the same version: {results}"
    index.refresh()
    assert index.model.version in versions
    kept = [v.version for v in index.versions()]
    assert all(v in kept for v in versions)  # nothing silently replaced


def check_same_ids(index: ClusterIndex, results: list[dict[str, Any]]) -> None:
    winners = [r for r in results if "added" in r]
    losers = [r for r in results if "error" in r]
    assert len(winners) == 1 and len(losers) == 1, results
    assert losers[0]["error"] == "DuplicateIdError", losers
    hits = index.get([f"same-{i}" for i in range(200)])
    assert len(hits) == 200
    assert len({h.text.split()[0] for h in hits}) == 1  # all 200 from one side: nothing mixed or lost


def check_reader_follows(
    index: ClusterIndex, where: str, collection: str, go: Path, *, must_switch: bool = True
) -> None:
    first = index.model.version
    assert index.search("dog cat", k=3)  # a long-lived reader: its snapshot is loaded
    proc = start(where, collection, "refit-loop", "2", go)
    go.touch()
    seen = {first}
    errors: list[str] = []
    while proc.poll() is None:
        try:
            seen.add(index.model.version)
            assert index.search("dog cat", k=3)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    go.unlink()
    assert proc.returncode == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert "versions" in result, result
    time.sleep(2.1)  # ACTIVE_CHECK_SECONDS
    final = index.model.version
    assert errors == [], errors[:3]
    assert index.search("dog cat", k=3)
    if must_switch:
        assert final == result["versions"][-1]  # the long-lived reader switched without refresh()
        index.refresh()  # and refresh() is safe afterwards
        assert index.model.version == final


def test_embedded_two_fits_same_ids_and_a_reader(tmp_path: Path) -> None:
    """Embedded Chroma keeps vectors in a per-process index, so a second process does not see
    another's new vectors until it reopens: cluster-rag supports one writing process at a time on
    an embedded folder (these races still end cleanly); readers that follow writers live use a
    server (below)."""
    path = tmp_path / "kb"
    index = ClusterIndex.open(path, embedder=FakeEmbedder(), config=CFG)
    seed(index)
    go = tmp_path / "go"
    check_two_fits(index, race(str(path), CFG.collection, [("fit", "3"), ("fit", "4")], go))
    check_same_ids(index, race(str(path), CFG.collection, [("add", "left"), ("add", "right")], go))
    # a reader started after those writes (a fresh process's view) keeps answering while another
    # process refits and rolls back: it switches when it can load the new version, else keeps
    # its snapshot; never an error
    from chromadb.api.client import SharedSystemClient

    del index
    SharedSystemClient.clear_system_cache()
    reader = ClusterIndex.open(path, embedder=FakeEmbedder(), config=CFG, create=False)
    check_reader_follows(reader, str(path), CFG.collection, go, must_switch=False)


@pytest.mark.server
def test_server_two_fits_same_ids_and_a_following_reader(chroma_server: str, tmp_path: Path) -> None:
    collection = f"conc{os.getpid()}"
    cfg = CFG.with_(collection=collection)
    index = ClusterIndex.connect(chroma_server, embedder=FakeEmbedder(), config=cfg)
    seed(index)
    go = tmp_path / "go"
    check_two_fits(index, race(chroma_server, collection, [("fit", "3"), ("fit", "4")], go))
    check_same_ids(index, race(chroma_server, collection, [("add", "left"), ("add", "right")], go))
    check_reader_follows(index, chroma_server, collection, go)


@pytest.mark.server
def test_server_stopped_after_connect_is_a_store_connection_error(tmp_path: Path) -> None:
    from cluster_rag.errors import StoreConnectionError
    from cluster_rag.testing import serve
    from tests.fixtures import _chroma_executable, _free_port

    port = _free_port()
    db = str(tmp_path / "db")
    cmd = [*_chroma_executable(), "run", "--path", db, "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    with serve(cmd, f"{url}/api/v2/heartbeat", tmp_path / "server.log", timeout=60, env=env):
        index = ClusterIndex.connect(url, embedder=FakeEmbedder(), config=CFG)
        seed(index)
    for call in (lambda: index.search("dog"), lambda: len(index), lambda: index.get(["x"]), index.refresh):
        with pytest.raises(StoreConnectionError, match="start the server again"):
            call()
