"""Stable topic ids across refits, and the report of what changed.

A refit clusters from scratch, so its clusters come out in arbitrary order. To
keep ids (and the labels, descriptions and pinned names people and agents rely
on) stable, the new clusters are matched to the old topics:

1. **Match** by centroid cosine similarity with the Hungarian assignment
   (:func:`scipy.optimize.linear_sum_assignment`, one-to-one, maximizing the total
   similarity). A pair is a match when its similarity is at least
   :attr:`TopicMatching.min_similarity`; a matched cluster keeps the old topic's id.
2. **Carry labels.** A matched topic keeps a pinned label always; an unpinned label
   (with its description, source and cache key) is kept when the content barely
   changed: Jaccard overlap of the member chunks ``>= keep_label_overlap``.
   Otherwise it gets the fresh keyword label and is listed in
   :attr:`RefitReport.relabeled` (so an LLM labeler redoes only those).
3. **Unmatched** clusters get new ids from a counter stored with the model, so an
   id is never reused for another topic.
4. **Report** merges and splits from the contingency table of old vs new
   assignments of the same chunks: the edge old ``o`` → new ``n`` counts when it
   holds at least ``min_share`` of ``o``'s chunks *and* of ``n``'s chunks. A new
   topic with edges from two or more old topics is a merge; an old topic with edges
   to two or more new topics is a split. An unmatched new topic that is not a merge
   or split product is *new*; an unmatched old topic that did not merge or split is *gone*.

Defaults measured on Banking77 (77 intents, all-MiniLM-L6-v2, k=77, two seeds):
centroids of the same intent across refits have cosine 0.93-0.99 (median 0.985);
the nearest *other* centroid within one fit has median 0.78 and max 0.87.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .errors import InvalidInputError
from .types import Topic

__all__ = [
    "RefitReport",
    "TopicMatch",
    "TopicMatching",
    "TopicMerge",
    "TopicSplit",
    "match_topics",
]


@dataclass(frozen=True)
class TopicMatching:
    """Thresholds of topic matching across refits.

    Attributes:
        min_similarity: centroid cosine a Hungarian pair needs to count as the same topic.
        min_share: share of both the old and the new topic's chunks an old → new edge
            needs to count in merge/split detection.
        keep_label_overlap: Jaccard overlap of member chunks at or above which a matched,
            unpinned topic keeps its label (below: content changed, label redone).
    """

    min_similarity: float = 0.85
    min_share: float = 0.25
    keep_label_overlap: float = 0.5

    def __post_init__(self) -> None:
        for name in ("min_similarity", "min_share", "keep_label_overlap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
                raise InvalidInputError(f"{name}={value!r} must be a number in (0, 1]")


@dataclass(frozen=True)
class TopicMatch:
    """A new cluster that kept an old topic's id.

    Attributes:
        topic_id: the id kept.
        similarity: cosine of old and new centroid.
        overlap: Jaccard overlap of old and new member chunks.
        relabeled: ``True`` when the label was redone (content changed, not pinned).
    """

    topic_id: int
    similarity: float
    overlap: float
    relabeled: bool


@dataclass(frozen=True)
class TopicMerge:
    """Several old topics whose chunks now form one topic ``topic_id``."""

    topic_id: int
    sources: list[int]


@dataclass(frozen=True)
class TopicSplit:
    """One old topic ``topic_id`` whose chunks now form several topics ``into``."""

    topic_id: int
    into: list[int]


@dataclass(frozen=True)
class RefitReport:
    """What a refit changed, in topic ids.

    Attributes:
        previous_version: the version that was active before the refit.
        kept: matched topics (same id), by id.
        new: ids of topics that did not exist before (and are no merge or split product).
        merged: topics formed from several old ones.
        split: old topics spread over several new ones.
        gone: ids of old topics with no successor.
    """

    previous_version: int
    kept: list[TopicMatch] = field(default_factory=list)
    new: list[int] = field(default_factory=list)
    merged: list[TopicMerge] = field(default_factory=list)
    split: list[TopicSplit] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)

    @property
    def relabeled(self) -> list[int]:
        """Kept topics whose label was redone because their content changed."""
        return [m.topic_id for m in self.kept if m.relabeled]

    def summary(self) -> str:
        """One line, e.g. ``kept 18 (2 relabeled), new 1, merged 1, split 0, gone 0``."""
        parts = [f"kept {len(self.kept)} ({len(self.relabeled)} relabeled)", f"new {len(self.new)}"]
        parts.append(
            f"merged {len(self.merged)}"
            + "".join(f" [{m.topic_id} <- {', '.join(map(str, m.sources))}]" for m in self.merged)
        )
        parts.append(
            f"split {len(self.split)}"
            + "".join(f" [{s.topic_id} -> {', '.join(map(str, s.into))}]" for s in self.split)
        )
        parts.append(f"gone {len(self.gone)}" + (f" {self.gone}" if self.gone else ""))
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RefitReport:
        """Inverse of :meth:`to_dict`."""
        return cls(
            previous_version=int(data["previous_version"]),
            kept=[TopicMatch(**m) for m in data.get("kept", [])],
            new=[int(i) for i in data.get("new", [])],
            merged=[
                TopicMerge(int(m["topic_id"]), [int(s) for s in m["sources"]]) for m in data.get("merged", [])
            ],
            split=[
                TopicSplit(int(s["topic_id"]), [int(i) for i in s["into"]]) for s in data.get("split", [])
            ],
            gone=[int(i) for i in data.get("gone", [])],
        )


_CARRIED = ("label", "description", "label_source", "label_key")


def match_topics(
    old_topics: Sequence[Topic],
    old_centroids: np.ndarray,
    old_labels: np.ndarray,
    new_topics: Sequence[Topic],
    new_centroids: np.ndarray,
    new_labels: np.ndarray,
    *,
    next_topic_id: int,
    previous_version: int,
    matching: TopicMatching | None = None,
) -> tuple[list[Topic], RefitReport, int]:
    """Give the new clusters stable ids and carry labels over; report what changed.

    Args:
        old_topics: topics of the previous version, in its cluster-position order.
        old_centroids: ``(k_old, d)`` float32, L2-normalized, same order.
        old_labels: ``(n,)`` int old position of each chunk present in both versions.
        new_topics: freshly described topics of the refit, in position order (their ``id``
            is ignored and replaced).
        new_centroids: ``(k_new, d)`` float32, L2-normalized.
        new_labels: ``(n,)`` int new position of the same chunks, same order.
        next_topic_id: smallest id never used by this index.
        previous_version: reported.
        matching: thresholds (default :class:`TopicMatching`).

    Returns:
        The new topics in position order with their stable ids and carried labels, the
        :class:`RefitReport`, and the next unused id.
    """
    th = matching or TopicMatching()
    k_old, k_new = len(old_centroids), len(new_centroids)
    old_ids = [int(t.id) for t in old_topics]
    match, sims = _match_centroids(old_centroids, new_centroids, th.min_similarity)
    table, edge = _overlap_table(old_labels, new_labels, k_old, k_new, th.min_share)

    ids: list[int] = []
    counter = int(next_topic_id)
    for n in range(k_new):
        if n in match:
            ids.append(old_ids[match[n]])
        else:
            ids.append(counter)
            counter += 1

    out, kept = _carry_labels(old_topics, new_topics, ids, match, sims, table, th.keep_label_overlap)
    merged, split = _merges_and_splits(edge, old_ids, ids)
    products = {m.topic_id for m in merged} | {i for s in split for i in s.into}
    sources = {s for m in merged for s in m.sources} | {s.topic_id for s in split}
    matched_old = set(match.values())
    report = RefitReport(
        previous_version=int(previous_version),
        kept=sorted(kept, key=lambda m: m.topic_id),
        new=sorted(ids[n] for n in range(k_new) if n not in match and ids[n] not in products),
        merged=sorted(merged, key=lambda m: m.topic_id),
        split=sorted(split, key=lambda s: s.topic_id),
        gone=sorted(old_ids[o] for o in range(k_old) if o not in matched_old and old_ids[o] not in sources),
    )
    return out, report, counter


def _match_centroids(
    old_centroids: np.ndarray, new_centroids: np.ndarray, min_similarity: float
) -> tuple[dict[int, int], np.ndarray]:
    """One-to-one Hungarian matching of new to old centroids on cosine similarity.

    Args:
        old_centroids: ``(k_old, d)``; new_centroids: ``(k_new, d)``; both L2-normalized.
        min_similarity: pairs below this cosine are left unmatched.

    Returns:
        ``(match, sims)``: new position → old position for the kept pairs, and the
        ``(k_new, k_old)`` float64 cosine similarities.
    """
    from scipy.optimize import linear_sum_assignment

    sims = np.asarray(new_centroids, dtype=np.float64) @ np.asarray(old_centroids, dtype=np.float64).T
    rows, cols = linear_sum_assignment(-sims)
    match = {int(r): int(c) for r, c in zip(rows, cols, strict=True) if sims[r, c] >= min_similarity - 1e-9}
    return match, sims


def _overlap_table(
    old_labels: np.ndarray, new_labels: np.ndarray, k_old: int, k_new: int, min_share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Chunk counts shared by every old and new cluster, and which pairs count as a flow.

    Args:
        old_labels: ``(n,)`` int old position of each chunk; new_labels: ``(n,)`` its new position.
        k_old: old clusters; k_new: new clusters.
        min_share: a pair is an edge when it holds at least this share of both clusters' chunks.

    Returns:
        ``(table, edge)``: ``(k_old, k_new)`` int64 counts and ``(k_old, k_new)`` bool edges.
    """
    old_labels = np.asarray(old_labels, dtype=np.int64)
    new_labels = np.asarray(new_labels, dtype=np.int64)
    table = np.bincount(old_labels * k_new + new_labels, minlength=k_old * k_new).reshape(k_old, k_new)
    row, col = table.sum(axis=1), table.sum(axis=0)
    edge = (table > 0) & (table >= min_share * row[:, None]) & (table >= min_share * col[None, :])
    return table, edge


