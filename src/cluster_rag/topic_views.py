"""Topics as :class:`~cluster_rag.index.ClusterIndex` shows them: all of a version, one level of
its topic tree, or one by id or name — each limited to what a caller's scope sees."""

from __future__ import annotations

from .errors import InvalidInputError
from .hierarchy import node_topic
from .model import ClusterModel
from .scope import Scope, check_scope, scoped_view
from .store import ChromaStore
from .types import Topic
from .validation import check_topics

__all__ = ["find_topic", "list_topics"]


def _filters_rows(scope: Scope | None, store: ChromaStore) -> bool:
    return scope is not None and check_scope(scope, store).filters_rows


def list_topics(
    model: ClusterModel, store: ChromaStore, *, level: int | None = None, scope: Scope | None = None
) -> list[Topic]:
    """The version's topics by position (sizes include chunks added since the fit), or with
    ``level`` that level of its topic tree, largest first; with ``scope`` only what it sees."""
    scoped = _filters_rows(scope, store)
    if level is not None:
        if scoped:
            raise InvalidInputError("topics(level=...) with a row-filtering scope is not supported yet")
        leaves = model.sized_topics()
        return [node_topic(model.tree, n.id, leaves) for n in model.tree.at_level(level)]
    if scope is not None and scoped:
        return list(scoped_view(model, store, scope).topics)
    return model.sized_topics()


def find_topic(
    model: ClusterModel, store: ChromaStore, topic: int | str, scope: Scope | None = None
) -> Topic:
    """One topic or tree node by id or name (see :meth:`ClusterModel.resolve_topics`), as ``scope`` sees it.

    Raises:
        UnknownTopicError: no such topic (or none that ``scope`` sees).
    """
    check_topics([topic])
    if scope is not None and _filters_rows(scope, store):
        return scoped_view(model, store, scope).topic(topic)
    parent = model.parent_of(topic)
    if parent is not None:  # a broad topic or subtopic of the tree, as a Topic
        return node_topic(model.tree, parent, model.sized_topics())
    return model.sized_topics()[model.position_of[model.resolve_topics([topic])[0]]]
