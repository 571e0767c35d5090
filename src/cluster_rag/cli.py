"""The ``cluster-rag`` command line (click + rich).

Every store command takes ``--path DIR`` (embedded Chroma; default ``$CLUSTER_RAG_PATH``
or ``./kb``; the ``demo`` command alone defaults to ``./cluster-rag-demo``) or
``--chroma-url URL`` (a Chroma server, default ``$CLUSTER_RAG_CHROMA_URL``),
``--collection``, ``--model``, ``--json`` (machine-readable stdout) and ``--quiet``
(no progress). Tables are drawn with rich; progress bars and step lines go to
stderr and are on by default. ``mcp`` never writes progress (stdout carries the
protocol). Library errors exit with status 2 and one line on stderr; a closed
pipe (``cluster-rag topics | head``) ends quietly.

Why click and not typer: the options here are plain flags shared by many commands
and a few custom types (``--k auto``, ``--where`` JSON), which click's explicit
decorators express directly; typer would add a layer (and its own import time)
on top of click without changing what users see. Rich draws the tables.

Only commands that embed text (``ingest`` of new or edited text, ``search``, ``demo``)
load the embedding model; ``topics``, ``info``, ``versions`` import neither torch nor
sentence-transformers (measured: ~1.6 s, most of it importing chromadb, against ~13 s
for one model load plus one query on the project's 2-core machine). Read commands never
create a store: a missing one is a :class:`~cluster_rag.errors.StoreNotFoundError`.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .errors import ClusterRagError, InvalidInputError, MissingDependencyError, StoreNotFoundError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from .config import IndexConfig
    from .index import ClusterIndex
    from .versioning import RefitReport

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

DEMO_QUERIES = (
    "my new card still hasn't arrived",
    "how much does it cost to take cash out of an ATM",
    "I forgot my passcode",
)
DEFAULT_PATH = "./kb"
DEMO_PATH = "./cluster-rag-demo"


# options shared by the store commands ---------------------------------------------------
@dataclass(frozen=True)
class Opts:
    """Where the index lives and how to print, from the shared flags of one command."""

    path: str
    chroma_url: str | None
    collection: str | None
    model: str | None
    json: bool
    quiet: bool

    @property
    def progress(self) -> bool:
        return not self.quiet


def store_options(*, default_path: str = DEFAULT_PATH, always_quiet: bool = False) -> Callable[[F], F]:
    """Add ``--path/--chroma-url/--collection/--model/--json/--quiet`` and pass them as ``opts``.

    Args:
        default_path: folder used when neither ``--path`` nor ``$CLUSTER_RAG_PATH`` is given.
        always_quiet: the command never shows progress (``mcp``: stdout is the protocol).
    """

    def decorate(func: F) -> F:
        @click.option("--path", default=None, metavar="DIR",
                      help=f"embedded Chroma folder (default $CLUSTER_RAG_PATH or {default_path})")
        @click.option("--chroma-url", default=None, metavar="URL",
                      help="Chroma server, e.g. http://127.0.0.1:8000 (default $CLUSTER_RAG_CHROMA_URL)")
        @click.option("--collection", default=None, help="collection name (default cluster_rag)")
        @click.option("--model", default=None, help="sentence-transformers model name or path")
        @click.option("--json", "as_json", is_flag=True, help="machine-readable output on stdout")
        @click.option("--quiet", "-q", is_flag=True, help="no progress bars or step lines")
        @functools.wraps(func)
        def wrapper(
            *args: Any,
            path: str | None,
            chroma_url: str | None,
            collection: str | None,
            model: str | None,
            as_json: bool,
            quiet: bool,
            **kwargs: Any,
        ) -> Any:
            if path is not None and chroma_url is not None:
                raise click.UsageError("pass either --path or --chroma-url, not both")
            if path is None and chroma_url is None:
                chroma_url = os.environ.get("CLUSTER_RAG_CHROMA_URL") or None
            resolved = path or os.environ.get("CLUSTER_RAG_PATH") or default_path
            quiet = quiet or as_json or always_quiet
            if quiet:
                _quiet_libraries()
            opts = Opts(resolved, chroma_url, collection, model, as_json, quiet)
            return func(*args, opts=opts, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _quiet_libraries() -> None:
    """Silence third-party progress bars and advisories without importing them (env is read at import)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TQDM_DISABLE"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "transformers" in sys.modules:  # already imported (in-process callers): tell it directly
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        except Exception:  # transformers internals moved: only cosmetics are lost
            pass


def _config(opts: Opts) -> IndexConfig:
    from .config import IndexConfig

    return IndexConfig.from_env(collection=opts.collection, model=opts.model, progress=opts.progress)


