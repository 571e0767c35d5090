"""Quality metrics against scikit-learn and hand-computed cases; retrieval on a synthetic routing index."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics

from cluster_rag.errors import InvalidInputError, MissingDependencyError
from cluster_rag.evaluation import (
    label_scores,
    load_qrels,
    load_queries,
    ndcg_at_k,
    probe_grid,
    purity_score,
    retrieval_scores,
    size_stats,
)
from cluster_rag.routing import RoutingIndex


def test_label_scores_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, 300)
    pred = np.where(rng.random(300) < 0.7, truth, rng.integers(0, 7, 300))
    got = label_scores([f"c{t}" for t in truth], pred)
    assert got.v_measure == pytest.approx(metrics.v_measure_score(truth, pred))
    assert got.homogeneity == pytest.approx(metrics.homogeneity_score(truth, pred))
    assert got.completeness == pytest.approx(metrics.completeness_score(truth, pred))
    assert got.nmi == pytest.approx(metrics.normalized_mutual_info_score(truth, pred))
    assert got.ari == pytest.approx(metrics.adjusted_rand_score(truth, pred))
    assert (got.n_rows, got.n_classes) == (300, 5)


def test_purity_by_hand() -> None:
    truth = ["a", "a", "b", "b", "c", "c"]
    pred = [0, 0, 0, 1, 1, 1]  # cluster 0: a,a,b -> 2; cluster 1: b,c,c -> 2
    assert purity_score(truth, pred) == pytest.approx(4 / 6)
    perfect = label_scores(truth, [0, 0, 1, 1, 2, 2])
    assert perfect.v_measure == pytest.approx(1.0) and perfect.ari == pytest.approx(1.0) and perfect.purity == 1.0


def test_label_scores_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="one label per row"):
        label_scores([1, 2, 3], [0, 1])
    with pytest.raises(InvalidInputError, match="no labeled rows"):
        label_scores([], [])


def test_ndcg_by_hand() -> None:
    rel = {"a": 1, "b": 2}
    # ranks: x (0), b (2) at rank 2, a (1) at rank 3
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(["x", "b", "a"], rel, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(["b", "a"], rel) == pytest.approx(1.0)
    assert ndcg_at_k(["x"], {}) == 0.0


def test_size_stats() -> None:
    labels = np.array([0, 0, 0, 2, 2, 1])
    s = size_stats(labels, 4)
    assert s.sizes == (3, 1, 2, 0) and s.empty == 1 and s.max == 3 and s.min == 0 and s.n == 6
    assert s.inertia is None
    vecs = np.eye(3, dtype=np.float32)[[0, 0, 1]]
    s = size_stats(np.array([0, 0, 1]), 2, vectors=vecs, centroids=np.eye(3, dtype=np.float32)[[0, 2]])
    assert s.inertia == pytest.approx(1.0) and s.mean_similarity == pytest.approx(2 / 3)


def test_probe_grid() -> None:
    assert probe_grid(5) == [1, 2, 3, 4, 5]
    grid = probe_grid(300)
    assert grid[:8] == list(range(1, 9)) and grid[-1] == 300 and grid == sorted(set(grid))


def _toy_routing(seed: int = 0) -> tuple[RoutingIndex, np.ndarray, list[str], dict[str, dict[str, int]]]:
    """6 clusters of 30 docs; each query sits on a doc; its relevant docs are that doc's chunks."""
    rng = np.random.default_rng(seed)
    k, per, dim = 6, 30, 16
    centers = rng.normal(size=(k, dim))
    X = np.concatenate([c + 0.3 * rng.normal(size=(per, dim)) for c in centers]).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = np.repeat(np.arange(k), per)
    C = np.stack([X[labels == c].mean(0) for c in range(k)])
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    ids = [f"d{i // 2}#{i % 2}" for i in range(len(X))]  # two chunks per document
    routing = RoutingIndex(C, ids, X, labels)
    picks = rng.choice(len(X), 12, replace=False)
    Q = X[picks] + 0.05 * rng.normal(size=(12, dim)).astype(np.float32)
    qids = [f"q{i}" for i in range(12)]
    qrels = {q: {f"d{p // 2}": 1} for q, p in zip(qids, picks, strict=True)}
    return routing, Q, qids, qrels


