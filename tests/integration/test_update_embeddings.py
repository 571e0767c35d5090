"""``ClusterIndex.update_embeddings``: Chroma's ``update`` semantics (overwrite stored ids in one
journaled write), topic sizes kept, an unknown id refused with nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster_rag import ClusterIndex, IndexConfig, UnknownDocumentError
from tests.fixtures import FakeEmbedder

pytestmark = pytest.mark.integration

TEXTS = [f"rocket launch {i} reached orbit" for i in range(30)] + [
    f"bake pizza {i} in the oven" for i in range(30)
]


def _index(tmp_path: Path) -> tuple[ClusterIndex, FakeEmbedder]:
    embedder = FakeEmbedder()
    index = ClusterIndex.open(tmp_path / "kb", embedder=embedder, config=IndexConfig(progress=False))
    index.add_texts(TEXTS, ids=[f"c{i}" for i in range(len(TEXTS))])
    index.fit(k=2)
    return index, embedder


def test_update_overwrites_in_place_and_keeps_sizes(tmp_path: Path) -> None:
    index, embedder = _index(tmp_path)
    new_text = "bake pizza 99 with cheese in the oven"
    index.update_embeddings(["c0"], [new_text], embedder.embed([new_text]), [{"edited": True}])
    (hit,) = index.get(["c0"])
    assert hit.text == new_text and hit.metadata.get("edited") is True
    assert len(index) == len(TEXTS)
    assert sum(t.size for t in index.topics()) == len(TEXTS)
    pizza = index.search("bake pizza 99 with cheese in the oven", k=1)
    assert pizza[0].id == "c0"


def test_update_of_an_unknown_id_writes_nothing(tmp_path: Path) -> None:
    index, embedder = _index(tmp_path)
    before = [h.text for h in index.get(["c1"])]
    with pytest.raises(UnknownDocumentError, match="nope"):
        index.update_embeddings(["c1", "nope"], ["x", "y"], embedder.embed(["x", "y"]))
    assert [h.text for h in index.get(["c1"])] == before
    assert len(index) == len(TEXTS)


def test_keyword_search_sees_the_new_text(tmp_path: Path) -> None:
    index, embedder = _index(tmp_path)
    assert "c0" not in {h.id for h in index.search("zanzibar", k=5, mode="keyword")}  # BM25 built here
    new_text = "rocket launch to zanzibar"
    index.update_embeddings(["c0"], [new_text], embedder.embed([new_text]))
    assert [h.id for h in index.search("zanzibar", k=1, mode="keyword")] == ["c0"]
    assert "c1" in {h.id for h in index.search("rocket launch 1 reached orbit", k=5, mode="keyword")}
