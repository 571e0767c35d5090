"""A LangChain ``BaseRetriever`` over a cluster-rag index.

All retrieval logic lives in :class:`cluster_rag.retriever.ClusteredRetriever`;
this module only maps LangChain's call shape onto it and hits onto ``Document``.

It takes the conventions of ``langchain-chroma``'s ``as_retriever`` too:
``search_type`` in ``"similarity"``, ``"mmr"``, ``"similarity_score_threshold"`` and
``search_kwargs`` with ``k``, ``filter`` (a Chroma ``where``), ``fetch_k``,
``lambda_mult``, ``score_threshold``, plus this package's ``n_probe`` and ``topics``.
Unknown keys and wrong types are errors, never ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever, LangSmithRetrieverParams
from pydantic import ConfigDict, Field

from cluster_rag import ClusterIndex, Hit, InvalidInputError
from cluster_rag.retriever import ClusteredRetriever as _CoreRetriever
from cluster_rag.retriever import MMRReranker, Reranker
from cluster_rag.scope import Scope

__all__ = ["SEARCH_KWARGS", "SEARCH_TYPES", "ClusteredRetriever", "check_search_kwargs", "hit_to_document"]

#: Keys LangChain itself may pass through ``invoke(..., **kwargs)``; not retrieval options.
_LANGCHAIN_KWARGS = frozenset({"verbose"})
_CORE_FIELDS = ("index", "k", "n_probe", "topics", "where", "reranker", "fetch_k", "scope")
#: ``search_type`` values (langchain-chroma's ``VectorStoreRetriever`` names).
SEARCH_TYPES = ("similarity", "mmr", "similarity_score_threshold")
#: ``search_kwargs`` / per-call keys and what each must be.
SEARCH_KWARGS: dict[str, str] = {
    "k": "a positive int: documents returned",
    "filter": "a Chroma where dict, e.g. {'source': 'faq.md'} (alias: where)",
    "where": "a Chroma where dict (alias: filter)",
    "fetch_k": "a positive int: candidates reranked (mmr, or with a reranker)",
    "lambda_mult": "a number in [0, 1]: 1 = relevance only, 0 = diversity only (mmr)",
    "score_threshold": "a number in [-1, 1]: the least cosine similarity kept (similarity_score_threshold)",
    "n_probe": "a positive int: clusters searched (default: the calibrated route)",
    "topics": "a list of topic ids or labels to search within",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_search_kwargs(search_type: str, search_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``search_type`` and ``search_kwargs``; return them with ``filter`` renamed to ``where``.

    Raises:
        InvalidInputError: an unknown search type or key, a value of the wrong type or range, a key
            that the search type does not use, ``filter`` together with ``where``, or
            ``similarity_score_threshold`` without ``score_threshold``.
    """
    if search_type not in SEARCH_TYPES:
        raise InvalidInputError(f"search_type={search_type!r} is not one of {list(SEARCH_TYPES)}")
    if not isinstance(search_kwargs, Mapping):
        raise InvalidInputError(f"search_kwargs must be a dict, got {type(search_kwargs).__name__}")
    unknown = sorted(set(search_kwargs) - set(SEARCH_KWARGS))
    if unknown:
        raise InvalidInputError(
            f"unknown search_kwargs key(s) {unknown}; accepted: {sorted(SEARCH_KWARGS)}"
        )
    out = {key: value for key, value in search_kwargs.items() if value is not None}
    checks = {
        "k": _is_int(out.get("k", 1)) and out.get("k", 1) >= 1,
        "fetch_k": _is_int(out.get("fetch_k", 1)) and out.get("fetch_k", 1) >= 1,
        "n_probe": _is_int(out.get("n_probe", 1)) and out.get("n_probe", 1) >= 1,
        "lambda_mult": _is_number(out.get("lambda_mult", 0)) and 0 <= out.get("lambda_mult", 0) <= 1,
        "score_threshold": _is_number(out.get("score_threshold", 0))
        and -1 <= out.get("score_threshold", 0) <= 1,
        "filter": isinstance(out.get("filter", {}), Mapping),
        "where": isinstance(out.get("where", {}), Mapping),
        "topics": isinstance(out.get("topics", []), Sequence) and not isinstance(out.get("topics"), str),
    }
    for key, ok in checks.items():
        if not ok:
            raise InvalidInputError(f"search_kwargs {key}={out[key]!r} must be {SEARCH_KWARGS[key]}")
    if "filter" in out:
        if "where" in out:
            raise InvalidInputError("pass filter= or where= (the same Chroma filter), not both")
        out["where"] = out.pop("filter")
    if "lambda_mult" in out and search_type != "mmr":
        raise InvalidInputError(
            f"lambda_mult is used by search_type='mmr' only (search_type={search_type!r})"
        )
    if search_type == "similarity_score_threshold":
        if "score_threshold" not in out:
            raise InvalidInputError(
                "search_type='similarity_score_threshold' needs search_kwargs={'score_threshold': 0.5, ...}"
            )
    elif "score_threshold" in out:
        raise InvalidInputError(
            f"score_threshold is used by search_type='similarity_score_threshold' only "
            f"(search_type={search_type!r})"
        )
    return out


