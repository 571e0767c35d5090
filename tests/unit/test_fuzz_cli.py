"""Property-based fuzzing of the command line (issue 16 item 6): every ``cluster-rag`` command with
generated arguments — unknown flags, wrong types and ranges, odd paths (a file where a folder is
expected, missing paths, an empty folder, the store's own database file, names with newlines or
surrogates) — run in-process through :func:`cluster_rag.cli.main` inside click's ``CliRunner``
isolation. Each run must:

- exit 0, or exit 2 with an error (``cluster-rag: error: …`` or click's ``Error: …``) that names
  something the user typed, never a Python traceback and never an exception out of ``main``;
- leave no store behind when the command only reads (``topics``, ``search``, ``info``, …);
- leave the store unchanged (chunk count and a hash of every collection's ids, texts and
  metadata) when the command failed, and always for a read command.

The embedder is the hashing fake (argument handling is the logic under test; the real model's paths
are covered by tests/integration/test_cli*.py). Derandomized, fixed budget: ``EXAMPLES[command]``
examples per command (``FUZZ_CLI_SCALE`` multiplies them); ``mcp`` runs with an empty stdin, so a
valid start ends at once; ``serve`` and ``label --llm-base-url`` (which would block or dial out)
only get arguments that fail before serving or calling.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.cli import main
from tests.fixtures import FakeEmbedder

#: the store is built under the default model's name, so commands without --model open it
DEFAULT_MODEL = IndexConfig().model

SCALE = float(os.environ.get("FUZZ_CLI_SCALE", "1"))
#: examples per command (the fixed budget)
EXAMPLES = {
    "ingest": 14, "cluster": 10, "drift": 8, "topics": 8, "label": 8, "rename": 10, "search": 16,
    "info": 5, "versions": 5, "rollback": 8, "demo": 2, "mcp": 5, "choose-k": 8, "eval": 8, "serve": 5,
    "report": 3, "repair": 5,
}
READ_ONLY = {"topics", "search", "info", "versions", "drift", "eval", "choose-k", "serve", "mcp", "report"}

# values ---------------------------------------------------------------------------------------
ODD_TEXT = ["", " ", "-", "--", "-x", "--k", "\n", "a\nb", "\ud800", "x\udcffy", "é" * 3, "x" * 5000,
            "0", "-1", "1e3", "nan", "inf", "1" * 200, "null", "{}", "[1]", "../../etc/passwd", "\x00"]
text = st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=12))
ints = st.one_of(
    st.integers(min_value=-5, max_value=60).map(str),
    st.sampled_from(["0", "-1", "1" * 40, "2.5", "abc", "", " 3", "0x10", "1e2"]),
)
floats = st.one_of(
    st.sampled_from(["0", "-1", "0.5", "1", "2", "nan", "inf", "-inf", "1e309", "x", ""]),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)
WHERE = ['{"label": "a"}', '{"label": {"$in": ["a", "b"]}}', '{"$bogus": 1}', "{}", "[]", '"label"', "{",
         '{"label": {"$regex": "a"}}', '{"label": {"$in": []}}', '{"label": ["a"]}', '{"$and": []}',
         '{"a": 1e400}', '{"\ud800": 1}']
SCOPE = ['{"label": "a"}', '{"where": {"label": "b"}, "topics": [0]}', '{"tenant": "A"}', "{", "[]", '""',
         '{"topics": "x"}', '{"collection": "../x"}', '{"where": {"$bogus": 1}}']
RERANK = ["mmr", "mmr:0.3", "mmr:2", "mmr:x", "bogus", "cross-encoder:missing-dir", ""]
PATHS = ["kb", "missing/kb", "file.txt", "empty", "kb/chroma.sqlite3", "new\nline", "x\udcffy", "\ud800",
         "", "docs", "docs/a.md"]
URLS = ["not a url", "ftp://x", "http://", "", "http://127.0.0.1:1"]
COLLECTIONS = ["cluster_rag", "a", "../x", "x" * 300, "", "\ud800", "other"]


def opt(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """``[name, value]`` or nothing (a value-less flag comes from :func:`store_opts`' noise)."""
    return st.one_of(st.just([]), values.map(lambda v: [name, v]))


def flag(name: str) -> st.SearchStrategy[list[str]]:
    return st.sampled_from([[], [name]])


def args(values: st.SearchStrategy[str], usual: int = 1) -> st.SearchStrategy[list[str]]:
    """Positional arguments: mostly ``usual`` of them, sometimes none or one too many."""
    exact = st.lists(values, min_size=usual, max_size=usual)
    return st.one_of(exact, exact, exact, st.lists(values, max_size=usual + 1))


def store_opts(paths: list[str] = PATHS) -> list[st.SearchStrategy[list[str]]]:
    """The shared options: mostly the store (``--path kb`` or the default ``./kb``) when ``paths``
    lists ``kb``; else, or sometimes, an odd path, server URL, collection, model or an unknown flag."""
    clean = [st.just(["--path", "kb"]), st.just([])] * 3 if "kb" in paths else []
    somewhere = ["--path", "kb"] if "kb" in paths else ["--path", paths[0]]
    odd = [
        st.sampled_from(paths).map(lambda p: ["--path", p]),
        st.sampled_from(URLS).map(lambda u: [*somewhere, "--chroma-url", u]),
        st.sampled_from(COLLECTIONS).map(lambda c: [*somewhere, "--collection", c]),
        st.sampled_from(["fake-hash-64", "other-model", ""]).map(lambda m: [*somewhere, "--model", m]),
    ]
    noise = st.sampled_from([[]] * 6 + [["--bogus"], ["-x"], ["--json=1"], ["--k"], ["--path"], ["--"]])
    return [st.one_of(*clean, *odd), flag("--json"), flag("--quiet"), noise]


def command(
    name: str, *parts: st.SearchStrategy[list[str]], paths: list[str] = PATHS
) -> st.SearchStrategy[list[str]]:
    """argv for ``name``: its parts and the store options in a random order."""
    groups = st.tuples(*parts, *store_opts(paths))
    return st.tuples(groups, st.randoms(use_true_random=False)).map(
        lambda gr: [name, *_shuffled(list(gr[0]), gr[1])]
    )


def _shuffled(groups: list[list[str]], rnd: Any) -> list[str]:
    rnd.shuffle(groups)
    return [item for group in groups for item in group]


FILES = ["docs", "docs/a.md", "docs/b.jsonl", "missing.txt", "file.txt", "bad.jsonl", "weird.py", "empty",
         "kb", "x\udcffy.md", "\ud800.md", "dup.jsonl", "huge.csv", "-", ""]
ARGV: dict[str, st.SearchStrategy[list[str]]] = {
    "ingest": command(
        "ingest",
        args(st.sampled_from(FILES), usual=2),
        opt("--text-field", st.sampled_from(["text", "body", "", "\ud800", "id"])),
        flag("--delete-missing"),
    ),
    "cluster": command(
        "cluster",
        opt("--k", st.one_of(ints, st.sampled_from(["auto", "AUTO", " auto "]))),
        opt("--engine", st.sampled_from(["auto", "sklearn", "minibatch", "faiss", "bogus"])),
        flag("--partial"),
    ),
    "drift": command(
        "drift",
        opt("--min-added", ints),
        opt("--partial-outlier-share", floats),
        opt("--refit-js", floats),
        opt("--refit-inertia-ratio", floats),
    ),
    "topics": command("topics", opt("--level", ints)),
    "label": command(
        "label",
        flag("--force"),
        opt("--concurrency", ints),
        opt("--timeout", floats),
        opt("--max-retries", ints),
        opt("--max-tokens", ints),
        opt("--llm-model", st.sampled_from(["gpt-x", ""])),
    ),
    "rename": command(
        "rename",
        args(st.one_of(st.sampled_from(["0", "1", "2", "7", "dog"]), text), usual=2),
        opt("--description", text),
        flag("--unpin"),
    ),
    "search": command(
        "search",
        args(st.one_of(st.sampled_from(["dog", "rocket moon", "pasta"]), text)),
        opt("--k", ints),
        opt("--n-probe", ints),
        st.lists(text, max_size=2).map(lambda ts: [x for t in ts for x in ("--topic", t)]),
        opt("--where", st.sampled_from(WHERE)),
        opt("--mode", st.sampled_from(["hybrid", "dense", "keyword", "bogus", ""])),
        opt("--rerank", st.sampled_from(RERANK)),
    ),
    "info": command("info"),
    "versions": command("versions"),
    "rollback": command("rollback", st.lists(ints, max_size=2)),  # no version: the one before
    "demo": command("demo", opt("--k", ints), paths=["demo", "file.txt", "missing/demo", "\ud800"]),
    "mcp": command(
        "mcp",
        opt("--scope", st.sampled_from(SCOPE)),
        flag("--audit"),
        opt("--rerank", st.sampled_from(RERANK)),
    ),
    "choose-k": command(
        "choose-k",
        opt("--min", ints),
        opt("--max", ints),
        opt("--points", ints),
        opt("--sample", ints),
        opt("--png", st.sampled_from(["out.png", "missing/out.png", "empty", "file.txt", "\ud800.png"])),
    ),
    "eval": command(
        "eval",
        opt("--label-field", st.sampled_from(["label", "missing", "", "\ud800"])),
        opt("--queries", st.sampled_from(["queries.jsonl", "file.txt", "missing.jsonl", "docs/a.md"])),
        opt("--qrels", st.sampled_from(["qrels.tsv", "file.txt", "missing.tsv", "empty", "bad.jsonl"])),
        opt("--png", st.sampled_from(["sizes.png", "empty", "missing/x.png"])),
    ),
    # never a reachable store: a valid start would serve forever
    "serve": command(
        "serve",
        opt("--port", st.sampled_from(["0", "70000", "-1", "x", "8765"])),
        opt("--host", st.sampled_from(["127.0.0.1", "", "not a host"])),
        opt("--scope", st.sampled_from(SCOPE)),
        paths=["missing/kb", "file.txt", "empty", "kb/chroma.sqlite3", "\ud800"],
    ),
    "report": command(
        "report",
        opt("--html", st.sampled_from(["out.html", "empty", "missing/out.html", "\ud800.html"])),
        opt("--png", st.sampled_from(["plots", "file.txt", "\ud800"])),
    ),
    "repair": command("repair"),
}
assert set(ARGV) == set(EXAMPLES)


# the world each example runs in ---------------------------------------------------------------
@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-cli") / "kb"
    fake = FakeEmbedder(dimension=384, name=DEFAULT_MODEL)
    index = ClusterIndex.open(path, embedder=fake, config=IndexConfig(progress=False))
    words = ["dog cat", "rocket moon", "pasta pizza"]
    index.add_texts(
        [f"{words[i % 3]} text {i}" for i in range(60)], metadatas=[{"label": "ab"[i % 2]} for i in range(60)]
    )
    index.fit(k=3)
    del index
    return path


@pytest.fixture(autouse=True)
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model name loads the hashing fake (no torch, no download): argument handling is under test."""
    import cluster_rag.connection as connection

    def fake(name: str = DEFAULT_MODEL, **_: Any) -> FakeEmbedder:
        return FakeEmbedder(dimension=384, name=name)

    monkeypatch.setattr(connection, "SentenceTransformerEmbedder", fake)
    monkeypatch.delenv("CLUSTER_RAG_PATH", raising=False)
    monkeypatch.delenv("CLUSTER_RAG_CHROMA_URL", raising=False)
    monkeypatch.delenv("CLUSTER_RAG_SCOPE", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def make_world(root: Path, base: Path) -> None:
    """The files the generated arguments name, in a fresh folder (the store copied to ``kb``)."""
    shutil.copytree(base, root / "kb")
    (root / "empty").mkdir()
    (root / "file.txt").write_text("a plain file where a folder may be expected\n", encoding="utf-8")
    docs = root / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Dogs\n\nDogs and cats.\n\n# Rockets\n\nRockets go to the moon.\n")
    (docs / "b.jsonl").write_text('{"id": "j1", "text": "pasta with pizza"}\n{"id": "j2", "text": "moon"}\n')
    (root / "bad.jsonl").write_text('{"id": "x", "body": "no text field"}\n')
    (root / "dup.jsonl").write_text('{"id": "d", "text": "one"}\n{"id": "d", "text": "two"}\n')
    (root / "weird.py").write_text("print('not a supported file')\n")
    (root / "huge.csv").write_text("id,text\n1," + "x" * 140_000 + "\n")
    (root / "x\udcffy.md").write_text("a file whose name is not UTF-8\n")
    (root / "queries.jsonl").write_text('{"id": "q1", "text": "dog"}\n')
    (root / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tnone\t1\n")


def fingerprint(path: Path) -> tuple[int, str]:
    """Chunk count and a hash of every collection's ids, texts and metadata at ``path`` — except the
    keyword index that the first hybrid search stores in ``__meta`` (``kw:`` keys: derived from the
    chunks, rebuilt when they change)."""
    import chromadb

    client = chromadb.PersistentClient(path=str(path))
    digest = hashlib.sha256()
    count = 0
    for collection in sorted(client.list_collections(), key=lambda c: c.name):
        got = collection.get(include=["documents", "metadatas"])
        rows = sorted(
            (row for row in zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=False)
             if not row[0].startswith("kw:")),
            key=lambda r: r[0],
        )
        digest.update(collection.name.encode())
        digest.update(json.dumps(rows, sort_keys=True, default=str).encode())
        if not collection.name.endswith(("__meta", "__centroids")):
            count += len(got["ids"])
    return count, digest.hexdigest()


def stores_under(root: Path) -> set[str]:
    """Every folder under ``root`` holding a Chroma database (the stores that exist)."""
    return {str(p.parent.relative_to(root)) for p in root.rglob("chroma.sqlite3")}


def run(argv: list[str], root: Path) -> tuple[int, str, str]:
    """``main(argv)`` with ``root`` as the working directory and stdin empty; (status, stdout, stderr)."""
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        with runner.isolation(input="") as (out, err, _):
            status = main(argv)
            stdout, stderr = (stream.getvalue().decode("utf-8", "replace") for stream in (out, err))
            return status, stdout, stderr
    finally:
        os.chdir(cwd)


def names_the_input(message: str, argv: list[str]) -> bool:
    """The error mentions something the user typed (an option, a value, the command) or the option that
    fixes it, or the user typed nothing but the command and the store (an error about the store's
    state, e.g. no older version)."""
    typed = [a for a in argv[1:] if a not in ("--path", "kb", "--json", "--quiet")]
    tokens = {
        t
        for a in argv
        for t in (a, a[:40], repr(a)[:42], a.split("=")[0], a.lstrip("-").replace("-", "_"))
        if len(t.strip()) > 1
    }
    options = {o for o in ("--llm-base-url", "--text-field", "--k", "--path") if o in message}
    return not typed or any(t in message for t in tokens) or "index at" in message or bool(options)


#: exit statuses seen per command (printed with -s: how many examples got past the checks)
SEEN: dict[str, Counter[int]] = {}


def check(argv: list[str], root: Path, base_fp: tuple[int, str]) -> None:
    before = stores_under(root)
    status, out, err = run(argv, root)
    SEEN.setdefault(argv[0], Counter())[status] += 1
    if os.environ.get("FUZZ_CLI_SHOW"):
        print(status, repr(argv)[:150], repr(err.strip()[-160:]))
    shown = f"argv={argv!r}\nstatus={status}\nstdout={out[-800:]!r}\nstderr={err[-1500:]!r}"
    assert status in (0, 2), shown
    assert "Traceback" not in out + err, shown
    if status == 2:
        # the lines as a terminal shows them (progress bars redraw with \r; str.splitlines splits at \x1d)
        lines = [line.rsplit("\r", 1)[-1] for line in err.split("\n") if line.strip()]
        assert lines and lines[-1].startswith(("cluster-rag: error:", "Error:")), shown
        assert names_the_input(err, argv), shown
    if argv[0] in READ_ONLY:
        assert stores_under(root) == before, f"a read command created a store\n{shown}"
    if argv[0] in READ_ONLY or status != 0:
        assert fingerprint(root / "kb") == base_fp, f"the store changed\n{shown}"


@pytest.fixture
def world(tmp_path: Path, base_store: Path) -> Iterator[Callable[[], Path]]:
    """A factory of fresh example folders (the store copied in each)."""
    from chromadb.api.client import SharedSystemClient

    made: list[Path] = []

    def new() -> Path:
        root = tmp_path / f"ex{len(made)}"
        root.mkdir()
        make_world(root, base_store)
        made.append(root)
        return root

    yield new
    SharedSystemClient.clear_system_cache()


@pytest.mark.parametrize("name", sorted(ARGV))
def test_every_command_fails_cleanly_and_changes_nothing_when_it_fails(
    name: str, world: Callable[[], Path], base_store: Path
) -> None:
    from chromadb.api.client import SharedSystemClient

    base_fp = fingerprint(base_store)
    budget = settings(
        max_examples=max(1, int(EXAMPLES[name] * SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: one run costs up to seconds; seeds are fixed
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )

    @budget
    @given(argv=ARGV[name])
    def one(argv: list[str]) -> None:
        root = world()
        try:
            check(argv, root, base_fp)
        finally:
            SharedSystemClient.clear_system_cache()
            shutil.rmtree(root, ignore_errors=True)

    one()
    print(f"{name}: exit statuses {dict(SEEN.get(name, {}))}")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["choose-k", "--path", "kb", "--points", "-1"], "'--points'"),  # was numpy's ValueError, a traceback
        (["choose-k", "--path", "kb", "--points", "0"], "'--points'"),  # was exit 0 with a 2-point sweep
        (["choose-k", "--path", "kb", "--png", "curves.txt"], "'--png'"),  # was after the whole sweep
        (["ingest", "x\udcffy.md", "--path", "kb"], "'x\\udcffy.md' is not valid UTF-8"),  # file name
        (["topics", "--path", "new\nline"], "no index at 'new\\nline'"),  # was a second line on stderr
    ],
)
def test_what_the_fuzzer_found(
    argv: list[str], fragment: str, world: Callable[[], Path], base_store: Path
) -> None:
    root = world()
    status, out, err = run(argv, root)
    lines = err.strip().split("\n")
    assert status == 2 and fragment in lines[-1] and "Traceback" not in err, err
    assert "sweeping" not in err  # refused before any work
    assert fingerprint(root / "kb") == fingerprint(base_store)
