"""CLI regressions of issue 12 through the real ``cluster-rag`` entry point, none loading the model.

Read commands never create a store; a wrong ``--text-field`` is an error before any store
exists; a closed pipe ends quietly; ``topics``/``info``/``versions`` import no torch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

READ_COMMANDS = [
    ["search", "card"],
    ["topics"],
    ["info"],
    ["eval"],
    ["label"],
    ["versions"],
    ["drift"],
    ["mcp"],
    ["rename", "0", "x"],
    ["rollback"],
]


def cluster_rag() -> str:
    exe = Path(sys.executable).with_name("cluster-rag")
    found = str(exe) if exe.is_file() else shutil.which("cluster-rag")
    if found is None:
        pytest.fail("the cluster-rag console script is not installed; pip install -e .")
    return found


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CLUSTER_RAG_")}


def run_all(cwd: Path, commands: list[list[str]]) -> list[tuple[int, str, str]]:
    """Run the commands concurrently (each its own process); (exit code, stdout, stderr) each."""
    procs = [
        subprocess.Popen(
            [cluster_rag(), *cmd],
            cwd=cwd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cmd in commands
    ]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        out.append((proc.returncode, stdout, stderr))
    return out


@pytest.fixture
def kb(demo_index_path: Path, tmp_path: Path) -> Path:
    target = tmp_path / "kb"
    shutil.copytree(demo_index_path, target)
    return target


def test_read_commands_never_create_a_store(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    commands = [[*c, "--path", "typo"] for c in READ_COMMANDS] + [
        [*c, "--path", "empty"] for c in READ_COMMANDS
    ]
    results = run_all(tmp_path, commands)
    for cmd, (code, stdout, stderr) in zip(commands, results, strict=True):
        assert code == 2, (cmd, stdout, stderr)
        assert stderr.count("\n") == 1 and "Traceback" not in stderr, (cmd, stderr)
        if "typo" in cmd:
            assert stderr.startswith("cluster-rag: error: no index at 'typo'"), (cmd, stderr)
        else:
            assert "'empty' is not a cluster-rag index" in stderr, (cmd, stderr)
    assert not (tmp_path / "typo").exists() and os.listdir(tmp_path / "empty") == []
    assert sorted(os.listdir(tmp_path)) == ["empty"]


def test_wrong_text_field_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a", "body": "hello", "lang": "en"}\n', encoding="utf-8")
    (tmp_path / "empty-folder").mkdir()
    commands = [["ingest", "rows.jsonl", "--path", "kb"], ["ingest", "empty-folder", "--path", "kb"]]
    (code, _, err), (code2, _, err2) = run_all(tmp_path, commands)
    assert code == 2 and "text field 'text'; fields found: 'body', 'id', 'lang'" in err
    assert code2 == 2 and "found no text to ingest in empty-folder" in err2
    assert not (tmp_path / "kb").exists()


def test_missing_collection_names_the_ones_found_and_help_texts(kb: Path) -> None:
    commands = [["topics", "--path", str(kb), "--collection", "notes"], ["search", "--help"], ["--help"]]
    (code, _, err), (_, search_help, _), (_, main_help, _) = run_all(kb.parent, commands)
    assert code == 2 and "collection 'notes' does not exist" in err and "collections at" in err
    assert "cluster_rag" in err.split("collections at", 1)[1]
    assert "--k INTEGER RANGE" in search_help and "number of chunks returned" in search_help
    assert all(name in main_help for name in ("ingest", "choose-k", "serve", "report"))


def test_closed_pipe_ends_quietly(kb: Path) -> None:
    proc = subprocess.Popen(
        [cluster_rag(), "topics", "--path", str(kb)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first row (as `| head` after its lines)
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 1  # click's convention for EPIPE: exit 1, nothing printed
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr


PROBE = """
import json, sys
from cluster_rag.cli import main
code = main(sys.argv[1:])
heavy = [m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules]
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def test_read_commands_do_not_import_torch(kb: Path) -> None:
    procs = [
        subprocess.run(
            [sys.executable, "-c", PROBE, cmd, "--path", str(kb), "--json"],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        for cmd in ("topics", "info", "versions")
    ]
    for proc in procs:
        probe = json.loads(proc.stderr.strip().splitlines()[-1])
        assert probe == {"code": 0, "heavy": []}, proc.stderr
        assert json.loads(proc.stdout)  # real output, not an early exit
