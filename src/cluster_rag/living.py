"""A living index: adds and deletes after a fit, online centroid updates, drift.

After a fit, new chunks join their nearest cluster at once (their ``cr_v<N>`` key
is written with them, marked ``cr_added_v<N>``) and are searchable immediately;
the version's per-topic sizes in its payload follow every add and delete.
``update_centroids`` also moves the touched centroids toward the new chunks
(MiniBatchKMeans ``partial_fit`` semantics, :mod:`cluster_rag.clustering.online`),
in place in the same version. An edited chunk is replaced in place (:func:`replace_rows`, one
journaled write: after a crash it holds its old or its new text, never neither).
:func:`drift_report` compares what was added since
the fit with the fit's baseline (:mod:`cluster_rag.drift`).

Every function takes the active :class:`~cluster_rag.model.ClusterModel` and
returns the next snapshot; the facade holds the write lock and swaps it in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from . import journal
from .clustering import assign
from .clustering.online import partial_fit_step
from .drift import DriftReport, DriftThresholds, compare
from .embedding import content_hash
from .errors import DuplicateIdError, UnknownDocumentError, VersionError
from .model import ClusterModel
from .store import ChromaStore, added_key, snapshots, vector_log, version_key
from .store.chroma_store import HASH_KEY
from .validation import check_ids, check_metadatas, check_texts

#: journaled writes remembered in a version payload (``applied_writes``) for crash recovery
APPLIED_KEEP = 64

T = TypeVar("T")

__all__ = [
    "Batch",
    "add_rows",
    "check_batch",
    "default_ids",
    "delete_rows",
    "drift_report",
    "embed_with_cache",
    "fold_added",
    "partial_fit",
    "refuse_stored",
    "replace_rows",
    "stored_vectors",
]


@dataclass(frozen=True)
class Batch:
    """The checked rows of one add, each list of length n: ids default to content hashes."""

    texts: list[str]
    metadatas: list[dict[str, Any]]
    ids: list[str]
    hashes: list[str]


def check_batch(
    texts: Iterable[str], metadatas: Sequence[dict[str, Any] | None] | None, ids: Sequence[str] | None
) -> Batch:
    """Check an add's texts, metadata and ids at the door (see :mod:`~cluster_rag.validation`).

    Raises:
        EmptyTextError, LengthMismatchError, MetadataError, DuplicateIdError: bad input.
    """
    items = check_texts(texts)
    metas = check_metadatas(metadatas, len(items))
    given = check_ids(ids, len(items))
    hashes = [content_hash(t) for t in items]
    return Batch(items, metas, given if given is not None else default_ids(hashes), hashes)


def _counts(model: ClusterModel, positions: np.ndarray) -> np.ndarray:
    """``(k,)`` int64 chunks per position among ``positions`` (entries outside ``[0, k)`` skipped)."""
    pos = np.asarray(positions, dtype=np.int64)
    return np.bincount(pos[(pos >= 0) & (pos < model.k)], minlength=model.k)


def _bump_sizes(
    store: ChromaStore, model: ClusterModel, positions: np.ndarray, sign: int, token: str | None = None
) -> np.ndarray:
    """Add ``sign`` per entry of ``positions`` to the version's stored sizes; returns them ``(k,)``."""
    return _move_sizes(store, model, _counts(model, positions) * sign, token)


def _move_sizes(store: ChromaStore, model: ClusterModel, delta: np.ndarray, token: str | None) -> np.ndarray:
    """Add ``delta`` ``(k,)`` int64 to the version's stored sizes; returns them ``(k,)``.

    ``token`` (a journaled write) is recorded in the same upsert, under ``applied_writes``, so
    recovery knows whether a killed write had already counted its rows.
    """
    payload = store.load_model(model.version)
    if payload is None:
        raise VersionError(f"model version {model.version} was deleted meanwhile; refit or roll back")
    current = np.asarray(payload.get("sizes") or model.sizes, dtype=np.int64)
    sizes: np.ndarray = np.maximum(current + delta, 0)
    payload["sizes"] = sizes.astype(int).tolist()
    if token is not None:
        payload["applied_writes"] = [*payload.get("applied_writes", [])[-(APPLIED_KEEP - 1) :], token]
    store.update_model(model.version, payload)
    return sizes


