"""Access scopes: what one reader (a tenant, an agent, an MCP session) may see of an index.

A :class:`Scope` is fixed when a retriever, a tool set, an MCP server, a web app or a
CLI session is built, and it only ever narrows what a caller asks for:

- ``where``: a Chroma metadata filter, e.g. ``{"tenant": "A"}``. A caller's own filter
  is combined with it by ``$and`` (:meth:`Scope.combine`), never put in its place, so no
  argument a caller controls (``where=None``, ``{"$or": [...]}``, a key spelled in
  another case, a topic id, a guessed chunk id) can reach a chunk outside it.
- ``topics``: an allow-list of stable topic ids; searches route only among them.
- ``collection``: the collection the scope belongs to (hard isolation: one collection
  per tenant); binding the scope to an index of another collection is an error.

The scope is enforced in one place, :mod:`cluster_rag.search` (routed search, get by id,
neighbour lookup); every door — :class:`~cluster_rag.ClusterIndex` methods with
``scope=``, :class:`~cluster_rag.retriever.ClusteredRetriever`, the LangChain and
LlamaIndex adapters, :class:`~cluster_rag.tools.TopicTools`, the MCP server, the web
app — passes its scope there. An id outside the scope answers exactly like an id that
does not exist.

Topic views within a scope (:func:`scoped_view`): sizes, keywords, representative chunks
and the centroid used to rank topics are computed from the chunks in scope only; topics
with no chunk in scope are not shown and answer like unknown topics. Labels and
descriptions (written by an LLM or a person who read *every* chunk of a topic) are
withheld from a ``where`` scope: each topic is named by its in-scope keywords instead.
Pass ``shared_labels=True`` when one label set is fit for every reader (labels reviewed,
built from public documents, or one tenant per collection). A ``topics``-only scope shows
stored labels: every chunk of an allowed topic is readable by it.

What a scope does not hide: the routing structure (which clusters exist and their
global centroids decide which clusters are probed; hit scores and topic views are
computed within the scope), and the number of topics is bounded by the model's ``k``.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidInputError
from .types import Topic

if TYPE_CHECKING:
    from .model import ClusterModel
    from .store import ChromaStore

__all__ = ["SCOPE_ENV", "Scope", "ScopedView", "check_scope", "scoped_view"]

#: Environment variable read by ``cluster-rag mcp`` / ``serve`` when ``--scope`` is not given.
SCOPE_ENV = "CLUSTER_RAG_SCOPE"
_STRUCTURED = frozenset({"where", "topics", "collection", "shared_labels"})
_KEYWORDS_IN_NAME = 3
_REPRESENTATIVES = 3


class Scope:
    """A reader's fixed view of an index; immutable and hashable.

    Args:
        where: Chroma ``where`` filter every chunk the reader sees must pass, e.g.
            ``{"tenant": "A"}`` or ``{"tenant": {"$in": ["A", "shared"]}}``.
        topics: stable topic ids the reader may see (``None``: every topic).
        collection: the one collection this scope may be used with (``None``: any).
        shared_labels: show stored topic labels and descriptions to a ``where`` scope
            (see the module docstring); default ``False``: names from in-scope keywords.

    Raises:
        InvalidInputError: nothing to restrict by, a ``where`` that is not a valid Chroma
            filter, topic ids that are not ints, a blank collection name.
    """

    __slots__ = ("_collection", "_key", "_shared", "_topics", "_where_json")

    def __init__(
        self,
        where: Mapping[str, Any] | None = None,
        *,
        topics: Iterable[int] | None = None,
        collection: str | None = None,
        shared_labels: bool = False,
    ) -> None:
        if where is None and topics is None and collection is None:
            raise InvalidInputError(
                "Scope() restricts nothing; give where={'tenant': 'A'}, topics=[...] or collection='...'"
            )
        where_json = None
        if where is not None:
            where_json = _check_where(where)
        allowed = None
        if topics is not None:
            if isinstance(topics, (str, bytes, int)):
                raise InvalidInputError(f"Scope topics={topics!r} must be a list of topic ids, e.g. [3, 7]")
            items = list(topics)
            for item in items:
                if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
                    raise InvalidInputError(
                        f"Scope topics item {item!r} must be an int topic id (names change when relabeled)"
                    )
            allowed = frozenset(int(t) for t in items)
        if collection is not None and (not isinstance(collection, str) or not collection.strip()):
            raise InvalidInputError(f"Scope collection={collection!r} must be a non-blank collection name")
        if not isinstance(shared_labels, bool):
            raise InvalidInputError(f"Scope shared_labels={shared_labels!r} must be True or False")
        self._where_json = where_json
        self._topics = allowed
        self._collection = collection
        self._shared = shared_labels
        self._key = json.dumps(
            {
                "where": json.loads(where_json) if where_json else None,
                "topics": sorted(allowed) if allowed is not None else None,
                "collection": collection,
                "shared_labels": shared_labels,
            },
            sort_keys=True,
        )

    # the value ------------------------------------------------------------------------
    @property
    def where(self) -> dict[str, Any] | None:
        """The scope's filter (a fresh copy: changing it changes nothing)."""
        return json.loads(self._where_json) if self._where_json is not None else None

    @property
    def topics(self) -> frozenset[int] | None:
        """Allowed stable topic ids, or ``None`` for every topic."""
        return self._topics

    @property
    def collection(self) -> str | None:
        return self._collection

    @property
    def shared_labels(self) -> bool:
        return self._shared

    @property
    def filters_rows(self) -> bool:
        """Whether the scope hides any chunk of the collection it is bound to."""
        return self._where_json is not None or self._topics is not None

    @property
    def withholds_labels(self) -> bool:
        """Whether stored labels/descriptions are hidden (a ``where`` scope without ``shared_labels``)."""
        return self._where_json is not None and not self._shared

    @property
    def key(self) -> str:
        """Canonical JSON of the scope (equal scopes have equal keys)."""
        return self._key

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (for audit lines and logs)."""
        out: dict[str, Any] = json.loads(self._key)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scope) and other.key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.to_dict().items() if v not in (None, False)]
        return f"Scope({', '.join(parts)})"

    # combining ------------------------------------------------------------------------
    def combine(self, where: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """A caller's filter AND the scope's: ``{"$and": [scope, caller]}`` (one of them alone
        when the other is ``None``). The result never matches a chunk outside the scope."""
        mine = self.where
        if where is None:
            return mine
        theirs = copy.deepcopy(dict(where))
        if mine is None:
            return theirs
        return {"$and": [mine, theirs]}

    def allows_topic(self, topic_id: int) -> bool:
        return self._topics is None or topic_id in self._topics

    def check_collection(self, name: str) -> None:
        """Raise when the scope is bound to another collection than ``name``.

        Raises:
            InvalidInputError: the scope names another collection.
        """
        if self._collection is not None and self._collection != name:
            raise InvalidInputError(
                f"this scope belongs to collection {self._collection!r} but the index opened "
                f"{name!r}; open the tenant's own collection (--collection {self._collection})"
            )

    # parsing ------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> Scope:
        """A scope from JSON text: a plain Chroma filter (``'{"tenant": "A"}'``) or the
        structured form ``'{"where": {...}, "topics": [..], "collection": "..", "shared_labels": false}'``.

        An object whose keys are all among ``where``, ``topics``, ``collection`` and
        ``shared_labels`` is read as the structured form; to filter on a metadata key
        of one of those names, use it: ``'{"where": {"topics": "x"}}'``.

        Raises:
            InvalidInputError: not JSON, not an object, or an invalid scope.
        """
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("a scope must be JSON text such as '{\"tenant\": \"A\"}'")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"scope is not valid JSON ({exc.msg} at character {exc.pos}); "
                "write it like '{\"tenant\": \"A\"}'"
            ) from None
        if not isinstance(data, dict) or not data:
            raise InvalidInputError("a scope must be a non-empty JSON object, e.g. '{\"tenant\": \"A\"}'")
        if set(data) <= _STRUCTURED:
            return cls(
                data.get("where"),
                topics=data.get("topics"),
                collection=data.get("collection"),
                shared_labels=data.get("shared_labels", False),
            )
        return cls(data)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Scope | None:
        """The scope in ``$CLUSTER_RAG_SCOPE`` (JSON, see :meth:`parse`), or ``None`` when unset/blank."""
        text = (os.environ if environ is None else environ).get(SCOPE_ENV, "")
        if not text.strip():
            return None
        try:
            return cls.parse(text)
        except InvalidInputError as exc:
            raise InvalidInputError(f"${SCOPE_ENV}: {exc}") from None


def check_scope(scope: Any, store: ChromaStore) -> Scope:
    """``scope`` checked for use with ``store``.

    Raises:
        InvalidInputError: not a :class:`Scope`, or a scope of another collection.
    """
    if not isinstance(scope, Scope):
        raise InvalidInputError(f"scope={scope!r} must be a cluster_rag.Scope or None")
    scope.check_collection(store.name)
    return scope


def _check_where(where: Any) -> str:
    if not isinstance(where, Mapping) or not where:
        raise InvalidInputError(
            f"Scope where={where!r} must be a non-empty Chroma filter dict, e.g. {{'tenant': 'A'}}"
        )
    try:
        text = json.dumps(dict(where), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"Scope where must hold JSON values only ({exc})") from None
    from chromadb.api.types import validate_where

    try:
        validate_where(json.loads(text))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"Scope where={where!r} is not a valid Chroma filter: {exc}") from None
    return text


# topic views within a scope -------------------------------------------------------------
@dataclass(frozen=True)
class ScopedView:
    """What a scope sees of the topics of one model snapshot.

    Attributes:
        topics: visible topics (at least one chunk in scope, allowed), by position order;
            ``size``, ``keywords``, ``representative_ids`` from in-scope chunks only; labels
            per the scope's label rule.
        positions: ``(t,)`` int64 model position of each visible topic.
        centroids: ``(t, d)`` float32, L2-normalized mean of each visible topic's in-scope chunks.
        members: topic id → its in-scope chunk ids, nearest the scoped centroid first.
    """

    topics: tuple[Topic, ...]
    positions: np.ndarray
    centroids: np.ndarray
    members: Mapping[int, tuple[str, ...]]
    resolver: ClusterModel

    def resolve(self, items: Sequence[Any]) -> list[int]:
        """Stable ids of visible topics given by id or name (rules of
        :meth:`ClusterModel.resolve_topics`, over the scoped names and keywords only).

        Raises:
            UnknownTopicError: not a visible topic; the message names only visible ones.
        """
        return self.resolver.resolve_topics(items)

    def topic(self, item: Any) -> Topic:
        tid = self.resolve([item])[0]
        return next(t for t in self.topics if t.id == tid)

    @property
    def topic_ids(self) -> frozenset[int]:
        return frozenset(t.id for t in self.topics)


_CACHE: weakref.WeakKeyDictionary[ClusterModel, dict[Scope, ScopedView]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()
_SCOPES_PER_MODEL = 32


def scoped_view(model: ClusterModel, store: ChromaStore, scope: Scope) -> ScopedView:
    """The topics of ``model`` as ``scope`` sees them (computed once per snapshot and scope).

    Cost: for a ``where`` scope, one paged read of the in-scope chunks' texts and one pass
    over their vectors (``O(n_scope · d)``); a ``topics``-only scope reads nothing.

    Raises:
        InvalidInputError: not a :class:`Scope`, or a scope of another collection.
    """
    check_scope(scope, store)
    with _CACHE_LOCK:
        hit = _CACHE.get(model, {}).get(scope)
        if hit is not None:
            return hit
        view = _compute(model, store, scope)
        per_model = _CACHE.setdefault(model, {})
        if len(per_model) >= _SCOPES_PER_MODEL:
            per_model.pop(next(iter(per_model)))
        per_model[scope] = view
        return view


def _compute(model: ClusterModel, store: ChromaStore, scope: Scope) -> ScopedView:
    from dataclasses import replace

    from .model import ClusterModel as _Model

    allowed = [pos for pos, t in enumerate(model.topics) if scope.allows_topic(t.id)]
    if scope.where is None:  # topics allow-list only: every chunk of an allowed topic is readable
        topics, positions, centroids, members = _allowed_topics(model, allowed)
    else:
        topics, positions, centroids, members = _filtered_topics(model, store, scope, allowed)
    record = replace(
        model.record,
        topics=topics,
        centroids=centroids,
        sizes=np.asarray([t.size for t in topics], dtype=np.int64),
    )
    resolver = _Model(record, backend=model.backend)  # only its topic lookup is used
    return ScopedView(topics, positions, centroids, members, resolver)


#: ``(topics, positions, centroids, members)`` as in :class:`ScopedView`.
_ViewParts = tuple[tuple[Topic, ...], np.ndarray, np.ndarray, dict[int, tuple[str, ...]]]


def _allowed_topics(model: ClusterModel, allowed: list[int]) -> _ViewParts:
    """The view of a scope without ``where``: the allowed non-empty topics as stored.

    Args:
        model: the model snapshot.
        allowed: model positions of the allowed topics, ascending.

    Returns:
        ``(topics, positions, centroids, members)`` with the stored topics (live sizes), their
        ``(t,)`` int64 positions, ``(t, d)`` float32 stored centroids, and every member id per
        topic id, nearest the centroid first.
    """
    sized = model.sized_topics()
    keep = [pos for pos in allowed if sized[pos].size > 0]
    positions = np.asarray(keep, dtype=np.int64)
    dim = model.centroids.shape[1]
    centroids = np.asarray(model.centroids[positions], dtype=np.float32).reshape(-1, dim)
    members: dict[int, tuple[str, ...]] = {}
    for pos in keep:
        ids, vecs = model.members(pos)
        order = np.argsort(-(np.asarray(vecs, dtype=np.float32) @ model.centroids[pos]), kind="stable")
        members[model.topics[pos].id] = tuple(str(ids[i]) for i in order)
    return tuple(sized[pos] for pos in keep), positions, centroids, members


def _filtered_topics(model: ClusterModel, store: ChromaStore, scope: Scope, allowed: list[int]) -> _ViewParts:
    """The view of a scope with ``where``: allowed topics rebuilt from their in-scope chunks.

    Args:
        model: the model snapshot.
        store: where the chunks' texts and metadata are read (``scope.where`` applied there).
        scope: the scope (its label rule too).
        allowed: model positions of the allowed topics, ascending.

    Returns:
        ``(topics, positions, centroids, members)`` of the topics with at least one chunk in
        scope: sizes, keywords (c-TF-IDF over the in-scope texts) and representatives from
        in-scope chunks, ``(t, d)`` float32 unit means of those chunks, and members per topic id
        nearest that mean first.
    """
    from .labeling.keywords import ctfidf_keywords

    scope_ids, scope_texts, scope_pos = _chunks_in_scope(model, store, scope, set(allowed))
    labels = np.asarray(scope_pos, dtype=np.int64)
    keywords = ctfidf_keywords(scope_texts, labels, model.k) if scope_ids else [[] for _ in model.topics]
    in_scope = set(scope_ids)
    keep, rows, topic_list = [], [], []
    members: dict[int, tuple[str, ...]] = {}
    counts = np.bincount(labels, minlength=model.k) if len(labels) else np.zeros(model.k, np.int64)
    for pos in allowed:
        if counts[pos] == 0:
            continue
        ids, vecs = model.members(pos)
        mask = np.fromiter((str(x) in in_scope for x in ids), dtype=bool, count=len(ids))
        own_ids = [str(x) for x in np.asarray(ids)[mask]]
        own = np.asarray(vecs, dtype=np.float32)[mask]
        centre = own.mean(axis=0)
        centre /= max(float(np.linalg.norm(centre)), 1e-12)
        order = np.argsort(-(own @ centre), kind="stable")
        topic_list.append(_scoped_topic(model.topics[pos], list(keywords[pos]), own_ids, order, scope))
        members[model.topics[pos].id] = tuple(own_ids[i] for i in order)
        keep.append(pos)
        rows.append(centre)
    dim = model.centroids.shape[1]
    centroids = np.asarray(rows, dtype=np.float32).reshape(-1, dim)
    return tuple(topic_list), np.asarray(keep, dtype=np.int64), centroids, members


def _chunks_in_scope(
    model: ClusterModel, store: ChromaStore, scope: Scope, allowed: set[int]
) -> tuple[list[str], list[str], list[int]]:
    """The chunks that match ``scope.where`` and sit in an allowed topic.

    Returns:
        ``(ids, texts, positions)``, one entry per chunk in store order (texts ``""`` when none).
    """
    ids_all, labels_all = model.assignments()
    position_of = dict(zip((str(x) for x in ids_all), (int(p) for p in labels_all), strict=True))
    scope_ids: list[str] = []
    scope_texts: list[str] = []
    scope_pos: list[int] = []
    for page in store.iter_all(include=["documents"], where=scope.where):
        for cid, text in zip(page["ids"], page["documents"], strict=True):
            found = position_of.get(cid)
            if found is None or found not in allowed:
                continue
            scope_ids.append(cid)
            scope_texts.append(text or "")
            scope_pos.append(found)
    return scope_ids, scope_texts, scope_pos


def _scoped_topic(
    stored: Topic, keywords: list[str], own_ids: list[str], order: np.ndarray, scope: Scope
) -> Topic:
    """A stored topic as the scope sees it.

    Args:
        stored: the model's topic.
        keywords: its keywords over the in-scope texts.
        own_ids: its in-scope chunk ids.
        order: ``(len(own_ids),)`` int positions into ``own_ids``, nearest the scoped centre first.
        scope: withholding labels gives a keyword label, no description and no pin.

    Returns:
        The :class:`Topic` with in-scope size, keywords and representatives.
    """
    from .labeling.keywords import keyword_label

    if scope.withholds_labels:
        label, description, source = keyword_label(keywords, _KEYWORDS_IN_NAME), "", "keywords"
    else:
        label, description, source = stored.label, stored.description, stored.label_source
    return Topic(
        id=stored.id,
        size=len(own_ids),
        keywords=keywords,
        representative_ids=[own_ids[i] for i in order[:_REPRESENTATIVES]],
        label=label,
        description=description,
        pinned=stored.pinned and not scope.withholds_labels,
        label_source=source,
    )

