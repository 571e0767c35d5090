"""Topic lookup by short names (issue 12 item 5): whole words and substrings of labels and
keywords match case-insensitively before fuzzy matching; ambiguity is an error naming the matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster_rag import ClusterIndex, InvalidInputError, UnknownTopicError
from tests.fixtures import FakeEmbedder
from tests.unit.test_living_index import CFG, add, topic_of


@pytest.fixture
def index(tmp_path: Path) -> ClusterIndex:
    idx = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)
    for name in ("pets", "space", "food"):
        add(idx, name)
    idx.fit(k=3)
    idx.rename_topic(topic_of(idx, "pets"), "Card fees and Charges")
    idx.rename_topic(topic_of(idx, "space"), "Space launches")
    idx.rename_topic(topic_of(idx, "food"), "Vitamins in food")
    return idx


def test_a_word_of_a_label_finds_the_topic(index: ClusterIndex) -> None:
    assert index.topic("fees").label == "Card fees and Charges"
    assert index.topic("  CHARGES ").label == "Card fees and Charges"
    hits = index.search("dog", k=3, topics=["launches"])
    assert {h.topic_label for h in hits} == {"Space launches"}


def test_a_substring_and_a_keyword_find_the_topic(index: ClusterIndex) -> None:
    assert index.topic("vitamin").label == "Vitamins in food"  # substring of a label word
    keyword = index.topic("Space launches").keywords[0]
    assert index.topic(keyword).label == "Space launches"


def test_exact_label_wins_and_ambiguity_lists_the_matches(index: ClusterIndex) -> None:
    assert index.topic("space launches").label == "Space launches"
    index.rename_topic("Vitamins in food", "Space food")
    with pytest.raises(UnknownTopicError, match=r"matches 2 topics .*Space food.*Space launches|matches 2"):
        index.topic("space")


def test_no_match_names_the_closest(index: ClusterIndex) -> None:
    with pytest.raises(UnknownTopicError, match="closest names"):
        index.topic("zzz qqq")
    with pytest.raises(InvalidInputError, match=r"must be a topic id \(int\) or a name \(str\)"):
        index.topic(3.5)  # type: ignore[arg-type]
