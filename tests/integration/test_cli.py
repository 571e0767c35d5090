"""The CLI end to end in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def run(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "cluster_rag.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc


def test_demo_then_commands(tmp_path: Path) -> None:
    demo = run("demo", "--quiet", cwd=tmp_path)
    assert "[3/3] routed search" in demo.stdout and (tmp_path / "cluster-rag-demo").is_dir()
    kb = ["--path", "cluster-rag-demo"]
    topics = json.loads(run("topics", *kb, "--json", cwd=tmp_path).stdout)
    assert len(topics) == 20 and sum(t["size"] for t in topics) == 400
    hits = json.loads(run("search", "I forgot my passcode", *kb, "--k", "3", "--json", cwd=tmp_path).stdout)
    assert len(hits) == 3 and "passcode" in hits[0]["text"].lower()
    table = run("search", "exchange rate", *kb, "--where", '{"label": "exchange_rate"}', cwd=tmp_path).stdout
    assert "score" in table.splitlines()[0]
    info = json.loads(run("info", *kb, "--json", cwd=tmp_path).stdout)
    assert info["chunks"] == 400 and info["k"] == 20
    run("demo", "--quiet", cwd=tmp_path)  # idempotent: nothing new ingested, a new version fitted
    versions = json.loads(run("versions", *kb, "--json", cwd=tmp_path).stdout)
    assert [v["version"] for v in versions] == [1, 2] and versions[1]["active"]
    rolled = json.loads(run("rollback", *kb, "--json", cwd=tmp_path).stdout)
    assert rolled["version"] == 1


def test_ingest_cluster_topics_search(tmp_path: Path) -> None:
    data = tmp_path / "notes.jsonl"
    lines = [{"text": f"the rocket launch number {i} reached orbit"} for i in range(6)]
    lines += [{"text": f"bake the pizza number {i} in a hot oven"} for i in range(6)]
    data.write_text("\n".join(json.dumps(x) for x in lines))
    out = run("ingest", str(data), "--path", "kb", "-q", cwd=tmp_path).stdout
    assert "added 12 chunks" in out
    assert "k=2" in run("cluster", "--path", "kb", "--k", "2", "-q", cwd=tmp_path).stdout
    hits = json.loads(run("search", "space flight", "--path", "kb", "--json", cwd=tmp_path).stdout)
    assert "rocket" in hits[0]["text"]


def test_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    proc = run("topics", "--path", "nowhere", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no index at 'nowhere'" in proc.stderr
    (tmp_path / "one.txt").write_text("just one chunk")
    run("ingest", "one.txt", "--path", "kb", "-q", cwd=tmp_path)
    proc = run("cluster", "--path", "kb", "--k", "5", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "1 chunk" in proc.stderr
    proc = run("search", "x", "--path", "kb", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "cluster-rag cluster" in proc.stderr
    proc = run("ingest", "missing.txt", "--path", "kb", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
