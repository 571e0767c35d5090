"""The CLI's side of issue 16: bad filters and damaged stores end with exit status 2 and one
``cluster-rag: error:`` line on stderr (no traceback, no Chroma wording)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.cli import main
from tests.fixtures import FakeEmbedder


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "kb"
    index = ClusterIndex.open(path, embedder=FakeEmbedder(), config=IndexConfig(progress=False))
    index.add_texts([f"dog cat text {i}" for i in range(30)] + [f"rocket moon text {i}" for i in range(30)])
    index.fit(k=2)
    return path


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cluster-rag: error:"), err
    assert "Traceback" not in err[0] and "Expected" not in err[0]
    return err[0]


@pytest.mark.parametrize("where", ['{"$bogus": 1}', '{"topic": {"$in": []}}', '{"topic": ["a", "b"]}', "{}"])
def test_bad_where_is_one_line(store: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    argv = ["search", "dog", "--path", str(store), "--model", "fake-hash-64", "--where", where, "--quiet"]
    line = one_error_line(capsys, argv)
    assert "where" in line


def test_damaged_store_is_one_line_naming_repair(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chromadb.api.client import SharedSystemClient

    index = ClusterIndex.open(store, embedder=FakeEmbedder(), config=IndexConfig(progress=False))
    index.add_texts([f"pasta pizza text {i}" for i in range(1500)])  # past Chroma's in-log threshold
    del index
    SharedSystemClient.clear_system_cache()  # the writer is gone: its files are flushed
    folders = [d for d in store.iterdir() if d.is_dir() and (d / "header.bin").exists()]
    for folder in folders:
        (folder / "header.bin").write_bytes(b"\xff" * 100)
    SharedSystemClient.clear_system_cache()  # as a fresh process would
    line = one_error_line(capsys, ["topics", "--path", str(store), "--model", "fake-hash-64"])
    assert "cluster-rag repair" in line
