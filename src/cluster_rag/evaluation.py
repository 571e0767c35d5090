"""How good are the topics and the routed search? Metrics, pure numpy/scikit-learn.

Three families, each a function on plain arrays plus :func:`evaluate` that
gathers them from a fitted :class:`~cluster_rag.ClusterIndex`:

- **Labels** (:func:`label_scores`), when chunks carry a gold label in metadata:
  V-measure (harmonic mean of homogeneity and completeness), NMI (arithmetic
  normalization, equal to V-measure), ARI and purity (share of rows whose
  cluster's majority label is their own; rises with k, so quote it next to k).
- **Retrieval** (:func:`retrieval_scores`), given queries and graded relevance
  judgments (qrels): recall@k and nDCG@10 of exact search and of routed search
  at the default ``n_probe``, and the same along an ``n_probe`` curve, with the
  overlap of routed and exact top-10 and the share of chunks scored. Chunks map
  to documents by id (``"doc#3"`` → ``"doc"``, as the JSONL/CSV loader names the
  chunks of a long record); each document counts once, at its best chunk.
  nDCG uses linear gains (``rel / log2(rank + 1)``), as BEIR/pytrec_eval do.
- **Sizes** (:func:`size_stats`): the cluster size distribution and inertia.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .chunk_ids import document_id
from .errors import InvalidInputError

if TYPE_CHECKING:
    from .index import ClusterIndex
    from .routing import RoutingIndex

__all__ = [
    "Evaluation",
    "LabelScores",
    "RetrievalScores",
    "SizeStats",
    "evaluate",
    "label_scores",
    "load_qrels",
    "load_queries",
    "ndcg_at_k",
    "probe_grid",
    "purity_score",
    "recall_at_k",
    "retrieval_scores",
    "size_stats",
]

Qrels = Mapping[str, Mapping[str, int]]


# labels -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelScores:
    """Agreement of clusters with gold labels (1.0 is perfect for all but purity at k = n)."""

    v_measure: float
    homogeneity: float
    completeness: float
    nmi: float
    ari: float
    purity: float
    n_rows: int
    n_classes: int
    n_clusters: int


def purity_score(truth: Sequence[Any] | np.ndarray, pred: Sequence[Any] | np.ndarray) -> float:
    """Share of rows whose cluster's most common gold label is their own.

    Args:
        truth: ``(n,)`` gold labels (any hashable values).
        pred: ``(n,)`` cluster ids.
    """
    from sklearn.metrics.cluster import contingency_matrix

    table = contingency_matrix(np.asarray(truth), np.asarray(pred), sparse=True)
    return float(table.max(axis=0).sum() / table.sum())


def label_scores(truth: Sequence[Any] | np.ndarray, pred: Sequence[Any] | np.ndarray) -> LabelScores:
    """V-measure, homogeneity, completeness, NMI, ARI and purity of ``pred`` against ``truth``.

    Args:
        truth: ``(n,)`` gold labels.
        pred: ``(n,)`` cluster ids.

    Raises:
        InvalidInputError: lengths differ or there are no rows.
    """
    from sklearn import metrics

    t, p = np.asarray(truth), np.asarray(pred)
    if t.shape != p.shape or t.ndim != 1:
        raise InvalidInputError(f"truth has shape {t.shape} but pred {p.shape}; pass one label per row")
    if len(t) == 0:
        raise InvalidInputError("no labeled rows to score; add a label to the chunks' metadata")
    h, c, v = metrics.homogeneity_completeness_v_measure(t, p)
    return LabelScores(
        v_measure=float(v),
        homogeneity=float(h),
        completeness=float(c),
        nmi=float(metrics.normalized_mutual_info_score(t, p)),
        ari=float(metrics.adjusted_rand_score(t, p)),
        purity=purity_score(t, p),
        n_rows=len(t),
        n_classes=len(np.unique(t)),
        n_clusters=len(np.unique(p)),
    )


# sizes --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SizeStats:
    """Cluster size distribution.

    Attributes:
        sizes: chunks per cluster, by cluster id.
        inertia: sum of ``1 - cos(chunk, centroid)`` when known, else ``None``.
        mean_similarity: mean cosine of a chunk to its centroid when known.
    """

    k: int
    n: int
    min: int
    median: float
    max: int
    mean: float
    std: float
    empty: int
    sizes: tuple[int, ...]
    inertia: float | None = None
    mean_similarity: float | None = None


def size_stats(
    labels: np.ndarray,
    k: int,
    *,
    vectors: np.ndarray | None = None,
    centroids: np.ndarray | None = None,
) -> SizeStats:
    """Sizes of ``k`` clusters from ``labels`` ``(n,)``; inertia when vectors and centroids are given.

    Args:
        labels: ``(n,)`` int cluster ids in ``[0, k)``.
        vectors: ``(n, d)`` float32, L2-normalized.
        centroids: ``(k, d)`` float32, L2-normalized.
    """
    lab = np.asarray(labels, dtype=np.int64)
    sizes = np.bincount(lab, minlength=k) if len(lab) else np.zeros(k, dtype=np.int64)
    inertia = mean_sim = None
    if vectors is not None and centroids is not None and len(lab):
        sims = np.einsum("ij,ij->i", np.asarray(vectors, dtype=np.float32), centroids[lab])
        inertia = float(np.sum(1.0 - sims, dtype=np.float64))
        mean_sim = float(np.mean(sims, dtype=np.float64))
    return SizeStats(
        k=k,
        n=len(lab),
        min=int(sizes.min()) if k else 0,
        median=float(np.median(sizes)) if k else 0.0,
        max=int(sizes.max()) if k else 0,
        mean=float(sizes.mean()) if k else 0.0,
        std=float(sizes.std()) if k else 0.0,
        empty=int(np.sum(sizes == 0)),
        sizes=tuple(int(s) for s in sizes),
        inertia=inertia,
        mean_similarity=mean_sim,
    )


# retrieval ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RetrievalScores:
    """Routed vs exact search against qrels.

    Attributes:
        n_queries: queries scored (those with at least one relevant document).
        route: the default route the ``routed`` figures use: ``"gap=0.031"`` (every
            cluster within that centroid-score margin of the best) or ``"n_probe=4"``.
        exact: ``{"recall@1": …, "recall@10": …, "ndcg@10": …}`` of exhaustive search.
        routed: the same for routed search by the default route, plus ``n_probe``
            (mean clusters probed) and ``searched`` (mean share of chunks scored).
        curve: one dict per ``n_probe`` probed: ``n_probe``, ``recall@10``, ``ndcg@10``,
            ``overlap@10`` (share of exact top-10 chunks that routed search also
            returns) and ``searched`` (mean share of chunks scored).
    """

    n_queries: int
    route: str
    exact: dict[str, float]
    routed: dict[str, float]
    curve: tuple[dict[str, float], ...]


def _doc_ranking(chunk_ids: Sequence[str], known_docs: set[str]) -> list[str]:
    """Chunk ids best first → document ids best first, each document once."""
    seen: set[str] = set()
    out: list[str] = []
    for cid in chunk_ids:
        doc = cid if cid in known_docs else document_id(cid)
        if doc not in seen:
            seen.add(doc)
            out.append(doc)
    return out


def ndcg_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with linear gains: ``sum(rel_i / log2(i + 1))`` over ranks ``i = 1..k``, over the ideal."""
    dcg = sum(relevance.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted((r for r in relevance.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of ``relevant`` found in the first ``k`` of ``ranked``."""
    return len(set(ranked[:k]) & relevant) / len(relevant)


def _scores(ranked: list[str], rel: Mapping[str, int], cutoffs: Sequence[int]) -> dict[str, float]:
    relevant = {d for d, r in rel.items() if r > 0}
    out = {f"recall@{c}": recall_at_k(ranked, relevant, c) for c in cutoffs}
    out["ndcg@10"] = ndcg_at_k(ranked, rel, 10)
    return out


def _append(acc: dict[str, list[float]], values: Mapping[str, float]) -> None:
    for name, value in values.items():
        acc.setdefault(name, []).append(value)


def _curve_point(
    curve_acc: dict[int, dict[str, list[float]]],
    routing: RoutingIndex,
    vec: np.ndarray,
    rel: Mapping[str, int],
    known: set[str],
    fetch: int,
    exact_top10: set[str],
) -> None:
    """Add one query's recall / nDCG / overlap with exact / share searched at every fixed ``n_probe``."""
    relevant = {d for d, r in rel.items() if r > 0}
    order = routing.route(vec, routing.k)
    sizes, total = routing.sizes(), len(routing)
    for p, acc in curve_acc.items():
        cand = routing.candidates(vec, n_probe=p, limit=fetch)
        docs = _doc_ranking([str(x) for x in cand.ids], known)
        acc["recall@10"].append(recall_at_k(docs, relevant, 10))
        acc["ndcg@10"].append(ndcg_at_k(docs, rel, 10))
        shared = len(exact_top10 & set(cand.ids[:10].tolist()))
        acc["overlap@10"].append(shared / max(1, len(exact_top10)))
        acc["searched"].append(float(sizes[order[:p]].sum()) / max(1, total))


def probe_grid(k: int, points: int = 12) -> list[int]:
    """``n_probe`` values for a curve: every value up to 16, then a geometric grid up to ``k``."""
    if k <= 16:
        return list(range(1, k + 1))
    head = list(range(1, 9))
    tail = np.geomspace(8, k, points)
    return sorted(set(head) | {int(round(v)) for v in tail} | {k})


def retrieval_scores(
    routing: RoutingIndex,
    query_vectors: np.ndarray,
    query_ids: Sequence[str],
    qrels: Qrels,
    *,
    n_probe: int | None = None,
    gap: float | None = None,
    cutoffs: Sequence[int] = (1, 5, 10, 100),
    probes: Sequence[int] | None = None,
) -> RetrievalScores:
    """Recall@k and nDCG@10 of routed vs exact search.

    Args:
        routing: the model version's :class:`~cluster_rag.routing.RoutingIndex`.
        query_vectors: ``(q, d)`` float32 query embeddings (normalized here).
        query_ids: ``(q,)`` ids matching ``qrels`` keys.
        qrels: ``{query id: {document id: relevance}}``; relevance > 0 is relevant.
        n_probe: default route: this many nearest clusters (used when ``gap`` is ``None``).
        gap: default route: every cluster within this centroid-score margin of the best.
        cutoffs: the k of recall@k.
        probes: ``n_probe`` values of the curve (default :func:`probe_grid`).

    Raises:
        InvalidInputError: no query has a relevant document, or shapes disagree.
    """
    if (n_probe is None) == (gap is None):
        raise InvalidInputError("pass the default route as n_probe=… or gap=…, exactly one of them")
    q = np.asarray(query_vectors, dtype=np.float32)
    if q.ndim != 2 or len(q) != len(query_ids):
        raise InvalidInputError(f"query_vectors has shape {q.shape} for {len(query_ids)} query ids")
    keep = [i for i, qid in enumerate(query_ids) if any(r > 0 for r in qrels.get(qid, {}).values())]
    if not keep:
        raise InvalidInputError(
            f"none of the {len(query_ids)} queries has a relevant document in the qrels; "
            "check that query ids in the qrels match the queries file"
        )
    depth = max(max(cutoffs), 10)
    fetch = 3 * depth  # chunks fetched so that `depth` distinct documents remain
    known = {d for qid in query_ids for d in qrels.get(qid, {})}
    wanted = list(probes) if probes is not None else probe_grid(routing.k)
    grid = sorted({min(max(1, int(p)), routing.k) for p in wanted}) or [1]
    total = len(routing)
    sizes = routing.sizes()

    exact_acc: dict[str, list[float]] = {}
    routed_acc: dict[str, list[float]] = {}
    curve_acc: dict[int, dict[str, list[float]]] = {
        p: {"recall@10": [], "ndcg@10": [], "overlap@10": [], "searched": []} for p in grid
    }
    for i in keep:
        vec = routing.check_query(q[i])
        rel = qrels[query_ids[i]]
        exact = routing.exact(vec, fetch)
        _append(exact_acc, _scores(_doc_ranking([str(x) for x in exact.ids], known), rel, cutoffs))
        default = routing.route(vec, n_probe, gap=gap) if gap is not None else routing.route(vec, n_probe)
        cand = routing.candidates(vec, topics=default.tolist(), limit=fetch)
        _append(routed_acc, _scores(_doc_ranking([str(x) for x in cand.ids], known), rel, cutoffs))
        routed_acc.setdefault("n_probe", []).append(float(len(default)))
        routed_acc.setdefault("searched", []).append(float(sizes[default].sum()) / max(1, total))
        _curve_point(curve_acc, routing, vec, rel, known, fetch, set(exact.ids[:10].tolist()))
    curve = tuple(
        {"n_probe": float(p), **{m: float(np.mean(v)) for m, v in curve_acc[p].items()}} for p in grid
    )
    return RetrievalScores(
        n_queries=len(keep),
        route=f"gap={gap:.4g}" if gap is not None else f"n_probe={n_probe}",
        exact={m: float(np.mean(v)) for m, v in exact_acc.items()},
        routed={m: float(np.mean(v)) for m, v in routed_acc.items()},
        curve=curve,
    )


def load_queries(path: str | Path) -> dict[str, str]:
    """Queries from JSONL (``{"id"|"_id"|"query_id", "text"}`` lines) or TSV/CSV (``id``, ``text`` columns).

    Raises:
        InvalidInputError: missing file, unknown format or a row without id/text.
    """
    file = Path(path)
    if not file.is_file():
        raise InvalidInputError(f"queries file {str(file)!r} does not exist")
    out: dict[str, str] = {}
    if file.suffix.lower() in {".jsonl", ".json"}:
        for line_no, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{file}:{line_no} is not valid JSON ({exc.msg})") from None
            qid = next((row[k] for k in ("id", "_id", "query_id") if k in row), None)
            if qid is None or not isinstance(row.get("text"), str):
                raise InvalidInputError(
                    f'{file}:{line_no} needs an "id" and a "text" field, got {sorted(row)}'
                )
            out[str(qid)] = row["text"]
        return out
    if file.suffix.lower() in {".tsv", ".csv"}:
        delim = "\t" if file.suffix.lower() == ".tsv" else ","
        with file.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delim)
            fields = reader.fieldnames or []
            id_col = next((c for c in ("id", "_id", "query_id", "query-id") if c in fields), None)
            if id_col is None or "text" not in fields:
                raise InvalidInputError(f"{file} needs an 'id' and a 'text' column, has {fields}")
            for row in reader:
                out[str(row[id_col])] = row["text"]
        return out
    raise InvalidInputError(f"queries file {str(file)!r} must be .jsonl, .tsv or .csv")


def load_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Relevance judgments: TSV/CSV with a header (``query_id``/``query-id``, ``doc_id``/``corpus-id``,
    ``score``), as BEIR ships them, or TREC lines ``qid 0 docid rel`` without a header.

    Raises:
        InvalidInputError: missing file or a malformed row.
    """
    file = Path(path)
    if not file.is_file():
        raise InvalidInputError(f"qrels file {str(file)!r} does not exist")
    lines = [ln for ln in file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    out: dict[str, dict[str, int]] = {}
    if not lines:
        raise InvalidInputError(f"qrels file {str(file)!r} is empty")
    delim = "," if file.suffix.lower() == ".csv" else "\t"
    head = [h.strip().lower() for h in lines[0].split(delim)]
    q_col = next((head.index(c) for c in ("query_id", "query-id", "qid") if c in head), None)
    d_col = next((head.index(c) for c in ("doc_id", "corpus-id", "docid", "doc-id") if c in head), None)
    s_col = next((head.index(c) for c in ("score", "relevance", "rel") if c in head), None)
    if q_col is not None and d_col is not None and s_col is not None:
        for line_no, line in enumerate(lines[1:], 2):
            parts = line.split(delim)
            try:
                out.setdefault(parts[q_col].strip(), {})[parts[d_col].strip()] = int(float(parts[s_col]))
            except (IndexError, ValueError):
                raise InvalidInputError(
                    f"{file}:{line_no} is not 'query_id, doc_id, score': {line!r}"
                ) from None
        return out
    for line_no, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) != 4:
            raise InvalidInputError(
                f"{file}:{line_no}: expected a header with query_id/doc_id/score or TREC 'qid 0 docid rel' "
                f"lines, got {line!r}"
            )
        try:
            out.setdefault(parts[0], {})[parts[2]] = int(float(parts[3]))
        except ValueError:
            raise InvalidInputError(f"{file}:{line_no}: relevance {parts[3]!r} is not a number") from None
    return out


# index-level --------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """Everything :func:`evaluate` measured; ``labels`` / ``retrieval`` are ``None`` when not asked for."""

    version: int
    k: int
    n_chunks: int
    sizes: SizeStats
    labels: LabelScores | None = None
    label_field: str | None = None
    retrieval: RetrievalScores | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def evaluate(
    index: ClusterIndex,
    *,
    label_field: str | None = None,
    queries: Mapping[str, str] | None = None,
    qrels: Qrels | None = None,
    probes: Sequence[int] | None = None,
) -> Evaluation:
    """Measure the active model version of ``index``.

    Args:
        index: a fitted index.
        label_field: metadata key holding a gold label; chunks without it are skipped.
        queries: ``{query id: text}``, embedded with the index's model.
        qrels: ``{query id: {document id: relevance}}``; needed with ``queries``.
        probes: ``n_probe`` values of the retrieval curve.

    Raises:
        NotFittedError: the index has no model yet.
        InvalidInputError: no chunk has ``label_field``; queries without qrels or the reverse.
    """
    from .routing import RoutingIndex

    model = index.model
    backend = model.backend
    # an exact structure over the current centroids: routing and the exact baseline both need it
    routing = RoutingIndex(model.centroids, backend.ids(), backend.vectors(), backend.labels())
    ids = [str(x) for x in routing.ids()]
    labels = routing.labels()
    sizes = size_stats(labels, routing.k, vectors=routing.vectors(), centroids=routing.centroids)
    label_result = None
    if label_field is not None:
        label_result = _label_eval(index, ids, labels, label_field)
    retrieval = None
    if (queries is None) != (qrels is None):
        raise InvalidInputError("pass both queries and qrels (--queries FILE --qrels FILE), or neither")
    if queries is not None and qrels is not None:
        qids = [qid for qid in queries if qid in qrels]
        if not qids:
            raise InvalidInputError(
                f"no query id of the {len(queries)} queries appears in the qrels "
                f"(e.g. queries {list(queries)[:3]}, qrels {list(qrels)[:3]})"
            )
        vectors = index.embed_texts([queries[q] for q in qids])
        gap = model.info.probe_gap
        retrieval = retrieval_scores(
            routing,
            vectors,
            qids,
            qrels,
            n_probe=None if gap is not None else model.info.n_probe,
            gap=gap,
            probes=probes,
        )
    return Evaluation(
        version=model.version,
        k=routing.k,
        n_chunks=len(ids),
        sizes=sizes,
        labels=label_result,
        label_field=label_field,
        retrieval=retrieval,
    )


def _label_eval(index: ClusterIndex, ids: list[str], labels: np.ndarray, field: str) -> LabelScores:
    label_of = dict(zip(ids, labels.tolist(), strict=True))
    truth: list[str] = []
    pred: list[int] = []
    keys: set[str] = set()
    for got in index.store.iter_all(include=["metadatas"]):
        for cid, meta in zip(got["ids"], got["metadatas"], strict=True):
            meta = meta or {}
            keys.update(k for k in meta if not k.startswith("cr_"))
            if field in meta and cid in label_of and meta[field] not in (None, ""):
                truth.append(str(meta[field]))
                pred.append(int(label_of[cid]))
    if not truth:
        raise InvalidInputError(
            f"no chunk has metadata field {field!r}; fields present: {sorted(keys) or '(none)'}; "
            "pass one of them as --label-field"
        )
    return label_scores(truth, pred)
