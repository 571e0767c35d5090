"""Re-ingest that updates: files on disk → the chunks stored for them.

The semantics of LangChain's indexing API (``cleanup="incremental"`` / ``"full"``)
and LlamaIndex's ``IngestionPipeline`` with a docstore, keyed by chunk id and
content hash:

* a chunk whose id is stored with the same content hash (``cr_hash``, SHA-256 of
  the text) is **unchanged** and skipped: nothing is embedded or written;
* a stored id whose text changed is **updated** (its record rewritten in place);
* an id not stored yet is **added**; an id stored for a source (file) that was
  re-read but no longer yields it (the file shrank) is **deleted**;
* a source that is gone from the given folders (file deleted or renamed) keeps its
  chunks unless ``delete_missing=True``, which deletes them.

Public :class:`~cluster_rag.ClusterIndex` methods (``add_embeddings``,
``update_embeddings``, ``delete``, ``refresh``) and the store's read methods (``iter_all``,
``vectors_by_hash``) are used. New vectors are computed *before*
anything is written (the embedding cache reuses any vector already stored for the
same text), so a failing model leaves the store untouched. The writes then go in
this order, each whole (journaled): add the new chunks; replace the edited ones in
place (one write: a process killed during it leaves each edited chunk with its old
or its new text, never missing, and the next open settles the counts); delete the
removed ones. A killed sync therefore leaves the files' chunks as before it, with
the new chunks added, with the edits (partly) applied too, or as after it; running
it again finishes it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from ..embedding import content_hash
from ..errors import DimensionMismatchError, DuplicateIdError
from ..store.chroma_store import HASH_KEY
from ..types import Chunk
from .loaders import load_chunks

if TYPE_CHECKING:
    from ..index import ClusterIndex

__all__ = ["SyncReport", "ingest_paths", "plan_sync", "sync_chunks", "sync_files"]


@dataclass(frozen=True)
class SyncReport:
    """What a sync did, as chunk ids per kind of change.

    Attributes:
        added: ids not stored before.
        updated: ids stored before whose text changed (replaced).
        unchanged: ids stored with the same text (skipped).
        deleted: ids removed: chunks a re-read source no longer yields, plus every
            chunk of ``deleted_sources``.
        deleted_sources: sources (file paths) gone from the given folders whose chunks
            were removed (only with ``delete_missing=True``).
        missing_sources: sources gone from the given folders that were kept because
            ``delete_missing`` was off.
    """

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    deleted_sources: list[str] = field(default_factory=list)
    missing_sources: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether anything was written or deleted."""
        return bool(self.added or self.updated or self.deleted)

    def counts(self) -> dict[str, int]:
        """``{"added": n, "updated": n, "unchanged": n, "deleted": n}``."""
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "deleted": len(self.deleted),
        }

    def summary(self) -> str:
        """One line, e.g. ``added 3 chunks, updated 1, unchanged 40, deleted 2``."""
        c = self.counts()
        text = (
            f"added {c['added']} {'chunk' if c['added'] == 1 else 'chunks'}, updated {c['updated']}, "
            f"unchanged {c['unchanged']}, deleted {c['deleted']}"
        )
        if self.deleted_sources:
            text += f" ({len(self.deleted_sources)} file(s) gone)"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the counts plus every id list."""
        return {
            **self.counts(),
            "ids": {
                "added": self.added,
                "updated": self.updated,
                "unchanged": self.unchanged,
                "deleted": self.deleted,
            },
            "deleted_sources": self.deleted_sources,
            "missing_sources": self.missing_sources,
        }


def sync_files(
    index: ClusterIndex,
    paths: Iterable[str | os.PathLike[str]],
    *,
    text_field: str = "text",
    delete_missing: bool = False,
    progress: bool = False,
) -> SyncReport:
    """Make the stored chunks of ``paths`` match the files on disk.

    Args:
        index: an open index (embedded or server).
        paths: files or folders (walked recursively, as :func:`~cluster_rag.ingest.load_chunks`).
        text_field: JSONL key / CSV column holding the text.
        delete_missing: delete the chunks of files that are gone from the given
            folders (and of given files that no longer exist); otherwise they stay
            and are listed in ``SyncReport.missing_sources``.
        progress: show the embedding progress bar.

    Returns:
        What changed, as a :class:`SyncReport`.

    Raises:
        StoreNotFoundError: a path does not exist (with ``delete_missing=False``).
        UnsupportedFileError: a file cannot be read, or ``text_field`` is in no record.
    """
    roots = [Path(p) for p in paths]
    present = [p for p in roots if p.exists()] if delete_missing else roots
    chunks = load_chunks(
        present,
        chunk_size=index.config.chunk_size,
        overlap=index.config.chunk_overlap,
        text_field=text_field,
    )
    return sync_chunks(index, chunks, roots, delete_missing=delete_missing, progress=progress)


def ingest_paths(
    index: ClusterIndex,
    paths: Iterable[str | os.PathLike[str]],
    *,
    text_field: str = "text",
    skip_existing: bool = True,
    delete_missing: bool = False,
) -> list[str]:
    """What :meth:`ClusterIndex.ingest_files` does: :func:`sync_files` when ``skip_existing``,
    otherwise add every chunk (a stored id raises :class:`DuplicateIdError`, nothing written).

    Returns:
        Ids of the chunks added or replaced.
    """
    if skip_existing:
        done = sync_files(
            index, paths, text_field=text_field, delete_missing=delete_missing, progress=index.config.progress
        )
        return [*done.added, *done.updated]
    size, overlap = index.config.chunk_size, index.config.chunk_overlap
    chunks = load_chunks([Path(p) for p in paths], chunk_size=size, overlap=overlap, text_field=text_field)
    if not chunks:
        return []
    return index.add_texts([c.text for c in chunks], [c.metadata for c in chunks], [c.id for c in chunks])


def sync_chunks(
    index: ClusterIndex,
    chunks: Sequence[Chunk],
    roots: Sequence[str | os.PathLike[str]],
    *,
    delete_missing: bool = False,
    progress: bool = False,
) -> SyncReport:
    """Apply already-loaded ``chunks`` of the files under ``roots`` (see :func:`sync_files`).

    Args:
        index: an open index.
        chunks: what :func:`~cluster_rag.ingest.load_chunks` read from ``roots``; each
            carries its file in ``metadata["source"]``.
        roots: the files and folders the chunks were read from: a stored source under
            one of them that no chunk comes from is gone.
        delete_missing: delete the chunks of gone sources.
        progress: show the embedding progress bar.
    """
    repeated = sorted(cid for cid, n in Counter(c.id for c in chunks).items() if n > 1)
    if repeated:
        clash = set(repeated[:5])
        sources = sorted({str(c.metadata.get("source", "?")) for c in chunks if c.id in clash})
        raise DuplicateIdError(
            f"{len(repeated)} chunk id(s) occur twice in the files, e.g. {repeated[:5]} (in "
            f"{', '.join(sources[:5])}); give every JSONL/CSV record a unique id (nothing was written)"
        )
    plan = plan_sync(index, chunks, roots)
    gone_ids = [cid for src in plan.gone_sources for cid in plan.gone_ids[src]]
    to_write = [chunks[i] for i in plan.write]
    replaced = list(plan.updated)
    removed = list(plan.shrunk) + (gone_ids if delete_missing else [])
    # Order for a process killed midway (each write is journaled): embed first, add the new chunks,
    # then replace the edited ones in place, and delete the removed ones last.
    vectors = _vectors(index, [c.text for c in to_write], progress) if to_write else None
    is_new = set(plan.added)
    for fresh in (True, False):
        rows = [i for i, c in enumerate(to_write) if (c.id in is_new) == fresh]
        if not rows:
            continue
        batch = [to_write[i] for i in rows]
        assert vectors is not None
        texts, metas, ids = [c.text for c in batch], [c.metadata for c in batch], [c.id for c in batch]
        if fresh:
            index.add_embeddings(texts, vectors[rows], metas, ids)
        else:
            index.update_embeddings(ids, texts, vectors[rows], metas)  # one journaled write
    if removed:
        index.delete(removed)
    return SyncReport(
        added=list(plan.added),
        updated=replaced,
        unchanged=list(plan.unchanged),
        deleted=removed,
        deleted_sources=list(plan.gone_sources) if delete_missing else [],
        missing_sources=[] if delete_missing else list(plan.gone_sources),
    )


@dataclass(frozen=True)
class SyncPlan:
    """What :func:`sync_chunks` will do (computed without writing).

    Attributes:
        write: positions in ``chunks`` to embed and add (new and changed ids).
        added, updated, unchanged: chunk ids by kind.
        shrunk: stored ids of re-read sources that the sources no longer yield.
        gone_sources: stored sources under the roots that no chunk comes from.
        gone_ids: their stored chunk ids, per source.
    """

    write: list[int]
    added: list[str]
    updated: list[str]
    unchanged: list[str]
    shrunk: list[str]
    gone_sources: list[str]
    gone_ids: dict[str, list[str]]


def plan_sync(
    index: ClusterIndex, chunks: Sequence[Chunk], roots: Sequence[str | os.PathLike[str]]
) -> SyncPlan:
    """Compare ``chunks`` with what is stored for their sources and for ``roots``; write nothing."""
    stored = _stored_by_source(index)
    write: list[int] = []
    added: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    loaded_sources: dict[str, set[str]] = {}
    for i, chunk in enumerate(chunks):
        source = str(chunk.metadata.get("source", ""))
        loaded_sources.setdefault(source, set()).add(chunk.id)
        old = stored.get(source, {}).get(chunk.id)
        if old is None:
            # the id may be stored under another source (e.g. a JSONL record moved files)
            old = next((ids[chunk.id] for ids in stored.values() if chunk.id in ids), None)
        if old is None:
            write.append(i)
            added.append(chunk.id)
        elif old == content_hash(chunk.text):
            unchanged.append(chunk.id)
        else:
            write.append(i)
            updated.append(chunk.id)
    shrunk = [
        cid
        for source, ids in loaded_sources.items()
        for cid in sorted(stored.get(source, {}))
        if cid not in ids
    ]
    taken = {cid for ids in loaded_sources.values() for cid in ids}
    shrunk = [cid for cid in shrunk if cid not in taken]
    folders = [PurePosixPath(Path(r).as_posix()) for r in roots]
    gone_sources = sorted(
        src
        for src in stored
        if src and src not in loaded_sources and any(_under(PurePosixPath(src), f) for f in folders)
    )
    gone_ids = {src: sorted(cid for cid in stored[src] if cid not in taken) for src in gone_sources}
    return SyncPlan(write, added, updated, unchanged, shrunk, gone_sources, gone_ids)


def _under(source: PurePosixPath, root: PurePosixPath) -> bool:
    """``source`` is ``root`` itself or a file below it (relative sources only match relative roots)."""
    if source.is_absolute() != root.is_absolute():
        return False
    if ".." in source.parts and ".." not in root.parts:
        return False
    return source == root or source.is_relative_to(root)


def _stored_by_source(index: ClusterIndex) -> dict[str, dict[str, str]]:
    """``{source: {chunk id: content hash}}`` of every stored chunk (metadata only; ``""``: no source)."""
    out: dict[str, dict[str, str]] = {}
    for page in index.store.iter_all(include=["metadatas"]):
        for cid, meta in zip(page["ids"], page["metadatas"] or [], strict=False):
            meta = meta or {}
            out.setdefault(str(meta.get("source", "")), {})[cid] = str(meta.get(HASH_KEY, ""))
    return out


def _vectors(index: ClusterIndex, texts: list[str], progress: bool) -> np.ndarray:
    """``(len(texts), dim)`` float32 L2-normalized: stored vectors of identical texts, the rest embedded."""
    hashes = [content_hash(t) for t in texts]
    known = index.store.vectors_by_hash(hashes)
    out = np.empty((len(texts), index.store.dimension), dtype=np.float32)
    missing = [i for i, h in enumerate(hashes) if h not in known]
    if missing:
        fresh = index.embedder.embed([texts[i] for i in missing], progress=progress)
        if fresh.shape != (len(missing), index.store.dimension):
            raise DimensionMismatchError(
                f"embedder {index.embedder.name!r} gave vectors of shape {fresh.shape}; collection "
                f"{index.store.name!r} holds {index.store.dimension}-d vectors (nothing was written)"
            )
        out[missing] = fresh
    for i, h in enumerate(hashes):
        if h in known:
            out[i] = known[h]
    return out
