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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import journal
from .errors import StoreCorruptedError
from .guard import translate
from .store import ChromaStore, version_key
from .store.chroma_store import owner_alive

__all__ = ["RepairReport", "on_open", "rebuild", "recover_journal"]

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


def on_open(store: ChromaStore) -> list[str]:
    """Probe the store and recover writes killed processes left; returns what was done.

    Raises:
        StoreCorruptedError: a part of the store cannot be read (the message names the repair).
    """
    try:
        store.probe()
    except Exception as exc:
        err = translate(exc)
        if err is None:
            raise
        raise StoreCorruptedError(
            f"collection {store.name!r} cannot be read ({err}); run `cluster-rag repair --path PATH "
            f"--collection {store.name}` to rebuild it from the records Chroma keeps"
        ) from exc
    return recover_journal(store)


def recover_journal(store: ChromaStore) -> list[str]:
    """Undo adds and complete deletes that a process killed midway left in the journal.

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
            if meta.get(journal.WRITE_KEY) == token:
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
    """Rebuild collection ``name`` (and, when unreadable, its centroids) from what Chroma can read.

    Copies ids, texts and metadata page by page into ``NAME__rebuild``; a page whose vectors
    cannot be read has them recomputed with ``embed`` (texts → ``(n, d)`` float32 vectors of
    the collection's model). The old collection is then deleted and the new one renamed, so
    running it again after an interruption starts over cleanly.

    Raises:
        StoreCorruptedError: the records themselves (sqlite) cannot be read, or vectors are
            unreadable and no ``embed`` was given.
    """
    report = RepairReport()
    target = f"{name}{_REBUILD_SUFFIX}"
    names = _names(client)
    if name not in names and target in names:  # killed between the delete and the rename
        client.get_collection(target, embedding_function=None).modify(name=name)
        report.messages.append(f"finished an interrupted repair of {name!r} (renamed {target!r})")
        return report
    try:
        old = client.get_collection(name, embedding_function=None)
        meta = dict(old.metadata or {})
        total = int(old.count())
    except Exception as exc:
        raise StoreCorruptedError(
            f"collection {name!r}: even its records cannot be read ({exc}); restore the folder from a backup"
        ) from exc
    if target in names:
        client.delete_collection(target)
    new = client.create_collection(
        target, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}, metadata=meta
    )
    offset = 0
    while offset < total:
        got = old.get(include=["documents", "metadatas"], limit=page, offset=offset)
        if not got["ids"]:
            break
        try:
            vecs = old.get(ids=got["ids"], include=["embeddings"])
            by_id = dict(zip(vecs["ids"], vecs["embeddings"], strict=True))
            vectors = np.asarray([by_id[i] for i in got["ids"]], dtype=np.float32)
        except Exception as exc:
            if embed is None:
                raise StoreCorruptedError(
                    f"the vectors of collection {name!r} cannot be read ({exc}); repair with the "
                    "embedding model (CLI: `cluster-rag repair` loads it)"
                ) from exc
            vectors = np.asarray(embed([d or "" for d in got["documents"]]), dtype=np.float32)
            report.reembedded += len(got["ids"])
        new.add(ids=got["ids"], documents=got["documents"], metadatas=got["metadatas"], embeddings=vectors)
        report.chunks += len(got["ids"])
        offset += len(got["ids"])
    client.delete_collection(name)
    new.modify(name=name)
    report.messages.append(
        f"rebuilt collection {name!r}: {report.chunks} chunk(s) copied, {report.reembedded} re-embedded"
    )
    return report


def _names(client: Any) -> set[str]:
    return {c if isinstance(c, str) else c.name for c in client.list_collections()}
