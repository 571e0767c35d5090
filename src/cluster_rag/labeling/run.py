"""Labeling the active version's topics and storing names with the version.

Each topic's labeler input is its c-TF-IDF keywords, representative chunks near
the centroid (diversified with MMR) and the current labels of its nearest topics.
A label is cached under a key of labeler + model + prompt version + that content:
topics whose key is unchanged (in this version or another kept one) keep their
label without any call. Pinned topics (renamed by a person) are never relabeled;
their names are reserved. Names are stored by re-reading the payload at write
time, so labels written meanwhile by another process survive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..errors import InvalidInputError, LabelingError, VersionError
from ..model import ClusterModel
from ..store import ChromaStore
from ..types import Topic
from .base import Labeler, LabelReport, LabelResult, TopicLabelStatus, label_key, normalize_name
from .plan import CachedLabel, apply_result, build_requests, cache_of

__all__ = ["label_topics", "pin_name", "store_topics", "unpin"]


def store_topics(store: ChromaStore, version: int, change: Callable[[Topic], Topic]) -> list[Topic]:
    """Apply ``change`` to the stored topics of ``version`` (re-read now) and save them.

    Raises:
        VersionError: the version was deleted meanwhile.
    """
    payload = store.load_model(version)
    if payload is None:
        raise VersionError(f"model version {version} was deleted meanwhile; refit or relabel")
    topics = [change(Topic.from_dict(t)) for t in payload["topics"]]
    payload["topics"] = [t.to_dict() for t in topics]
    store.update_model(version, payload)
    return topics


def _texts_by_id(store: ChromaStore) -> Callable[[list[str]], dict[str, str]]:
    def fetch(ids: list[str]) -> dict[str, str]:
        got = store.get(ids, include=["documents"])
        return {cid: text or "" for cid, text in zip(got["ids"], got["documents"], strict=True)}

    return fetch


def label_topics(
    store: ChromaStore,
    model: ClusterModel,
    labeler: Labeler,
    *,
    force: bool,
    n_representatives: int,
    n_siblings: int,
    progress: bool,
) -> tuple[list[Topic], LabelReport]:
    """Name the model's topics with ``labeler``; returns the stored topics and the report.

    Raises:
        LabelingError: the labeler broke its contract.
    """
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
    cache = _kept_labels(store, model)
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

    stored = store_topics(store, version, relabel)
    report = LabelReport(
        version=version,
        labeler=labeler.cache_id,
        topics=_statuses(stored, by_id),
        prompt_tokens=sum(r.prompt_tokens for r in results),
        completion_tokens=sum(r.completion_tokens for r in results),
        calls=sum(r.calls for r in results),
    )
    return stored, report


def _kept_labels(store: ChromaStore, model: ClusterModel) -> dict[str, CachedLabel]:
    """Reusable labels by cache key, from ``model``'s topics and those of every other kept version."""
    older = []
    for v in store.versions():
        payload = store.load_model(v) if v != model.version else None
        if payload is not None:
            older.append([Topic.from_dict(t) for t in payload.get("topics", [])])
    return cache_of([model.topics, *older])


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


def pin_name(
    store: ChromaStore, model: ClusterModel, topic_id: int, name: str, description: str | None
) -> list[Topic]:
    """Store ``name`` (already cleaned) as topic ``topic_id``'s pinned label.

    Raises:
        InvalidInputError: another topic already has that name.
    """
    for other in model.topics:
        if other.id != topic_id and normalize_name(other.label) == normalize_name(name):
            raise InvalidInputError(
                f"topic {other.id} is already named {other.label!r}; pick another name for topic "
                f"{topic_id} or rename topic {other.id} first"
            )

    def pin(t: Topic) -> Topic:
        if t.id != topic_id:
            return t
        desc = t.description if description is None else " ".join(description.split())
        return replace(t, label=name, description=desc, pinned=True, label_source="human", label_key="")

    return store_topics(store, model.version, pin)


def unpin(store: ChromaStore, model: ClusterModel, topic_id: int) -> list[Topic]:
    """Release topic ``topic_id``'s pinned label (the next labeling run may rename it)."""
    return store_topics(
        store, model.version, lambda t: replace(t, pinned=False, label_key="") if t.id == topic_id else t
    )
