"""README's OpenAI tool-calling loop against the real ``llama_cpp.server`` (SmolLM2-135M).

The loop is ``examples/chat_with_topics.py``'s ``chat`` / ``assistant_turn`` (the README
snippet is the same code). ``model_dump(exclude_none=True)`` used to drop ``content`` from
an assistant turn that only called tools; llama.cpp's chat template reads
``message['content']`` and the server answered the next request with HTTP 500. The test
sends exactly such a turn (a tool call with ``content=None``, as the ``openai`` client
parses it) back to the real server, then runs the whole loop with the first request forced
to call ``list_topics``. It asserts the wire contract, not the tiny model's wording.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cluster_rag import ClusterIndex
from cluster_rag.tools import TopicTools
from tests.integration.test_llm_labels import smollm2_server

__all__ = ["smollm2_server"]

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
QUESTION = "Why was I charged twice for one payment?"


def chat_example() -> ModuleType:
    sys.path.insert(0, str(EXAMPLES))
    try:
        return importlib.import_module("chat_with_topics")
    finally:
        sys.path.remove(str(EXAMPLES))


def test_a_tool_call_turn_goes_back_to_llama_cpp(smollm2_server: str, demo_index: ClusterIndex) -> None:
    from openai import OpenAI
    from openai.types.chat import ChatCompletionMessage

    example = chat_example()
    client = OpenAI(base_url=smollm2_server, api_key="no-key", max_retries=0, timeout=120)
    tools = TopicTools(demo_index, max_topics=3, max_k=2, max_chars=200)  # short prompts for a 2k context
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "list_topics", "arguments": json.dumps({"query": QUESTION, "limit": 3})},
    }
    parsed = ChatCompletionMessage.model_validate(
        {"role": "assistant", "content": None, "tool_calls": [call]}
    )
    turn = example.assistant_turn(parsed)
    assert turn["content"] == "" and turn["tool_calls"][0]["function"]["name"] == "list_topics"
    messages = [
        {"role": "user", "content": QUESTION},
        turn,
        tools.tool_message(parsed.tool_calls[0]),
    ]
    reply = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=24)
    assert isinstance(reply.choices[0].message.content, str)  # HTTP 200 with an answer, not a 500

    # the whole README loop, the first request forced to browse by topic
    result = example.chat(
        client,
        "smollm2",
        tools,
        QUESTION,
        max_turns=2,
        first_tool_choice={"type": "function", "function": {"name": "list_topics"}},
        max_tokens=48,
    )
    assert result["steps"] and result["steps"][0]["tool"] == "list_topics"
    first = result["steps"][0]["result"]
    assert "topics" in first or "error" in first  # a tool result the model could read
