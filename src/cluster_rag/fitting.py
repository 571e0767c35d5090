"""Stored vectors → a new model version → the atomic switch.

A refit writes the version's assignment once (cluster-sorted ids in the
``NAME__meta`` collection, and for an embedded store a memory-mappable vector
snapshot next to it: :mod:`cluster_rag.store.snapshots`; no chunk metadata is
rewritten), describes the topics
(c-TF-IDF keywords, representative chunks), matches them to the previous
version's so stable ids and labels carry over (:mod:`cluster_rag.versioning`),
calibrates the default route (:mod:`cluster_rag.routing`), stores centroids and
the JSON payload, and only then switches the ``active`` record. A process killed
at any point before the switch leaves the previous version active and complete.
Old versions beyond ``keep_versions`` are pruned after the switch (their
centroids, payload, assignment, snapshot and the ``cr_v<N>`` keys of chunks added
after them; never chunks).

Memory: a fit holds the vectors once, ``(n, d)`` float32. Everything derived from
them is computed in blocks (cluster sums and leave-one-out distances in float64
blocks, the inertia, the snapshot written with plain file writes); the keywords of
a large fit come from a sample of each topic's texts, read while the k-means runs
when it leaves a core idle (:mod:`cluster_rag.topic_texts`); the new version's
search backend maps the snapshot just written instead of copying the vectors. A
refit of an embedded store reads the fitted vectors from the active version's
snapshot, and any fit reads the vectors of recent adds from their add logs
(:mod:`cluster_rag.store.vector_log`); only the rest come from Chroma. Measured at
200k synthetic chunks (``python -m bench scale``): peak RSS above the opened process
2.6x the raw vector bytes (was 9.9x).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .backends import build_numpy_backend, build_sorted_backend
from .backends_chroma import is_server_store
from .clustering import SphericalKMeans, assign, default_k, fit_any, resolve_engine, validate_k
from .clustering.online import BLOCK_ROWS, cluster_sums, initial_state
from .config import IndexConfig
from .drift import compute_baseline
from .errors import InvalidKError, NotFittedError, VersionError
from .hierarchy import version_tree
from .labeling import ctfidf_keywords, keyword_label, representative_indices
from .model import AddedLog, ClusterModel, default_loader, positions_of, record_from_payload
from .routing import Calibration, PseudoQueries, calibrate, pseudo_queries
from .store import ChromaStore, added_key, snapshots, vector_log, version_key
from .store.chroma_store import owner_alive
from .topic_texts import TextPrefetch, core_free_during_kmeans, keyword_rows, read_texts
from .types import ModelInfo, Topic
from .versioning import RefitReport, TopicMatching, match_topics

__all__ = [
    "FitRequest",
    "Previous",
    "activate",
    "drop_orphans",
    "fit_version",
    "previous_of",
    "prune_versions",
]

log = logging.getLogger("cluster_rag")

#: Neighbours per pseudo-query in the route's calibration (recall@10 is what it targets).
CALIBRATION_TOP_K = 10


@dataclass(frozen=True)
class FitRequest:
    """How to cluster (validated by :meth:`cluster_rag.ClusterIndex.fit`).

    Attributes:
        k: clusters; ``None`` or ``"auto"``: :func:`~cluster_rag.clustering.default_k` (``"auto"``: broad
            topics come from the topic tree, as after every fit).
        engine: k-means engine name.
        clusterer: any scikit-learn-style estimator (overrides ``k`` and ``engine``).
        n_init: k-means restarts (``None``: engine default).
        matching: thresholds of topic matching against the previous version.
        reduce_dim: PCA components to cluster in (``None``: none).
    """

    k: int | str | None = None
    engine: str = "auto"
    clusterer: Any = None
    n_init: int | None = None
    matching: TopicMatching | None = None
    reduce_dim: int | None = None


@dataclass(frozen=True)
class Previous:
    """The version active when a refit started, as topic matching needs it.

    Attributes:
        labels: ``(n,)`` position of each chunk of the refit, in its order.
        fitted: ``(n,)`` bool: the chunk was one the previous version was fitted on.
    """

    version: int
    topics: list[Topic]
    centroids: np.ndarray
    labels: np.ndarray
    fitted: np.ndarray
    next_topic_id: int
    tree: dict[str, Any] | None = None


def previous_of(
    store: ChromaStore,
    model: ClusterModel | None,
    ids: list[str],
    vectors: np.ndarray,
    *,
    assignment: snapshots.Assignment | None = None,
) -> Previous | None:
    """The active version with each chunk's position in it, for topic matching.

    Args:
        ids: ``(n,)`` chunk ids of the refit; ``vectors``: ``(n, d)`` float32 in that order.
        assignment: ``model``'s stored assignment when the caller has already read it
            (``None``: read here, when the version has one).
    """
    if model is None:
        return None
    version = model.version
    key, mark = version_key(version), added_key(version)
    stored = assignment if assignment is not None else _active_assignment(store, model)
    if stored is None:  # a version written before assignments were stored: its cr_v<N> keys
        by_id: dict[str, dict[str, Any]] = {}
        for got in store.iter_all(include=["metadatas"]):
            by_id.update((cid, m or {}) for cid, m in zip(got["ids"], got["metadatas"], strict=True))
        ordered = [by_id.get(cid, {}) for cid in ids]
        labels = positions_of(version, ordered, vectors, model.centroids)
        fitted = np.fromiter((key in m and mark not in m for m in ordered), dtype=bool, count=len(ids))
    else:
        pos = stored.position_of
        labels = np.fromiter((pos.get(cid, -1) for cid in ids), dtype=np.int64, count=len(ids))
        fitted = labels >= 0
        added: dict[str, int] = {}
        for got in store.iter_all(include=["metadatas"], where={mark: {"$gte": 1}}):
            added.update(
                (cid, int((m or {}).get(key, -1)))
                for cid, m in zip(got["ids"], got["metadatas"], strict=True)
            )
        for i in np.nonzero(~fitted)[0]:
            labels[i] = added.get(ids[i], -1)
        missing = (labels < 0) | (labels >= model.k)
        if missing.any():
            labels[missing] = assign(vectors[missing], model.centroids)[0]
    return Previous(
        version,
        list(model.topics),
        model.centroids,
        labels,
        fitted,
        model.record.next_topic_id,
        model.record.extras.get("tree"),
    )


def _active_assignment(store: ChromaStore, active: ClusterModel | None) -> snapshots.Assignment | None:
    """The stored assignment of the ``active`` version (``None``: none, or a version written
    before assignments were stored, or its parts are unreadable). Read once per fit: at 1M ids it
    is 50 JSON parts and a digest."""
    if active is None:
        return None
    entry = active.record.extras.get("assignment")
    return None if entry is None else snapshots.load_assignment(store, active.version, entry)


def _load_vectors(
    store: ChromaStore,
    active: ClusterModel | None = None,
    fitted: snapshots.Assignment | None = None,
    logs: Sequence[str] = (),
) -> tuple[list[str], np.ndarray]:
    """Every stored chunk id and its vector ``(n, d)`` float32 (no metadata), in Chroma's order.

    A refit of an embedded store whose active version has a snapshot (``fitted``: that version's
    :func:`_active_assignment`) reads the vectors the version was fitted on from it
    (:func:`_from_snapshot`); otherwise every vector is read from Chroma. Either way the vectors
    the add logs ``logs`` hold (:mod:`cluster_rag.store.vector_log`) are read from them instead.
    """
    if active is not None and not is_server_store(store):
        found = _from_snapshot(store, active, fitted, logs)
        if found is not None:
            return found
    return _read_all_vectors(store, logs)


def _from_snapshot(
    store: ChromaStore,
    active: ClusterModel,
    fitted: snapshots.Assignment | None = None,
    logs: Sequence[str] = (),
) -> tuple[list[str], np.ndarray] | None:
    """:func:`_load_vectors` from the active version's memory-mapped snapshot: the stored ids are
    listed (no vectors), chunks marked as added since the fit (``cr_added_v<N>``, which also marks
    a fitted id written again) and ids the snapshot lacks are read from Chroma; every other
    vector is the snapshot's row. Same ids, order and vectors as reading everything, at the cost
    of an id listing. ``None``: the version has no readable snapshot.

    Args:
        fitted: ``active``'s stored assignment when already read (:func:`_active_assignment`).
        logs: add logs to read vectors from before Chroma (:func:`_vectors_of`).
    """
    record = active.record
    fitted = fitted if fitted is not None else _active_assignment(store, active)
    if fitted is None:
        return None
    dim = store.dimension
    path = snapshots.snapshot_path(store, record.info.version, fitted.digest)
    if snapshots.read_snapshot(path, len(fitted), dim) is None:
        return None
    ids = _stored_ids(store)
    mark = added_key(record.info.version)
    pages = store.iter_all(include=[], page=ID_PAGE, where={mark: {"$gte": 1}})
    marked = {cid for got in pages for cid in got["ids"]}
    row_of = {cid: i for i, cid in enumerate(fitted.ids.tolist())}
    rows = np.fromiter((-1 if cid in marked else row_of.get(cid, -1) for cid in ids), np.int64, len(ids))
    fresh = _vectors_of(store, [ids[i] for i in np.nonzero(rows < 0)[0]], logs)
    vectors = np.empty((len(ids), dim), np.float32)
    dest = np.full(len(fitted), -1, dtype=np.int64)
    known = np.nonzero(rows >= 0)[0]
    dest[rows[known]] = known
    if not snapshots.scatter_snapshot(path, len(fitted), dim, dest, vectors):
        return None
    gone: list[int] = []
    for i in np.nonzero(rows < 0)[0].tolist():
        vec = fresh.get(ids[i])
        if vec is None:  # deleted between the listing and the read
            gone.append(i)
        else:
            vectors[i] = vec
    if gone:
        keep = np.ones(len(ids), dtype=bool)
        keep[gone] = False
        ids = [cid for cid, k in zip(ids, keep.tolist(), strict=True) if k]
        vectors = vectors[keep]
    return ids, vectors


#: Ids listed per Chroma ``get`` by :func:`_stored_ids`.
ID_PAGE = 100_000
#: Vectors a first fit reads from Chroma per request (by id: :func:`_read_all_vectors`).
VECTOR_BATCH = 5_000


def _stored_ids(store: ChromaStore) -> list[str]:
    """Every stored chunk id, in Chroma's order (the order :meth:`ChromaStore.iter_all` pages through).

    Pages of :data:`ID_PAGE` ids without vectors, documents or metadata. Paging with ``offset``
    re-scans the rows before each page, so the default pages of 5,000 grow with the square of the
    size (200k rows: 1.45 s in 40 pages against 0.33 s in one call), while one ``get`` of every id
    is slow at 1M (9.2 s; pages of 100,000 or 250,000: 2.7-3.6 s).
    """
    ids: list[str] = []
    for got in store.iter_all(include=[], page=ID_PAGE):
        ids.extend(got["ids"])
    return ids


def _read_all_vectors(store: ChromaStore, logs: Sequence[str] = ()) -> tuple[list[str], np.ndarray]:
    """Every stored chunk id and its vector ``(n, d)`` float32: the ids listed first
    (:func:`_stored_ids`), then the vectors the add logs ``logs`` hold for them, then the rest from
    Chroma by id, :data:`VECTOR_BATCH` at a time. Paging the vectors with ``offset`` re-scans the
    rows before each page: at 1M chunks 119 s against 64 s by id (6 s of it the listing), measured
    in one process on the same store. A chunk deleted meanwhile is left out; one added after the
    listing joins after the fit (late arrivals)."""
    listed = _stored_ids(store)
    vectors, found = vector_log.read_logged(store, listed, logs)  # no logs: zeros, none found
    keep = found.copy()
    todo = np.nonzero(~found)[0]
    for start in range(0, len(todo), VECTOR_BATCH):
        rows = todo[start : start + VECTOR_BATCH]
        got = store.get([listed[i] for i in rows.tolist()], include=["embeddings"])
        row_of = {listed[i]: i for i in rows.tolist()}
        dest = np.fromiter((row_of[cid] for cid in got["ids"]), np.int64, len(got["ids"]))
        if len(dest):
            vectors[dest] = np.asarray(got["embeddings"], dtype=np.float32).reshape(-1, store.dimension)
            keep[dest] = True
    if bool(keep.all()):
        return listed, vectors
    return [cid for cid, k in zip(listed, keep.tolist(), strict=True) if k], vectors[keep]


def _vectors_of(store: ChromaStore, ids: Sequence[str], logs: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Vectors ``(d,)`` float32 of those of ``ids`` still stored, by id: from the add logs
    ``logs`` where they hold the stored row, else from Chroma."""
    out: dict[str, np.ndarray] = {}
    if logs and ids:
        logged, found = vector_log.read_logged(store, ids, logs)
        out.update((ids[i], logged[i]) for i in np.nonzero(found)[0].tolist())
    missing = [cid for cid in ids if cid not in out]
    for start in range(0, len(missing), store.batch_size):
        got = store.get(missing[start : start + store.batch_size], include=["embeddings"])
        out.update(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32), strict=True))
    return out


