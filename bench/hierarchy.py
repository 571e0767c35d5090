"""Topic hierarchy: ``python -m bench hierarchy [--quick]`` → ``bench/results/hierarchy.md``.

All with the default all-MiniLM-L6-v2 (cached embeddings, see ``bench/embed_cache.py``),
leaves = ``SphericalKMeans(k=round(sqrt(n)))`` (the routing clusters, unchanged by the
tree), tree = :func:`cluster_rag.hierarchy.build_tree` (Ward on size-weighted centroids),
broad cut = :func:`cluster_rag.clustering.choose_k.choose_broad_k`. Seeds 0-4 (leaf fit
and resamples). Threads pinned to one.

Sets (``bench/datasets.py``):

- ``20ng-messages``: a fixed random 4,000 of the 18.8k 20 Newsgroups messages (seed 0;
  embedding all of them on the CPU takes ~an hour), 20 groups; its top-level groups are
  the name prefixes ``comp``, ``rec``, ``sci``, ``talk`` and "rest" (``alt``, ``misc``,
  ``soc``): 5 groups.
- ``20ng-subjects``: a fixed random 6,000 of the 18.8k 20NG subject lines (seed 0), 20 groups
  (all of them take ~3 min per seed here, past the run budget; ``--quick``: 3,000).
- ``banking77``: all 13,083 questions, 77 intents.
- ``20ng-5desks``: the 20ng-messages rows of 5 far-apart groups (graphics, hockey, med,
  mideast, christian), ~1,000 texts, 5 labels: a stand-in for a few-desk news corpus,
  where a cut near sqrt(n) is far too fine.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import datasets  # noqa: E402
from bench.embed_cache import cached_embeddings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = (0, 1, 2, 3, 4)
DESKS = ("comp.graphics", "rec.sport.hockey", "sci.med", "talk.politics.mideast", "soc.religion.christian")


@dataclass(frozen=True)
class Set:
    name: str
    vectors: np.ndarray
    labels: np.ndarray
    top: np.ndarray | None = None  # top-level group of each row (20NG)
    note: str = ""


def _top_group(label: str) -> str:
    head = label.split(".")[0]
    return head if head in ("comp", "rec", "sci", "talk") else "rest"


def _messages(n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    m = datasets.newsgroups_messages()
    idx = np.sort(np.random.default_rng(0).choice(len(m.texts), n, replace=False))
    x = cached_embeddings([m.texts[i] for i in idx], progress=False)
    return x, np.asarray([m.labels[i] for i in idx])


def load_sets(quick: bool) -> list[Set]:
    x, y = _messages()
    top = np.asarray([_top_group(v) for v in y])
    desk = np.isin(y, DESKS)
    s = datasets.newsgroups_subjects()
    xs, ys = cached_embeddings(s.texts, progress=False), np.asarray(s.labels)
    keep = np.sort(np.random.default_rng(0).choice(len(ys), 3000 if quick else 6000, replace=False))
    xs, ys = xs[keep], ys[keep]
    sets = [
        Set("20ng-messages", x, y, top, "4,000 random messages"),
        Set("20ng-subjects", xs, ys, None, f"{len(ys):,} random subjects"),
        Set("20ng-5desks", x[desk], y[desk], None, "5 far-apart groups of 20ng-messages"),
    ]
    b = datasets.banking77()
    xb, yb = cached_embeddings(b.texts, progress=False), np.asarray(b.labels)
    if quick:
        keep = np.sort(np.random.default_rng(0).choice(len(yb), 4000, replace=False))
        xb, yb = xb[keep], yb[keep]
    sets.append(Set("banking77", xb, yb, None, "4,000 random questions" if quick else "all questions"))
    return sets


def _v(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import v_measure_score

    return float(v_measure_score(a, b))


def _flat(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from cluster_rag.clustering import SphericalKMeans

    return SphericalKMeans(k, random_state=seed).fit(x).labels_


def _med(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def run_set(data: Set, seeds: tuple[int, ...], log: Callable[[str], None]) -> dict[str, object]:
    from cluster_rag.clustering import SphericalKMeans
    from cluster_rag.hierarchy import build_tree, cut, linkage

    n = len(data.labels)
    k = max(2, round(n**0.5))
    n_labels = len(set(data.labels.tolist()))
    out: dict[str, list[float]] = {
        "chosen": [], "v_auto": [], "v_tree_true": [], "v_flat_true": [], "v_leaves": [],
        "v_avg_true": [], "v_bisect_true": [], "seconds_tree": [],
    }
    extra: dict[str, list[float]] = {"v_top5": [], "v_flat5_top": [], "v_auto_top": [], "v_tree20": []}
    for seed in seeds:
        start = time.perf_counter()
        km = SphericalKMeans(k, random_state=seed).fit(data.vectors)
        lab, cen = km.labels_, km.cluster_centers_
        sizes = np.bincount(lab, minlength=k)
        t0 = time.perf_counter()
        tree = build_tree(cen, sizes, n_top="auto", random_state=seed)
        out["seconds_tree"].append(time.perf_counter() - t0)
        merges = linkage(cen, sizes, "ward")
        chosen = len(tree.top)
        out["chosen"].append(chosen)
        auto_rows = tree.top_labels()[lab]
        out["v_auto"].append(_v(data.labels, auto_rows))
        true_m = min(n_labels, k)
        out["v_tree_true"].append(_v(data.labels, cut(merges, k, true_m)[lab]))
        methods = (("average", "v_avg_true"), ("bisect", "v_bisect_true")) if seed == seeds[0] else ()
        for method, key in methods:  # bisect is slow (a 2-means per split): first seed only
            tree_m = linkage(cen, sizes, method, random_state=seed)
            out[key].append(_v(data.labels, cut(tree_m, k, true_m)[lab]))
        out["v_flat_true"].append(_v(data.labels, _flat(data.vectors, n_labels, seed)))
        out["v_leaves"].append(_v(data.labels, lab))
        if data.top is not None:
            n_top = len(set(data.top.tolist()))
            extra["v_top5"].append(_v(data.top, cut(merges, k, n_top)[lab]))
            extra["v_flat5_top"].append(_v(data.top, _flat(data.vectors, n_top, seed)))
            extra["v_auto_top"].append(_v(data.top, auto_rows))
        log(f"{data.name} seed {seed}: k={k} chosen={chosen} V(auto)={out['v_auto'][-1]:.3f} "
            f"V(flat@{n_labels})={out['v_flat_true'][-1]:.3f} ({time.perf_counter() - start:.0f}s)")
    kept = {k2: v for k2, v in extra.items() if v}
    return {"n": n, "k": k, "labels": n_labels, **out, **kept, "tree": tree}


def main(quick: bool = False) -> str:
    started = time.perf_counter()
    seeds = SEEDS[:2] if quick else SEEDS
    results = {}
    for data in load_sets(quick):
        results[data.name] = (data, run_set(data, seeds, lambda s: print(s, flush=True)))
    md = [
        "# Topic hierarchy: tree over the routing clusters, automatic broad cut",
        "",
        f"`python -m bench hierarchy{' --quick' if quick else ''}`; all-MiniLM-L6-v2; seeds {list(seeds)}; "
        "one thread; leaves = `SphericalKMeans(k=round(sqrt(n)))` (the routing clusters: routing recall "
        "and nDCG are those of the same leaves, unchanged by the tree); tree = Ward on size-weighted "
        "centroids; medians [min-max] over seeds.",
        "",
        "## Automatic broad cut vs the true number of labels",
        "",
    ]
    rows = []
    for name, (data, r) in results.items():
        ratio = [a / b for a, b in zip(r["v_auto"], r["v_flat_true"], strict=True)]  # type: ignore[arg-type]
        rows.append([
            name, data.note, str(r["n"]), str(r["k"]), str(r["labels"]),
            ", ".join(str(int(c)) for c in r["chosen"]),  # type: ignore[union-attr]
            _med(r["v_auto"]), _med(r["v_flat_true"]), _med(ratio),  # type: ignore[arg-type]
            _med(r["v_tree_true"]), _med(r["v_leaves"]),  # type: ignore[arg-type]
        ])
    md.append(_table(
        ["set", "rows", "n", "leaves k", "labels", "broad m chosen (per seed)", "V auto cut",
         "V flat K-Means @ labels", "ratio", "V tree cut @ labels", "V leaves"], rows))
    md += ["", "## 20 Newsgroups: two levels", ""]
    if "20ng-messages" in results:
        _, r = results["20ng-messages"]
        md.append(_table(
            ["what", "vs", "V"],
            [
                ["tree cut at 5", "5 top-level groups", _med(r["v_top5"])],  # type: ignore[arg-type]
                ["flat K-Means k=5", "5 top-level groups", _med(r["v_flat5_top"])],  # type: ignore[arg-type]
                ["automatic broad cut", "5 top-level groups", _med(r["v_auto_top"])],  # type: ignore[arg-type]
                ["tree cut at 20", "20 groups", _med(r["v_tree_true"])],  # type: ignore[arg-type]
                ["flat K-Means k=20", "20 groups", _med(r["v_flat_true"])],  # type: ignore[arg-type]
                [f"leaves (k={r['k']})", "20 groups", _med(r["v_leaves"])],  # type: ignore[arg-type]
            ],
        ))
    md += ["", "## Tree method: V of the cut at the true number of labels", ""]
    md.append(_table(
        ["set", "Ward (size-weighted), 5 seeds", "average (size-weighted cosine), seed 0",
         "bisecting spherical 2-means, seed 0"],
        [[name, _med(r["v_tree_true"]), _med(r["v_avg_true"]), _med(r["v_bisect_true"])]  # type: ignore[arg-type]
         for name, (_, r) in results.items()],
    ))
    md += ["", "## Evidence of one choice (seed 0, first set)", ""]
    first = next(iter(results.values()))[1]["tree"]
    ev = first.evidence  # type: ignore[attr-defined]
    md.append(f"rule: {ev.get('rule')}")
    md.append("")
    md.append(_table(
        ["m", "gap", "silhouette", "stability"],
        [[str(c["m"]), f"{c['gap']:.3f}", f"{c['silhouette']:.3f}",
          "-" if c["stability"] is None else f"{c['stability']:.3f}"] for c in ev.get("candidates", [])[:30]],
    ))
    per_fit = statistics.median(first_sec(results))
    md += ["", f"Tree build + broad-cut choice: median {per_fit:.2f} s per fit; "
           f"whole run {time.perf_counter() - started:.0f} s.", ""]
    text = "\n".join(md)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("hierarchy.quick.md" if quick else "hierarchy.md")).write_text(text)
    print(text)
    return text


def first_sec(results: dict[str, tuple[Set, dict[str, object]]]) -> list[float]:
    return [s for _, r in results.values() for s in r["seconds_tree"]]  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
