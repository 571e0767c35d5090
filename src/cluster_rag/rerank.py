"""Re-rankers: reorder the candidates of a search, after candidate generation.

A :class:`Reranker` is any callable ``(query, hits) -> hits``, best first; the caller
fetches a deeper candidate list (``fetch_k``) and keeps the first ``k`` returned.
``Hit.score`` is left as it was; a re-ranker that computes its own score puts it in
``metadata["rerank_score"]``.

Three ship here, all offline-capable:

* :class:`MMRReranker`: maximal marginal relevance over the stored vectors (the one
  MMR implementation of the package); relevance is the cosine to the query vector.
* :class:`CrossEncoderReranker`: a ``sentence_transformers.CrossEncoder`` you load
  from a local folder (nothing is downloaded), e.g. a copy of
  ``cross-encoder/ms-marco-MiniLM-L-6-v2``.
* :class:`LLMReranker`: listwise ranking ("[2] > [1] > [3]", RankGPT style) by any
  OpenAI-compatible chat endpoint. The prompt is bounded (at most ``max_candidates``
  passages of at most ``max_chars`` characters; the rest keep their order after the
  ranked ones), answers are cached per (query, candidate ids), and on *any* failure:
  timeout, transport error, an answer with no usable passage number, the input order
  is returned unchanged, a warning is logged and ``fallbacks`` counts it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import InvalidInputError, StoreNotFoundError, missing_dependency
from .mmr import mmr_select
from .types import Hit

__all__ = [
    "RERANK_PROMPT_VERSION",
    "CrossEncoderReranker",
    "LLMReranker",
    "MMRReranker",
    "Reranker",
    "reranker_from_spec",
]

log = logging.getLogger(__name__)

#: Bumped whenever the LLM prompt changes (part of the cache key).
RERANK_PROMPT_VERSION = 1


@runtime_checkable
class Reranker(Protocol):
    """Reorders (and may drop) hits for a query; best first."""

    def __call__(self, query: str, hits: list[Hit]) -> list[Hit]: ...


# -- MMR ------------------------------------------------------------------------------------------
class MMRReranker:
    """Maximal marginal relevance: relevance to the query traded against redundancy.

    Picks greedily the hit maximizing ``(1 - diversity) * cos(hit, query) - diversity *
    max cos(hit, already picked)``.

    Args:
        embed_query: text -> ``(d,)`` float32 L2-normalized query vector.
        vectors: ids -> ``(len(ids), d)`` float32 L2-normalized vectors, in the order given
            (rows of unknown ids may be missing: return a dict-like via :meth:`for_store`).
        diversity: 0 = relevance order only; 1 = most spread out.
    """

    def __init__(
        self,
        embed_query: Callable[[str], np.ndarray],
        vectors: Callable[[Sequence[str]], dict[str, np.ndarray]],
        *,
        diversity: float = 0.3,
    ) -> None:
        if (
            isinstance(diversity, bool)
            or not isinstance(diversity, (int, float))
            or not 0.0 <= diversity <= 1.0
        ):
            raise InvalidInputError(f"diversity={diversity!r} must be a number in [0, 1]")
        self.embed_query = embed_query
        self.vectors = vectors
        self.diversity = float(diversity)

    @classmethod
    def for_index(cls, index: Any, *, diversity: float = 0.3) -> MMRReranker:
        """Wire to a :class:`~cluster_rag.ClusterIndex`: its ``embed_query`` and its store's vectors."""

        def embed_query(query: str) -> np.ndarray:
            return np.asarray(index.embed_query(query), dtype=np.float32)

        def vectors(ids: Sequence[str]) -> dict[str, np.ndarray]:
            got = index.store.get(list(ids), include=["embeddings"])
            return {
                cid: np.asarray(v, dtype=np.float32)
                for cid, v in zip(got["ids"], got["embeddings"], strict=True)
            }

        return cls(embed_query, vectors, diversity=diversity)

    def __call__(self, query: str, hits: list[Hit]) -> list[Hit]:
        """All hits with a stored vector, in MMR order (hits without one keep their order at the end)."""
        if len(hits) < 2:
            return list(hits)
        by_id = self.vectors([h.id for h in hits])
        kept = [h for h in hits if h.id in by_id]
        if not kept:
            return list(hits)
        rest = [h for h in hits if h.id not in by_id]
        mat = np.stack([by_id[h.id] for h in kept]).astype(np.float32)
        relevance = mat @ self.embed_query(query)  # (m,) cosine to the query
        order = mmr_select(relevance, mat, len(kept), lambda_mult=1.0 - self.diversity)
        return [kept[int(i)] for i in order] + rest


