"""Parent nodes of the topic tree get names from the labeler (real Chroma, bundled model): stored with
the version's tree, shown by ``topics(level=)``, ``topic_tree()`` and the ``list_topics`` tool, kept by
reopen, by a refit that keeps the node, and by rollback; unchanged parents are not relabeled."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pytest

from cluster_rag import ClusterIndex
from cluster_rag.hierarchy import TopicTree
from cluster_rag.labeling import LabelRequest, LabelResult
from cluster_rag.tools import TopicTools

pytestmark = pytest.mark.integration


class Namer:
    """Names a topic after its id and first keyword, a parent ``"Area <id>"``; records what it was asked."""

    cache_id = "namer:v1"

    def __init__(self) -> None:
        self.asked: list[int] = []

    def label(
        self, requests: Sequence[LabelRequest], *, reserved: Collection[str] = (), progress: bool = False
    ) -> list[LabelResult]:
        self.asked += [r.topic_id for r in requests]
        return [
            LabelResult(
                r.topic_id,
                f"Area {r.topic_id}" if r.children else f"Questions {r.topic_id} on {r.keywords[0]}",
                "One sentence.",
                source="llm",
            )
            for r in requests
        ]


def _expected(tree: TopicTree) -> dict[int, str]:
    """The name each labeled parent (two or more children) must have."""
    return {n.id: f"Area {n.id}" for n in tree.nodes if n.level > 0 and len(n.children) > 1}


def test_parent_names_are_stored_shown_and_kept(demo_index: ClusterIndex) -> None:
    first_version = demo_index.model_info.version
    namer = Namer()
    report = demo_index.label(namer)
    tree = demo_index.topic_tree()
    expected = _expected(tree)
    assert expected and {s.topic_id: s.label for s in report.parents} == expected
    assert report.parent_counts()["ok"] == len(expected) and report.counts()["ok"] == 20
    assert {pid: n.label for pid, n in tree.names.items()} == expected
    assert all(n.source == "llm" and n.key for n in tree.names.values())
    # topics(level=...) and the agent tool show them; a top node over one topic shows the topic's name
    for level in range(1, tree.depth + 1):
        for topic in demo_index.topics(level=level):
            node = tree.node(topic.id)
            if node.level > 0 and len(node.children) > 1:
                assert topic.label == expected[topic.id] and topic.label_source == "llm"
            elif node.level > 0:
                assert topic.label == demo_index.topic(node.children[0]).label
    tools = TopicTools(demo_index)
    rows = tools.list_topics(limit=50)["topics"]
    named_rows = [r for r in rows if r["id"] in expected]
    assert named_rows and all(r["name"] == expected[r["id"]] for r in named_rows)
    opened = next(r for r in rows if r["subtopics"] > 1)
    children = tools.list_topics(parent=opened["id"], limit=50)["topics"]
    assert len(children) == opened["subtopics"]
    for row in children:
        assert row["name"] == expected.get(row["id"], demo_index.topic(row["id"]).label)
    assert demo_index.topic(opened["name"]).id == opened["id"]  # a parent's name resolves to it
    # unchanged: no call for any topic or parent
    namer.asked.clear()
    again = demo_index.label(namer)
    assert namer.asked == [] and again.parent_counts()["cached"] == len(expected) and again.calls == 0
    # reopen: the names come from the store
    reopened = ClusterIndex.open(demo_index.location, embedder=demo_index.embedder, config=demo_index.config)
    assert reopened.topic_tree() == tree
    # refit on the same data: same nodes, same ids, names carried; labeling them again costs nothing
    demo_index.fit(k=20)
    assert demo_index.topic_tree().names == tree.names
    assert again.version != demo_index.label(namer).version and namer.asked == []
    # other leaves: rebuilt tree; rollback brings the first version's named tree back
    demo_index.fit(k=24)
    demo_index.rollback(first_version)
    assert demo_index.topic_tree() == tree
    assert [t.label for t in demo_index.topics(level=tree.depth)] == [
        t.label for t in reopened.topics(level=tree.depth)
    ]


def test_renaming_a_parent_pins_the_parent_not_its_first_topic(demo_index: ClusterIndex) -> None:
    from cluster_rag.errors import InvalidInputError

    demo_index.label(Namer())
    tree = demo_index.topic_tree()
    parent = next(n for n in tree.nodes if n.level > 0 and len(n.children) > 1)
    first_child = demo_index.topic(parent.children[0])
    renamed = demo_index.rename_topic(parent.id, "Money matters", description="Everything about money.")
    assert renamed.id == parent.id and renamed.label == "Money matters"
    assert demo_index.topic(parent.children[0]).label == first_child.label  # the topic under it is untouched
    assert demo_index.topic_tree().names[parent.id].pinned
    assert demo_index.topic("Money matters").id == parent.id
    with pytest.raises(InvalidInputError, match="already named"):
        demo_index.rename_topic(first_child.id, "money matters")
    demo_index.label(Namer(), force=True)  # a relabel keeps the pinned parent name
    assert demo_index.topic(parent.id).label == "Money matters"
    reopened = ClusterIndex.open(demo_index.location, embedder=demo_index.embedder, config=demo_index.config)
    assert reopened.topic(parent.id).label == "Money matters"
    released = demo_index.unpin_topic("Money matters")
    assert released.id == parent.id and not demo_index.topic_tree().names[parent.id].pinned
    demo_index.label(Namer())
    assert demo_index.topic(parent.id).label == f"Area {parent.id}"
