"""`cluster-rag mcp --scope` / `$CLUSTER_RAG_SCOPE` / `--audit`: real model, MCP SDK client over stdio."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


async def test_cli_mcp_scope_flag_and_audit_lines(
    demo_index_path: Path, tmp_path: Path, banking_rows: list[dict[str, Any]]
) -> None:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    mine = sum(r["label"] == "card_arrival" for r in banking_rows)
    theirs = next(r["id"] for r in banking_rows if r["label"] != "card_arrival")
    kb = tmp_path / "kb"
    shutil.copytree(demo_index_path, kb)
    scope = json.dumps({"label": "card_arrival"})
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "cluster_rag.cli", "mcp", "--path", str(kb), "--scope", scope, "--audit"],
        env={**os.environ, "CLUSTER_RAG_SCOPE": ""},
    )
    log = tmp_path / "server.log"
    with log.open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=120) as session:  # type: ignore[arg-type]
                await session.initialize()
                listed = json.loads((await session.call_tool("list_topics", {"limit": 50})).content[0].text)
                assert 1 <= listed["total_topics"] < 20  # the topics holding card_arrival rows only
                assert sum(t["size"] for t in listed["topics"]) == mine
                hits = []
                for topic in listed["topics"]:
                    args = {"query": "my card has not arrived", "topic": topic["id"], "k": 20}
                    answer = await session.call_tool("search_within_topic", args)
                    if not answer.is_error:
                        hits += json.loads(answer.content[0].text)["hits"]
                    # a filter of the client's own is an unknown argument, rejected (not dropped)
                    widened = await session.call_tool("search_within_topic", {**args, "where": {}})
                    assert widened.is_error and "'where'" in widened.content[0].text
                assert hits and {h["metadata"]["label"] for h in hits} == {"card_arrival"}
                other = await session.call_tool("get_document", {"id": theirs})
                assert other.is_error and "no chunk with id" in other.content[0].text
    text = log.read_text()
    assert "within an access scope" in text and text.count(" audit ") >= 3
    audit = [json.loads(line.split(" audit ", 1)[1]) for line in text.splitlines() if " audit " in line]
    assert {a["tool"] for a in audit} >= {"list_topics", "search_within_topic", "get_document"}
    assert all(a["scope"]["where"] == {"label": "card_arrival"} for a in audit)
    assert not any(h["text"] in text for h in hits)  # ids, never texts


def test_a_bad_scope_stops_the_server_before_it_serves(demo_index_path: Path) -> None:
    env = {**os.environ, "CLUSTER_RAG_SCOPE": "{not json"}
    cmd = [sys.executable, "-m", "cluster_rag.cli", "mcp", "--path", str(demo_index_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode != 0 and "$CLUSTER_RAG_SCOPE" in done.stderr and done.stdout == ""
    bad_flag = [*cmd, "--scope", '{"tenant": {"$bogus": 1}}']
    done = subprocess.run(bad_flag, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode != 0 and "not a valid Chroma filter" in done.stderr
