"""The fitted state of one model version: :class:`ClusterModel`, and how it is read from the store.

A :class:`ClusterModel` is an immutable snapshot. Its small part — the version
record (:class:`ModelInfo`, topics, centroids, per-topic sizes, drift baseline,
online statistics) — is read from the version's JSON payload and centroid rows,
``O(k·d)``, so ``model_info``, ``topics()`` and ``info()`` never touch chunk
vectors. Its large part — the :class:`~cluster_rag.backends.SearchBackend` that
searches inside clusters, and the ids added since the fit — is loaded on first
use, once per snapshot. Writers build new snapshots (:meth:`ClusterModel.evolve`)
and swap them by reference, so a reader holding one never sees two versions.

Topic ids are stable across refits and need not run from 0 to k-1. Centroids,
sizes and the backend work in cluster *positions*; ``topics[pos].id`` maps a
position to its id, and :meth:`ClusterModel.resolve_topics` maps ids or names
back (translation happens only here and at the facade).
"""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from .backends import SearchBackend, build_numpy_backend
from .clustering import assign
from .clustering.online import OnlineState
from .drift import Baseline
from .errors import UnknownTopicError, VersionError
from .hierarchy import TopicTree, node_topic, version_tree
from .store import ChromaStore, added_key, snapshots, version_key
from .types import ModelInfo, Topic
from .versioning import RefitReport

__all__ = [
    "AddedLog",
    "ClusterModel",
    "ContentsLoader",
    "describe_index",
    "VersionRecord",
    "next_topic_id",
    "numpy_loader",
    "positions_of",
    "read_active",
    "read_record",
    "record_from_payload",
    "refit_report",
    "stored_versions",
]


class AddedLog:
    """Ids of chunks added since the fit: an append-only list shared by the successive
    snapshots of one version (appends happen under the write lock); each snapshot
    sees its own prefix, so extending it is O(batch) and never changes older snapshots."""

    __slots__ = ("_ids", "_n")

    def __init__(self, ids: list[str] | None = None) -> None:
        self._ids: list[str] = ids if ids is not None else []
        self._n = len(self._ids)

    def extended(self, ids: Sequence[str]) -> AddedLog:
        """A log that also holds ``ids``; ``self`` still sees only its own prefix."""
        base = self._ids if self._n == len(self._ids) else self._ids[: self._n]
        base.extend(ids)
        return AddedLog(base)

    def without(self, gone: set[str]) -> AddedLog:
        """A new log without the ids in ``gone``."""
        return AddedLog([cid for cid in self.ids() if cid not in gone])

    def ids(self) -> list[str]:
        return self._ids[: self._n]

    def __len__(self) -> int:
        return self._n


@dataclass(frozen=True)
class VersionRecord:
    """What a version's stored record holds; no chunk vectors.

    Attributes:
        info: the version's :class:`ModelInfo`.
        topics: by cluster position; ``topics[pos].id`` is the stable id.
        centroids: ``(k, d)`` float32, L2-normalized.
        sizes: ``(k,)`` int64 chunks per position, kept current by adds and deletes.
        baseline: drift baseline of the fit (``None`` for versions written before it existed).
        online: partial-fit statistics.
        next_topic_id: smallest topic id never used.
        extras: the rest of the payload (``choose_k`` sweep, ``refit`` report, ``recall_curve``).
    """

    info: ModelInfo
    topics: tuple[Topic, ...]
    centroids: np.ndarray
    sizes: np.ndarray
    baseline: Baseline | None = None
    online: OnlineState | None = None
    next_topic_id: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


def next_topic_id(payload: dict[str, Any], topics: Sequence[Topic]) -> int:
    """Smallest topic id never used (payloads before stable ids: max id + 1)."""
    used = max((t.id for t in topics), default=-1) + 1
    return max(int(payload.get("next_topic_id", 0)), used)