def add_rows(
    store: ChromaStore, model: ClusterModel | None, batch: Batch, vectors: np.ndarray, *, fold: bool = False
) -> ClusterModel | None:
    """Write a checked batch (vectors ``(n, d)`` float32, L2-normalized) and return the next snapshot.

    Before any fit the chunks are only stored. After one, each joins its nearest cluster.
    """
    ids, texts, metas, hashes = batch.ids, batch.texts, batch.metadatas, batch.hashes
    token = journal.new_token()
    rows = [{**m, HASH_KEY: h, journal.WRITE_KEY: token} for m, h in zip(metas, hashes, strict=True)]
    version = model.version if model is not None else None
    key = journal.begin(store, "add", token, ids, hashes, version)
    try:
        nxt = _add_journaled(store, model, ids, texts, vectors, rows, token, fold)
    except BaseException:
        try:
            journal.undo_rows(store, token, ids)
            journal.finish(store, key)
        except Exception:  # the store itself failed: the journal entry stays for the next open
            pass
        raise
    journal.finish(store, key)
    return nxt


def _add_journaled(
    store: ChromaStore,
    model: ClusterModel | None,
    ids: list[str],
    texts: list[str],
    vectors: np.ndarray,
    rows: list[dict[str, Any]],
    token: str,
    fold: bool,
) -> ClusterModel | None:
    if model is None:
        store.add(ids, texts, vectors, rows)
        journal.claim_rows(store, token, ids)
        vector_log.write_log(store, token, ids, vectors)
        return None
    version = model.version
    labels, _ = assign(vectors, model.centroids)
    key, mark = version_key(version), added_key(version)
    rows = [{**r, key: int(c), mark: 2 if fold else 1} for r, c in zip(rows, labels, strict=True)]
    store.add(ids, texts, vectors, rows)
    journal.claim_rows(store, token, ids)
    vector_log.write_log(store, token, ids, vectors)
    sizes = _bump_sizes(store, model, labels, +1, token)
    if not model.loaded:  # the next snapshot loads from the store, which holds the new rows
        nxt = model.evolve(sizes=sizes)
        return fold_added(store, nxt, vectors, labels) if fold else nxt
    nxt = model.evolve(
        backend=model.backend.with_added(ids, vectors, labels), added=model.added.extended(ids), sizes=sizes
    )
    return fold_added(store, nxt, vectors, labels) if fold else nxt


def fold_added(
    store: ChromaStore, model: ClusterModel, vectors: np.ndarray, labels: np.ndarray
) -> ClusterModel:
    """Move the centroids toward ``vectors`` ``(b, d)`` (positions ``labels``) and persist them in place.

    The touched centroid rows are written first (one upsert while k <= the store's batch
    size), then the counts in the payload; a crash between leaves moved centroids with old
    counts, which only changes the weight of later updates.
    """
    online = _required(model.online, model, "online statistics")
    centroids, online = partial_fit_step(model.centroids, online, vectors, labels)
    touched = np.unique(np.asarray(labels, dtype=np.int64))
    store.save_centroids(model.version, touched.tolist(), centroids[touched])
    payload = store.load_model(model.version)
    if payload is not None:
        payload["online"] = online.to_dict()
        store.update_model(model.version, payload)
    # routing reads the model's centroids; the backend's blocks stay as they are
    return model.evolve(centroids=np.ascontiguousarray(centroids, dtype=np.float32), online=online)


def partial_fit(store: ChromaStore, model: ClusterModel) -> tuple[ClusterModel, int]:
    """Fold every chunk added since the fit and not folded yet into the centroids.

    Returns:
        The next snapshot and the number of chunks folded.
    """
    key, mark = version_key(model.version), added_key(model.version)
    ids, vectors, metas = stored_vectors(store, model.added.ids(), with_metadata=True)
    todo = [i for i, m in enumerate(metas) if m.get(mark) != 2]
    if not todo:
        return model, 0
    ids = [ids[i] for i in todo]
    vectors = vectors[todo]
    nearest = assign(vectors, model.centroids)[0]
    labels = np.array([int(metas[i].get(key, nearest[j])) for j, i in enumerate(todo)], dtype=np.int64)
    nxt = fold_added(store, model, vectors, labels)
    store.update_metadata(ids, [{key: int(c), mark: 2} for c in labels])
    return nxt, len(ids)


def _required(value: T | None, model: ClusterModel, what: str) -> T:
    """Every version ``fit`` writes stores its baseline and online statistics; a payload without
    them was not written by this release."""
    if value is None:
        raise VersionError(
            f"model version {model.version} has no {what} (written by an older cluster-rag); refit it"
        )
    return value


