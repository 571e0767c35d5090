"""Search modes (dense, keyword, hybrid) and the re-rank stage, on top of routed search.

One search here: validated :class:`~cluster_rag.search.SearchRequest` (topics, ``where``
and the caller's scope already folded in by :func:`~cluster_rag.search.build_request`)
→ candidates from routed dense search (:func:`~cluster_rag.search.routed_search`) and/or
the BM25 :class:`~cluster_rag.keyword_index.KeywordIndex` restricted to the same topics
and filter → fused (:func:`~cluster_rag.fusion.convex_combination`, ``alpha`` =
:data:`DEFAULT_ALPHA`) → optionally re-ranked (:class:`~cluster_rag.rerank.Reranker`) →
the first ``k``. Every hit carries its topic; ``Hit.score`` stays the cosine similarity
between query and chunk in every mode (the order is the fused one).

Defaults, from ``python -m bench retrieval`` (bench/results/retrieval.md; SciFact, 300
test claims): routed dense 0.643 nDCG@10, BM25 0.686, hybrid RRF 0.713, hybrid convex
0.729 with ``alpha = 0.45`` calibrated on the 809 *train* claims (train curve flat for
0.3-0.6), at a p50 of 1.35x routed dense; so the default mode is ``"hybrid"`` with the
convex rule. ``DEFAULT_DEPTH`` candidates per retriever (100, as measured).

The keyword index is built lazily on the first keyword or hybrid search: loaded from the
store's ``NAME__meta`` collection when a saved copy exists (embedded or server mode),
else rebuilt from the stored chunk texts and saved there. It follows the index's model
snapshot: each new :class:`~cluster_rag.model.ClusterModel` (after an add, a delete, a
fit or a refresh) is diffed against the keyword index once, so adds and deletes, also
by other processes, reach it without any hook in the write path.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from .chunk_ids import document_id
from .errors import InvalidInputError
from .evaluation import ndcg_at_k, recall_at_k
from .fusion import convex_combination
from .keyword_index import KeywordIndex
from .model import ClusterModel
from .rerank import Reranker
from .search import SearchRequest, candidate_hits, get_hits, routed_candidates, routed_search
from .store import ChromaStore
from .types import Hit

if TYPE_CHECKING:
    from .index import ClusterIndex

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_DEPTH",
    "DEFAULT_MODE",
    "MODES",
    "KeywordState",
    "SearchMode",
    "ModeScores",
    "check_mode",
    "compare_modes",
    "fetch_depth",
    "search",
]

SearchMode = Literal["dense", "keyword", "hybrid"]
MODES: tuple[str, ...] = ("dense", "keyword", "hybrid")
DEFAULT_MODE: SearchMode = "hybrid"
#: dense weight of the convex combination, calibrated on SciFact train (bench/results/retrieval.md)
DEFAULT_ALPHA = 0.45
#: candidates taken from each retriever before fusion
DEFAULT_DEPTH = 100
#: save the keyword index again once this share of rows changed since the last save
_RESAVE_FRACTION = 0.1



def check_mode(mode: object) -> SearchMode:
    """``mode`` validated (``None``: :data:`DEFAULT_MODE`)."""
    if mode is None:
        return DEFAULT_MODE
    if mode not in MODES:
        raise InvalidInputError(f"mode={mode!r} must be one of {', '.join(map(repr, MODES))}")
    return mode  # type: ignore[return-value]


def fetch_depth(k: int, rerank: Reranker | None, fetch_k: int | None = None) -> int:
    """Hits handed to a re-ranker for a final ``k``: ``fetch_k`` or ``max(4 k, 20)``, never below ``k``
    (just ``k`` without a re-ranker)."""
    if rerank is None:
        return k
    return max(k, fetch_k if fetch_k is not None else max(4 * k, 20))


class KeywordState:
    """The keyword index of one :class:`~cluster_rag.ClusterIndex`, kept in step with its model.

    Args:
        key: name of the saved copy inside the store's meta collection.
    """

    def __init__(self, key: str = "keyword") -> None:
        self.key = key
        self._lock = threading.Lock()
        self._index: KeywordIndex | None = None
        self._model: ClusterModel | None = None
        self._ids = np.empty(0, dtype=object)
        self._labels = np.empty(0, dtype=np.int64)
        self._changed = 0
        self._applied: set[str] = set()  # text-change notes this index reflects

    def forget(self, ids: Sequence[str]) -> None:
        """Drop the entries of chunks rewritten in place (same ids, new texts): the next :meth:`get`
        re-reads their texts from the store."""
        with self._lock:
            if self._index is not None:
                self._changed += self._index.remove(ids)
                self._model = None

    def get(self, model: ClusterModel, store: ChromaStore) -> tuple[KeywordIndex, np.ndarray, np.ndarray]:
        """The keyword index holding exactly the model's chunks, with the backend's ids ``(n,)``
        object and their cluster positions ``(n,)`` int64."""
        with self._lock:
            if self._index is not None and model is self._model:
                return self._index, self._ids, self._labels
            all_ids, labels = model.backend.ids(), model.backend.labels()
            ids = [str(x) for x in all_ids]
            built = False
            if self._index is None:
                loaded = KeywordIndex.load(store.meta, self.key)
                if loaded is None:  # built from every stored text; saved below
                    self._index, self._applied = KeywordIndex.from_collection(store.chunks), set()
                    built = True
                else:
                    self._index, self._applied = loaded, set(loaded.saved_notes)
                self._changed = 0
            # chunks other processes edited or deleted since the copy was saved: drop, re-read below
            fresh = store.text_change_notes(skip=self._applied)
            if fresh:
                self._changed += self._index.remove({cid for got in fresh.values() for cid in got})
                self._applied |= fresh.keys()
            self._changed += self._sync(self._index, store, ids)
            if built or self._changed > _RESAVE_FRACTION * max(len(ids), 1):
                self._index.save(store.meta, self.key, notes=sorted(self._applied))
                self._changed = 0
            self._model, self._ids, self._labels = model, all_ids, labels
            return self._index, self._ids, self._labels

    @staticmethod
    def _sync(index: KeywordIndex, store: ChromaStore, ids: Sequence[str]) -> int:
        live = set(ids)
        have = set(index.ids)
        gone = have - live
        missing = [cid for cid in ids if cid not in have]
        if gone:
            index.remove(gone)
        for start in range(0, len(missing), store.batch_size):
            got = store.get(missing[start : start + store.batch_size], include=["documents"])
            index.add(got["ids"], [d or "" for d in got["documents"]])
        return len(gone) + len(missing)


def search(
    model: ClusterModel,
    store: ChromaStore,
    keyword: KeywordState,
    query: str,
    vector: np.ndarray,
    request: SearchRequest,
    *,
    mode: SearchMode = DEFAULT_MODE,
    rerank: Reranker | None = None,
    fetch_k: int | None = None,
    alpha: float = DEFAULT_ALPHA,
    depth: int = DEFAULT_DEPTH,
) -> list[Hit]:
    """Best ``request.k`` hits for ``query`` (embedded as ``vector`` ``(d,)``) in ``mode``.

    ``rerank`` sees the first :func:`fetch_depth` hits (``fetch_k`` of them when given) and
    its first ``k`` are returned.

    Raises:
        InvalidInputError: ``rerank`` is not callable, ``fetch_k`` not a positive int.
    """
    if rerank is not None and not callable(rerank):
        raise InvalidInputError(f"rerank={rerank!r} must be a Reranker: a callable (query, hits) -> hits")
    if fetch_k is not None and (isinstance(fetch_k, bool) or not isinstance(fetch_k, int) or fetch_k < 1):
        raise InvalidInputError(f"fetch_k={fetch_k!r} must be a positive int or None")
    k = request.k
    wanted = fetch_depth(k, rerank, fetch_k)
    if mode == "dense":
        hits = routed_search(model, store, vector, replace(request, k=wanted))
    else:
        hits = _fused(model, store, keyword, query, vector, request, mode, alpha, max(depth, wanted), wanted)
    if rerank is not None and len(hits) > 1:
        hits = list(rerank(query, hits))
    return hits[:k]


def _fused(
    model: ClusterModel,
    store: ChromaStore,
    keyword: KeywordState,
    query: str,
    vector: np.ndarray,
    request: SearchRequest,
    mode: SearchMode,
    alpha: float,
    depth: int,
    keep: int,
) -> list[Hit]:
    """The first ``keep`` of ``depth`` dense and ``depth`` keyword candidates, fused; only those
    ``keep`` chunks' texts are read."""
    index, ids, labels = keyword.get(model, store)
    kw_ids, kw_scores = _keyword_candidates(model, store, index, ids, labels, query, request, depth)
    row_of: dict[str, int] = {}
    if mode == "hybrid":
        dense = routed_candidates(model, store, vector, replace(request, k=depth))
        dense_ids = [str(x) for x in dense.ids]
        row_of = {cid: row for row, cid in enumerate(dense_ids)}
        order = convex_combination((dense_ids, dense.scores.tolist()), (kw_ids, kw_scores), alpha).ids[:keep]
        rows = np.asarray([row_of[cid] for cid in order if cid in row_of], dtype=np.int64)
        kept = candidate_hits(model, store, dense.take(rows), withhold_labels=request.withhold_labels)
    else:
        order, kept = kw_ids[:keep], []
    by_id = {h.id: h for h in kept}
    extra = [cid for cid in order if cid not in row_of]
    if extra:
        got = store.get(extra, include=["embeddings"])
        q = np.asarray(vector, dtype=np.float32)
        vecs = np.asarray(got["embeddings"], dtype=np.float32).reshape(len(got["ids"]), -1)
        cosine = dict(zip(got["ids"], (vecs @ q).tolist(), strict=True))
        for h in get_hits(model, store, extra):
            score = cosine.get(h.id, 0.0)
            label = None if getattr(request, "withhold_labels", False) else h.topic_label
            by_id[h.id] = replace(h, score=score, topic_label=label)
    return [by_id[cid] for cid in order if cid in by_id]


