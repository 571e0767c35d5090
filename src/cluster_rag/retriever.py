"""ClusteredRetriever: the framework-free retriever every adapter wraps.

It holds default search options (``k``, ``n_probe``, ``topics``, ``where``),
lets each call override them, optionally reranks a wider candidate pool, and
returns plain :class:`~cluster_rag.types.Hit` objects.

``where`` is a default a call may replace; it is not an access boundary. For that,
give a :class:`~cluster_rag.scope.Scope` (``scope=Scope(where={"tenant": "A"})``): it is
fixed at construction, every call's options are ANDed with it inside the core search,
and no per-call option can widen or remove it. The LangChain and
LlamaIndex packages under ``integrations/`` only translate those hits into
``Document`` / ``NodeWithScore``.

Rerankers are any callable ``(query, hits) -> hits`` (the :class:`Reranker`
protocol). Two ship here: :class:`MMRReranker` (maximal marginal relevance over
the stored vectors, no extra model) and :class:`CrossEncoderReranker` (wraps a
cross-encoder you load and pass in, e.g. ``sentence_transformers.CrossEncoder``).
A reranker reorders hits; ``Hit.score`` stays the cosine similarity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .errors import InvalidInputError
from .mmr import mmr_select
from .scope import Scope
from .types import Hit

if TYPE_CHECKING:
    from .index import ClusterIndex

__all__ = [
    "ClusteredRetriever",
    "CrossEncoderReranker",
    "MMRReranker",
    "Reranker",
    "RetrieveOptions",
]

#: Options a single call may override.
OPTION_NAMES = ("k", "n_probe", "topics", "where")


@runtime_checkable
class Reranker(Protocol):
    """Reorders (and may drop) hits for a query; best first.

    The retriever passes ``fetch_k`` candidates and keeps the first ``k`` returned.
    """

    def __call__(self, query: str, hits: list[Hit]) -> list[Hit]: ...


@dataclass(frozen=True)
class RetrieveOptions:
    """Resolved, validated options of one retrieval.

    Attributes:
        k: number of hits returned.
        n_probe: clusters searched; ``None``: the model's calibrated default.
        topics: restrict to these topic ids or labels; ``None``: all topics.
        where: Chroma ``where`` filter on user metadata; ``None``: no filter.
    """

    k: int
    n_probe: int | None = None
    topics: tuple[int | str, ...] | None = None
    where: dict[str, Any] | None = None


def _check_k(k: Any, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"{name}={k!r} must be a positive int, e.g. {name}=5")
    return int(k)


def _check_n_probe(n_probe: Any) -> int | None:
    if n_probe is None:
        return None
    if isinstance(n_probe, bool) or not isinstance(n_probe, (int, np.integer)) or n_probe < 1:
        raise InvalidInputError(
            f"n_probe={n_probe!r} must be a positive int (clusters searched), "
            "or None for the calibrated default"
        )
    return int(n_probe)


def _check_topics(topics: Any) -> tuple[int | str, ...] | None:
    if topics is None:
        return None
    if isinstance(topics, (str, bytes, int)) or not isinstance(topics, Sequence):
        raise InvalidInputError(
            f"topics={topics!r} must be a list of topic ids or labels, e.g. topics=[{topics!r}]"
        )
    items = tuple(topics)
    if not items:
        raise InvalidInputError("topics=[] selects nothing; pass None to search every topic")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer, str)):
            raise InvalidInputError(f"topics item {item!r} must be an int id or a str label")
    return items


def _check_where(where: Any) -> dict[str, Any] | None:
    if where is None:
        return None
    if not isinstance(where, Mapping) or not where:
        raise InvalidInputError(
            f"where={where!r} must be a non-empty Chroma filter dict, e.g. {{'source': 'faq.md'}}, or None"
        )
    return dict(where)


class ClusteredRetriever:
    """Routed search with default options, per-call overrides and an optional reranker.

    Args:
        index: a fitted :class:`~cluster_rag.ClusterIndex` (anything with its ``search``).
        k: hits per call.
        n_probe: clusters searched per query; ``None``: the model's calibrated default.
        topics: search only these topics (ids or labels); ``None``: every topic.
        where: Chroma metadata filter, e.g. ``{"source": "faq.md"}``.
        reranker: a :class:`Reranker`; it sees ``fetch_k`` candidates, the first ``k`` it returns are kept.
        fetch_k: candidates given to the reranker; default ``max(4 * k, 20)``. Ignored without a reranker.
        scope: the reader's :class:`~cluster_rag.scope.Scope` (fixed; calls cannot change it).

    Raises:
        InvalidInputError: a bad option (the message names it and the fix).

    Example:
        >>> retriever = ClusteredRetriever(index, k=5, n_probe=4)
        >>> hits = retriever.retrieve("card not arrived", topics=["card arrival"], k=3)
    """

    def __init__(
        self,
        index: ClusterIndex,
        k: int = 5,
        n_probe: int | None = None,
        topics: Sequence[int | str] | None = None,
        where: dict[str, Any] | None = None,
        reranker: Reranker | None = None,
        fetch_k: int | None = None,
        scope: Scope | None = None,
    ) -> None:
        if scope is not None and not isinstance(scope, Scope):
            raise InvalidInputError(f"scope={scope!r} must be a cluster_rag.Scope or None")
        if not callable(getattr(index, "search", None)):
            raise InvalidInputError(
                f"index must be a cluster_rag.ClusterIndex, got {type(index).__name__}; "
                "build one with ClusterIndex.open(path)"
            )
        if reranker is not None and not callable(reranker):
            raise InvalidInputError(
                f"reranker must be callable (query, hits) -> hits, got {type(reranker).__name__}"
            )
        self.index = index
        self.defaults = RetrieveOptions(
            k=_check_k(k),
            n_probe=_check_n_probe(n_probe),
            topics=_check_topics(topics),
            where=_check_where(where),
        )
        self.reranker = reranker
        self.fetch_k = None if fetch_k is None else _check_k(fetch_k, "fetch_k")
        self._scope = scope

    @property
    def scope(self) -> Scope | None:
        """The fixed scope every call is searched within (``None``: the whole index)."""
        return self._scope

    def options(self, **overrides: Any) -> RetrieveOptions:
        """The defaults with ``overrides`` applied and validated.

        An override given as ``None`` clears that option (``k=None`` keeps the default ``k``).

        Raises:
            InvalidInputError: an unknown option name or a bad value.
        """
        unknown = sorted(set(overrides) - set(OPTION_NAMES))
        if unknown:
            raise InvalidInputError(
                f"unknown retrieval option(s) {unknown}; per-call options are {list(OPTION_NAMES)}"
            )
        base = self.defaults
        return RetrieveOptions(
            k=base.k if overrides.get("k") is None else _check_k(overrides["k"]),
            n_probe=_check_n_probe(overrides["n_probe"]) if "n_probe" in overrides else base.n_probe,
            topics=_check_topics(overrides["topics"]) if "topics" in overrides else base.topics,
            where=_check_where(overrides["where"]) if "where" in overrides else base.where,
        )

    def retrieve(self, query: str, **overrides: Any) -> list[Hit]:
        """Best hits for ``query``, best first.

        Args:
            query: non-blank text.
            **overrides: any of ``k``, ``n_probe``, ``topics``, ``where`` for this call only.

        Returns:
            Up to ``k`` hits; ``Hit.score`` is the cosine similarity to the query.

        Raises:
            InvalidInputError: blank query or bad option; NotFittedError: the index has no model;
            UnknownTopicError: a topic that does not exist.
        """
        opts = self.options(**overrides)
        pool = opts.k
        if self.reranker is not None:
            pool = max(opts.k, self.fetch_k if self.fetch_k is not None else max(4 * opts.k, 20))
        hits = self.index.search(
            query,
            pool,
            n_probe=opts.n_probe,
            topics=list(opts.topics) if opts.topics is not None else None,
            where=opts.where,
            **({"scope": self._scope} if self._scope is not None else {}),
        )
        if self.reranker is not None and hits:
            hits = list(self.reranker(query, hits))
        return hits[: opts.k]

    async def aretrieve(self, query: str, **overrides: Any) -> list[Hit]:
        """:meth:`retrieve` in a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(self.retrieve, query, **overrides)

    def __repr__(self) -> str:
        d = self.defaults
        return (
            f"ClusteredRetriever(k={d.k}, n_probe={d.n_probe}, topics={d.topics}, where={d.where}, "
            f"reranker={type(self.reranker).__name__ if self.reranker else None}, scope={self._scope!r})"
        )


