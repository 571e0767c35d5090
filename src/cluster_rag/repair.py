"""Open-time checks and repair: finish or undo writes a killed process left, detect a store
that cannot be read, and rebuild it (``cluster-rag repair``).

:func:`on_open` runs on every open (:func:`cluster_rag.connection.open_store`): it reads a
little of every part of the store (:meth:`ChromaStore.probe`) so a damaged one fails at once
with :class:`~cluster_rag.errors.StoreCorruptedError` naming the repair command, then
recovers the journal (:func:`recover_journal`). :func:`rebuild` copies every record Chroma
can still read (ids, texts, metadata; vectors, or the texts re-embedded when the vector
segment is unreadable) into a fresh collection and swaps it in by name.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import journal
from .errors import StoreCorruptedError
from .guard import translate
from .store import ChromaStore, version_key
from .store.chroma_store import owner_alive

__all__ = ["RepairReport", "damaged_segments", "on_open", "rebuild", "recover_journal", "repair_store"]

log = logging.getLogger("cluster_rag")
_REBUILD_SUFFIX = "__rebuild"


@dataclass
class RepairReport:
    """What :func:`rebuild` / :func:`recover_journal` did.

    Attributes:
        messages: one line per action, for the user.
        chunks: records copied into the rebuilt collection.
        reembedded: of those, how many had their vector recomputed from the text.
    """

    messages: list[str] = field(default_factory=list)
    chunks: int = 0
    reembedded: int = 0


#: a vector segment whose upper-layer link file is this much larger than its layer-0 data (plus
#: :data:`LINK_SLACK_BYTES`) was half-written by a killed process: in an HNSW graph the upper
#: layers hold about 1/M of the links of layer 0, and Chroma's native code crashes the whole
#: process (SIGSEGV) when it loads such a file, before any Python error can be raised
LINK_RATIO_LIMIT = 64
LINK_SLACK_BYTES = 1 << 30


def _persist_folder(client: Any) -> Path | None:
    """The folder of an embedded (``PersistentClient``) store, else ``None``."""
    try:
        settings = client.get_settings()
    except Exception:
        return None
    if not getattr(settings, "is_persistent", False) or not settings.persist_directory:
        return None
    return Path(settings.persist_directory)


def damaged_segments(folder: Path) -> list[Path]:
    """Vector-segment folders of the embedded store at ``folder`` that Chroma cannot load safely:
    an upper-layer link file (``link_lists.bin``) more than :data:`LINK_RATIO_LIMIT` times its
    layer-0 data (``data_level0.bin``) plus 1 GiB — what a SIGKILL in the middle of Chroma's index
    write leaves (seen at 81 GB and 1.2 TB, sparse). Checked from file sizes only."""
    found: list[Path] = []
    live = _vector_segments(folder)  # a deleted collection's folder may stay on disk: not ours to judge
    def ours(p: Path) -> bool:
        return p.name in live if live is not None else ".damaged-" not in p.name

    segments = (p for p in folder.iterdir() if p.is_dir() and ours(p))
    for segment in sorted(p for p in segments if (p / "header.bin").is_file()):
        links, level0 = segment / "link_lists.bin", segment / "data_level0.bin"
        if not links.is_file():
            continue
        base = level0.stat().st_size if level0.is_file() else 0
        if links.stat().st_size > LINK_RATIO_LIMIT * base + LINK_SLACK_BYTES:
            found.append(segment)
    return found


def _vector_segments(folder: Path) -> set[str] | None:
    """Ids of the vector segments ``chroma.sqlite3`` lists (``None`` when it cannot be read)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{folder / 'chroma.sqlite3'}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT id FROM segments WHERE scope = 'VECTOR'").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return {str(r[0]) for r in rows}


def _quarantine(folder: Path) -> list[str]:
    """Move the damaged vector segments of ``folder`` aside (``<name>.damaged-<time>``), so Chroma
    starts them empty and :func:`rebuild` re-embeds from the records; returns what was moved."""
    moved = []
    for segment in damaged_segments(folder):
        target = segment.with_name(f"{segment.name}.damaged-{int(time.time())}")
        os.replace(segment, target)
        moved.append(f"moved the damaged vector index {segment.name} aside to {target.name}")
    return moved