# -- cross-encoder --------------------------------------------------------------------------------
class CrossEncoderReranker:
    """Sort hits by a cross-encoder's ``predict([(query, text), ...])`` score, highest first.

    Args:
        model: any object with ``predict(pairs) -> (n,) scores``, e.g.
            ``sentence_transformers.CrossEncoder``; see :meth:`from_path`.
        batch_size: pairs per ``predict`` call.
    """

    def __init__(self, model: Any, *, batch_size: int = 32) -> None:
        if not callable(getattr(model, "predict", None)):
            raise InvalidInputError(
                f"model must have predict(pairs) -> scores (e.g. sentence_transformers.CrossEncoder), "
                f"got {type(model).__name__}"
            )
        self.model = model
        self.batch_size = int(batch_size)

    @classmethod
    def from_path(
        cls, path: str | Path, *, device: str | None = None, batch_size: int = 32
    ) -> CrossEncoderReranker:
        """Load a ``sentence_transformers.CrossEncoder`` from a local folder (never downloads).

        Raises:
            StoreNotFoundError: ``path`` is not a folder.
        """
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise StoreNotFoundError(
                f"cross-encoder folder {str(folder)!r} does not exist; copy a model there first, e.g. "
                "`huggingface-cli download cross-encoder/ms-marco-MiniLM-L-6-v2 --local-dir <folder>`"
            )
        try:
            from sentence_transformers import CrossEncoder
        except ImportError:  # pragma: no cover - a core dependency
            raise missing_dependency("sentence_transformers", "sentence-transformers") from None
        model = CrossEncoder(str(folder), device=device, local_files_only=True)
        return cls(model, batch_size=batch_size)

    def __call__(self, query: str, hits: list[Hit]) -> list[Hit]:
        """Hits sorted by cross-encoder score (``metadata["rerank_score"]``), highest first."""
        if not hits:
            return []
        pairs = [(query, h.text) for h in hits]
        scores = np.asarray(self.model.predict(pairs, batch_size=self.batch_size), dtype=np.float64).reshape(
            -1
        )
        if scores.shape != (len(hits),):
            raise InvalidInputError(
                f"cross-encoder returned {scores.shape[0]} scores for {len(hits)} hits; expected one per pair"
            )
        order = np.argsort(-scores, kind="stable")
        return [
            replace(hits[i], metadata={**hits[i].metadata, "rerank_score": float(scores[i])}) for i in order
        ]


# -- LLM ------------------------------------------------------------------------------------------
_SYSTEM = (
    "You rank search results. Given a query and numbered passages, answer only with the passage "
    "numbers from most to least relevant to the query, like: [2] > [1] > [3]"
)
_NUMBER = re.compile(r"\[?(\d+)\]?")


def build_prompt(query: str, texts: Sequence[str], max_chars: int) -> list[dict[str, str]]:
    """Chat messages asking for a ranking of ``texts`` (each cut to ``max_chars``) for ``query``."""
    passages = "\n".join(f"[{i}] {' '.join(t.split())[:max_chars]}" for i, t in enumerate(texts, start=1))
    user = f"Query: {' '.join(query.split())[:max_chars]}\n\nPassages:\n{passages}\n\nRanking:"
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


def parse_ranking(answer: str, n: int) -> list[int] | None:
    """0-based passage order from an answer like ``"[2] > [1]"``; ``None`` when no number is in ``1..n``.

    Numbers out of range and repeats are skipped; passages the answer leaves out follow
    in their input order.
    """
    seen: list[int] = []
    for m in _NUMBER.finditer(answer or ""):
        i = int(m.group(1)) - 1
        if 0 <= i < n and i not in seen:
            seen.append(i)
    if not seen:
        return None
    return seen + [i for i in range(n) if i not in seen]