def _cluster(
    vectors: np.ndarray, request: FitRequest, config: IndexConfig
) -> tuple[np.ndarray, np.ndarray, str, float | None]:
    """Centroids ``(k, d)``, labels ``(n,)``, the engine name and the inertia when the engine
    measured it (``None``: a custom clusterer)."""
    if request.clusterer is not None:
        centroids, labels = fit_any(request.clusterer, vectors)
        return centroids, labels, type(request.clusterer).__name__, None
    k = request.k
    if isinstance(k, str) and k == "auto":
        # the leaves are routing clusters: their number follows the size rule; the number of
        # *broad* topics is chosen from the topic tree every fit builds (hierarchy.choose_broad_k,
        # stored in the tree's evidence). A k sweep stays available: `cluster-rag choose-k`.
        k = default_k(len(vectors))
    if isinstance(k, str):
        raise InvalidKError(f"k={k!r} must be an int, None (the default) or 'auto'")
    k = default_k(len(vectors)) if k is None else k
    validate_k(k, len(vectors))
    km = SphericalKMeans(
        k,
        engine=request.engine,
        random_state=config.seed,
        n_init=request.n_init,
        progress=config.progress,
        reduce_dim=request.reduce_dim,
    ).fit(vectors)
    return km.cluster_centers_, km.labels_, km.engine_, km.inertia_


