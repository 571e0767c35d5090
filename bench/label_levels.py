"""Label hit rate and duplicate names per level of the topic tree (used by ``bench/labels.py``).

Every labeling run (:meth:`ClusterIndex.label`) names the topics (level 0) and then every
parent node of the version's topic tree (levels 1 .. depth) with the same labeler. Per level:

**Hit rate.** Level 0 is scored as ``bench/labels.py`` scores topics (nearest gold name
among the 20 newsgroups / 77 intents). A parent node of level ``L >= 1`` is scored against
the ground-truth *top-level* groups of 20 Newsgroups (``comp``, ``rec``, ``sci``, ``talk``
and the rest: ``alt``, ``misc``, ``soc``; the same five as ``bench/hierarchy.py``): its
majority top group is the one most of the chunks under it carry; its shown name
(:func:`cluster_rag.hierarchy.node_topic`: the stored name, or its only child's name) is
embedded with all-MiniLM-L6-v2, and the node is a hit when the nearest of the five group
names is its majority group. *raw* group names: the group's newsgroup names joined
(``rec.autos rec.motorcycles rec.sport.baseball rec.sport.hockey``); *readable*: the
hand-written :data:`TOP_NAMES`. Banking77 has no ground-truth hierarchy: its parent levels
get no hit rate. Every node whose ``level`` is ``L`` is scored.

**Duplicates.** An accepted LLM parent name (``ok``/``repaired``, source ``llm``) is a
duplicate when it equals or nearly equals (similarity >= 0.9) the final or pre-run name of
another node of its level, or the name of one of its children; a keyword list when
:func:`~cluster_rag.labeling.keyword_list_problem` flags it against the node's keywords and
children's names. Rejected copies / keyword lists: the answers the labeler turned down
(from the statuses' errors).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from cluster_rag.hierarchy import TopicTree, node_centroids, node_topic
from cluster_rag.labeling import keyword_list_problem
from cluster_rag.labeling.names import closest_clash

#: the five top-level groups of 20 Newsgroups, readable names (hand-written)
TOP_NAMES = {
    "comp": "computers",
    "rec": "cars, motorcycles and sports",
    "sci": "science",
    "talk": "politics",
    "rest": "religion and things for sale",
}
_DUPE_KEYS = ("accepted", "duplicates", "keyword_lists", "rejected_copies", "rejected_lists")
_COPY_MARKS = ("already used by another group", "the name of another group")
_LIST_MARKS = ("list of the group's keywords", "repeats the group's top keywords")


def top_group(label: str) -> str:
    """The top-level group of a 20 Newsgroups label (``comp``, ``rec``, ``sci``, ``talk`` or ``rest``)."""
    head = label.split(".")[0]
    return head if head in TOP_NAMES else "rest"


def top_gold(gold: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The five groups (sorted) and their raw / readable names, from the dataset's gold labels."""
    groups = sorted(TOP_NAMES)
    raw = [" ".join(g for g in sorted(gold) if top_group(g) == t) for t in groups]
    return groups, {"raw": raw, "readable": [TOP_NAMES[t] for t in groups]}


def shown_names(index: Any) -> dict[int, str]:
    """Every parent node's shown name (as ``topics(level=)`` shows it), by id."""
    tree, leaves = index.topic_tree(), index.topics()
    return {n.id: node_topic(tree, n.id, leaves).label for n in tree.nodes if n.level > 0}


def level_rows(
    index: Any,
    report: Any,
    counts: list[Counter[str]],
    before: dict[int, str],
    gold_vecs: dict[str, np.ndarray] | None,
    groups: list[str],
    embedder: Any,
) -> list[dict[str, Any]]:
    """One dict per parent level of the active version's tree (after a labeling run).

    Args:
        index: the labeled index.
        report: its :class:`~cluster_rag.labeling.LabelReport`.
        counts: gold-label counts of the chunks of each cluster position.
        before: :func:`shown_names` before the run.
        gold_vecs: embedded top-group names (``raw``/``readable``: ``(5, d)``), or ``None``
            (no ground-truth hierarchy: no hit rate).
        groups: the top groups in ``gold_vecs`` row order.
        embedder: embeds the names.
    """
    tree: TopicTree = index.topic_tree()
    leaves = index.topics()
    status = {s.topic_id: s for s in report.parents}
    rows = []
    for level in range(1, tree.depth + 1):
        nodes = sorted((n for n in tree.nodes if n.level == level), key=lambda n: n.id)
        shown = [node_topic(tree, n.id, leaves) for n in nodes]
        row: dict[str, Any] = {"level": level, "nodes": len(nodes), "named": 0, "errors": []}
        if gold_vecs is not None:
            majority = [_majority(counts, n.leaves) for n in nodes]
            vecs = embedder.embed([t.label for t in shown])
            row["rates"] = _rates(vecs, majority, gold_vecs, groups)
            cen = node_centroids(tree, [n.id for n in nodes], index.model.centroids, index.model.sizes)
            row["centroid"] = _rates(cen, majority, gold_vecs, groups)
        tally = Counter[str]()
        dupes = dict.fromkeys(_DUPE_KEYS, 0)
        for node, topic in zip(nodes, shown, strict=True):
            s = status.get(node.id)
            if s is None:
                continue  # a node over one topic: shows that topic's name, not labeled
            row["named"] += 1
            tally[s.status] += 1
            error = s.error or ""
            dupes["rejected_copies"] += sum(error.count(m) for m in _COPY_MARKS)
            dupes["rejected_lists"] += sum(error.count(m) for m in _LIST_MARKS)
            if s.status == "fallback":
                row["errors"].append(s.error or "")
            if s.status not in ("ok", "repaired") or topic.label_source != "llm":
                continue
            dupes["accepted"] += 1
            others = [t.label for n, t in zip(nodes, shown, strict=True) if n.id != node.id]
            others += [before[n.id] for n in nodes if n.id != node.id and n.id in before]
            children = [node_topic(tree, c, leaves).label for c in node.children]
            dupes["duplicates"] += closest_clash(topic.label, others + children) is not None
            dupes["keyword_lists"] += keyword_list_problem(topic.label, topic.keywords + children) is not None
        row["status"] = dict(tally)
        row["dupes"] = dupes
        rows.append(row)
    return rows


def _majority(counts: list[Counter[str]], positions: tuple[int, ...]) -> str:
    total = Counter[str]()
    for p in positions:
        for label, c in counts[p].items():
            total[top_group(label)] += c
    return total.most_common(1)[0][0]


def _rates(
    vectors: np.ndarray, majority: list[str], gold_vecs: dict[str, np.ndarray], groups: list[str]
) -> dict[str, float]:
    out = {}
    for kind, names in gold_vecs.items():
        nearest = np.argmax(vectors @ names.T, axis=1)
        out[kind] = float(np.mean([groups[j] == m for j, m in zip(nearest, majority, strict=True)]))
    return out


def status_text(status: dict[str, int]) -> str:
    """``ok/repaired/fallback`` (and ``+N cached``/``+N pinned`` when any)."""
    text = f"{status.get('ok', 0)}/{status.get('repaired', 0)}/{status.get('fallback', 0)}"
    extra = [f"+{status[k]} {k}" for k in ("cached", "pinned") if status.get(k)]
    return " ".join([text, *extra])
