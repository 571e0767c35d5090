"""Clustering quality benchmark: MTEB protocol, cluster-rag's default, auto-k, engines, PCA, SciFact.

``python -m bench quality [--quick]`` prints markdown tables, writes
``bench/results/quality.md`` and PNGs under ``bench/results/``. Every comparison is
measured in the same run, on the same cached embeddings (all-MiniLM-L6-v2).

1. **20 Newsgroups subject lines, MTEB protocol**: ``MiniBatchKMeans(n_clusters=20,
   batch_size=500, n_init="auto")`` + V-measure, 10 seeds on all subjects and 10
   disjoint random tenths (MTEB averages 10 subsets), then cluster-rag's default
   clustering (``SphericalKMeans`` as ``fit`` runs it) on the same data and seeds.
2. **20NG messages (headers stripped) and Banking77**: V-measure / NMI / ARI of the
   MTEB-style baseline vs cluster-rag (default, and its parts: no smoothing).
3. **auto-k**: the sweep behind ``fit(k="auto")`` on each set; V-measure at the k each
   criterion picks vs at the true k.
4. **Engines** on the largest set: time and V-measure of sklearn KMeans, MiniBatch
   and FAISS spherical (smoothing off, to time the engines alone), and the default.
5. **PCA** (``reduce_dim``): V-measure and fit time with and without.
6. **SciFact retrieval**: routed vs exact recall@10 / nDCG@10 with the default
   clustering, with and without smoothing (``bench/results/core.md`` has the full
   routing study).

All fits run with BLAS/OpenMP limited to one thread: on the shared 2-core machine,
two threads per process thrash (measured 10-100x slower MiniBatch fits), and one
thread keeps timings comparable across engines.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench.common import md_table
from bench.datasets import LabeledSet, banking77, newsgroups_messages, newsgroups_subjects, scifact
from bench.embed_cache import cached_embeddings
from cluster_rag import IndexConfig
from cluster_rag.clustering import SphericalKMeans
from cluster_rag.clustering.choose_k import KSweep, auto_k_range, sweep_k
from cluster_rag.evaluation import label_scores, retrieval_scores, size_stats
from cluster_rag.routing import RoutingIndex, calibrate

RESULTS = Path(__file__).resolve().parent / "results"
PUBLISHED_20NG = 0.4649  # MTEB TwentyNewsgroupsClustering V-measure, all-MiniLM-L6-v2 (shared/data/README.md)
_T0 = time.perf_counter()


def _log(msg: str) -> None:
    print(f"[quality {time.perf_counter() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _pm(values: Sequence[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


class Data:
    """One labeled set: texts' cached vectors and integer labels."""

    def __init__(self, ls: LabeledSet, limit: int | None = None, seed: int = 0) -> None:
        X = cached_embeddings(ls.texts, progress=False)
        y = np.unique(np.asarray(ls.labels), return_inverse=True)[1]
        if limit is not None and len(X) > limit:
            keep = np.sort(np.random.default_rng(seed).choice(len(X), limit, replace=False))
            X, y = X[keep], y[keep]
        self.name, self.X, self.y = ls.name, np.ascontiguousarray(X, dtype=np.float32), y
        self.k = len(np.unique(y))


