"""The write journal: a chunk write is recorded before it touches Chroma and cleared after.

An add writes a ``journal:<token>`` record in the ``NAME__meta`` collection (the ids, their
content hashes, the active version), then the chunks, each stamped ``cr_w=<token>``, then
the per-topic sizes, then deletes the record. A process killed in between leaves the record;
the next open (:func:`cluster_rag.repair.recover_journal`) removes exactly the chunks stamped
with that token and recounts the sizes, so a killed add is all or nothing. Deletes are
journaled the same way and are completed instead (a delete is idempotent).

The token also settles two processes adding the same ids at once: Chroma keeps the first
record of an id and ignores later adds of it, so after writing, :func:`claim_rows` reads the
stamps back; rows stamped by another writer mean that writer won, and this one undoes its
own rows and raises :class:`~cluster_rag.errors.DuplicateIdError` — nothing vanishes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from .errors import DuplicateIdError
from .store import ChromaStore

__all__ = ["WRITE_KEY", "begin", "claim_rows", "finish", "new_token", "undo_rows"]

#: chunk-metadata key holding the token of the write that stored the chunk
WRITE_KEY = "cr_w"


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
) -> str:
    """Record the write ``op`` (``"add"`` or ``"delete"``) of ``ids`` before it starts; returns the key."""
    entry: dict[str, Any] = {"op": op, "token": token, "ids": list(ids), "version": version}
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

    Raises:
        DuplicateIdError: another process stored some of ``ids`` first (this write's rows are removed).
    """
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
