"""examples/langchain_rag_chain.py and examples/llama_index_query_engine.py, run as users run them.

Offline (the frameworks' fake/mock LLMs) each runs as a subprocess, exactly as a
user starts it. Against an OpenAI-compatible chat endpoint (a real HTTP server on
127.0.0.1 that records each request and answers with a fixed completion, so the
examples' real ``openai`` client path is exercised) each runs in-process through its
``main(argv)``, which spares a second torch start-up per example.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ANSWER = "Cards usually arrive within 7 working days [test-00017]."
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}


class ChatEndpoint:
    """POST /v1/chat/completions → one fixed assistant message; requests are kept."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                endpoint.requests.append(
                    {"path": self.path, "auth": self.headers.get("authorization"), **body}
                )
                payload = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": ANSWER},
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat_endpoint() -> Iterator[ChatEndpoint]:
    endpoint = ChatEndpoint()
    try:
        yield endpoint
    finally:
        endpoint.close()


@pytest.fixture
def kb(demo_index_path: Path, tmp_path: Path) -> Path:
    target = tmp_path / "kb"
    shutil.copytree(demo_index_path, target)
    return target


def run_example(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def run_example_in_process(name: str, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    spec = importlib.util.spec_from_file_location(f"example_{Path(name).stem}", ROOT / "examples" / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic models in the example resolve their annotations here
    spec.loader.exec_module(module)
    capsys.readouterr()
    assert module.main(list(args)) == 0
    return capsys.readouterr().out


def sources(stdout: str) -> list[str]:
    block = stdout.split("Sources:\n", 1)[1].split("\nAnswer", 1)[0]
    return [line.split()[0] for line in block.splitlines()]


def test_langchain_example_offline_builds_the_demo_and_runs_the_chain() -> None:
    out = run_example("langchain_rag_chain.py", "--k", "3", "--question", "my card has not arrived yet")
    ids = sources(out)
    assert len(ids) == 3 and all(re.fullmatch(r"test-\d{5}", i) for i in ids)
    assert "Answer: (offline FakeListChatModel" in out
    assert re.search(r"score=0\.\d{3}  topic=\d+ \(.+\)", out)


def test_langchain_example_against_openai_compatible_endpoint(
    kb: Path, chat_endpoint: ChatEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run_example_in_process(
        "langchain_rag_chain.py",
        capsys,
        "--path",
        str(kb),
        "--k",
        "2",
        "--question",
        "How do I unblock my PIN?",
        "--base-url",
        chat_endpoint.url,
        "--model",
        "tiny-chat",
        "--api-key",
        "sk-test",
    )
    assert f"Answer: {ANSWER}" in out
    [request] = chat_endpoint.requests
    assert request["path"] == "/v1/chat/completions" and request["model"] == "tiny-chat"
    assert request["auth"] == "Bearer sk-test"
    roles = [m["role"] for m in request["messages"]]
    assert roles == ["system", "user"]
    user = request["messages"][1]["content"]
    ids = sources(out)
    assert len(ids) == 2 and all(f"[{i}]" in user for i in ids) and "How do I unblock my PIN?" in user


def test_llama_index_example_offline_with_mock_llm(kb: Path) -> None:
    out = run_example("llama_index_query_engine.py", "--path", str(kb), "--k", "3")
    ids = sources(out)
    assert len(ids) == 3
    # MockLLM echoes the prompt: the retrieved chunk texts are in it, with their topic labels
    answer = out.split("a real answer):\n", 1)[1]
    assert "Context information is below." in answer and answer.count("topic_label: ") == 3
    texts = [line.split(")  ", 1)[1] for line in out.split("Sources:\n", 1)[1].splitlines()[:3]]
    assert all(t[:40] in answer for t in texts)


def test_llama_index_example_against_openai_compatible_endpoint(
    kb: Path, chat_endpoint: ChatEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run_example_in_process(
        "llama_index_query_engine.py",
        capsys,
        "--path",
        str(kb),
        "--k",
        "2",
        "--question",
        "How do I unblock my PIN?",
        "--base-url",
        chat_endpoint.url,
        "--model",
        "tiny-chat",
    )
    assert out.rstrip().endswith(ANSWER)
    [request] = chat_endpoint.requests
    assert request["model"] == "tiny-chat"
    prompt = request["messages"][-1]["content"]
    assert "How do I unblock my PIN?" in prompt and prompt.count("topic_label: ") == 2
    assert len(sources(out)) == 2


def test_examples_reject_base_url_without_model() -> None:
    for name in ("langchain_rag_chain.py", "llama_index_query_engine.py"):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / name), "--base-url", "http://127.0.0.1:9/v1"],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=120,
        )
        assert proc.returncode == 2 and "--base-url needs --model" in proc.stderr
