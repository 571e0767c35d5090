"""Explorer latency: the HTTP API against the Python API for the same calls.

``python -m bench web [--quick]`` prints a markdown table and writes ``bench/results/web.md``.

The explorer (``cluster_rag.web``, FastAPI + uvicorn) runs in its own process on 127.0.0.1,
as ``cluster-rag serve`` runs it, over an index folder; this process opens the same folder
with the Python API and times the same work both ways, interleaved call by call so load
on the shared machine hits both alike:

- **topic list**: ``index.topics()`` vs ``GET /api/topics?representatives=0``;
- **topic list + 3 representative texts** (what the page's list and the report show):
  ``index.topics()`` + ``index.get(ids)`` vs ``GET /api/topics``;
- **search, k=10**: ``index.search(q, 10)`` vs ``POST /api/search`` (the same hits plus
  the probed topics); every query is distinct and both embedders run with
  ``cache_size=0``, so each call embeds its query;
- **topic page** (20 members, keyword coverage): ``views.topic_detail`` vs
  ``GET /api/topics/{id}``.

Data: Banking77 (13,083 questions, cached all-MiniLM-L6-v2 embeddings, k=77); ``--quick``:
the shipped 400-row sample (k=20). Threads pinned to 1 in both processes. Reported:
medians (ms) over all calls and the ratio HTTP / Python (target <= 1.5).
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

RESULTS = Path(__file__).resolve().parent / "results" / "web.md"
ROOT = Path(__file__).resolve().parents[1]

SERVER = """
import sys, torch
torch.set_num_threads(1)
from cluster_rag import ClusterIndex, IndexConfig, SentenceTransformerEmbedder
from cluster_rag.web import serve
index = ClusterIndex.open(sys.argv[1], embedder=SentenceTransformerEmbedder(cache_size=0),
                          config=IndexConfig(progress=False), create=False)
serve(index, port=int(sys.argv[2]), quiet=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build(path: Path, quick: bool) -> tuple[list[str], int]:
    """Fill ``path`` with the bench data, fit it; return query texts and k."""
    from cluster_rag import ClusterIndex, IndexConfig, SentenceTransformerEmbedder

    config = IndexConfig(progress=False)
    if quick:
        from cluster_rag.testing import sample_rows

        rows = sample_rows()
        index = ClusterIndex.open(path, embedder=SentenceTransformerEmbedder(), config=config)
        index.add_texts([r["text"] for r in rows], ids=[r["id"] for r in rows])
        index.fit(k=20)
        labels = sorted({r["label"] for r in rows})
        return [lbl.replace("_", " ") for lbl in labels], 20
    from bench.datasets import banking77
    from bench.embed_cache import cached_embeddings

    data = banking77()
    vectors = cached_embeddings(data.texts, progress=True)
    index = ClusterIndex.open(path, embedder=SentenceTransformerEmbedder(), config=config)
    index.add_embeddings(data.texts, vectors, ids=data.ids)
    index.fit(k=77)
    labels = sorted(set(data.labels))
    return [lbl.replace("_", " ") for lbl in labels], 77


def _time(fn: Callable[[int], Any], arg: int) -> float:
    start = time.perf_counter()
    fn(arg)
    return (time.perf_counter() - start) * 1000.0


def _md(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in r) + " |" for r in rows])


def main(quick: bool = False) -> str:
    import httpx
    import torch

    from cluster_rag import ClusterIndex, IndexConfig, SentenceTransformerEmbedder
    from cluster_rag.testing import serve
    from cluster_rag.web import views

    torch.set_num_threads(1)
    reps = 15 if quick else 40
    workdir = Path(tempfile.mkdtemp(prefix="bench-web-"))
    try:
        t0 = time.perf_counter()
        queries, k = _build(workdir / "kb", quick)
        build_s = time.perf_counter() - t0
        index = ClusterIndex.open(
            workdir / "kb",
            embedder=SentenceTransformerEmbedder(cache_size=0),
            config=IndexConfig(progress=False),
            create=False,
        )
        index.embed_query("warm up")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-c", SERVER, str(workdir / "kb"), str(port)]
        with serve(cmd, f"{url}/api/info", workdir / "server.log", timeout=120, env=env), httpx.Client(
            base_url=url, timeout=60
        ) as http:
            topics = index.topics()
            biggest = max(topics, key=lambda t: t.size).id

            def py_list_texts() -> None:
                ts = index.topics()
                index.get([c for t in ts for c in t.representative_ids[:3]])

            cases: list[tuple[str, Callable[[int], Any], Callable[[int], Any]]] = [
                ("topic list", lambda i: index.topics(), lambda i: http.get("/api/topics?representatives=0")),
                (
                    "topic list + 3 representative texts",
                    lambda i: py_list_texts(),
                    lambda i: http.get("/api/topics"),
                ),
                (
                    "search, k=10 (+ probed topics over HTTP)",
                    lambda i: index.search(queries[i % len(queries)] + f" {i}", 10),
                    lambda i: http.post(
                        "/api/search", json={"query": queries[i % len(queries)] + f" {i}", "k": 10}
                    ).raise_for_status(),
                ),
                (
                    "topic page (20 members)",
                    lambda i: views.topic_detail(index, biggest, limit=20),
                    lambda i: http.get(f"/api/topics/{biggest}?limit=20").raise_for_status(),
                ),
            ]
            rows = []
            for name, py, web in cases:
                for i in range(3):  # warm both sides
                    py(i)
                    web(i)
                py_ms: list[float] = []
                web_ms: list[float] = []
                for i in range(reps):  # alternate who goes first
                    if i % 2:
                        py_ms.append(_time(py, 1000 + i))
                        web_ms.append(_time(web, 2000 + i))
                    else:
                        web_ms.append(_time(web, 2000 + i))
                        py_ms.append(_time(py, 1000 + i))
                p, w = statistics.median(py_ms), statistics.median(web_ms)
                rows.append([name, reps, f"{p:.2f}", f"{w:.2f}", f"{w - p:+.2f}", f"{w / p:.2f}x"])
        load = os.getloadavg()[0]
        data = "the shipped 400-row sample, k=20" if quick else f"Banking77, {len(index)} chunks, k={k}"
        headers = ["call", "calls", "Python API (ms)", "HTTP API (ms)", "HTTP - Python (ms)", "ratio"]
        table = _md(headers, rows)
        command = "python -m bench web" + (" --quick" if quick else "")
        text = (
            f"# Explorer latency: HTTP API vs Python API\n\n`{command}`; "
            f"{data}; index built in {build_s:.0f} s; medians of {reps} interleaved calls each, threads "
            f"pinned to 1, uvicorn in its own process on 127.0.0.1, httpx keep-alive client; load average "
            f"{load:.1f} on {os.cpu_count()} CPUs at the end (a loaded machine adds scheduling delay to "
            f"every HTTP round trip).\n\n{table}\n"
        )
        print(text)
        if not quick:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(text, encoding="utf-8")
        return text
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