def on_open(store: ChromaStore) -> list[str]:
    """Probe the store and recover writes killed processes left; returns what was done.

    Raises:
        StoreCorruptedError: a part of the store cannot be read (the message names the repair).
    """
    folder = _persist_folder(store.client)
    damaged = damaged_segments(folder) if folder is not None else []
    if damaged:
        raise StoreCorruptedError(
            f"the store at {str(folder)!r} has a half-written vector index ({damaged[0].name}: "
            f"link_lists.bin of {(damaged[0] / 'link_lists.bin').stat().st_size:,} bytes) that Chroma "
            f"cannot load; run `cluster-rag repair --path {folder} --collection {store.name}` to rebuild "
            "it from the records Chroma keeps"
        )
    try:
        if not store.is_remote:  # a server checks its own storage; its errors reach the first call
            store.probe()
    except Exception as exc:
        err = translate(exc)
        if err is None:
            raise
        raise StoreCorruptedError(
            f"collection {store.name!r} cannot be read ({type(exc).__name__}: {_one_line(exc)}); "
            f"run `cluster-rag repair --path PATH "
            f"--collection {store.name}` to rebuild it from the records Chroma keeps"
        ) from exc
    return recover_journal(store)


def recover_journal(store: ChromaStore) -> list[str]:
    """Undo adds, complete deletes and settle replaces that a process killed midway left in the journal.

    Entries of live writers (same host and pid running, or recent on another host) are left alone.
    """
    done: list[str] = []
    for key, entry in store.journal().items():
        if owner_alive(entry):
            continue
        op, token, ids = entry.get("op"), str(entry.get("token", "")), list(entry.get("ids", []))
        version = entry.get("version")
        if op == "add":
            removed = _undo_add(store, token, ids, version)
            done.append(
                f"undid an add of {len(ids)} chunk(s) interrupted in process {entry.get('pid')} "
                f"({removed} written chunk(s) removed); run it again"
            )
        elif op == "delete":
            left = sorted(store.existing_ids(ids))
            if left:
                store.delete(left)
            done.append(
                f"completed a delete of {len(ids)} chunk(s) interrupted in process {entry.get('pid')} "
                f"({len(left)} were still stored)"
            )
        elif op == "replace":
            done.append(journal.recover_replace(store, entry))
        store.drop_journal(key)
    for line in done:
        log.warning("cluster-rag recovery: %s", line)
    return done


def _undo_add(store: ChromaStore, token: str, ids: list[str], version: Any) -> int:
    mine: list[str] = []
    positions: list[int] = []
    key = version_key(int(version)) if version is not None else None
    for start in range(0, len(ids), store.batch_size):
        got = store.get(ids[start : start + store.batch_size], include=["metadatas"])
        for cid, meta in zip(got["ids"], got["metadatas"], strict=True):
            meta = meta or {}
            if meta.get(journal.WRITE_KEY) in (token, None):  # unstamped: killed inside Chroma's write
                mine.append(cid)
                if key is not None and key in meta:
                    positions.append(int(meta[key]))
    payload = store.load_model(int(version)) if version is not None else None
    if payload is not None and token in payload.get("applied_writes", []):
        sizes = np.asarray(payload.get("sizes") or [], dtype=np.int64)
        if len(sizes):
            keep = [p for p in positions if 0 <= p < len(sizes)]
            sizes = np.maximum(sizes - np.bincount(np.asarray(keep, dtype=np.int64), minlength=len(sizes)), 0)
            payload["sizes"] = sizes.astype(int).tolist()
        payload["applied_writes"] = [t for t in payload["applied_writes"] if t != token]
        store.update_model(int(version), payload)
    if mine:
        store.delete(mine)
    return len(mine)


