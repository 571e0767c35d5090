"""A :class:`~cluster_rag.backends.SearchBackend` that searches inside Chroma: no chunk vectors
in the client.

Routing stays in the client (the version's centroids, ``O(k·d)``). Two ways to search:

- an unrestricted search (no topics, scope or filter, default route) is Chroma's own
  nearest-neighbour query over the collection (:meth:`ChromaQueryBackend.search_whole`): its
  HNSW index is already there, and it matched or beat the id-restricted query below on
  recall in a fraction of the time (200k chunks, ``ef_search`` 400: 0.972 vs 0.961 recall@10,
  7.7 vs 17.5 ms; 1M, ``ef_search`` 800: 0.910 vs 0.900, 13.9 vs 58.6 ms). Each hit is placed in
  its cluster by scanning the model's ids of the nearest clusters, so hits carry their topic; a
  hit not placed that way (added by another process, or far from its centroid) hands the search
  to the id-restricted query;
- a topic-, scope- or filter-bound search (and any with an explicit ``n_probe``) gathers the
  probed clusters' chunk ids — the version's stored assignment
  (:mod:`cluster_rag.store.snapshots`) plus the chunks added since the fit — and asks Chroma for
  the best of exactly those ids (``collection.query(query_embeddings=[q], ids=<probed ids>,
  where=..., n_results=limit)``), filter included.

The client holds ids and positions (tens of bytes per chunk: ~107 MB for 1M ids) and never a
vector; the server, or a distributed Chroma behind it, does the storage and the scan. Recall on a
server is Chroma's HNSW recall: collections created on a server get
:data:`~cluster_rag.store.chroma_store.SERVER_EF_SEARCH`.

When to choose which backend (the loader picks by where the store lives):

- embedded folder: :class:`~cluster_rag.routing.RoutingIndex` over the memory-mapped
  vector snapshot (scans the probed clusters' rows in place: ~1 ms at 200k, ~6-8 ms at 1M;
  opens without reading vectors out of Chroma): the fastest at a given recall on one machine;
- Chroma server (``ClusterIndex.connect``): this backend, so several client processes
  share one server and each holds only the model and the id lists;
- a server client that must scan in-process anyway (very high query rates over a small
  collection) can still read the vectors by id: ``numpy_loader`` does that when asked.

An id filter was chosen over one Chroma collection per cluster: per-cluster
collections would copy every vector again on each refit (the write item 1 of issue 17
removes), while an id-restricted query needs nothing written at fit time.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .routing import Candidates
from .store import ChromaStore, added_key, snapshots, version_key

__all__ = [
    "PLACE_OWN",
    "PLACE_PREFETCH",
    "PLACE_ROWS",
    "ChromaQueryBackend",
    "HeldIds",
    "StoredIds",
    "chroma_loader",
    "is_server_store",
]

#: Most model ids :meth:`ChromaQueryBackend.search_whole` scans (nearest clusters first) to place
#: its hits before handing the search to the routed id-restricted query.
PLACE_ROWS = 50_000
#: Rows of the nearest clusters whose stored ids a hit placement reads in its first request.
PLACE_PREFETCH = 3_000
#: A hit not among those is looked for in the clusters of its own nearest centroids (this many).
PLACE_OWN = 1

_EMPTY = Candidates(np.empty(0, object), np.empty(0, np.float32), np.empty(0, np.int64))


class HeldIds:
    """Cluster-sorted ids held in memory (``(n,)`` object)."""

    def __init__(self, ids: np.ndarray | Sequence[str]) -> None:
        self._ids = np.asarray(ids, dtype=object)

    def __len__(self) -> int:
        return len(self._ids)

    def rows(self, lo: int, hi: int) -> list[str]:
        """Ids of rows ``lo .. hi``."""
        out: list[str] = self._ids[lo:hi].tolist()
        return out

    def prefetch(self, spans: Sequence[tuple[int, int]]) -> None:
        """Nothing to read (held in memory)."""

    def held(self, lo: int, hi: int) -> bool:
        """Whether rows ``lo .. hi`` are in memory (always)."""
        return True

    def array(self) -> np.ndarray:
        """Every id, ``(n,)`` object."""
        return self._ids


class StoredIds:
    """A version's cluster-sorted ids read from the store part by part
    (:data:`~cluster_rag.store.snapshots.PART_ROWS` ids each) as searches ask for rows: opening reads
    none of them, a first search the one to three parts its clusters sit in (at 1M chunks, 50 parts
    of JSON, ~0.13 s to read and check all of them embedded, more over HTTP). Every id is read and the
    whole assignment checked against its digest the first time all of them are asked for.

    Args:
        store: the store holding the parts.
        version: the model version.
        entry: the version record's ``assignment`` entry.
    """

    def __init__(self, store: ChromaStore, version: int, entry: dict[str, Any]) -> None:
        self._store, self._version, self._entry = store, version, entry
        self._n = int(entry["n"])
        self._loaded: dict[int, list[str]] = {}
        self._all: np.ndarray | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._n

    def rows(self, lo: int, hi: int) -> list[str]:
        """Ids of rows ``lo .. hi`` (reads the parts they sit in, once)."""
        if self._all is not None:
            out: list[str] = self._all[lo:hi].tolist()
            return out
        if hi <= lo:
            return []
        first, last = lo // snapshots.PART_ROWS, (hi - 1) // snapshots.PART_ROWS
        parts = self._parts(range(first, last + 1))
        rows: list[str] = []
        for p in range(first, last + 1):
            base = p * snapshots.PART_ROWS
            rows.extend(parts[p][max(lo - base, 0) : hi - base])
        return rows

    def prefetch(self, spans: Sequence[tuple[int, int]]) -> None:
        """Read the parts rows ``lo .. hi`` of each span sit in, in one request."""
        if self._all is None:
            step = snapshots.PART_ROWS
            wanted = {p for lo, hi in spans if hi > lo for p in range(lo // step, (hi - 1) // step + 1)}
            self._parts(sorted(wanted))

    def held(self, lo: int, hi: int) -> bool:
        """Whether rows ``lo .. hi`` are in memory already (reading them needs no request)."""
        if self._all is not None or hi <= lo:
            return True
        step = snapshots.PART_ROWS
        return all(p in self._loaded for p in range(lo // step, (hi - 1) // step + 1))

    def array(self) -> np.ndarray:
        """Every id ``(n,)`` object, checked against the assignment's digest."""
        if self._all is None:
            parts = self._parts(range(int(self._entry["parts"])))
            ids = [cid for p in range(int(self._entry["parts"])) for cid in parts[p]]
            snapshots.check_assignment(ids, self._entry)
            with self._lock:
                self._all = np.asarray(ids, dtype=object)
                self._loaded = {}
        return self._all

    def _parts(self, wanted: Sequence[int]) -> dict[int, list[str]]:
        with self._lock:
            missing = [p for p in wanted if p not in self._loaded]
            if missing:
                self._loaded.update(snapshots.read_parts(self._store, self._version, self._entry, missing))
            return {p: self._loaded[p] for p in wanted}


