"""Parent nodes of the topic tree get names after the topics (issue 13 item 4): a name that copies a
sibling parent's name (or a child's) is rejected, asked again once, then falls back flagged; unchanged
parents keep their name without a call; names live in the tree and survive its JSON round trip."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from cluster_rag import KeywordLabeler, Topic
from cluster_rag.hierarchy import NodeName, TopicTree, TreeNode, node_topic, version_tree
from cluster_rag.labeling import LabelRequest, LabelResult
from cluster_rag.labeling.names import closest_clash
from cluster_rag.labeling.parent_run import label_parents, parent_cache


class ScriptedLabeler:
    """A labeler whose parent names come from ``script(request, attempt)``; counts parent requests."""

    cache_id = "scripted:v1"

    def __init__(self, script: Callable[[LabelRequest, int], str]) -> None:
        self.script = script
        self.asked: list[int] = []
        self.reserved: list[list[str]] = []

    def label(
        self, requests: Sequence[LabelRequest], *, reserved: Collection[str] = (), progress: bool = False
    ) -> list[LabelResult]:
        self.reserved.append(list(reserved))
        out = []
        for r in requests:
            attempt = self.asked.count(r.topic_id)
            self.asked.append(r.topic_id)
            name = self.script(r, attempt)
            out.append(LabelResult(r.topic_id, name, "One sentence.", source="llm", calls=1))
        return out


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
        t(6, 10, "Knitting", "yarn needle knit wool scarf"),
    ]


def tree(names: dict[int, NodeName] | None = None) -> TopicTree:
    """Leaves 0-6; level 1: 10 = {0, 1}, 11 = {2, 3}, 12 = {4, 5}; level 2 (top): 20 = {10, 11},
    21 = {12}, 22 = {6} (a top node over one topic)."""
    kids = {10: (0, 1), 11: (2, 3), 12: (4, 5)}
    parent_of = {0: 10, 1: 10, 2: 11, 3: 11, 4: 12, 5: 12, 6: 22, 10: 20, 11: 20, 12: 21}
    sizes = [t.size for t in leaves()]
    nodes = [TreeNode(p, 0, parent_of[p], (), (p,), sizes[p]) for p in range(7)]
    nodes += [TreeNode(i, 1, parent_of[i], c, c, sum(sizes[x] for x in c)) for i, c in kids.items()]
    nodes += [
        TreeNode(20, 2, None, (10, 11), (0, 1, 2, 3), sum(sizes[:4])),
        TreeNode(21, 2, None, (12,), (4, 5), sizes[4] + sizes[5]),
        TreeNode(22, 2, None, (6,), (6,), sizes[6]),
    ]
    return TopicTree(nodes=tuple(nodes), depth=2, next_id=23, names=names or {})


def named(old: TopicTree, run_names: dict[int, NodeName]) -> TopicTree:
    return old.with_names({**old.names, **run_names})


def test_a_parent_copying_a_sibling_parents_name_is_rejected_and_marked() -> None:
    stale = {10: NodeName("Pets", source="llm", key="old"), 11: NodeName("Space", source="llm", key="old")}
    old = tree(stale)

    def copier(req: LabelRequest, attempt: int) -> str:  # always the first other parent shown
        return req.siblings[0] if req.siblings else "Hobbies"

    labeler = ScriptedLabeler(copier)
    run = label_parents(old, leaves(), labeler, cache={})
    level1 = [s for s in run.statuses if s.level == 1]
    assert [s.topic_id for s in level1] == [10, 11, 12]
    for status in level1:  # every answer copied a sibling, twice: the merged keyword label, flagged
        assert status.status == "fallback" and "duplicate name" in (status.error or "")
        assert "already used by another group" in (status.error or "")
        assert run.names[status.topic_id].source == "fallback"
        assert run.names[status.topic_id].label == status.label and " / " in status.label
    assert labeler.asked.count(10) == 2 and labeler.asked.count(12) == 2  # one answer, one retry
    names = [s.label for s in run.statuses]
    assert all(closest_clash(a, [b]) is None for i, a in enumerate(names) for b in names[i + 1 :])
    # the top level: 20 is asked (its siblings are 21 and 22), 21 and 22 show their only child's name
    assert [s.topic_id for s in run.statuses if s.level == 2] == [20]
    shown = named(old, run.names)
    assert node_topic(shown, 22, leaves()).label == "Knitting"
    assert node_topic(shown, 21, leaves()).label == run.names[12].label
    assert run.calls == len(labeler.asked)


def test_a_near_copy_within_one_level_keeps_the_first_and_retries_the_rest() -> None:
    answers = {10: ["Animals", "Animals"], 11: ["animals.", "Space travel"], 12: ["Music", "Music"]}
    labeler = ScriptedLabeler(lambda req, attempt: answers.get(req.topic_id, ["Everything"])[attempt])
    run = label_parents(tree(), leaves(), labeler, cache={})
    got = {s.topic_id: (s.status, s.label) for s in run.statuses}
    assert got[10] == ("ok", "Animals") and got[12] == ("ok", "Music") and got[20] == ("ok", "Everything")
    assert got[11] == ("repaired", "Space travel")
    err = next(s.error for s in run.statuses if s.topic_id == 11)
    assert "'animals.' is already used by another group" in (err or "")
    # every name below is reserved for the parents above; the retry reserves the names kept at its level
    assert {"Dog training", "Animals", "Music"} <= set(labeler.reserved[-2])
    assert "Animals" in labeler.reserved[1]


def test_a_parent_copying_its_child_or_listing_keywords_falls_back() -> None:
    def script(req: LabelRequest, attempt: int) -> str:
        if req.topic_id == 10:
            return req.children[0]  # "Dog training", its largest child
        if req.topic_id == 11:
            return " / ".join(req.keywords[:3])
        if req.topic_id == 12:
            return "Rocket / orbit" if attempt == 0 else "Music"  # a sibling's keywords, then a name
        return f"Group {req.topic_id}"

    run = label_parents(tree(), leaves(), ScriptedLabeler(script), cache={})
    by_id = {s.topic_id: s for s in run.statuses}
    assert by_id[10].status == "fallback" and "'Dog training' is already used" in (by_id[10].error or "")
    assert by_id[11].status == "fallback" and "list of the group's keywords" in (by_id[11].error or "")
    assert "keyword-list name" in (by_id[11].error or "")
    assert by_id[12].status == "repaired" and by_id[12].label == "Music"
    assert "'Rocket / orbit' is a list of the group's keywords" in (by_id[12].error or "")


def test_unchanged_parents_are_cached_pinned_ones_kept_and_names_survive_json() -> None:
    labeler = ScriptedLabeler(lambda req, attempt: f"Group {req.topic_id}")
    first = label_parents(tree(), leaves(), labeler, cache={})
    assert first.calls == 4 and {s.status for s in first.statuses} == {"ok"}
    stored = named(tree(), first.names)
    assert TopicTree.from_dict(stored.to_dict()) == stored  # names round-trip with the tree
    labeler.asked.clear()
    again = label_parents(stored, leaves(), labeler, cache=parent_cache([stored]))
    assert labeler.asked == [] and {s.status for s in again.statuses} == {"cached"}
    # a renamed child changes its parent's key: only that parent is asked again (20 is pinned)
    renamed = [*leaves()[:2], Topic(2, 40, leaves()[2].keywords, [], "Rockets"), *leaves()[3:]]
    pinned = stored.with_names({**stored.names, 20: NodeName("Pets and space", source="human", pinned=True)})
    third = label_parents(pinned, renamed, labeler, cache=parent_cache([pinned]))
    assert labeler.asked == [11]
    statuses = {s.topic_id: s.status for s in third.statuses}
    assert statuses == {10: "cached", 11: "ok", 12: "cached", 20: "pinned"}
    assert third.merge(pinned.names)[20].label == "Pets and space"
    # without an LLM a parent gets its merged keywords, distinct from every name below
    plain = label_parents(tree(), leaves(), KeywordLabeler(), cache={})
    assert {s.status for s in plain.statuses} == {"ok"} and all(" / " in s.label for s in plain.statuses)


def test_a_refit_carries_the_names_of_parents_that_keep_their_id() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 16))
    centroids = np.vstack([b + 0.05 * rng.normal(size=(4, 16)) for b in base])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    sizes = np.full(12, 10)
    first = version_tree(centroids, sizes, list(range(12)), 12)
    parents = [n.id for n in first.nodes if n.level > 0]
    with_names = first.with_names({p: NodeName(f"Group {p}", source="llm", key=f"k{p}") for p in parents})
    again = version_tree(centroids, sizes, list(range(12)), first.next_id, with_names.to_dict())
    assert {n.id for n in again.nodes} == {n.id for n in first.nodes}
    assert again.names == with_names.names
