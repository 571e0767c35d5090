"""Chroma persistence: chunks, centroids and cluster-model versions.

Layout for a collection named ``NAME`` (all three live in the same Chroma
database, so an embedded folder or one Chroma server holds everything and a
second process or machine can open it without any sidecar file):

``NAME``
    one record per chunk: text, vector (cosine space), user metadata, plus reserved
    keys ``cr_hash`` (SHA-256 of the text: the embedding cache key), ``cr_v<N>``
    (the chunk's cluster position in model version ``N``) and ``cr_added_v<N>`` (the
    chunk was added after version ``N`` was fitted: 1, and already folded into its
    centroids by an online update: 2). Collection metadata records the
    embedding model name and dimension, checked on every open.
``NAME__centroids``
    one record per (version, cluster), id ``v<N>:<cluster>``, vector = centroid.
``NAME__meta``
    ``model:v<N>`` (JSON: :class:`~cluster_rag.types.ModelInfo` + topics) and
    ``active`` (JSON ``{"version": N}``). Switching versions is one upsert of the
    ``active`` record, which Chroma writes atomically: readers see the old or the
    new version, never a mix. A version is only made active after its centroids and
    every chunk's ``cr_v<N>`` are written.
    ``claim:v<N>`` (JSON ``{"token", "pid", "host", "active", "at"}``): version number ``N``
    taken by one fit. Chroma's ``add`` ignores an id that exists, so adding the claim and
    reading it back is a compare-and-swap: two fits never write the same version.
    ``journal:<token>`` (JSON ``{"op", "ids", "hashes", "pid", "host", "at", "version"}``; a
    replace also ``"old_hashes"``, ``"was"``, ``"now"``): a
    write in flight (:mod:`cluster_rag.journal`), removed when it completes; one left behind by
    a killed process is finished or undone on the next open.
    ``changes`` (a fresh random token): replaced in the same upsert as each ``journal:<token>``
    record, so it changes before any chunk is added, replaced or deleted. A fit records the token
    it started from (:meth:`ChromaStore.changes_since`); a reader finding it unchanged knows the
    chunks are exactly the fitted ones and skips the two full passes (count, added-mark scan).
    Where the bodies live: a journal record's and the token's in the ``cr_body`` metadata string
    (:data:`BODY_KEY`, :func:`put_records`); every other record's in its document, the payload and
    the assignment parts (``assign:v<N>:<part>``) deflated (:func:`pack_text`). Readers accept the
    plain documents earlier releases wrote.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import uuid
import zlib
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import (
    ConcurrentWriteError,
    DimensionMismatchError,
    ModelMismatchError,
    StoreNotFoundError,
    VersionError,
)

__all__ = [
    "BODY_KEY",
    "HASH_KEY",
    "RESERVED_PREFIX",
    "WRITE_KEY",
    "ChromaStore",
    "added_key",
    "pack_text",
    "put_records",
    "read_records",
    "server_hnsw",
    "unpack_text",
    "version_key",
]

RESERVED_PREFIX = "cr_"
HASH_KEY = "cr_hash"
#: Chunk-metadata key holding the token of the write that stored the chunk (:mod:`cluster_rag.journal`).
WRITE_KEY = "cr_w"
_META_VECTOR = [1.0]
#: Metadata key holding the body of the short-lived and tiny records of ``NAME__meta``: each
#: write's journal record and the change token (:func:`put_records`). Chroma full-text indexes
#: every document: an add's journal record (its ids and content hashes, ~80 bytes a row) cost
#: ~0.4 s per 5,000 rows as a document and ~10 ms as metadata (add_embeddings against a raw add
#: carrying the same two per-row keys: 0.89x -> 0.94x, 6 rounds each). The lasting, large records
#: (payload, centroid copy, assignment parts, BM25 copy) stay documents, deflated where they are
#: large (:func:`pack_text`): every write to a collection costs time in proportion to the metadata
#: it holds (with them as metadata, 10.7 MB at 200k chunks: 0.3 s per write of a tiny record).
BODY_KEY = "cr_body"
#: Kind (and key prefix) of the meta records :meth:`ChromaStore.note_changed_texts` writes.
_TEXT_NOTE = "textnote"
#: Id of the meta record whose token changes before every journaled chunk write.
_CHANGES = "changes"
_SCHEMA = 1
#: how often (seconds) a reader re-reads the ``active`` record to notice another process's refit
ACTIVE_CHECK_SECONDS = 2.0


def owner_stamp() -> dict[str, Any]:
    """Who writes: process id, host name and wall time (seconds), to tell live writers from dead ones."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "at": time.time()}


