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

``mode`` picks dense, keyword or hybrid search (:mod:`cluster_rag.hybrid`; default
hybrid). Re-rankers (:mod:`cluster_rag.rerank`: MMR, a cross-encoder, an LLM) run as
the core search's last stage over ``fetch_k`` candidates; ``Hit.score`` stays the
cosine similarity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidInputError
from .hybrid import check_mode
from .rerank import CrossEncoderReranker, MMRReranker, Reranker
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
OPTION_NAMES = ("k", "n_probe", "topics", "where", "mode")


@dataclass(frozen=True)
class RetrieveOptions:
    """Resolved, validated options of one retrieval.

    Attributes:
        k: number of hits returned.
        n_probe: clusters searched; ``None``: the model's calibrated default.
        topics: restrict to these topic ids or labels; ``None``: all topics.
        where: Chroma ``where`` filter on user metadata; ``None``: no filter.
        mode: ``"dense"``, ``"keyword"`` or ``"hybrid"``; ``None``: the index's default (hybrid).
    """

    k: int
    n_probe: int | None = None
    topics: tuple[int | str, ...] | None = None
    where: dict[str, Any] | None = None
    mode: str | None = None


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
        mode: ``"dense"``, ``"keyword"`` or ``"hybrid"`` (``None``: the index's default, hybrid).

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
        mode: str | None = None,
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
            mode=None if mode is None else check_mode(mode),
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
            mode=check_mode(overrides["mode"]) if overrides.get("mode") is not None else base.mode,
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
        hits: list[Hit] = self.index.search(
            query,
            opts.k,
            n_probe=opts.n_probe,
            topics=list(opts.topics) if opts.topics is not None else None,
            where=opts.where,
            mode=opts.mode,
            rerank=self.reranker,
            fetch_k=self.fetch_k,
            **({"scope": self._scope} if self._scope is not None else {}),
        )
        return hits

    async def aretrieve(self, query: str, **overrides: Any) -> list[Hit]:
        """:meth:`retrieve` in a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(self.retrieve, query, **overrides)

    def __repr__(self) -> str:
        d = self.defaults
        return (
            f"ClusteredRetriever(k={d.k}, n_probe={d.n_probe}, topics={d.topics}, where={d.where}, "
            f"mode={d.mode}, "
            f"reranker={type(self.reranker).__name__ if self.reranker else None}, scope={self._scope!r})"
        )