class LLMReranker:
    """Listwise re-ranking by a chat model behind any OpenAI-compatible endpoint.

    Args:
        client: an ``openai.OpenAI`` client (or anything with ``chat.completions.create``);
            see :meth:`connect`.
        model: model name the endpoint serves.
        max_candidates: passages shown to the model; later hits keep their order after them.
        max_chars: characters kept of each passage (and of the query).
        timeout: seconds per request.
        cache_size: answers kept (least recently used dropped); 0 disables the cache.
    """

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        max_candidates: int = 20,
        max_chars: int = 300,
        timeout: float = 30.0,
        cache_size: int = 1024,
    ) -> None:
        if max_candidates < 2:
            raise InvalidInputError(f"max_candidates={max_candidates!r} must be >= 2")
        if max_chars < 20:
            raise InvalidInputError(f"max_chars={max_chars!r} must be >= 20")
        if not timeout > 0:
            raise InvalidInputError(f"timeout={timeout!r} must be > 0 seconds")
        self.client = client
        self.model = model
        self.max_candidates = int(max_candidates)
        self.max_chars = int(max_chars)
        self.timeout = float(timeout)
        self.cache_size = int(cache_size)
        self.fallbacks = 0
        self.calls = 0
        self._cache: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, base_url: str, model: str, *, api_key: str = "unused", **kwargs: Any) -> LLMReranker:
        """Build an ``openai.OpenAI`` client for ``base_url`` (no retries: a failure falls back at once)."""
        try:
            import openai
        except ImportError:
            raise missing_dependency("openai", '"cluster-rag[openai]"') from None
        timeout = float(kwargs.get("timeout", 30.0))
        client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout)
        return cls(client, model, **kwargs)

    def _order(self, query: str, hits: Sequence[Hit]) -> list[int] | None:
        key = (RERANK_PROMPT_VERSION, self.model, self.max_chars, query, tuple(h.id for h in hits))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return list(self._cache[key])
        messages = build_prompt(query, [h.text for h in hits], self.max_chars)
        try:
            self.calls += 1
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                temperature=0.0,
                max_tokens=6 * len(hits) + 16,
                timeout=self.timeout,
            )
            answer = resp.choices[0].message.content or ""
        except Exception as exc:  # any transport/server/client failure -> input order
            log.warning(
                "LLM re-ranker %s failed (%s: %s); keeping the input order",
                self.model,
                type(exc).__name__,
                exc,
            )
            return None
        order = parse_ranking(str(answer), len(hits))
        if order is None:
            log.warning(
                "LLM re-ranker %s gave no usable ranking (%r); keeping the input order",
                self.model,
                answer[:80],
            )
            return None
        if self.cache_size > 0:
            with self._lock:
                self._cache[key] = order
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return order

    def __call__(self, query: str, hits: list[Hit]) -> list[Hit]:
        """The first ``max_candidates`` hits in the model's order, then the rest unchanged."""
        if len(hits) < 2:
            return list(hits)
        head, tail = list(hits[: self.max_candidates]), list(hits[self.max_candidates :])
        order = self._order(query, head)
        if order is None:
            with self._lock:
                self.fallbacks += 1
            return list(hits)
        return [head[i] for i in order] + tail


def reranker_from_spec(spec: str, index: Any) -> Reranker:
    """A re-ranker from a short text spec, as the CLI's ``--rerank`` and tool arguments give it.

    Specs: ``mmr`` or ``mmr:<diversity>`` (e.g. ``mmr:0.5``); ``cross-encoder:<local folder>``;
    ``llm:<model>@<base url>`` (an OpenAI-compatible endpoint; the key is read from
    ``OPENAI_API_KEY`` when set).

    Args:
        spec: the text.
        index: the :class:`~cluster_rag.ClusterIndex` whose vectors MMR reads.

    Raises:
        InvalidInputError: an unknown or malformed spec (the message lists the forms).
    """
    import os

    forms = "mmr, mmr:<diversity>, cross-encoder:<folder>, llm:<model>@<base url>"
    kind, _, arg = str(spec).partition(":")
    kind = kind.strip().lower()
    if kind == "mmr":
        try:
            diversity = float(arg) if arg else 0.3
        except ValueError:
            raise InvalidInputError(f"rerank spec {spec!r}: diversity {arg!r} is not a number") from None
        return MMRReranker.for_index(index, diversity=diversity)
    if kind == "cross-encoder" and arg:
        return CrossEncoderReranker.from_path(arg)
    if kind == "llm" and "@" in arg:
        model, _, url = arg.partition("@")
        if model and url:
            return LLMReranker.connect(url, model, api_key=os.environ.get("OPENAI_API_KEY", "unused"))
    raise InvalidInputError(f"rerank spec {spec!r} is not one of: {forms}")