def drift_report(store: ChromaStore, model: ClusterModel, thresholds: DriftThresholds | None) -> DriftReport:
    """Compare the chunks added since the fit with the fit's baseline."""
    _, vectors, metas = stored_vectors(store, model.added.ids(), with_metadata=True)
    mark = added_key(model.version)
    unfolded = sum(1 for m in metas if m.get(mark) != 2)
    if len(vectors):
        labels, sims = assign(vectors, model.centroids)
    else:
        labels, sims = np.zeros(0, np.int64), np.zeros(0)
    baseline = _required(model.baseline, model, "drift baseline")
    return compare(
        sims,
        labels,
        baseline,
        [t.id for t in model.topics],
        version=model.version,
        thresholds=thresholds,
        n_unfolded=unfolded,
    )


def delete_rows(store: ChromaStore, model: ClusterModel | None, ids: list[str]) -> ClusterModel | None:
    """Delete stored chunks ``ids``, all or nothing, and return the next snapshot.

    Journaled: a process killed midway leaves a record the next open completes.

    Raises:
        UnknownDocumentError: an id is not stored (nothing is deleted).
    """
    missing = sorted(set(ids) - store.existing_ids(ids))
    if missing:
        raise UnknownDocumentError(
            f"{len(missing)} chunk id(s) not stored, e.g. {missing[:5]}; nothing was deleted"
        )
    store.note_changed_texts(ids)  # before the write: saved keyword indexes re-read these
    key = journal.begin(store, "delete", journal.new_token(), ids, None, model.version if model else None)
    nxt = _delete_journaled(store, model, ids)
    journal.finish(store, key)
    return nxt


def _positions(
    store: ChromaStore, model: ClusterModel, ids: list[str], metas: list[dict[str, Any]]
) -> np.ndarray:
    """``(n,)`` int64 cluster of each stored chunk in ``model`` (``-1``: none): a chunk written since the
    fit (marked ``cr_added_v<N>``, even one the fit also saw) carries it in ``cr_v<N>``; the others
    have it in the version's stored assignment (older versions: in ``cr_v<N>`` too)."""
    key, mark = version_key(model.version), added_key(model.version)
    fitted = snapshots.fitted_positions(store, model.version, model.record.extras.get("assignment"))
    return np.asarray(
        [
            int(m.get(key, -1)) if mark in m else fitted.get(cid, int(m.get(key, -1)))
            for cid, m in zip(ids, metas, strict=True)
        ],
        dtype=np.int64,
    )


def _delete_journaled(store: ChromaStore, model: ClusterModel | None, ids: list[str]) -> ClusterModel | None:
    positions = np.zeros(0, np.int64)
    if model is not None:
        got = store.get(ids, include=["metadatas"])
        positions = _positions(store, model, got["ids"], [m or {} for m in got["metadatas"]])
    store.delete(ids)
    if model is None:
        return None
    sizes = _bump_sizes(store, model, positions, -1)
    if not model.loaded:
        return model.evolve(sizes=sizes)
    gone = set(ids)
    return model.evolve(backend=model.backend.without(gone), added=model.added.without(gone), sizes=sizes)


