"""The ``cluster-rag`` command line.

Every command takes ``--path DIR`` (embedded Chroma, default ``./kb`` or
``$CLUSTER_RAG_PATH``) or ``--chroma-url URL`` (a Chroma server), prints a
readable table by default and JSON with ``--json``; ``--quiet`` silences
progress bars. Errors of the library exit with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from .config import IndexConfig
from .errors import ClusterRagError, InvalidInputError, missing_dependency
from .index import ClusterIndex

__all__ = ["main"]

DEMO_QUERIES = (
    "my new card still hasn't arrived",
    "how much does it cost to take cash out of an ATM",
    "I forgot my passcode",
)


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _short(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _quiet_libraries() -> None:
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TQDM_DISABLE"] = "1"
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    except Exception:  # transformers internals moved: only cosmetics are lost
        pass


def _open(args: argparse.Namespace, *, create: bool) -> ClusterIndex:
    config = IndexConfig.from_env(
        collection=args.collection, model=args.model, progress=not args.quiet
    )
    if args.chroma_url:
        return ClusterIndex.connect(args.chroma_url, config=config, create=create)
    return ClusterIndex.open(args.path, config=config, create=create)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def _topics_text(index: ClusterIndex) -> tuple[list[dict[str, Any]], str]:
    topics = index.topics()
    sourced = any(t.label_source != "keywords" for t in topics)  # who named them, once an LLM/person did
    described = any(t.description for t in topics)
    headers = ["id", "size", "label"] + ["source"] * sourced + ["description"] * described
    rows = [
        [
            t.id,
            t.size,
            _short(t.label, 56),
            *([t.label_source + (" (pinned)" if t.pinned else "")] if sourced else []),
            *([_short(t.description, 60)] if described else []),
            _short(", ".join(t.keywords[:6]), 60),
        ]
        for t in topics
    ]
    return [t.to_dict() for t in topics], _table(rows, [*headers, "keywords"])


def _hits_text(hits: Sequence[Any]) -> str:
    rows = [[i + 1, f"{h.score:.3f}", h.topic_id, _short(h.topic_label or "", 28), _short(h.text, 64)] for i, h in enumerate(hits)]
    return _table(rows, ["#", "score", "topic", "label", "text"]) if rows else "(no hits)"


# commands -----------------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace) -> None:
    index = _open(args, create=True)
    ids = index.ingest_files(args.files, text_field=args.text_field)
    refit = ""
    if ids and index.is_fitted:
        refit = " (assigned to the nearest topics; run `cluster-rag cluster` to refit)"
    _emit(args, {"added": len(ids), "total": len(index)}, f"added {len(ids)} chunks; {len(index)} stored{refit}")


def cmd_cluster(args: argparse.Namespace) -> None:
    index = _open(args, create=False)
    if args.partial:
        folded = index.partial_fit()
        model = index.model_info
        _emit(
            args,
            {"folded": folded, "version": model.version},
            f"folded {folded} chunks added since the fit into the centroids of model version "
            f"{model.version} (updated in place; topics and ids unchanged)",
        )
        return
    info = index.fit(k=args.k, engine=args.engine)
    report = index.refit_report()
    text = (
        f"model version {info.version}: k={info.k} over {info.n_chunks} chunks ({info.engine}), "
        f"default route: clusters within {info.probe_gap or 0:.3f} of the best centroid score, "
        f"~{info.n_probe} per query (recall@10 {info.calibrated_recall:.3f} vs exact on a sample)"
    )
    if report is not None:
        text += f"\ntopics vs version {report.previous_version}: {report.summary()}"
        if report.relabeled:
            text += f"\nrelabeled (content changed): {report.relabeled}"
    _emit(args, {**info.to_dict(), "refit": report.to_dict() if report else None}, text)


def cmd_drift(args: argparse.Namespace) -> None:
    from dataclasses import fields

    from .drift import DriftThresholds

    index = _open(args, create=False)
    names = [f.name for f in fields(DriftThresholds)]
    given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    report = index.drift(DriftThresholds(**given))
    th = report.thresholds
    labels = {t.id: t.label for t in index.topics()}
    lines = [
        f"model version {report.version}: {report.n_added} chunks added since the fit "
        f"({report.n_fit} fitted)",
        f"  outlier share      {report.outlier_share:.3f}  beyond the fit's p95 distance "
        f"{report.p95_distance:.3f} (partial >= {th.partial_outlier_share}, "
        f"refit >= {th.refit_outlier_share})",
        f"  inertia per chunk  {report.inertia_per_chunk_added:.3f} vs {report.inertia_per_chunk_fit:.3f} "
        f"at fit, ratio {report.inertia_ratio:.2f} (partial >= {th.partial_inertia_ratio}, "
        f"refit >= {th.refit_inertia_ratio})",
        f"  size JS divergence {report.js_divergence:.4f} "
        f"(partial >= {th.partial_js}, refit >= {th.refit_js})",
        f"recommendation: {report.recommendation} ({'; '.join(report.reasons)})",
    ]
    hint = {"refit": "cluster-rag cluster", "partial_update": "cluster-rag cluster --partial"}
    if report.recommendation in hint:
        lines.append(f"next: {hint[report.recommendation]}")
    grown = sorted((g for g in report.growth if g.added), key=lambda g: (-g.growth, g.topic_id))[:10]
    if grown:
        rows = [
            [g.topic_id, _short(labels.get(g.topic_id, ""), 40), g.size_at_fit, g.added, f"{g.growth:.2f}"]
            for g in grown
        ]
        lines += ["", _table(rows, ["id", "label", "size at fit", "added", "growth"])]
    _emit(args, report.to_dict(), "\n".join(lines))


def cmd_topics(args: argparse.Namespace) -> None:
    index = _open(args, create=False)
    data, text = _topics_text(index)
    _emit(args, data, text)


def _labeler(args: argparse.Namespace) -> Any:
    """KeywordLabeler, or an OpenAILabeler on the client the flags describe (key from OPENAI_API_KEY)."""
    from .labeling import KeywordLabeler, OpenAILabeler

    if not args.llm_base_url and not args.llm_model:
        return KeywordLabeler()
    if not args.llm_model:
        raise InvalidInputError(
            f"--llm-base-url {args.llm_base_url} needs --llm-model NAME (a model that server serves)"
        )
    try:
        from openai import OpenAI
    except ImportError:
        raise missing_dependency("openai", '"cluster-rag[openai]"') from None
    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        if not args.llm_base_url:
            raise InvalidInputError(
                "OPENAI_API_KEY is not set; export it, or pass --llm-base-url for a local server"
            )
        key = "no-key"  # local OpenAI-compatible servers (llama.cpp, vLLM, Ollama) ignore it
    client = OpenAI(base_url=args.llm_base_url or None, api_key=key)
    return OpenAILabeler(
        client,
        args.llm_model,
        concurrency=args.concurrency,
        timeout=args.timeout,
        max_retries=args.max_retries,
        max_tokens=args.max_tokens,
    )


def cmd_label(args: argparse.Namespace) -> None:
    index = _open(args, create=False)
    report = index.label(_labeler(args), force=args.force)
    rows = [[s.topic_id, s.status, _short(s.label, 40), _short(s.error or "", 70)] for s in report.topics]
    counts = ", ".join(f"{n} {status}" for status, n in report.counts().items() if n)
    summary = (
        f"model version {report.version}, labeler {report.labeler}: {counts}; {report.calls} requests, "
        f"{report.prompt_tokens} prompt + {report.completion_tokens} completion tokens"
    )
    _emit(args, report.to_dict(), _table(rows, ["id", "status", "label", "note"]) + "\n\n" + summary)
    fallback = report.counts()["fallback"]
    if fallback:
        print(
            f"cluster-rag: warning: {fallback} topic(s) kept their keyword label (fallback); "
            "`cluster-rag label --force` retries them, `cluster-rag rename` names them by hand",
            file=sys.stderr,
        )


def cmd_rename(args: argparse.Namespace) -> None:
    index = _open(args, create=False)
    if args.unpin:
        topic = index.unpin_topic(args.topic)
        text = f"topic {topic.id} ({topic.label!r}) is unpinned; `cluster-rag label` may rename it"
    else:
        if args.name is None:
            raise InvalidInputError('rename needs a NAME, e.g. `cluster-rag rename 3 "Card delivery"`')
        topic = index.rename_topic(args.topic, args.name, description=args.description)
        text = f"topic {topic.id} is now {topic.label!r} (pinned: `cluster-rag label` keeps it)"
    _emit(args, topic.to_dict(), text)


def cmd_search(args: argparse.Namespace) -> None:
    index = _open(args, create=False)
    where = json.loads(args.where) if args.where else None
    topics = [int(t) if t.isdigit() else t for t in args.topic] if args.topic else None
    hits = index.search(args.query, k=args.k, n_probe=args.n_probe, topics=topics, where=where)
    _emit(args, [h.to_dict() for h in hits], _hits_text(hits))


def cmd_info(args: argparse.Namespace) -> None:
    index = _open(args, create=False)
    info = index.info()
    _emit(args, info, "\n".join(f"{k:>18}: {v}" for k, v in info.items()))


def cmd_versions(args: argparse.Namespace) -> None:
    index = _open(args, create=False)
    active = index.store.active_version()
    versions = index.versions()
    rows = [
        ["*" if v.version == active else "", v.version, v.k, v.n_chunks, v.engine, v.n_probe, v.created_at]
        for v in versions
    ]
    _emit(
        args,
        [{**v.to_dict(), "active": v.version == active} for v in versions],
        _table(rows, ["", "version", "k", "chunks", "engine", "n_probe", "created"]),
    )


def cmd_rollback(args: argparse.Namespace) -> None:
    index = _open(args, create=False)
    info = index.rollback(args.version)
    _emit(args, info.to_dict(), f"active model version is now {info.version} (k={info.k})")


def cmd_demo(args: argparse.Namespace) -> None:
    sample = resources.files("cluster_rag") / "data" / "banking77_sample.jsonl"
    index = _open(args, create=True)
    with resources.as_file(sample) as sample_path:
        added = index.ingest_files([sample_path])
    if not args.json:
        print(f"[1/3] ingested {len(added)} new chunks of Banking77 (CC BY 4.0) into {index.location}; "
              f"{len(index)} stored")
    info = index.fit(k=args.k)
    data, text = _topics_text(index)
    searches = {q: [h.to_dict() for h in index.search(q, k=3)] for q in DEMO_QUERIES}
    if args.json:
        print(json.dumps({"model": info.to_dict(), "topics": data, "searches": searches}, indent=2))
        return
    print(f"[2/3] fitted model version {info.version}: k={info.k}, ~{info.n_probe} clusters searched per query "
          f"(recall@10 {info.calibrated_recall:.3f} vs exact on a sample)\n")
    print(text)
    print("\n[3/3] routed search")
    for q in DEMO_QUERIES:
        print(f"\n> {q}")
        print(_hits_text(index.search(q, k=3)))
    print(f"\nNext: cluster-rag search --path {args.path} \"your question\"")


def cmd_mcp(args: argparse.Namespace) -> None:
    from .mcp_server import build_server

    index = _open(args, create=False)
    info = index.model_info  # no cluster model: exit 2 now, not on the first tool call
    server = build_server(index)  # MissingDependencyError names the pip line
    print(f"cluster-rag: serving {index.location} (model version {info.version}, k={info.k}) over MCP "
          "stdio", file=sys.stderr)
    server.run("stdio")


def _k_arg(value: str) -> int | str:
    """``--k``: an int, or ``auto`` (sweep k and take the recommended one)."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k {value!r} must be an int or 'auto'") from None


