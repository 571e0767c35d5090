"""Bounded, clean tool output (issue 16 item 2): every result within its byte budget, cuts
marked ``truncated``, no absolute server path, through OpenAI dispatch and the MCP server.

The collection holds chunks of 200,000 characters (one with a 5,000-character word, which
becomes a keyword), a chunk with 40 metadata keys of 300 characters holding 5,000-character
values and a list of 200 long items, files ingested from an absolute folder, and many topics
(60 by default; 500 under ``-m slow``). Arguments are huge too: 120,000-character queries,
100,000-character ids, 100-digit topic ids, a 1 MB argument object.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.tools import TopicTools
from tests.fixtures import FakeEmbedder
from tests.integration.test_access_control import blocking_session

pytestmark = pytest.mark.integration


class FirstRows:
    """A clusterer whose centroids are the first ``k`` rows (fast, for many topics)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def fit(self, X: np.ndarray) -> FirstRows:
        self.cluster_centers_ = X[: self.k]
        return self


def build(base: Path, n_topics: int) -> tuple[ClusterIndex, Path]:
    files = base / "deep" / "server" / "kb"
    files.mkdir(parents=True)
    for i in range(3):
        text = " ".join(f"Section {j} of guide {i} about cards." for j in range(300))
        (files / f"guide{i}.md").write_text(text)
    index = ClusterIndex.open(base / "store", embedder=FakeEmbedder(), config=IndexConfig(progress=False))
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(3000)]
    index.add_texts([" ".join(rng.choice(words, size=5)) for _ in range(2 * n_topics)])
    long_text = "card " * 40_000
    longs = [long_text + "q" * 5000, long_text + "fee", long_text + "atm"]
    index.add_texts(longs, ids=["long-0", "long-1", "long-2"])
    huge = {f"k{i}" + "x" * 300: "v" * 5000 for i in range(40)}
    huge["items"] = ["y" * 1000] * 200
    index.add_texts(["card fee metadata monster"], [huge], ["bigmeta"])
    index.ingest_files([files])
    index.fit(clusterer=FirstRows(n_topics))
    return index, files


HUGE_QUERY = "card " * 24_000  # 120,000 characters
CALLS: list[tuple[str, Any]] = [
    ("list_topics", {"limit": 50}),
    ("list_topics", {"query": HUGE_QUERY, "limit": 50}),
    ("list_topics", {"query": "card fee", "limit": 10**9}),
    ("get_document", {"id": "long-0"}),
    ("get_document", {"id": "bigmeta"}),
    ("get_document", {"id": "x" * 100_000}),
    ("search_within_topic", {"query": HUGE_QUERY, "topic": "9" * 100, "k": 5}),
    ("search_within_topic", {"query": "q" * 120_000, "topic": "n" * 60_000, "k": 5}),
    ("list_topics", {"query": "card", "limit": 5, **{f"junk{i}": "z" * 10_000 for i in range(100)}}),
    ("x" * 50_000, {}),
]


def topic_calls(tools: TopicTools) -> list[tuple[str, Any]]:
    """Searches in the topics holding the long chunks, the metadata monster and the files."""
    hits = tools.index.get(["long-0", "bigmeta"])
    calls: list[tuple[str, Any]] = [
        ("search_within_topic", {"query": "card fee atm", "topic": h.topic_id, "k": 20}) for h in hits
    ]
    files = tools.index.search("Section of guide about cards", k=1)
    calls.append(("search_within_topic", {"query": "guide cards", "topic": files[0].topic_id, "k": 20}))
    calls.append(("get_document", {"id": files[0].id}))
    return calls


def check(text: str, budget: int, root: Path) -> dict[str, Any]:
    assert len(text.encode("utf-8")) <= budget, (len(text.encode("utf-8")), text[:300])
    assert str(root) not in text and str(root.parent) not in text  # no absolute server path
    out: dict[str, Any] = json.loads(text)
    return out


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClusterIndex, Path, Path]:
    base = tmp_path_factory.mktemp("budget")
    index, files = build(base, 60)
    return index, files, base / "store"


@pytest.mark.parametrize("budget", [16384, 2048])
def test_openai_dispatch_results_stay_within_the_budget(
    kb: tuple[ClusterIndex, Path, Path], budget: int
) -> None:
    index, files, _ = kb
    tools = TopicTools(index, max_result_bytes=budget)
    cut = 0
    for name, args in [*CALLS, *topic_calls(tools)]:
        answer = tools.dispatch({"function": {"name": name, "arguments": json.dumps(args)}})
        out = check(answer, budget, files)
        cut += "truncated" in json.dumps(out)
    assert cut >= 3  # long chunk, metadata monster and long hits were cut and said so
    doc = json.loads(tools.call("get_document", {"id": "bigmeta"}))
    assert doc["truncated"] is True and len(doc["metadata"]) <= 20
    assert all(len(key) <= 64 for key in doc["metadata"])
    listed = json.loads(tools.call("list_topics", {"limit": 50}))
    broad = len(index.topic_tree().top)  # list_topics answers the tree's top level
    assert listed["total_topics"] == broad and listed["returned"] == len(listed["topics"]) <= 50
    assert all(len(w) <= 60 for t in listed["topics"] for w in t["keywords"])
    ingested = json.loads(tools.call("get_document", {"id": "guide1.md#0"}))  # the relative form works
    assert ingested["metadata"]["source"] == "guide1.md" and ingested["id"] == "guide1.md#0"


def test_mcp_results_stay_within_the_budget(kb: tuple[ClusterIndex, Path, Path], tmp_path: Path) -> None:
    index, files, store = kb
    served = tmp_path / "served"
    shutil.copytree(store, served)
    budget = 4096
    calls = [(n, a) for n, a in [*CALLS, *topic_calls(TopicTools(index))] if len(n) < 100]
    with blocking_session(served, "", budget, tmp_path / "server.log") as (portal, session):
        for name, args in calls:
            result = portal.call(session.call_tool, name, args)
            text = "".join(getattr(c, "text", "") for c in result.content)
            if result.is_error:  # the SDK's or the tool's error text: bounded, no path
                assert len(text.encode("utf-8")) <= budget and str(files) not in text, text[:300]
            else:
                check(text, budget, files)


@pytest.mark.slow
def test_five_hundred_topics_stay_within_the_budget(tmp_path: Path) -> None:
    index, files = build(tmp_path, 500)
    tools = TopicTools(index)
    for query in (None, "card fee", HUGE_QUERY):
        out = check(tools.call("list_topics", {"query": query, "limit": 50}), tools.max_result_bytes, files)
        assert out["total_topics"] == len(index.topic_tree().top)
