"""The cluster-rag tools as LangChain StructuredTools: LangChain's standard tool suites plus behaviour.

Runs on the real bundled embedding model and the fitted 400-row Banking77 sample,
opened read-only once per module (the tools never write).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_cluster_rag import ClusterRagToolkit, make_tools
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests

from cluster_rag import ClusterIndex, IndexConfig, SentenceTransformerEmbedder
from cluster_rag.tools import TOOL_NAMES, TopicTools

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kb(demo_index_path: Path, embedder: SentenceTransformerEmbedder) -> ClusterIndex:
    config = IndexConfig(progress=False)
    return ClusterIndex.open(demo_index_path, embedder=embedder, config=config, create=False)


@pytest.fixture(scope="module")
def tools(kb: ClusterIndex) -> dict[str, BaseTool]:
    return {t.name: t for t in make_tools(kb)}


class _Bind:
    """Hands the standard suites one of this module's tools (they read it from a property)."""

    name = ""
    example: dict[str, Any] = {}

    @pytest.fixture(autouse=True)
    def _bind(self, tools: dict[str, BaseTool]) -> None:
        self._tool = tools[self.name]

    @property
    def tool_constructor(self) -> BaseTool:
        return self._tool

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return self.example


class _ListTopics(_Bind):
    name = "list_topics"
    example = {"query": "card payments", "limit": 3}


class _SearchWithinTopic(_Bind):
    name = "search_within_topic"
    example = {"query": "my card has not arrived", "topic": 0, "k": 2}


class _GetDocument(_Bind):
    name = "get_document"
    example = {"id": "test-00001"}


class TestListTopicsUnit(_ListTopics, ToolsUnitTests):
    pass


class TestListTopicsIntegration(_ListTopics, ToolsIntegrationTests):
    pass


class TestSearchWithinTopicUnit(_SearchWithinTopic, ToolsUnitTests):
    pass


class TestSearchWithinTopicIntegration(_SearchWithinTopic, ToolsIntegrationTests):
    pass


class TestGetDocumentUnit(_GetDocument, ToolsUnitTests):
    pass


class TestGetDocumentIntegration(_GetDocument, ToolsIntegrationTests):
    pass


def test_tools_are_structured_with_core_descriptions(kb: ClusterIndex) -> None:
    made = make_tools(kb, max_k=3)
    assert [t.name for t in made] == list(TOOL_NAMES)
    assert all(isinstance(t, StructuredTool) for t in made)
    core = TopicTools(kb, max_k=3)
    for tool in made:
        assert tool.description == core.description(tool.name)
        spec = convert_to_openai_tool(tool)["function"]
        assert spec["name"] == tool.name
        for arg, text in core.parameter_descriptions(tool.name).items():
            assert spec["parameters"]["properties"][arg]["description"] == text
    assert spec["parameters"]["required"] == ["id"]
    assert [t.name for t in ClusterRagToolkit(index=kb, limits={"max_k": 3}).get_tools()] == list(TOOL_NAMES)


def test_tool_calls_round_trip_through_tool_messages(tools: dict[str, BaseTool], kb: ClusterIndex) -> None:
    args = {"query": "card not delivered", "limit": 2}
    call = {"type": "tool_call", "id": "c1", "name": "list_topics", "args": args}
    listed = tools["list_topics"].invoke(call)
    assert isinstance(listed, ToolMessage) and listed.tool_call_id == "c1"
    top = json.loads(listed.content)["topics"][0]  # type: ignore[arg-type]
    within = {"query": "card not delivered", "topic": top["name"]}
    found = json.loads(tools["search_within_topic"].invoke(within))
    assert found["topic"]["id"] == top["id"] and len(found["hits"]) == 5
    under = set(kb.topic_tree().leaf_ids(top["id"])) if top["subtopics"] else {top["id"]}  # a broad topic
    assert all(kb.get([h["id"]])[0].topic_id in under for h in found["hits"])
    doc = json.loads(tools["get_document"].invoke({"id": found["hits"][0]["id"]}))
    assert doc["text"] == found["hits"][0]["text"]


@pytest.mark.parametrize(
    ("name", "args", "error_type", "fragment"),
    [
        ("search_within_topic", {"query": "x", "topic": "no such"}, "UnknownTopicError", "closest names"),
        ("search_within_topic", {"query": "x", "topic": 0, "k": 0}, "ValidationError", "k:"),
        ("search_within_topic", {"query": "x"}, "ValidationError", "topic"),
        ("list_topics", {"limit": 5, "colour": "red"}, "ValidationError", "colour"),
        ("get_document", {"id": "nope"}, "UnknownDocumentError", "no chunk with id 'nope'"),
    ],
)
def test_bad_calls_return_readable_errors(
    tools: dict[str, BaseTool], name: str, args: dict[str, Any], error_type: str, fragment: str
) -> None:
    out = json.loads(tools[name].invoke(args))
    assert out["error_type"] == error_type and fragment in out["error"] and out["tool"] == name


def test_limits_only_with_an_index(kb: ClusterIndex) -> None:
    with pytest.raises(TypeError, match="max_k"):
        make_tools(TopicTools(kb), max_k=2)