def cmd_choose_k(args: argparse.Namespace) -> None:
    from .clustering.choose_k import KSweep, sweep_k

    index = _open(args, create=False)
    _, vectors, _ = index.store.load_all()
    sweep = sweep_k(
        vectors,
        args.min,
        args.max,
        n_points=args.points,
        sample=args.sample,
        random_state=index.config.seed,
        progress=not args.quiet,
    )
    data = sweep.to_dict()
    if args.png:
        from .plots import plot_choose_k

        title = f"choose k: {index.location or index.store.name}"
        data["png"] = str(plot_choose_k(sweep, args.png, title=title))
    text = _table(sweep.rows(), KSweep.HEADERS)
    text += (
        f"\n\nrecommended k = {sweep.recommended} (knee {sweep.knee}, "
        f"best silhouette {sweep.best_silhouette}; "
        f"{sweep.n_sample} rows sampled, silhouette on {sweep.n_silhouette})\nrule: {sweep.rule}"
    )
    if args.png:
        text += f"\nplot: {data['png']}"
    text += f"\nnext: cluster-rag cluster --path {args.path} --k {sweep.recommended}"
    _emit(args, data, text)


def cmd_eval(args: argparse.Namespace) -> None:
    from .evaluation import evaluate, load_qrels, load_queries

    if (args.queries is None) != (args.qrels is None):
        raise InvalidInputError("pass --queries FILE and --qrels FILE together")
    index = _open(args, create=False)
    queries = load_queries(args.queries) if args.queries else None
    qrels = load_qrels(args.qrels) if args.qrels else None
    result = evaluate(index, label_field=args.label_field, queries=queries, qrels=qrels)
    data = result.to_dict()
    s = result.sizes
    parts = [
        f"model version {result.version}: k={result.k}, {result.n_chunks} chunks",
        _table(
            [[s.min, f"{s.median:g}", s.max, f"{s.mean:.1f}", f"{s.std:.1f}", s.empty,
              f"{s.inertia:.2f}" if s.inertia is not None else "-",
              f"{s.mean_similarity:.4f}" if s.mean_similarity is not None else "-"]],
            ["min size", "median", "max", "mean", "std", "empty", "inertia", "mean cos to centroid"],
        ),
    ]
    if result.labels is not None:
        lab = result.labels
        parts.append(
            f"labels from metadata {result.label_field!r}: {lab.n_rows} chunks, {lab.n_classes} classes\n"
            + _table(
                [[f"{lab.v_measure:.4f}", f"{lab.homogeneity:.4f}", f"{lab.completeness:.4f}",
                  f"{lab.nmi:.4f}", f"{lab.ari:.4f}", f"{lab.purity:.4f}"]],
                ["V-measure", "homogeneity", "completeness", "NMI", "ARI", "purity"],
            )
        )
    if result.retrieval is not None:
        r = result.retrieval
        metrics = [m for m in r.exact]
        rows = [["exact", *(f"{r.exact[m]:.4f}" for m in metrics), f"{result.k}", "1.000"]]
        rows.append([f"routed ({r.route})", *(f"{r.routed[m]:.4f}" for m in metrics),
                     f"{r.routed['n_probe']:.1f}", f"{r.routed['searched']:.3f}"])
        headers = ["search", *metrics, "clusters", "searched"]
        parts.append(f"retrieval over {r.n_queries} queries\n" + _table(rows, headers))
        curve = [[int(c["n_probe"]), f"{c['recall@10']:.4f}", f"{c['ndcg@10']:.4f}", f"{c['overlap@10']:.4f}",
                  f"{c['searched']:.3f}"] for c in r.curve]
        headers = ["n_probe", "recall@10", "ndcg@10", "overlap@10 vs exact", "searched"]
        parts.append("n_probe curve\n" + _table(curve, headers))
    if args.png:
        from .plots import plot_sizes

        data["png"] = str(plot_sizes(s.sizes, args.png, title=f"cluster sizes, version {result.version}"))
        parts.append(f"plot: {data['png']}")
    _emit(args, data, "\n\n".join(parts))