def hit_to_document(hit: Hit) -> Document:
    """One hit as a ``Document``.

    ``Document.id`` is the stable chunk id; metadata is the chunk's own metadata plus
    ``chunk_id``, ``score`` (cosine similarity), ``topic_id``, ``topic_label`` and
    ``model_version`` (the cluster-model version that answered); these win over user
    keys of the same name.
    """
    metadata = hit.provenance_metadata()
    return Document(id=hit.id, page_content=hit.text, metadata=metadata)


class ClusteredRetriever(BaseRetriever):
    """Topic-routed retrieval from a cluster-rag index, as a LangChain retriever.

    Setup:
        .. code-block:: bash

            pip install langchain-cluster-rag

    Instantiate:
        .. code-block:: python

            from cluster_rag import ClusterIndex
            from langchain_cluster_rag import ClusteredRetriever

            index = ClusterIndex.open("./kb")
            retriever = ClusteredRetriever(index=index, k=5, n_probe=4)

    Invoke (per-call ``k``, ``n_probe``, ``topics``, ``filter``/``where``, ``fetch_k``,
    ``lambda_mult``, ``score_threshold`` override the fields and ``search_kwargs``):
        .. code-block:: python

            docs = retriever.invoke("card not arrived", k=3, topics=["card arrival"])
            docs[0].id, docs[0].metadata["score"], docs[0].metadata["topic_label"]

    langchain-chroma conventions:
        .. code-block:: python

            retriever = index.as_langchain_retriever(
                search_type="mmr", search_kwargs={"k": 8, "filter": {"lang": "en"}, "fetch_k": 40}
            )
            retriever = ClusteredRetriever(
                index=index, search_type="similarity_score_threshold",
                search_kwargs={"score_threshold": 0.5, "k": 10},
            )

    Use within a chain:
        .. code-block:: python

            chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm

    Attributes:
        index: a fitted :class:`cluster_rag.ClusterIndex`.
        k: documents returned per call.
        n_probe: clusters searched; ``None``: the model's calibrated default.
        topics: search only these topic ids or labels; ``None``: every topic.
        where: Chroma metadata filter, e.g. ``{"source": "faq.md"}``.
        reranker: optional ``cluster_rag.retriever.Reranker`` (e.g. ``MMRReranker.for_index(index)``).
        fetch_k: candidates handed to the reranker (default ``max(4 * k, 20)``).
        search_type: ``"similarity"`` (default), ``"mmr"`` (maximal marginal relevance over
            ``fetch_k`` candidates, ``lambda_mult`` default 0.5) or ``"similarity_score_threshold"``
            (only hits with cosine similarity >= ``score_threshold``, up to ``k``).
        search_kwargs: langchain-chroma style options, see :data:`SEARCH_KWARGS`; a key may not
            also be set as a field (``k=5`` and ``search_kwargs={"k": 8}`` is an error).
        scope: a :class:`cluster_rag.scope.Scope` every call is searched within; a call's
            ``filter``/``where`` is ANDed with it and cannot widen it (``filter``/``where`` alone
            are defaults a call may replace, not an access boundary).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: ClusterIndex
    k: int = 5
    n_probe: int | None = None
    topics: list[int | str] | None = None
    where: dict[str, Any] | None = None
    reranker: Reranker | None = None
    fetch_k: int | None = None
    search_type: str = "similarity"
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    scope: Scope | None = None

    def __init__(self, **data: Any) -> None:
        # check the options with cluster-rag's typed errors (messages name value and fix) before pydantic
        _CoreRetriever(**{key: data[key] for key in _CORE_FIELDS if key in data})
        search = check_search_kwargs(data.get("search_type", "similarity"), data.get("search_kwargs") or {})
        twice = sorted(key for key in search if key in data)
        if twice:
            raise InvalidInputError(
                f"{twice} given both as field(s) and in search_kwargs; set each option once"
            )
        if data.get("search_type") == "mmr" and data.get("reranker") is not None:
            raise InvalidInputError(
                "search_type='mmr' reranks with MMR itself; drop reranker= or use search_type='similarity'"
            )
        super().__init__(**data)

    def _core(self, options: dict[str, Any]) -> tuple[_CoreRetriever, float | None]:
        """The core retriever for one call (cheap: it only validates) and the score threshold.

        ``options`` are checked ``search_kwargs`` merged with the call's keyword arguments.
        """
        fields = {
            "k": self.k, "n_probe": self.n_probe, "topics": self.topics, "where": self.where,
            "fetch_k": self.fetch_k,
        }
        merged = {**fields, **{key: value for key, value in options.items() if key in fields}}
        reranker = self.reranker
        if self.search_type == "mmr":
            lambda_mult = float(options.get("lambda_mult", 0.5))
            reranker = MMRReranker.for_index(self.index, diversity=1.0 - lambda_mult)
            merged["fetch_k"] = merged["fetch_k"] or 20  # langchain-chroma's default
            merged["mode"] = "dense"  # as in langchain-chroma: MMR over the embedding similarity
        core = _CoreRetriever(self.index, reranker=reranker, scope=self.scope, **merged)
        return core, options.get("score_threshold")

    def _for_call(self, kwargs: dict[str, Any]) -> tuple[_CoreRetriever, float | None]:
        call = {key: value for key, value in kwargs.items() if key not in _LANGCHAIN_KWARGS}
        unknown = sorted(set(call) - set(SEARCH_KWARGS))
        if unknown:
            raise InvalidInputError(
                f"unknown retrieval option(s) {unknown}; per-call options are {sorted(SEARCH_KWARGS)}"
            )
        base = dict(self.search_kwargs)
        if "filter" in call or "where" in call:  # a call's filter replaces the configured one
            base.pop("filter", None)
            base.pop("where", None)
        return self._core(check_search_kwargs(self.search_type, {**base, **call}))

    def _get_ls_params(self, **kwargs: Any) -> LangSmithRetrieverParams:
        params = super()._get_ls_params(**kwargs)
        params["ls_vector_store_provider"] = "cluster-rag"
        params["ls_embedding_model"] = self.index.store.model_name
        return params

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        core, threshold = self._for_call(kwargs)
        return [hit_to_document(hit) for hit in above_threshold(core.retrieve(query), threshold)]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        core, threshold = self._for_call(kwargs)
        return [hit_to_document(hit) for hit in above_threshold(await core.aretrieve(query), threshold)]


def above_threshold(hits: list[Hit], threshold: float | None) -> list[Hit]:
    """Hits whose cosine similarity is at least ``threshold`` (all of them for ``None``)."""
    return hits if threshold is None else [hit for hit in hits if hit.score >= threshold]