def _open(opts: Opts, *, create: bool) -> ClusterIndex:
    """The index the flags name; ``create=False`` (every read command) never creates anything."""
    from .index import ClusterIndex

    config = _config(opts)
    if opts.chroma_url:
        return ClusterIndex.connect(opts.chroma_url, config=config, create=create)
    folder = Path(opts.path)
    if not create:
        if not folder.exists():
            raise StoreNotFoundError(
                f"no index at {opts.path!r}; run `cluster-rag ingest FILES --path {opts.path}` first "
                "(or pass --path DIR / --chroma-url URL)"
            )
        if not (folder / "chroma.sqlite3").is_file():
            raise StoreNotFoundError(
                f"{opts.path!r} is not a cluster-rag index (no chroma.sqlite3 inside); check --path"
            )
    try:
        return ClusterIndex.open(folder, config=config, create=create)
    except StoreNotFoundError as exc:
        raise StoreNotFoundError(f"{exc}{_collections_hint(folder)}") from None


def _collections_hint(folder: Path) -> str:
    """``" (collections at PATH: a, b)"``: what the folder holds, for a StoreNotFoundError."""
    try:
        import chromadb

        client = chromadb.PersistentClient(path=str(folder))
        names = sorted(c if isinstance(c, str) else c.name for c in client.list_collections())
    except Exception:  # the hint is a courtesy; the error itself stands
        return ""
    names = [n for n in names if not n.endswith(("__centroids", "__meta"))]
    return f" (collections at {str(folder)!r}: {', '.join(names) or 'none'})"