def test_retrieval_routed_vs_exact() -> None:
    routing, Q, qids, qrels = _toy_routing()
    qrels["q0"] = {"nothing-relevant": 0}  # skipped: no relevant doc
    r = retrieval_scores(routing, Q, qids, qrels, n_probe=1, cutoffs=(1, 10))
    assert r.n_queries == 11 and r.route == "n_probe=1"
    assert r.exact["recall@1"] == pytest.approx(1.0)  # each query sits on its document
    assert r.exact["ndcg@10"] == pytest.approx(1.0)
    curve = {int(c["n_probe"]): c for c in r.curve}
    assert sorted(curve) == list(range(1, 7))
    assert curve[6]["overlap@10"] == pytest.approx(1.0) and curve[6]["searched"] == pytest.approx(1.0)
    assert curve[6]["ndcg@10"] == pytest.approx(r.exact["ndcg@10"])
    assert all(curve[p]["overlap@10"] <= curve[p + 1]["overlap@10"] + 1e-12 for p in range(1, 6))
    assert r.routed["n_probe"] == 1.0 and r.routed["searched"] == pytest.approx(curve[1]["searched"])
    assert r.routed["ndcg@10"] <= r.exact["ndcg@10"] + 1e-12
    by_gap = retrieval_scores(routing, Q, qids, qrels, gap=10.0, probes=[1])
    assert by_gap.routed["n_probe"] == 6.0 and by_gap.routed["ndcg@10"] == pytest.approx(r.exact["ndcg@10"])


def test_retrieval_bad_input() -> None:
    routing, Q, qids, qrels = _toy_routing()
    with pytest.raises(InvalidInputError, match="exactly one"):
        retrieval_scores(routing, Q, qids, qrels)
    with pytest.raises(InvalidInputError, match="none of the 12 queries"):
        retrieval_scores(routing, Q, qids, {"other": {"d1": 1}}, n_probe=1)
    with pytest.raises(InvalidInputError, match="query_vectors has shape"):
        retrieval_scores(routing, Q[:3], qids, qrels, n_probe=1)


def test_load_queries_and_qrels(tmp_path: Path) -> None:
    q = tmp_path / "q.jsonl"
    q.write_text('{"_id": "1", "text": "first"}\n\n{"id": 2, "text": "second"}\n')
    assert load_queries(q) == {"1": "first", "2": "second"}
    t = tmp_path / "q.tsv"
    t.write_text("id\ttext\na\thello\n")
    assert load_queries(t) == {"a": "hello"}
    beir = tmp_path / "qrels.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\n1\tdocA\t1\n1\tdocB\t2\n2\tdocC\t0\n")
    assert load_qrels(beir) == {"1": {"docA": 1, "docB": 2}, "2": {"docC": 0}}
    trec = tmp_path / "qrels.txt"
    trec.write_text("1 0 docA 1\n2 0 docB 3\n")
    assert load_qrels(trec) == {"1": {"docA": 1}, "2": {"docB": 3}}


@pytest.mark.parametrize(
    ("name", "content", "loader", "match"),
    [
        ("missing.jsonl", None, load_queries, "does not exist"),
        ("q.jsonl", "{broken\n", load_queries, "q.jsonl:1 is not valid JSON"),
        ("q.jsonl", '{"id": 1}\n', load_queries, 'needs an "id" and a "text"'),
        ("q.txt", "x", load_queries, "must be .jsonl, .tsv or .csv"),
        ("q.tsv", "qid\tquery\n1\tx\n", load_queries, "needs an 'id' and a 'text' column"),
        ("r.tsv", "", load_qrels, "is empty"),
        ("r.tsv", "query_id\tdoc_id\tscore\n1\td\thigh\n", load_qrels, "r.tsv:2 is not 'query_id, doc_id, score'"),
        ("r.txt", "1 docA 1\n", load_qrels, "TREC 'qid 0 docid rel'"),
        ("r.txt", "1 0 docA x\n", load_qrels, "relevance 'x' is not a number"),
    ],
)
def test_loader_errors(tmp_path: Path, name: str, content: str | None, loader, match: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidInputError, match=match):
        loader(path)


def test_plots_write_pngs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from cluster_rag.clustering.choose_k import KScore, KSweep
    from cluster_rag.plots import plot_choose_k, plot_sizes

    scores = tuple(KScore(k, 100.0 / k, 0.1 + 0.01 * k, 2.0 - 0.1 * k, 50.0 - k, 0.1) for k in range(2, 9))
    sweep = KSweep(scores, knee=4, best_silhouette=8, best_davies_bouldin=8, best_calinski_harabasz=2,
                   recommended=6, n_sample=100, n_silhouette=100)  # fmt: skip
    out = plot_choose_k(sweep, tmp_path / "sub" / "k.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sizes = plot_sizes([5, 40, 12, 0], tmp_path / "sizes.png")
    assert sizes.stat().st_size > 1000
    with pytest.raises(InvalidInputError, match="must end in .png"):
        plot_sizes([1, 2], tmp_path / "sizes.jpg")
    with pytest.raises(InvalidInputError, match="no cluster sizes"):
        plot_sizes([], tmp_path / "empty.png")


def test_plots_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cluster_rag.plots import plot_sizes

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install "cluster-rag\[plot\]"'):
        plot_sizes([1, 2], tmp_path / "x.png")