def fit_version(
    store: ChromaStore, config: IndexConfig, active: ClusterModel | None, request: FitRequest
) -> ClusterModel:
    """Cluster every stored chunk and make the result the new active version.

    Raises:
        NotFittedError: fewer than 2 chunks stored.
        InvalidKError: ``k`` out of range.
    """
    logs = vector_log.log_tokens(store)  # before the chunks are listed: their rows are listed too
    seen = store.change_token()  # before the chunks are read: a later write moves it
    fitted = _active_assignment(store, active)
    ids, vectors = _load_vectors(store, active, fitted, logs)
    if len(ids) < 2:
        raise NotFittedError(
            f"the collection {store.name!r} holds {len(ids)} chunk(s); add at least 2 before fit"
        )
    ahead = _start_ahead(store, ids, vectors, request, config)
    try:
        centroids, labels, engine, inertia = _cluster(vectors, request, config)
    except BaseException:
        if ahead is not None:
            ahead.cancel()
        raise
    if ahead is not None:
        ahead.wait()
    previous = previous_of(store, active, ids, vectors, assignment=fitted)
    return _commit(
        store,
        config,
        ids,
        vectors,
        (centroids, labels, engine, inertia),
        previous,
        request.matching,
        seen,
        ahead,
        logs,
    )