# -- fitters ---------------------------------------------------------------------------
def mteb_baseline(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """MTEB ClusteringEvaluator: MiniBatchKMeans(k, batch_size=500, n_init="auto") on the raw embeddings."""
    from sklearn.cluster import MiniBatchKMeans

    return np.asarray(MiniBatchKMeans(n_clusters=k, batch_size=500, n_init="auto", random_state=seed).fit(X).labels_)


def default_fit(X: np.ndarray, k: int, seed: int, **kw: Any) -> np.ndarray:
    """cluster-rag's clustering exactly as ``ClusterIndex.fit`` runs it (engine/smoothing "auto")."""
    return np.asarray(SphericalKMeans(k, random_state=seed, **kw).fit(X).labels_)


def _timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# -- 1. 20NG subjects, MTEB protocol ---------------------------------------------------
def subjects_mteb(d: Data, seeds: Sequence[int], subsets: int) -> tuple[str, dict[str, Any]]:
    rows = []
    facts: dict[str, Any] = {}
    base = [float(_v(d.y, mteb_baseline(d.X, d.k, s))) for s in seeds]
    _log(f"subjects: baseline {_pm(base)}")
    ours_t = []
    ours = []
    for s in seeds:
        labels, secs = _timed(lambda s=s: default_fit(d.X, d.k, s))
        ours.append(float(_v(d.y, labels)))
        ours_t.append(secs)
    _log(f"subjects: default {_pm(ours)}")
    rows.append([f"all {len(d.X)} subjects, {len(seeds)} seeds", _pm(base), _pm(ours),
                 f"{np.mean(ours) - np.mean(base):+.4f}", f"{np.median(ours_t):.1f}"])  # fmt: skip
    facts["base"], facts["ours"] = float(np.mean(base)), float(np.mean(ours))
    if subsets:
        order = np.random.default_rng(0).permutation(len(d.X))
        parts = np.array_split(order, subsets)
        sb, so = [], []
        for i, part in enumerate(parts):
            X, y = d.X[part], d.y[part]
            k = len(np.unique(y))
            sb.append(float(_v(y, mteb_baseline(X, k, i))))
            so.append(float(_v(y, default_fit(X, k, i))))
        rows.append([f"{subsets} disjoint random subsets of ~{len(parts[0])}, MTEB-style mean", _pm(sb), _pm(so),
                     f"{np.mean(so) - np.mean(sb):+.4f}", ""])  # fmt: skip
        facts["sub_base"], facts["sub_ours"] = float(np.mean(sb)), float(np.mean(so))
        _log(f"subjects: subsets baseline {_pm(sb)} default {_pm(so)}")
    table = md_table(["data", "MTEB baseline V (MiniBatchKMeans)", "cluster-rag default V", "difference",
                 "default fit s (median)"], rows)  # fmt: skip
    return table, facts


def _v(y: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import v_measure_score

    return float(v_measure_score(y, labels))


# -- 2. messages + Banking77 -----------------------------------------------------------
VARIANTS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "MTEB baseline (MiniBatchKMeans, batch 500)": mteb_baseline,
    "cluster-rag default": default_fit,
    "cluster-rag, smoothing off (plain spherical k-means)": lambda X, k, s: default_fit(X, k, s, smooth=0),
    "not shipped: labels kept from the smoothed space": lambda X, k, s: smoothed_space_labels(X, k, s),
}


def smoothed_space_labels(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The variant the default was chosen against: keep the clusters found on smoothed vectors
    instead of re-assigning every row to its nearest (original-space) centroid."""
    from cluster_rag.clustering.kmeans import SMOOTH_NEIGHBORS, neighbour_smooth

    m = min(SMOOTH_NEIGHBORS, len(X) // (5 * k))
    return default_fit(neighbour_smooth(X, m), k, seed, smooth=0)


def label_comparison(sets: Sequence[Data], seeds: Sequence[int], quick: bool) -> tuple[str, dict[str, Any]]:
    rows = []
    facts: dict[str, Any] = {}
    for d in sets:
        base_v = None
        for name, fn in VARIANTS.items():
            if quick and name.startswith("not shipped"):
                continue
            scores, secs = [], []
            for s in seeds:
                labels, t = _timed(lambda fn=fn, s=s, d=d: fn(d.X, d.k, s))
                scores.append(label_scores(d.y, labels))
                secs.append(t)
            v = [x.v_measure for x in scores]
            if base_v is None:
                base_v = float(np.mean(v))
            facts[(d.name, name)] = float(np.mean(v))
            rows.append([d.name, d.k, name, _pm(v), _pm([x.nmi for x in scores]), _pm([x.ari for x in scores]),
                         f"{np.mean(v) - base_v:+.4f}", f"{np.median(secs):.1f}"])  # fmt: skip
            _log(f"{d.name}: {name} V {_pm(v)}")
    table = md_table(["set", "k", "clustering", "V-measure", "NMI", "ARI", "V vs baseline", "fit s (median)"], rows)
    return table, facts


# -- 3. auto-k -------------------------------------------------------------------------
def auto_k_study(sets: Sequence[Data], sample: int, quick: bool) -> tuple[str, dict[str, Any], dict[str, KSweep]]:
    rows = []
    facts: dict[str, Any] = {}
    sweeps: dict[str, KSweep] = {}
    for d in sets:
        t0 = time.perf_counter()
        lo, hi = auto_k_range(len(d.X), sample)  # exactly what fit(k="auto") sweeps (quick: fewer points)
        sweep = sweep_k(d.X, lo, hi, sample=sample, n_points=8 if quick else 16)
        secs = time.perf_counter() - t0
        sweeps[d.name] = sweep
        lo, hi = sweep.ks[0], sweep.ks[-1]
        _log(f"{d.name}: sweep {lo}..{hi} in {secs:.1f}s -> {sweep.recommended}")
        picks = {
            "true k": d.k,
            "rule (recommended)": sweep.recommended,
            "inertia knee only": sweep.knee,
            "silhouette only": sweep.best_silhouette,
        }
        if not quick:
            picks["Davies-Bouldin only"] = sweep.best_davies_bouldin
            picks["Calinski-Harabasz only"] = sweep.best_calinski_harabasz
        v_at: dict[int, float] = {}
        for k in {k for k in picks.values() if k is not None}:
            v_at[k] = _v(d.y, default_fit(d.X, k, 0))
        v_true = v_at[d.k]
        for name, k in picks.items():
            if k is None:
                rows.append([d.name, name, "-", "-", "-"])
                continue
            rows.append([d.name, name, k, v_at[k], f"{v_at[k] / v_true:.3f}x"])
        facts[d.name] = {"k": sweep.recommended, "ratio": v_at[sweep.recommended] / v_true, "secs": secs,
                         "range": (lo, hi), "n_sample": sweep.n_sample}  # fmt: skip
    table = md_table(["set", "k chosen by", "k", "V-measure (default clustering)", "vs true k"], rows)
    return table, facts, sweeps


# -- 4. engines ------------------------------------------------------------------------
def engines(d: Data, seeds: Sequence[int], quick: bool) -> tuple[str, dict[str, Any]]:
    configs: dict[str, Callable[[int], np.ndarray]] = {
        "MTEB MiniBatchKMeans (sklearn, batch 500)": lambda s: mteb_baseline(d.X, d.k, s),
        "engine sklearn (KMeans, n_init 3)": lambda s: default_fit(d.X, d.k, s, engine="sklearn", smooth=0),
        "engine minibatch (20 epochs)": lambda s: default_fit(d.X, d.k, s, engine="minibatch", smooth=0),
        "engine faiss (spherical)": lambda s: default_fit(d.X, d.k, s, engine="faiss", smooth=0),
        "default (auto engine + smoothing)": lambda s: default_fit(d.X, d.k, s),
        "faiss + smoothing (what auto runs above 20k rows)": lambda s: default_fit(d.X, d.k, s, engine="faiss"),
    }
    if quick:
        configs = {n: f for n, f in configs.items() if "+" not in n}
    rows = []
    facts: dict[str, Any] = {}
    for name, fn in configs.items():
        secs, vs = [], []
        for s in seeds:
            labels, t = _timed(lambda fn=fn, s=s: fn(s))
            secs.append(t)
            vs.append(_v(d.y, labels))
        facts[name] = (float(np.median(secs)), float(np.mean(vs)))
        rows.append([name, f"{np.median(secs):.2f}", _pm(vs)])
        _log(f"engines: {name} {np.median(secs):.2f}s V {np.mean(vs):.4f}")
    table = md_table(["clustering", "fit s (median, 1 thread)", "V-measure"], rows)
    return f"{d.name}: {len(d.X)} rows x {d.X.shape[1]}, k={d.k}, seeds {list(seeds)}\n\n{table}", facts


# -- 5. PCA ----------------------------------------------------------------------------
def pca_study(sets: Sequence[Data], dims: Sequence[int | None], seeds: Sequence[int]) -> tuple[str, dict[str, Any]]:
    rows = []
    facts: dict[str, Any] = {}
    for d in sets:
        for dim in dims:
            vs, secs = [], []
            for s in seeds:
                labels, t = _timed(lambda s=s, dim=dim, d=d: default_fit(d.X, d.k, s, reduce_dim=dim))
                vs.append(_v(d.y, labels))
                secs.append(t)
            facts[(d.name, dim)] = (float(np.mean(vs)), float(np.median(secs)))
            rows.append([d.name, dim or "none (384-d)", _pm(vs), f"{np.median(secs):.1f}"])
            _log(f"pca: {d.name} {dim} V {np.mean(vs):.4f} {np.median(secs):.1f}s")
    return md_table(["set", "reduce_dim", "V-measure (default clustering)", "fit s (median)"], rows), facts


# -- 6. SciFact ------------------------------------------------------------------------
def scifact_routing(quick: bool) -> tuple[str, dict[str, Any]]:
    rs = scifact()
    D = cached_embeddings(rs.docs, progress=False)
    Q = cached_embeddings(rs.queries, progress=False)
    k = max(2, round(math.sqrt(len(D))))
    target = IndexConfig().target_recall
    rows = []
    facts: dict[str, Any] = {}
    names = ["default (smoothing auto)", "smoothing off"] + ([] if quick else ["not shipped: smoothed-space labels"])
    for name in names:
        km = SphericalKMeans(k, random_state=0, smooth=0 if name == "smoothing off" else "auto").fit(D)
        centroids, labels = km.cluster_centers_, km.labels_
        if name.startswith("not shipped"):
            labels = smoothed_space_labels(D, k, 0)
            centroids = _means(D, labels, k)
        cal = calibrate(D, labels, centroids, target=target)
        routing = RoutingIndex(centroids, rs.doc_ids, D, labels)
        r = retrieval_scores(routing, Q, rs.query_ids, rs.qrels, gap=cal.gap, probes=[1, 2, 4, 8, k])
        curve = {int(c["n_probe"]): c for c in r.curve}
        facts[name] = r
        rows.append([name, r.n_queries, r.exact["recall@10"], r.exact["ndcg@10"], r.routed["recall@10"],
                     r.routed["ndcg@10"], f"{r.routed['n_probe']:.1f}", f"{r.routed['searched']:.3f}",
                     curve[1]["ndcg@10"], curve[4]["ndcg@10"]])  # fmt: skip
        _log(f"scifact {name}: exact nDCG {r.exact['ndcg@10']:.4f} routed {r.routed['ndcg@10']:.4f}")
    table = md_table([f"clustering (k={k})", "queries", "exact recall@10", "exact nDCG@10", "routed recall@10",
                 "routed nDCG@10", "clusters probed (mean)", "share searched", "nDCG@10 n_probe=1",
                 "nDCG@10 n_probe=4"], rows)  # fmt: skip
    return table, facts


def _means(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    C = np.stack([X[labels == c].mean(axis=0) for c in range(k)])
    return (C / np.linalg.norm(C, axis=1, keepdims=True)).astype(np.float32)


# -- report ----------------------------------------------------------------------------
def _plots(sweeps: dict[str, KSweep], sizes: dict[str, Sequence[int]]) -> list[str]:
    try:
        from cluster_rag.plots import plot_choose_k, plot_sizes
    except ImportError:
        return []
    out = []
    for name, sweep in sweeps.items():
        path = plot_choose_k(sweep, RESULTS / f"quality_choose_k_{name}.png", title=f"choose k: {name}")
        out.append(path.name)
    for name, sz in sizes.items():
        out.append(plot_sizes(sz, RESULTS / f"quality_sizes_{name}.png", title=f"cluster sizes: {name}").name)
    return out


def _findings(f1: dict, f2: dict, f3: dict, f4: dict, f5: dict, msgs: Data, bank: Data) -> list[str]:
    """The conclusions, in words, from the figures of this run."""
    cr, off = "cluster-rag default", "cluster-rag, smoothing off (plain spherical k-means)"
    smooth_gain = {d.name: f2[(d.name, cr)] - f2[(d.name, off)] for d in (msgs, bank)}
    eng = {name.split(" (")[0]: v for name, v in f4.items()}
    pca_rows = {}
    for (name, dim), (v, secs) in f5.items():
        pca_rows.setdefault(name, {})[dim] = (v, secs)
    pca_dv = [v - rows[None][0] for rows in pca_rows.values() for dim, (v, _) in rows.items() if dim is not None]
    out = [
        f"- **20NG subjects: the 0.50 target is missed.** cluster-rag's default reaches {f1['ours']:.4f} on all "
        f"subjects ({f1['ours'] - f1['base']:+.4f} over the MTEB baseline re-measured on the same data, "
        f"{f1['base']:.4f}; published {PUBLISHED_20NG} on MTEB's own subject set)"
        + (f" and {f1['sub_ours']:.4f} MTEB-style over subsets (baseline {f1['sub_base']:.4f})" if "sub_ours" in f1
           else "")
        + ". Subject lines are a few words and many are generic (\"Re: Help\", \"Question\"), so at k = 20 the "
        "embedding geometry, not the optimizer, is the limit. Variants measured while building this (not re-run "
        "here, full 20NG subjects, 1-3 seeds): plain KMeans 0.458-0.464 (n_init 1-10), centered vectors 0.461, "
        "PCA 32/64/128 0.454/0.470/0.462, PCA-whitened 0.39-0.43, over-cluster 100/300 + Ward merge 0.456/0.436, "
        "spectral clustering on a 15-NN graph 0.25 (graph not connected), neighbour smoothing kept in the "
        "smoothed space 0.484. None reached 0.50 with this model.",
        "- **Neighbour smoothing is why the default beats the baseline**: over plain spherical k-means it adds "
        + ", ".join(f"{g:+.4f} V ({n})" for n, g in smooth_gain.items())
        + ". Keeping the smoothed-space clusters as labels would add more (section 2, last rows) but breaks "
        "'label = nearest centroid', which routed search and new chunks rely on; SciFact (section 6) shows the "
        "shipped default routes as well as plain k-means (same nDCG@10, no more chunks searched).",
    ]
    if eng:
        parts = ", ".join(f"{name} {secs:.2f} s / V {v:.4f}" for name, (secs, v) in eng.items())
        engines_only = {n: v for n, v in eng.items() if n.startswith("engine")}
        fastest = min(engines_only, key=lambda n: engines_only[n][0])
        best = max(engines_only, key=lambda n: engines_only[n][1])
        extra = eng["default"][0] - eng["engine sklearn"][0] if "default" in eng else float("nan")
        out.append(
            f"- **Engines** ({parts}). Without smoothing, the fastest engine here is {fastest} and the best "
            f"V-measure is {best}'s; the engines differ by less than the baseline's seed spread in V. `auto` "
            "keeps full-batch sklearn KMeans below 20,000 rows (steadiest result, n_init 3) and FAISS above, "
            "where full-batch KMeans slows down most (at 100k x 384, k = 316 the core study measured FAISS 1.9 s, "
            f"MiniBatch 6 s, KMeans 20 s). Smoothing adds {extra:.1f} s at this size (its exact k-NN pass, O(n^2)), "
            "which is why `smooth='auto'` stops above 30,000 rows."
        )
    if pca_dv:
        speed = [rows[None][1] / secs for rows in pca_rows.values() for dim, (_, secs) in rows.items()
                 if dim is not None and secs > 0]  # fmt: skip
        helps = max(pca_dv) >= 0.01
        out.append(
            f"- **PCA (`reduce_dim`)**: V-measure changes {min(pca_dv):+.4f} to {max(pca_dv):+.4f} across "
            f"32/64/128 components, so it {'can' if helps else 'does not'} help quality beyond seed noise; "
            f"it makes the default fit {min(speed):.1f}-{max(speed):.1f}x faster (k-means and the smoothing "
            "k-NN pass run in fewer dimensions). Kept as an option for speed on large sets, off by default."
        )
    rule_ok = all(f["ratio"] >= 0.95 for f in f3.values())
    ratios = ", ".join(f"{n} {f['ratio']:.3f}x" for n, f in f3.items())
    out.append(
        f"- **auto-k**: the rule {'meets' if rule_ok else 'does not meet'} 0.95x on every set here "
        f"({ratios}). Limits: the criteria measure "
        "geometry, not the topics a reader wants; V-measure changes slowly above the true k, so the rule's "
        "tendency to land a little above it is cheap, while Calinski-Harabasz (always the smallest k) would be "
        "costly. See the `cluster_rag.clustering.choose_k` docstring for the rule in general terms."
    )
    out.append(
        "- Timings come from a 2-core machine shared with other jobs (load 6-10 during the run): compare rows of "
        "one table, not absolute seconds."
    )
    return out


def main(quick: bool = False) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    limit = 3000 if quick else None
    seeds = list(range(2 if quick else 10))
    few = seeds[:2] if quick else seeds[:5]
    with threadpool_limits(1):
        subj = Data(newsgroups_subjects(), limit)
        msgs = Data(newsgroups_messages(), limit)
        bank = Data(banking77(), limit)
        _log("data loaded")
        t1, f1 = subjects_mteb(subj, seeds, 0 if quick else 10)
        t2, f2 = label_comparison([msgs, bank], few, quick)
        t3, f3, sweeps = auto_k_study([subj, msgs, bank], 2000 if quick else 10_000, quick)
        largest = max([subj, msgs, bank], key=lambda d: len(d.X))
        t4, f4 = engines(largest, seeds[:1] if quick else seeds[:3], quick)
        if quick:
            t5, f5 = pca_study([bank], [None, 64], seeds[:1])
        else:
            t5, f5 = pca_study([msgs, bank], [None, 32, 64, 128], seeds[:3])
        t6, f6 = scifact_routing(quick)
        sizes = {}
        for d in (msgs, bank):
            km = SphericalKMeans(d.k, random_state=0).fit(d.X)
            sizes[d.name] = size_stats(km.labels_, d.k).sizes
    pngs = _plots(sweeps, sizes)
    report = _report(quick, t1, f1, t2, f2, t3, f3, t4, f4, t5, f5, t6, pngs, subj, msgs, bank)
    print(report)
    (RESULTS / "quality.md").write_text(report + "\n", encoding="utf-8")
    _log(f"wrote {RESULTS / 'quality.md'}")
    return report


def _report(quick: bool, t1: str, f1: dict, t2: str, f2: dict, t3: str, f3: dict, t4: str, f4: dict, t5: str,
            f5: dict, t6: str, pngs: list[str], subj: Data, msgs: Data, bank: Data) -> str:  # fmt: skip
    def ok(flag: bool) -> str:
        return "**met**" if flag else "**missed**"

    cr = "cluster-rag default"
    base = "MTEB baseline (MiniBatchKMeans, batch 500)"
    gains = {d.name: f2[(d.name, cr)] - f2[(d.name, base)] for d in (msgs, bank)}
    ratios = {name: f["ratio"] for name, f in f3.items()}
    lines = [
        "# Clustering quality (bench/quality.py)",
        "",
        f"Command: `python -m bench quality{' --quick' if quick else ''}`"
        + (" (QUICK: 3,000-row samples, fewer seeds and variants; the full run is the reference)" if quick else ""),
        "Embeddings: all-MiniLM-L6-v2 (bundled), cached in bench/.cache. BLAS/OpenMP limited to 1 thread "
        "(shared 2-core machine). `±` is the standard deviation over seeds/subsets.",
        "",
        "## Targets",
        "",
        md_table(["target", "measured", "status"], [
            ["20NG subjects, default >= 0.50 V-measure", f"{f1['ours']:.4f} (baseline {f1['base']:.4f}, "
             f"published {PUBLISHED_20NG})", ok(f1["ours"] >= 0.50)],
            *[[f"{name}: >= baseline + 0.02 V", f"{gains[name]:+.4f}", ok(gains[name] >= 0.02)] for name in gains],
            *[[f"auto-k {name}: V(auto k) >= 0.95 x V(true k)", f"{r:.3f}x (k={f3[name]['k']})", ok(r >= 0.95)]
              for name, r in ratios.items()],
        ]),  # fmt: skip
        "",
        "## Findings",
        "",
        *_findings(f1, f2, f3, f4, f5, msgs, bank),
        "",
        "## 1. 20 Newsgroups subject lines, MTEB protocol",
        "",
        "MTEB's TwentyNewsgroupsClustering clusters subject lines with `MiniBatchKMeans(n_clusters=20, "
        "batch_size=500, n_init=\"auto\")` and averages V-measure over 10 subsets of its own test set "
        f"(59,545 subjects); it publishes **{PUBLISHED_20NG}** for this model. Our data is the bydate "
        f"train+test subjects ({len(subj.X)} non-blank), so the numbers are close but not identical: the "
        "baseline is re-measured here on our data, with a seed per run (`random_state=seed`) over all "
        "subjects, and MTEB-style over 10 disjoint random tenths (one seed each).",
        "",
        t1,
        "",
        "## 2. 20NG messages (headers stripped) and Banking77",
        "",
        "Same embeddings, same k (the number of gold labels), same seeds for every row. 'smoothing off' is "
        "cluster-rag's spherical k-means alone; the default adds neighbour smoothing: k-means runs on "
        "vectors each averaged with its 20 nearest neighbours (twice), the clusters found give centroids "
        "(members' normalized mean in the original space), and every chunk then joins its nearest "
        "centroid, the same rule routing and new chunks use. The last row keeps the smoothed-space "
        "clusters as they are: higher V-measure, but labels no longer match the nearest centroid, "
        "which costs routed search (section 6), so it is not what `fit` does.",
        "",
        t2,
        "",
        "## 3. auto-k (`fit(k=\"auto\")`, `cluster-rag choose-k`)",
        "",
        "The sweep runs MiniBatch K-Means on a sample for ~16 k on a geometric grid over [5, min(200, n/10)] "
        "and scores inertia, cosine silhouette (3,000-row sub-sample), Davies-Bouldin and Calinski-Harabasz. "
        "Rule: the best silhouette among the swept k within [knee/2, 2 x knee] of the inertia knee (Kneedle). "
        "Each pick is then clustered with the default clustering on all rows and scored against the gold "
        "labels.",
        "",
        t3,
        "",
        "Sweep time: " + ", ".join(f"{n} {f['secs']:.0f} s ({f['n_sample']} rows, k {f['range'][0]}..{f['range'][1]})"
                                   for n, f in f3.items()) + ".",  # fmt: skip
        "",
        "## 4. Engines on the largest set",
        "",
        t4,
        "",
        "## 5. PCA before k-means (`reduce_dim`)",
        "",
        t5,
        "",
        "## 6. SciFact retrieval with the default clustering",
        "",
        "5,183 abstracts, 300 test queries, k = round(sqrt(n)); default route = the calibrated centroid-score "
        "gap (target recall@10 vs exact 0.98 on pseudo-queries), as `fit` sets it. Full routing study, "
        "latency and the published-number comparison (MTEB nDCG@10 0.6451): `bench/results/core.md`.",
        "",
        t6,
        "",
        "Plots: " + (", ".join(f"`bench/results/{p}`" for p in pngs) if pngs else "(matplotlib not installed)"),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
