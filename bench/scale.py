"""Scale: cold open + first search, refit writes and fit memory at 100k-200k synthetic chunks.

``python -m bench scale`` (200k) or ``--quick`` (100k). One table per size, every
figure side by side with its baseline measured in the same run:

- cold start: a new process opens the index and runs one search, (a) with the
  version's memory-mapped snapshot, (b) without it (vectors read from Chroma by id:
  what a client without the store's folder pays), (c) the old loader (every vector
  and metadata read from Chroma), against (d) plain Chroma: a new process opening the
  same collection and running one ``query``;
- refit write: storing the version's assignment once (ids in ``NAME__meta`` + the
  ``.npy`` snapshot) against the old per-chunk ``cr_v<N>`` metadata rewrite, same ids;
- ``fit()`` in a new process: total time, peak RSS against the raw vector bytes, and
  the k-means alone (the engine ``fit()`` uses) against raw ``faiss.Kmeans`` with the
  same k and iterations;
- steady search p50 and recall@10 against exact, against plain Chroma's ``query``.

Threads are pinned to one (:func:`bench.common.pin_threads`) in every process; the
machine is shared, so the load average is printed with each table.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import md_table, pin_threads
from bench.core import synthetic_blobs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODEL = "synthetic-384"

#: run in a child process: ``python -c CHILD mode path [args]``; prints one JSON line
CHILD = r"""
import json, os, resource, sys, time
os.environ["ANONYMIZED_TELEMETRY"] = "False"
sys.path.insert(0, sys.argv[3])
from bench.common import pin_threads
pin_threads(1)
import numpy as np
mode, path = sys.argv[1], sys.argv[2]

def rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

q = np.load(os.path.join(path, "queries.npy"))[0]
out = {}
if mode == "plain":
    import chromadb
    from chromadb.config import Settings
    t0 = time.perf_counter()
    settings = Settings(anonymized_telemetry=False)
    client = chromadb.PersistentClient(path=os.path.join(path, "kb"), settings=settings)
    col = client.get_collection("bench")
    res = col.query(query_embeddings=[q], n_results=10, include=["documents", "metadatas", "distances"])
    out["s"] = time.perf_counter() - t0
    out["hits"] = len(res["ids"][0])
elif mode in ("cr", "legacy"):
    import chromadb  # imported before the clock starts, as in "plain"
    from bench.scale import Named
    from cluster_rag import ClusterIndex, IndexConfig
    t0 = time.perf_counter()
    index = ClusterIndex.open(os.path.join(path, "kb"), embedder=Named(), create=False,
                              config=IndexConfig(progress=False, collection="bench"))
    if mode == "legacy":  # what the old loader read: every vector and metadata
        ids, vectors, metas = index.store.load_all()
        hits = [0] * 10
    else:
        hits = index.search_by_vector(q, k=10)
    out["s"] = time.perf_counter() - t0
    out["hits"] = len(hits)
