"""Helpers shared by the example scripts: a quiet sample index and the offline scripted model.

Not part of the library. Each example imports it from its own folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from cluster_rag import ClusterIndex, IndexConfig  # noqa: E402

SAMPLE = "banking77_sample.jsonl"


def sample_rows() -> list[dict[str, Any]]:
    """The 400 Banking77 tickets shipped with cluster-rag (CC BY 4.0): ``id``, ``text``, ``label``."""
    text = (resources.files("cluster_rag") / "data" / SAMPLE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def open_index(path: str | None, rows: list[dict[str, Any]] | None = None, k: int = 20) -> ClusterIndex:
    """The fitted index at ``path``; without one, ``rows`` (default: the whole sample) in a temp dir.

    The temp dir lives until the process exits. Progress bars stay off.
    """
    config = IndexConfig(progress=False)
    if path is not None:
        return ClusterIndex.open(path, config=config, create=False)
    folder = Path(tempfile.mkdtemp(prefix="cluster-rag-example-"))
    index = ClusterIndex.open(folder / "kb", config=config)
    rows = sample_rows() if rows is None else rows
    index.add_texts(
        [r["text"] for r in rows],
        metadatas=[{"label": r["label"]} for r in rows],
        ids=[r["id"] for r in rows],
    )
    index.fit(k=k)
    return index


def scripted_step(question: str, results: list[str]) -> tuple[str, Any]:
    """What the offline scripted model does next, given the tool results it has seen so far.

    It browses by topic like a careful agent: ``list_topics`` ranked by the question,
    then ``search_within_topic`` in the best topic, then an answer quoting the best
    chunk. It reads the real tool results, so a wrong wire format or tool result breaks it.

    Returns:
        ``("call", (tool name, arguments))`` or ``("answer", text)``.
    """
    if not results:
        return "call", ("list_topics", {"query": question, "limit": 3})
    last = json.loads(results[-1])
    if "error" in last:
        return "answer", f"Sorry, the knowledge base could not answer ({last['error']})."
    if len(results) == 1:
        best = last["topics"][0]
        return "call", ("search_within_topic", {"query": question, "topic": str(best["id"]), "k": 3})
    if not last["hits"]:
        return "answer", f"Nothing in topic {last['topic']['name']!r} matches the question."
    top = last["hits"][0]
    return "answer", (
        f"This is a {last['topic']['name']!r} question (topic {last['topic']['id']}). "
        f'The closest ticket in that topic: "{top["text"]}" (chunk {top["id"]}, score {top["score"]:.2f}).'
    )
