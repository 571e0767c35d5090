"""Routed search over one :class:`~cluster_rag.model.ClusterModel`: one routing decision,
filter widening, and hit assembly.

Flow of one search: query vector → the clusters to probe (:func:`probed_clusters`:
the version's calibrated centroid-score gap, a fixed ``n_probe``, or the given
topics) → exact candidates inside them from the model's
:class:`~cluster_rag.backends.SearchBackend` → (with a ``where`` filter) only
candidates passing it, widening to the next-nearest clusters until ``k`` pass →
texts and metadata fetched from Chroma by id → :class:`~cluster_rag.types.Hit`.

Where later stages plug in: a caller scope narrows ``where`` / ``topics`` before
:func:`routed_search` is called (the facade combines them), and a re-ranker
reorders the hits it returns (it may ask for a deeper ``k`` first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidInputError
from .model import ClusterModel
from .routing import Candidates, check_query, probe_count, route
from .store import RESERVED_PREFIX, ChromaStore
from .types import Hit
from .validation import check_int, check_optional_int

__all__ = [
    "SearchRequest",
    "build_request",
    "get_hits",
    "probed_clusters",
    "public_metadata",
    "routed_search",
]


@dataclass(frozen=True)
class SearchRequest:
    """One validated search.

    Attributes:
        k: hits wanted.
        n_probe: a fixed number of clusters; ``None``: the version's default route.
        topics: stable topic ids to search exactly (``None``: route).
        where: Chroma ``where`` filter on user metadata (``None``: none).
    """

    k: int
    n_probe: int | None = None
    topics: tuple[int, ...] | None = None
    where: dict[str, Any] | None = None


def build_request(
    model: ClusterModel, k: Any, n_probe: Any, topics: Sequence[int | str] | None, where: Any
) -> SearchRequest:
    """Validate one search's options against ``model`` (topic names resolved to stable ids).

    Raises:
        InvalidInputError: ``k``/``n_probe`` not positive ints, ``topics`` not a non-empty list,
            ``where`` not a dict.
        UnknownTopicError: a topic that does not exist.
    """
    k = check_int(k, "k", low=1)
    n_probe = check_optional_int(n_probe, "n_probe", low=1)
    chosen = None
    if topics is not None:
        if isinstance(topics, (str, bytes, int)):
            raise InvalidInputError(
                f"topics={topics!r} must be a list of topic ids or names, e.g. [{topics!r}]"
            )
        chosen = tuple(model.resolve_topics(list(topics)))
        if not chosen:
            raise InvalidInputError("topics=[] selects nothing; pass None to search every topic")
    if where is not None and not isinstance(where, dict):
        raise InvalidInputError(f"where={where!r} must be a dict (a Chroma metadata filter) or None")
    return SearchRequest(k=k, n_probe=n_probe, topics=chosen, where=where)


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
    q = check_query(vector, model.centroids.shape[1])
    chosen = None
    if request.topics is not None:
        chosen = np.asarray(sorted({model.position_of[t] for t in request.topics}), dtype=np.int64)
    if request.where is None:
        clusters = chosen if chosen is not None else probed_clusters(model, q, request.n_probe)
        cands = model.backend.search(q, clusters, request.k)
    else:
        cands = _filtered(model, store, q, request, chosen)
    return _hits(model, store, cands)


def _filtered(
    model: ClusterModel, store: ChromaStore, q: np.ndarray, request: SearchRequest, chosen: np.ndarray | None
) -> Candidates:
    """Best ``k`` chunks passing ``where``; widens the probe (x2 each round) until ``k`` pass.

    A selective filter may match nothing in the nearest clusters; rather than
    return fewer hits, the search moves on to the next-nearest clusters, up to
    all of them (or all of ``chosen``).
    """
    assert request.where is not None
    k = request.k
    if chosen is not None:
        probe, limit = len(chosen), len(chosen)
    else:
        gap = model.info.probe_gap if request.n_probe is None else None
        probe = (
            probe_count(model.centroids, q, gap)
            if gap is not None
            else (request.n_probe or model.info.n_probe)
        )
        limit = model.k
    while True:
        clusters = chosen if chosen is not None else route(model.centroids, q, probe)
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
            sel = np.asarray(keep[:k], dtype=np.int64)
            return Candidates(cands.ids[sel], cands.scores[sel], cands.labels[sel])
        probe = min(limit, probe * 2)


def _hits(model: ClusterModel, store: ChromaStore, cands: Candidates) -> list[Hit]:
    if not len(cands):
        return []
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
                topic_label=topic.label,
                model_version=model.version,
            )
        )
    return hits


def get_hits(model: ClusterModel | None, store: ChromaStore, ids: Sequence[str]) -> list[Hit]:
    """Chunks by id (score 1.0), in the order given; unknown ids are skipped.

    The topic comes from the version's stored assignment, or for chunks added since
    the fit from their ``cr_v<N>`` key (no vectors are loaded); ``topic_id`` is ``-1``
    for chunks without one.
    """
    from .store import snapshots, version_key

    got = store.get(list(ids))
    key = version_key(model.version) if model is not None else None
    fitted = (
        snapshots.fitted_positions(store, model.version, model.record.extras.get("assignment"))
        if model is not None
        else {}
    )
    out: list[Hit] = []
    for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
        pos = fitted.get(cid, int((meta or {}).get(key, -1)) if key is not None else -1)
        topic = model.topics[pos] if model is not None and 0 <= pos < model.k else None
        out.append(
            Hit(
                id=cid,
                text=text or "",
                score=1.0,
                topic_id=topic.id if topic is not None else -1,
                metadata=public_metadata(meta),
                topic_label=topic.label if topic is not None else None,
                model_version=model.version if model is not None else None,
            )
        )
    return out


def public_metadata(meta: dict[str, Any] | None) -> dict[str, Any]:
    """User metadata without the reserved ``cr_*`` keys."""
    return {k: v for k, v in (meta or {}).items() if not k.startswith(RESERVED_PREFIX)}
