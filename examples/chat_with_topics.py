"""Chat with a knowledge base by topic: an OpenAI tool-calling agent loop over cluster-rag's tools.

Works against any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp server, Ollama, …):

    python examples/chat_with_topics.py --base-url http://127.0.0.1:8080/v1 --model m "why was I charged?"

With no ``--base-url`` it runs offline: the script starts a tiny scripted
OpenAI-compatible server on 127.0.0.1 and talks to it through the real ``openai``
client, so every request and tool call crosses the real wire format. The scripted
model calls ``list_topics``, then ``search_within_topic`` in the best topic, then
answers from what the tools returned. The knowledge base defaults to the Banking77
sample shipped with cluster-rag, fitted in a temp dir; ``--path`` uses your index.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from _shared import open_index, scripted_step

from cluster_rag.tools import TOOL_NAMES, TopicTools

SYSTEM = (
    "You answer questions about a customer-support knowledge base. Browse it by topic: call list_topics "
    "with the question, then search_within_topic in the most relevant topic, and answer from the chunks "
    "you found. Say which topic the answer came from."
)
DEFAULT_QUESTION = "My new card still hasn't arrived, what should I do?"


# the offline scripted model, behind a real HTTP endpoint -------------------------------
class _ScriptedHandler(BaseHTTPRequestHandler):
    """``POST /v1/chat/completions`` answered by :func:`_shared.scripted_step`."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep the console clean
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        try:
            message, finish = self._reply(request)
        except ValueError as exc:  # a malformed conversation: answer like an API would
            self._send(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
            return
        self._send(
            200,
            {
                "id": f"chatcmpl-scripted-{time.monotonic_ns()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model", "scripted"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            },
        )

    @staticmethod
    def _reply(request: dict[str, Any]) -> tuple[dict[str, Any], str]:
        offered = {t["function"]["name"] for t in request.get("tools", []) if t.get("type") == "function"}
        if offered != set(TOOL_NAMES):
            raise ValueError(f"expected the tools {sorted(TOOL_NAMES)}, got {sorted(offered)}")
        messages = request["messages"]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        question = messages[last_user]["content"]
        pending: dict[str, str] = {}
        results: list[str] = []
        for m in messages[last_user + 1 :]:
            if m["role"] == "assistant" and not isinstance(m.get("content"), str):
                # llama.cpp's server renders `message['content']` in its chat template and answers 500
                raise ValueError("assistant message without a string 'content' (send \"\" with tool_calls)")
            if m["role"] == "assistant":
                pending = {c["id"]: c["function"]["name"] for c in m.get("tool_calls") or []}
            elif m["role"] == "tool":
                if m.get("tool_call_id") not in pending:
                    raise ValueError(f"tool message answers unknown tool_call_id {m.get('tool_call_id')!r}")
                results.append(m["content"])
        kind, step = scripted_step(question, results)
        if kind == "answer":
            return {"role": "assistant", "content": step}, "stop"
        name, arguments = step
        call = {
            "id": f"call_{len(results) + 1}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def start_scripted_server() -> tuple[ThreadingHTTPServer, str]:
    """Serve the scripted model on a free loopback port; returns the server and its ``/v1`` base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


# the agent loop ---------------------------------------------------------------------------
def assistant_turn(message: Any) -> dict[str, Any]:
    """The assistant's reply as a message to send back: ``content`` always a string.

    ``message.model_dump(exclude_none=True)`` drops ``content`` when the model only called
    tools, and servers whose chat template reads ``message['content']`` (llama.cpp's
    ``llama_cpp.server``) then answer the next request with HTTP 500.
    """
    turn: dict[str, Any] = {"role": "assistant", "content": message.content or ""}
    if message.tool_calls:
        turn["tool_calls"] = [call.model_dump() for call in message.tool_calls]
    return turn


def chat(
    client: Any,
    model: str,
    tools: TopicTools,
    question: str,
    max_turns: int = 6,
    first_tool_choice: Any = None,
    **request_options: Any,
) -> dict[str, Any]:
    """One conversation: the model calls tools until it answers (or ``max_turns`` runs out).

    ``first_tool_choice`` (e.g. ``{"type": "function", "function": {"name": "list_topics"}}``)
    is sent with the first request only; later requests let the model choose.
    ``request_options`` (e.g. ``max_tokens=200``) go with every request.
    """
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
    ]
    steps: list[dict[str, Any]] = []
    for turn in range(max_turns):
        extra = dict(request_options)
        if turn == 0 and first_tool_choice is not None:
            extra["tool_choice"] = first_tool_choice
        reply = client.chat.completions.create(
            model=model, messages=messages, tools=tools.openai_tools(), **extra
        )
        message = reply.choices[0].message
        messages.append(assistant_turn(message))
        if not message.tool_calls:
            return {"question": question, "steps": steps, "answer": message.content or ""}
        for call in message.tool_calls:
            result = tools.tool_message(call)  # bad arguments come back as a JSON error, never raise
            messages.append(result)
            steps.append(
                {
                    "tool": call.function.name,
                    "arguments": _arguments(call.function.arguments),
                    "result": json.loads(result["content"]),
                }
            )
    return {"question": question, "steps": steps, "answer": None}


def _arguments(raw: str | None) -> Any:
    """A tool call's arguments for the transcript; a model's malformed JSON is kept as text."""
    try:
        return json.loads(raw or "{}")
    except json.JSONDecodeError:
        return {"unparsed": raw}


def _print(turn: dict[str, Any]) -> None:
    print(f"\nuser> {turn['question']}")
    for step in turn["steps"]:
        result = step["result"]
        if "error" in result:
            summary = f"error: {result['error']}"
        elif step["tool"] == "list_topics":
            summary = ", ".join(f"{t['id']}:{t['name']} ({t.get('score', 0):.2f})" for t in result["topics"])
        elif step["tool"] == "search_within_topic":
            summary = f"{len(result['hits'])} hits in topic {result['topic']['id']}:{result['topic']['name']}"
        else:
            summary = f"{result['id']}: {result['text'][:60]}"
        print(f"  tool> {step['tool']}({json.dumps(step['arguments'])})\n        -> {summary}")
    print(
        f"assistant> {turn['answer'] if turn['answer'] is not None else '(no answer within the turn limit)'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="*", default=[DEFAULT_QUESTION])
    parser.add_argument(
        "--base-url",
        default=os.environ.get("OPENAI_BASE_URL"),
        help="OpenAI-compatible endpoint (default: offline scripted model)",
    )
    parser.add_argument("--model", default=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "not-needed"))
    parser.add_argument(
        "--path", help="a fitted cluster-rag index (default: the shipped sample in a temp dir)"
    )
    parser.add_argument("--max-turns", type=int, default=6)
    parser.add_argument("--json", action="store_true", help="print the conversations as JSON")
    args = parser.parse_args(argv)

    from openai import OpenAI

    server = None
    base_url, model = args.base_url, args.model
    if base_url is None:
        server, base_url = start_scripted_server()
        model = "scripted"
        if not args.json:
            print(f"(offline: scripted model at {base_url}; pass --base-url and --model for a real one)")
    tools = TopicTools(open_index(args.path))
    client = OpenAI(base_url=base_url, api_key=args.api_key, max_retries=0, timeout=120)
    try:
        turns = [chat(client, model, tools, q, args.max_turns) for q in args.questions]
    finally:
        if server is not None:
            server.shutdown()
    if args.json:
        print(json.dumps(turns, indent=2))
    else:
        for turn in turns:
            _print(turn)
    return 0 if all(t["answer"] is not None for t in turns) else 1


if __name__ == "__main__":
    sys.exit(main())
