import json
from pathlib import Path

import pytest

from cluster_rag.errors import StoreNotFoundError, UnsupportedFileError
from cluster_rag.ingest import chunk_text, load_chunks


def test_short_text_is_one_chunk() -> None:
    assert chunk_text("  hello world  ") == ["hello world"]
    assert chunk_text("   \n ") == []


def test_long_text_respects_size_and_overlaps() -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 60 for i in range(10))
    chunks = chunk_text(text, chunk_size=200, overlap=40)
    assert len(chunks) > 10
    assert all(len(c) <= 200 for c in chunks)
    # every word survives
    assert sum(c.count("Paragraph") for c in chunks) >= 10
    # consecutive chunks share trailing context
    assert any(chunks[i][-10:].split()[-1] in chunks[i + 1] for i in range(len(chunks) - 1))


def test_unbreakable_text_is_cut_hard() -> None:
    chunks = chunk_text("x" * 450, chunk_size=100, overlap=0)
    assert [len(c) for c in chunks] == [100, 100, 100, 100, 50]


def test_loaders_txt_md_jsonl_csv(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha text", encoding="utf-8")
    (tmp_path / "b.md").write_text("# Title\n\nbody", encoding="utf-8")
    (tmp_path / "c.jsonl").write_text(
        json.dumps({"id": "r1", "text": "first", "lang": "en", "nested": {"x": 1}}) + "\n\n"
        + json.dumps({"text": "second"}) + "\n" + json.dumps({"text": "  "}) + "\n",
        encoding="utf-8",
    )
    (tmp_path / "d.csv").write_text("text,label\nhello,greet\nbye,part\n", encoding="utf-8")
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    chunks = load_chunks([tmp_path])
    by_id = {c.id: c for c in chunks}
    assert by_id[f"{(tmp_path / 'a.txt').as_posix()}#0"].text == "alpha text"
    assert by_id["r1"].metadata["lang"] == "en"
    assert "nested" not in by_id["r1"].metadata
    assert f"{(tmp_path / 'c.jsonl').as_posix()}:3" in by_id  # record without id: source:line
    assert by_id[f"{(tmp_path / 'd.csv').as_posix()}:2"].metadata["label"] == "greet"
    assert all("source" in c.metadata for c in chunks)
    assert len(chunks) == 6
    assert [c.id for c in load_chunks([tmp_path])] == [c.id for c in chunks]  # deterministic


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="does not exist"):
        load_chunks([tmp_path / "nope"])


def test_unsupported_suffix(tmp_path: Path) -> None:
    f = tmp_path / "x.pdf"
    f.write_bytes(b"%PDF")
    with pytest.raises(UnsupportedFileError, match=r"\.pdf"):
        load_chunks([f])


def test_undecodable_and_binary(tmp_path: Path) -> None:
    bad = tmp_path / "latin.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(UnsupportedFileError, match="UTF-8"):
        load_chunks([bad])
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"ab\x00cd")
    with pytest.raises(UnsupportedFileError, match="binary"):
        load_chunks([binary])


def test_bad_jsonl_and_csv(tmp_path: Path) -> None:
    j = tmp_path / "bad.jsonl"
    j.write_text('{"text": "ok"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(UnsupportedFileError, match=r"bad.jsonl:2"):
        load_chunks([j])
    j.write_text('{"text": "ok"}\n{broken\n', encoding="utf-8")
    with pytest.raises(UnsupportedFileError, match="not valid JSON"):
        load_chunks([j])
    c = tmp_path / "bad.csv"
    c.write_text("body\nhello\n", encoding="utf-8")
    with pytest.raises(UnsupportedFileError, match="no 'text' column"):
        load_chunks([c])
    assert load_chunks([c], text_field="body")[0].text == "hello"
