"""Topic tree with a real index (real Chroma, bundled model): stored at fit, drill-down search,
parent ids stable across refit and rollback."""

from __future__ import annotations

import pytest

from cluster_rag import ClusterIndex
from cluster_rag.errors import InvalidInputError, UnknownTopicError
from cluster_rag.hierarchy import TopicTree

pytestmark = pytest.mark.integration


def _top_sets(tree: TopicTree) -> dict[frozenset[int], int]:
    return {frozenset(tree.leaf_ids(n.id)): n.id for n in tree.top}


def test_tree_is_stored_with_the_version_and_levels_partition_the_topics(demo_index: ClusterIndex) -> None:
    tree = demo_index.topic_tree()
    payload = demo_index.store.load_model(demo_index.model_info.version)
    assert TopicTree.from_dict(payload["tree"]) == tree
    assert tree.evidence["chosen"] == len(tree.top) and tree.evidence["candidates"]
    topic_ids = {t.id for t in demo_index.topics()}
    parent_ids = {n.id for n in tree.nodes if n.level > 0}
    assert not topic_ids & parent_ids
    assert payload["next_topic_id"] > max(topic_ids | parent_ids)  # parents drew from the topic counter
    broad = demo_index.topics(level=tree.depth)
    assert [t.id for t in broad] == [n.id for n in tree.top]
    assert sum(t.size for t in broad) == sum(t.size for t in demo_index.topics()) == 400
    assert all(t.keywords and t.label for t in broad)
    assert sorted(t.id for t in demo_index.topics(level=0)) == sorted(topic_ids)
    with pytest.raises(InvalidInputError, match="level="):
        demo_index.topics(level=tree.depth + 1)


def test_search_within_a_parent_searches_every_topic_under_it(demo_index: ClusterIndex) -> None:
    tree = demo_index.topic_tree()
    parent = tree.top[0]
    leaves = set(tree.leaf_ids(parent.id))
    hits = demo_index.search("my card payment was declined", k=15, topics=[parent.id])
    assert hits and {h.topic_id for h in hits} <= leaves
    same = demo_index.search("my card payment was declined", k=15, topics=sorted(leaves))
    assert [h.id for h in hits] == [h.id for h in same]
    with pytest.raises(UnknownTopicError):
        demo_index.search("card", topics=[10_000])
    as_topic = demo_index.topic(parent.id)  # a parent is shown as a Topic, not as its first child
    assert as_topic.id == parent.id and as_topic.size == parent.size
    assert demo_index.topic(str(parent.id)).id == parent.id


def test_parent_ids_survive_refit_and_rollback(demo_index: ClusterIndex) -> None:
    first_version = demo_index.model_info.version
    before = demo_index.topic_tree()
    demo_index.fit(k=20)  # same data, same seed: same leaves, so the same broad topics and ids
    again = demo_index.topic_tree()
    assert _top_sets(again) == _top_sets(before)
    assert {n.id for n in again.nodes} == {n.id for n in before.nodes}
    demo_index.fit(k=24)  # other leaves: the tree is rebuilt, matching parents keep their ids
    other = demo_index.topic_tree()
    old_parents = {n.id for n in before.nodes if n.level > 0}
    new_parents = {n.id for n in other.nodes if n.level > 0}
    topic_ids = {t.id for t in demo_index.topics()}
    assert not new_parents & topic_ids
    assert all(p in old_parents or p >= before.next_id for p in new_parents)  # no id reused for another node
    demo_index.rollback(first_version)
    assert demo_index.topic_tree() == before
