"""A LangChain ``BaseRetriever`` over a cluster-rag index.

All retrieval logic lives in :class:`cluster_rag.retriever.ClusteredRetriever`;
this module only maps LangChain's call shape onto it and hits onto ``Document``.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever, LangSmithRetrieverParams
from pydantic import ConfigDict

from cluster_rag import ClusterIndex, Hit
from cluster_rag.retriever import ClusteredRetriever as _CoreRetriever
from cluster_rag.retriever import Reranker

__all__ = ["ClusteredRetriever", "hit_to_document"]

#: Keys LangChain itself may pass through ``invoke(..., **kwargs)``; not retrieval options.
_LANGCHAIN_KWARGS = frozenset({"verbose"})
_CORE_FIELDS = ("index", "k", "n_probe", "topics", "where", "reranker", "fetch_k")


def hit_to_document(hit: Hit) -> Document:
    """One hit as a ``Document``.

    ``Document.id`` is the stable chunk id; metadata is the chunk's own metadata plus
    ``chunk_id``, ``score`` (cosine similarity), ``topic_id``, ``topic_label`` and
    ``model_version`` (the cluster-model version that answered); these win over user
    keys of the same name.
    """
    metadata = {
        **hit.metadata,
        "chunk_id": hit.id,
        "score": hit.score,
        "topic_id": hit.topic_id,
        "topic_label": hit.topic_label,
        "model_version": hit.model_version,
    }
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

    Invoke (per-call ``k``, ``n_probe``, ``topics``, ``where`` override the fields):
        .. code-block:: python

            docs = retriever.invoke("card not arrived", k=3, topics=["card arrival"])
            docs[0].id, docs[0].metadata["score"], docs[0].metadata["topic_label"]

    Use within a chain:
        .. code-block:: python

            chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm

    Attributes:
        index: a fitted :class:`cluster_rag.ClusterIndex`.
        k: documents returned per call.
        n_probe: clusters searched; ``None``: the model's calibrated default.
        topics: search only these topic ids or labels; ``None``: every topic.
        where: Chroma metadata filter, e.g. ``{"source": "faq.md"}``.
        reranker: optional ``cluster_rag.retriever.Reranker`` (e.g. ``MMRReranker(index)``).
        fetch_k: candidates handed to the reranker (default ``max(4 * k, 20)``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: ClusterIndex
    k: int = 5
    n_probe: int | None = None
    topics: list[int | str] | None = None
    where: dict[str, Any] | None = None
    reranker: Reranker | None = None
    fetch_k: int | None = None

    def __init__(self, **data: Any) -> None:
        # check the options with cluster-rag's typed errors (messages name value and fix) before pydantic
        _CoreRetriever(**{key: data[key] for key in _CORE_FIELDS if key in data})
        super().__init__(**data)

    def _core(self) -> _CoreRetriever:
        # built per call (cheap: it only validates) so field changes after construction apply
        return _CoreRetriever(
            self.index,
            k=self.k,
            n_probe=self.n_probe,
            topics=self.topics,
            where=self.where,
            reranker=self.reranker,
            fetch_k=self.fetch_k,
        )

    def _get_ls_params(self, **kwargs: Any) -> LangSmithRetrieverParams:
        params = super()._get_ls_params(**kwargs)
        params["ls_vector_store_provider"] = "cluster-rag"
        params["ls_embedding_model"] = self.index.store.model_name
        return params

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        options = {key: value for key, value in kwargs.items() if key not in _LANGCHAIN_KWARGS}
        return [hit_to_document(hit) for hit in self._core().retrieve(query, **options)]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        options = {key: value for key, value in kwargs.items() if key not in _LANGCHAIN_KWARGS}
        return [hit_to_document(hit) for hit in await self._core().aretrieve(query, **options)]
