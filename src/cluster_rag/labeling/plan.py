"""From a fitted model to label requests, and from labeler results back to topics.

Pure functions: the index passes in what they need (topics, centroids, member
vectors, a text fetcher) and stores what they return.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..types import Topic
from .base import LabelRequest, LabelResult
from .keywords import keyword_label
from .mmr import mmr_indices

__all__ = ["CachedLabel", "apply_result", "build_requests", "cache_of", "sibling_ids"]


@dataclass(frozen=True)
class CachedLabel:
    """A stored label that may be reused for a cluster with the same key."""

    label: str
    description: str
    source: str


def sibling_ids(centroids: np.ndarray, n: int) -> list[list[int]]:
    """For each cluster, the ``n`` other clusters with the most similar centroid, nearest first.

    Args:
        centroids: ``(k, d)`` float32, L2-normalized.
    """
    k = len(centroids)
    sims = centroids @ centroids.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")
    return [[int(j) for j in order[c, : min(n, k - 1)]] for c in range(k)]


def build_requests(
    topics: Sequence[Topic],
    centroids: np.ndarray,
    members: Callable[[int], tuple[np.ndarray, np.ndarray]],
    fetch_texts: Callable[[list[str]], Mapping[str, str]],
    *,
    n_representatives: int = 5,
    n_siblings: int = 5,
    diversity: float = 0.3,
) -> list[LabelRequest]:
    """One :class:`LabelRequest` per topic.

    Args:
        topics: the model's topics, by id (their labels are the siblings' names).
        centroids: ``(k, d)`` float32, L2-normalized.
        members: cluster id → (ids ``(m,)``, vectors ``(m, d)``) of its chunks.
        fetch_texts: chunk ids → {id: text}.
    """
    picks: dict[int, list[str]] = {}
    for t in topics:
        ids, vectors = members(t.id)
        rows = mmr_indices(vectors, centroids[t.id], n_representatives, diversity=diversity)
        picks[t.id] = [str(ids[i]) for i in rows]
    texts = fetch_texts(sorted({cid for chosen in picks.values() for cid in chosen}))
    siblings = sibling_ids(centroids, n_siblings)
    labels = {t.id: t.label for t in topics}
    return [
        LabelRequest(
            topic_id=t.id,
            size=t.size,
            keywords=list(t.keywords),
            representatives=[texts[cid] for cid in picks[t.id] if texts.get(cid)],
            siblings=[labels[j] for j in siblings[t.id] if labels.get(j)],
            keyword_label=keyword_label(t.keywords),
        )
        for t in topics
    ]


def apply_result(topic: Topic, result: LabelResult, key: str) -> Topic:
    """The topic relabeled by a labeler result, with its cache key."""
    return replace(
        topic,
        label=result.name,
        description=result.description,
        label_source=result.source,
        label_key="" if result.transient else key,
    )


def cache_of(topic_lists: Sequence[Sequence[Topic]]) -> dict[str, CachedLabel]:
    """Reusable labels by key, from the topics of any kept model version."""
    out: dict[str, CachedLabel] = {}
    for topics in topic_lists:
        for t in topics:
            if t.label_key and t.label_source in ("llm", "keywords", "fallback") and not t.pinned:
                out.setdefault(t.label_key, CachedLabel(t.label, t.description, t.label_source))
    return out

