"""`cluster-rag mcp` driven by the MCP SDK's own stdio client, as a desktop assistant would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cluster_rag import ClusterIndex
from cluster_rag.tools import TOOL_NAMES

pytestmark = pytest.mark.integration


def _server_params(path: Path) -> object:
    from mcp import StdioServerParameters

    # the SDK passes only a safe subset of the environment; keep offline flags and import paths
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "cluster_rag.cli", "mcp", "--path", str(path)],
        env=dict(os.environ),
    )


async def test_stdio_server_lists_and_runs_the_three_read_only_tools(
    demo_index_path: Path, tmp_path: Path
) -> None:
    from mcp import ClientSession, stdio_client

    kb = tmp_path / "kb"
    shutil.copytree(demo_index_path, kb)
    with (tmp_path / "server.log").open("w") as errlog:
        async with stdio_client(_server_params(kb), errlog=errlog) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=120) as session:
                init = await session.initialize()
                assert init.server_info.name == "cluster-rag" and "list_topics" in (init.instructions or "")

                listed = (await session.list_tools()).tools
                assert sorted(t.name for t in listed) == sorted(TOOL_NAMES)
                for tool in listed:
                    assert tool.annotations is not None and tool.annotations.read_only_hint is True
                    assert tool.annotations.destructive_hint is False and tool.description
                search_schema = next(t for t in listed if t.name == "search_within_topic").input_schema
                assert sorted(search_schema["required"]) == ["query", "topic"]

                question = {"query": "my new card has not arrived", "limit": 3}
                result = await session.call_tool("list_topics", question)
                assert not result.is_error
                topics = json.loads(result.content[0].text)["topics"]
                assert len(topics) == 3 and topics[0]["score"] >= topics[1]["score"] >= topics[2]["score"]

                within = {"query": "card still not delivered", "topic": topics[0]["name"], "k": 5}
                result = await session.call_tool("search_within_topic", within)
                assert not result.is_error
                found = json.loads(result.content[0].text)
                assert found["topic"]["id"] == topics[0]["id"] and len(found["hits"]) == 5
                assert "card_arrival" in {h["metadata"]["label"] for h in found["hits"]}

                first = found["hits"][0]
                result = await session.call_tool("get_document", {"id": first["id"]})
                doc = json.loads(result.content[0].text)
                assert not result.is_error and doc["text"] == first["text"]
                # the broad topic's chunks sit in its leaf topics: the document names its leaf
                tree = ClusterIndex.open(kb, create=False).topic_tree()
                under = tree.leaf_ids(topics[0]["id"]) if topics[0]["subtopics"] else [topics[0]["id"]]
                assert doc["topic"]["id"] in under and doc["neighbours"] == []  # one-line records
                result = await session.call_tool("list_topics", {"parent": topics[0]["id"]})
                children = json.loads(result.content[0].text)
                assert not result.is_error and len(children["topics"]) == topics[0]["subtopics"]

                bad_calls = [
                    ("search_within_topic", {"query": "card", "topic": "no such topic"}, "closest names"),
                    ("search_within_topic", {"query": "card", "topic": 0, "k": 0}, "positive integer"),
                    ("get_document", {}, "id"),
                    ("get_document", {"id": "not-an-id"}, "no chunk with id 'not-an-id'"),
                    ("list_topics", {"limit": "many"}, "limit"),
                    # strict, as the schema says: no coercion of "5" or true (issue 16 item 3)
                    ("search_within_topic", {"query": "card", "topic": 0, "k": "5"}, "k"),
                    ("search_within_topic", {"query": "card", "topic": True}, "topic"),
                    ("list_topics", {"limit": 2.5}, "limit"),
                    # unknown arguments are rejected, not dropped by the SDK
                    ("search_within_topic", {"query": "card", "topic": 0, "where": {"a": 1}}, "'where'"),
                ]
                for name, arguments, fragment in bad_calls:
                    result = await session.call_tool(name, arguments)
                    assert result.is_error, (name, arguments)
                    assert fragment in result.content[0].text


async def test_arguments_reach_the_one_strict_check_unchanged(demo_index: ClusterIndex) -> None:
    """Issue 16 item 3, through the SDK's in-memory client: the SDK neither drops unknown arguments
    nor coerces values (``"5"``, ``true``, JSON text such as ``"null"``); the error names the argument."""
    from mcp import Client

    from cluster_rag.mcp_server import build_server

    async with Client(build_server(demo_index)) as client:
        for tool in (await client.list_tools()).tools:
            assert tool.input_schema["additionalProperties"] is False, tool.name
        rejected = [
            ("search_within_topic", {"query": "card", "topic": 0, "where": {"label": "x"}}, "'where'"),
            ("list_topics", {"limit": 3, "filter": None}, "'filter'"),
            ("get_document", {"id": "x", "ids": ["x"]}, "'ids'"),
            ("search_within_topic", {"query": "card", "topic": 0, "k": "5"}, "'k' must be integer"),
            ("search_within_topic", {"query": "card", "topic": True}, "'topic' must be integer or string"),
            ("list_topics", {"limit": "null"}, "'limit' must be integer"),
            ("list_topics", {"parent": "[1]"}, "no topic named '[1]'"),  # a name, never JSON-decoded
            ("search_within_topic", {"query": "card", "topic": 0, "x" * 100_000: 1}, "unexpected argument"),
        ]
        for name, arguments, fragment in rejected:
            result = await client.call_tool(name, arguments)
            text = result.content[0].text
            assert result.is_error and ("InvalidInputError" in text or "UnknownTopicError" in text), text
            assert fragment in text and len(text) < 2_000, (name, text[:200])

        # JSON-looking strings stay strings: "null" is a query to rank by, '["x"]' an id to look up
        ranked = await client.call_tool("list_topics", {"query": "null", "limit": 2})
        assert not ranked.is_error and all("score" in t for t in json.loads(ranked.content[0].text)["topics"])
        missing = await client.call_tool("get_document", {"id": '["x"]'})
        assert missing.is_error and """no chunk with id '["x"]'""" in missing.content[0].text


def test_mcp_command_fails_fast_without_an_index(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cluster_rag.cli", "mcp", "--path", str(tmp_path / "nowhere")],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2 and "no index at" in proc.stderr and proc.stdout == ""


def test_missing_mcp_names_the_pip_line(monkeypatch: pytest.MonkeyPatch, demo_index: object) -> None:
    from cluster_rag import MissingDependencyError
    from cluster_rag.mcp_server import build_server

    monkeypatch.setitem(sys.modules, "mcp.server.mcpserver", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "cluster-rag\[mcp\]"'):
        build_server(demo_index)  # type: ignore[arg-type]
