"""The labeler protocol and the plain data that flows through labeling.

A labeler turns :class:`LabelRequest` (one per cluster: keywords, representative
texts, the current names of its nearest sibling clusters) into
:class:`LabelResult` (a name, a one-sentence description, a status). The index
builds the requests, consults the label cache, calls the labeler for the clusters
that need it and stores the results with the model version; it returns a
:class:`LabelReport`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "LabelReport",
    "LabelRequest",
    "LabelResult",
    "LabelStatus",
    "Labeler",
    "TopicLabelStatus",
    "content_key",
    "label_key",
    "normalize_name",
]

#: ``ok``: labeled on the first answer; ``repaired``: labeled after one repair request;
#: ``fallback``: the labeler gave up and the keyword label was used; ``cached``: an
#: unchanged cluster kept its stored label (no call); ``pinned``: a person fixed the label.
LabelStatus = Literal["ok", "repaired", "fallback", "cached", "pinned"]


@dataclass(frozen=True)
class LabelRequest:
    """What a labeler gets for one cluster.

    Attributes:
        topic_id: cluster id.
        size: chunks in the cluster.
        keywords: c-TF-IDF keywords, most distinctive first.
        representatives: texts near the centroid, diversified with MMR, most central first.
        siblings: current labels of the nearest other clusters (by centroid cosine), nearest first.
        keyword_label: the keyword label; the fallback when a labeler gives up.
        children: for a parent node of the topic tree, the names of its children, largest
            first (see :func:`~cluster_rag.labeling.parent_requests`); empty for a leaf topic.
            A labeler names a parent after what its children share and must not copy a child.
    """

    topic_id: int
    size: int
    keywords: list[str]
    representatives: list[str]
    siblings: list[str] = field(default_factory=list)
    keyword_label: str = ""
    children: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LabelResult:
    """What a labeler answers for one cluster.

    Attributes:
        topic_id: cluster id of the request.
        name: the label (at most 6 words for LLM labels).
        description: one sentence, or ``""``.
        keywords: keywords the labeler chose (LLM) or the request's keywords.
        status: ``"ok"``, ``"repaired"`` or ``"fallback"``.
        source: ``"keywords"``, ``"llm"`` or ``"fallback"`` (stored as ``Topic.label_source``).
        error: why the labeler fell back or needed a repair, else ``None``.
        transient: the fallback came from the transport (timeouts, 5xx, connection errors
            after the retries), not from the answers: it is not cached, the next run retries it.
        prompt_tokens: prompt tokens spent on this cluster (from the server's ``usage``).
        completion_tokens: completion tokens spent on this cluster.
        calls: requests sent for this cluster (retries and repairs included).
    """

    topic_id: int
    name: str
    description: str = ""
    keywords: list[str] = field(default_factory=list)
    status: str = "ok"
    source: str = "keywords"
    error: str | None = None
    transient: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0


@runtime_checkable
class Labeler(Protocol):
    """Anything that names clusters.

    ``cache_id`` identifies the labeler, its model and its prompt version: a stored
    label is reused only when the cluster content and ``cache_id`` are unchanged.
    """

    @property
    def cache_id(self) -> str:
        """Stable id of labeler + model + prompt version, e.g. ``"openai:gpt-4o-mini:p1"``."""
        ...

    def label(
        self,
        requests: Sequence[LabelRequest],
        *,
        reserved: Collection[str] = (),
        progress: bool = False,
    ) -> list[LabelResult]:
        """Label clusters.

        Args:
            requests: one per cluster to label.
            reserved: names already used by clusters that are not being labeled
                (pinned or cached); answers must differ from them.
            progress: show a progress bar over clusters.

        Returns:
            One result per request, in request order. One failing cluster must not
            raise: it comes back with ``status="fallback"``.
        """
        ...


@dataclass(frozen=True)
class TopicLabelStatus:
    """How one topic got its label in a :meth:`ClusterIndex.label` run.

    ``transient`` marks a fallback caused by timeouts or server errors: not cached,
    the next run retries it. ``level`` is the node's level in the topic tree (0: a topic;
    1 ..: a parent node, see :attr:`LabelReport.parents`).
    """

    topic_id: int
    status: str
    label: str
    description: str = ""
    error: str | None = None
    transient: bool = False
    level: int = 0


@dataclass(frozen=True)
class LabelReport:
    """Outcome of :meth:`ClusterIndex.label`.

    Attributes:
        version: the model version the labels were stored with.
        labeler: the labeler's ``cache_id``.
        topics: per-topic status, by topic id.
        prompt_tokens: total prompt tokens over all calls (as the server reported them).
        completion_tokens: total completion tokens.
        calls: requests sent (0 when every topic was cached or pinned), parents included.
        parents: per-parent status of the topic tree's parent nodes with two or more
            children, lowest level first (a node over one topic shows that topic's name
            and is not labeled). Tokens and calls above include them.
    """

    version: int
    labeler: str
    topics: list[TopicLabelStatus]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    parents: list[TopicLabelStatus] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of topics per status (every status present, zeros included)."""
        return _count(self.topics)

    def parent_counts(self) -> dict[str, int]:
        """Number of parent nodes per status (every status present, zeros included)."""
        return _count(self.parents)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with ``counts`` and ``parent_counts``."""
        return {**asdict(self), "counts": self.counts(), "parent_counts": self.parent_counts()}


def _count(statuses: Sequence[TopicLabelStatus]) -> dict[str, int]:
    out = {s: 0 for s in ("ok", "repaired", "fallback", "cached", "pinned")}
    for t in statuses:
        out[t.status] = out.get(t.status, 0) + 1
    return out


def normalize_name(name: str) -> str:
    """Comparison form of a label: case-folded, punctuation-trimmed, single-spaced."""
    return " ".join(name.casefold().strip(" \t\n\"'`.,;:!?*_-").split())


def content_key(
    keywords: Sequence[str], representatives: Sequence[str], children: Sequence[str] = ()
) -> str:
    """Hash of what a labeler sees of one cluster (keywords + representative texts, and the
    children's names of a parent node; a leaf's key does not depend on the ``children`` argument)."""
    data: dict[str, list[str]] = {"keywords": list(keywords), "representatives": list(representatives)}
    if children:
        data["children"] = list(children)
    return hashlib.sha256(json.dumps(data).encode("utf-8")).hexdigest()


def label_key(labeler_id: str, request: LabelRequest) -> str:
    """Cache key of a label: labeler (model + prompt version) + cluster content."""
    blob = labeler_id + "\0" + content_key(request.keywords, request.representatives, request.children)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]