def owner_alive(stamp: dict[str, Any], *, stale_after: float = 3600.0) -> bool:
    """Whether the writer of ``stamp`` may still be running: same host → its pid exists;
    another host → stamped less than ``stale_after`` seconds ago."""
    if stamp.get("host") == socket.gethostname():
        pid = int(stamp.get("pid", -1))
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except (PermissionError, OSError):
            return True
        return True
    return time.time() - float(stamp.get("at", 0.0)) < stale_after


def version_key(version: int) -> str:
    """Chunk-metadata key holding the cluster of model ``version``."""
    return f"{RESERVED_PREFIX}v{version}"


def added_key(version: int) -> str:
    """Chunk-metadata key marking a chunk added after model ``version`` was fitted."""
    return f"{RESERVED_PREFIX}added_v{version}"


#: Prefix of a meta document holding zlib-compressed, base64-encoded text (:func:`pack_text`).
_PACKED = "z1:"


def pack_text(text: str) -> str:
    """``text`` deflated and base64-encoded, behind a prefix JSON never starts with. For the large
    meta documents (a version's payload, its assignment's ids, the BM25 copy): Chroma full-text
    indexes each document, in time proportional to its characters, when it is written and again
    when it is deleted. At 200k chunks a payload shrinks 205 -> 39 KB and an assignment part
    240 -> 88 KB; the payload is rewritten by every add to a fitted store (its topic sizes)."""
    return _PACKED + base64.b64encode(zlib.compress(text.encode("utf-8"), 6)).decode("ascii")


def unpack_text(document: str) -> str:
    """Inverse of :func:`pack_text`; a document written without it (an earlier release) as it is.

    Raises:
        ValueError: a packed document that does not decode (damaged).
    """
    if not document.startswith(_PACKED):
        return document
    try:
        return zlib.decompress(base64.b64decode(document[len(_PACKED) :])).decode("utf-8")
    except zlib.error as exc:
        raise ValueError(f"a packed meta record does not decode: {exc}") from None


def put_records(collection: Any, ids: Sequence[str], bodies: Sequence[str]) -> None:
    """Upsert meta records (one request, atomic) whose bodies are the :data:`BODY_KEY` metadata
    string; the document is emptied, so a record once written as a document keeps no stale copy."""
    collection.upsert(
        ids=list(ids),
        documents=["" for _ in ids],
        metadatas=[{BODY_KEY: body} for body in bodies],
        embeddings=[_META_VECTOR for _ in ids],
    )


def read_records(collection: Any, ids: Sequence[str]) -> dict[str, str]:
    """Bodies of the meta records ``ids`` that exist, by id (one request): the :data:`BODY_KEY`
    metadata string, else the document (records kept as documents, or written by earlier releases)."""
    if not ids:
        return {}
    got = collection.get(ids=list(ids), include=["metadatas", "documents"])
    out: dict[str, str] = {}
    for rid, meta, doc in zip(got["ids"], got["metadatas"], got["documents"], strict=True):
        body = (meta or {}).get(BODY_KEY)
        out[rid] = str(body) if body is not None else str(doc or "")
    return out


def _decode_centroids(document: str) -> np.ndarray:
    """Centroids ``(k, d)`` float32 from their record copy (JSON: base64 little-endian float32, shape)."""
    data = json.loads(document)
    raw = np.frombuffer(base64.b64decode(data["data"]), dtype="<f4")
    return raw.reshape(tuple(data["shape"])).astype(np.float32)


def _is_not_found(exc: Exception) -> bool:
    """Chroma's "no such collection" (embedded and HTTP clients raise the same type)."""
    from chromadb.errors import NotFoundError

    return isinstance(exc, NotFoundError)