@dataclass
class _Ahead:
    """What a fit computes on an idle core while its k-means runs; none of it depends on the
    clusters: the keyword texts (:class:`~cluster_rag.topic_texts.TextPrefetch`, Chroma reads)
    and the route calibration's pseudo-queries with their exact neighbours
    (:func:`~cluster_rag.routing.pseudo_queries`, an exact scan outside the GIL; at 200k chunks
    the two took ~3 s each after the k-means)."""

    texts: TextPrefetch
    pool: ThreadPoolExecutor
    pseudo: Future[PseudoQueries | None]
    n_rows: int

    def cancel(self) -> None:
        """Stop and wait for both (the fit failed)."""
        self.texts.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        if not self.pseudo.cancelled():
            self.pseudo.exception()  # consumed: the fit's own error is the one raised

    def wait(self) -> None:
        """Wait for the work (it is normally done before the k-means is): nothing runs beside the
        fit's own imports after this."""
        self.pool.shutdown(wait=True)

    def pseudo_for(self, n_rows: int) -> PseudoQueries | None:
        """The pseudo-queries, when computed over the same ``n_rows`` rows (late arrivals: not)."""
        pseudo = self.pseudo.result()
        return pseudo if n_rows == self.n_rows else None


def _start_ahead(
    store: ChromaStore, ids: list[str], vectors: np.ndarray, request: FitRequest, config: IndexConfig
) -> _Ahead | None:
    """Start :class:`_Ahead` when the k-means leaves a core idle (FAISS with fewer OpenMP
    threads than cores: :func:`~cluster_rag.topic_texts.core_free_during_kmeans`); ``None``: all
    of it runs after the k-means, as it always did."""
    if request.clusterer is not None or not core_free_during_kmeans(resolve_engine(request.engine, len(ids))):
        return None
    texts = TextPrefetch(store, ids, config.seed)

    def work() -> PseudoQueries | None:  # one thread, one spare core: the texts, then the scan
        texts.read()
        if texts.cancelled:
            return None
        pseudo = pseudo_queries(vectors, config.calibration_queries, CALIBRATION_TOP_K, config.seed)
        # what the keywords import (scikit-learn's text module, ~0.9 s in a fresh process); the fit
        # waits for this thread before it imports anything itself (two threads importing at once
        # can fail with a circular-import error)
        import sklearn.feature_extraction.text  # noqa: F401

        return pseudo

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cluster-rag-ahead")
    return _Ahead(texts, pool, pool.submit(work), len(ids))