def rebuild(
    client: Any,
    name: str,
    *,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    page: int = 1000,
) -> RepairReport:
    """Rebuild the chunk collection ``name`` from what can still be read.

    Copies ids, texts and metadata page by page into ``NAME__rebuild`` (through Chroma, or, when
    its vector index cannot even be loaded, from the collection's sqlite metadata segment:
    embedded stores only); a page whose vectors cannot be read has them recomputed with
    ``embed`` (texts → ``(n, d)`` float32 vectors of the collection's model). The old collection
    is then deleted and the new one renamed, so
    running it again after an interruption starts over cleanly.

    Raises:
        StoreCorruptedError: the records themselves (sqlite) cannot be read, or vectors are
            unreadable and no ``embed`` was given.
    """
    report = RepairReport()
    folder = _persist_folder(client)
    if folder is not None:  # before Chroma loads a segment that would crash this process
        report.messages += _quarantine(folder)
    target = f"{name}{_REBUILD_SUFFIX}"
    names = _names(client)
    if name not in names and target in names:  # killed between the delete and the rename
        client.get_collection(target, embedding_function=None).modify(name=name)
        report.messages.append(f"finished an interrupted repair of {name!r} (renamed {target!r})")
        return report
    old = client.get_collection(name, embedding_function=None)
    meta = dict(old.metadata or {})
    if target in names:
        client.delete_collection(target)
    new = client.create_collection(
        target, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}, metadata=meta
    )
    try:
        pages = list(_pages_via_chroma(old, page))
    except Exception as exc:  # the vector index cannot even be loaded: read the records from sqlite
        if embed is None:
            raise StoreCorruptedError(
                f"collection {name!r} cannot be read ({_one_line(exc)}); repair with the embedding model "
                "(CLI: `cluster-rag repair` loads it)"
            ) from exc
        pages = list(_pages_via_sqlite(client, old.id, page))
        report.messages.append(
            f"read the records of {name!r} from its sqlite database (vector index unreadable)"
        )
    for ids, documents, metadatas, vectors in pages:
        if vectors is None:
            if embed is None:
                raise StoreCorruptedError(
                    f"the vectors of collection {name!r} cannot be read; repair with the embedding model "
                    "(CLI: `cluster-rag repair` loads it)"
                )
            vectors = np.asarray(embed([d or "" for d in documents]), dtype=np.float32)
            report.reembedded += len(ids)
        new.add(ids=ids, documents=documents, metadatas=metadatas, embeddings=vectors)
        report.chunks += len(ids)
    client.delete_collection(name)
    new.modify(name=name)
    report.messages.append(
        f"rebuilt collection {name!r}: {report.chunks} chunk(s) copied, {report.reembedded} re-embedded"
    )
    return report


def repair_store(
    client: Any, name: str, *, embed: Callable[[list[str]], np.ndarray] | None = None
) -> RepairReport:
    """Everything ``cluster-rag repair`` does to collection ``name`` of ``client``.

    1. Rebuild the chunk collection when it cannot be read (:func:`rebuild`).
    2. Recover the journal (:func:`recover_journal`), then move the change token
       (:meth:`~cluster_rag.store.ChromaStore.note_change`): the next open of any reader lists the
       chunks again (what a rebuild dropped, what a plain Chroma client wrote outside the journal).
    3. Drop versions that are incomplete; if the active one was, make the newest complete one active.

    Raises:
        StoreNotFoundError: no such collection.
        StoreCorruptedError: the records themselves cannot be read.
    """
    from .errors import StoreNotFoundError, VersionError

    report = RepairReport()
    folder = _persist_folder(client)
    if folder is not None:  # before Chroma loads a segment that would crash this process
        report.messages += _quarantine(folder)
    names = _names(client)
    if name not in names and f"{name}{_REBUILD_SUFFIX}" not in names:
        raise StoreNotFoundError(f"collection {name!r} does not exist; collections here: {sorted(names)}")
    model_name = _model_name(client, name, names)
    try:
        store = ChromaStore(client, name, model_name=model_name, dimension=None, create=False)
        store.probe()
    except Exception as exc:
        if translate(exc) is None and not isinstance(exc, (StoreCorruptedError, StoreNotFoundError)):
            raise
        report.messages.append(f"collection {name!r} could not be read ({_one_line(exc)}); rebuilding it")
        done = rebuild(client, name, embed=embed)
        report.messages += done.messages
        report.chunks, report.reembedded = done.chunks, done.reembedded
        store = ChromaStore(client, name, model_name=model_name, dimension=None, create=False)
    report.messages += recover_journal(store)
    # a rebuild may have dropped unreadable chunks, and a plain Chroma client may have written
    # without the journal: readers list the chunks again on their next open
    store.note_change()
    active = store.active_version()
    broken: list[int] = []
    for version in store.versions():
        try:
            store.check_version(version)
        except VersionError as exc:
            report.messages.append(str(exc))
            broken.append(version)
    if active in broken:
        good = [v for v in store.versions() if v not in broken]
        if good:
            store.set_active(good[-1])
            report.messages.append(f"active version {active} was broken; version {good[-1]} is active now")
        else:
            report.messages.append(f"active version {active} is broken and no complete one is kept; refit")
    for version in broken:
        if version != store.active_version():
            store.delete_model(version)
            report.messages.append(f"removed broken version {version}")
    return report


