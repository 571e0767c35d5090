"""Opening for reading never creates a store (issue 12 item 8), in the library as in the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster_rag import ClusterIndex, StoreNotFoundError
from tests.fixtures import FakeEmbedder


def test_open_without_create_leaves_a_folder_untouched(tmp_path: Path) -> None:
    folder = tmp_path / "typo"
    with pytest.raises(StoreNotFoundError, match="no index at"):
        ClusterIndex.open(folder, embedder=FakeEmbedder(), create=False)
    assert not folder.exists()
    folder.mkdir()
    with pytest.raises(StoreNotFoundError, match=r"no Chroma store \(chroma.sqlite3\)"):
        ClusterIndex.open(folder, embedder=FakeEmbedder(), create=False)
    assert list(folder.iterdir()) == []


def test_a_missing_collection_names_the_ones_that_exist(tmp_path: Path) -> None:
    index = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), collection="docs")
    index.add_texts(["one text", "another text"])
    with pytest.raises(StoreNotFoundError, match=r"'cluster_rag' does not exist; collections here: \['docs'\]"):
        ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), create=False)
    assert len(ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), collection="docs", create=False)) == 2