# output -----------------------------------------------------------------------------------
def _console(stderr: bool = False) -> Console:
    """A rich console on the current stdout/stderr (built per call: in-process callers swap streams)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    # piped output: no wrapping at 80 columns and no colour codes, so scripts and `| head` see plain rows
    return Console(
        file=stream, highlight=False, markup=False, emoji=False, soft_wrap=not tty,
        width=None if tty else 10_000,
    )


#: ``rich.box.SIMPLE_HEAD`` drawn with ASCII: piped tables stay plain text.
_ASCII_HEAD = "    \n    \n -- \n    \n    \n    \n    \n    \n"



def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> RenderableType:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    head = box.SIMPLE_HEAD if _console().is_terminal else box.Box(_ASCII_HEAD)
    table = Table(box=head, show_edge=False, pad_edge=False, header_style="bold")
    numeric = [bool(rows) and all(_is_number(r[i]) for r in rows) for i in range(len(headers))]
    for header, right in zip(headers, numeric, strict=True):
        table.add_column(header, justify="right" if right else "left", overflow="fold")
    for row in rows:
        table.add_row(*(Text(str(c)) for c in row))
    return table


def _is_number(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _emit(opts: Opts, data: Any, *parts: RenderableType | str) -> None:
    """JSON of ``data`` with ``--json``, else the parts (text or rich renderables), blank-line separated."""
    if opts.json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    console = _console()
    for i, part in enumerate(parts):
        if i:
            console.print()
        _print(console, part)


def _print(console: Console, part: RenderableType | str) -> None:
    """Print one part; piped output loses the padding rich adds at line ends."""
    if console.is_terminal:
        console.print(part)
        return
    with console.capture() as captured:
        console.print(part)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def _step(opts: Opts, message: str) -> None:
    """One progress line on stderr (``--quiet`` silences it)."""
    if not opts.quiet:
        _console(stderr=True).print(f"· {message}", style="dim")


def _warn(message: str) -> None:
    click.echo(f"cluster-rag: warning: {message}", err=True)


def _short(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _plural(n: int | float, word: str, many: str | None = None) -> str:
    """``1 cluster``, ``3 clusters``, ``~1.5 clusters`` (non-integers are plural)."""
    one = isinstance(n, int) and n == 1 or (isinstance(n, float) and n == 1.0)
    return word if one else (many or f"{word}s")


def _topics_parts(
    index: ClusterIndex, level: int | None = None
) -> tuple[list[dict[str, Any]], RenderableType]:
    topics = index.topics() if level is None else index.topics(level=level)
    sourced = any(t.label_source != "keywords" for t in topics)  # who named them, once an LLM/person did
    described = any(t.description for t in topics)
    headers = ["id", "size", "label"] + ["source"] * sourced + ["description"] * described + ["keywords"]
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
    return [t.to_dict() for t in topics], _table(rows, headers)


def _hits_part(hits: Sequence[Any]) -> RenderableType | str:
    rows = [
        [i + 1, f"{h.score:.3f}", h.topic_id, _short(h.topic_label or "", 28), _short(h.text, 64)]
        for i, h in enumerate(hits)
    ]
    return _table(rows, ["#", "score", "topic", "label", "text"]) if rows else "(no hits)"


def _refit_lines(report: RefitReport) -> list[str]:
    """The refit report, one line per kind of change (ids listed, at most 12 per line)."""

    def ids(values: Sequence[Any]) -> str:
        shown = ", ".join(map(str, values[:12]))
        return shown + (f", … ({len(values) - 12} more)" if len(values) > 12 else "")

    relabeled = report.relabeled
    lines = [f"topics vs version {report.previous_version}:"]
    kept = f"  kept    {len(report.kept):>4}"
    lines.append(kept + (f"  ({len(relabeled)} relabeled: {ids(relabeled)})" if relabeled else ""))
    lines.append(f"  new     {len(report.new):>4}" + (f"  {ids(report.new)}" if report.new else ""))
    merged = [f"{m.topic_id} <- {'+'.join(map(str, m.sources))}" for m in report.merged]
    lines.append(f"  merged  {len(report.merged):>4}" + (f"  {ids(merged)}" if merged else ""))
    split = [f"{s.topic_id} -> {'+'.join(map(str, s.into))}" for s in report.split]
    lines.append(f"  split   {len(report.split):>4}" + (f"  {ids(split)}" if split else ""))
    lines.append(f"  gone    {len(report.gone):>4}" + (f"  {ids(report.gone)}" if report.gone else ""))
    return lines


# the command group ------------------------------------------------------------------------
def _version() -> str:
    from . import __version__

    return __version__


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:  # keep the order of the README
        return list(self.commands)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(_version(), prog_name="cluster-rag", message="%(prog)s %(version)s")
def cli() -> None:
    """Turn a pile of text into topics; routed search, labels, drift and versions over Chroma."""


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--text-field", default="text", show_default=True, help="JSONL key / CSV column with the text")
@click.option("--delete-missing", is_flag=True,
              help="also delete the chunks of files gone from these folders (default: keep them, say so)")
@store_options()
def ingest(files: tuple[str, ...], text_field: str, delete_missing: bool, opts: Opts) -> int:
    """Add or update .txt/.md/.jsonl/.csv (.jsonl.gz/.csv.gz) files or folders.

    Unchanged chunks are skipped, edited ones replaced; files that are gone keep
    their chunks unless --delete-missing is given.
    """
    from .ingest import load_chunks, sync_chunks

    config = _config(opts)
    present = [f for f in files if Path(f).exists()] if delete_missing else list(files)
    _step(opts, f"reading {', '.join(files)}")
    chunks = load_chunks(  # read and validate every file before a store is created
        present, chunk_size=config.chunk_size, overlap=config.chunk_overlap, text_field=text_field
    )
    if not chunks and not delete_missing:
        from .ingest import SUPPORTED_SUFFIXES

        raise InvalidInputError(
            f"found no text to ingest in {', '.join(files)} (supported: {', '.join(SUPPORTED_SUFFIXES)}); "
            "nothing was written"
        )
    index = _open(opts, create=True)
    _step(opts, f"syncing {len(chunks)} chunks with {index.location or index.store.name}")
    report = sync_chunks(index, chunks, list(files), delete_missing=delete_missing, progress=opts.progress)
    total = len(index)
    lines = [f"{report.summary()}; {total} stored"]
    if report.changed and index.is_fitted:
        lines[0] += " (assigned to the nearest topics; run `cluster-rag cluster` to refit)"
    if report.missing_sources:
        lines.append(
            f"{len(report.missing_sources)} file(s) gone from these folders still have chunks stored "
            f"(e.g. {report.missing_sources[0]}); add --delete-missing to remove them"
        )
    _emit(opts, {**report.counts(), "total": total, "deleted_sources": report.deleted_sources,
                 "missing_sources": report.missing_sources}, "\n".join(lines))
    return 0


def _k_value(ctx: click.Context, param: click.Parameter, value: str | None) -> int | str | None:
    """``--k``: an int, or ``auto`` (the size rule; broad topics come from the topic tree)."""
    if value is None:
        return None
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} must be an int or 'auto'") from None


@cli.command()
@click.option("--k", default=None, callback=_k_value, metavar="INT|auto",
              help="number of topics (routing clusters); default and 'auto': round(sqrt(n)); every fit "
              "also chooses broad topics from its topic tree (see `cluster-rag topics --level`)")
@click.option("--engine", default="auto", show_default=True,
              type=click.Choice(["auto", "sklearn", "minibatch", "faiss"]))
@click.option("--partial", is_flag=True,
              help="no refit: fold chunks added since the fit into the active centroids (online update)")
@store_options()
def cluster(k: int | str | None, engine: str, partial: bool, opts: Opts) -> int:
    """Fit K-Means and make it the active model version."""
    index = _open(opts, create=False)
    if partial:
        folded = index.partial_fit()
        model = index.model_info
        _emit(
            opts,
            {"folded": folded, "version": model.version},
            f"folded {folded} {_plural(folded, 'chunk')} added since the fit into the centroids of model "
            f"version {model.version} (updated in place; topics and ids unchanged)",
        )
        return 0
    _step(opts, f"fitting k-means on {len(index)} chunks")
    info = index.fit(k=k, engine=engine)
    report = index.refit_report()
    probe = info.n_probe
    text = (
        f"model version {info.version}: k={info.k} over {info.n_chunks} chunks ({info.engine})\n"
        f"default route: clusters within {info.probe_gap or 0:.3f} of the best centroid score, "
        f"~{probe} {_plural(probe, 'cluster')} per query (recall@10 {info.calibrated_recall:.3f} "
        "vs exact on a sample)"
    )
    tree = index.topic_tree()
    broad = len(tree.top)
    text += f"\ntopic tree: {broad} broad {_plural(broad, 'topic')} over the {info.k} (levels 0-{tree.depth})"
    if report is not None:
        text += "\n" + "\n".join(_refit_lines(report))
    data = {**info.to_dict(), "broad_topics": broad, "refit": report.to_dict() if report else None}
    _emit(opts, data, text)
    return 0


def _drift_options(func: F) -> F:
    from dataclasses import fields

    from .drift import DriftThresholds

    for f in reversed(fields(DriftThresholds)):
        func = click.option(
            f"--{f.name.replace('_', '-')}", f.name, type=type(f.default), default=None,
            help=f"threshold (default {f.default}; see cluster_rag.drift.DriftThresholds)",
        )(func)
    return func


@cli.command()
@_drift_options
@store_options()
def drift(opts: Opts, **thresholds: float | None) -> int:
    """Compare chunks added since the fit with the fit's baseline; recommend ok / partial update / refit."""
    from .drift import DriftThresholds

    index = _open(opts, create=False)
    given: dict[str, Any] = {k: v for k, v in thresholds.items() if v is not None}
    report = index.drift(DriftThresholds(**given))
    th = report.thresholds
    labels = {t.id: t.label for t in index.topics()}
    lines = [
        f"model version {report.version}: {report.n_added} {_plural(report.n_added, 'chunk')} added since "
        f"the fit ({report.n_fit} fitted)",
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
    parts: list[RenderableType | str] = ["\n".join(lines)]
    grown = sorted((g for g in report.growth if g.added), key=lambda g: (-g.growth, g.topic_id))[:10]
    if grown:
        rows = [
            [g.topic_id, _short(labels.get(g.topic_id, ""), 40), g.size_at_fit, g.added, f"{g.growth:.2f}"]
            for g in grown
        ]
        parts.append(_table(rows, ["id", "label", "size at fit", "added", "growth"]))
    _emit(opts, report.to_dict(), *parts)
    return 0


@cli.command()
@click.option("--level", type=click.IntRange(min=0), default=None,
              help="a level of the topic tree: 0 = the topics (default), higher = broader; "
              "the broad topics are the top level")
@store_options()
def topics(level: int | None, opts: Opts) -> int:
    """List topics with size, label, description and keywords."""
    index = _open(opts, create=False)
    data, table = _topics_parts(index, level)
    _emit(opts, data, table)
    return 0


def _labeler(
    llm_base_url: str | None, llm_model: str | None, settings: dict[str, Any]
) -> Any:
    """KeywordLabeler, or an OpenAILabeler on the client the flags describe (key from OPENAI_API_KEY)."""
    from .labeling import KeywordLabeler, OpenAILabeler

    if not llm_base_url and not llm_model:
        return KeywordLabeler()
    if not llm_model:
        raise InvalidInputError(
            f"--llm-base-url {llm_base_url} needs --llm-model NAME (a model that server serves)"
        )
    try:
        from openai import OpenAI
    except ImportError:
        from .errors import missing_dependency

        raise missing_dependency("openai", '"cluster-rag[openai]"') from None
    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        if not llm_base_url:
            raise InvalidInputError(
                "OPENAI_API_KEY is not set; export it, or pass --llm-base-url for a local server"
            )
        key = "no-key"  # local OpenAI-compatible servers (llama.cpp, vLLM, Ollama) ignore it
    client = OpenAI(base_url=llm_base_url or None, api_key=key)
    return OpenAILabeler(client, llm_model, **{k: v for k, v in settings.items() if v is not None})


@cli.command()
@click.option("--llm-base-url", default=None, metavar="URL",
              help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1 (key: $OPENAI_API_KEY)")
@click.option("--llm-model", default=None, help="model name; without --llm-base-url: OpenAI's API")
@click.option("--force", is_flag=True, help="relabel unchanged topics too (pinned ones stay)")
@click.option("--concurrency", type=int, default=None,
              help="most requests in flight (default 4; a local server starts at 1 and the labeler adapts)")
@click.option("--timeout", type=float, default=None, help="seconds per request (default: the labeler's)")
@click.option("--max-retries", type=int, default=None, help="retries on timeouts, 429 and 5xx")
@click.option("--max-tokens", type=int, default=None, help="completion tokens per answer (default 200)")
@store_options()
def label(
    llm_base_url: str | None,
    llm_model: str | None,
    force: bool,
    concurrency: int | None,
    timeout: float | None,
    max_retries: int | None,
    max_tokens: int | None,
    opts: Opts,
) -> int:
    """Name topics: keyword labels, or an LLM behind any OpenAI-compatible server."""
    index = _open(opts, create=False)
    settings = {"concurrency": concurrency, "timeout": timeout, "max_retries": max_retries,
                "max_tokens": max_tokens}
    labeler = _labeler(llm_base_url, llm_model, settings)
    name = getattr(labeler, "cache_id", type(labeler).__name__)
    _step(opts, f"labeling {len(index.topics())} topics with {name}")
    report = index.label(labeler, force=force)
    rows = [
        [s.topic_id, s.level, s.status, _short(s.label, 40), _short(s.error or "", 70)]
        for s in [*report.topics, *report.parents]
    ]
    counts = ", ".join(f"{n} {status}" for status, n in report.counts().items() if n)
    parents = ", ".join(f"{n} {status}" for status, n in report.parent_counts().items() if n)
    summary = (
        f"model version {report.version}, labeler {report.labeler}: topics {counts}"
        f"{f'; parent topics {parents}' if parents else ''}; {report.calls} requests, "
        f"{report.prompt_tokens} prompt + {report.completion_tokens} completion tokens"
    )
    _emit(opts, report.to_dict(), _table(rows, ["id", "level", "status", "label", "note"]), summary)
    fallback, parent_fallback = report.counts()["fallback"], report.parent_counts()["fallback"]
    if fallback or parent_fallback:
        also = f" and {parent_fallback} parent topic(s)" if parent_fallback else ""
        _warn(
            f"{fallback} topic(s){also} kept their keyword label (fallback); "
            "`cluster-rag label --force` retries them, `cluster-rag rename` names them by hand"
        )
    return 0


@cli.command()
@click.argument("topic")
@click.argument("name", required=False)
@click.option("--description", default=None, help="one sentence (default: keep the current one)")
@click.option("--unpin", is_flag=True, help="release the pin instead (keeps the name)")
@store_options()
def rename(topic: str, name: str | None, description: str | None, unpin: bool, opts: Opts) -> int:
    """Give TOPIC (an id or its current label) the name NAME and pin it (relabeling keeps it)."""
    index = _open(opts, create=False)
    key: int | str = int(topic) if topic.isdigit() else topic
    if unpin:
        t = index.unpin_topic(key)
        text = f"topic {t.id} ({t.label!r}) is unpinned; `cluster-rag label` may rename it"
    else:
        if name is None:
            raise InvalidInputError('rename needs a NAME, e.g. `cluster-rag rename 3 "Card delivery"`')
        t = index.rename_topic(key, name, description=description)
        text = f"topic {t.id} is now {t.label!r} (pinned: `cluster-rag label` keeps it)"
    _emit(opts, t.to_dict(), text)
    return 0


def _where_value(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        where = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc}); e.g. --where '{{\"lang\": \"en\"}}'") from None
    if not isinstance(where, dict):
        raise click.BadParameter(f"must be a JSON object (a Chroma filter), got {value!r}")
    return where


@cli.command()
@click.argument("query")
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True,
              help="number of chunks returned")
