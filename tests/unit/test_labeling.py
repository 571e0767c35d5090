"""Labeling logic without an LLM: MMR, prompt budget, answer parsing, keyword labels,
the label cache, pinning (real embedded Chroma, fake embedder)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pytest

from cluster_rag import (
    ClusterIndex,
    InvalidInputError,
    KeywordLabeler,
    LabelingError,
    LabelRequest,
    LabelResult,
    NotFittedError,
    Topic,
    UnknownTopicError,
)
from cluster_rag.labeling import Labeler, mmr_indices
from cluster_rag.labeling.prompt import build_messages, estimate_tokens, extract_json, parse_answer
from tests.fixtures import FakeEmbedder
from tests.llm_stub import fitted_index


@pytest.fixture
def index(tmp_path: Path) -> ClusterIndex:
    return fitted_index(tmp_path / "kb")


class CountingLabeler:
    """A minimal third-party labeler: proves the protocol is enough, and counts calls."""

    cache_id = "counting:v1"

    def __init__(self) -> None:
        self.seen: list[int] = []  # topics asked for
        self.seen_parents: list[int] = []  # parent nodes of the topic tree asked for
        self.reserved: list[str] = []

    def label(
        self, requests: Sequence[LabelRequest], *, reserved: Collection[str] = (), progress: bool = False
    ) -> list[LabelResult]:
        self.seen_parents += [r.topic_id for r in requests if r.children]
        if not requests or requests[0].children:
            return [LabelResult(r.topic_id, f"group of {len(r.children)}", source="llm") for r in requests]
        self.seen += [r.topic_id for r in requests]
        self.reserved = list(reserved)
        return [
            LabelResult(r.topic_id, f"topic {r.keywords[0]}", "One sentence.", source="llm") for r in requests
        ]


# MMR ----------------------------------------------------------------------------------------
def test_mmr_starts_central_and_skips_near_copies() -> None:
    centroid = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    rows = np.array(
        [[0.99, 0.14, 0.0], [0.99, 0.14, 0.0], [0.98, 0.0, 0.2], [0.9, -0.43, 0.0], [0.5, 0.86, 0.0]],
        dtype=np.float32,
    )
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    plain = mmr_indices(rows, centroid, 3, diversity=0.0)
    assert list(plain) == list(np.argsort(-(rows @ centroid), kind="stable")[:3])
    diverse = mmr_indices(rows, centroid, 3, diversity=0.5)
    assert diverse[0] == plain[0] and 1 not in diverse  # row 1 is an exact copy of row 0
    assert len(set(diverse.tolist())) == 3
    assert len(mmr_indices(rows[:2], centroid, 5)) == 2 and len(mmr_indices(rows[:0], centroid, 5)) == 0


# prompt and answer ----------------------------------------------------------------------------
def test_prompt_fits_the_token_budget_and_keeps_keywords_and_siblings() -> None:
    req = LabelRequest(
        topic_id=0,
        size=120,
        keywords=["card", "arrival", "delivery"],
        representatives=["word " * 2000, "short one", "another " * 500],
        siblings=["Card fees", "Lost PIN"],
    )
    for budget in (200, 400, 1000):
        messages = build_messages(req, max_prompt_tokens=budget, max_chunk_tokens=150)
        total = sum(estimate_tokens(m["content"]) for m in messages)
        assert total <= budget
        assert "Top keywords: card, arrival, delivery" in messages[1]["content"]
        assert '"Card fees"; "Lost PIN"' in messages[1]["content"]
        assert "1. word word" in messages[1]["content"]
    words = build_messages(req, max_prompt_tokens=300, count_tokens=lambda s: len(s.split()))
    assert sum(len(m["content"].split()) for m in words) <= 300


def test_extract_json_finds_the_first_object_in_prose() -> None:
    assert extract_json('Sure! ```json\n{"name": "A {b}", "x": {"y": 1}}\n``` bye {"z": 2}') == {
        "name": "A {b}",
        "x": {"y": 1},
    }
    assert extract_json("{not json} then {\"a\": 1}") == {"a": 1}
    assert extract_json("[1, 2] no object") is None and extract_json("") is None


def test_parse_answer_validates_and_says_what_is_wrong() -> None:
    ok, problem = parse_answer('{"name": " Card delivery. ", "description": "When cards arrive. More.", '
                               '"keywords": "card, mail"}')
    assert problem is None and ok.name == "Card delivery" and ok.description == "When cards arrive."
    assert ok.keywords == ["card", "mail"]
    for text, expected in [
        ("", "empty"),
        ("just words", "no JSON object"),
        ('{"name": "one two three four five six seven", "description": "d"}', "at most 6"),
        ('{"name": "<name>", "description": "d"}', "placeholder"),
        ('{"name": "Topic", "description": "d"}', "placeholder"),
        ('{"name": "Cards"}', "description"),
        ('{"name": "42", "description": "d"}', "number"),
    ]:
        answer, problem = parse_answer(text)
        assert answer is None and expected in (problem or ""), (text, problem)


def test_keywords_ignore_mail_addresses_and_urls() -> None:
    from cluster_rag.labeling import ctfidf_keywords

    texts = [
        "In <1993@cs.cmu.edu> joe@cmu.edu wrote: the rocket launch reached orbit",
        "rocket orbit launch, see http://www.nasa.gov/launch and www.cmu.edu",
        "bake the pizza in a hot oven, mail pat@cmu.edu",
        "pizza oven recipe at https://cmu.edu/pizza",
    ]
    kws = ctfidf_keywords(texts, np.array([0, 0, 1, 1]), 2)
    assert "rocket" in kws[0] and "pizza" in kws[1]
    assert not any("cmu" in k or "edu" in k or "nasa" in k or "http" in k for ks in kws for k in ks)


# keyword labeler -------------------------------------------------------------------------------
def test_keyword_labeler_keeps_names_distinct() -> None:
    reqs = [
        LabelRequest(0, 5, ["card", "pin", "atm", "cash"], []),
        LabelRequest(1, 5, ["card", "pin", "atm", "limit"], []),
        LabelRequest(2, 5, ["card", "pin"], []),
    ]
    out = KeywordLabeler(n_keywords=3).label(reqs, reserved=["Card / PIN"])
    assert [r.name for r in out] == ["card / pin / atm", "card / pin / atm / limit", "card / pin (2)"]
    assert all(r.status == "ok" and r.source == "keywords" for r in out)
    with pytest.raises(InvalidInputError, match="n_keywords=0"):
        KeywordLabeler(n_keywords=0)
    assert isinstance(KeywordLabeler(), Labeler) and isinstance(CountingLabeler(), Labeler)


# index.label: cache, pinning, contract ------------------------------------------------------------
def test_label_caches_per_content_and_labeler(index: ClusterIndex) -> None:
    first = index.label()
    assert first.counts()["ok"] == 4 and first.calls == 0 and first.labeler == "keywords:n5:v1"
    assert index.label().counts()["cached"] == 4
    counting = CountingLabeler()
    assert index.label(counting).counts()["ok"] == 4 and sorted(counting.seen) == [0, 1, 2, 3]
    assert all(t.label.startswith("topic ") and t.label_source == "llm" for t in index.topics())
    counting.seen.clear()
    assert index.label(counting).counts()["cached"] == 4 and counting.seen == []
    assert index.label(counting, force=True).counts()["ok"] == 4 and len(counting.seen) == 4
    # content change (representatives drawn from more chunks) invalidates only that cluster
    counting.seen.clear()
    index.add_texts(["rocket orbit moon mars launch astronaut nasa planet note space"])  # near the centroid
    report = index.label(counting)
    assert report.counts()["ok"] == 1 and len(counting.seen) == 1


def test_labels_are_reused_by_a_refit_with_the_same_clusters(index: ClusterIndex) -> None:
    counting = CountingLabeler()
    index.label(counting)
    version = index.fit(k=4).version
    assert version == 2
    counting.seen.clear()
    report = index.label(counting)
    assert report.version == 2 and report.counts()["cached"] == 4 and counting.seen == []
    assert all(t.label.startswith("topic ") for t in index.topics())


def test_rename_pins_and_survives_relabeling(index: ClusterIndex, tmp_path: Path) -> None:
    space = index.search("rocket orbit", k=1)[0].topic_id
    topic = index.rename_topic(space, "  Space   flight ", description="Launches and orbits.")
    assert topic.label == "Space flight" and topic.pinned and topic.label_source == "human"
    counting = CountingLabeler()
    report = index.label(counting, force=True)
    assert space not in counting.seen and report.topics[space].status == "pinned"
    assert "Space flight" in counting.reserved
    reopened = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=index.config, create=False)
    assert reopened.topic("space flight").description == "Launches and orbits."
    assert reopened.search("rocket", k=1)[0].topic_label == "Space flight"
    # rename by name, keep the description; then unpin and relabel
    assert index.rename_topic("Space flight", "Rockets").description == "Launches and orbits."
    assert not index.unpin_topic("Rockets").pinned
    index.label(counting)
    assert index.topics()[space].label.startswith("topic ")


def test_rename_rejects_bad_names(index: ClusterIndex) -> None:
    index.rename_topic(0, "Alpha")
    with pytest.raises(InvalidInputError, match="topic 0 is already named 'Alpha'"):
        index.rename_topic(1, "alpha")
    with pytest.raises(InvalidInputError, match="non-blank"):
        index.rename_topic(1, "   ")
    with pytest.raises(InvalidInputError, match="bare number"):
        index.rename_topic(1, "17")
    with pytest.raises(InvalidInputError, match="description"):
        index.rename_topic(1, "Beta", description=3)  # type: ignore[arg-type]
    with pytest.raises(UnknownTopicError, match="0 to 3"):
        index.rename_topic(9, "Beta")


def test_label_rejects_bad_labelers_and_unfitted_indexes(index: ClusterIndex, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="lacks cache_id"):
        index.label(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="n_representatives=0"):
        index.label(n_representatives=0)

    class Lossy(CountingLabeler):
        def label(self, requests, *, reserved=(), progress=False):  # type: ignore[no-untyped-def]
            return super().label(requests)[:-1]

    before = [t.label for t in index.topics()]
    with pytest.raises(LabelingError, match="3 results for 4 requests"):
        index.label(Lossy())
    assert [t.label for t in index.topics()] == before
    empty = ClusterIndex.open(tmp_path / "empty", embedder=FakeEmbedder(), config=index.config)
    with pytest.raises(NotFittedError):
        empty.label()


def test_old_topic_payloads_without_label_fields_still_load() -> None:
    old = {"id": 3, "size": 9, "keywords": ["a"], "representative_ids": ["x"], "label": "a / b"}
    topic = Topic.from_dict(old)
    assert topic.label_key == "" and topic.label_source == "keywords" and not topic.pinned