def _keyword_candidates(
    model: ClusterModel,
    store: ChromaStore,
    index: KeywordIndex,
    ids: np.ndarray,
    labels: np.ndarray,
    query: str,
    request: SearchRequest,
    depth: int,
) -> tuple[list[str], np.ndarray]:
    """BM25 ids and scores inside the request's topics and ``where`` filter, best first."""
    allowed: set[str] | None = None
    # ``allowed``: the topics a caller's scope allows (SearchRequest fields of the access-control work)
    topics = request.topics if request.topics is not None else getattr(request, "allowed", None)
    if topics is not None:
        positions = np.asarray(sorted({model.position_of[t] for t in topics}), dtype=np.int64)
        allowed = {str(x) for x in ids[np.isin(labels, positions)]}
    if request.where is None:
        got = index.search(query, depth, allowed_ids=allowed)
        return got.ids, got.scores
    got = index.search(query, 4 * depth, allowed_ids=allowed)
    passing = store.filter_ids(got.ids, request.where) if got.ids else set()
    keep = [i for i, cid in enumerate(got.ids) if cid in passing][:depth]
    return [got.ids[i] for i in keep], got.scores[keep]


@dataclass(frozen=True)
class ModeScores:
    """One row of :func:`compare_modes`.

    Attributes:
        name: ``"dense"``, ``"keyword"``, ``"hybrid"`` or ``"<mode> + <re-ranker name>"``.
        ndcg_at_10: mean nDCG@10 over the queries with a relevant document.
        recall_at_100: mean recall of the documents of the first 100 chunks.
        p50_ms: median milliseconds per query (query embedding included).
        n_queries: queries scored.
    """

    name: str
    ndcg_at_10: float
    recall_at_100: float
    p50_ms: float
    n_queries: int


