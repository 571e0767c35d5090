"""choose-k, eval and k="auto" on a fitted copy of the shipped Banking77 sample (real Chroma, real model)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cluster_rag import ClusterIndex
from cluster_rag.cli import main

pytestmark = pytest.mark.integration


def run(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "cluster_rag.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc


@pytest.fixture
def kb(demo_index_path: Path, tmp_path: Path) -> Path:
    target = tmp_path / "kb"
    shutil.copytree(demo_index_path, target)
    return target


def test_choose_k_json_and_png(kb: Path, tmp_path: Path) -> None:
    png = tmp_path / "plots" / "k.png"
    out = json.loads(run("choose-k", "--path", str(kb), "--min", "5", "--max", "30", "--points", "8",
                         "--png", str(png), "--json", cwd=tmp_path).stdout)  # fmt: skip
    ks = [s["k"] for s in out["scores"]]
    assert ks[0] == 5 and ks[-1] == 30 and len(ks) == 8
    assert out["recommended"] in ks and out["n_sample"] == 400
    assert out["rule"].startswith("best cosine silhouette")
    assert png.read_bytes()[:4] == b"\x89PNG" and out["png"] == str(png)


def test_tables_in_process(kb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["choose-k", "--path", str(kb), "--min", "5", "--max", "12", "--points", "4", "-q"]) == 0
    table = capsys.readouterr().out
    assert "silhouette" in table.splitlines()[0] and "recommended k =" in table and "rule:" in table
    assert main(["eval", "--path", str(kb), "--label-field", "label", "-q"]) == 0
    table = capsys.readouterr().out
    assert "V-measure" in table and "min size" in table and "n_probe curve" not in table


def _write_eval_files(tmp_path: Path, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    seen: set[str] = set()
    picked = []
    for r in rows:  # queries are chunk texts: each one's exact top-1 is its own chunk
        if r["text"] not in seen:
            seen.add(r["text"])
            picked.append(r)
        if len(picked) == 25:
            break
    queries = tmp_path / "queries.jsonl"
    queries.write_text("\n".join(json.dumps({"id": f"q{i}", "text": r["text"]}) for i, r in enumerate(picked)))
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query_id\tdoc_id\tscore\n" + "".join(f"q{i}\t{r['id']}\t1\n" for i, r in enumerate(picked)))
    return queries, qrels


def test_eval_labels_retrieval_sizes(kb: Path, tmp_path: Path, banking_rows: list[dict[str, Any]]) -> None:
    queries, qrels = _write_eval_files(tmp_path, banking_rows)
    png = tmp_path / "sizes.png"
    out = json.loads(run("eval", "--path", str(kb), "--label-field", "label", "--queries", str(queries),
                         "--qrels", str(qrels), "--png", str(png), "--rerank", "mmr:0.3", "--json",
                         cwd=tmp_path).stdout)  # fmt: skip
    assert out["k"] == 20 and out["n_chunks"] == 400
    sizes = out["sizes"]
    assert sum(sizes["sizes"]) == 400 and len(sizes["sizes"]) == 20 and sizes["inertia"] > 0
    labels = out["labels"]
    assert labels["n_rows"] == 400 and labels["n_classes"] == len({r["label"] for r in banking_rows})
    assert 0.3 < labels["v_measure"] <= 1.0 and 0 < labels["purity"] <= 1.0
    r = out["retrieval"]
    assert r["n_queries"] == 25 and r["route"].startswith(("gap=", "n_probe="))
    assert r["exact"]["recall@1"] == pytest.approx(1.0)
    last = r["curve"][-1]
    assert last["n_probe"] == 20 and last["overlap@10"] == pytest.approx(1.0) and last["searched"] == 1.0
    assert r["routed"]["recall@10"] <= r["exact"]["recall@10"] + 1e-9
    assert png.read_bytes()[:4] == b"\x89PNG"
    # dense / keyword / hybrid side by side, plus a re-ranker over hybrid (issue 14 item 4)
    modes = {m["name"]: m for m in out["modes"]}
    assert {"dense", "keyword", "hybrid"} <= set(modes) and len(modes) == 4
    assert all(0.0 <= m["ndcg_at_10"] <= 1.0 and m["n_queries"] == 25 for m in modes.values())
    assert modes["dense"]["ndcg_at_10"] == pytest.approx(r["routed"]["ndcg@10"], abs=1e-9)


def test_search_modes_and_rerank_from_the_cli(kb: Path, tmp_path: Path) -> None:
    def hits(*extra: str) -> list[dict[str, Any]]:
        out = run("search", "card has not arrived", "--path", str(kb), "--k", "5", "--json", *extra,
                  cwd=tmp_path)
        found: list[dict[str, Any]] = json.loads(out.stdout)
        return found

    dense, keyword, hybrid = hits("--mode", "dense"), hits("--mode", "keyword"), hits()
    assert len(dense) == len(keyword) == len(hybrid) == 5
    assert all("arriv" in h["text"].lower() or "card" in h["text"].lower() for h in keyword)  # BM25: words
    diverse = hits("--rerank", "mmr:0.9")
    assert len(diverse) == 5 and {h["id"] for h in diverse} != {h["id"] for h in hybrid}  # MMR spreads
    bad = run("search", "x", "--path", str(kb), "--rerank", "magic", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "rerank" in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--label-field", "nope"], "no chunk has metadata field 'nope'; fields present: ["),
        (["eval", "--queries", "q.jsonl"], "pass --queries FILE and --qrels FILE together"),
        (["choose-k", "--min", "1"], "k_min=1 is too small"),
        (["choose-k", "--min", "5", "--max", "500"], "k_max=500 but the sweep sample holds 400 rows"),
        (["cluster", "--k", "many"], "Invalid value for '--k': 'many' must be an int or 'auto'"),
    ],
)
def test_errors_exit_2(kb: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([args[0], "--path", str(kb), "-q", *args[1:]])  # usage errors too return 2, never exit
    assert code == 2 and message in capsys.readouterr().err


def test_fit_auto_keeps_leaves_at_the_size_rule_and_chooses_broad_topics(demo_index: ClusterIndex) -> None:
    info = demo_index.fit(k="auto")
    assert info.k == 20 and demo_index.model_info.k == 20  # round(sqrt(400)): the routing leaves
    tree = demo_index.topic_tree()
    assert tree.evidence["chosen"] == len(tree.top) and 2 <= len(tree.top) < info.k
    broad = demo_index.topics(level=tree.depth)
    assert len(broad) == len(tree.top) and sum(t.size for t in broad) == 400
    assert len(demo_index.topics()) == info.k
    pca = demo_index.fit(k=8, reduce_dim=32)
    assert pca.k == 8 and len(demo_index.topics()) == 8
    assert demo_index.store.load_model(pca.version).get("choose_k") is None  # only k="auto" records a sweep
