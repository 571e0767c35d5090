"""Labeling the active version's topics and storing names with the version.

Each topic's labeler input is its c-TF-IDF keywords, representative chunks near
the centroid (diversified with MMR) and the current labels of its nearest topics.
A label is cached under a key of labeler + model + prompt version + that content:
topics whose key is unchanged (in this version or another kept one) keep their
label without any call. Pinned topics (renamed by a person) are never relabeled;
their names are reserved. Names are stored by re-reading the payload at write
time, so labels written meanwhile by another process survive.

**Parent nodes.** After the topics, every parent node of the version's topic tree
(:mod:`cluster_rag.hierarchy`) with two or more children is named, one level at a
time from the lowest, by the same labeler: its request holds its children's names and
the merged, contrastive keywords of :func:`.parents.parent_requests`, with the other
parents of its level as siblings; every name below (topics, lower parents) and the
kept names of its level are reserved. Whatever the labeler, a parent name is then
checked here: a name equal to (or, for an LLM name, nearly equal to, see
:mod:`.names`) a reserved name, a sibling's or a child's name, or an LLM name that
is just a keyword list, is rejected; the rejected parents are asked once more, then
fall back to a distinct keyword label, flagged ``"fallback"`` with the reason. Parent
names are stored in the version's tree (:attr:`~cluster_rag.hierarchy.TopicTree.names`)
under the same kind of cache key (children's names + merged keywords), so an
unchanged parent keeps its name without a call, and a refit carries the names of the
parents that keep their id. A parent over one topic shows that topic's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import InvalidInputError, LabelingError, VersionError
from ..hierarchy import NodeName, TopicTree
from ..model import ClusterModel
from ..store import ChromaStore
from ..types import Topic
from ..validation import check_bool, check_int
from .base import Labeler, LabelReport, LabelResult, TopicLabelStatus, label_key, normalize_name
from .keyword_labeler import KeywordLabeler
from .parent_run import label_parents, parent_cache
from .plan import apply_result, build_requests, cache_of

__all__ = ["StoredLabels", "label_topics", "node_id", "pin_name", "store_topics", "unpin"]

NamesChange = Callable[[dict[int, NodeName]], dict[int, NodeName]]


@dataclass(frozen=True)
class StoredLabels:
    """What one labeling write stored for a model version.

    Attributes:
        version: the version whose payload was rewritten.
        topics: its stored topics, by position.
        tree: its stored topic-tree payload when parent names changed, else ``None``.
    """

    version: int
    topics: list[Topic]
    tree: dict[str, Any] | None = None


def store_topics(
    store: ChromaStore,
    version: int,
    change: Callable[[Topic], Topic],
    names: NamesChange | None = None,
    model: ClusterModel | None = None,
) -> StoredLabels:
    """Apply ``change`` to the stored topics of ``version`` (re-read now) and save them.

    Args:
        store: the index's store.
        version: the model version whose payload is rewritten.
        change: applied to each stored topic.
        names: applied to the stored parent names of the version's tree (re-read now);
            ``None`` leaves the tree as stored.
        model: the snapshot of ``version`` (needed with ``names``): its tree is used when
            the version was stored without one.

    Raises:
        VersionError: the version was deleted meanwhile.
    """
    payload = store.load_model(version)
    if payload is None:
        raise VersionError(f"model version {version} was deleted meanwhile; refit or relabel")
    topics = [change(Topic.from_dict(t)) for t in payload["topics"]]
    payload["topics"] = [t.to_dict() for t in topics]
    tree = None
    if names is not None and model is not None:
        tree = payload["tree"] = _renamed_tree(payload.get("tree"), model, names)
    store.update_model(version, payload)
    return StoredLabels(version, topics, tree)


def _renamed_tree(stored: Any, model: ClusterModel, names: NamesChange) -> dict[str, Any]:
    """The stored tree (or, for a version stored without one, the model's) with ``names`` applied."""
    try:
        tree = TopicTree.from_dict(stored) if isinstance(stored, dict) and stored else model.tree
    except InvalidInputError:
        tree = model.tree
    return tree.with_names(names(dict(tree.names))).to_dict()


def _texts_by_id(store: ChromaStore) -> Callable[[list[str]], dict[str, str]]:
    def fetch(ids: list[str]) -> dict[str, str]:
        got = store.get(ids, include=["documents"])
        return {cid: text or "" for cid, text in zip(got["ids"], got["documents"], strict=True)}

    return fetch


def _checked(labeler: Labeler | None, force: bool, n_representatives: int, n_siblings: int) -> Labeler:
    """``labeler`` (``None``: :class:`KeywordLabeler`) after checking it and the counts at the door."""
    labeler = KeywordLabeler() if labeler is None else labeler
    if not isinstance(labeler, Labeler):
        raise InvalidInputError(
            f"labeler {type(labeler).__name__} lacks cache_id / label(requests, reserved=, progress=); "
            "use KeywordLabeler() or OpenAILabeler(client=..., model=...)"
        )
    check_int(n_representatives, "n_representatives", low=1)
    check_int(n_siblings, "n_siblings", low=0)
    check_bool(force, "force")
    return labeler


def label_topics(
    store: ChromaStore,
    model: ClusterModel,
    labeler: Labeler | None,
    *,
    force: bool,
    n_representatives: int,
    n_siblings: int,
    progress: bool,
) -> tuple[StoredLabels, LabelReport]:
    """Name the model's topics, then its tree's parents, with ``labeler`` (``None``: keywords).

    Returns:
        What was stored, and the report.

    Raises:
        InvalidInputError: ``labeler`` is not a :class:`Labeler`, or a count is out of range.
        LabelingError: the labeler broke its contract.
    """
    labeler = _checked(labeler, force, n_representatives, n_siblings)
    version = model.version
    topics = model.sized_topics()
    requests = build_requests(  # centroids and members are positional: build with positions, then map to ids
        [replace(t, id=pos) for pos, t in enumerate(topics)],
        model.centroids,
        model.members,
        _texts_by_id(store),
        n_representatives=n_representatives,
        n_siblings=n_siblings,
    )
    requests = [replace(r, topic_id=t.id) for r, t in zip(requests, topics, strict=True)]
    keys = {r.topic_id: label_key(labeler.cache_id, r) for r in requests}
    older = _older_payloads(store, model)
    cache = cache_of([model.topics, *([Topic.from_dict(t) for t in p.get("topics", [])] for p in older)])
    cached = {}
    if not force:
        cached = {t.id: cache[keys[t.id]] for t in topics if not t.pinned and keys[t.id] in cache}
    todo = [r for r, t in zip(requests, topics, strict=True) if not t.pinned and t.id not in cached]
    reserved = [t.label for t in topics if t.pinned] + [c.label for c in cached.values()]
    results = labeler.label(todo, reserved=reserved, progress=progress) if todo else []
    if [r.topic_id for r in results] != [r.topic_id for r in todo]:
        raise LabelingError(
            f"labeler {labeler.cache_id!r} returned {len(results)} results for {len(todo)} requests "
            "(or out of order); it must return one result per request, in order"
        )
    by_id = {r.topic_id: r for r in results}

    def relabel(t: Topic) -> Topic:
        if t.pinned:
            return t
        if t.id in cached:
            hit = cached[t.id]
            return replace(
                t, label=hit.label, description=hit.description, label_source=hit.source, label_key=keys[t.id]
            )
        return apply_result(t, by_id[t.id], keys[t.id]) if t.id in by_id else t

    leaves = [relabel(t) for t in topics]  # by position, current sizes: what the parents are named from
    cache = parent_cache([model.tree, *_trees(older)])
    parents = label_parents(model.tree, leaves, labeler, cache=cache, force=force, progress=progress)
    stored = store_topics(store, version, relabel, parents.merge, model)
    report = LabelReport(
        version=version,
        labeler=labeler.cache_id,
        topics=_statuses(stored.topics, by_id),
        prompt_tokens=sum(r.prompt_tokens for r in results) + parents.prompt_tokens,
        completion_tokens=sum(r.completion_tokens for r in results) + parents.completion_tokens,
        calls=sum(r.calls for r in results) + parents.calls,
        parents=parents.statuses,
    )
    return stored, report


def _older_payloads(store: ChromaStore, model: ClusterModel) -> list[dict[str, Any]]:
    """The payloads of every kept version but ``model``'s (their labels are reusable)."""
    payloads = (store.load_model(v) for v in store.versions() if v != model.version)
    return [p for p in payloads if p is not None]


def _trees(payloads: list[dict[str, Any]]) -> list[TopicTree]:
    """The stored topic trees of ``payloads`` (versions without one, or of an unknown format, skipped)."""
    trees = []
    for payload in payloads:
        data = payload.get("tree")
        if not isinstance(data, dict):
            continue
        try:
            trees.append(TopicTree.from_dict(data))
        except InvalidInputError:
            continue
    return trees


def _statuses(stored: list[Topic], by_id: dict[int, LabelResult]) -> list[TopicLabelStatus]:
    """One status per stored topic: ``"pinned"``, ``"cached"`` (no request sent), or the result's."""
    statuses = []
    for t in stored:
        res = by_id.get(t.id)
        if t.pinned or res is None:
            statuses.append(
                TopicLabelStatus(t.id, "pinned" if t.pinned else "cached", t.label, t.description)
            )
        else:
            statuses.append(
                TopicLabelStatus(t.id, res.status, t.label, t.description, res.error, res.transient)
            )
    return statuses


def node_id(model: ClusterModel, topic: int | str) -> int:
    """The id of the topic or topic-tree parent node ``topic`` (an id or a name) names.

    Raises:
        UnknownTopicError: no such topic or node.
    """
    parent = model.parent_of(topic)  # a parent node is named itself, not its first topic
    return parent if parent is not None else model.resolve_topics([topic])[0]


def pin_name(
    store: ChromaStore, model: ClusterModel, topic: int | str, name: str, description: str | None
) -> tuple[int, StoredLabels]:
    """Store ``name`` (already cleaned) as the pinned label of ``topic`` (id or name), a topic or a
    parent node of the topic tree (stored with the tree's names); returns its id and what was stored.

    Raises:
        InvalidInputError: another topic or parent node already has that name.
        UnknownTopicError: no such topic or node.
    """
    topic_id = node_id(model, topic)
    tree = model.tree
    is_parent = tree.parent_id(topic_id) is not None
    taken = [(t.id, t.label) for t in model.topics]
    taken += [(pid, n.label) for pid, n in tree.names.items()]
    for other, label in taken:
        if other != topic_id and normalize_name(label) == normalize_name(name):
            raise InvalidInputError(
                f"topic {other} is already named {label!r}; pick another name for topic "
                f"{topic_id} or rename topic {other} first"
            )
    if is_parent:
        old = tree.names.get(topic_id)
        desc = (old.description if old else "") if description is None else " ".join(description.split())
        pinned = NodeName(label=name, description=desc, source="human", key="", pinned=True)
        return topic_id, store_topics(
            store, model.version, lambda t: t, lambda names: {**names, topic_id: pinned}, model
        )

    def pin(t: Topic) -> Topic:
        if t.id != topic_id:
            return t
        desc = t.description if description is None else " ".join(description.split())
        return replace(t, label=name, description=desc, pinned=True, label_source="human", label_key="")

    return topic_id, store_topics(store, model.version, pin)


def unpin(store: ChromaStore, model: ClusterModel, topic: int | str) -> tuple[int, StoredLabels]:
    """Release the pinned label of ``topic`` (a topic or parent node, id or name); the next labeling
    may rename it. Returns its id and what was stored."""
    topic_id = node_id(model, topic)
    if model.tree.parent_id(topic_id) is not None:

        def release(names: dict[int, NodeName]) -> dict[int, NodeName]:
            old = names.get(topic_id)
            return names if old is None else {**names, topic_id: replace(old, pinned=False, key="")}

        return topic_id, store_topics(store, model.version, lambda t: t, release, model)
    return topic_id, store_topics(
        store, model.version, lambda t: replace(t, pinned=False, label_key="") if t.id == topic_id else t
    )
