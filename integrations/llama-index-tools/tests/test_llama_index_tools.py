"""llama_index.tools.cluster_rag on the real model + real Chroma (fitted Banking77 sample).

The index is opened read-only once per module (the tools never write); the agent test
runs LlamaIndex's own FunctionAgent with its MockFunctionCallingLLM scripted to act
on the tool results it receives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.tools import FunctionTool
from llama_index.core.tools.tool_spec.base import BaseToolSpec
from llama_index.tools.cluster_rag import ClusterRagToolSpec

from cluster_rag import ClusterIndex, IndexConfig, SentenceTransformerEmbedder
from cluster_rag.tools import TOOL_NAMES, TopicTools

pytestmark = pytest.mark.integration
QUESTION = "my new card has not arrived yet"


@pytest.fixture(scope="module")
def kb(demo_index_path: Path, embedder: SentenceTransformerEmbedder) -> ClusterIndex:
    config = IndexConfig(progress=False)
    return ClusterIndex.open(demo_index_path, embedder=embedder, config=config, create=False)


@pytest.fixture(scope="module")
def tools(kb: ClusterIndex) -> dict[str, FunctionTool]:
    return {t.metadata.name: t for t in ClusterRagToolSpec(kb).to_tool_list()}  # type: ignore[misc]


def test_spec_exposes_the_core_tools_with_shared_descriptions(kb: ClusterIndex) -> None:
    spec = ClusterRagToolSpec(kb, max_k=4)
    assert isinstance(spec, BaseToolSpec) and spec.spec_functions == list(TOOL_NAMES)
    made = spec.to_tool_list()
    assert [t.metadata.name for t in made] == list(TOOL_NAMES)
    core = TopicTools(kb, max_k=4)
    for tool in made:
        name = tool.metadata.get_name()
        assert tool.metadata.description == core.description(name)
        params = tool.metadata.get_parameters_dict()
        for arg, text in core.parameter_descriptions(name).items():
            assert params["properties"][arg]["description"] == text
        openai = tool.metadata.to_openai_tool()
        assert openai["function"]["name"] == name
    assert made[1].metadata.get_parameters_dict()["required"] == ["query", "topic"]
    with pytest.raises(TypeError, match="max_k"):
        ClusterRagToolSpec(core, max_k=2)
    with pytest.raises(ValueError, match="invalid tool name"):
        spec.get_fn_schema_from_fn_name("drop_table")


def test_tools_return_bounded_json(tools: dict[str, FunctionTool], kb: ClusterIndex) -> None:
    listed = json.loads(tools["list_topics"].call(query=QUESTION, limit=2).content)
    assert listed["returned"] == 2 and listed["topics"][0]["score"] >= listed["topics"][1]["score"]
    top = listed["topics"][0]
    found = json.loads(tools["search_within_topic"].call(query=QUESTION, topic=top["name"], k=50).content)
    assert found["note"] == "k=50 was capped at 20" and len(found["hits"]) == min(20, top["size"])
    # a broad topic searches the leaf topics under it; hits and documents name their leaf
    under = set(kb.topic_tree().leaf_ids(top["id"])) if top["subtopics"] else {top["id"]}
    assert {kb.get([h["id"]])[0].topic_id for h in found["hits"]} <= under
    doc = json.loads(tools["get_document"].call(id=found["hits"][0]["id"]).content)
    assert doc["text"] == found["hits"][0]["text"] and doc["topic"]["id"] in under


@pytest.mark.parametrize(
    ("name", "kwargs", "error_type", "fragment"),
    [
        ("search_within_topic", {"query": "card", "topic": "no such"}, "UnknownTopicError", "closest names"),
        ("search_within_topic", {"query": "card", "topic": 0, "k": 0}, "InvalidInputError", "k=0"),
        ("get_document", {"id": "nope"}, "UnknownDocumentError", "no chunk with id 'nope'"),
        ("list_topics", {"limit": "ten"}, "InvalidInputError", "'limit' must be integer"),
    ],
)
async def test_errors_are_tool_output_not_exceptions(
    tools: dict[str, FunctionTool], name: str, kwargs: dict[str, Any], error_type: str, fragment: str
) -> None:
    out = json.loads((await tools[name].acall(**kwargs)).content)
    assert out["error_type"] == error_type and fragment in out["error"]


def _scripted(messages: list[ChatMessage], **kwargs: Any) -> ChatMessage:
    """A model that lists topics, searches the best one, then answers from the top hit."""
    results = [m for m in messages if m.role == MessageRole.TOOL]
    if not results:
        args = {"query": QUESTION, "limit": 3}
        return ChatMessage(role="assistant", blocks=[ToolCallBlock(tool_call_id="c1", tool_name="list_topics",
                                                                   tool_kwargs=args)])
    last = json.loads(results[-1].content or "{}")
    if len(results) == 1:
        args = {"query": QUESTION, "topic": last["topics"][0]["id"], "k": 3}
        return ChatMessage(role="assistant", blocks=[ToolCallBlock(tool_call_id="c2",
                                                                   tool_name="search_within_topic",
                                                                   tool_kwargs=args)])
    return ChatMessage(role="assistant", content=f"[{last['topic']['name']}] {last['hits'][0]['text']}")


async def test_function_agent_browses_by_topic(kb: ClusterIndex) -> None:
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.llms.mock import MockFunctionCallingLLM

    llm = MockFunctionCallingLLM(response_generator=_scripted)
    agent = FunctionAgent(tools=ClusterRagToolSpec(kb).to_tool_list(), llm=llm)
    result = await agent.run(user_msg=QUESTION)
    calls = [c.tool_name for c in result.tool_calls]
    assert calls == ["list_topics", "search_within_topic"]
    assert all(not c.tool_output.is_error for c in result.tool_calls)
    hits = json.loads(result.tool_calls[1].tool_output.content)["hits"]
    assert str(result.response.content).endswith(hits[0]["text"])
    assert "card_arrival" in {h["metadata"]["label"] for h in hits}
