"""JSON-ready answers of the explorer, computed through the public API of a :class:`ClusterIndex`.

Framework-free: the HTTP layer (:mod:`cluster_rag.web.app`), the static report and the
benchmark call these functions, so what the page shows and what Python returns are the
same numbers. Every payload names the model version it came from.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInputError, UnknownDocumentError
from ..plots import MAP_SAMPLE, TopicProjection, display_label, keyword_coverage, project_topics, topic_color
from ..search import probed_clusters

if TYPE_CHECKING:
    from ..index import ClusterIndex
    from ..types import Topic

__all__ = [
    "ProjectionCache",
    "document_payload",
    "drift_payload",
    "probed_topics",
    "search_payload",
    "topic_detail",
    "topics_payload",
    "versions_payload",
]

#: Largest page of members one topic-detail call returns.
MAX_PAGE = 200


class ProjectionCache:
    """The topic-map projection of the active model version, computed once per version.

    Thread-safe: concurrent requests for a version not projected yet compute it once.

    Args:
        n_sample: chunks drawn under the topic bubbles.
    """

    def __init__(self, n_sample: int = MAP_SAMPLE) -> None:
        self.n_sample = n_sample
        self._lock = threading.Lock()
        self._cached: TopicProjection | None = None

    def get(self, index: ClusterIndex) -> TopicProjection:
        """The projection of ``index``'s active version (recomputed after a refit or rollback)."""
        version = index.model_info.version
        with self._lock:
            if self._cached is None or self._cached.version != version:
                self._cached = project_topics(index, n_sample=self.n_sample)
            return self._cached


def _topic_dict(topic: Topic, position: int) -> dict[str, Any]:
    out = {f.name: getattr(topic, f.name) for f in fields(topic)}  # shallow: 10x faster than asdict
    out["display_label"] = display_label(topic.id, topic.label)
    out["color"] = topic_color(position)
    return out


def topics_payload(index: ClusterIndex, *, representatives: int = 3) -> dict[str, Any]:
    """Every topic of the active version with its first ``representatives`` chunks' texts.

    Args:
        index: a fitted index.
        representatives: representative chunks per topic to include with their text (0: none;
            the ids are always in ``representative_ids``).

    Returns:
        ``{"version": int, "topics": [topic dict + display_label, color, representatives]}``,
        topics by id; each representative is ``{"id", "text"}``.
    """
    if isinstance(representatives, bool) or not isinstance(representatives, int) or representatives < 0:
        raise InvalidInputError(f"representatives={representatives!r} must be an int >= 0")
    version = index.model_info.version
    topics = index.topics()
    position = index.model.position_of
    wanted = [cid for t in topics for cid in t.representative_ids[:representatives]]
    texts = {h.id: h.text for h in index.get(wanted)} if wanted else {}
    out = []
    for t in topics:
        item = _topic_dict(t, position[t.id])
        item["representatives"] = [
            {"id": cid, "text": texts[cid]} for cid in t.representative_ids[:representatives] if cid in texts
        ]
        out.append(item)
    return {"version": version, "topics": out}


def topic_detail(index: ClusterIndex, topic_id: int, *, offset: int = 0, limit: int = 20) -> dict[str, Any]:
    """One topic: its fields, representative chunks, keyword coverage and one page of members.

    Members are ordered nearest the centroid first (cosine), so page 1 is the core of the topic.

    Args:
        index: a fitted index.
        topic_id: stable topic id.
        offset: first member of the page (0-based).
        limit: members on the page, 1 to :data:`MAX_PAGE`.

    Raises:
        UnknownTopicError: no such topic.
        InvalidInputError: ``offset`` < 0 or ``limit`` outside ``1..MAX_PAGE``.
    """
    if offset < 0:
        raise InvalidInputError(f"offset={offset} must be >= 0")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit={limit} must be between 1 and {MAX_PAGE}")
    topic = index.topic(int(topic_id))
    model = index.model
    pos = model.position_of[topic.id]
    member_ids, member_vecs = model.members(pos)
    centroid = np.asarray(model.centroids[pos], dtype=np.float32)
    scores = np.asarray(member_vecs, dtype=np.float32) @ centroid if len(member_ids) else np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    page = order[offset : offset + limit]
    page_ids = [str(member_ids[i]) for i in page]
    wanted = list(dict.fromkeys([*topic.representative_ids, *page_ids]))
    found = {h.id: h for h in index.get(wanted)} if wanted else {}
    item = _topic_dict(topic, pos)
    item["representatives"] = [
        {"id": cid, "text": found[cid].text} for cid in topic.representative_ids if cid in found
    ]
    item["keyword_coverage"] = [
        {"keyword": w, "share": round(s, 4)} for w, s in keyword_coverage(index, topic.id)
    ]
    item["members"] = {
        "total": len(member_ids),
        "offset": offset,
        "limit": limit,
        "items": [
            {
                "id": cid,
                "text": found[cid].text,
                "score": round(float(scores[i]), 4),
                "metadata": found[cid].metadata,
            }
            for cid, i in zip(page_ids, page, strict=True)
            if cid in found
        ],
    }
    item["version"] = model.info.version
    return item