@click.option("--n-probe", type=click.IntRange(min=1), default=None,
              help="clusters searched per query (default: the calibrated gap route)")
@click.option("--topic", "topic_", multiple=True,
              help="search within this topic id or label (repeatable)")
@click.option("--where", default=None, callback=_where_value, metavar="JSON",
              help='Chroma metadata filter as JSON, e.g. \'{"lang": "en"}\'')
@click.option("--mode", type=click.Choice(["hybrid", "dense", "keyword"]), default="hybrid",
              show_default=True, help="routed dense + BM25 keywords fused, or one of them")
@click.option("--rerank", default=None, metavar="SPEC",
              help="re-rank the candidates: mmr[:diversity], cross-encoder:DIR or llm:MODEL@URL")
@store_options()
def search(
    query: str,
    k: int,
    n_probe: int | None,
    topic_: tuple[str, ...],
    where: dict[str, Any] | None,
    mode: str,
    rerank: str | None,
    opts: Opts,
) -> int:
    """Search for QUERY: hybrid (routed dense + BM25) by default."""
    index = _open(opts, create=False)
    wanted: list[int | str] | None = [int(t) if t.isdigit() else t for t in topic_] or None
    reranker = None
    if rerank:
        from .rerank import reranker_from_spec

        reranker = reranker_from_spec(rerank, index)
    _step(opts, "embedding the query")
    hits = index.search(query, k=k, n_probe=n_probe, topics=wanted, where=where, mode=mode, rerank=reranker)
    _emit(opts, [h.to_dict() for h in hits], _hits_part(hits))
    return 0


