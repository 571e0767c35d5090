"""Living-index benchmark: online centroid updates vs a full refit, and the drift report.

``python -m bench living [--quick]`` prints markdown tables and writes
``bench/results/living.md``. Data: Banking77 (13,083 questions, 77 intents, cached
all-MiniLM-L6-v2 embeddings added with ``add_embeddings``). Two scenarios per seed:

- **same intents**: fit on a random half (stratified by intent, k=77), then add the
  other half in batches of 500.
- **new intents**: fit on every row of 67 intents (k=67), then add the rows of the
  10 held-out intents in batches of 500.

Three arms over the same final data, all with the index's defaults
(``SphericalKMeans``, seed 0):

- **assign only**: ``add_embeddings`` (default): new chunks join their nearest
  centroid, centroids stay.
- **online**: ``add_embeddings(update_centroids=True)``: MiniBatchKMeans
  ``partial_fit`` semantics (exact running spherical mean), persisted in place.
- **refit**: ``fit`` on everything at the same k (the reference).

Figures over all chunks at the end: inertia per chunk of the *stored* assignment
(``1 - cos(chunk, centroid of its topic)`` with the arm's final centroids), the same
after reassigning every chunk to its nearest final centroid, and V-measure of the
stored topics against the intents. Ratios are against the refit of the same seed and
scenario; medians over seeds. The drift report of the assign-only arm after all
adds shows what ``cluster-rag drift`` recommends in each scenario.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import v_measure_score

from bench.common import md_table
from bench.datasets import banking77
from bench.embed_cache import cached_embeddings
from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.clustering import SphericalKMeans, assign

RESULTS = Path(__file__).resolve().parent / "results" / "living.md"
BATCH = 500


class _Named:
    """Stands in for the embedder: vectors come from the cache, only the name is checked."""

    name = "sentence-transformers/all-MiniLM-L6-v2"
    dimension = 384

    def embed(self, texts: Any, *, progress: bool = False) -> np.ndarray:
        raise AssertionError("the benchmark adds cached embeddings only")


def _split(labels: np.ndarray, scenario: str, seed: int, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    intents = np.array(sorted(set(labels.tolist())))
    fit: list[int] = []
    add: list[int] = []
    held = set(rng.choice(intents, size=10, replace=False).tolist()) if scenario == "new intents" else set()
    for intent in intents:
        rows = rng.permutation(np.nonzero(labels == intent)[0])
        if limit is not None:
            rows = rows[:limit]
        if intent in held:
            add += rows.tolist()
        elif scenario == "new intents":
            fit += rows.tolist()
        else:
            half = len(rows) // 2
            fit += rows[:half].tolist()
            add += rows[half:].tolist()
    return np.array(fit), rng.permutation(np.array(add))


def _scores(
    vectors: np.ndarray, truth: np.ndarray, centroids: np.ndarray, stored: np.ndarray
) -> dict[str, float]:
    sims = np.einsum("ij,ij->i", vectors, centroids[stored])
    _, nearest = assign(vectors, centroids)
    return {
        "inertia": float(np.mean(1.0 - sims)),
        "inertia_reassigned": float(np.mean(1.0 - nearest)),
        "v": float(v_measure_score(truth, stored)),
    }


def _positions(index: ClusterIndex, ids: list[str]) -> np.ndarray:
    ids, positions = index.model.assignments()
    pos = dict(zip(ids, positions, strict=True))
    return np.array([pos[c] for c in ids], dtype=np.int64)


def _run(
    scenario: str, seed: int, texts: list[str], vectors: np.ndarray, labels: np.ndarray, limit: int | None
) -> dict[str, Any]:
    fit_rows, add_rows = _split(labels, scenario, seed, limit)
    k = len(set(labels[fit_rows].tolist()))
    ids = [f"r{i}" for i in range(len(texts))]
    cfg = IndexConfig(progress=False, seed=0)
    root = Path(tempfile.mkdtemp(prefix="bench-living-"))
    try:
        base = ClusterIndex.open(root / "base", embedder=_Named(), config=cfg)  # type: ignore[arg-type]
        base.add_embeddings([texts[i] for i in fit_rows], vectors[fit_rows], ids=[ids[i] for i in fit_rows])
        base.fit(k=k)
        del base
        for arm in ("assign only", "online"):
            shutil.copytree(root / "base", root / arm)
        out: dict[str, Any] = {"k": k, "n_fit": len(fit_rows), "n_added": len(add_rows)}
        all_rows = np.concatenate([fit_rows, add_rows])
        all_ids = [ids[i] for i in all_rows]
        for arm in ("assign only", "online"):
            index = ClusterIndex.open(root / arm, embedder=_Named(), config=cfg, create=False)  # type: ignore[arg-type]
            times = []
            for start in range(0, len(add_rows), BATCH):
                part = add_rows[start : start + BATCH]
                t0 = time.perf_counter()
                index.add_embeddings(
                    [texts[i] for i in part],
                    vectors[part],
                    ids=[ids[i] for i in part],
                    update_centroids=arm == "online",
                )
                times.append(time.perf_counter() - t0)
            model = index.model
            out[arm] = _scores(
                vectors[all_rows], labels[all_rows], model.centroids, _positions(index, all_ids)
            )
            out[arm]["add_ms"] = 1000 * float(np.median(times))
            if arm == "assign only":
                out["drift"] = index.drift()
            del index
        km = SphericalKMeans(k, random_state=cfg.seed).fit(vectors[all_rows])
        out["refit"] = _scores(vectors[all_rows], labels[all_rows], km.cluster_centers_, km.labels_)
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(quick: bool = False) -> str:
    data = banking77()
    vectors = cached_embeddings(data.texts, progress=not quick)
    labels = np.array(data.labels)
    seeds = [0] if quick else [0, 1, 2]
    limit = 40 if quick else None  # rows per intent
    scenarios = ("same intents", "new intents")
    runs = {s: [_run(s, seed, data.texts, vectors, labels, limit) for seed in seeds] for s in scenarios}

    rows = []
    for s in scenarios:
        for arm in ("assign only", "online", "refit"):

            def med(key: str, arm: str = arm, s: str = s) -> float:
                return float(np.median([r[arm][key] for r in runs[s]]))

            def ratio(key: str, arm: str = arm, s: str = s) -> float:
                return float(np.median([r[arm][key] / r["refit"][key] for r in runs[s]]))

            rows.append(
                [
                    s,
                    arm,
                    med("inertia"),
                    ratio("inertia"),
                    med("inertia_reassigned"),
                    med("v"),
                    ratio("v"),
                    f"{med('add_ms'):.0f}" if arm != "refit" else "-",
                ]
            )
    table = md_table(
        [
            "scenario",
            "arm",
            "inertia/chunk (stored)",
            "ratio vs refit",
            "inertia/chunk (reassigned)",
            "V-measure",
            "ratio vs refit",
            "add ms / 500 (median)",
        ],
        rows,
    )
    drift_rows = []
    for s in scenarios:
        for seed, r in zip(seeds, runs[s], strict=True):
            d = r["drift"]
            drift_rows.append(
                [
                    s,
                    seed,
                    r["n_fit"],
                    d.n_added,
                    d.outlier_share,
                    d.inertia_ratio,
                    d.js_divergence,
                    d.recommendation,
                ]
            )
    drift = md_table(
        ["scenario", "seed", "fitted", "added", "outlier share", "inertia ratio", "JS", "recommendation"],
        drift_rows,
    )
    first = runs[scenarios[0]][0]
    md = "\n".join(
        [
            "# Living index: online centroid updates vs refit, drift report",
            "",
            f"Banking77, {'quick: 40 rows per intent, ' if quick else ''}seeds {seeds}, batches of {BATCH}; "
            f"same intents: k={first['k']}, {first['n_fit']} fitted + {first['n_added']} added. "
            "Command: `python -m bench living" + (" --quick`" if quick else "`") + ".",
            "",
            "## Online update (`update_centroids=True`) vs assign only vs full refit (medians over seeds)",
            "",
            table,
            "",
            "## Drift report after the adds (assign-only arm, default thresholds)",
            "",
            drift,
            "",
        ]
    )
    print(md)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(md)
    return md
