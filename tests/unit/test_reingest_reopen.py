"""An edited file re-ingested after a fit: a new process sees the new text's vector and counts the
chunk as added since the fit (the stored assignment still names its id; issue 12 item 3)."""

from __future__ import annotations

from pathlib import Path

from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.ingest import sync_files
from tests.fixtures import FakeEmbedder

CFG = IndexConfig(progress=False)


def test_reopened_index_uses_the_edited_chunks_new_vector(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"s{i}.txt").write_text(f"rocket launch number {i} reached orbit")
        (docs / f"p{i}.txt").write_text(f"bake pizza number {i} in an oven")
    index = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)
    sync_files(index, [docs])
    index.fit(k=2)
    edited = docs / "s0.txt"
    edited.write_text("the submarine dived under the arctic ice")
    report = sync_files(index, [docs])
    assert report.counts()["updated"] == 1 and index.drift().n_added == 1
    chunk = f"{edited.as_posix()}#0"
    for reader in (index, ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG, create=False)):
        assert reader.drift().n_added == 1 and reader.info()["added_since_fit"] == 1
        vector = reader.embed_query("the submarine dived under the arctic ice")
        top = reader.search_by_vector(vector, k=1, n_probe=2)[0]
        assert top.id == chunk and top.score > 0.999  # the new text's vector, not the fitted one
        assert len(reader) == 12 and sum(t.size for t in reader.topics()) == 12
