"""Names that never copy another topic's (issue 13 item 4): near-duplicates and keyword lists
are rejected, repaired once, then fall back flagged; parents are named from their children.
The LLM is the scripted server on 127.0.0.1 behind the real ``openai`` client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from cluster_rag import ClusterIndex, InvalidInputError, KeywordLabeler, OpenAILabeler, Topic
from cluster_rag.labeling import LabelRequest, NamedNode, keyword_list_problem, parent_requests, similarity
from cluster_rag.labeling.base import label_key
from cluster_rag.labeling.names import NEAR_DUPLICATE, closest_clash
from cluster_rag.labeling.prompt import build_messages
from tests.llm_stub import (
    NAMES,
    Reply,
    ScriptedLLM,
    answer,
    fitted_index,
    good,
    keywords_line,
    llm,
    shown_names,
    topic_of,
    user_prompt,
)

__all__ = ["llm"]  # the fixture, re-exported for pytest


def labeler(server: ScriptedLLM, **kwargs: Any) -> OpenAILabeler:
    options: dict[str, Any] = {"timeout": 5.0, "max_retries": 1, **kwargs}
    return OpenAILabeler(OpenAI(base_url=server.url, api_key="k"), "stub-model", **options)


@pytest.fixture
def index(tmp_path: Path) -> ClusterIndex:
    return fitted_index(tmp_path / "kb")


# the comparison itself ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b"),
    [("Pet care", "pet care."), ("Space flight", "flight, space"), ("Space flights", "Space flight"),
     ("Care of pets", "Pet care"), ("Top-up issues", "top up issue"), ("Home cooking", "HOME-COOKING")],
)
def test_rewrites_of_one_name_are_near_duplicates(a: str, b: str) -> None:
    assert similarity(a, b) >= NEAR_DUPLICATE and closest_clash(a, ["Music", b]) == b


@pytest.mark.parametrize(
    ("a", "b"),
    [("verify my identity", "why verify identity"), ("get physical card", "order physical card"),
     ("card not working", "virtual card not working"), ("ibm pc hardware", "mac hardware"),
     ("Pet care", "Pet care tips"), ("middle east politics", "politics"), ("Windows 95", "Windows 98"),
     ("Subject 10", "Subject 0")],
)
def test_distinct_names_that_share_words_are_not(a: str, b: str) -> None:
    assert similarity(a, b) < NEAR_DUPLICATE and closest_clash(a, [b]) is None


@pytest.mark.parametrize(
    ("name", "is_list"),
    [("space / launch / nasa", True), ("Space, NASA", True), ("launch; orbit", True),
     ("space launch nasa", True), ("Orbits / rockets", True), ("Space shuttle launch", False),
     ("NASA missions", False), ("Baseball", False), ("Rockets, satellites and probes", False),
     ("Space station launch", False), ("nasa orbit space station", True)],  # whole keywords count
)
def test_keyword_lists(name: str, is_list: bool) -> None:
    problem = keyword_list_problem(name, ["space", "launch", "nasa", "orbit", "shuttle", "space station"])
    assert (problem is not None) is is_list
    assert problem is None or repr(name) in problem


# a model that copies the names it is shown ---------------------------------------------------
def copier(body: dict[str, Any], n: int) -> Reply:
    """Answers a variant of the first name it is shown (a sibling, or the first name to avoid)."""
    shown = shown_names(body)
    return Reply(answer(shown[0].upper() + "s." if shown else "Anything"))


def test_a_model_copying_sibling_names_gets_no_duplicate_accepted(
    llm: ScriptedLLM, index: ClusterIndex
) -> None:
    llm.script = good
    index.label(labeler(llm))  # every topic has a good LLM name: the siblings a copier sees
    names = {t.id: t.label for t in index.topics()}
    llm.script = copier
    report = index.label(labeler(llm), force=True)
    assert report.counts()["fallback"] == 4 and report.counts()["ok"] == report.counts()["repaired"] == 0
    for status in report.topics:
        assert "duplicate name" in (status.error or "") and not status.transient
        assert index.topics()[status.topic_id].label_source == "fallback"
        assert closest_clash(status.label, [v for k, v in names.items() if k != status.topic_id]) is None
    for topic in ("pets", "space", "food", "music"):
        asked = llm.requests_for("note pets" if topic == "pets" else topic)[-2:]
        assert len(asked) == 2  # one answer, one repair listing the offending name first
        first, repair = asked
        offending = shown_names(first)[0]
        assert shown_names(repair)[len(shown_names(first))] == offending  # the names to avoid start with it
        assert f"{offending!r}, the name of another group" in repair["messages"][-1]["content"]
    labels = [t.label for t in index.topics()]
    assert all(closest_clash(a, [b]) is None for i, a in enumerate(labels) for b in labels[i + 1 :])


def test_a_copy_is_repaired_when_the_second_answer_is_new(llm: ScriptedLLM, index: ClusterIndex) -> None:
    llm.script = good
    index.label(labeler(llm))

    def script(body: dict[str, Any], n: int) -> Reply:
        if topic_of(body) == "food":
            first_ask = len(body["messages"]) == 2  # not a repair
            return copier(body, n) if first_ask else Reply(answer("Kitchen recipes"))
        return good(body, n)

    llm.script = script
    report = index.label(labeler(llm), force=True)
    food = next(s for s in report.topics if "food" in " ".join(index.topics()[s.topic_id].keywords))
    assert food.status == "repaired" and food.label == "Kitchen recipes"
    assert "the name of another group" in (food.error or "")
    assert report.counts()["ok"] == 3


def test_near_copies_within_one_run_keep_the_first(llm: ScriptedLLM, index: ClusterIndex) -> None:
    def script(body: dict[str, Any], n: int) -> Reply:
        variants = {"pets": "Hobbies", "music": "hobby", "food": "HOBBIES!", "space": "Space flight"}
        return Reply(answer(variants[topic_of(body)])) if n == 0 else good(body, n)

    llm.script = script
    report = index.label(labeler(llm))
    by_topic = {topic_of_status(index, s): s for s in report.topics}
    keeper = min(("pets", "music", "food"), key=lambda t: by_topic[t].topic_id)
    assert by_topic[keeper].status == "ok"
    for topic in {"pets", "music", "food"} - {keeper}:
        assert by_topic[topic].status == "repaired" and by_topic[topic].label == NAMES[topic]
        assert f"too close to {by_topic[keeper].label!r}" in (by_topic[topic].error or "") or (
            "already used" in (by_topic[topic].error or "")
        )


def topic_of_status(index: ClusterIndex, status: Any) -> str:
    words = " ".join(index.topics()[status.topic_id].keywords)
    return next(t for t in ("pets", "space", "food", "music") if t in words)


def test_a_keyword_list_is_rejected_then_falls_back(llm: ScriptedLLM, index: ClusterIndex) -> None:
    def script(body: dict[str, Any], n: int) -> Reply:
        words = keywords_line(body).removeprefix("Top keywords: ").split(", ")
        topic = topic_of(body)
        if topic == "pets" or (topic == "space" and n == 0):
            return Reply(answer(" / ".join(words[1:4])))  # the topic's own keywords, slash-joined
        return good(body, n)

    llm.script = script
    report = index.label(labeler(llm))
    pets = next(s for s in report.topics if topic_of_status(index, s) == "pets")
    space = next(s for s in report.topics if topic_of_status(index, s) == "space")
    assert pets.status == "fallback" and "list of the group's keywords" in (pets.error or "")
    assert index.topics()[pets.topic_id].label_source == "fallback"
    assert space.status == "repaired" and space.label == NAMES["space"]
    fix = llm.requests_for("space")[1]["messages"][-1]["content"]
    assert "list of the group's keywords" in fix and "plain words" in fix


# parents --------------------------------------------------------------------------------------
def leaves() -> list[Topic]:
    def t(i: int, size: int, label: str, words: str) -> Topic:
        return Topic(id=i, size=size, keywords=words.split(), representative_ids=[], label=label)

    return [
        t(0, 50, "Dog training", "dog leash bark puppy treat"),
        t(1, 30, "Cat health", "cat vet kitten litter treat"),
        t(2, 40, "Rocket launches", "rocket launch orbit nasa engine"),
        t(3, 20, "Moon missions", "moon apollo lander orbit nasa"),
        t(4, 25, "Guitar chords", "guitar chord strum song band"),
        t(5, 35, "Live concerts", "concert band stage ticket song"),
    ]


TREE = {10: [0, 1], 11: [2, 3], 12: [5, 4]}


def test_parent_requests_merge_children_contrastively() -> None:
    reqs = parent_requests(TREE, leaves(), names={11: "Space exploration"})
    assert [r.topic_id for r in reqs] == [10, 11, 12]
    pets, space, music = reqs
    assert pets.size == 80 and pets.children == ["Dog training", "Cat health"]  # largest child first
    assert music.children == ["Live concerts", "Guitar chords"]
    assert "treat" in pets.keywords[:2]  # shared by both children (5th of the largest child only)
    assert {"orbit", "nasa"} <= set(space.keywords[:3])
    assert set(space.keywords) <= {w for t in leaves()[2:4] for w in t.keywords}
    assert set(pets.siblings) == {"Space exploration", music.keyword_label}  # current names of the others
    assert "Space exploration" not in space.siblings and len(space.siblings) == 2
    assert pets.keyword_label.split(" / ")[:2] == pets.keywords[:2]
    # the prompt lists the subtopics and asks for what they share
    prompt = build_messages(pets)[1]["content"]
    assert '- "Dog training"\n- "Cat health"' in prompt and "broad group" in prompt
    assert prompt.startswith("Top keywords: " + ", ".join(pets.keywords))
    # a parent's cache key depends on its children's names; a leaf's does not change
    renamed = parent_requests({10: [0, 1]}, [leaves()[0], Topic(1, 30, leaves()[1].keywords, [], "Cats")])[0]
    assert label_key("x", renamed) != label_key("x", parent_requests({10: [0, 1]}, leaves())[0])
    leaf = LabelRequest(0, 1, ["a"], ["b"])
    assert label_key("x", leaf) == label_key("x", LabelRequest(0, 1, ["a"], ["b"], children=[]))


def test_a_higher_level_names_leaves_and_named_parents_together() -> None:
    level1 = parent_requests({10: [0, 1], 11: [2, 3]}, leaves())
    pairs = zip(level1, ["Pets", "Space"], strict=True)
    named = [*leaves(), *(NamedNode(q.topic_id, q.size, n, q.keywords) for q, n in pairs)]
    top = parent_requests({20: [10, 11], 21: [4, 5]}, named)  # a level-2 node may hold leaves directly
    assert [r.children for r in top] == [["Pets", "Space"], ["Live concerts", "Guitar chords"]]
    assert top[0].size == 140 and set(top[0].keywords) <= set(level1[0].keywords) | set(level1[1].keywords)


def test_parent_requests_check_their_input() -> None:
    with pytest.raises(InvalidInputError, match="parent 10 has no children"):
        parent_requests({10: []}, leaves())
    with pytest.raises(InvalidInputError, match=r"children \[99\]"):
        parent_requests({10: [0, 99]}, leaves())


def test_parents_named_by_an_llm_never_copy_a_child_or_each_other(llm: ScriptedLLM) -> None:
    def script(body: dict[str, Any], n: int) -> Reply:
        prompt = user_prompt(body)
        first_child = prompt.split("Subtopics of this broad group")[1].split('- "')[1].split('"')[0]
        if "Dog training" in prompt:  # copies its largest child, then names the group
            return Reply(answer(first_child if n == 0 else "Pets"))
        if "Rocket launches" in prompt:
            return Reply(answer("Space"))
        return Reply(answer("space." if n == 0 else "Music"))  # copies another parent, then a new name

    llm.script = script
    reqs = parent_requests(TREE, leaves())
    results = labeler(llm, concurrency=1).label(reqs, reserved=[t.label for t in leaves()])
    got = [(r.status, r.name) for r in results]
    assert got == [("repaired", "Pets"), ("ok", "Space"), ("repaired", "Music")]
    assert "'Dog training' is already used by another group" in (results[0].error or "")
    assert "'space' is already used" in (results[2].error or "")  # the validator trims the dot
    # without an LLM a parent gets its merged keywords
    assert KeywordLabeler().label(reqs)[0].name == reqs[0].keyword_label