def replace_rows(
    store: ChromaStore, model: ClusterModel | None, batch: Batch, vectors: np.ndarray, *, fold: bool = False
) -> ClusterModel | None:
    """Overwrite stored chunks ``batch.ids`` with the batch's texts, metadata and ``vectors`` ``(n, d)``
    float32 (L2-normalized) in one journaled write; returns the next snapshot.

    Each chunk is rewritten in place with Chroma's ``upsert`` (old metadata keys the new row lacks are
    removed, so the result equals a delete and an add). After a fit it joins its nearest cluster,
    marked as written since the fit, and the version's sizes move from its old cluster to its new
    one in the payload update that records the write. A process killed midway leaves the journal
    record; the next open settles it (:func:`cluster_rag.journal.settle_replace`): every chunk
    holds its old or its new version, never neither, never both, and the sizes match.

    Raises:
        UnknownDocumentError: an id is not stored (nothing is written).
    """
    ids = batch.ids
    old = {cid: m for cid, m in _stored_metadata(store, ids)}
    missing = [cid for cid in ids if cid not in old]
    if missing:
        raise UnknownDocumentError(
            f"{len(missing)} chunk id(s) not stored, e.g. {missing[:5]}; add them instead "
            "(nothing was written)"
        )
    store.note_changed_texts(ids)  # before the write: saved keyword indexes re-read these
    token = journal.new_token()
    rows = [
        {**m, HASH_KEY: h, journal.WRITE_KEY: token}
        for m, h in zip(batch.metadatas, batch.hashes, strict=True)
    ]
    was = now = np.full(len(ids), -1, dtype=np.int64)
    if model is not None:
        was = _positions(store, model, ids, [old[cid] for cid in ids])
        now = assign(vectors, model.centroids)[0].astype(np.int64)
        key, mark = version_key(model.version), added_key(model.version)
        rows = [{**r, key: int(c), mark: 2 if fold else 1} for r, c in zip(rows, now, strict=True)]
    rows = [{**dict.fromkeys(old[cid].keys() - r.keys()), **r} for cid, r in zip(ids, rows, strict=True)]
    olds = [str(old[cid].get(HASH_KEY, ""))[:16] for cid in ids]
    version = model.version if model is not None else None
    moves = {"old_hashes": olds, "was": was.tolist(), "now": now.tolist()}
    entry = journal.begin(store, "replace", token, ids, batch.hashes, version, moves)
    try:
        store.upsert(ids, batch.texts, vectors, rows)
        sizes = _move_sizes(store, model, _counts(model, now) - _counts(model, was), token) if model else None
    except BaseException:
        try:  # Chroma failed midway: count what each chunk holds now, as the next open would
            journal.settle_replace(store, token, ids, version, was.tolist(), now.tolist())
            journal.finish(store, entry)
        except Exception:  # the store itself failed: the journal entry stays for the next open
            pass
        raise
    journal.finish(store, entry)
    vector_log.write_log(store, token, ids, vectors)
    if model is None:
        return None
    if not model.loaded:
        nxt = model.evolve(sizes=sizes)
    else:
        gone = set(ids)
        nxt = model.evolve(
            backend=model.backend.without(gone).with_added(ids, vectors, now),
            added=model.added.without(gone).extended(ids),
            sizes=sizes,
        )
    return fold_added(store, nxt, vectors, now) if fold else nxt


def _stored_metadata(store: ChromaStore, ids: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """``(id, metadata)`` of those of ``ids`` that are stored."""
    out: list[tuple[str, dict[str, Any]]] = []
    for start in range(0, len(ids), store.batch_size):
        got = store.get(list(ids[start : start + store.batch_size]), include=["metadatas"])
        out += [(cid, dict(m or {})) for cid, m in zip(got["ids"], got["metadatas"], strict=True)]
    return out


def stored_vectors(
    store: ChromaStore, ids: Sequence[str], *, with_metadata: bool
) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """Ids still stored among ``ids``, their vectors ``(m, d)`` float32 and (optionally) metadata."""
    include = ["embeddings", "metadatas"] if with_metadata else ["embeddings"]
    out_ids: list[str] = []
    vecs: list[np.ndarray] = []
    metas: list[dict[str, Any]] = []
    for start in range(0, len(ids), store.batch_size):
        got = store.get(list(ids[start : start + store.batch_size]), include=include)
        if not got["ids"]:
            continue
        out_ids.extend(got["ids"])
        vecs.append(np.asarray(got["embeddings"], dtype=np.float32))
        if with_metadata:
            metas.extend(m or {} for m in got["metadatas"])
    vectors = np.concatenate(vecs) if vecs else np.zeros((0, store.dimension), np.float32)
    return out_ids, vectors, metas


def default_ids(hashes: list[str]) -> list[str]:
    """Ids from content hashes: the first 24 hex digits, repeats of one text numbered ``-1``, ``-2``, …"""
    seen: dict[str, int] = {}
    out = []
    for h in hashes:
        n = seen.get(h, 0)
        seen[h] = n + 1
        out.append(h[:24] if n == 0 else f"{h[:24]}-{n}")
    return out


def refuse_stored(store: ChromaStore, ids: list[str]) -> None:
    """Raise :class:`DuplicateIdError` when any of ``ids`` is already stored (nothing is written)."""
    clash = store.existing_ids(ids)
    if clash:
        raise DuplicateIdError(
            f"{len(clash)} id(s) already stored, e.g. {sorted(clash)[:5]}; pass new ids, or delete the "
            "old chunks first (nothing was written)"
        )


def embed_with_cache(
    store: ChromaStore, embed: Callable[[list[str]], np.ndarray], texts: list[str], hashes: list[str]
) -> np.ndarray:
    """Vectors ``(n, d)`` float32 for ``texts``, reusing any vector stored for the same text and model."""
    known = store.vectors_by_hash(hashes)
    missing = [i for i, h in enumerate(hashes) if h not in known]
    vectors = np.empty((len(texts), store.dimension), dtype=np.float32)
    if missing:
        vectors[missing] = embed([texts[i] for i in missing])
    for i, h in enumerate(hashes):
        if h in known:
            vectors[i] = known[h]
    return vectors
