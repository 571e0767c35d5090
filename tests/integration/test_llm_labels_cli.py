"""`cluster-rag label / rename / topics` in-process, against the scripted OpenAI-compatible server."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from cluster_rag import ClusterIndex
from cluster_rag.cli import main
from tests.llm_stub import Reply, ScriptedLLM, answer, keywords_line, llm

__all__ = ["llm"]

pytestmark = pytest.mark.integration


def named_by_keywords(body: dict[str, Any], n: int) -> Reply:
    words = keywords_line(body).removeprefix("Top keywords: ").split(", ")
    return Reply(answer(f"{words[0]} {words[1]}".title(), "Customers asking about one thing."))


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    for var in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS"):  # main() sets them; restore after
        monkeypatch.setenv(var, "1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_label_rename_topics(cli: Any, llm: ScriptedLLM, demo_index: ClusterIndex) -> None:
    kb = ["--path", demo_index.location]
    code, out, _ = cli("label", *kb, "--quiet")
    assert code == 0 and "keywords:n5:v1" in out and "20 ok" in out

    llm.script = named_by_keywords
    llm_flags = ["--llm-base-url", llm.url, "--llm-model", "stub-model", "--concurrency", "2"]
    code, out, _ = cli("label", *kb, *llm_flags, "--json")
    report = json.loads(out)
    assert code == 0 and report["counts"]["ok"] == 20 and len(llm.requests) == 20
    calls = 20 + len(llm.parent_requests)  # the topic tree's parent nodes are named after the topics
    assert report["calls"] == calls and len(report["parents"]) == sum(report["parent_counts"].values())
    assert report["prompt_tokens"] == calls * 11 and report["labeler"].startswith("openai:stub-model:")
    assert llm.requests[0]["model"] == "stub-model" and llm.requests[0]["max_tokens"] == 200

    code, out, _ = cli("topics", *kb)
    header = out.splitlines()[0].split()
    assert header == ["id", "size", "label", "source", "description", "keywords"]
    assert "Customers asking about one thing." in out and " llm " in out

    code, out, _ = cli("rename", *kb, "3", "Card troubles", "--description", "Hand written.", "--json")
    assert code == 0 and json.loads(out)["pinned"] is True
    code, _, err = cli("rename", *kb, "4", "card troubles")
    assert code == 2 and "already named 'Card troubles'" in err

    parents_asked = len(llm.parent_requests)
    code, out, _ = cli("label", *kb, *llm_flags, "--json")
    again = json.loads(out)
    assert again["counts"] == {"ok": 0, "repaired": 0, "fallback": 0, "cached": 19, "pinned": 1}
    # no topic is asked again; only the parent whose child was renamed (its cache key names its children)
    assert len(llm.requests) == 20 and again["calls"] == len(llm.parent_requests) - parents_asked <= 1

    llm.script = lambda body, n: Reply("no idea")
    code, out, err = cli("label", *kb, *llm_flags, "--force")
    assert code == 0 and "19 fallback" in out and "1 pinned" in out
    # the parents asked again fall back too, and are counted apart from the topics
    assert re.search(r"19 topic\(s\)( and [1-9]\d* parent topic\(s\))? kept their keyword label \(fallback\)", err)
    code, out, _ = cli("topics", *kb, "--json")
    topics = json.loads(out)
    assert topics[3]["label"] == "Card troubles" and topics[3]["description"] == "Hand written."
    assert sum(t["label_source"] == "fallback" for t in topics) == 19

    code, out, _ = cli("rename", *kb, "Card troubles", "--unpin")
    assert code == 0 and "unpinned" in out


def test_label_flag_errors(cli: Any, demo_index: ClusterIndex) -> None:
    kb = ["--path", demo_index.location]
    code, _, err = cli("label", *kb, "--llm-base-url", "http://127.0.0.1:9/v1")
    assert code == 2 and "needs --llm-model" in err
    code, _, err = cli("label", *kb, "--llm-model", "gpt-4o-mini")
    assert code == 2 and "OPENAI_API_KEY is not set" in err
    nowhere = ["--llm-base-url", "http://127.0.0.1:9/v1", "--llm-model", "m"]
    code, _, err = cli("label", *kb, *nowhere, "--concurrency=0")
    assert code == 2 and "concurrency=0" in err
    code, _, err = cli("rename", *kb, "3")
    assert code == 2 and "rename needs a NAME" in err
