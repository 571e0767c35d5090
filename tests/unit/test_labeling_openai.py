"""OpenAILabeler through the real ``openai`` client against a scripted server on loopback.

Every failure path (junk, empty, too long, duplicate, slow, 5xx, 429, 401, a server
without JSON-schema support) is driven over real HTTP.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI, OpenAI

from cluster_rag import ClusterIndex, InvalidInputError, LabelingError, MissingDependencyError, OpenAILabeler
from cluster_rag.labeling import LabelRequest
from tests.llm_stub import NAMES, Reply, ScriptedLLM, answer, fitted_index, good, llm, topic_of, user_prompt

__all__ = ["llm"]  # the fixture, re-exported for pytest


def labeler(server: ScriptedLLM, *, client: Any = None, **kwargs: Any) -> OpenAILabeler:
    options = {"timeout": 5.0, "max_retries": 2, **kwargs}
    client = client or OpenAI(base_url=server.url, api_key="test-key")
    return OpenAILabeler(client, "stub-model", **options)


@pytest.fixture
def index(tmp_path: Path) -> ClusterIndex:
    return fitted_index(tmp_path / "kb")


def status_of(report: Any, index: ClusterIndex, topic: str) -> Any:
    tid = next(t.id for t in index.topics() if topic in " ".join(t.keywords))
    return report.topics[tid]


@pytest.mark.parametrize("client_kind", ["sync", "async"])
def test_good_answers_become_llm_labels(
    llm: ScriptedLLM, index: ClusterIndex, tmp_path: Path, client_kind: str
) -> None:
    llm.script = good
    cls = OpenAI if client_kind == "sync" else AsyncOpenAI
    lab = labeler(llm, client=cls(base_url=llm.url, api_key="test-key"))
    report = index.label(lab)
    assert report.counts()["ok"] == 4 and len(llm.requests) == 4
    parents = len(llm.parent_requests)  # the topic tree's parent nodes, named after the topics
    assert report.parent_counts()["ok"] == len(report.parents) == parents
    assert report.calls == 4 + parents and report.prompt_tokens == (4 + parents) * 11
    assert report.completion_tokens == (4 + parents) * 7
    first = llm.requests[0]
    assert first["model"] == "stub-model" and first["response_format"]["type"] == "json_schema"
    assert {t.label for t in index.topics()} == set(NAMES.values())
    assert all(t.label_source == "llm" and t.description.startswith("Notes about") for t in index.topics())
    # stored with the model version: a fresh handle reads the same names, search hits carry them
    reopened = ClusterIndex.open(tmp_path / "kb", embedder=index.embedder, config=index.config, create=False)
    assert [t.label for t in reopened.topics()] == [t.label for t in index.topics()]
    hit = reopened.search("rocket orbit moon", k=1)[0]
    assert hit.topic_label == "Space flight"
    assert reopened.topic("space flight").id == hit.topic_id
    # the same async client again: a second run must not trip over a closed event loop
    again = index.label(lab, force=True)
    assert again.counts()["ok"] == 4 and len(llm.requests) == 8


def test_prompt_carries_keywords_representatives_and_siblings(llm: ScriptedLLM, index: ClusterIndex) -> None:
    llm.script = good
    index.label(labeler(llm), n_representatives=3, n_siblings=2)
    prompt = user_prompt(llm.requests_for("note pets")[0])
    assert prompt.startswith("Top keywords: note pets")
    assert "Example documents (20 in the group):\n1. " in prompt
    assert "\n3. " in prompt and "\n4. " not in prompt
    siblings = prompt.split("Similar groups already named (pick a different name): ")[1].splitlines()[0]
    assert siblings.count(" / ") == 8 and siblings.count("; ") == 1  # two sibling keyword labels


def test_unchanged_clusters_are_cached_and_force_redoes_them(llm: ScriptedLLM, index: ClusterIndex) -> None:
    llm.script = good
    lab = labeler(llm)
    index.label(lab)
    sent = len(llm.requests)
    report = index.label(lab)
    assert report.counts()["cached"] == 4 and report.calls == 0 and len(llm.requests) == sent
    assert {s.label for s in report.topics} == set(NAMES.values())
    # another model is another cache key
    other = index.label(OpenAILabeler(OpenAI(base_url=llm.url, api_key="k"), "other-model"))
    assert other.counts()["ok"] == 4 and len(llm.requests) == sent + 4
    forced = index.label(lab, force=True)
    assert forced.counts()["ok"] == 4 and len(llm.requests) == sent + 8


def test_junk_gets_one_repair(llm: ScriptedLLM, index: ClusterIndex) -> None:
    def script(body: dict[str, Any], n: int) -> Reply:
        if topic_of(body) == "pets" and n == 0:
            return Reply("Sure! The group is about animals, I think.")
        return good(body, n)

    llm.script = script
    report = index.label(labeler(llm))
    assert status_of(report, index, "pets").status == "repaired"
    assert report.counts() == {"ok": 3, "repaired": 1, "fallback": 0, "cached": 0, "pinned": 0}
    repair = llm.requests_for("note pets")[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": "Sure! The group is about animals, I think."}
    assert "no JSON object" in repair[-1]["content"]
    assert index.topic("Pet care").label_source == "llm"


def test_junk_twice_falls_back_to_the_keyword_label(llm: ScriptedLLM, index: ClusterIndex) -> None:
    keyword_labels = {t.id: t.label for t in index.topics()}

    def script(body: dict[str, Any], n: int) -> Reply:
        if topic_of(body) == "pets":
            return Reply('{"name": "" , "description": ""}' if n == 0 else "")
        return good(body, n)

    llm.script = script
    report = index.label(labeler(llm))
    pets = status_of(report, index, "pets")
    assert pets.status == "fallback" and "empty" in (pets.error or "")
    topic = index.topics()[pets.topic_id]
    assert topic.label == keyword_labels[pets.topic_id] and topic.label_source == "fallback"
    assert len(llm.requests_for("note pets")) == 2  # one answer, one repair, no more
    # the same cluster and model give the same junk: cached like any label; --force asks again
    llm.script = good
    again = index.label(labeler(llm))
    assert again.counts()["cached"] == 4 and again.calls == 0
    assert index.topics()[pets.topic_id].label_source == "fallback"
    forced = index.label(labeler(llm), force=True)
    assert forced.counts()["ok"] == 4 and index.topics()[pets.topic_id].label == "Pet care"


def test_cut_off_answers_are_named_as_such_in_the_repair(llm: ScriptedLLM, index: ClusterIndex) -> None:
    def script(body: dict[str, Any], n: int) -> Reply:
        if topic_of(body) == "pets" and n == 0:
            return Reply('{"name": "Pet care", "description": "A very long', finish_reason="length")
        return good(body, n)

    llm.script = script
    report = index.label(labeler(llm, max_tokens=40))
    assert status_of(report, index, "pets").status == "repaired"
    fix = llm.requests_for("note pets")[1]["messages"][-1]["content"]
    assert "cut off at 40 tokens" in fix and "one short sentence" in fix


def test_too_long_and_placeholder_names_are_repaired(llm: ScriptedLLM, index: ClusterIndex) -> None:
    def script(body: dict[str, Any], n: int) -> Reply:
        topic = topic_of(body)
        if topic == "pets" and n == 0:
            return Reply(answer("Everything you ever wanted to know about dogs and cats"))
        if topic == "food" and n == 0:
            return Reply(answer("<name>"))
        return good(body, n)

    llm.script = script
    report = index.label(labeler(llm))
    assert status_of(report, index, "pets").status == "repaired"
    assert status_of(report, index, "food").status == "repaired"
    assert "at most 6" in llm.requests_for("note pets")[1]["messages"][-1]["content"]
    assert "placeholder" in llm.requests_for("food")[1]["messages"][-1]["content"]


def test_duplicate_names_keep_the_first_and_repair_the_rest(llm: ScriptedLLM, index: ClusterIndex) -> None:
    def script(body: dict[str, Any], n: int) -> Reply:
        topic = topic_of(body)
        if topic in ("pets", "music", "food"):
            if n == 0:
                return Reply(answer("Hobbies"))
            if topic == "music":
                return Reply(answer("hobbies."))  # still the same name after the repair
        return good(body, n)

    llm.script = script
    report = index.label(labeler(llm))
    ids = {t: status_of(report, index, t).topic_id for t in ("pets", "music", "food")}
    keeper = min(ids, key=ids.__getitem__)  # the lowest topic id keeps the name
    assert report.topics[ids[keeper]].status == "ok" and report.topics[ids[keeper]].label == "Hobbies"
    for topic in set(ids) - {keeper}:
        got = report.topics[ids[topic]]
        repair = llm.requests_for("note pets" if topic == "pets" else topic)[1]["messages"][-1]["content"]
        assert "'Hobbies' is already used by another group" in repair
        if topic == "music":  # answered the same name again: keyword label, flagged
            assert got.status == "fallback" and "duplicate name" in (got.error or "")
            assert index.topics()[ids[topic]].label_source == "fallback"
        else:
            assert got.status == "repaired" and got.label == NAMES[topic]
    assert len({t.label.casefold() for t in index.topics()}) == 4


def test_copying_another_clusters_keyword_label_is_a_duplicate(llm: ScriptedLLM, index: ClusterIndex) -> None:
    space_label = next(t.label for t in index.topics() if "note space" in t.keywords)

    def script(body: dict[str, Any], n: int) -> Reply:  # weak models copy the sibling names they see
        if topic_of(body) == "pets":
            return Reply(answer(space_label.upper()))
        return good(body, n)

    llm.script = script
    report = index.label(labeler(llm))
    pets = status_of(report, index, "pets")
    assert pets.status == "fallback" and "duplicate name" in (pets.error or "")
    assert "already used by another group" in llm.requests_for("note pets")[1]["messages"][-1]["content"]
    assert len({t.label.casefold() for t in index.topics()}) == 4


def test_slow_answers_time_out_retry_and_fall_back(llm: ScriptedLLM, index: ClusterIndex) -> None:
    def script(body: dict[str, Any], n: int) -> Reply:
        return Reply(answer("Too late"), delay=2.0) if topic_of(body) == "space" else good(body, n)

    llm.script = script
    # one request in flight and a known response format: the counts are the client's retries alone
    lab = labeler(llm, timeout=0.3, max_retries=1, concurrency=1, response_format="json_schema")
    report = index.label(lab)
    space = status_of(report, index, "space")
    assert space.status == "fallback" and "timed out after 2 attempt(s)" in (space.error or "")
    assert len(llm.requests_for("space")) == 2
    assert report.counts()["ok"] == 3
    # a transport failure is not the cluster's fault: the next run retries that cluster only
    llm.script = good
    again = index.label(labeler(llm))
    assert again.counts() == {"ok": 1, "repaired": 0, "fallback": 0, "cached": 3, "pinned": 0}
    assert again.calls == 1 and index.topics()[space.topic_id].label == "Space flight"


def test_server_errors_are_retried_with_backoff(llm: ScriptedLLM, index: ClusterIndex) -> None:
    def script(body: dict[str, Any], n: int) -> Reply:
        topic = topic_of(body)
        if topic == "space" and n == 0:
            return Reply(status=503, error="overloaded")
        if topic == "food" and n == 0:
            return Reply(status=429, error="slow down", headers={"retry-after": "0"})
        if topic == "music":
            return Reply(status=500, error="boom")
        return good(body, n)

    llm.script = script
    report = index.label(labeler(llm, max_retries=2, response_format="json_schema"))  # no format probe
    assert status_of(report, index, "space").status == "ok" and len(llm.requests_for("space")) == 2
    assert status_of(report, index, "food").status == "ok" and len(llm.requests_for("food")) == 2
    music = status_of(report, index, "music")
    assert music.status == "fallback" and "HTTP 500 after 3 attempt(s)" in (music.error or "")
    assert len(llm.requests_for("music")) == 3


@pytest.mark.parametrize(
    "rejection",
    [Reply(status=400, error="response_format json_schema is not supported"),
     Reply(status=500, error="body.response_format.type: Input should be 'text' or 'json_object'")],
    ids=["400", "llama.cpp-500"],
)
def test_server_without_json_schema_gets_plain_prompting(
    llm: ScriptedLLM, index: ClusterIndex, rejection: Reply
) -> None:
    def script(body: dict[str, Any], n: int) -> Reply:
        if "response_format" in body:
            return rejection
        name = NAMES[topic_of(body)]
        return Reply(f'Here is the label:\n```json\n{answer(name)}\n```\nHope this helps!')

    llm.script = script
    report = index.label(labeler(llm, concurrency=1))
    assert report.counts()["ok"] == 4
    formats = [b.get("response_format", {}).get("type", "text") for b in llm.requests]
    assert formats[:3] == ["json_schema", "json_object", "text"] and set(formats[3:]) == {"text"}
    assert len(llm.requests) == 6  # two rejected probes, then one request per cluster


def test_bad_key_stops_the_run_and_writes_nothing(llm: ScriptedLLM, index: ClusterIndex) -> None:
    before = [t.label for t in index.topics()]
    llm.script = lambda body, n: Reply(status=401, error="invalid api key")
    with pytest.raises(LabelingError, match="OPENAI_API_KEY") as err:
        index.label(labeler(llm))
    assert "stub-model" in str(err.value) and "401" in str(err.value)
    assert [t.label for t in index.topics()] == before
    assert len(llm.requests) <= 4


def test_concurrency_is_bounded(llm: ScriptedLLM, index: ClusterIndex) -> None:
    llm.script = lambda body, n: Reply(good(body, n).content, delay=0.2)
    index.label(labeler(llm, client=AsyncOpenAI(base_url=llm.url, api_key="k"), concurrency=2))
    assert len(llm.requests) == 4 and 1 <= llm.max_inflight <= 2


def test_pinned_topics_are_not_sent_but_named_as_siblings(llm: ScriptedLLM, index: ClusterIndex) -> None:
    pets = next(t.id for t in index.topics() if "note pets" in t.keywords)
    index.rename_topic(pets, "Animal companions", description="Care of dogs and cats.")
    llm.script = good
    report = index.label(labeler(llm))
    assert report.topics[pets].status == "pinned" and report.topics[pets].label == "Animal companions"
    assert not llm.requests_for("note pets") and len(llm.requests) == 3
    assert all('"Animal companions"' in user_prompt(b) for b in llm.requests)
    topic = index.topics()[pets]
    assert topic.pinned and topic.label_source == "human" and topic.description == "Care of dogs and cats."
    # an answer equal to the pinned name counts as a duplicate
    first_ask = lambda body: len(body["messages"]) == 2  # noqa: E731 - not a repair request
    llm.script = lambda body, n: Reply(answer("Animal companions")) if first_ask(body) else good(body, n)
    again = index.label(labeler(llm), force=True)
    assert again.counts() == {"ok": 0, "repaired": 3, "fallback": 0, "cached": 0, "pinned": 1}


@pytest.mark.parametrize("client_kind", ["sync", "async"])
def test_label_from_inside_a_running_event_loop(
    llm: ScriptedLLM, index: ClusterIndex, client_kind: str
) -> None:
    llm.script = good
    cls = OpenAI if client_kind == "sync" else AsyncOpenAI
    lab = labeler(llm, client=cls(base_url=llm.url, api_key="k"))

    async def inside() -> Any:  # e.g. a notebook or an async web handler calling the sync API
        return index.label(lab)

    assert asyncio.run(inside()).counts()["ok"] == 4


def test_labeler_rejects_bad_arguments(llm: ScriptedLLM) -> None:
    client = OpenAI(base_url=llm.url, api_key="k")
    with pytest.raises(InvalidInputError, match="openai.OpenAI or openai.AsyncOpenAI"):
        OpenAILabeler(object(), "m")
    with pytest.raises(InvalidInputError, match="model=''"):
        OpenAILabeler(client, "")
    with pytest.raises(InvalidInputError, match="concurrency=0"):
        OpenAILabeler(client, "m", concurrency=0)
    with pytest.raises(InvalidInputError, match="timeout=0"):
        OpenAILabeler(client, "m", timeout=0)
    with pytest.raises(InvalidInputError, match="response_format='xml'"):
        OpenAILabeler(client, "m", response_format="xml")


def test_missing_openai_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    class Completions:
        def create(self, **kwargs: Any) -> None:
            raise AssertionError("must not be called")

    class Client:
        class chat:  # noqa: N801 - mimics the OpenAI client's attribute path
            completions = Completions()

    lab = OpenAILabeler(Client(), "m")
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "cluster-rag\[openai\]"'):
        lab.label([LabelRequest(topic_id=0, size=1, keywords=["a"], representatives=["a"])])