elif mode == "splain":
    import chromadb
    url = sys.argv[4]
    t0 = time.perf_counter()
    client = chromadb.HttpClient(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
    col = client.get_collection("bench")
    res = col.query(query_embeddings=[q], n_results=10, include=["documents", "metadatas", "distances"])
    out["s"] = time.perf_counter() - t0
    out["hits"] = len(res["ids"][0])
elif mode == "scr":
    import chromadb
    from bench.scale import Named
    from cluster_rag import ClusterIndex, IndexConfig
    t0 = time.perf_counter()
    index = ClusterIndex.connect(sys.argv[4], embedder=Named(), create=False,
                                 config=IndexConfig(progress=False, collection="bench"))
    hits = index.search_by_vector(q, k=10)
    out["s"] = time.perf_counter() - t0
    out["hits"] = len(hits)
    out["backend"] = type(index.model.backend).__name__
elif mode == "ef":  # persist Chroma's HNSW ef_search (a loaded index keeps its own: new processes use it)
    import chromadb
    client = chromadb.PersistentClient(path=os.path.join(path, "kb"))
    client.get_collection("bench").modify(configuration={"hnsw": {"ef_search": int(sys.argv[4])}})
elif mode == "oppoint":  # plain Chroma at the ef_search in force, cluster-rag at n_probe, same process
    import chromadb
    from bench.scale import Named, operating_point
    from cluster_rag import ClusterIndex, IndexConfig
    index = ClusterIndex.open(os.path.join(path, "kb"), embedder=Named(), create=False,
                              config=IndexConfig(progress=False, collection="bench"))
    col = chromadb.PersistentClient(path=os.path.join(path, "kb")).get_collection("bench")
    out.update(operating_point(index, col, os.path.join(path), int(sys.argv[4]), sys.argv[5] == "time"))
elif mode == "fit":
    from bench.scale import Named
    from cluster_rag import ClusterIndex, IndexConfig
    index = ClusterIndex.open(os.path.join(path, "kb"), embedder=Named(), create=False,
                              config=IndexConfig(progress=False, collection="bench"))
    base = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    info = index.fit()
    out["s"], out["cpu"] = time.perf_counter() - t0, time.process_time() - c0
    out["k"], out["engine"], out["rss_before"] = info.k, info.engine, base
elif mode == "kmeans":
    import faiss
    from cluster_rag.clustering import SphericalKMeans
    data = np.load(os.path.join(path, "data.npy"))
    k = int(sys.argv[4])

    def ours():
        SphericalKMeans(k, engine="faiss", random_state=0).fit(data)

    def raw():
        km = faiss.Kmeans(data.shape[1], k, niter=25, spherical=True, seed=0, max_points_per_centroid=100_000)
        km.train(data)

    # ABBA order, medians: on shared cores the first run of a process was measured slower than
    # the second by more than the engines differ (1M, 25 FAISS iterations each: 170 s vs 124 s CPU).
    # CPU seconds too (process_time): wall time on 2 shared cores includes waiting for the other jobs
    times: dict[str, list[float]] = {"ours": [], "faiss": [], "ours_cpu": [], "faiss_cpu": []}
    for name, fn in (("faiss", raw), ("ours", ours), ("ours", ours), ("faiss", raw)):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times[name].append(time.perf_counter() - t0)
        times[name + "_cpu"].append(time.process_time() - c0)
    for name, got in times.items():
        out[name] = float(np.median(got))
out["rss"], out["peak"] = rss_mb(), peak_mb()
print("RESULT " + json.dumps(out), flush=True)
"""


class Named:
    """An embedder that only names the synthetic vectors (the bench adds vectors, never texts)."""

    name = MODEL
    dimension = 384

    def embed(self, texts: Any, *, progress: bool = False) -> np.ndarray:
        raise RuntimeError("the scale bench adds vectors only")


def _child(mode: str, path: Path, *extra: str) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), str(ROOT), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"child {mode} failed: {proc.stderr[-2000:]}")


def _forget_clients() -> None:
    """Drop chromadb's per-path client cache (embedded Chroma is one process per folder)."""
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()


def _progress(line: str) -> None:
    """One progress line on stderr (a long run shows how far it got)."""
    print(f"[scale {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


#: Above this many rows the "old way" rows (per-chunk metadata rewrite, the loader that read every
#: vector and metadata) are not measured: each takes minutes and only shows what was replaced.
OLD_WAY_MAX_ROWS = 500_000


def build_store(n: int, folder: Path, *, server_index: bool = False) -> float:
    """Write ``n`` synthetic rows (``synthetic_blobs(n, default_k(n), n_queries=100)``) into
    ``folder/kb`` (collection ``bench``) with ``data.npy`` and ``queries.npy`` beside it; returns
    the seconds the writes took. Rows are written with ``add_embeddings`` in batches of 20,000, as
    a user's ingest writes them (content hash and write token per row, each batch's vectors kept in
    its add log until the first fit: :mod:`cluster_rag.store.vector_log`); the add throughput
    table measures that call against raw Chroma on its own.
    ``server_index``: the collection gets the HNSW settings cluster-rag gives a collection it
    creates on a server (:func:`~cluster_rag.store.chroma_store.server_hnsw`), for a folder a
    ``chroma run`` server will serve."""
    from cluster_rag import ClusterIndex, IndexConfig
    from cluster_rag.clustering import default_k
    from cluster_rag.connection import persistent_client
    from cluster_rag.store import ChromaStore

    data, queries = synthetic_blobs(n, default_k(n), n_queries=100)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "queries.npy", queries)
    np.save(folder / "data.npy", data)
    if server_index:
        client = persistent_client(folder / "kb", create=True)
        ChromaStore(client, "bench", model_name=MODEL, dimension=data.shape[1], server_index=True)
        del client
    index = ClusterIndex.open(
        folder / "kb", embedder=Named(), config=IndexConfig(progress=False, collection="bench")
    )
    ids = [f"c{i:07d}" for i in range(n)]
    t0 = time.perf_counter()
    step = 20_000
    for s in range(0, n, step):
        texts = [f"chunk {i} topic {i % 97}" for i in range(s, min(n, s + step))]
        index.add_embeddings(texts, data[s : s + step], ids=ids[s : s + step])
    t_add = time.perf_counter() - t0
    del index
    _forget_clients()
    (folder / "built.json").write_text(json.dumps({"n": n, "add_s": t_add}))
    return t_add


def run_size(n: int, *, repeats: int = 3, reuse: Path | None = None) -> str:
    """Build (or ``reuse`` a folder :func:`build_store` wrote and nothing has fitted yet),
    fit and measure one size; returns its markdown section."""
    from cluster_rag import ClusterIndex, IndexConfig
    from cluster_rag.clustering import default_k
    from cluster_rag.store import snapshots

    k = default_k(n)
    tmp = reuse if reuse is not None else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        if reuse is None:
            t_add = build_store(n, tmp)
        else:
            t_add = float(json.loads((tmp / "built.json").read_text())["add_s"])
        data, queries = np.load(tmp / "data.npy"), np.load(tmp / "queries.npy")
        assert len(data) == n, f"{tmp} holds {len(data)} rows, not {n}"
        cfg = IndexConfig(progress=False, collection="bench")
        ids = [f"c{i:07d}" for i in range(n)]
        _forget_clients()  # the children write the folder; never reuse a cached embedded client
        old_way = n <= OLD_WAY_MAX_ROWS

        fit = _child("fit", tmp)
        _progress(f"{n}: fit {fit}")
        refit = _child("fit", tmp) if os.environ.get("BENCH_SCALE_REFIT", "1") != "0" else None
        _progress(f"{n}: refit {refit}")
        km = _child("kmeans", tmp, str(k))
        _progress(f"{n}: k-means {km}")

        _forget_clients()
        # refit write: stored once vs the old per-chunk metadata rewrite (same ids, labels)
        index = ClusterIndex.open(tmp / "kb", embedder=Named(), config=cfg, create=False)
        store = index.store
        model = index.model
        f_ids, f_labels = model.assignments()
        order, offsets = snapshots.sort_by_cluster(f_labels, model.k)
        sorted_ids = [str(f_ids[i]) for i in order]
        t0 = time.perf_counter()
        snapshots.save_assignment(store, 9999, sorted_ids, offsets)
        snapshots.write_snapshot(tmp / "probe.npy", data[: len(order)])
        t_new = time.perf_counter() - t0
        snapshots.delete_assignment(store, 9999)
        (tmp / "probe.npy").unlink()
        t_old = math.nan
        if old_way:
            t0 = time.perf_counter()
            store.write_assignments(9999, [str(x) for x in f_ids], f_labels)
            t_old = time.perf_counter() - t0
            store.drop_assignments(9999)

        # steady search, recall@10 vs exact
        exact = _exact_top10(data, queries)
        col = store.chunks
        col.query(query_embeddings=[queries[0]], n_results=10)
        lat_cr, lat_plain, rec_cr, rec_plain = _steady(index, col, queries, exact, ids)
        p50s = statistics.median(lat_cr) * 1e3, statistics.median(lat_plain) * 1e3
        _progress(f"{n}: steady p50 {p50s[0]:.2f} vs {p50s[1]:.2f} ms (plain)")
        op_probe = choose_n_probe(index, queries, exact, ids)
        np.save(tmp / "exact.npy", exact)
        del index, store, model, col
        _forget_clients()

        op = _operating_point_children(tmp, op_probe)
        _progress(f"{n}: at recall >= {RECALL_TARGET}: {op}")

        # cold starts, interleaved
        snap = tmp / "kb" / "cluster_rag"
        cold: dict[str, list[dict[str, Any]]] = {"plain": [], "cr": [], "nosnap": [], "legacy": []}
        for _ in range(repeats):
            cold["plain"].append(_child("plain", tmp))
            cold["cr"].append(_child("cr", tmp))
            snap.rename(tmp / "snap-away")
            cold["nosnap"].append(_child("cr", tmp))
            (tmp / "snap-away").rename(snap)
            if old_way:
                cold["legacy"].append(_child("legacy", tmp))
        nan = {"s": math.nan, "rss": math.nan}
        med = {m: statistics.median(r["s"] for r in runs or [nan]) for m, runs in cold.items()}
        rss = {m: statistics.median(r["rss"] for r in runs or [nan]) for m, runs in cold.items()}
        raw_mb = data.nbytes / 2**20
        p50_cr, p50_plain = statistics.median(lat_cr) * 1e3, statistics.median(lat_plain) * 1e3
        rows = [
            [
                "cold: open + first search (snapshot, mmap)",
                f"{med['cr']:.2f} s",
                f"{med['plain']:.2f} s",
                f"{med['cr'] / med['plain']:.2f}x",
            ],
            [
                "cold: open + first search (no snapshot: vectors by id)",
                f"{med['nosnap']:.2f} s",
                f"{med['plain']:.2f} s",
                f"{med['nosnap'] / med['plain']:.2f}x",
            ],
            [
                "cold: old loader (open + every vector and metadata)",
                f"{med['legacy']:.2f} s" if old_way else "not measured at this size",
                f"{med['plain']:.2f} s",
                f"{med['legacy'] / med['plain']:.2f}x" if old_way else "",
            ],
            [
                "RSS after open + first search (snapshot)",
                f"{rss['cr']:.0f} MB",
                f"{rss['plain']:.0f} MB",
                f"{rss['cr'] / rss['plain']:.2f}x",
            ],
            [
                "RSS after open + first search (no snapshot)",
                f"{rss['nosnap']:.0f} MB",
                f"{rss['plain']:.0f} MB",
                f"{rss['nosnap'] / rss['plain']:.2f}x",
            ],
            [
                "refit write: assignment stored once vs per-chunk `cr_v<N>` rewrite",
                f"{t_new:.2f} s",
                f"{t_old:.2f} s" if old_way else "not measured at this size",
                f"{t_new / t_old:.3f}x" if old_way else "",
            ],
            [
                f"fit() total (k={fit['k']}, engine {fit['engine']}) vs its k-means alone",
                f"{fit['s']:.1f} s",
                f"{km['ours']:.1f} s",
                f"{fit['s'] / km['ours']:.2f}x",
            ],
            [
                "refit() total (same data, vectors from the snapshot) vs the k-means alone",
                f"{refit['s']:.1f} s" if refit else "not measured",
                f"{km['ours']:.1f} s",
                f"{refit['s'] / km['ours']:.2f}x" if refit else "",
            ],
            [
                "refit() peak RSS above the opened process vs raw vector bytes",
                f"{refit['peak'] - refit['rss_before']:.0f} MB" if refit else "not measured",
                f"{raw_mb:.0f} MB",
                f"{(refit['peak'] - refit['rss_before']) / raw_mb:.2f}x" if refit else "",
            ],
            [
                "k-means (SphericalKMeans faiss) vs raw faiss.Kmeans (same k, 25 iter)",
                f"{km['ours']:.1f} s",
                f"{km['faiss']:.1f} s",
                f"{km['ours'] / km['faiss']:.2f}x",
            ],
            [
                "fit() peak RSS above the opened process vs raw vector bytes",
                f"{fit['peak'] - fit['rss_before']:.0f} MB",
                f"{raw_mb:.0f} MB",
                f"{(fit['peak'] - fit['rss_before']) / raw_mb:.2f}x",
            ],
            [
                "fit() peak RSS vs raw vector bytes",
                f"{fit['peak']:.0f} MB",
                f"{raw_mb:.0f} MB",
                f"{fit['peak'] / raw_mb:.2f}x",
            ],
            [
                "steady search p50 (k=10, text fetched)",
                f"{p50_cr:.2f} ms",
                f"{p50_plain:.2f} ms",
                f"{p50_cr / p50_plain:.2f}x",
            ],
            ["recall@10 vs exact", f"{np.mean(rec_cr):.3f}", f"{np.mean(rec_plain):.3f}", ""],
            [
                f"steady search p50 at recall@10 >= {RECALL_TARGET} (cluster-rag n_probe={op['n_probe']}, "
                f"Chroma ef_search={op['ef']}; chosen on {op['tuned']} queries, timed on "
                f"{op['timed']} others)",
                f"{op['p50_cr']:.2f} ms",
                f"{op['p50_plain']:.2f} ms",
                f"{op['p50_cr'] / op['p50_plain']:.2f}x",
            ],
            ["recall@10 vs exact at that point", f"{op['rec_cr']:.3f}", f"{op['rec_plain']:.3f}", ""],
        ]
        table = md_table([f"at {n} chunks, d=384", "cluster-rag", "baseline", "ratio"], rows)
        note = (
            f"Baselines: plain Chroma (same collection, new process, `query`) for cold start, RSS and "
            f"search; the old per-chunk metadata write for refit; the k-means alone / raw FAISS / raw "
            f"vector bytes for fit. Medians of {repeats} cold starts; writing the {n} rows took "
            f"{t_add:.0f} s. Load average during the run (1/5/15 min): {_load()} on 2 shared cores, "
            "threads pinned to 1."
        )
        if "ours_cpu" in km and "cpu" in fit:  # the same ratios in CPU seconds (less load-dependent)
            refit_cpu = ""
            if refit:
                refit_cpu = f", refit {refit['cpu']:.1f} s ({refit['cpu'] / km['ours_cpu']:.2f}x)"
            note += (
                f" CPU seconds (process_time): k-means {km['ours_cpu']:.1f} s vs raw FAISS "
                f"{km['faiss_cpu']:.1f} s ({km['ours_cpu'] / km['faiss_cpu']:.2f}x); fit {fit['cpu']:.1f} s "
                f"({fit['cpu'] / km['ours_cpu']:.2f}x the k-means){refit_cpu}."
            )
        return f"### {n:,} chunks\n\n{table}\n\n{note}\n"
    finally:
        if reuse is None:
            shutil.rmtree(tmp, ignore_errors=True)


def run_server(n: int, *, repeats: int = 3, scifact: bool = True, reuse: Path | None = None) -> str:
    """The same data behind a ``chroma run`` server on 127.0.0.1: cold connect + first search and
    steady search of the Chroma-side backend against plain ``HttpClient`` queries, at Chroma's default
    HNSW ``ef_search`` (100) and at the ``SERVER_EF_SEARCH`` a collection cluster-rag creates on a
    server gets (the server is restarted between the two: a loaded index keeps its own).

    The rows are written by an embedded client into the folder the server then serves (the same
    files; writing 200k rows over HTTP took 532 s); ``fit()`` runs through the server unless
    ``reuse`` names a folder :func:`build_store` wrote (kept afterwards; a version already fitted
    there is used as it is: at 1M the build takes 25-45 min and a fit through the server ~6)."""
    import socket

    import chromadb

    from cluster_rag import ClusterIndex, IndexConfig
    from cluster_rag.store.chroma_store import SERVER_EF_SEARCH
    from cluster_rag.testing import serve

    tmp = reuse if reuse is not None else Path(tempfile.mkdtemp(prefix="bench-scale-server-"))
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    cfg = IndexConfig(progress=False, collection="bench")
    try:
        if reuse is None:
            t_add = build_store(n, tmp, server_index=True)
        else:
            t_add = float(json.loads((tmp / "built.json").read_text())["add_s"])
        data, queries = np.load(tmp / "data.npy"), np.load(tmp / "queries.npy")
        assert len(data) == n, f"{tmp} holds {len(data)} rows, not {n}"
        exact = _exact_top10(data, queries)
        ids = [f"c{i:07d}" for i in range(n)]
        phases: dict[int, dict[str, Any]] = {}
        t_fit = math.nan
        sf_rows: list[list[str]] = []
        backend = ""
        for ef in (100, SERVER_EF_SEARCH):
            client = chromadb.PersistentClient(path=str(tmp / "kb"))
            client.get_collection("bench").modify(configuration={"hnsw": {"ef_search": ef}})
            del client
            _forget_clients()
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            url = f"http://127.0.0.1:{port}"
            cmd = ["chroma", "run", "--path", str(tmp / "kb"), "--host", "127.0.0.1", "--port", str(port)]
            with serve(cmd, f"{url}/api/v2/heartbeat", tmp / f"server-{ef}.log", timeout=120, env=env):
                index = ClusterIndex.connect(url, embedder=Named(), config=cfg)
                if not index.is_fitted:
                    t0 = time.perf_counter()
                    index.fit()
                    t_fit = time.perf_counter() - t0
                col = index.store.chunks
                lat_cr, lat_plain, rec_cr, rec_plain = _steady(index, col, queries, exact, ids)
                backend = type(index.model.backend).__name__
                del index, col
                phase: dict[str, Any] = {
                    "p50_cr": statistics.median(lat_cr) * 1e3,
                    "p50_plain": statistics.median(lat_plain) * 1e3,
                    "rec_cr": float(np.mean(rec_cr)),
                    "rec_plain": float(np.mean(rec_plain)),
                }
                if ef == SERVER_EF_SEARCH:
                    cold: dict[str, list[dict[str, Any]]] = {"splain": [], "scr": []}
                    for _ in range(repeats):
                        for mode in cold:
                            cold[mode].append(_child(mode, tmp, url))
                    phase["cold"] = {m: statistics.median(r["s"] for r in runs) for m, runs in cold.items()}
                    phase["rss"] = {m: statistics.median(r["rss"] for r in runs) for m, runs in cold.items()}
                    sf_rows = run_scifact(url) if scifact else []
                phases[ef] = phase
                _progress(f"server {n} ef_search={ef}: {phase}")
        top = phases[SERVER_EF_SEARCH]
        med, rss = top["cold"], top["rss"]
        rows = [
            [
                "cold: connect + first search",
                f"{med['scr']:.2f} s",
                f"{med['splain']:.2f} s",
                f"{med['scr'] / med['splain']:.2f}x",
            ],
            [
                "client RSS after connect + first search",
                f"{rss['scr']:.0f} MB",
                f"{rss['splain']:.0f} MB",
                f"{rss['scr'] / rss['splain']:.2f}x",
            ],
        ]
        for ef, phase in phases.items():
            what = "as cluster-rag creates it" if ef == SERVER_EF_SEARCH else "Chroma's default"
            rows += [
                [
                    f"steady search p50 (k=10, text fetched), ef_search={ef} ({what})",
                    f"{phase['p50_cr']:.1f} ms",
                    f"{phase['p50_plain']:.1f} ms",
                    f"{phase['p50_cr'] / phase['p50_plain']:.2f}x",
                ],
                [f"recall@10 vs exact, ef_search={ef}", f"{phase['rec_cr']:.3f}", f"{phase['rec_plain']:.3f}", ""],
            ]
        table = md_table(
            [f"server, {n} chunks, d=384", f"cluster-rag ({backend})", "plain HttpClient", "ratio"], rows
        )
        fitted = (
            f"fit() through the server {t_fit:.0f} s (reads every vector over HTTP once)"
            if not math.isnan(t_fit)
            else "the version fitted earlier in the reused folder"
        )
        note = (
            f"`chroma run` on 127.0.0.1 over the folder an embedded client wrote ({t_add:.0f} s); both "
            f"clients query the same collection; the server is restarted when ef_search changes. "
            f"{fitted}. Medians of {repeats} "
            f"cold starts (new processes, chromadb imported before the clock starts). Load average "
            f"(1/5/15 min): {_load()} on 2 shared cores."
        )
        out = f"### {n:,} chunks behind a Chroma server\n\n{table}\n\n{note}\n"
        if sf_rows:
            out += f"\n{md_table(SCIFACT_HEADERS, sf_rows)}\n"
        return out
    finally:
        if reuse is None:
            shutil.rmtree(tmp, ignore_errors=True)


def _exact_top10(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``(q, 10)`` rows of the exact top 10 by cosine, best first (scored in blocks of rows)."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    step = 100_000
    for start in range(0, len(data), step):
        s = queries @ data[start : start + step].T
        top = np.argpartition(-s, 9, axis=1)[:, :10]
        best_s = np.concatenate([best_s, np.take_along_axis(s, top, axis=1)], axis=1)
        best_i = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :10]
        best_s, best_i = np.take_along_axis(best_s, keep, axis=1), np.take_along_axis(best_i, keep, axis=1)
    return best_i


def run_add(n: int = 20_000, *, rounds: int = 2) -> str:
    """``add_embeddings`` (fresh, unfitted index) against raw ``collection.add`` of the same rows
    (ids, texts, vectors; batches of 5,000) into a fresh collection, and against the same raw add
    with the two per-row keys cluster-rag stores (content hash, write token); rounds rotate the
    order."""
    from cluster_rag import ClusterIndex, IndexConfig
    from cluster_rag.clustering import default_k
    from cluster_rag.embedding import content_hash

    data, _ = synthetic_blobs(n, default_k(n), n_queries=1)
    ids = [f"a{i:07d}" for i in range(n)]
    texts = [f"chunk {i} topic {i % 97}" for i in range(n)]
    keys = [{"cr_hash": content_hash(t), "cr_w": "0123456789ab"} for t in texts]
    modes = ["cr", "raw", "rawmeta"]
    rates: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes[r % 3 :] + modes[: r % 3]:
            tmp = Path(tempfile.mkdtemp(prefix="bench-scale-add-"))
            try:
                if mode == "cr":
                    cfg = IndexConfig(progress=False, collection="bench")
                    index = ClusterIndex.open(tmp / "kb", embedder=Named(), config=cfg)
                    t0 = time.perf_counter()
                    index.add_embeddings(texts, data, ids=ids)
                    rates[mode].append(n / (time.perf_counter() - t0))
                    del index
                else:
                    metas = keys if mode == "rawmeta" else None
                    rates[mode].append(n / _raw_add_seconds(tmp, ids, texts, data, metas))
            finally:
                _forget_clients()
                shutil.rmtree(tmp, ignore_errors=True)
    cr, raw, meta = (statistics.median(rates[m]) for m in modes)
    table = md_table(
        [f"add {n} rows (d=384), fresh store", "rows/s (median)", "ratio to raw `collection.add`"],
        [
            ["cluster-rag `add_embeddings`", f"{cr:.0f}", f"{cr / raw:.2f}x"],
            ["raw `collection.add` (ids, texts, vectors)", f"{raw:.0f}", "1.00x"],
            ["raw `collection.add` + cluster-rag's two per-row keys", f"{meta:.0f}", f"{meta / raw:.2f}x"],
        ],
    )
    note = (
        f"Median of {rounds} rounds each, order rotated; every round a fresh folder. cluster-rag vs "
        f"the raw add with the same per-row keys: {cr / meta:.2f}x. Load average (1/5/15 min): {_load()} "
        "on 2 shared cores."
    )
    return f"### add throughput\n\n{table}\n\n{note}\n"


#: Per-row metadata variants :func:`run_metadata_cost` adds to raw ``collection.add`` (row ``i``'s
#: content hash ``h``): what cluster-rag stores now, and the smaller forms it could store.
METADATA_VARIANTS: dict[str, Any] = {
    "`cr_hash` (64 hex) + `cr_w` (12 hex), as stored now": lambda h: {"cr_hash": h, "cr_w": "0a1b2c3d4e5f"},
    "`cr_hash` (64 hex) + `cr_w` as an int": lambda h: {"cr_hash": h, "cr_w": 81985529216486895},
    "`cr_hash` (16 hex) + `cr_w` as an int": lambda h: {"cr_hash": h[:16], "cr_w": 81985529216486895},
    "both as ints": lambda h: {"cr_hash": int(h[:15], 16), "cr_w": 81985529216486895},
    "`cr_w` as an int alone": lambda h: {"cr_w": 81985529216486895},
}


def _raw_add_seconds(
    tmp: Path, ids: list[str], texts: list[str], data: np.ndarray, metas: list[dict[str, Any]] | None
) -> float:
    """Seconds a raw ``collection.add`` of the rows takes (batches of 5,000) into a fresh folder
    ``tmp/kb`` (collection ``bench``, cosine space)."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(tmp / "kb"), settings=Settings(anonymized_telemetry=False))
    col = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
    t0 = time.perf_counter()
    for s in range(0, len(ids), 5000):
        col.add(
            ids=ids[s : s + 5000],
            documents=texts[s : s + 5000],
            embeddings=data[s : s + 5000],
            metadatas=None if metas is None else metas[s : s + 5000],  # type: ignore[arg-type]
        )
    took = time.perf_counter() - t0
    del col, client
    return took


def run_metadata_cost(n: int = 20_000, *, rounds: int = 8) -> str:
    """What per-row metadata costs Chroma's add: raw ``collection.add`` of the same ``n`` rows
    (batches of 5,000, a fresh folder each time) with each :data:`METADATA_VARIANTS` entry against
    the same add without metadata, in rounds that rotate the order; each variant's figure is the
    median of its per-round ratios to the no-metadata add of the same round (the machine's speed
    moves between rounds more than the ratio does)."""

    from cluster_rag.clustering import default_k
    from cluster_rag.embedding import content_hash

    data, _ = synthetic_blobs(n, default_k(n), n_queries=1)
    ids = [f"a{i:07d}" for i in range(n)]
    texts = [f"chunk {i} topic {i % 97}" for i in range(n)]
    hashes = [content_hash(t) for t in texts]
    modes = ["none", *METADATA_VARIANTS]
    rates: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:
            tmp = Path(tempfile.mkdtemp(prefix="bench-scale-meta-"))
            try:
                make = METADATA_VARIANTS.get(mode)
                metas = None if make is None else [make(h) for h in hashes]
                rates[mode].append(n / _raw_add_seconds(tmp, ids, texts, data, metas))
            finally:
                _forget_clients()
                shutil.rmtree(tmp, ignore_errors=True)
    rows = [["none (ids, texts, vectors)", f"{statistics.median(rates['none']):.0f}", "1.00x"]]
    for mode in METADATA_VARIANTS:
        paired = statistics.median(v / b for v, b in zip(rates[mode], rates["none"], strict=True))
        rows.append([mode, f"{statistics.median(rates[mode]):.0f}", f"{paired:.2f}x"])
    table = md_table([f"raw add of {n} rows, per-row metadata", "rows/s (median)", "paired ratio"], rows)
    note = (
        f"{rounds} rounds, order rotated, every add a fresh folder. Load average (1/5/15 min): {_load()} "
        "on 2 shared cores."
    )
    return f"### Per-row metadata cost in Chroma's add\n\n{table}\n\n{note}\n"


def scifact_ndcg(index: Any, D: np.ndarray, Q: np.ndarray, ds: Any) -> tuple[float, float, float]:
    """Routed nDCG@10 (``search_by_vector``, default route), exact nDCG@10 (numpy over every
    abstract) and the routed recall@10 against exact, over the SciFact test questions."""
    from cluster_rag.evaluation import ndcg_at_k

    doc_ids = np.asarray(ds.doc_ids, dtype=object)
    exact = [list(doc_ids[r]) for r in _exact_top10(D, Q)]
    routed = [[h.id for h in index.search_by_vector(q, k=10)] for q in Q]
    nd_r = float(np.mean([ndcg_at_k(r, ds.qrels[q]) for r, q in zip(routed, ds.query_ids, strict=True)]))
    nd_e = float(np.mean([ndcg_at_k(e, ds.qrels[q]) for e, q in zip(exact, ds.query_ids, strict=True)]))
    rec = float(np.mean([len(set(r) & set(e)) / 10 for r, e in zip(routed, exact, strict=True)]))
    return nd_r, nd_e, rec


def run_scifact(url: str | None = None) -> list[list[str]]:
    """SciFact routed vs exact nDCG@10 with the embedded numpy backend over the stored snapshot (a
    reopened folder) and, given a server ``url``, with the Chroma-side backend (``connect``)."""
    from bench.datasets import scifact
    from bench.embed_cache import cached_embeddings
    from cluster_rag import ClusterIndex, IndexConfig, SentenceTransformerEmbedder

    ds = scifact("test")
    D, Q = cached_embeddings(ds.docs, progress=False), cached_embeddings(ds.queries, progress=False)
    emb = SentenceTransformerEmbedder(cache_size=0)  # names the model; never asked to embed here
    cfg = IndexConfig(progress=False, collection="scifact")
    rows: list[list[str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-scifact-"))
    try:
        index = ClusterIndex.open(tmp / "kb", embedder=emb, config=cfg)
        index.add_embeddings(ds.docs, D, ids=ds.doc_ids)
        index.fit()
        del index
        _forget_clients()
        index = ClusterIndex.open(tmp / "kb", embedder=emb, config=cfg, create=False)  # reads the snapshot
        nd_r, nd_e, rec = scifact_ndcg(index, D, Q, ds)
        name = f"embedded ({type(index.model.backend).__name__}, mapped snapshot)"
        rows.append([name, f"{nd_r:.4f}", f"{nd_e:.4f}", f"{nd_r / nd_e:.3f}x", f"{rec:.3f}"])
        del index
        if url is not None:
            index = ClusterIndex.connect(url, embedder=emb, config=cfg)
            index.add_embeddings(ds.docs, D, ids=ds.doc_ids)
            index.fit()
            index = ClusterIndex.connect(url, embedder=emb, config=cfg, create=False)
            nd_r, nd_e, rec = scifact_ndcg(index, D, Q, ds)
            name = f"server ({type(index.model.backend).__name__}, inside Chroma)"
            rows.append([name, f"{nd_r:.4f}", f"{nd_e:.4f}", f"{nd_r / nd_e:.3f}x", f"{rec:.3f}"])
    finally:
        _forget_clients()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


SCIFACT_HEADERS = [
    "SciFact test (5,183 abstracts, 300 questions)",
    "routed nDCG@10",
    "exact nDCG@10",
    "x exact",
    "recall@10 vs exact",
]


def main(quick: bool = False, *, size: int | None = None, store: Path | None = None) -> str:
    """Run the suite; ``size`` (or ``BENCH_SCALE_SIZE``) replaces the default size, ``store`` (or
    ``BENCH_SCALE_STORE``) reuses a folder :func:`build_store` wrote for that size;
    ``BENCH_SCALE_SERVER_SIZE`` sets the server section's rows (default ``min(size // 5, 40_000)``)."""
    pin_threads(1)
    size = size or int(os.environ.get("BENCH_SCALE_SIZE", "0")) or (100_000 if quick else 200_000)
    env_store = os.environ.get("BENCH_SCALE_STORE")
    store = store or (Path(env_store) if env_store else None)
    flag = " --quick" if quick else (f" --size {size}" if size != 200_000 else "")
    parts = [f"## Scale (`python -m bench scale{flag}`)\n"]
    section = run_size(size, reuse=store)
    print(section, flush=True)
    parts.append(section)
    if os.environ.get("BENCH_SCALE_ADD", "1") != "0":
        section = run_add(5_000 if quick else 20_000)
        print(section, flush=True)
        parts.append(section)
    scifact = os.environ.get("BENCH_SCALE_SCIFACT", "1") != "0"
    if os.environ.get("BENCH_SCALE_SERVER", "1") != "0":
        server_size = int(os.environ.get("BENCH_SCALE_SERVER_SIZE", "0")) or min(size // 5, 40_000)
        section = run_server(server_size, scifact=scifact)
        print(section, flush=True)
        parts.append(section)
    elif scifact:
        section = f"### SciFact, embedded\n\n{md_table(SCIFACT_HEADERS, run_scifact(None))}\n"
        print(section, flush=True)
        parts.append(section)
    text = "\n".join(parts)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "scale.quick.md" if quick else ("scale.md" if size == 200_000 else f"scale.{size}.md")
    (RESULTS / name).write_text(text)
    return text


#: The recall@10 at which the operating-point row compares speed (issue 17's target).
RECALL_TARGET = 0.95
#: Fixed probe counts tried for cluster-rag, and HNSW ``ef_search`` values tried for Chroma.
PROBE_GRID = (2, 4, 6, 8, 12, 16, 20, 24, 32, 48, 64, 96, 128)
EF_GRID = (100, 200, 400, 800, 1600, 3200)
#: Chroma's default HNSW ``ef_search`` (what the bench collection is left with).
CHROMA_DEFAULT_EF = 100


def choose_n_probe(index: Any, queries: np.ndarray, exact: np.ndarray, ids: Sequence[str]) -> int:
    """Smallest :data:`PROBE_GRID` ``n_probe`` whose recall@10 vs exact reaches :data:`RECALL_TARGET` on
    the first half of the queries (the operating-point row times the other half)."""
    half = len(queries) // 2

    def recall(n_probe: int) -> float:
        got = [{h.id for h in index.search_by_vector(queries[i], 10, n_probe=n_probe)} for i in range(half)]
        return float(np.mean([len({ids[j] for j in exact[i]} & g) / 10 for i, g in enumerate(got)]))

    k = int(index.model.k)
    return next((p for p in PROBE_GRID if p <= k and recall(p) >= RECALL_TARGET), k)


def operating_point(index: Any, col: Any, folder: str, n_probe: int, timed: bool) -> dict[str, Any]:
    """In a child process (Chroma reads ``ef_search`` when it loads the HNSW index): plain Chroma's
    recall@10 on the first half of the queries at the ``ef_search`` in force; when ``timed``, p50 and
    recall of both systems on the other half, interleaved query by query after one warm pass."""
    queries = np.load(os.path.join(folder, "queries.npy"))
    exact = np.load(os.path.join(folder, "exact.npy"))
    half = len(queries) // 2

    def truth(i: int) -> set[str]:
        return {f"c{j:07d}" for j in exact[i]}

    def plain_ids(q: np.ndarray) -> set[str]:
        res = col.query(query_embeddings=[q], n_results=10, include=["documents", "metadatas"])
        return set(res["ids"][0])

    out: dict[str, Any] = {
        "ef": int(col.configuration["hnsw"]["ef_search"]),
        "tune_plain": float(np.mean([len(truth(i) & plain_ids(queries[i])) / 10 for i in range(half)])),
    }
    if not timed:
        return out
    test = range(half, len(queries))
    for i in test:
        index.search_by_vector(queries[i], 10, n_probe=n_probe), plain_ids(queries[i])
    lat_cr, lat_plain, rec_cr, rec_plain = [], [], [], []
    for i in test:
        t0 = time.perf_counter()
        hits = index.search_by_vector(queries[i], 10, n_probe=n_probe)
        lat_cr.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = plain_ids(queries[i])
        lat_plain.append(time.perf_counter() - t0)
        rec_cr.append(len(truth(i) & {h.id for h in hits}) / 10)
        rec_plain.append(len(truth(i) & got) / 10)
    out.update(
        n_probe=n_probe,
        tuned=half,
        timed=len(test),
        p50_cr=statistics.median(lat_cr) * 1e3,
        p50_plain=statistics.median(lat_plain) * 1e3,
        rec_cr=float(np.mean(rec_cr)),
        rec_plain=float(np.mean(rec_plain)),
    )
    return out


def _operating_point_children(tmp: Path, n_probe: int) -> dict[str, Any]:
    """The smallest :data:`EF_GRID` ``ef_search`` at which plain Chroma reaches :data:`RECALL_TARGET` on
    the tuning half (each tried in a fresh process), then both systems timed there; Chroma's
    ``ef_search`` is restored to its default afterwards."""
    try:
        for ef in EF_GRID:
            _child("ef", tmp, str(ef))
            if _child("oppoint", tmp, str(n_probe), "tune")["tune_plain"] >= RECALL_TARGET:
                break
        return _child("oppoint", tmp, str(n_probe), "time")
    finally:
        _child("ef", tmp, str(CHROMA_DEFAULT_EF))


def _steady(
    index: Any, col: Any, queries: np.ndarray, exact: np.ndarray, ids: Sequence[str]
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Per-query seconds and recall@10 vs exact of ``search_by_vector`` and of plain Chroma ``query``,
    interleaved query by query (which one goes first alternates), after one untimed pass of both over
    every query (steady state: the snapshot pages the queries touch are mapped in, as Chroma's HNSW
    index is loaded at open)."""
    for q in queries:
        index.search_by_vector(q, k=10)
        col.query(query_embeddings=[q], n_results=10, include=["documents", "metadatas", "distances"])
    lat_cr: list[float] = []
    lat_plain: list[float] = []
    rec_cr: list[float] = []
    rec_plain: list[float] = []
    for qi, q in enumerate(queries):
        for first in (qi % 2 == 0, qi % 2 == 1):  # alternate which goes first, query by query
            if first:
                t0 = time.perf_counter()
                hits = index.search_by_vector(q, k=10)
                lat_cr.append(time.perf_counter() - t0)
            else:
                t0 = time.perf_counter()
                res = col.query(
                    query_embeddings=[q], n_results=10, include=["documents", "metadatas", "distances"]
                )
                lat_plain.append(time.perf_counter() - t0)
        truth = {ids[j] for j in exact[qi]}
        rec_cr.append(len(truth & {h.id for h in hits}) / 10)
        rec_plain.append(len(truth & set(res["ids"][0])) / 10)
    return lat_cr, lat_plain, rec_cr, rec_plain


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int, default=None, help="rows (default 200,000; --quick 100,000)")
    parser.add_argument("--store", type=Path, default=None, help="reuse a folder build_store wrote")
    parser.add_argument("--build", type=Path, default=None, help="only write --size rows into this folder")
    parser.add_argument(
        "--server-index", action="store_true", help="--build: the HNSW settings of a server collection"
    )
    args = parser.parse_args()
    if args.build is not None:
        pin_threads(1)
        took = build_store(args.size, args.build, server_index=args.server_index)
        print(f"wrote {args.size} rows in {took:.0f} s")
    else:
        main(quick=args.quick, size=args.size, store=args.store)