def compare_modes(
    index: ClusterIndex,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    modes: Sequence[str] = MODES,
    rerankers: Mapping[str, Reranker] | None = None,
    rerank_mode: str | None = None,
) -> list[ModeScores]:
    """Score every search mode (and each re-ranker on top of ``rerank_mode``) against qrels.

    Chunk hits map to their document (``doc#n`` -> ``doc``, or the id itself when the qrels
    name chunks), each document counted once, as :func:`~cluster_rag.evaluation.evaluate` does.

    Args:
        index: a fitted index.
        queries: ``{query id: text}``.
        qrels: ``{query id: {document id: relevance}}``; relevance > 0 is relevant.
        modes: the modes to score.
        rerankers: ``{name: reranker}``, each applied over ``rerank_mode`` (default mode).
        rerank_mode: the mode the re-rankers re-rank.

    Returns:
        One :class:`ModeScores` per mode, then one per re-ranker.
    """
    ids = [qid for qid in queries if any(r > 0 for r in qrels.get(qid, {}).values())]
    if not ids:
        raise InvalidInputError(
            f"none of the {len(queries)} queries has a relevant document in the qrels; check the query ids"
        )
    known = {d for qid in ids for d in qrels[qid]}
    runs: list[tuple[str, str, Reranker | None]] = [(m, check_mode(m), None) for m in modes]
    base = check_mode(rerank_mode)
    runs += [(f"{base} + {name}", base, rr) for name, rr in (rerankers or {}).items()]
    out: list[ModeScores] = []
    for name, mode, rr in runs:
        nd, rc, ms = [], [], []
        for qid in ids:
            t0 = time.perf_counter()
            hits = index.search(queries[qid], 100, mode=mode, rerank=rr)
            ms.append((time.perf_counter() - t0) * 1000)
            docs = list(dict.fromkeys(h.id if h.id in known else document_id(h.id) for h in hits))
            nd.append(ndcg_at_k(docs, qrels[qid], 10))
            rc.append(recall_at_k(docs, {d for d, r in qrels[qid].items() if r > 0}, 100))
        p50 = statistics.median(ms)
        out.append(ModeScores(name, statistics.fmean(nd), statistics.fmean(rc), p50, len(ids)))
    return out
