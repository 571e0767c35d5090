"""A scripted OpenAI-compatible chat server on 127.0.0.1 for labeling tests.

It speaks real HTTP, so the real ``openai`` client (sync or async) is exercised
end to end: status codes, headers, timeouts, JSON bodies. Each test sets
``server.script`` to a function ``(body, n) -> Reply`` where ``body`` is the parsed
request and ``n`` counts earlier requests whose user prompt had the same first line
+ keywords (so "first answer junk, second answer good" is easy to script).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cluster_rag.testing import LLAMA_SERVER

__all__ = ["LLAMA_SERVER"]  # the tests import the launch command from here too


@dataclass
class Reply:
    """One scripted answer: a chat completion with ``content``, or an error ``status``."""

    content: str | None = None
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    error: str = "scripted error"
    prompt_tokens: int = 11
    completion_tokens: int = 7
    finish_reason: str = "stop"


def answer(
    name: str, description: str = "Documents about one thing.", keywords: list[str] | None = None
) -> str:
    """A well-formed label answer as JSON text."""
    return json.dumps({"name": name, "description": description, "keywords": keywords or ["a", "b", "c"]})


def user_prompt(body: dict[str, Any]) -> str:
    """The first user message of a request (the cluster prompt)."""
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def keywords_line(body: dict[str, Any]) -> str:
    return user_prompt(body).splitlines()[0]


def is_parent(body: dict[str, Any]) -> bool:
    """Whether a request names a parent node of the topic tree (its prompt lists subtopics)."""
    return "Subtopics of this broad group" in user_prompt(body)


def shown_names(body: dict[str, Any]) -> list[str]:
    """Names the request shows the model: the sibling line of the prompt and, in a repair
    request, the "must not be any of" list (what a copying model copies), in order."""
    names: list[str] = []
    for message in body["messages"]:
        if message["role"] != "user":
            continue
        for marker in ("(pick a different name): ", "The name must not be any of: "):
            for line in message["content"].splitlines():
                if marker in line:
                    listed = line.split(marker, 1)[1].rstrip(".")
                    names += [json.loads(n) for n in listed.split("; ")]
    return names


class ScriptedLLM:
    """The server; ``url`` is the ``base_url`` for ``OpenAI(base_url=...)``."""

    def __init__(self) -> None:
        self.script: Callable[[dict[str, Any], int], Reply] = lambda body, n: Reply(answer("Anything"))
        self.requests: list[dict[str, Any]] = []  # requests naming a topic
        self.parent_requests: list[dict[str, Any]] = []  # requests naming a parent node of the topic tree
        self.inflight = 0
        self.max_inflight = 0
        self.arrivals: list[int] = []  # requests in flight (this one included) when each arrived
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # /v1/models, for readiness checks
                self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]}, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
                    return
                with stub._lock:
                    (stub.parent_requests if is_parent(body) else stub.requests).append(body)
                    key = keywords_line(body)
                    n = stub._seen.get(key, 0)
                    stub._seen[key] = n + 1
                    stub.inflight += 1
                    stub.max_inflight = max(stub.max_inflight, stub.inflight)
                    stub.arrivals.append(stub.inflight)
                try:
                    reply = stub.script(body, n)
                    if reply.delay:
                        time.sleep(reply.delay)
                    if reply.status != 200:
                        error = {"error": {"message": reply.error, "type": "scripted"}}
                        headers = dict(reply.headers)
                        if not any(h.startswith("retry-after") for h in headers):
                            headers["retry-after-ms"] = "5"  # the openai client's retries wait 5 ms, not ~1 s
                        self._send(reply.status, error, headers)
                        return
                    self._send(
                        200,
                        {
                            "id": "chatcmpl-stub",
                            "object": "chat.completion",
                            "created": 0,
                            "model": body.get("model", "stub"),
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": reply.finish_reason,
                                    "message": {"role": "assistant", "content": reply.content},
                                }
                            ],
                            "usage": {
                                "prompt_tokens": reply.prompt_tokens,
                                "completion_tokens": reply.completion_tokens,
                                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                            },
                        },
                        reply.headers,
                    )
                finally:
                    with stub._lock:
                        stub.inflight -= 1

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def requests_for(self, keyword: str) -> list[dict[str, Any]]:
        """Requests whose cluster prompt's keyword line contains ``keyword``."""
        return [b for b in self.requests if keyword in keywords_line(b)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM()
    try:
        yield server
    finally:
        server.close()


# a small fitted index whose four topics are easy to tell apart by keyword ---------------------
TOPIC_WORDS = {
    "pets": "dog cat puppy kitten leash bark meow vet",
    "space": "rocket orbit moon mars launch astronaut nasa planet",
    "food": "pasta pizza recipe oven garlic tomato cheese bake",
    "music": "guitar piano drums melody chord concert band song",
}
NAMES = {"pets": "Pet care", "space": "Space flight", "food": "Home cooking", "music": "Playing music"}


def topic_of(body: dict[str, Any]) -> str:
    """Which of :data:`TOPIC_WORDS` a cluster prompt is about (by its keywords)."""
    line = keywords_line(body)
    return next(t for t in TOPIC_WORDS if t in line)


def good(body: dict[str, Any], n: int) -> Reply:
    """Script: every cluster gets its name from :data:`NAMES`; a parent node of the topic tree
    gets ``"Broad group <n>"`` (``n``: its largest child's place in :data:`NAMES`)."""
    if is_parent(body):
        listed = user_prompt(body).split("Subtopics of this broad group")[1]
        first_child = listed.split('- "')[1].split('"')[0]
        place = next((i for i, v in enumerate(NAMES.values()) if v == first_child), len(NAMES))
        return Reply(answer(f"Broad group {place}", "Several kinds of notes."))
    return Reply(answer(NAMES[topic_of(body)], f"Notes about {topic_of(body)}."))


def fitted_index(path: Any) -> Any:
    """An embedded index at ``path`` (fake embedder) with 4 x 20 notes fitted at k=4."""
    import numpy as np

    from cluster_rag import ClusterIndex, IndexConfig
    from tests.fixtures import FakeEmbedder

    rng = np.random.default_rng(0)
    texts = []
    for name, words in TOPIC_WORDS.items():
        vocab = words.split()
        texts += [" ".join(rng.choice(vocab, size=6)) + f" note {name} {i}" for i in range(20)]
    index = ClusterIndex.open(path, embedder=FakeEmbedder(), config=IndexConfig(progress=False))
    index.add_texts(texts)
    index.fit(k=4)
    return index