#: HNSW ``ef_search`` of a chunk collection created on a Chroma server. There Chroma's own index
#: answers the searches (:class:`~cluster_rag.backends_chroma.ChromaQueryBackend`), so recall is
#: its HNSW recall. 200k synthetic chunks (``python -m bench scale``), recall@10 vs exact and p50 on
#: 127.0.0.1: ef_search 100 (Chroma's default) 0.745, 6.1 ms; 400 0.944-0.972, 7.3 ms; 800 0.976,
#: 8.3-9.3 ms. Larger collections need more (embedded, 1M: 0.936 at 1,600). An existing collection
#: keeps its own value: ``collection.modify(configuration={"hnsw": {"ef_search": 800}})``, then
#: restart the server (a loaded index keeps the value it was loaded with).
SERVER_EF_SEARCH = 800
#: HNSW graph degree (``max_neighbors``, HNSW's M; Chroma's default 16) of a chunk collection created
#: on a Chroma server; fixed when the collection is created. Measured on 200k synthetic chunks
#: (embedded Chroma, the same index; recall@10 vs exact, p50): M=16 vs 32 built in 97 vs 92 s and
#: answered 0.778 vs 0.894 at ef_search 100, 0.835 vs 0.942 at 200, 0.939 vs 0.976 at 400, 0.976
#: vs 0.993 at 800 (3.8 vs 6.1 ms): at equal recall M=32 is the faster one (0.94: 2.3 vs 2.6 ms),
#: for twice the link memory on the server (~256 vs ~128 MB per 1M chunks).
SERVER_MAX_NEIGHBORS = 32


def server_hnsw() -> dict[str, Any]:
    """The HNSW configuration of a chunk collection cluster-rag creates on a Chroma server
    (:data:`SERVER_EF_SEARCH`, :data:`SERVER_MAX_NEIGHBORS`, cosine space)."""
    return {"space": "cosine", "ef_search": SERVER_EF_SEARCH, "max_neighbors": SERVER_MAX_NEIGHBORS}


def _is_remote(client: Any) -> bool:
    try:
        impl = str(client.get_settings().chroma_api_impl)
    except AttributeError:
        return False
    return impl.endswith("FastAPI")


