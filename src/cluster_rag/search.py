"""Routed search over one :class:`~cluster_rag.model.ClusterModel`: one routing decision,
filter widening, and hit assembly.

Flow of one search: query vector → the clusters to probe (:func:`probed_clusters`:
the version's calibrated centroid-score gap, a fixed ``n_probe``, or the given
topics) → exact candidates inside them from the model's
:class:`~cluster_rag.backends.SearchBackend` → (with a ``where`` filter) only
candidates passing it, widening to the next-nearest clusters until ``k`` pass →
texts and metadata fetched from Chroma by id → :class:`~cluster_rag.types.Hit`.

A backend may answer more itself (:mod:`cluster_rag.backends_chroma`, a Chroma server): an
unrestricted default-route search with the store's own index (``search_whole``, hits placed in their
clusters), and a ``where`` filter inside its query (``search_where``); a backend that cannot
answers ``None`` and the search routes and filters here.

Access scopes (:mod:`cluster_rag.scope`) are enforced here and only here: a
:class:`~cluster_rag.scope.Scope` given to :func:`build_request` is ANDed into ``where``
and limits routing to its allowed topics (a caller's topic outside it is unknown);
:func:`get_hits` and :func:`find_hits` (get by id, neighbour lookup) drop every chunk
outside it, so an out-of-scope id answers like a missing one. Under a scope that
withholds labels, hits carry no ``topic_label``. A re-ranker reorders the hits
:func:`routed_search` returns (it may ask for a deeper ``k`` first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidInputError
from .model import ClusterModel
from .routing import Candidates, check_query, probe_count, route
from .scope import Scope, check_scope, scoped_view
from .store import RESERVED_PREFIX, ChromaStore
from .types import Hit
from .validation import check_int, check_optional_int

__all__ = [
    "SearchRequest",
    "build_request",
    "candidate_hits",
    "find_hits",
    "get_hits",
    "probed_clusters",
    "public_metadata",
    "routed_candidates",
    "routed_search",
]


@dataclass(frozen=True)
class SearchRequest:
    """One validated search.

    Attributes:
        k: hits wanted.
        n_probe: a fixed number of clusters; ``None``: the version's default route.
        topics: stable topic ids to search exactly (``None``: route).
        where: Chroma ``where`` filter on user metadata (``None``: none); with a scope,
            already ANDed with the scope's filter.
        allowed: stable topic ids a scope allows (``None``: every topic); routing stays among them.
        withhold_labels: hits carry no ``topic_label`` (a scope that withholds labels).
    """

    k: int
    n_probe: int | None = None
    topics: tuple[int, ...] | None = None
    where: dict[str, Any] | None = None
    allowed: tuple[int, ...] | None = None
    withhold_labels: bool = False


def build_request(
    model: ClusterModel,
    k: Any,
    n_probe: Any,
    topics: Sequence[int | str] | None,
    where: Any,
    *,
    scope: Scope | None = None,
    store: ChromaStore | None = None,
) -> SearchRequest:
    """Validate one search's options against ``model`` (topic names resolved to stable ids).

    With a ``scope`` (and the ``store`` its topic view is read from), ``where`` becomes
    ``scope AND where``, routing stays among the scope's topics, and ``topics`` resolve
    among the topics the scope sees (:func:`~cluster_rag.scope.scoped_view`): any other
    is an :class:`UnknownTopicError`, worded as for a topic that does not exist.

    Raises:
        InvalidInputError: ``k``/``n_probe`` not positive ints, ``topics`` not a non-empty list,
            ``where`` not a dict.
        UnknownTopicError: a topic that does not exist.
    """
    k = check_int(k, "k", low=1)
    n_probe = check_optional_int(n_probe, "n_probe", low=1)
    if scope is not None:
        if store is None:
            raise InvalidInputError("a scoped search needs the store its topic view is read from")
        check_scope(scope, store)
    chosen = None
    if topics is not None:
        if isinstance(topics, (str, bytes, int)):
            raise InvalidInputError(
                f"topics={topics!r} must be a list of topic ids or names, e.g. [{topics!r}]"
            )
        if scope is not None and store is not None and scope.filters_rows:
            chosen = tuple(scoped_view(model, store, scope).resolve(list(topics)))
        else:
            chosen = tuple(model.resolve_topics(list(topics)))
        if not chosen:
            raise InvalidInputError("topics=[] selects nothing; pass None to search every topic")
    if where is not None and not isinstance(where, dict):
        raise InvalidInputError(f"where={where!r} must be a dict (a Chroma metadata filter) or None")
    if scope is None:
        return SearchRequest(k=k, n_probe=n_probe, topics=chosen, where=where)
    allowed = None
    if scope.topics is not None:
        allowed = tuple(t.id for t in model.topics if scope.allows_topic(t.id))
    return SearchRequest(
        k=k,
        n_probe=n_probe,
        topics=chosen,
        where=scope.combine(where),
        allowed=allowed,
        withhold_labels=scope.withholds_labels,
    )


def probed_clusters(model: ClusterModel, query: np.ndarray, n_probe: int | None = None) -> np.ndarray:
    """Cluster positions the route searches for ``query`` ``(d,)`` (L2-normalized), nearest first.

    ``n_probe=None`` uses the version's default: every cluster whose centroid score is
    within ``info.probe_gap`` of the best (older versions: the fixed ``info.n_probe``).
    """
    gap = model.info.probe_gap if n_probe is None else None
    if gap is not None:
        return route(model.centroids, query, gap=gap)
    return route(model.centroids, query, n_probe or model.info.n_probe)


def routed_search(
    model: ClusterModel, store: ChromaStore, vector: np.ndarray, request: SearchRequest
) -> list[Hit]:
    """Best ``request.k`` chunks for ``vector`` ``(d,)``, best first (see the module docstring)."""
    cands = routed_candidates(model, store, vector, request)
    return candidate_hits(model, store, cands, withhold_labels=request.withhold_labels)


def routed_candidates(
    model: ClusterModel, store: ChromaStore, vector: np.ndarray, request: SearchRequest
) -> Candidates:
    """:func:`routed_search`'s chunks as ids, cosine scores and cluster positions, texts not read yet
    (a caller that keeps only some of them reads those with :func:`candidate_hits`)."""
    q = check_query(vector, model.centroids.shape[1])
    chosen = None
    subset = None
    if request.topics is not None:
        chosen = np.asarray(sorted({model.position_of[t] for t in request.topics}), dtype=np.int64)
    elif request.allowed is not None:
        subset = np.asarray(sorted(model.position_of[t] for t in request.allowed), dtype=np.int64)
        if not len(subset):
            return Candidates(np.zeros(0, dtype=object), np.zeros(0, np.float32), np.zeros(0, np.int64))
    if request.where is None:
        if chosen is not None:
            clusters = chosen
        elif subset is not None:
            clusters = _route_within(model, q, request.n_probe, subset)
        else:
            whole = _whole_collection(model, q, request)
            if whole is not None:
                return whole
            clusters = probed_clusters(model, q, request.n_probe)
        return model.backend.search(q, clusters, request.k)
    return _filtered(model, store, q, request, chosen, subset)


def _whole_collection(model: ClusterModel, q: np.ndarray, request: SearchRequest) -> Candidates | None:
    """An unrestricted default-route search answered by the store's own index, when the backend
    has one over the model's chunks (a Chroma server: ``search_whole``); ``None`` otherwise, or with
    an explicit ``n_probe`` (the caller asked for the routed search)."""
    if request.n_probe is not None:
        return None
    order = np.argsort(-(model.centroids @ q), kind="stable")
    return model.backend.search_whole(q, request.k, order)


def _route_within(model: ClusterModel, q: np.ndarray, n_probe: int | None, subset: np.ndarray) -> np.ndarray:
    """:func:`probed_clusters` among the positions ``subset`` ``(s,)`` int64 only."""
    centroids = model.centroids[subset]
    gap = model.info.probe_gap if n_probe is None else None
    if gap is not None:
        probed = route(centroids, q, gap=gap)
    else:
        probed = route(centroids, q, n_probe or model.info.n_probe)
    out: np.ndarray = subset[probed]
    return out


def _filtered(
    model: ClusterModel,
    store: ChromaStore,
    q: np.ndarray,
    request: SearchRequest,
    chosen: np.ndarray | None,
    subset: np.ndarray | None = None,
) -> Candidates:
    """Best ``k`` chunks passing ``where``; widens the probe (x2 each round) until ``k`` pass.

    A selective filter may match nothing in the nearest clusters; rather than
    return fewer hits, the search moves on to the next-nearest clusters, up to
    all of them (or all of ``chosen``).
    """
    assert request.where is not None
    k = request.k
    centroids = model.centroids if subset is None else model.centroids[subset]
    if chosen is not None:
        probe, limit = len(chosen), len(chosen)
    else:
        gap = model.info.probe_gap if request.n_probe is None else None
        probe = (
            probe_count(centroids, q, gap)
            if gap is not None
            else (request.n_probe or model.info.n_probe)
        )
        limit = len(centroids)
    while True:
        if chosen is not None:
            clusters = chosen
        else:
            clusters = route(centroids, q, probe)
            clusters = clusters if subset is None else subset[clusters]
        in_store = model.backend.search_where(q, clusters, k, request.where)  # Chroma filters
        if in_store is not None:
            if len(in_store) >= k or probe >= limit:
                return in_store
            probe = min(limit, probe * 2)
            continue
        cands = model.backend.search(q, clusters)
        keep: list[int] = []
        window = max(4 * k, 256)
        for start in range(0, len(cands), window):
            part = [str(x) for x in cands.ids[start : start + window]]
            passing = store.filter_ids(part, request.where)
            keep.extend(start + i for i, cid in enumerate(part) if cid in passing)
            if len(keep) >= k:
                break
        if len(keep) >= k or probe >= limit:
            return cands.take(np.asarray(keep[:k], dtype=np.int64))
        probe = min(limit, probe * 2)


def candidate_hits(
    model: ClusterModel, store: ChromaStore, cands: Candidates, *, withhold_labels: bool = False
) -> list[Hit]:
    """``cands`` as :class:`Hit` s, in their order, texts and metadata read by id (one ``get``) unless the
    backend read them with the scores; chunks deleted meanwhile are skipped."""
    if not len(cands):
        return []
    if cands.records is not None:  # read with the scores (one call to a Chroma server, not two)
        texts, metas = cands.records
        found = dict(zip((str(x) for x in cands.ids), zip(texts, metas, strict=True), strict=True))
    else:
        got = store.get([str(x) for x in cands.ids])
        found = dict(zip(got["ids"], zip(got["documents"], got["metadatas"], strict=True), strict=True))
    hits: list[Hit] = []
    for cid, score, label in zip(cands.ids, cands.scores, cands.labels, strict=True):
        record = found.get(str(cid))
        if record is None:  # deleted behind our back
            continue
        text, meta = record
        topic = model.topics[int(label)]
        hits.append(
            Hit(
                id=str(cid),
                text=text or "",
                score=float(score),
                topic_id=topic.id,
                metadata=public_metadata(meta),
                topic_label=None if withhold_labels else topic.label,
                model_version=model.version,
            )
        )
    return hits


def get_hits(
    model: ClusterModel | None, store: ChromaStore, ids: Sequence[str], scope: Scope | None = None
) -> list[Hit]:
    """Chunks by id (score 1.0), in the order given; unknown ids are skipped.

    With a ``scope``, ids outside it are skipped too (exactly like unknown ones): they
    must pass the scope's ``where`` and, with a topic allow-list, lie in an allowed topic.

    The topic comes from the version's stored assignment, or for chunks added since
    the fit from their ``cr_v<N>`` key (no vectors are loaded); ``topic_id`` is ``-1``
    for chunks without one.
    """
    from .store import snapshots, version_key

    ids = list(ids)
    if scope is not None:
        check_scope(scope, store)
    if scope is not None and scope.where is not None and ids:
        passing = store.filter_ids(ids, scope.where)
        ids = [cid for cid in ids if cid in passing]
    if not ids:
        return []
    got = store.get(ids)
    key = version_key(model.version) if model is not None else None
    fitted = (
        snapshots.fitted_positions(store, model.version, model.record.extras.get("assignment"))
        if model is not None
        else {}
    )
    withhold = scope is not None and scope.withholds_labels
    out: list[Hit] = []
    for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
        pos = fitted.get(cid, int((meta or {}).get(key, -1)) if key is not None else -1)
        topic = model.topics[pos] if model is not None and 0 <= pos < model.k else None
        if scope is not None and scope.topics is not None:
            if topic is None or not scope.allows_topic(topic.id):
                continue
        out.append(
            Hit(
                id=cid,
                text=text or "",
                score=1.0,
                topic_id=topic.id if topic is not None else -1,
                metadata=public_metadata(meta),
                topic_label=topic.label if topic is not None and not withhold else None,
                model_version=model.version if model is not None else None,
            )
        )
    return out


def find_hits(
    model: ClusterModel | None,
    store: ChromaStore,
    where: dict[str, Any],
    *,
    limit: int,
    scope: Scope | None = None,
) -> list[Hit]:
    """Up to ``limit`` chunks passing ``where`` (AND the scope's filter), as :func:`get_hits` returns them."""
    combined = scope.combine(where) if scope is not None else where
    found = store.find(combined if combined is not None else where, limit=limit)
    return get_hits(model, store, list(found["ids"]), scope)


def public_metadata(meta: dict[str, Any] | None) -> dict[str, Any]:
    """User metadata without the reserved ``cr_*`` keys."""
    return {k: v for k, v in (meta or {}).items() if not k.startswith(RESERVED_PREFIX)}
