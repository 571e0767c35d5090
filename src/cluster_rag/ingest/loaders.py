"""Read files into :class:`~cluster_rag.types.Chunk` objects.

Supported: ``.txt`` and ``.md`` (whole file, chunked), ``.jsonl`` (one record a
line, text in ``text_field``, other scalar fields become metadata) and ``.csv``
(same, one row a record); ``.jsonl.gz`` and ``.csv.gz`` are read through gzip.
Directories are walked recursively in sorted order, so the same tree always gives
the same chunk ids.

A ``text_field`` that no record of a JSONL/CSV file carries is an error naming the
fields found (a typo must not ingest nothing and exit successfully).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..chunk_ids import chunk_id
from ..errors import StoreNotFoundError, UnsupportedFileError
from ..types import Chunk
from .chunker import chunk_text

__all__ = ["SUPPORTED_SUFFIXES", "file_kind", "iter_files", "load_chunks"]

SUPPORTED_SUFFIXES = (".txt", ".md", ".jsonl", ".csv", ".jsonl.gz", ".csv.gz")


def file_kind(path: Path) -> str | None:
    """``"text"`` (.txt/.md), ``"jsonl"``, ``"csv"`` (plain or ``.gz``), or ``None`` if unsupported."""
    name = path.name.lower()
    if name.endswith((".txt", ".md")):
        return "text"
    for kind in ("jsonl", "csv"):
        if name.endswith((f".{kind}", f".{kind}.gz")):
            return kind
    return None


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and directories into supported files, sorted, each once.

    Raises:
        StoreNotFoundError: a path does not exist.
        UnsupportedFileError: a file named explicitly has an unsupported suffix
            (inside directories such files are skipped).
    """
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise StoreNotFoundError(f"path {str(path)!r} does not exist; check the spelling")
        if path.is_dir():
            candidates = sorted(
                p for p in path.rglob("*") if p.is_file() and file_kind(p) is not None
            )
        else:
            if file_kind(path) is None:
                raise UnsupportedFileError(
                    f"{str(path)!r} has unsupported type {path.suffix or '(none)'!r}; "
                    f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
                )
            candidates = [path]
        for p in candidates:
            if p not in seen:
                seen.add(p)
                yield p


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise UnsupportedFileError(
                f"{str(path)!r} is not a valid gzip file ({exc}); recompress it or drop the .gz suffix"
            ) from exc
    if b"\x00" in data[:8192]:
        raise UnsupportedFileError(f"{str(path)!r} looks binary (NUL bytes); only UTF-8 text is read")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnsupportedFileError(
            f"{str(path)!r} is not valid UTF-8 (byte {exc.start}); re-encode it as UTF-8"
        ) from exc


def _scalar_metadata(record: dict[str, Any], skip: set[str]) -> dict[str, Any]:
    return {
        k: v
        for k, v in record.items()
        if k not in skip and isinstance(v, (str, int, float, bool)) and not k.startswith("cr_")
    }


def load_chunks(
    paths: Iterable[str | Path],
    *,
    chunk_size: int = 1000,
    overlap: int = 100,
    text_field: str = "text",
    id_field: str = "id",
) -> list[Chunk]:
    """Load and chunk every supported file under ``paths``.

    Chunk ids are ``"<source>#<n>"`` for text files and ``"<record id>"`` (or
    ``"<record id>#<n>"`` when a record spans several chunks) for JSONL/CSV; a
    record without an id uses ``"<source>:<line>"``. Metadata always carries
    ``source`` (the file path) and ``chunk_index``.

    Raises:
        StoreNotFoundError, UnsupportedFileError: see :func:`iter_files`; also a
            JSONL line that is not an object, a CSV without ``text_field``, or a
            JSONL file none of whose records has ``text_field`` (the message lists
            the fields found).
    """
    chunks: list[Chunk] = []
    for path in iter_files(paths):
        source = path.as_posix()
        kind = file_kind(path)
        text = _read_text(path)
        if kind == "text":
            for i, piece in enumerate(chunk_text(text, chunk_size=chunk_size, overlap=overlap)):
                chunks.append(Chunk(chunk_id(source, i), piece, {"source": source, "chunk_index": i}))
            continue
        fields_seen: dict[str, None] = {}
        has_field = False
        for line_no, record in _records(path, text, kind or "", text_field):
            fields_seen.update(dict.fromkeys(record))
            has_field = has_field or text_field in record
            body = record.get(text_field)
            if not isinstance(body, str) or not body.strip():
                continue  # empty records carry nothing to search
            base = str(record[id_field]) if record.get(id_field) not in (None, "") else f"{source}:{line_no}"
            meta = _scalar_metadata(record, {text_field, id_field})
            pieces = chunk_text(body, chunk_size=chunk_size, overlap=overlap)
            for i, piece in enumerate(pieces):
                cid = base if len(pieces) == 1 else chunk_id(base, i)
                chunks.append(Chunk(cid, piece, {**meta, "source": source, "chunk_index": i}))
        if fields_seen and not has_field:
            found = sorted(fields_seen)
            shown = ", ".join(repr(f) for f in found[:20]) + (" ..." if len(found) > 20 else "")
            raise UnsupportedFileError(
                f"no record of {source} has the text field {text_field!r}; fields found: {shown}. "
                "Pass the right one with text_field= / --text-field"
            )
    return chunks


def _records(
    path: Path, text: str, kind: str, text_field: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    if kind == "jsonl":
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UnsupportedFileError(
                    f"{path.as_posix()}:{line_no} is not valid JSON ({exc.msg}); fix or remove the line"
                ) from exc
            if not isinstance(record, dict):
                raise UnsupportedFileError(
                    f"{path.as_posix()}:{line_no} is a JSON {type(record).__name__}, expected an object "
                    f"with a {text_field!r} field"
                )
            yield line_no, record
        return
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or text_field not in reader.fieldnames:
        raise UnsupportedFileError(
            f"{path.as_posix()} has no {text_field!r} column (columns: {reader.fieldnames}); "
            "pass text_field= / --text-field"
        )
    try:
        for line_no, row in enumerate(reader, start=2):
            yield line_no, dict(row)
    except csv.Error as exc:
        raise UnsupportedFileError(
            f"{path.as_posix()}:{reader.line_num} could not be parsed as CSV ({exc}); check its quoting, "
            "or split fields over 131,072 characters"
        ) from None