class MMRReranker:
    """Maximal marginal relevance: trade relevance against redundancy among the hits.

    Relevance is each hit's cosine similarity to the query (``Hit.score``); redundancy
    is its highest cosine similarity to a hit already chosen, from the stored vectors.
    No extra model is needed.

    Args:
        index: the index the hits came from (vectors are read from its store).
        lambda_mult: 1.0 = pure relevance, 0.0 = pure diversity.
    """

    def __init__(self, index: ClusterIndex, lambda_mult: float = 0.5) -> None:
        if isinstance(lambda_mult, bool) or not isinstance(lambda_mult, (int, float)) or not (
            0.0 <= lambda_mult <= 1.0
        ):
            raise InvalidInputError(f"lambda_mult={lambda_mult!r} must be a number in [0, 1]")
        self.index = index
        self.lambda_mult = float(lambda_mult)

    def __call__(self, query: str, hits: list[Hit]) -> list[Hit]:
        """Hits in MMR order (all of them; the retriever truncates to ``k``)."""
        if len(hits) < 2:
            return list(hits)
        got = self.index.store.get([h.id for h in hits], include=["embeddings"])
        by_id = dict(zip(got["ids"], got["embeddings"], strict=True))
        kept = [h for h in hits if h.id in by_id]
        vectors = np.asarray([by_id[h.id] for h in kept], dtype=np.float32)
        relevance = np.asarray([h.score for h in kept], dtype=np.float32)
        order = mmr_order(relevance, vectors, self.lambda_mult)
        return [kept[i] for i in order]