@cli.command()
@store_options()
def info(opts: Opts) -> int:
    """What the index holds."""
    index = _open(opts, create=False)
    data = index.info()
    _emit(opts, data, "\n".join(f"{k:>18}: {v}" for k, v in data.items()))
    return 0


@cli.command()
@store_options()
def versions(opts: Opts) -> int:
    """List cluster-model versions (* marks the active one)."""
    index = _open(opts, create=False)
    active = index.store.active_version()
    kept = index.versions()
    rows = [
        ["*" if v.version == active else "", v.version, v.k, v.n_chunks, v.engine, v.n_probe, v.created_at]
        for v in kept
    ]
    _emit(
        opts,
        [{**v.to_dict(), "active": v.version == active} for v in kept],
        _table(rows, ["active", "version", "k", "chunks", "engine", "n_probe", "created"]),
    )
    return 0


@cli.command()
@click.argument("version", type=int, required=False)
@store_options()
def rollback(version: int | None, opts: Opts) -> int:
    """Make an older model VERSION active again (default: the one before the active one)."""
    index = _open(opts, create=False)
    model = index.rollback(version)
    _emit(opts, model.to_dict(), f"active model version is now {model.version} (k={model.k})")
    return 0


@cli.command()
@click.option("--k", type=click.IntRange(min=2), default=None, help="topics (default round(sqrt(n)))")
@store_options(default_path=DEMO_PATH)
def demo(k: int | None, opts: Opts) -> int:
    """Ingest the shipped Banking77 sample, cluster it, show topics and searches."""
    from importlib import resources

    from .ingest import sync_files

    sample = resources.files("cluster_rag") / "data" / "banking77_sample.jsonl"
    _step(opts, f"opening {opts.chroma_url or opts.path} and loading the embedding model (first run: ~10 s)")
    index = _open(opts, create=True)
    with resources.as_file(sample) as sample_path:
        report = sync_files(index, [sample_path], progress=opts.progress)
    if not opts.json:
        click.echo(
            f"[1/3] ingested {len(report.added)} new chunks of Banking77 (CC BY 4.0) into "
            f"{index.location}; {len(index)} stored"
        )
    _step(opts, "fitting k-means and calibrating the route")
    model = index.fit(k=k)
    data, table = _topics_parts(index)
    if opts.json:
        searches = {q: [h.to_dict() for h in index.search(q, k=3)] for q in DEMO_QUERIES}
        click.echo(json.dumps({"model": model.to_dict(), "topics": data, "searches": searches}, indent=2))
        return 0
    probe = model.n_probe
    click.echo(
        f"[2/3] fitted model version {model.version}: k={model.k}, ~{probe} {_plural(probe, 'cluster')} "
        f"searched per query (recall@10 {model.calibrated_recall:.3f} vs exact on a sample)\n"
    )
    _print(_console(), table)
    click.echo("\n[3/3] routed search")
    for q in DEMO_QUERIES:
        click.echo(f"\n> {q}")
        _print(_console(), _hits_part(index.search(q, k=3)))
    click.echo(f'\nNext: cluster-rag search --path {opts.path} "your question"')
    return 0