def _carry_labels(
    old_topics: Sequence[Topic],
    new_topics: Sequence[Topic],
    ids: list[int],
    match: dict[int, int],
    sims: np.ndarray,
    table: np.ndarray,
    keep_label_overlap: float,
) -> tuple[list[Topic], list[TopicMatch]]:
    """New topics with their stable ids; matched ones keep the old label when pinned or alike.

    Args:
        old_topics, new_topics: in position order.
        ids: stable id per new position.
        match: new position → old position (from :func:`_match_centroids`).
        sims: ``(k_new, k_old)`` float64 centroid cosines.
        table: ``(k_old, k_new)`` int64 shared chunk counts (from :func:`_overlap_table`).
        keep_label_overlap: Jaccard chunk overlap from which a matched topic keeps its label.

    Returns:
        ``(topics, kept)``: the new topics in position order, and one :class:`TopicMatch` per
        matched topic, in position order.
    """
    row, col = table.sum(axis=1), table.sum(axis=0)
    out: list[Topic] = []
    kept: list[TopicMatch] = []
    for n, topic in enumerate(new_topics):
        topic = replace(topic, id=ids[n])
        if n in match:
            o = match[n]
            old = old_topics[o]
            union = row[o] + col[n] - table[o, n]
            overlap = float(table[o, n] / union) if union else 0.0
            same = overlap >= keep_label_overlap - 1e-12
            keep = old.pinned or same
            if keep:
                carried = {f: getattr(old, f) for f in _CARRIED if hasattr(old, f)}
                topic = replace(topic, pinned=old.pinned, **carried)
            kept.append(TopicMatch(ids[n], round(float(sims[n, o]), 4), round(overlap, 4), not keep))
        out.append(topic)
    return out, kept


def _merges_and_splits(
    edge: np.ndarray, old_ids: list[int], ids: list[int]
) -> tuple[list[TopicMerge], list[TopicSplit]]:
    """New topics fed by several old ones, and old topics feeding several new ones.

    Args:
        edge: ``(k_old, k_new)`` bool flows (from :func:`_overlap_table`).
        old_ids: id per old position; ids: stable id per new position.

    Returns:
        ``(merged, split)`` in position order, ids inside each sorted.
    """
    k_old, k_new = edge.shape
    merged = [
        TopicMerge(ids[n], sorted(old_ids[o] for o in np.nonzero(edge[:, n])[0]))
        for n in range(k_new)
        if edge[:, n].sum() >= 2
    ]
    split = [
        TopicSplit(old_ids[o], sorted(ids[n] for n in np.nonzero(edge[o])[0]))
        for o in range(k_old)
        if edge[o].sum() >= 2
    ]
    return merged, split