class ChromaQueryBackend:
    """Search of one version's chunks inside Chroma (see the module docstring).

    Args:
        store: the :class:`~cluster_rag.store.ChromaStore` holding the chunks.
        ids: ``(n,)`` object ids the version was fitted on, cluster-sorted, or a
            :class:`StoredIds` reading them from the store as searches need them.
        offsets: ``(k+1,)`` int64; cluster ``c`` is ``ids[offsets[c]:offsets[c+1]]``.
        added: ``(ids, labels)`` of chunks added since the fit (labels ``(b,)`` int64).
        centroids: ``(k, d)`` float32, the version's; lets a hit placement look in the hit's own
            nearest clusters (:meth:`search_whole`).
    """

    def __init__(
        self,
        store: ChromaStore,
        ids: np.ndarray | StoredIds,
        offsets: np.ndarray,
        added: tuple[Sequence[str], np.ndarray] | None = None,
        *,
        centroids: np.ndarray | None = None,
    ) -> None:
        self.store = store
        self._centroids = None if centroids is None else np.asarray(centroids, dtype=np.float32)
        self._ids: HeldIds | StoredIds = ids if isinstance(ids, StoredIds) else HeldIds(ids)
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._added_ids = np.asarray(list(added[0]) if added else [], dtype=object)
        self._added_labels = np.asarray(added[1] if added else [], dtype=np.int64)
        self._gone: frozenset[str] = frozenset()

    # shape -----------------------------------------------------------------------
    @property
    def k(self) -> int:
        return len(self._offsets) - 1

    def __len__(self) -> int:
        if not self._gone:
            return len(self._ids) + len(self._added_ids)
        return len(self.ids())

    def sizes(self) -> np.ndarray:
        """``(k,)`` int64 chunks per position."""
        return np.bincount(self.labels(), minlength=self.k).astype(np.int64)

    def ids(self) -> np.ndarray:
        """Every chunk id, ``(n,)`` object (fitted, then added)."""
        return self._all()[0]

    def labels(self) -> np.ndarray:
        """Position of each id of :meth:`ids`, ``(n,)`` int64."""
        return self._all()[1]

    def _all(self) -> tuple[np.ndarray, np.ndarray]:
        base_labels = np.repeat(np.arange(self.k, dtype=np.int64), np.diff(self._offsets))
        ids = np.concatenate([self._ids.array(), self._added_ids])
        labels = np.concatenate([base_labels, self._added_labels])
        if self._gone:
            keep = np.fromiter((cid not in self._gone for cid in ids), dtype=bool, count=len(ids))
            ids, labels = ids[keep], labels[keep]
        return ids, labels

    def _cluster_ids(self, clusters: np.ndarray) -> tuple[list[str], list[int]]:
        out: list[str] = []
        labels: list[int] = []
        chosen = np.asarray(clusters, dtype=np.int64).tolist()
        self._ids.prefetch([(int(self._offsets[c]), int(self._offsets[c + 1])) for c in chosen])
        for c in chosen:
            part = self._ids.rows(int(self._offsets[c]), int(self._offsets[c + 1]))
            out.extend(part)
            labels.extend([c] * len(part))
        if len(self._added_ids):
            mask = np.isin(self._added_labels, clusters)
            out.extend(self._added_ids[mask].tolist())
            labels.extend(self._added_labels[mask].tolist())
        if self._gone:
            pairs = [(cid, lab) for cid, lab in zip(out, labels, strict=True) if cid not in self._gone]
            out, labels = [p[0] for p in pairs], [p[1] for p in pairs]
        return out, labels

    # reads -------------------------------------------------------------------------
    def search(
        self,
        query: np.ndarray,
        clusters: np.ndarray,
        limit: int | None = None,
        *,
        where: dict[str, Any] | None = None,
    ) -> Candidates:
        """Best chunks of ``clusters`` for ``query`` ``(d,)``, scored by Chroma (cosine = 1 - distance).

        ``where``: a Chroma metadata filter applied in the same query (fewer than ``limit`` chunks
        come back when fewer pass).
        """
        ids, labels = self._cluster_ids(clusters)
        if not ids:
            return _EMPTY
        n = len(ids) if limit is None else min(limit, len(ids))
        # a bounded search (the hits themselves) reads their texts and metadata in the same call,
        # so a search is one request to the server; an unbounded one (filter widening) only scores
        records = limit is not None
        got = self.store.chunks.query(
            query_embeddings=[np.asarray(query, dtype=np.float32)],
            ids=ids,
            n_results=n,
            where=where,
            include=["distances", "documents", "metadatas"] if records else ["distances"],
        )
        found: list[str] = list(got["ids"][0])
        position = dict(zip(ids, labels, strict=True))
        scores = 1.0 - np.asarray(got["distances"][0], dtype=np.float32)
        cands = Candidates(
            np.asarray(found, dtype=object),
            scores,
            np.asarray([position[cid] for cid in found], dtype=np.int64),
            (list(got["documents"][0]), list(got["metadatas"][0])) if records else None,
        )
        return cands.take(np.argsort(-scores, kind="stable"))

    def search_where(
        self, query: np.ndarray, clusters: np.ndarray, limit: int, where: dict[str, Any]
    ) -> Candidates:
        """:meth:`search` with ``where`` applied by Chroma inside the same query."""
        return self.search(query, clusters, limit, where=where)

    def search_whole(self, query: np.ndarray, limit: int, order: np.ndarray) -> Candidates | None:
        """Chroma's own nearest-neighbour query over the whole collection (its HNSW index: one request,
        texts and metadata included), each hit placed in its cluster by looking for its id in the
        model's clusters: the ones nearest the query (``order``, ``(k,)`` int64, most similar centroid
        first; :data:`PLACE_PREFETCH` rows), then those further along ``order`` whose ids are in
        memory already, then the hit's own nearest centroids' (:data:`PLACE_OWN`; its vector read
        back), then further along ``order`` up to :data:`PLACE_ROWS` rows. The ids
        are read part by part (:class:`StoredIds`) in a few requests, then kept: at 1M chunks a
        first search whose hits lay outside the query's nearest clusters read one part per cluster
        (~30 requests, 0.3 s) before the hit's own centroids were looked at.

        At 200k chunks on a server (``ef_search`` 400) this answered at 0.972 recall@10 in 7.7 ms where
        the id-restricted query over the routed clusters took 17.5 ms for 0.961: an unrestricted
        search is best left to the index Chroma already keeps; routing restricts the topic-, scope-
        and filter-bound searches (:meth:`search`).

        Returns:
            The hits, best first; ``None`` when one of them is not a chunk of this model within the
            scan (added by another process since this model was read): the caller then runs the
            routed :meth:`search`, which lists exactly the model's chunks.
        """
        got = self.store.chunks.query(
            query_embeddings=[np.asarray(query, dtype=np.float32)],
            n_results=limit,
            include=["distances", "documents", "metadatas"],
        )
        found: list[str] = list(got["ids"][0])
        if not found:
            return None
        place = self._place(found, order)
        if place is None:
            return None
        scores = 1.0 - np.asarray(got["distances"][0], dtype=np.float32)
        cands = Candidates(
            np.asarray(found, dtype=object),
            scores,
            np.asarray([place[cid] for cid in found], dtype=np.int64),
            (list(got["documents"][0]), list(got["metadatas"][0])),
        )
        return cands.take(np.argsort(-scores, kind="stable"))

    def _place(self, wanted: list[str], order: np.ndarray) -> dict[str, int] | None:
        """Cluster position of each id of ``wanted`` (:meth:`search_whole`); ``None`` if one is not found."""
        rest = set(wanted)
        if rest & self._gone:
            return None
        out: dict[str, int] = {}
        if len(self._added_ids):
            added = self._added_position()
            for cid in [c for c in rest if c in added]:
                out[cid] = added[cid]
                rest.discard(cid)
        nearest = np.asarray(order, dtype=np.int64).tolist()
        ends = np.cumsum(np.diff(self._offsets)[nearest])  # rows up to and including each cluster
        done: set[int] = set()

        def scan(clusters: list[int]) -> None:
            todo = [c for c in clusters if c not in done]
            self._ids.prefetch([(int(self._offsets[c]), int(self._offsets[c + 1])) for c in todo])
            for c in todo:
                done.add(c)
                lo, hi = int(self._offsets[c]), int(self._offsets[c + 1])
                for cid in rest.intersection(self._ids.rows(lo, hi)):
                    out[cid] = c
                    rest.discard(cid)
                if not rest:
                    return

        # 1. the clusters nearest the query, PLACE_PREFETCH rows, in one request
        scan(nearest[: max(1, int(np.searchsorted(ends, PLACE_PREFETCH, side="right")))])
        # 2. further out along the query's order (up to PLACE_ROWS rows), over the ids already in
        #    memory (no request)
        if rest:
            within = nearest[: int(np.searchsorted(ends, PLACE_ROWS, side="right"))]
            scan([c for c in within if self._ids.held(int(self._offsets[c]), int(self._offsets[c + 1]))])
        # 3. each remaining hit's own nearest centroid's cluster (its vector read back: one small
        #    request); a chunk sits there unless the fit's last centroid update moved it (then 4.)
        if rest and self._centroids is not None:
            got = self.store.get(sorted(rest), include=["embeddings"])
            if got["ids"]:
                sims = np.asarray(got["embeddings"], dtype=np.float32) @ self._centroids.T
                own = np.argsort(-sims, axis=1)[:, :PLACE_OWN]
                scan(list(dict.fromkeys(int(c) for c in own.T.ravel())))
        # 4. further out along the query's order, each request reading as many rows again as scanned
        scanned, i = 0, 0
        while rest and scanned < PLACE_ROWS and i < len(nearest):
            budget = min(scanned + max(PLACE_PREFETCH, scanned), PLACE_ROWS)
            stop = min(len(nearest), max(i + 1, int(np.searchsorted(ends, budget, side="right"))))
            scan(nearest[i:stop])
            scanned, i = int(ends[stop - 1]), stop
        return None if rest else out

    def _added_position(self) -> dict[str, int]:
        cached: dict[str, int] | None = self.__dict__.get("_added_map")
        if cached is None:
            cached = dict(zip(self._added_ids.tolist(), self._added_labels.tolist(), strict=True))
            self.__dict__["_added_map"] = cached
        return cached

    def vectors(self) -> np.ndarray:
        """Vectors in :meth:`ids` order ``(n, d)`` float32, fetched from Chroma."""
        return _fetch(self.store, self.ids())

    def members(self, cluster: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids ``(m,)`` and vectors ``(m, d)`` float32 of one cluster (vectors fetched)."""
        ids = np.asarray(self._cluster_ids(np.asarray([cluster]))[0], dtype=object)
        return ids, _fetch(self.store, ids)

    # writes (copy-on-write) --------------------------------------------------------
    def with_added(self, ids: Sequence[str], vectors: np.ndarray, labels: np.ndarray) -> ChromaQueryBackend:
        """A new backend that also lists these rows (their vectors are already in Chroma)."""
        clone = copy.copy(self)
        clone.__dict__.update(
            _added_ids=np.concatenate([self._added_ids, np.asarray(list(ids), dtype=object)]),
            _added_labels=np.concatenate([self._added_labels, np.asarray(labels, dtype=np.int64)]),
            _gone=self._gone - set(ids),
            _added_map=None,
        )
        return clone

    def without(self, ids: set[str]) -> ChromaQueryBackend:
        """A new backend without these chunk ids."""
        clone = copy.copy(self)
        clone.__dict__["_gone"] = self._gone | frozenset(ids)
        return clone


def is_server_store(store: ChromaStore) -> bool:
    """Whether ``store`` talks to a Chroma server over HTTP (then :func:`chroma_loader` is the default)."""
    return store.is_remote


def _fetch(store: ChromaStore, ids: np.ndarray) -> np.ndarray:
    """Vectors ``(len(ids), d)`` float32 of ids read from Chroma, in that order."""
    out = np.zeros((len(ids), store.dimension), np.float32)
    step = store.batch_size
    for start in range(0, len(ids), step):
        part = [str(x) for x in ids[start : start + step]]
        got = store.get(part, include=["embeddings"])
        rows = {cid: i for i, cid in enumerate(part)}
        for cid, vec in zip(got["ids"], got["embeddings"], strict=True):
            out[start + rows[cid]] = np.asarray(vec, dtype=np.float32)
    return out


def chroma_loader(store: ChromaStore) -> Any:
    """A :data:`~cluster_rag.model.ContentsLoader` building a :class:`ChromaQueryBackend`: the
    stored assignment, plus the added-since-fit chunks found by their ``cr_added_v<N>`` mark
    (ids and metadata only); when the chunk count does not add up, the stored ids are listed
    (no vectors) to drop deleted ones and place chunks written by a process on an older version.
    When the store's change token is the one the fit read (nothing written since), neither full
    pass runs: opening reads only the version record.

    Falls back to :func:`~cluster_rag.model.numpy_loader` for versions without a stored assignment.
    """
    from .model import AddedLog, VersionRecord, numpy_loader

    def load(record: VersionRecord) -> tuple[Any, AddedLog]:
        version = record.info.version
        entry = record.extras.get("assignment")
        if entry is None:
            return numpy_loader(store)(record)
        fitted: StoredIds | np.ndarray
        if snapshots.parts_readable_singly(store, version, entry):
            fitted = StoredIds(store, version, entry)
        else:  # parts written before they carried their digest: read and check them all now
            whole = snapshots.load_assignment(store, version, entry)
            if whole is None:
                return numpy_loader(store)(record)
            fitted = whole.ids
        offsets = np.asarray(entry["offsets"], dtype=np.int64)
        if not store.changes_since(entry.get("changes_seen")):  # the chunks are the fitted ones
            return ChromaQueryBackend(store, fitted, offsets, centroids=record.centroids), AddedLog([])
        memo: dict[str, int] = {}

        def position_of() -> dict[str, int]:  # built only when needed (~0.15 s per 1M ids)
            if not memo:
                every = fitted.array() if isinstance(fitted, StoredIds) else fitted
                memo.update(snapshots.Assignment(every, offsets, str(entry["digest"])).position_of)
            return memo

        key, mark = version_key(version), added_key(version)
        add_ids: list[str] = []
        add_pos: list[int] = []
        # the count and the scan for added chunks are both full passes on the server: run them at once
        with ThreadPoolExecutor(1, thread_name_prefix="cluster-rag-count") as pool:
            counted = pool.submit(store.count)
            for got in store.iter_all(include=["metadatas"], where={mark: {"$gte": 1}}):
                pos = position_of()
                for cid, meta in zip(got["ids"], got["metadatas"], strict=True):
                    if cid not in pos:
                        add_ids.append(cid)
                        add_pos.append(int((meta or {}).get(key, -1)))
            total = counted.result()
        gone: set[str] = set()
        if total != len(fitted) + len(add_ids):
            pos = position_of()
            stored: set[str] = set()
            for got in store.iter_all(include=[]):
                stored.update(got["ids"])
            gone = {cid for cid in pos if cid not in stored}
            unknown = sorted(stored - pos.keys() - set(add_ids))
            add_ids.extend(unknown)
            add_pos.extend([-1] * len(unknown))
        labels = np.asarray(add_pos, dtype=np.int64)
        missing = (labels < 0) | (labels >= len(record.centroids))
        if missing.any():
            from .clustering import assign

            vecs = _fetch(store, np.asarray(add_ids, dtype=object)[missing])
            labels[missing] = assign(vecs, record.centroids)[0]
        backend = ChromaQueryBackend(store, fitted, offsets, (add_ids, labels), centroids=record.centroids)
        if gone:
            backend = backend.without(gone)
        return backend, AddedLog(list(add_ids))

    return load
