"""A LlamaIndex ``BaseRetriever`` over a cluster-rag index.

All retrieval logic lives in :class:`cluster_rag.retriever.ClusteredRetriever`;
this module only maps LlamaIndex's call shape onto it, ``MetadataFilters`` onto a
Chroma ``where`` filter, and hits onto ``NodeWithScore``.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle, QueryType, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from cluster_rag import ClusterIndex, Hit, InvalidInputError
from cluster_rag.retriever import ClusteredRetriever as _CoreRetriever
from cluster_rag.retriever import Reranker
from cluster_rag.scope import Scope

__all__ = ["ClusteredRetriever", "filters_to_where", "hit_to_node"]

#: Metadata keys added to every node; kept out of the text the LLM and embedders see.
_BOOKKEEPING = ["chunk_id", "score", "topic_id", "model_version"]
_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}
_OPTION_NAMES = ("similarity_top_k", "n_probe", "topics", "where", "filters")
#: Per-call options of the retrieve call in progress (read by _retrieve/_aretrieve).
_CALL_OPTIONS: ContextVar[dict[str, Any] | None] = ContextVar("cluster_rag_call_options", default=None)


def hit_to_node(hit: Hit) -> NodeWithScore:
    """One hit as a ``NodeWithScore``.

    The node id is the stable chunk id and the score the cosine similarity. Metadata is
    the chunk's own plus ``chunk_id``, ``score``, ``topic_id``, ``topic_label`` and
    ``model_version`` (these win over user keys of the same name); of those, only
    ``topic_label`` is shown to the LLM.
    """
    metadata = hit.provenance_metadata()
    node = TextNode(
        id_=hit.id,
        text=hit.text,
        metadata=metadata,
        excluded_llm_metadata_keys=list(_BOOKKEEPING),
        excluded_embed_metadata_keys=[*_BOOKKEEPING, "topic_label"],
    )
    return NodeWithScore(node=node, score=hit.score)


def filters_to_where(filters: MetadataFilters) -> dict[str, Any]:
    """LlamaIndex ``MetadataFilters`` as a Chroma ``where`` filter.

    Supports ``==  !=  >  >=  <  <=  in  nin`` and ``and`` / ``or`` (nested too).

    Raises:
        InvalidInputError: another operator or condition, or no filters at all.
    """
    if not isinstance(filters, MetadataFilters):
        raise InvalidInputError(
            f"filters must be llama_index MetadataFilters, got {type(filters).__name__}; "
            "or pass a Chroma filter dict as where="
        )
    parts: list[dict[str, Any]] = []
    for item in filters.filters:
        if isinstance(item, MetadataFilters):
            parts.append(filters_to_where(item))
            continue
        assert isinstance(item, MetadataFilter)  # ExactMatchFilter is an alias of it
        op = _OPERATORS.get(FilterOperator(item.operator))
        if op is None:
            raise InvalidInputError(
                f"filter operator {item.operator.value!r} on key {item.key!r} is not supported by Chroma "
                f"metadata filters; use one of {[o.value for o in _OPERATORS]}"
            )
        parts.append({item.key: {op: item.value}})
    if not parts:
        raise InvalidInputError("filters has no conditions; pass filters=None to search everything")
    condition = filters.condition or FilterCondition.AND
    if condition not in (FilterCondition.AND, FilterCondition.OR):
        raise InvalidInputError(f"filter condition {condition.value!r} is not supported; use 'and' or 'or'")
    if len(parts) == 1:
        return parts[0]
    return {"$and" if condition == FilterCondition.AND else "$or": parts}


def _to_core_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(_OPTION_NAMES))
    if unknown:
        raise InvalidInputError(
            f"unknown retrieval option(s) {unknown}; per-call options are {list(_OPTION_NAMES)}"
        )
    if options.get("where") is not None and options.get("filters") is not None:
        raise InvalidInputError(
            "pass either where= (a Chroma filter dict) or filters= (MetadataFilters), not both"
        )
    core: dict[str, Any] = {key: options[key] for key in ("n_probe", "topics", "where") if key in options}
    if "similarity_top_k" in options:
        core["k"] = options["similarity_top_k"]
    if options.get("filters") is not None:
        core["where"] = filters_to_where(options["filters"])
    elif "filters" in options and "where" not in options:
        core["where"] = None
    return core


class ClusteredRetriever(BaseRetriever):
    """Topic-routed retrieval from a cluster-rag index, as a LlamaIndex retriever.

    Args:
        index: a fitted :class:`cluster_rag.ClusterIndex`.
        similarity_top_k: nodes returned per call.
        n_probe: clusters searched; ``None``: the model's calibrated default.
        topics: search only these topic ids or labels; ``None``: every topic.
        where: Chroma metadata filter, e.g. ``{"source": "faq.md"}``.
        filters: the same as LlamaIndex ``MetadataFilters`` (instead of ``where``).
        reranker: optional ``cluster_rag.retriever.Reranker`` (e.g. ``MMRReranker.for_index(index)``).
        fetch_k: candidates handed to the reranker (default ``max(4 * k, 20)``).
        scope: a :class:`cluster_rag.scope.Scope` every call is searched within; a call's
            ``filters``/``where`` is ANDed with it and cannot widen it.
        callback_manager, verbose: as for any LlamaIndex retriever.

    Raises:
        InvalidInputError: a bad option (the message names it and the fix).

    Example:
        >>> retriever = ClusteredRetriever(index=index, similarity_top_k=5)
        >>> engine = RetrieverQueryEngine.from_args(retriever, llm=llm)
        >>> nodes = retriever.retrieve("card not arrived", similarity_top_k=3, topics=["card arrival"])
    """

    def __init__(
        self,
        index: ClusterIndex,
        similarity_top_k: int = 5,
        n_probe: int | None = None,
        topics: list[int | str] | None = None,
        where: dict[str, Any] | None = None,
        filters: MetadataFilters | None = None,
        reranker: Reranker | None = None,
        fetch_k: int | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
        scope: Scope | None = None,
    ) -> None:
        options = _to_core_options({"where": where, "filters": filters})
        self._core = _CoreRetriever(
            index,
            k=similarity_top_k,
            n_probe=n_probe,
            topics=topics,
            where=options["where"],
            reranker=reranker,
            fetch_k=fetch_k,
            scope=scope,
        )
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @property
    def index(self) -> ClusterIndex:
        """The cluster-rag index searched."""
        return self._core.index

    @property
    def similarity_top_k(self) -> int:
        """Default number of nodes per call."""
        return self._core.defaults.k

    def retrieve(self, str_or_query_bundle: QueryType, **options: Any) -> list[NodeWithScore]:
        """Retrieve nodes; ``options`` (``similarity_top_k``, ``n_probe``, ``topics``, ``where``,
        ``filters``) override the constructor's for this call only. Fires the usual
        retrieval events and callbacks."""
        token = _CALL_OPTIONS.set(_to_core_options(options))
        try:
            return super().retrieve(str_or_query_bundle)
        finally:
            _CALL_OPTIONS.reset(token)

    async def aretrieve(self, str_or_query_bundle: QueryType, **options: Any) -> list[NodeWithScore]:
        """Async :meth:`retrieve`; the search runs in a worker thread, off the event loop."""
        token = _CALL_OPTIONS.set(_to_core_options(options))
        try:
            return await super().aretrieve(str_or_query_bundle)
        finally:
            _CALL_OPTIONS.reset(token)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self._core.retrieve(query_bundle.query_str, **(_CALL_OPTIONS.get() or {}))
        return [hit_to_node(hit) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = await self._core.aretrieve(query_bundle.query_str, **(_CALL_OPTIONS.get() or {}))
        return [hit_to_node(hit) for hit in hits]
