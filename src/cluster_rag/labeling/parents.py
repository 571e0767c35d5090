"""Label requests for the parent nodes of a topic tree, built from their children.

A parent is named from what its children share, contrastive against the other parents:

- **keywords**: each child's keywords, weighted by the child's size and by rank
  (``size / (rank + 1)``), summed over the children, multiplied by the share of the
  children that have the word (what the children share names the parent better than the
  largest child's top word), then by ``log(1 + P / df)`` where ``P`` is the number of
  parents and ``df`` the number of parents whose children use the word: the c-TF-IDF
  idea one level up, so words that every parent has sink and words that set this
  parent apart rise;
- **children**: the children's names, largest child first (the prompt lists them and the
  labeler rejects a parent name that copies one);
- **siblings**: the current names of the other parents, most similar first (cosine of
  the weighted keyword vectors), so the model is told what not to call it.

Any labeler names parents as it names leaves (:class:`KeywordLabeler` joins the merged
keywords; :class:`OpenAILabeler` gets a prompt listing the subtopics). Name a tree
bottom-up, one level at a time, passing the names below as ``reserved`` so a parent is
not named like any child; a parent of a higher level has leaves and lower parents as
children (wrap the named lower parents in :class:`NamedNode`)::

    nodes = list(leaf_topics)
    for level in range(1, tree.depth + 1):
        parents = {n.id: list(n.children) for n in tree.at_level(level)}
        requests = parent_requests(parents, nodes, names=current_names)
        results = labeler.label(requests, reserved=[n.label for n in nodes])
        pairs = zip(requests, results, strict=True)
        nodes += [NamedNode(q.topic_id, q.size, r.name, q.keywords) for q, r in pairs]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..errors import InvalidInputError
from .base import LabelRequest
from .keywords import keyword_label

__all__ = ["ChildTopic", "NamedNode", "parent_requests"]


class ChildTopic(Protocol):
    """What :func:`parent_requests` reads of a child (a :class:`~cluster_rag.Topic` fits)."""

    @property
    def id(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def label(self) -> str: ...

    @property
    def keywords(self) -> list[str]: ...


@dataclass(frozen=True)
class NamedNode:
    """A named node of the tree to use as a child of a higher level (fits :class:`ChildTopic`)."""

    id: int
    size: int
    label: str
    keywords: list[str] = field(default_factory=list)


def parent_requests(
    parents: Mapping[int, Sequence[int]],
    children: Sequence[ChildTopic],
    *,
    names: Mapping[int, str] | None = None,
    representatives: Mapping[int, Sequence[str]] | None = None,
    n_keywords: int = 10,
    n_children: int = 12,
    n_siblings: int = 5,
) -> list[LabelRequest]:
    """One :class:`LabelRequest` per parent node, in ascending parent id.

    Args:
        parents: parent node id → ids of its children (topics of the level below: leaves,
            or parents of a lower level). Parent ids must not collide with child ids if the
            caller stores both in one id space.
        children: the child topics (id, size, label, keywords), any order.
        names: current names of the parents (shown to the other parents as names to avoid);
            a parent without one is shown by its merged keyword label.
        representatives: optional texts per parent (e.g. chunks nearest its centroid),
            most central first.
        n_keywords: merged keywords kept per parent.
        n_children: children named in a request, largest first.
        n_siblings: other parents named in a request, most similar first.

    Returns:
        Requests with ``topic_id`` = parent id, ``size`` = sum of the children's sizes,
        ``children`` = child names, ``keywords`` = merged keywords, ``siblings`` = other
        parents' names, ``keyword_label`` = the merged keyword label.

    Raises:
        InvalidInputError: a parent lists no child, or a child id that is not in ``children``.
    """
    by_id = {c.id: c for c in children}
    order = sorted(parents)
    _check_parents(parents, order, by_id)
    weights = _keyword_weights(parents, order, by_id)
    n_parents = len(order)
    merged = [
        [w for w, _ in sorted(s.items(), key=lambda kv: (-kv[1], kv[0]))[:n_keywords]] for s in weights
    ]
    labels = [keyword_label(kws) for kws in merged]
    shown = [(names or {}).get(pid) or labels[i] for i, pid in enumerate(order)]
    sims = _sibling_similarity(weights)
    out = []
    for i, pid in enumerate(order):
        kids = sorted(parents[pid], key=lambda c: (-by_id[c].size, c))
        nearest = np.argsort(-sims[i], kind="stable")[: min(n_siblings, n_parents - 1)]
        out.append(
            LabelRequest(
                topic_id=pid,
                size=sum(by_id[c].size for c in parents[pid]),
                keywords=merged[i],
                representatives=list((representatives or {}).get(pid, [])),
                siblings=[shown[int(j)] for j in nearest if shown[int(j)]],
                keyword_label=labels[i],
                children=[by_id[c].label for c in kids[:n_children] if by_id[c].label],
            )
        )
    return out


def _check_parents(
    parents: Mapping[int, Sequence[int]], order: list[int], by_id: Mapping[int, ChildTopic]
) -> None:
    """Raise :class:`InvalidInputError` if a parent lists no child or a child not in ``by_id``."""
    for pid in order:
        kids = list(parents[pid])
        if not kids:
            raise InvalidInputError(f"parent {pid} has no children; every parent needs at least one")
        missing = [c for c in kids if c not in by_id]
        if missing:
            raise InvalidInputError(
                f"parent {pid} lists children {missing} that are not among the {len(by_id)} child topics "
                "passed; pass every child topic of the tree level below"
            )


def _keyword_weights(
    parents: Mapping[int, Sequence[int]], order: list[int], by_id: Mapping[int, ChildTopic]
) -> list[dict[str, float]]:
    """Merged keyword weights of each parent, in ``order``.

    A child's keyword at rank ``r`` (0-based) scores ``max(size, 1) / (r + 1)``; a parent's
    word sums its children's scores, times the share of its children using the word, times
    ``log(1 + n_parents / parents using the word)``.

    Returns:
        One ``{word: weight}`` per parent (weights > 0).
    """
    weights: list[dict[str, float]] = []
    for pid in order:
        score: dict[str, float] = {}
        users: dict[str, int] = {}
        for cid in parents[pid]:
            child = by_id[cid]
            for rank, word in enumerate(dict.fromkeys(child.keywords)):
                score[word] = score.get(word, 0.0) + max(child.size, 1) / (rank + 1)
                users[word] = users.get(word, 0) + 1
        n_kids = len(parents[pid])
        weights.append({w: v * users[w] / n_kids for w, v in score.items()})
    df: dict[str, int] = {}
    for score in weights:
        for word in score:
            df[word] = df.get(word, 0) + 1
    n_parents = len(order)
    for score in weights:
        for word in score:
            score[word] *= math.log(1 + n_parents / df[word])
    return weights


def _sibling_similarity(weights: list[dict[str, float]]) -> np.ndarray:
    """Cosine similarity of the parents' weighted keyword vectors.

    Args:
        weights: ``{word: weight}`` per parent (from :func:`_keyword_weights`).

    Returns:
        ``(n, n)`` float64, ``-inf`` on the diagonal (a parent is not its own sibling).
    """
    vocab = sorted({word for score in weights for word in score})
    col = {w: j for j, w in enumerate(vocab)}
    mat = np.zeros((len(weights), len(vocab)), dtype=np.float64)
    for i, score in enumerate(weights):
        for word, value in score.items():
            mat[i, col[word]] = value
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    mat /= np.where(norms > 0, norms, 1.0)
    sims = mat @ mat.T
    np.fill_diagonal(sims, -np.inf)
    return sims