class ChromaStore:
    """Chunks, centroids and model versions in one Chroma database.

    Args:
        client: a ``chromadb`` client (``PersistentClient``, ``HttpClient``, ``EphemeralClient``).
        name: collection name of the chunks.
        model_name: embedding model the vectors come from.
        dimension: vector width, or ``None`` to read it from an existing collection.
        create: create the collections if missing; otherwise a missing collection
            raises :class:`StoreNotFoundError`.
        server_index: create a missing chunk collection with the server's HNSW settings
            (:func:`server_hnsw`); ``None``: when the client talks to a server.
    """

    def __init__(
        self,
        client: Any,
        name: str,
        *,
        model_name: str,
        dimension: int | None,
        create: bool = True,
        server_index: bool | None = None,
    ) -> None:
        from ..validation import check_collection_name  # validation imports this package

        self.client = client
        self.name = check_collection_name(name)
        self._active_seen: tuple[float, int | None] | None = None
        try:
            self.chunks = client.get_collection(name, embedding_function=None)
        except Exception as exc:
            if not _is_not_found(exc):
                raise
            if not create:
                raise StoreNotFoundError(
                    f"collection {name!r} does not exist; ingest data first or check --collection"
                ) from None
            if dimension is None:
                raise StoreNotFoundError(f"collection {name!r} does not exist") from None
            remote = _is_remote(client) if server_index is None else server_index
            hnsw: dict[str, Any] = server_hnsw() if remote else {"space": "cosine"}
            self.chunks = client.get_or_create_collection(
                name,
                embedding_function=None,
                configuration={"hnsw": hnsw},
                metadata={"cr_model": model_name, "cr_dim": int(dimension), "cr_schema": _SCHEMA},
            )
        meta = self.chunks.metadata or {}
        stored_model, stored_dim = meta.get("cr_model"), meta.get("cr_dim")
        if stored_model is None or stored_dim is None:
            raise ModelMismatchError(
                f"collection {name!r} was not created by cluster-rag (no cr_model/cr_dim metadata); "
                "use another collection name"
            )
        if stored_model != model_name:
            raise ModelMismatchError(
                f"collection {name!r} was built with embedding model {stored_model!r} but this index "
                f"uses {model_name!r}; open it with model={stored_model!r} or use a new collection"
            )
        if dimension is not None and int(stored_dim) != int(dimension):
            raise ModelMismatchError(
                f"collection {name!r} holds {stored_dim}-d vectors but model {model_name!r} "
                f"produces {dimension}-d; open it with the model that built it"
            )
        self.model_name = model_name
        self.dimension = int(stored_dim)
        self.centroids = client.get_or_create_collection(
            f"{name}__centroids", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )
        self.meta = client.get_or_create_collection(f"{name}__meta", embedding_function=None)
        self.batch_size = min(int(client.get_max_batch_size()), 5000)

    @property
    def is_remote(self) -> bool:
        """Whether this store talks to a Chroma server over HTTP (no shared disk with it)."""
        return _is_remote(self.client)

    # chunks --------------------------------------------------------------------
    def count(self) -> int:
        return int(self.chunks.count())

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are already stored (repeats in ``ids`` allowed)."""
        ids = list(dict.fromkeys(ids))  # Chroma rejects a get with a repeated id
        found: set[str] = set()
        for start in range(0, len(ids), self.batch_size):
            got = self.chunks.get(ids=list(ids[start : start + self.batch_size]), include=[])
            found.update(got["ids"])
        return found

    def vectors_by_hash(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of texts with these content hashes (the embedding cache)."""
        out: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(hashes))
        for start in range(0, len(uniq), 500):
            part = uniq[start : start + 500]
            got = self.chunks.get(where={HASH_KEY: {"$in": part}}, include=["embeddings", "metadatas"])
            vectors = got["embeddings"] if got["embeddings"] is not None else []
            for meta, vec in zip(got["metadatas"] or [], vectors, strict=True):
                out[str(meta[HASH_KEY])] = np.asarray(vec, dtype=np.float32)
        return out

    def _check_width(self, vectors: np.ndarray) -> None:
        """Raise :class:`DimensionMismatchError` unless ``vectors`` ``(n, d)`` are this collection's width."""
        if vectors.shape[1] != self.dimension:
            raise DimensionMismatchError(
                f"vectors have dimension {vectors.shape[1]} but collection {self.name!r} holds "
                f"{self.dimension}-d vectors"
            )

    def add(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        """Write chunks; all or nothing (a failed batch deletes the batches already written)."""
        self._check_width(vectors)
        written: list[str] = []
        try:
            for start in range(0, len(ids), self.batch_size):
                stop = start + self.batch_size
                batch_ids = list(ids[start:stop])
                self.chunks.add(
                    ids=batch_ids,
                    documents=list(texts[start:stop]),
                    embeddings=vectors[start:stop],
                    metadatas=[dict(m) for m in metadatas[start:stop]],
                )
                written.extend(batch_ids)
        except BaseException:
            if written:
                self.delete(written)
            raise

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        """Overwrite chunks in place (vectors ``(n, d)`` float32): Chroma's ``upsert`` merges the
        metadata, so a ``None`` value removes a key. Each batch of ``batch_size`` rows is one Chroma
        write: a process killed midway leaves every chunk whole, old or new (see
        :func:`cluster_rag.living.replace_rows`)."""
        self._check_width(vectors)
        for start in range(0, len(ids), self.batch_size):
            stop = start + self.batch_size
            self.chunks.upsert(
                ids=list(ids[start:stop]),
                documents=list(texts[start:stop]),
                embeddings=vectors[start:stop],
                metadatas=[dict(m) for m in metadatas[start:stop]],
            )

    def delete(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), self.batch_size):
            self.chunks.delete(ids=list(ids[start : start + self.batch_size]))

    def iter_all(
        self,
        include: Sequence[str] = ("embeddings", "metadatas"),
        page: int = 5000,
        where: dict[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every chunk (matching ``where``), in pages of ``page`` records (Chroma ``get`` result dicts)."""
        offset = 0
        while True:
            got = self.chunks.get(include=list(include), limit=page, offset=offset, where=where)
            if not got["ids"]:
                return
            yield got
            offset += len(got["ids"])

    def load_all(self) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        """All ids, vectors ``(n, d)`` float32 and metadatas."""
        ids: list[str] = []
        vecs: list[np.ndarray] = []
        metas: list[dict[str, Any]] = []
        for got in self.iter_all():
            ids.extend(got["ids"])
            vecs.append(np.asarray(got["embeddings"], dtype=np.float32))
            metas.extend(m or {} for m in got["metadatas"])
        vectors = np.concatenate(vecs) if vecs else np.zeros((0, self.dimension), np.float32)
        return ids, vectors, metas

    def get(self, ids: Sequence[str], include: Sequence[str] = ("documents", "metadatas")) -> dict[str, Any]:
        """Records by id, in the order of ``ids`` (missing ids skipped)."""
        got = self.chunks.get(ids=list(ids), include=list(include))
        order = {cid: i for i, cid in enumerate(got["ids"])}
        out: dict[str, Any] = {"ids": [cid for cid in ids if cid in order]}
        for key in include:
            values = got[key]
            out[key] = [values[order[cid]] for cid in out["ids"]] if values is not None else None
        return out

    def find(self, where: dict[str, Any], *, limit: int | None = None) -> dict[str, Any]:
        """Chunks matching the Chroma ``where`` filter (ids, documents, metadatas), at most ``limit``."""
        got = self.chunks.get(where=where, include=["documents", "metadatas"], limit=limit)
        return {"ids": got["ids"], "documents": got["documents"], "metadatas": got["metadatas"]}

    def filter_ids(self, ids: Sequence[str], where: dict[str, Any]) -> set[str]:
        """The subset of ``ids`` whose metadata matches the Chroma ``where`` filter."""
        passing: set[str] = set()
        for start in range(0, len(ids), self.batch_size):
            got = self.chunks.get(ids=list(ids[start : start + self.batch_size]), where=where, include=[])
            passing.update(got["ids"])
        return passing

    def write_assignments(
        self, version: int, ids: Sequence[str], labels: np.ndarray, *, added: bool = False
    ) -> None:
        """Set ``cr_v<version>`` on every given chunk (batched metadata merge).

        ``added=False`` (chunks the version was fitted on) also clears ``cr_added_v<version>``
        left by an interrupted earlier attempt at the same version; ``added=True`` sets it to 1.
        """
        key, mark = version_key(version), added_key(version)
        for start in range(0, len(ids), self.batch_size):
            stop = start + self.batch_size
            self.chunks.update(
                ids=list(ids[start:stop]),
                metadatas=[{key: int(c), mark: 1 if added else None} for c in labels[start:stop]],
            )

    def count_added(self, version: int) -> int:
        """Chunks marked as added after ``version`` was fitted (a metadata query; no vectors)."""
        got = self.chunks.get(where={added_key(version): {"$gte": 1}}, include=[])
        return len(got["ids"])

    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[dict[str, Any]]) -> None:
        """Merge ``metadatas`` into the stored metadata of ``ids`` (a ``None`` value removes a key)."""
        for start in range(0, len(ids), self.batch_size):
            stop = start + self.batch_size
            self.chunks.update(ids=list(ids[start:stop]), metadatas=[dict(m) for m in metadatas[start:stop]])

    def drop_assignments(self, version: int) -> None:
        """Remove ``cr_v<version>`` and ``cr_added_v<version>`` from every chunk (pruning old versions)."""
        keys = (version_key(version), added_key(version))
        # only the chunks carrying a key (positions and marks are ints >= 0), listed before any is
        # changed (an update takes a chunk out of the filter, which would shift later pages)
        where = {"$or": [{key: {"$gte": -1}} for key in keys]}
        ids = [cid for got in self.iter_all(include=[], where=where, page=100_000) for cid in got["ids"]]
        for start in range(0, len(ids), self.batch_size):
            part = ids[start : start + self.batch_size]
            self.chunks.update(ids=part, metadatas=[dict.fromkeys(keys) for _ in part])

    # model versions ------------------------------------------------------------------
    def active_version(self) -> int | None:
        got = self.meta.get(ids=["active"], include=["documents"])
        if not got["ids"]:
            return None
        return int(json.loads(got["documents"][0])["version"])

    def set_active(self, version: int, *, expect: int | None | str = "any") -> None:
        """Make ``version`` active (one atomic upsert).

        Args:
            expect: the version that must still be active (``None``: none yet); ``"any"``: no check.

        Raises:
            VersionError: no such version.
            ConcurrentWriteError: another process switched the active version since ``expect``.
        """
        if not self.meta.get(ids=[f"model:v{int(version)}"], include=[])["ids"]:  # no payload read
            raise VersionError(f"model version {version} does not exist; see `cluster-rag versions`")
        if expect != "any":
            now = self.active_version()
            if now != expect:
                raise ConcurrentWriteError(
                    f"another process made version {now} active while this fit ran (it started from "
                    f"version {expect}); version {version} is stored but not active: run "
                    f"`cluster-rag rollback {version}` to use it, or fit again"
                )
        self.meta.upsert(
            ids=["active"], documents=[json.dumps({"version": int(version)})], embeddings=[_META_VECTOR]
        )
        self._active_seen = (time.monotonic(), int(version))

    def active_moved(self, version: int | None, *, every: float = ACTIVE_CHECK_SECONDS) -> bool:
        """Whether the active version differs from ``version``; reads the ``active`` record at most
        once per ``every`` seconds (a reader calls this on each use to notice other processes' refits)."""
        now = time.monotonic()
        seen = self._active_seen
        if seen is None or now - seen[0] >= every:
            seen = (now, self.active_version())
            self._active_seen = seen
        return seen[1] != version

    def claim_version(self) -> tuple[int, int | None]:
        """Take the next free version number for a fit (compare-and-swap on ``claim:v<N>``).

        Returns:
            The version number, and the version active when it was claimed (pass it to
            :meth:`set_active` as ``expect``).
        """
        token = uuid.uuid4().hex
        active = self.active_version()
        got = self.meta.get(include=[])
        taken = [int(i.rsplit(":v", 1)[1]) for i in got["ids"] if i.startswith(("model:v", "claim:v"))]
        version = max(taken, default=0) + 1
        for _ in range(1000):
            doc = json.dumps({"token": token, "active": active, **owner_stamp()})
            self.meta.add(ids=[f"claim:v{version}"], documents=[doc], embeddings=[_META_VECTOR])
            back = self.meta.get(ids=[f"claim:v{version}"], include=["documents"])
            if back["ids"] and json.loads(back["documents"][0]).get("token") == token:
                return version, active
            version += 1
        raise ConcurrentWriteError("could not claim a version number after 1000 tries; retry the fit")

    def claims(self) -> dict[int, dict[str, Any]]:
        """Version claims by number (see :meth:`claim_version`)."""
        out: dict[int, dict[str, Any]] = {}
        ids = [i for i in self.meta.get(include=[])["ids"] if i.startswith("claim:v")]
        if ids:
            back = self.meta.get(ids=ids, include=["documents"])
            for cid, doc in zip(back["ids"], back["documents"], strict=True):
                out[int(cid.rsplit(":v", 1)[1])] = dict(json.loads(doc))
        return out

    def drop_claims(self, versions: Sequence[int]) -> None:
        if versions:
            self.meta.delete(ids=[f"claim:v{int(v)}" for v in versions])

    # write journal -----------------------------------------------------------------
    def note_changed_texts(self, ids: Sequence[str]) -> str | None:
        """Record, before an edit or a delete, that these chunks' texts change: a keyword index another
        process saved (:class:`~cluster_rag.hybrid.KeywordState`) re-reads them when it next loads.
        One record per call under its own key, so concurrent writers never overwrite each other;
        returns the key (``None`` for no ids)."""
        if not ids:
            return None
        key = f"{_TEXT_NOTE}:{uuid.uuid4().hex}"
        self.meta.upsert(
            ids=[key],
            documents=[json.dumps(list(ids))],
            embeddings=[_META_VECTOR],
            metadatas=[{"kind": _TEXT_NOTE}],
        )
        return key

    def text_change_notes(self, skip: Collection[str] = ()) -> dict[str, list[str]]:
        """The :meth:`note_changed_texts` records not in ``skip``: key -> chunk ids."""
        keys = [k for k in self.meta.get(where={"kind": _TEXT_NOTE}, include=[])["ids"] if k not in skip]
        if not keys:
            return {}
        got = self.meta.get(ids=keys, include=["documents"])
        return {k: list(json.loads(d)) for k, d in zip(got["ids"], got["documents"], strict=True)}

    def put_journal(self, entry: dict[str, Any]) -> str:
        """Record a write about to happen; returns its key (see :mod:`cluster_rag.journal`)."""
        key = f"journal:{uuid.uuid4().hex}"
        # the change token moves in the same upsert: no chunk write ever precedes it
        put_records(self.meta, [key, _CHANGES], [json.dumps({**entry, **owner_stamp()}), uuid.uuid4().hex])
        return key

    def note_change(self) -> None:
        """Move the change token without a journal record: for writes made outside the journal
        (a rebuild that may have dropped unreadable chunks), so readers list the chunks again."""
        put_records(self.meta, [_CHANGES], [uuid.uuid4().hex])

    def change_token(self) -> str | None:
        """The current change token (see the module docstring), for a fit to record before it reads
        the chunks; writes one when the store has none yet. ``None`` while a write is in flight (a
        journal record exists): a fit cannot tell which of that write's rows it will see."""
        token = read_records(self.meta, [_CHANGES]).get(_CHANGES)
        if token is None:  # add, not upsert: a token another process wrote meanwhile stays
            body = uuid.uuid4().hex
            self.meta.add(
                ids=[_CHANGES], documents=[""], metadatas=[{BODY_KEY: body}], embeddings=[_META_VECTOR]
            )
            token = read_records(self.meta, [_CHANGES]).get(_CHANGES, body)
        # read after the token: a write that began before it is either listed here or complete
        return None if self._journal_keys() else token

    def changes_since(self, token: str | None) -> bool:
        """Whether a chunk may have been added, replaced or deleted since a fit read ``token``
        (:meth:`change_token`; ``None``: unknown, so yes). One read of one meta record."""
        if not token:
            return True
        return read_records(self.meta, [_CHANGES]).get(_CHANGES) != token

    def _journal_keys(self) -> list[str]:
        return [i for i in self.meta.get(include=[])["ids"] if i.startswith("journal:")]

    def journal(self) -> dict[str, dict[str, Any]]:
        """Writes in flight (or left by killed processes), by key."""
        return {
            k: dict(json.loads(body)) for k, body in read_records(self.meta, self._journal_keys()).items()
        }

    def drop_journal(self, key: str) -> None:
        self.meta.delete(ids=[key])

    def probe(self) -> None:
        """Read a little of every part (records, one vector, the version records) so a damaged
        store fails here, on open, rather than in the middle of a later call."""
        self.chunks.count()
        self.chunks.get(limit=1, include=["embeddings"])
        self.meta.get(ids=["active"], include=["documents"])
        self.centroids.count()

    def versions(self) -> list[int]:
        got = self.meta.get(include=[])
        return sorted(int(i.split(":v", 1)[1]) for i in got["ids"] if i.startswith("model:v"))

    def centroid_versions(self) -> set[int]:
        """Versions that have centroid rows (a crash may leave some without a payload)."""
        versions: set[int] = set()
        offset = 0
        while True:
            got = self.centroids.get(include=["metadatas"], limit=5000, offset=offset)
            if not got["ids"]:
                return versions
            versions.update(int((m or {}).get("version", -1)) for m in got["metadatas"])
            offset += len(got["ids"])

    def leftover_versions(self) -> set[int]:
        """Versions that still have centroid rows, a centroid copy or assignment parts, whether or
        not a record lists them (a prune killed after deleting a record leaves such parts)."""
        versions = self.centroid_versions()
        for key in self.meta.get(include=[])["ids"]:
            if key.startswith(("centroids:v", "assign:v")):
                versions.add(int(key.split(":v", 1)[1].split(":", 1)[0]))
        return versions

    def save_model(self, version: int, payload: dict[str, Any], centroids: np.ndarray) -> None:
        """Store a version's centroids ``(k, d)`` and its JSON payload (not yet active)."""
        ids = [f"v{version}:{c}" for c in range(len(centroids))]
        for start in range(0, len(ids), self.batch_size):
            stop = start + self.batch_size
            self.centroids.upsert(
                ids=ids[start:stop],
                embeddings=np.asarray(centroids[start:stop], dtype=np.float32),
                metadatas=[
                    {"version": int(version), "cluster": c} for c in range(start, min(stop, len(ids)))
                ],
            )
        self._put_centroid_copy(version, np.asarray(centroids, dtype=np.float32))
        self.update_model(version, payload)

    def _put_centroid_copy(self, version: int, centroids: np.ndarray) -> None:
        """The centroids ``(k, d)`` float32 also as a record of the meta collection.

        Chroma keeps vectors in a per-process in-memory index: an embedded store opened by two
        processes does not see the other's new vectors ("Error finding id"), while records
        (documents) are read from sqlite and are always current. Readers load centroids from
        this copy first, so a long-lived reader can switch to another process's version.
        """
        doc = json.dumps(
            {
                "shape": list(centroids.shape),
                "data": base64.b64encode(np.ascontiguousarray(centroids, dtype="<f4").tobytes()).decode(),
            }
        )
        self.meta.upsert(ids=[f"centroids:v{version}"], documents=[doc], embeddings=[_META_VECTOR])

    def _centroid_copy(self, version: int) -> np.ndarray | None:
        got = self.meta.get(ids=[f"centroids:v{version}"], include=["documents"])
        return _decode_centroids(got["documents"][0]) if got["ids"] else None

    def save_centroids(self, version: int, clusters: Sequence[int], centroids: np.ndarray) -> None:
        """Overwrite some centroids of a stored version in place (online updates).

        Args:
            clusters: positions to overwrite.
            centroids: ``(len(clusters), d)`` float32, L2-normalized.
        """
        rows = [int(c) for c in clusters]
        copy = self._centroid_copy(version)
        if copy is not None:
            copy = copy.copy()
            copy[rows] = np.asarray(centroids, dtype=np.float32)
            self._put_centroid_copy(version, copy)
        for start in range(0, len(rows), self.batch_size):
            part = rows[start : start + self.batch_size]
            self.centroids.upsert(
                ids=[f"v{version}:{c}" for c in part],
                embeddings=np.asarray(centroids[start : start + len(part)], dtype=np.float32),
                metadatas=[{"version": int(version), "cluster": c} for c in part],
            )

    def update_model(self, version: int, payload: dict[str, Any]) -> None:
        """Replace the JSON payload of a version (labels, topics)."""
        self.meta.upsert(
            ids=[f"model:v{version}"], documents=[pack_text(json.dumps(payload))], embeddings=[_META_VECTOR]
        )

    def load_model(self, version: int) -> dict[str, Any] | None:
        got = self.meta.get(ids=[f"model:v{version}"], include=["documents"])
        if not got["ids"]:
            return None
        return dict(json.loads(unpack_text(got["documents"][0])))

    def load_model_with_centroids(self, version: int) -> tuple[dict[str, Any] | None, np.ndarray | None]:
        """:meth:`load_model` and the record copy of the centroids (``(k, d)`` float32, ``None`` when
        there is none) in one request: opening a version reads its record in one round trip."""
        model_id, copy_id = f"model:v{version}", f"centroids:v{version}"
        got = self.meta.get(ids=[model_id, copy_id], include=["documents"])
        docs = dict(zip(got["ids"], got["documents"], strict=True))
        payload = dict(json.loads(unpack_text(docs[model_id]))) if model_id in docs else None
        return payload, (_decode_centroids(docs[copy_id]) if copy_id in docs else None)

    def load_centroids(self, version: int, k: int) -> np.ndarray:
        """Centroids ``(k, d)`` float32 of a version, in cluster order (from the record copy when
        there is one: current across processes; else from the centroid collection)."""
        copy = self._centroid_copy(version)
        if copy is not None and copy.shape[0] == k:
            return copy
        ids = [f"v{version}:{c}" for c in range(k)]
        rows: dict[str, np.ndarray] = {}
        for start in range(0, k, self.batch_size):
            got = self.centroids.get(ids=ids[start : start + self.batch_size], include=["embeddings"])
            rows.update(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32), strict=True))
        missing = [i for i in ids if i not in rows]
        if missing:
            raise VersionError(
                f"model version {version} is incomplete ({len(missing)} of {k} centroids missing); "
                "refit or roll back to another version"
            )
        return np.stack([rows[i] for i in ids])

    def delete_model(self, version: int) -> None:
        """Delete a version's payload, then its centroids (never the active one).

        The payload goes first (one atomic delete): a process killed after it leaves only
        centroid rows no version lists, which the next prune removes; never a listed
        version without centroids.
        """
        if self.active_version() == version:
            raise VersionError(f"version {version} is active; roll back to another version first")
        self.meta.delete(ids=[f"model:v{version}"])
        self.delete_centroids(version)

    def delete_centroids(self, version: int) -> None:
        """Delete the centroid rows of ``version`` (and their record copy)."""
        self.meta.delete(ids=[f"centroids:v{int(version)}"])
        got = self.centroids.get(where={"version": int(version)}, include=[])
        if got["ids"]:
            self.centroids.delete(ids=got["ids"])

    def check_version(self, version: int) -> dict[str, Any]:
        """The payload of ``version`` after checking it is complete (payload readable, every centroid).

        Raises:
            VersionError: missing, unreadable payload, or missing centroids.
        """
        try:
            payload = self.load_model(version)
        except ValueError:
            raise VersionError(f"model version {version} has an unreadable record; pick another") from None
        if payload is None:
            raise VersionError(f"model version {version} does not exist; see `cluster-rag versions`")
        try:
            k = int(payload["info"]["k"])
            topics = payload["topics"]
        except (KeyError, TypeError, ValueError):
            raise VersionError(f"model version {version} has an incomplete record; pick another") from None
        if len(topics) != k:
            raise VersionError(f"model version {version} lists {len(topics)} topics for k={k}; pick another")
        self.load_centroids(version, k)
        return payload
