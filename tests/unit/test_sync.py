"""Re-ingest that updates (issue 12 item 3) and loader errors (item 8): real Chroma, fake embedder."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pytest

from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.errors import DuplicateIdError, StoreNotFoundError, UnsupportedFileError
from cluster_rag.ingest import load_chunks, sync_files
from tests.fixtures import FakeEmbedder


def _index(tmp_path: Path, embedder: FakeEmbedder) -> ClusterIndex:
    return ClusterIndex.open(tmp_path / "kb", embedder=embedder, config=IndexConfig(progress=False))


def _texts(index: ClusterIndex) -> dict[str, str]:
    out: dict[str, str] = {}
    for page in index.store.iter_all(include=["documents"]):
        out.update(zip(page["ids"], page["documents"], strict=True))
    return out


def test_unchanged_skipped_changed_replaced_gone_removed_only_with_flag(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("apples are red fruit", encoding="utf-8")
    (docs / "b.md").write_text("bananas are yellow", encoding="utf-8")
    (docs / "c.txt").write_text("cherries are small", encoding="utf-8")
    index = _index(tmp_path, embedder)
    a, b, c = (f"{(docs / n).as_posix()}#0" for n in ("a.txt", "b.md", "c.txt"))

    first = sync_files(index, [docs])
    assert sorted(first.added) == sorted([a, b, c]) and first.counts()["unchanged"] == 0
    embedded = embedder.texts_embedded

    again = sync_files(index, [docs])
    assert again.counts() == {"added": 0, "updated": 0, "unchanged": 3, "deleted": 0}
    assert not again.changed and embedder.texts_embedded == embedded  # nothing embedded

    (docs / "a.txt").write_text("apples are green now", encoding="utf-8")
    (docs / "c.txt").unlink()
    edited = sync_files(index, [docs])
    assert edited.updated == [a] and edited.added == [] and edited.deleted == []
    assert edited.missing_sources == [(docs / "c.txt").as_posix()]
    assert _texts(index)[a] == "apples are green now" and c in _texts(index)  # kept without the flag

    removed = sync_files(index, [docs], delete_missing=True)
    assert removed.deleted == [c] and removed.deleted_sources == [(docs / "c.txt").as_posix()]
    assert sorted(_texts(index)) == sorted([a, b]) and len(index) == 2
    assert "added 0 chunks, updated 0, unchanged 2, deleted 1 (1 file(s) gone)" in removed.summary()


def test_a_file_that_shrank_loses_its_extra_chunks_and_other_folders_are_untouched(tmp_path: Path) -> None:
    config = IndexConfig(progress=False, chunk_size=40, chunk_overlap=0)
    index = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=config)
    docs, other = tmp_path / "docs", tmp_path / "other"
    docs.mkdir()
    other.mkdir()
    long = docs / "long.txt"
    long.write_text("\n\n".join(f"paragraph number {i} about lamps" for i in range(4)), encoding="utf-8")
    (other / "keep.txt").write_text("an unrelated note", encoding="utf-8")
    sync_files(index, [docs, other])
    assert len(index) == 5
    long.write_text("paragraph number 0 about lamps", encoding="utf-8")
    report = sync_files(index, [docs], delete_missing=True)
    assert report.unchanged == [f"{long.as_posix()}#0"]
    assert report.deleted == [f"{long.as_posix()}#{i}" for i in (1, 2, 3)]
    assert f"{(other / 'keep.txt').as_posix()}#0" in _texts(index)  # not under the synced folder


def test_jsonl_records_are_matched_by_id_and_hash(tmp_path: Path) -> None:
    index = _index(tmp_path, FakeEmbedder())
    data = tmp_path / "rows.jsonl"
    rows = [{"id": f"r{i}", "text": f"ticket {i} about cards"} for i in range(4)]
    data.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    sync_files(index, [data])
    rows[1]["text"] = "ticket 1 is now about fees"
    del rows[3]
    data.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    report = sync_files(index, [data])
    assert report.counts() == {"added": 0, "updated": 1, "unchanged": 2, "deleted": 1}
    assert report.updated == ["r1"] and report.deleted == ["r3"]
    assert _texts(index)["r1"] == "ticket 1 is now about fees"


def test_sync_after_fit_keeps_search_consistent(tmp_path: Path) -> None:
    index = _index(tmp_path, FakeEmbedder())
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"s{i}.txt").write_text(f"rocket launch number {i} reached orbit", encoding="utf-8")
        (docs / f"p{i}.txt").write_text(f"bake pizza number {i} in an oven", encoding="utf-8")
    sync_files(index, [docs])
    index.fit(k=2)
    (docs / "s0.txt").write_text("the submarine dived under the ice", encoding="utf-8")
    (docs / "p5.txt").unlink()
    report = sync_files(index, [docs], delete_missing=True)
    assert report.counts()["updated"] == 1 and report.counts()["deleted"] == 1
    hits = index.search("submarine under ice", k=12)
    ids = [h.id for h in hits]
    assert ids[0] == f"{(docs / 's0.txt').as_posix()}#0" and hits[0].text.startswith("the submarine")
    assert f"{(docs / 'p5.txt').as_posix()}#0" not in ids and len(ids) == 11


def test_missing_path_raises_without_the_flag_and_is_removed_with_it(tmp_path: Path) -> None:
    index = _index(tmp_path, FakeEmbedder())
    note = tmp_path / "note.txt"
    note.write_text("a lone note", encoding="utf-8")
    sync_files(index, [note])
    note.unlink()
    with pytest.raises(StoreNotFoundError, match="does not exist"):
        sync_files(index, [note])
    report = sync_files(index, [note], delete_missing=True)
    assert report.deleted == [f"{note.as_posix()}#0"] and len(index) == 0


def test_duplicate_record_ids_write_nothing(tmp_path: Path) -> None:
    index = _index(tmp_path, FakeEmbedder())
    data = tmp_path / "dup.jsonl"
    data.write_text('{"id": "x", "text": "one"}\n{"id": "x", "text": "two"}\n', encoding="utf-8")
    with pytest.raises(DuplicateIdError, match="'x'"):
        sync_files(index, [data])
    assert len(index) == 0


def test_gzip_jsonl_and_csv(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(b'{"id": "g1", "text": "zipped line"}\n'))
    buf = io.StringIO()
    csv.writer(buf).writerows([["id", "text", "lang"], ["c1", "zipped row", "en"]])
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(buf.getvalue().encode()))
    (tmp_path / "skip.txt.gz").write_bytes(gzip.compress(b"not a supported suffix"))
    chunks = {c.id: c for c in load_chunks([tmp_path])}
    assert chunks["g1"].text == "zipped line" and chunks["c1"].metadata["lang"] == "en"
    assert len(chunks) == 2
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"plain text, not gzip")
    with pytest.raises(UnsupportedFileError, match="not a valid gzip"):
        load_chunks([bad])


def test_wrong_text_field_names_the_fields_found(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"id": 1, "body": "x", "lang": "en"}\n{"id": 2, "body": "y"}\n', encoding="utf-8")
    with pytest.raises(UnsupportedFileError, match=r"text field 'text'; fields found: 'body', 'id', 'lang'"):
        load_chunks([data])
    assert [c.text for c in load_chunks([data], text_field="body")] == ["x", "y"]
    data.write_text('{"id": 1, "text": "  "}\n', encoding="utf-8")  # the field exists, just empty
    assert load_chunks([data]) == []
