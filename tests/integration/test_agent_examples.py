"""examples/support_triage.py, chat_with_topics.py and langchain_agent.py, run as users run them.

The triage example builds its index from the shipped sample in a temp dir (its
default); the two chat examples get a copy of the fitted sample index via
``--path`` so the suite embeds the sample once. chat_with_topics talks through the
real ``openai`` client to the scripted OpenAI-compatible server it starts on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}


def run_example(name: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:{proc.stdout[-3000:]}\nstderr:{proc.stderr[-3000:]}"
    )
    assert "Loading weights" not in proc.stderr and "it/s]" not in proc.stderr  # quiet by default
    return proc.stdout


@pytest.fixture
def kb_copy(demo_index_path: Path, tmp_path: Path) -> Path:
    target = tmp_path / "kb"
    shutil.copytree(demo_index_path, target)
    return target


def test_support_triage_routes_the_held_out_tickets(tmp_path: Path) -> None:
    out = json.loads(run_example("support_triage.py", "--json", cwd=tmp_path))
    queues = out["queues"]
    assert out["tickets"] == 100 and sum(len(q["tickets"]) for q in queues) == 100
    assert [len(q["tickets"]) for q in queues] == sorted((len(q["tickets"]) for q in queues), reverse=True)
    assert all(q["name"] and q["keywords"] for q in queues)
    assert len({q["topic"] for q in queues}) == len(queues) > 5
    # Banking77 intents were never shown to the clustering: most tickets still share their queue's intent
    assert out["purity"] > 0.6
    # the stream's intents are all held out of the fit: the output says so instead of hiding it
    assert out["unseen_tickets"] == 100 and sum(out["unseen_intents"].values()) == 100
    assert set(out["unseen_intents"]) == {t["label"] for q in queues for t in q["tickets"]}
    assert not list(tmp_path.iterdir())  # nothing written to the working directory


def _check_conversation(turn: dict[str, Any]) -> None:
    tools = [s["tool"] for s in turn["steps"]]
    assert tools == ["list_topics", "search_within_topic"]
    listed, searched = (s["result"] for s in turn["steps"])
    assert "error" not in listed and "error" not in searched
    assert turn["steps"][0]["arguments"] == {"query": turn["question"], "limit": 3}
    assert searched["topic"]["id"] == listed["topics"][0]["id"]
    assert turn["answer"] is not None and searched["hits"][0]["text"] in turn["answer"]


def test_chat_with_topics_offline_over_the_openai_wire_format(kb_copy: Path, tmp_path: Path) -> None:
    questions = ["My new card still hasn't arrived, what should I do?", "I forgot my passcode"]
    turns = json.loads(
        run_example("chat_with_topics.py", *questions, "--path", str(kb_copy), "--json", cwd=tmp_path)
    )
    assert [t["question"] for t in turns] == questions
    for turn in turns:
        _check_conversation(turn)
    labels = [{h["metadata"]["label"] for h in t["steps"][1]["result"]["hits"]} for t in turns]
    assert "card_arrival" in labels[0] and "passcode_forgotten" in labels[1]


def test_langchain_agent_offline(kb_copy: Path, tmp_path: Path) -> None:
    text = run_example("langchain_agent.py", "--path", str(kb_copy), cwd=tmp_path)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[0].startswith("user> I forgot my passcode")
    assert lines[1].startswith("tool> list_topics(") and lines[2].startswith("tool> search_within_topic(")
    assert lines[3].startswith("assistant> This is a") and "passcode" in lines[3].lower()