# parser -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--path", default=os.environ.get("CLUSTER_RAG_PATH", "./kb"),
                       help="embedded Chroma folder (default ./kb or $CLUSTER_RAG_PATH)")
    where.add_argument("--chroma-url", default=os.environ.get("CLUSTER_RAG_CHROMA_URL"),
                       help="Chroma server, e.g. http://127.0.0.1:8000")
    common.add_argument("--collection", default=None, help="collection name (default cluster_rag)")
    common.add_argument("--model", default=None, help="sentence-transformers model name or path")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    parser = argparse.ArgumentParser(prog="cluster-rag", description=__doc__.splitlines()[0])
    from . import __version__

    parser.add_argument("--version", action="version", version=f"cluster-rag {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], None], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("ingest", cmd_ingest, "add .txt/.md/.jsonl/.csv files or folders")
    p.add_argument("files", nargs="+")
    p.add_argument("--text-field", default="text", help="JSONL key / CSV column with the text")

    p = add("cluster", cmd_cluster, "fit K-Means and make it the active model version")
    p.add_argument("--k", type=_k_arg, default=None,
                   help="number of topics, or 'auto' to sweep k and take the recommended one "
                   "(default round(sqrt(n)))")
    p.add_argument("--engine", default="auto", choices=["auto", "sklearn", "minibatch", "faiss"])
    p.add_argument("--partial", action="store_true",
                   help="no refit: fold chunks added since the fit into the active centroids (online update)")

    p = add("drift", cmd_drift, "compare chunks added since the fit with the fit's baseline; recommend "
            "ok / partial update / refit")
    from dataclasses import fields

    from .drift import DriftThresholds

    for f in fields(DriftThresholds):
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(f.default), default=None,
                       help=f"threshold (default {f.default}; see cluster_rag.drift.DriftThresholds)")

    add("topics", cmd_topics, "list topics with size, label, description and keywords")

    p = add("label", cmd_label, "name topics: keyword labels, or an LLM behind any OpenAI-compatible server")
    p.add_argument("--llm-base-url", default=None,
                   help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1 (key: $OPENAI_API_KEY)")
    p.add_argument("--llm-model", default=None, help="model name; without --llm-base-url: OpenAI's API")
    p.add_argument("--force", action="store_true", help="relabel unchanged topics too (pinned ones stay)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    p.add_argument("--max-retries", type=int, default=3, help="retries on timeouts, 429 and 5xx (default 3)")
    p.add_argument("--max-tokens", type=int, default=200, help="completion tokens per answer (default 200)")

    p = add("rename", cmd_rename, "give a topic a name of your own and pin it (relabeling keeps it)")
    p.add_argument("topic", help="topic id or current label")
    p.add_argument("name", nargs="?", default=None, help="the new label")
    p.add_argument("--description", default=None, help="one sentence (default: keep the current one)")
    p.add_argument("--unpin", action="store_true", help="release the pin instead (keeps the name)")

    p = add("search", cmd_search, "routed semantic search")
    p.add_argument("query")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--n-probe", type=int, default=None)
    p.add_argument("--topic", action="append", help="search within this topic id or label (repeatable)")
    p.add_argument("--where", default=None, help='Chroma metadata filter as JSON, e.g. \'{"label": "x"}\'')

    add("info", cmd_info, "what the index holds")
    add("versions", cmd_versions, "list cluster-model versions")
    p = add("rollback", cmd_rollback, "make an older model version active again")
    p.add_argument("version", nargs="?", type=int, default=None)

    p = add("demo", cmd_demo, "ingest the shipped Banking77 sample, cluster it, show topics and searches")
    p.add_argument("--k", type=int, default=None)
    p.set_defaults(path=os.environ.get("CLUSTER_RAG_PATH", "./cluster-rag-demo"))

    p = add("choose-k", cmd_choose_k, "sweep k on a sample: inertia knee, silhouette, Davies-Bouldin, "
            "Calinski-Harabasz; recommend a k")
    p.add_argument("--min", type=int, default=5, help="smallest k (default 5)")
    p.add_argument("--max", type=int, default=200, help="largest k (default 200)")
    p.add_argument("--points", type=int, default=16, help="ks swept, geometric grid (default 16)")
    p.add_argument("--sample", type=int, default=10_000, help="rows fitted per k (default 10000)")
    p.add_argument("--png", default=None, help="write the four curves to this PNG (needs cluster-rag[plot])")

    p = add("eval", cmd_eval, "measure the active model: sizes and inertia; V-measure/NMI/ARI/purity against "
            "a metadata label; recall@k and nDCG@10 of routed vs exact search given queries and qrels")
    p.add_argument("--label-field", default=None, help="metadata key holding a gold label, e.g. label")
    p.add_argument("--queries", default=None,
                   help="queries: JSONL {id, text} or TSV/CSV with id,text columns")
    p.add_argument("--qrels", default=None, help="judgments: TSV with query_id, doc_id, score (BEIR) or TREC")
    p.add_argument("--png", default=None, help="write the cluster size distribution to this PNG")

    p = add("mcp", cmd_mcp, "serve list_topics / search_within_topic / get_document over MCP (stdio)")
    p.set_defaults(quiet=True)  # stdout carries the protocol: no progress bars, ever
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet or args.json:
        args.quiet = True
        _quiet_libraries()
    try:
        args.func(args)
    except ClusterRagError as exc:
        print(f"cluster-rag: error: {exc}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"cluster-rag: error: --where is not valid JSON ({exc})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