def _scope_option(func: F) -> F:
    decorated: F = click.option(
        "--scope", "scope_json", default=None, metavar="JSON",
        help='answer only within this access scope, e.g. \'{"tenant": "A"}\' or '
             '\'{"where": {...}, "topics": [1, 2], "collection": "kb_a"}\' (default $CLUSTER_RAG_SCOPE)',
    )(func)
    return decorated


def _scope(scope_json: str | None, opts: Opts) -> tuple[Any, Opts]:
    """The session's scope (``--scope``, else ``$CLUSTER_RAG_SCOPE``) and the options with its collection."""
    from .scope import Scope

    scope = Scope.parse(scope_json) if scope_json is not None else Scope.from_env()
    if scope is not None and scope.collection is not None and opts.collection is None:
        opts = replace(opts, collection=scope.collection)
    return scope, opts


@cli.command()
@_scope_option
@click.option("--audit", is_flag=True,
              help="log one JSON line per tool call (tool, arguments, scope, ids; never texts) on stderr")
@click.option("--rerank", default=None, metavar="SPEC",
              help="re-rank search_within_topic's hits: mmr[:diversity], cross-encoder:DIR or llm:MODEL@URL")
@store_options(always_quiet=True)
def mcp(scope_json: str | None, audit: bool, rerank: str | None, opts: Opts) -> int:
    """Serve list_topics / search_within_topic / get_document over MCP (stdio)."""
    import logging

    from .mcp_server import build_server
    from .tools import audit_logger

    scope, opts = _scope(scope_json, opts)
    index = _open(opts, create=False)
    model = index.model_info  # no cluster model: exit 2 now, not on the first tool call
    hook = None
    if audit:
        log = logging.getLogger("cluster_rag.audit")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s audit %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
        hook = audit_logger(log)
    from .rerank import reranker_from_spec
    from .tools import TopicTools

    reranker = reranker_from_spec(rerank, index) if rerank else None
    tools = TopicTools(index, scope=scope, audit=hook, reranker=reranker)
    server = build_server(index, tools=tools)  # MissingDependencyError names the pip line
    scoped = " within an access scope" if scope is not None else ""
    click.echo(
        f"cluster-rag: serving {index.location} (model version {model.version}, k={model.k}) over MCP "
        f"stdio{scoped}",
        err=True,
    )
    server.run("stdio")
    return 0