def mmr_order(relevance: np.ndarray, vectors: np.ndarray, lambda_mult: float) -> list[int]:
    """Greedy MMR order of every candidate (:func:`cluster_rag.mmr.mmr_select`)."""
    return [int(i) for i in mmr_select(relevance, vectors, len(relevance), lambda_mult=lambda_mult)]


class CrossEncoderReranker:
    """Rerank with a cross-encoder you load and pass in (nothing is downloaded here).

    Any object with ``predict(pairs) -> scores`` works, e.g.
    ``sentence_transformers.CrossEncoder("cross-encoder/ms-marco-MiniLM-L-6-v2")``.
    Each returned hit gets its cross-encoder score in ``metadata["rerank_score"]``;
    ``Hit.score`` stays the cosine similarity.

    Args:
        model: the cross-encoder.
    """

    def __init__(self, model: Any) -> None:
        if not callable(getattr(model, "predict", None)):
            raise InvalidInputError(
                f"model must have predict(pairs) -> scores (e.g. sentence_transformers.CrossEncoder), "
                f"got {type(model).__name__}"
            )
        self.model = model

    def __call__(self, query: str, hits: list[Hit]) -> list[Hit]:
        """Hits sorted by cross-encoder score, highest first."""
        if not hits:
            return []
        scores = np.asarray(self.model.predict([(query, h.text) for h in hits]), dtype=np.float64).reshape(-1)
        if scores.shape != (len(hits),):
            raise InvalidInputError(
                f"cross-encoder returned {scores.shape[0]} scores for {len(hits)} hits; expected one per pair"
            )
        order = np.argsort(-scores, kind="stable")
        return [
            replace(hits[i], metadata={**hits[i].metadata, "rerank_score": float(scores[i])}) for i in order
        ]