def record_from_payload(payload: dict[str, Any], centroids: np.ndarray) -> VersionRecord:
    """Parse a version's JSON payload (see :func:`cluster_rag.fitting.payload_of`)."""
    info = ModelInfo.from_dict(payload["info"])
    topics = tuple(Topic.from_dict(t) for t in payload["topics"])
    raw_sizes = payload.get("sizes")
    sizes = np.asarray(raw_sizes if raw_sizes is not None else [t.size for t in topics], dtype=np.int64)
    known = {"info", "topics", "sizes", "baseline", "online", "next_topic_id"}
    return VersionRecord(
        info=info,
        topics=topics,
        centroids=np.ascontiguousarray(centroids, dtype=np.float32),
        sizes=sizes,
        baseline=Baseline.from_dict(payload["baseline"]) if payload.get("baseline") else None,
        online=OnlineState.from_dict(payload["online"]) if payload.get("online") else None,
        next_topic_id=next_topic_id(payload, topics),
        extras={k: v for k, v in payload.items() if k not in known},
    )


@dataclass(frozen=True)
class _Contents:
    backend: SearchBackend
    added: AddedLog


class _Once:
    """A value computed at most once, on first :meth:`get`, thread-safe."""

    __slots__ = ("_factory", "_lock", "_value")

    def __init__(self, factory: Callable[[], _Contents] | None, value: _Contents | None = None) -> None:
        self._factory, self._value, self._lock = factory, value, threading.Lock()

    @property
    def ready(self) -> bool:
        return self._value is not None

    def get(self) -> _Contents:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    assert self._factory is not None
                    self._value = self._factory()
        return self._value


ContentsLoader = Callable[[VersionRecord], tuple[SearchBackend, AddedLog]]