Page = tuple[list[str], list[str], list[Any], "np.ndarray | None"]


def _pages_via_chroma(collection: Any, page: int) -> Iterator[Page]:
    """Records page by page through Chroma; vectors ``None`` for a page whose vectors cannot be read."""
    total = int(collection.count())
    offset = 0
    while offset < total:
        got = collection.get(include=["documents", "metadatas"], limit=page, offset=offset)
        if not got["ids"]:
            return
        vectors: np.ndarray | None
        try:
            vecs = collection.get(ids=got["ids"], include=["embeddings"])
            by_id = dict(zip(vecs["ids"], vecs["embeddings"], strict=True))
            vectors = np.asarray([by_id[i] for i in got["ids"]], dtype=np.float32)
        except Exception:
            vectors = None
        yield list(got["ids"]), list(got["documents"]), list(got["metadatas"]), vectors
        offset += len(got["ids"])


def _pages_via_sqlite(client: Any, collection_id: Any, page: int) -> Iterator[Page]:
    """Records of an embedded collection read from its metadata segment in ``chroma.sqlite3``
    (ids, documents, scalar metadata); vectors ``None`` (to be re-embedded)."""
    import sqlite3
    from pathlib import Path

    folder = client.get_settings().persist_directory
    con = sqlite3.connect(f"file:{Path(folder) / 'chroma.sqlite3'}?mode=ro", uri=True)
    try:
        segment = con.execute(
            "SELECT id FROM segments WHERE collection = ? AND scope = 'METADATA'", (str(collection_id),)
        ).fetchone()
        if segment is None:
            raise StoreCorruptedError(f"collection {collection_id} has no metadata segment; restore a backup")
        rows = con.execute(
            "SELECT id, embedding_id FROM embeddings WHERE segment_id = ? ORDER BY id", (segment[0],)
        ).fetchall()
        for start in range(0, len(rows), page):
            part = rows[start : start + page]
            keys = {row_id: i for i, (row_id, _) in enumerate(part)}
            docs: list[str] = [""] * len(part)
            metas: list[dict[str, Any]] = [{} for _ in part]
            marks = ",".join("?" * len(part))
            for row_id, key, s_val, i_val, f_val, b_val in con.execute(
                "SELECT id, key, string_value, int_value, float_value, bool_value FROM embedding_metadata "
                f"WHERE id IN ({marks})",
                [r[0] for r in part],
            ):
                i = keys[row_id]
                if key == "chroma:document":
                    docs[i] = s_val or ""
                elif not key.startswith("chroma:"):
                    value = s_val if s_val is not None else i_val if i_val is not None else f_val
                    metas[i][key] = bool(b_val) if b_val is not None else value
            yield [str(e) for _, e in part], docs, [m or None for m in metas], None
    finally:
        con.close()


def _model_name(client: Any, name: str, names: set[str]) -> str:
    source = name if name in names else f"{name}{_REBUILD_SUFFIX}"
    meta = client.get_collection(source, embedding_function=None).metadata or {}
    return str(meta.get("cr_model", ""))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _names(client: Any) -> set[str]:
    return {c if isinstance(c, str) else c.name for c in client.list_collections()}