def _join_late_arrivals(
    store: ChromaStore,
    version: int,
    ids: list[str],
    vectors: np.ndarray,
    labels: np.ndarray,
    centroids: np.ndarray,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Chunks added by another process while we fitted: assign them before switching."""
    if store.count() == len(ids):
        return ids, vectors, labels
    known = set(ids)
    extra_ids: list[str] = []
    extra_vecs: list[np.ndarray] = []
    for got in store.iter_all(include=["embeddings"]):
        for cid, vec in zip(got["ids"], got["embeddings"], strict=True):
            if cid not in known:
                extra_ids.append(cid)
                extra_vecs.append(np.asarray(vec, dtype=np.float32))
    if not extra_ids:
        return ids, vectors, labels
    extra = np.stack(extra_vecs)
    extra_labels, _ = assign(extra, centroids)
    store.write_assignments(version, extra_ids, extra_labels, added=True)
    return ids + extra_ids, np.concatenate([vectors, extra]), np.concatenate([labels, extra_labels])


def _commit(
    store: ChromaStore,
    config: IndexConfig,
    ids: list[str],
    vectors: np.ndarray,
    clustered: tuple[np.ndarray, np.ndarray, str, float | None],
    previous: Previous | None,
    matching: TopicMatching | None,
    seen: str | None = None,
    ahead: _Ahead | None = None,
    logs: Sequence[str] = (),
) -> ClusterModel:
    centroids, labels = clustered[0], clustered[1]  # as _cluster returns them
    k = len(centroids)
    version, started_from = store.claim_version()  # compare-and-swap: two fits never share a number
    n_fit = len(ids)
    saved = _save_assignment(store, version, ids, vectors, labels, k)
    try:  # the snapshot's fsync runs meanwhile; it completes before any payload names the file
        ids, vectors, labels = _join_late_arrivals(store, version, ids, vectors, labels, centroids)
        if len(ids) > n_fit:  # chunks the read missed (an older version's writer): readers must scan
            seen = None
        payload = _payload(
            store, config, version, ids, vectors, labels, n_fit, clustered, previous, matching, ahead
        )
        # the change token read before the chunks were: a reader finding it unchanged skips the scans
        payload["assignment"] = {**saved.entry, "changes_seen": seen}
    except BaseException:
        saved.abandon()
        if ahead is not None:
            ahead.cancel()
        raise
    saved.finish()
    store.save_model(version, payload, centroids)
    store.set_active(version, expect=started_from)  # the atomic switch (ConcurrentWriteError if raced)
    vector_log.drop_logs(store, logs)  # their rows are in this version's snapshot now
    prune_versions(store, config.keep_versions)
    record = record_from_payload(payload, centroids)
    loader = default_loader(store)
    if is_server_store(store):  # searches run inside Chroma: keep no vectors in this client
        return ClusterModel(record, loader)
    added = AddedLog(list(ids[n_fit:]))
    mapped = snapshots.read_snapshot(saved.path, n_fit, vectors.shape[1])
    if mapped is None:  # an in-memory store (no folder): one sorted copy in this process
        return ClusterModel(
            record, loader, backend=build_numpy_backend(centroids, ids, vectors, labels), added=added
        )
    # the snapshot just written, memory-mapped: the fitted vectors are not copied again
    late = (ids[n_fit:], vectors[n_fit:], labels[n_fit:])
    backend = build_sorted_backend(centroids, saved.ids, mapped, saved.offsets, late)
    return ClusterModel(record, loader, backend=backend, added=added)


def _payload(
    store: ChromaStore,
    config: IndexConfig,
    version: int,
    ids: list[str],
    vectors: np.ndarray,
    labels: np.ndarray,
    n_fit: int,
    clustered: tuple[np.ndarray, np.ndarray, str, float | None],
    previous: Previous | None,
    matching: TopicMatching | None,
    ahead: _Ahead | None = None,
) -> dict[str, Any]:
    """The version's payload but its ``"assignment"`` entry: topics described and matched to the
    previous version's, the topic tree, the calibrated route, drift baseline and online state.
    ``ids``/``vectors``/``labels`` ``(n,)``/``(n, d)``/``(n,)`` include late arrivals after the
    ``n_fit`` fitted rows; ``ahead``: what was computed while the k-means ran."""
    centroids, _, engine, fit_inertia = clustered
    k = len(centroids)
    import scipy.sparse  # noqa: F401 (here, not first in the worker: two threads importing at once can fail)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cluster-rag-calibrate") as pool:
        # default route: per-query centroid score gap calibrated on chunks as pseudo-queries (a
        # fixed n_probe calibrated that way under-probes real questions; see routing.py). Its
        # matrix products run outside the GIL, beside the topic descriptions' Chroma reads.
        calibration = pool.submit(
            calibrate,
            vectors,
            labels,
            centroids,
            target=config.target_recall,
            n_queries=config.calibration_queries,
            top_k=CALIBRATION_TOP_K,
            seed=config.seed,
            pseudo=ahead.pseudo_for(len(ids)) if ahead is not None else None,
        )
        # then, on the same worker, the drift baseline and online state (blockwise products)
        stats = pool.submit(_fitted_stats, vectors[:n_fit], labels[:n_fit], k)
        topics = describe_topics(
            store,
            ids,
            vectors,
            centroids,
            labels,
            progress=config.progress,
            seed=config.seed,
            texts=ahead.texts if ahead is not None else None,
        )
        topics, refit, next_id = _matched(topics, centroids, labels[:n_fit], previous, matching)
        # topic tree over the leaves, parent ids carried over (see hierarchy.py); parents draw ids
        # from the topic counter, so the stored counter moves past them
        tree = version_tree(
            centroids,
            np.bincount(labels, minlength=k),
            [t.id for t in topics],
            next_id,
            previous.tree if previous is not None else None,
            random_state=config.seed,
        )
        next_id = tree.next_id
        cal = calibration.result()
    if fit_inertia is None:
        inertia = _inertia(vectors, centroids, labels)
    else:  # the k-means measured it on the rows it fitted: only late arrivals are added
        inertia = fit_inertia + _inertia(vectors[n_fit:], centroids, labels[n_fit:])
    info = _info(version, k, len(ids), engine, config.seed, inertia, cal, store.model_name)
    baseline, online = stats.result()
    return {
        "info": info.to_dict(),
        "topics": [t.to_dict() for t in topics],
        "sizes": np.bincount(labels, minlength=k).astype(int).tolist(),
        "recall_curve": cal.curve.tolist(),
        "baseline": baseline,
        "online": online,
        "next_topic_id": next_id,
        "refit": refit.to_dict() if refit is not None else None,
        "tree": tree.to_dict(),
    }


def _fitted_stats(vectors: np.ndarray, labels: np.ndarray, k: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The drift baseline and the online-update state of the fitted rows ``(n, d)`` / ``(n,)``, as
    stored in the payload (one pass of cluster sums feeds both)."""
    sums = cluster_sums(vectors, labels, k)
    baseline = compute_baseline(vectors, labels, k, sums).to_dict()
    return baseline, initial_state(vectors, labels, k, sums=sums).to_dict()


def _matched(
    topics: list[Topic],
    centroids: np.ndarray,
    fit_labels: np.ndarray,
    previous: Previous | None,
    matching: TopicMatching | None,
) -> tuple[list[Topic], RefitReport | None, int]:
    """Topics with ids and labels carried over from ``previous`` (first fit: ids ``0..k-1``), the
    refit report and the next unused topic id. ``fit_labels`` ``(n_fit,)``: positions of the chunks
    the fit saw."""
    if previous is None:
        return topics, None, len(centroids)
    # merges/splits/overlap are judged on the chunks the previous version was fitted on:
    # chunks added since were forced into their nearest topic, new topics hide among them
    fitted = previous.fitted
    return match_topics(
        previous.topics,
        previous.centroids,
        previous.labels[fitted],
        topics,
        centroids,
        fit_labels[fitted],
        next_topic_id=previous.next_topic_id,
        previous_version=previous.version,
        matching=matching,
    )


def _info(
    version: int, k: int, n_chunks: int, engine: str, seed: int, inertia: float, cal: Calibration, model: str
) -> ModelInfo:
    """The version's :class:`ModelInfo` (timestamped now, UTC)."""
    return ModelInfo(
        version=version,
        k=k,
        n_chunks=n_chunks,
        engine=engine,
        seed=seed,
        inertia=inertia,
        n_probe=cal.n_probe,
        calibrated_recall=cal.recall,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        embedding_model=model,
        probe_gap=cal.gap,
    )


@dataclass(frozen=True)
class _Saved:
    """What :func:`_save_assignment` wrote: the payload entry, the cluster-sorted ids ``(n,)``
    object, offsets ``(k+1,)`` int64, and the snapshot file (``None``: the store has no folder),
    whose flush may still be running (``pending``: :meth:`finish` before a payload names it)."""

    entry: dict[str, Any]
    ids: np.ndarray
    offsets: np.ndarray
    path: Path | None
    pending: snapshots.PendingSnapshot | None = None

    def finish(self) -> None:
        """The snapshot flushed and in place at :attr:`path`."""
        if self.pending is not None:
            self.pending.finish()

    def abandon(self) -> None:
        """The fit failed: the snapshot's temp file removed."""
        if self.pending is not None:
            self.pending.abandon()


def _save_assignment(
    store: ChromaStore, version: int, ids: list[str], vectors: np.ndarray, labels: np.ndarray, k: int
) -> _Saved:
    """Store the fitted chunks' assignment once and start the vector snapshot of an embedded store
    (see :mod:`cluster_rag.store.snapshots`): a background thread writes and flushes its rows while
    the fit describes the topics (:meth:`_Saved.finish` waits for it)."""
    order, offsets = snapshots.sort_by_cluster(labels, k)
    sorted_ids = [ids[i] for i in order]
    entry = snapshots.save_assignment(store, version, sorted_ids, offsets)
    path = snapshots.snapshot_path(store, version, entry["digest"])
    pending = None if path is None else snapshots.start_snapshot(path, vectors, order)
    return _Saved(entry, np.asarray(sorted_ids, dtype=object), offsets, path, pending)


def _inertia(vectors: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> float:
    """Sum of ``1 - cos(row, its centroid)`` over ``(n, d)`` rows, in blocks (no ``(n, d)`` gather)."""
    total = 0.0
    for start in range(0, len(labels), BLOCK_ROWS):
        rows = slice(start, start + BLOCK_ROWS)
        sims = np.einsum("ij,ij->i", vectors[rows], centroids[labels[rows]])
        total += float(np.sum(1.0 - sims, dtype=np.float64))
    return total


def describe_topics(
    store: ChromaStore,
    ids: list[str],
    vectors: np.ndarray,
    centroids: np.ndarray,
    labels: np.ndarray,
    *,
    progress: bool = False,
    seed: int = 0,
    texts: TextPrefetch | None = None,
) -> list[Topic]:
    """Keyword-labelled topics by position: c-TF-IDF keywords and the chunks nearest each centroid.

    The keywords come from every text, or from an even random sample of each topic above
    :data:`~cluster_rag.topic_texts.KEYWORD_TEXTS` chunks (``seed``;
    :func:`~cluster_rag.topic_texts.keyword_rows`), so a fit never holds every text. Texts
    ``texts`` read ahead are used first; the rest are read from ``store``.

    Args:
        ids: ``(n,)`` chunk ids; their texts are read from ``store`` by id.
        vectors: ``(n, d)`` float32, L2-normalized.
        centroids: ``(k, d)`` float32, L2-normalized.
        labels: ``(n,)`` int64 positions.
    """
    k = len(centroids)
    order, offsets = snapshots.sort_by_cluster(labels, k)
    ahead: Mapping[str, str] = texts.result() if texts is not None else {}
    known = None
    if ahead and texts is not None:
        known = np.zeros(len(ids), dtype=bool)
        known[texts.rows[texts.rows < len(ids)]] = True
    rows = keyword_rows(order, offsets, len(ids), seed, known)
    wanted = [ids[i] for i in rows]
    missing = [cid for cid in wanted if cid not in ahead]
    found = read_texts(store, missing, every=len(missing) == len(ids), progress=progress) if missing else {}
    keywords = ctfidf_keywords([ahead.get(cid) or found.get(cid) or "" for cid in wanted], labels[rows], k)
    topics: list[Topic] = []
    for c in range(k):
        members = order[offsets[c] : offsets[c + 1]]
        rep = members[representative_indices(vectors[members], centroids[c])]
        topics.append(
            Topic(
                id=c,
                size=len(members),
                keywords=keywords[c],
                representative_ids=[ids[i] for i in rep],
                label=keyword_label(keywords[c]),
            )
        )
    return topics


def prune_versions(store: ChromaStore, keep: int) -> None:
    """Drop the oldest inactive versions so at most ``keep`` remain (never the active one)."""
    active = store.active_version()
    drop_orphans(store)
    old = [v for v in store.versions() if v != active]
    for version in old[: max(0, len(old) - (keep - 1))]:
        store.delete_model(version)
        snapshots.delete_assignment(store, version)
        snapshots.delete_snapshots(store, version)
        store.drop_assignments(version)


def activate(store: ChromaStore, version: int | None) -> int:
    """Make ``version`` (default: the newest one older than the active one) active; returns it.

    Raises:
        VersionError: no such version, or no older one kept.
    """
    if version is not None:
        store.check_version(version)  # never activate a version missing its record or centroids
        store.set_active(version)
        return version
    active, kept = store.active_version(), store.versions()
    older = [v for v in kept if active is None or v < active]
    skipped: list[str] = []
    for candidate in reversed(older):
        try:
            store.check_version(candidate)
        except VersionError as exc:
            skipped.append(str(exc))
            continue
        for line in skipped:
            log.warning("rollback skipped a broken version: %s", line)
        store.set_active(candidate)
        return candidate
    detail = f"; skipped broken ones: {' | '.join(skipped)}" if skipped else ""
    raise VersionError(f"no complete version older than {active} is kept; versions: {kept}{detail}")


def drop_orphans(store: ChromaStore) -> list[int]:
    """Remove what killed fits and prunes left: centroid rows, assignment parts, snapshots,
    ``cr_v<N>`` keys and claims of versions that have no record and no running claimant.
    Returns those versions.

    A fit killed midway leaves a claim whose process is gone; a prune killed after deleting a
    record (it goes first) leaves the version's other parts with no claim at all. Leftovers are
    listed before the claims and the claims before the records: a fit claims its number before
    it writes any part and its claim is dropped only once its record is saved, so a running fit
    is always seen as claimed or saved.
    """
    leftovers = store.leftover_versions() | snapshots.snapshot_versions(store)
    claims = store.claims()
    saved = set(store.versions())
    dead = [v for v, c in claims.items() if v not in saved and not owner_alive(c)]
    unclaimed = sorted(leftovers - saved - set(claims))
    for version in dead + unclaimed:
        store.delete_centroids(version)
        snapshots.delete_assignment(store, version)
        snapshots.delete_snapshots(store, version)
        store.drop_assignments(version)
    store.drop_claims(dead + [v for v in claims if v in saved])  # a saved version keeps its number
    return dead + unclaimed
