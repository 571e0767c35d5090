"""The write journal: a chunk write is recorded before it touches Chroma and cleared after.

An add writes a ``journal:<token>`` record in the ``NAME__meta`` collection (the ids, their
content hashes, the active version), then the chunks, each stamped ``cr_w=<token>``, then
the per-topic sizes, then deletes the record. A process killed in between leaves the record;
the next open (:func:`cluster_rag.repair.recover_journal`) removes exactly the chunks stamped
with that token and recounts the sizes, so a killed add is all or nothing. Deletes are
journaled the same way and are completed instead (a delete is idempotent).

A replace (an edited chunk re-ingested, :func:`cluster_rag.living.replace_rows`) overwrites
each chunk in place with Chroma's ``upsert``, stamping the new rows with its token; its record
also holds the old and new content hashes and each chunk's cluster before and after. Chroma
writes a chunk whole, so after a kill each one holds its old or its new version, never
neither and never both: :func:`settle_replace` reads the stamps back and recounts the
version's sizes to match what each chunk holds (running the ingest again replaces the rest).

The token also settles two processes adding the same ids at once: Chroma keeps the first
record of an id and ignores later adds of it, so after writing, :func:`claim_rows` reads the
stamps back; rows stamped by another writer mean that writer won, and this one undoes its
own rows and raises :class:`~cluster_rag.errors.DuplicateIdError` — nothing vanishes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import DuplicateIdError
from .store import ChromaStore
from .store.chroma_store import WRITE_KEY

__all__ = [
    "WRITE_KEY",
    "begin",
    "claim_rows",
    "finish",
    "new_token",
    "recover_replace",
    "settle_replace",
    "stamped",
    "undo_rows",
]


def new_token() -> str:
    """A fresh write token (12 hex digits)."""
    return uuid.uuid4().hex[:12]


def begin(
    store: ChromaStore,
    op: str,
    token: str,
    ids: Sequence[str],
    hashes: Sequence[str] | None = None,
    version: int | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Record the write ``op`` (``"add"``, ``"delete"`` or ``"replace"``) of ``ids`` before it starts;
    ``extra`` fields go into the record too. Returns the key."""
    entry: dict[str, Any] = {"op": op, "token": token, "ids": list(ids), "version": version, **(extra or {})}
    if hashes is not None:
        entry["hashes"] = [h[:16] for h in hashes]
    return store.put_journal(entry)


def finish(store: ChromaStore, key: str) -> None:
    """The write of ``key`` is complete: drop its record."""
    store.drop_journal(key)


def undo_rows(store: ChromaStore, token: str, ids: Sequence[str]) -> int:
    """Delete those of ``ids`` stored by the write ``token`` (never another writer's); returns how many.

    ``ids`` must be ids that were free when the write began (see :func:`_ours`).
    """
    mine: list[str] = []
    for start in range(0, len(ids), store.batch_size):
        got = store.get(list(ids[start : start + store.batch_size]), include=["metadatas"])
        mine += [cid for cid, m in zip(got["ids"], got["metadatas"], strict=True) if _ours(m, token)]
    if mine:
        store.delete(mine)
    return len(mine)


def _ours(meta: dict[str, Any] | None, token: str) -> bool:
    """A row of write ``token``: stamped with it, or with no stamp at all (a process killed inside
    Chroma's write can leave a record whose metadata is not written yet; the ids were checked
    free before the write began, so such a row is this write's)."""
    stamp = (meta or {}).get(WRITE_KEY)
    return stamp is None or stamp == token


def claim_rows(store: ChromaStore, token: str, ids: Sequence[str]) -> None:
    """Check every one of ``ids`` holds this write's rows; else undo ours and raise.

    A metadata query counts the rows stamped ``token`` first (ids only: a tenth of reading every
    row's metadata back); only when some are missing are the rows read one by one.

    Raises:
        DuplicateIdError: another process stored some of ``ids`` first (this write's rows are removed).
    """
    wanted = len(set(ids))
    first = next(store.iter_all(include=[], page=wanted + 1, where={WRITE_KEY: token}), None)
    if first is not None and len(first["ids"]) == wanted:
        return
    lost: list[str] = []
    for start in range(0, len(ids), store.batch_size):
        got = store.get(list(ids[start : start + store.batch_size]), include=["metadatas"])
        lost += [cid for cid, m in zip(got["ids"], got["metadatas"], strict=True) if not _ours(m, token)]
    if lost:
        undo_rows(store, token, ids)
        raise DuplicateIdError(
            f"{len(lost)} id(s) were stored by another process at the same moment, e.g. {sorted(lost)[:5]}; "
            "nothing of this call was written: pass new ids, or delete the old chunks first"
        )


def stamped(store: ChromaStore, token: str, ids: Sequence[str]) -> set[str]:
    """Those of ``ids`` whose stored row carries the stamp of write ``token``."""
    out: set[str] = set()
    for start in range(0, len(ids), store.batch_size):
        got = store.get(list(ids[start : start + store.batch_size]), include=["metadatas"])
        out.update(
            cid
            for cid, m in zip(got["ids"], got["metadatas"], strict=True)
            if (m or {}).get(WRITE_KEY) == token
        )
    return out


def settle_replace(
    store: ChromaStore,
    token: str,
    ids: Sequence[str],
    version: int | None,
    was: Sequence[int],
    now: Sequence[int],
) -> int:
    """Make version ``version``'s sizes match what each of ``ids`` holds after an interrupted replace.

    A chunk stamped ``token`` holds its new version (cluster ``now[i]``), any other its old one
    (cluster ``was[i]``; ``-1``: none). The write counted its moves in the same payload update that
    lists ``token`` under ``applied_writes``: if it did, chunks still old are moved back; if not,
    chunks already new are moved. Returns how many chunks hold the new version.
    """
    new = stamped(store, token, ids)
    payload = store.load_model(version) if version is not None else None
    if version is None or payload is None:
        return len(new)
    sizes = np.asarray(payload.get("sizes") or [], dtype=np.int64)
    applied = token in payload.get("applied_writes", [])
    k = len(sizes)
    for cid, old_pos, new_pos in zip(ids, was, now, strict=True):
        if (cid in new) == applied:  # counted as it is
            continue
        src, dst = (new_pos, old_pos) if applied else (old_pos, new_pos)
        if 0 <= src < k:
            sizes[src] -= 1
        if 0 <= dst < k:
            sizes[dst] += 1
    payload["sizes"] = np.maximum(sizes, 0).astype(int).tolist()
    payload["applied_writes"] = [t for t in payload.get("applied_writes", []) if t != token]
    store.update_model(version, payload)
    return len(new)


def recover_replace(store: ChromaStore, entry: dict[str, Any]) -> str:
    """Settle the replace a killed process left in the journal (``entry`` as :func:`begin` wrote it);
    returns what was done, in one line."""
    ids = [str(i) for i in entry.get("ids", [])]
    was = [int(p) for p in entry.get("was", [-1] * len(ids))]
    now = [int(p) for p in entry.get("now", [-1] * len(ids))]
    version = entry.get("version")
    done = settle_replace(
        store, str(entry.get("token", "")), ids, int(version) if version is not None else None, was, now
    )
    return (
        f"settled a replace of {len(ids)} chunk(s) interrupted in process {entry.get('pid')}: {done} hold "
        f"the new text, {len(ids) - done} the old (none missing); run the ingest again to finish it"
    )