def probed_topics(index: ClusterIndex, vector: np.ndarray) -> list[dict[str, Any]]:
    """The topics the default route searches for a query vector, nearest centroid first.

    The routing rule of :meth:`ClusterIndex.search` with ``n_probe=None``
    (:func:`cluster_rag.search.probed_clusters`): every cluster whose centroid cosine is
    within ``probe_gap`` of the best one (the fixed ``n_probe`` nearest for versions
    without a gap).

    Args:
        index: a fitted index.
        vector: ``(d,)`` float32 L2-normalized query vector.

    Returns:
        ``[{"topic_id", "score"}]`` with the centroid cosine, best first.
    """
    model = index.model
    q = np.asarray(vector, dtype=np.float32)
    sims = np.asarray(model.centroids, dtype=np.float32) @ q
    return [
        {"topic_id": model.topics[int(p)].id, "score": round(float(sims[p]), 4)}
        for p in probed_clusters(model, q)
    ]


def search_payload(
    index: ClusterIndex, query: str, *, k: int = 10, topics: Sequence[int] | None = None
) -> dict[str, Any]:
    """The index's default search (hybrid) plus the topics the dense route probed.

    Args:
        index: a fitted index.
        query: non-blank text.
        k: hits wanted.
        topics: search only these topic ids (then they are the probed ones).

    Returns:
        ``{"query", "version", "hits": [Hit dict], "probed": [{"topic_id", "score"}]}``.
    """
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError(f"query must be a non-blank string, got {query!r}")
    vector = index.embed_query(query)  # the embedder's cache answers the search's own embedding
    hits = index.search(query, k, topics=list(topics) if topics is not None else None)
    if topics is not None:
        chosen = {index.topic(int(t)).id for t in topics}
        model = index.model
        sims = np.asarray(model.centroids, dtype=np.float32) @ np.asarray(vector, dtype=np.float32)
        probed = sorted(
            ({"topic_id": tid, "score": round(float(sims[model.position_of[tid]]), 4)} for tid in chosen),
            key=lambda p: -float(p["score"]),
        )
    else:
        probed = probed_topics(index, vector)
    version = hits[0].model_version if hits else index.model_info.version
    return {"query": query, "version": version, "hits": [h.to_dict() for h in hits], "probed": probed}


def document_payload(index: ClusterIndex, doc_id: str) -> dict[str, Any]:
    """One chunk by id (text, metadata, topic).

    Raises:
        UnknownDocumentError: no chunk has this id.
    """
    got = index.get([doc_id])
    if not got:
        raise UnknownDocumentError(f"no chunk with id {doc_id!r}; ids appear in search hits and topic pages")
    return got[0].to_dict()


def versions_payload(index: ClusterIndex) -> dict[str, Any]:
    """Kept versions (oldest first), the active one and what its refit changed."""
    active = index.model_info.version
    report = index.refit_report()
    return {
        "active": active,
        "versions": [v.to_dict() for v in index.versions()],
        "refit": None if report is None else {**report.to_dict(), "summary": report.summary()},
    }


def drift_payload(index: ClusterIndex) -> dict[str, Any]:
    """:meth:`ClusterIndex.drift` as a dict, with ``drifted`` added."""
    report = index.drift()
    return {**report.to_dict(), "drifted": report.drifted}