def _png_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--png FILE``: checked before any work (a sweep takes seconds to minutes)."""
    if value is not None and not value.lower().endswith(".png"):
        raise click.BadParameter(f"{value!r} must be a file name ending in .png")
    return value


@cli.command(name="choose-k")
@click.option("--min", "k_min", type=int, default=5, show_default=True, help="smallest k")
@click.option("--max", "k_max", type=int, default=200, show_default=True, help="largest k")
@click.option("--points", type=click.IntRange(min=2), default=16, show_default=True,
              help="ks swept, geometric grid (k_min and k_max always among them)")
@click.option("--sample", type=int, default=10_000, show_default=True, help="rows fitted per k")
@click.option("--png", default=None, metavar="FILE", callback=_png_value,
              help="write the four curves to this PNG (cluster-rag[plot])")
@store_options()
def choose_k(k_min: int, k_max: int, points: int, sample: int, png: str | None, opts: Opts) -> int:
    """Sweep k on a sample (inertia knee, silhouette, Davies-Bouldin, Calinski-Harabasz); recommend one."""
    from .clustering.choose_k import KSweep, sweep_k

    index = _open(opts, create=False)
    _, vectors, _ = index.store.load_all()
    _step(opts, f"sweeping {points} values of k in [{k_min}, {k_max}] on <= {sample} of {len(vectors)} rows")
    sweep = sweep_k(
        vectors, k_min, k_max, n_points=points, sample=sample, random_state=index.config.seed,
        progress=opts.progress,
    )
    data = sweep.to_dict()
    if png:
        from .plots import plot_choose_k

        data["png"] = str(plot_choose_k(sweep, png, title=f"choose k: {index.location or index.store.name}"))
    headers = [h or "chosen as" for h in KSweep.HEADERS]  # the marker column gets a name
    text = (
        f"recommended k = {sweep.recommended} (knee {sweep.knee}, best silhouette {sweep.best_silhouette}; "
        f"{sweep.n_sample} rows sampled, silhouette on {sweep.n_silhouette})\nrule: {sweep.rule}"
    )
    if png:
        text += f"\nplot: {data['png']}"
    text += f"\nnext: cluster-rag cluster --path {opts.path} --k {sweep.recommended}"
    _emit(opts, data, _table(sweep.rows(), headers), text)
    return 0


@cli.command(name="eval")
@click.option("--label-field", default=None, help="metadata key holding a gold label, e.g. label")
@click.option("--queries", default=None, metavar="FILE",
              help="queries: JSONL {id, text} or TSV/CSV with id,text")
@click.option("--qrels", default=None, metavar="FILE",
              help="judgments: TSV query_id, doc_id, score (BEIR) or TREC")
@click.option("--png", default=None, metavar="FILE", callback=_png_value,
              help="write the cluster size distribution to this PNG")
@click.option("--rerank", "rerank_specs", multiple=True, metavar="SPEC",
              help="with --queries: also score this re-ranker over hybrid search (repeatable)")
@store_options()
def eval_(
    label_field: str | None,
    queries: str | None,
    qrels: str | None,
    png: str | None,
    rerank_specs: tuple[str, ...],
    opts: Opts,
) -> int:
    """Measure the active model: sizes and inertia; V-measure/NMI/ARI/purity against a metadata label;
    recall@k and nDCG@10 of routed vs exact search given queries and qrels."""
    from .evaluation import evaluate, load_qrels, load_queries

    if (queries is None) != (qrels is None):
        raise InvalidInputError("pass --queries FILE and --qrels FILE together")
    index = _open(opts, create=False)
    result = evaluate(
        index,
        label_field=label_field,
        queries=load_queries(queries) if queries else None,
        qrels=load_qrels(qrels) if qrels else None,
    )
    data = result.to_dict()
    s = result.sizes
    parts: list[RenderableType | str] = [
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
            f"labels from metadata {result.label_field!r}: {lab.n_rows} chunks, {lab.n_classes} classes"
        )
        parts.append(_table(
            [[f"{lab.v_measure:.4f}", f"{lab.homogeneity:.4f}", f"{lab.completeness:.4f}",
              f"{lab.nmi:.4f}", f"{lab.ari:.4f}", f"{lab.purity:.4f}"]],
            ["V-measure", "homogeneity", "completeness", "NMI", "ARI", "purity"],
        ))
    if result.retrieval is not None:
        r = result.retrieval
        metrics = list(r.exact)
        rows = [["exact", *(f"{r.exact[m]:.4f}" for m in metrics), f"{result.k}", "1.000"]]
        rows.append([f"routed ({r.route})", *(f"{r.routed[m]:.4f}" for m in metrics),
                     f"{r.routed['n_probe']:.1f}", f"{r.routed['searched']:.3f}"])
        parts.append(f"retrieval over {r.n_queries} queries")
        parts.append(_table(rows, ["search", *metrics, "clusters", "searched"]))
        curve = [[int(c["n_probe"]), f"{c['recall@10']:.4f}", f"{c['ndcg@10']:.4f}", f"{c['overlap@10']:.4f}",
                  f"{c['searched']:.3f}"] for c in r.curve]
        parts.append("n_probe curve")
        parts.append(_table(curve, ["n_probe", "recall@10", "ndcg@10", "overlap@10 vs exact", "searched"]))
    if queries and qrels:
        from .hybrid import compare_modes
        from .rerank import reranker_from_spec

        _step(opts, "scoring dense / keyword / hybrid search" + (" and re-rankers" if rerank_specs else ""))
        rerankers = {spec: reranker_from_spec(spec, index) for spec in rerank_specs}
        scores = compare_modes(index, load_queries(queries), load_qrels(qrels), rerankers=rerankers)
        data["modes"] = [asdict(m) for m in scores]
        parts.append("search modes (documents, as the qrels judge them)")
        parts.append(_table(
            [[m.name, f"{m.ndcg_at_10:.4f}", f"{m.recall_at_100:.4f}", f"{m.p50_ms:.1f}"] for m in scores],
            ["search", "nDCG@10", "recall@100", "p50 ms"],
        ))
    if png:
        from .plots import plot_sizes

        data["png"] = str(plot_sizes(s.sizes, png, title=f"cluster sizes, version {result.version}"))
        parts.append(f"plot: {data['png']}")
    _emit(opts, data, *parts)
    return 0


def _web(command: str) -> Any:
    """``cluster_rag.web``, or a MissingDependencyError when this installation lacks it."""
    import importlib

    try:
        return importlib.import_module("cluster_rag.web")
    except ModuleNotFoundError as exc:
        if exc.name not in {"cluster_rag.web"}:
            raise MissingDependencyError(
                f"`cluster-rag {command}` needs {exc.name!r}: pip install \"cluster-rag[web]\""
            ) from exc
        raise MissingDependencyError(
            f"`cluster-rag {command}` needs the cluster_rag.web module, which this installation of "
            "cluster-rag does not have; upgrade cluster-rag and pip install \"cluster-rag[web]\""
        ) from exc


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="TCP port")
@_scope_option
@store_options()
def serve(host: str, port: int, scope_json: str | None, opts: Opts) -> int:
    """Browse topics and search in a web page served on HOST:PORT."""
    web = _web("serve")
    scope, opts = _scope(scope_json, opts)
    index = _open(opts, create=False)
    if scope is not None:
        web.serve(index, host=host, port=port, quiet=opts.quiet, scope=scope)
    else:
        web.serve(index, host=host, port=port, quiet=opts.quiet)
    return 0


@cli.command()
@click.option("--html", "html", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write a self-contained HTML report here")
@click.option("--png", "png_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="write the report's plots as PNG files into this folder")
@store_options()
def report(html: Path | None, png_dir: Path | None, opts: Opts) -> int:
    """Write a report of the topics (HTML and/or PNG plots)."""
    if html is None and png_dir is None:
        raise click.UsageError("pass --html OUT.html and/or --png DIR")
    web = _web("report")
    index = _open(opts, create=False)
    written = web.write_report(index, html=html, png_dir=png_dir)
    _emit(opts, {"written": [str(p) for p in written]}, "\n".join(f"wrote {p}" for p in written))
    return 0


@cli.command()
@store_options()
def repair(opts: Opts) -> int:
    """Check a store and repair it: undo or finish writes of killed processes, rebuild a collection
    whose files cannot be read (texts re-embedded if its vectors are lost), and make the newest
    complete version active if the active one is broken."""
    from .repair import repair_store

    if opts.chroma_url:
        from .connection import http_client

        client = http_client(opts.chroma_url)
    else:
        from .connection import persistent_client

        client = persistent_client(Path(opts.path), create=False)
    config = _config(opts)

    def embed(texts: list[str]) -> Any:
        from .embedding import SentenceTransformerEmbedder, normalize

        model = SentenceTransformerEmbedder(config.model, batch_size=config.batch_size)
        return normalize(model.embed(texts, progress=opts.progress))

    report = repair_store(client, config.collection, embed=embed)
    lines = report.messages or ["the store is readable and complete; nothing to repair"]
    _emit(opts, {"messages": report.messages, "chunks": report.chunks, "reembedded": report.reembedded},
          "\n".join(lines))
    return 0


# entry point --------------------------------------------------------------------------------
def _silence_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the interpreter's final flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (captured in-process): nothing to flush
        pass


def _check_args(args: Sequence[str]) -> None:
    """Every argument is valid text: a lone surrogate (a file name in another encoding, which Python
    hands on as ``\\udcXX``) could be neither opened by name nor stored, so it stops here, named.

    Raises:
        InvalidInputError: the first such argument, with the position and the fix.
    """
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError as exc:
            shown = repr(arg) if len(arg) <= 60 else repr(arg[:57]) + "..."
            raise InvalidInputError(
                f"argument {shown} is not valid UTF-8 text (lone surrogate U+{ord(arg[exc.start]):04X} at "
                f"position {exc.start}, e.g. a file name in another encoding); rename the file or pass "
                "UTF-8 text"
            ) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 aborted or closed pipe, 2 usage or library error).

    A closed stdout (``cluster-rag topics | head``) ends quietly: click exits 1 without a
    traceback when a write fails with EPIPE; a failure in the final flush is caught here.
    """
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        _check_args(args)
        result = cli.main(args=args, prog_name="cluster-rag", standalone_mode=False)
        sys.stdout.flush()
    except ClusterRagError as exc:
        click.echo(f"cluster-rag: error: {_one_line(exc)}", err=True)
        return 2
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("cluster-rag: aborted", err=True)
        return 1
    except BrokenPipeError:  # `cluster-rag topics | head`: the reader left; that is not an error to report
        _silence_stdout()
        return 1
    except KeyboardInterrupt:
        click.echo("cluster-rag: interrupted", err=True)
        return 130
    except Exception as exc:  # a store, sqlite, OS or HTTP error outside the library's calls: one line
        from .guard import translate

        err = translate(exc)
        if err is None:
            raise
        click.echo(f"cluster-rag: error: {_one_line(err)}", err=True)
        return 2
    return result if isinstance(result, int) else 0


def _one_line(exc: BaseException) -> str:
    """The message on one line: a value holding a newline (``--path $'a\\nb'``) is shown escaped."""
    return str(exc).replace("\r", "\\r").replace("\n", "\\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