class ClusterModel:
    """One fitted model version, immutable; what every reader of the fitted state uses.

    Args:
        record: the version record.
        loader: builds the search backend and the added-since-fit log from the store
            on first use (``record`` → ``(backend, added)``).
        backend, added: already built contents (after a fit or a write); then
            ``loader`` is not needed.
    """

    def __init__(
        self,
        record: VersionRecord,
        loader: ContentsLoader | None = None,
        *,
        backend: SearchBackend | None = None,
        added: AddedLog | None = None,
    ) -> None:
        self.record = record
        self._loader = loader
        if backend is not None:
            self._contents = _Once(None, _Contents(backend, added if added is not None else AddedLog()))
        else:
            if loader is None:
                raise ValueError("ClusterModel needs a loader or a backend")
            self._contents = _Once(lambda: _Contents(*loader(record)))

    # the record (no chunk vectors) -------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return self.record.info

    @property
    def version(self) -> int:
        return self.record.info.version

    @property
    def k(self) -> int:
        return len(self.record.topics)

    @cached_property
    def tree(self) -> TopicTree:
        """The topic tree over this version's topics (leaves = topics; see :mod:`cluster_rag.hierarchy`).

        Stored with the version at fit; versions written before the tree existed get one
        built on first read (same rule, parent ids not stored, so not kept across refits).
        """
        data = self.record.extras.get("tree")
        if data:
            return TopicTree.from_dict(data)
        ids = [t.id for t in self.record.topics]
        return version_tree(self.record.centroids, self.record.sizes, ids, self.record.next_topic_id)

    @property
    def topics(self) -> tuple[Topic, ...]:
        """Topics by cluster position (``size`` as stored at fit; see :meth:`sized_topics`)."""
        return self.record.topics

    @property
    def centroids(self) -> np.ndarray:
        """``(k, d)`` float32, L2-normalized, by position."""
        return self.record.centroids

    @property
    def sizes(self) -> np.ndarray:
        """``(k,)`` int64 chunks per position, including chunks added since the fit."""
        return self.record.sizes

    @property
    def baseline(self) -> Baseline | None:
        return self.record.baseline

    @property
    def online(self) -> OnlineState | None:
        return self.record.online

    @cached_property
    def position_of(self) -> dict[int, int]:
        """Stable topic id -> cluster position."""
        return {t.id: pos for pos, t in enumerate(self.record.topics)}

    @cached_property
    def topic_ids(self) -> np.ndarray:
        """``(k,)`` int64 stable topic id of each position."""
        return np.asarray([t.id for t in self.record.topics], dtype=np.int64)

    def sized_topics(self) -> list[Topic]:
        """Topics by position with current sizes."""
        sizes = self.record.sizes
        return [replace(t, size=int(sizes[pos])) for pos, t in enumerate(self.record.topics)]

    # the contents (loaded on first use) ------------------------------------------
    @property
    def loaded(self) -> bool:
        """Whether the backend is in memory (``False`` right after open)."""
        return self._contents.ready

    @property
    def backend(self) -> SearchBackend:
        """The search backend of this version (loaded from the store on first use)."""
        return self._contents.get().backend

    @property
    def added(self) -> AddedLog:
        """Chunks added since the fit (loads the contents)."""
        return self._contents.get().added

    def assignments(self) -> tuple[np.ndarray, np.ndarray]:
        """Every chunk id ``(n,)`` object and its cluster position ``(n,)`` int64."""
        backend = self.backend
        return backend.ids(), backend.labels()

    def members(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids ``(m,)`` and vectors ``(m, d)`` float32 of the cluster at ``position``."""
        return self.backend.members(position)

    # new snapshots -------------------------------------------------------------
    def evolve(
        self,
        *,
        backend: SearchBackend | None = None,
        added: AddedLog | None = None,
        **record_changes: Any,
    ) -> ClusterModel:
        """A new snapshot with some record fields and/or contents replaced.

        Contents not given are carried over when loaded, else loaded lazily by the
        new snapshot (from the store, which already holds every write).
        """
        record = replace(self.record, **record_changes) if record_changes else self.record
        if backend is None and self._contents.ready:
            backend = self.backend
        if backend is not None:
            if added is None:
                added = self.added if self._contents.ready else AddedLog()
            return ClusterModel(record, self._loader, backend=backend, added=added)
        return ClusterModel(record, self._loader)

    # topic lookup ------------------------------------------------------------------
    def resolve_topics(self, items: Sequence[Any]) -> list[int]:
        """Stable topic ids of ids or names; raises :class:`UnknownTopicError` on unknown ones.

        A name matches, in this order: a label (case-insensitive, whitespace folded);
        a label or keyword containing the name as a whole word (``"fees"`` finds
        "Card fees and charges"); a label containing it as a substring. When several
        topics match at the first rule that matches, the error lists them. The id of a
        parent node of the topic tree stands for every topic under it.
        """
        out: list[int] = []
        for item in items:
            if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                out.extend(self._topics_of_id(int(item)))
            elif isinstance(item, str):
                parent = self.parent_of(item)
                if parent is not None:
                    out.extend(self.tree.leaf_ids(parent))
                elif item.strip().isdigit():
                    out.extend(self._topics_of_id(int(item.strip())))
                else:
                    out.append(self._topic_by_name(item))
            else:
                raise UnknownTopicError(
                    f"topic {item!r} ({type(item).__name__}) must be an int id or a str name"
                )
        return out

    def parent_of(self, item: Any) -> int | None:
        """The id of the topic-tree parent node ``item`` names, else ``None``.

        ``item`` is a node id (int or digit string) or a node's name: the keyword label of a
        parent (:func:`cluster_rag.hierarchy.node_topic`, as ``list_topics`` shows it), matched
        case-insensitively and only when no topic has exactly that label.
        """
        found = self.tree.parent_id(item)
        if found is not None or not isinstance(item, str) or item.strip().isdigit():
            return found
        wanted = " ".join(item.split()).casefold()
        if any(" ".join(t.label.split()).casefold() == wanted for t in self.record.topics):
            return None
        return self._parent_labels.get(wanted)

    @cached_property
    def _parent_labels(self) -> dict[str, int]:
        leaves = self.sized_topics()
        tree = self.tree
        labels: dict[str, int] = {}
        for node in tree.nodes:
            if node.level > 0:
                label = node_topic(tree, node.id, leaves).label
                labels.setdefault(" ".join(label.split()).casefold(), node.id)
        return labels

    def _topics_of_id(self, tid: int) -> list[int]:
        """A topic id, or the topic ids under a parent node of the tree."""
        if tid not in self.position_of and tid in {n.id for n in self.tree.nodes}:
            return self.tree.leaf_ids(tid)
        return [self._topic_by_id(tid)]

    def _topic_by_id(self, tid: int) -> int:
        if tid in self.position_of:
            return tid
        known = sorted(self.position_of)
        span = (
            f"topic ids run from 0 to {len(known) - 1}"
            if known == list(range(len(known)))
            else f"topic ids are {known[:30]}{' ...' if len(known) > 30 else ''}"
        )
        text = str(tid) if len(str(tid)) <= 30 else str(tid)[:27] + "..."
        raise UnknownTopicError(f"topic {text} does not exist; {span} (see `cluster-rag topics`)")

    def _topic_by_name(self, name: str) -> int:
        wanted = " ".join(name.split()).casefold()
        topics = self.record.topics
        rules: list[Callable[[Topic], bool]] = [
            lambda t: " ".join(t.label.split()).casefold() == wanted,
            lambda t: _has_word(t.label, wanted) or any(_has_word(w, wanted) for w in t.keywords),
            lambda t: bool(wanted) and wanted in t.label.casefold(),
        ]
        for rule in rules:
            found = [t for t in topics if rule(t)]
            if len(found) == 1:
                return found[0].id
            if len(found) > 1:
                names = [f"{t.id}: {t.label}" for t in found[:8]]
                raise UnknownTopicError(
                    f"topic name {_short(name)!r} matches {len(found)} topics ({'; '.join(names)}); "
                    "use a topic id or a longer name"
                )
        close = difflib.get_close_matches(name, [t.label for t in topics], n=5, cutoff=0.3)
        raise UnknownTopicError(
            f"no topic named {_short(name)!r}; closest names: {close or '(none)'}; "
            "use a topic id or a name from `cluster-rag topics`"
        )


def _has_word(text: str, word: str) -> bool:
    if not word:
        return False
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text.casefold()) is not None


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# reading a version from the store -----------------------------------------------------
def positions_of(
    version: int, metas: Sequence[dict[str, Any]], vectors: np.ndarray, centroids: np.ndarray
) -> np.ndarray:
    """Cluster position of each chunk in ``version`` (``(n,)`` int64): its ``cr_v<N>`` key, or
    the nearest centroid for chunks written without it."""
    key = version_key(version)
    labels = np.array([m.get(key, -1) for m in metas], dtype=np.int64)
    missing = labels < 0
    if missing.any():
        labels[missing] = assign(vectors[missing], centroids)[0]
    return labels


def read_record(store: ChromaStore, version: int) -> VersionRecord | None:
    """The record of ``version`` (payload + centroids, ``O(k·d)``); ``None`` when not stored."""
    payload, copy = store.load_model_with_centroids(version)
    if payload is None:
        return None
    k = int(payload["info"]["k"])
    centroids = copy if copy is not None and copy.shape[0] == k else store.load_centroids(version, k)
    return record_from_payload(payload, centroids)


def read_active(store: ChromaStore) -> ClusterModel | None:
    """The active version as a lazily loaded :class:`ClusterModel`; ``None`` before the first fit."""
    version = store.active_version()
    if version is None:
        return None
    record = read_record(store, version)
    if record is None:
        return None
    return ClusterModel(record, default_loader(store))


def default_loader(store: ChromaStore) -> ContentsLoader:
    """The loader a store gets: a Chroma server's searches run inside Chroma
    (:mod:`cluster_rag.backends_chroma`: no chunk vectors in the client), an embedded or
    in-memory store's in the numpy backend over the memory-mapped snapshot."""
    from .backends_chroma import chroma_loader, is_server_store

    if is_server_store(store):
        loader: ContentsLoader = chroma_loader(store)
        return loader
    return numpy_loader(store)


def numpy_loader(store: ChromaStore) -> ContentsLoader:
    """Loader of the numpy backend.

    Versions with a stored assignment (:mod:`cluster_rag.store.snapshots`): the fitted
    chunks' ids come from the assignment, their vectors from the memory-mapped snapshot
    next to an embedded store (else from Chroma by id); the chunks added since the fit
    are read with a metadata query on ``cr_added_v<N>``. Only when the chunk count does
    not add up (deletes, or adds by a process still on an older version) are the stored
    ids listed (no vectors) to find what went and what came. Neither pass runs when the
    store's change token is the one the fit read (no chunk written since:
    :meth:`~cluster_rag.store.ChromaStore.changes_since`). Older versions: every chunk
    vector and its ``cr_v<N>`` key, read from Chroma.
    """

    def load(record: VersionRecord) -> tuple[SearchBackend, AddedLog]:
        entry = record.extras.get("assignment")
        if entry is not None:
            found = snapshots.load_assignment(store, record.info.version, entry)
            if found is not None:
                return _load_stored(store, record, found)
        version = record.info.version
        key, mark = version_key(version), added_key(version)
        ids, vectors, metas = store.load_all()
        labels = positions_of(version, metas, vectors, record.centroids)
        # added since the fit: marked at add time, or written without this version's key
        # (by a process still on an older version)
        added = [cid for cid, m in zip(ids, metas, strict=True) if mark in m or key not in m]
        return build_numpy_backend(record.centroids, ids, vectors, labels), AddedLog(added)

    return load


def _load_stored(
    store: ChromaStore, record: VersionRecord, fitted: snapshots.Assignment
) -> tuple[SearchBackend, AddedLog]:
    """Contents of a version with a stored assignment (see :func:`numpy_loader`)."""
    from .routing import RoutingIndex

    version, centroids = record.info.version, record.centroids
    dim = centroids.shape[1]
    ids, offsets = fitted.ids, fitted.offsets
    path = snapshots.snapshot_path(store, version, fitted.digest)
    vectors = snapshots.read_snapshot(path, len(ids), dim)
    keep: np.ndarray | None = None
    if vectors is None:  # server mode or no snapshot file: the vectors by id from Chroma
        vectors, keep = _vectors_by_id(store, ids, dim)
    # added since the fit: marked at add time. Version numbers are claimed, never reused, so a
    # mark is never stale; a marked id that the fit also saw was deleted and written again (an
    # edited file re-ingested): its current vector replaces the fitted one
    key, mark = version_key(version), added_key(version)
    add_ids: list[str] = []
    add_vecs: list[np.ndarray] = []
    add_pos: list[int] = []
    entry = record.extras.get("assignment") or {}
    unchanged = not store.changes_since(entry.get("changes_seen"))  # nothing written since the fit
    for got in () if unchanged else store.iter_all(
        include=["embeddings", "metadatas"], where={mark: {"$gte": 1}}
    ):
        for cid, vec, meta in zip(got["ids"], got["embeddings"], got["metadatas"], strict=True):
            add_ids.append(cid)
            add_vecs.append(np.asarray(vec, dtype=np.float32))
            add_pos.append(int((meta or {}).get(key, -1)))
    rewritten = {cid for cid in add_ids if cid in fitted.position_of}
    if rewritten:
        fresh = np.fromiter((cid not in rewritten for cid in ids.tolist()), dtype=bool, count=len(ids))
        keep = fresh if keep is None else keep & fresh
    n_base = len(ids) if keep is None else int(keep.sum())
    if not unchanged and store.count() != n_base + len(add_ids):
        # deletes, or chunks written by a process on an older version: list the stored ids
        stored: set[str] = set()
        for got in store.iter_all(include=[]):
            stored.update(got["ids"])
        present = np.fromiter((cid in stored for cid in ids.tolist()), dtype=bool, count=len(ids))
        keep = present if keep is None else keep & present
        unknown = sorted(stored - fitted.position_of.keys() - set(add_ids))
        if unknown:
            got = store.get(unknown, include=["embeddings"])
            add_ids.extend(got["ids"])
            add_vecs.extend(np.asarray(got["embeddings"], dtype=np.float32))
            add_pos.extend([-1] * len(got["ids"]))
    add_v = np.stack(add_vecs) if add_vecs else np.zeros((0, dim), np.float32)
    add_l = np.asarray(add_pos, dtype=np.int64)
    missing = (add_l < 0) | (add_l >= len(centroids))
    if missing.any():
        add_l[missing] = assign(add_v[missing], centroids)[0]
    added = (add_ids, add_v, add_l)
    if keep is not None and not keep.all():
        labels = fitted.labels[keep]
        counts = np.bincount(labels, minlength=len(centroids))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        ids, vectors = ids[keep], np.asarray(vectors[keep])
    backend = RoutingIndex.from_sorted(centroids, ids, vectors, offsets, added)
    return backend, AddedLog(list(add_ids))


def _vectors_by_id(store: ChromaStore, ids: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectors ``(n, d)`` float32 of ``ids`` read from Chroma, and ``(n,)`` bool: still stored."""
    vectors = np.zeros((len(ids), dim), np.float32)
    keep = np.zeros(len(ids), dtype=bool)
    step = store.batch_size
    for start in range(0, len(ids), step):
        part = [str(x) for x in ids[start : start + step]]
        got = store.chunks.get(ids=part, include=["embeddings"])
        where = {cid: i for i, cid in enumerate(part)}
        rows = np.fromiter((start + where[cid] for cid in got["ids"]), dtype=np.int64, count=len(got["ids"]))
        if len(rows):
            vectors[rows] = np.asarray(got["embeddings"], dtype=np.float32)
            keep[rows] = True
    return vectors, keep


def describe_index(store: ChromaStore, model: ClusterModel | None, location: str) -> dict[str, Any]:
    """What an index holds, JSON-ready, from the version record and counts (no chunk vectors)."""
    out: dict[str, Any] = {
        "location": location,
        "collection": store.name,
        "embedding_model": store.model_name,
        "dimension": store.dimension,
        "chunks": store.count(),
        "fitted": model is not None,
        "versions": store.versions(),
    }
    if model is not None:
        info = model.info
        out.update(
            active_version=info.version,
            k=info.k,
            n_probe=info.n_probe,
            probe_gap=info.probe_gap,
            calibrated_recall=round(info.calibrated_recall, 4),
            engine=info.engine,
            fitted_at=info.created_at,
            chunks_at_fit=info.n_chunks,
            added_since_fit=store.count_added(info.version),
        )
    return out


def stored_versions(store: ChromaStore) -> list[ModelInfo]:
    """Every stored model version's :class:`ModelInfo`, oldest first (version records only)."""
    payloads = (store.load_model(v) for v in store.versions())
    return [ModelInfo.from_dict(p["info"]) for p in payloads if p is not None]


def refit_report(store: ChromaStore, version: int) -> RefitReport | None:
    """What the refit that made ``version`` changed; ``None`` for a first fit.

    Raises:
        VersionError: no such version is kept.
    """
    payload = store.load_model(version)
    if payload is None:
        raise VersionError(f"model version {version} does not exist; see `cluster-rag versions`")
    data = payload.get("refit")
    return RefitReport.from_dict(data) if data else None
