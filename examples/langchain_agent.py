"""cluster-rag's tools bound to a LangChain chat model, in a plain tool-calling loop.

Offline it uses a scripted LangChain chat model (a ``BaseChatModel`` with
``bind_tools``) that reads the tool results it is given: it calls ``list_topics``,
then ``search_within_topic`` in the best topic, then answers. Swap in any real
model that supports tool calling, e.g. ``ChatOpenAI(model=...)`` from
``langchain-openai``: the loop and the tools stay the same.

    python examples/langchain_agent.py                   # shipped Banking77 sample, offline
    python examples/langchain_agent.py --path ./kb "why was my transfer declined?"

Needs ``pip install -e integrations/langchain`` (package ``langchain-cluster-rag``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from _shared import open_index, scripted_step
from langchain_cluster_rag import make_tools
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

SYSTEM = "Browse the knowledge base by topic: list_topics first, then search_within_topic, then answer."
DEFAULT_QUESTION = "I forgot my passcode, how do I get back in?"


class ScriptedToolModel(BaseChatModel):
    """An offline chat model that plays :func:`_shared.scripted_step` through LangChain's tool-call API."""

    @property
    def _llm_type(self) -> str:
        return "scripted-tool-model"

    def bind_tools(
        self, tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        offered = {t["function"]["name"] for t in kwargs.get("tools", [])}
        question = next(str(m.content) for m in reversed(messages) if isinstance(m, HumanMessage))
        results = [str(m.content) for m in messages if isinstance(m, ToolMessage)]
        kind, step = scripted_step(question, results)
        if kind == "answer":
            message = AIMessage(content=step)
        else:
            name, arguments = step
            if name not in offered:
                raise ValueError(f"tool {name!r} was not bound; bound: {sorted(offered)}")
            message = AIMessage(
                content="", tool_calls=[{"name": name, "args": arguments, "id": f"call_{len(results)}"}]
            )
        return ChatResult(generations=[ChatGeneration(message=message)])


def run_agent(
    model: Runnable[Any, AIMessage], tools: list[BaseTool], question: str, max_turns: int = 6
) -> dict[str, Any]:
    by_name = {t.name: t for t in tools}
    messages: list[BaseMessage] = [SystemMessage(SYSTEM), HumanMessage(question)]
    steps: list[dict[str, Any]] = []
    for _ in range(max_turns):
        ai = model.invoke(messages)
        messages.append(ai)
        if not ai.tool_calls:
            return {"question": question, "steps": steps, "answer": str(ai.content)}
        for call in ai.tool_calls:
            result = by_name[call["name"]].invoke(call)  # a ToolCall in, a ToolMessage out
            messages.append(result)
            steps.append(
                {"tool": call["name"], "arguments": call["args"], "result": json.loads(result.content)}
            )
    return {"question": question, "steps": steps, "answer": None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="*", default=[DEFAULT_QUESTION])
    parser.add_argument(
        "--path", help="a fitted cluster-rag index (default: the shipped sample in a temp dir)"
    )
    parser.add_argument("--json", action="store_true", help="print the conversations as JSON")
    args = parser.parse_args(argv)

    tools = make_tools(open_index(args.path))
    model = ScriptedToolModel().bind_tools(tools)
    turns = [run_agent(model, tools, q) for q in args.questions]
    if args.json:
        print(json.dumps(turns, indent=2))
        return 0
    for turn in turns:
        print(f"\nuser> {turn['question']}")
        for step in turn["steps"]:
            print(f"  tool> {step['tool']}({json.dumps(step['arguments'])})")
        print(f"assistant> {turn['answer']}")
    return 0 if all(t["answer"] is not None for t in turns) else 1


if __name__ == "__main__":
    sys.exit(main())
