"""Naming the parent nodes of a version's topic tree, level by level, after its topics.

:func:`label_parents` is what :func:`cluster_rag.labeling.run.label_topics` calls once the
topics have their names (see that module's docstring for the rules). It is pure: it
takes the tree, the named topics, the labeler and the reusable parent names, and
returns the new names and their statuses; the caller stores them with the tree.

The check here does not trust the labeler: whatever names it returns, a parent name
that equals a reserved name (every topic and lower parent, the kept names of its
level), a sibling's or a child's name, or a name accepted earlier at its level is
rejected; so is an LLM name that nearly equals one (:func:`.names.closest_clash`) or
that is just a keyword list (:func:`.names.keyword_list_problem`, against its keywords and
its children's and siblings' names). The rejected
parents are asked once more, with the accepted names reserved; a name still rejected
becomes a distinct keyword label, status ``"fallback"``, with the reason in ``error``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

from ..errors import LabelingError
from ..hierarchy import NodeName, TopicTree, TreeNode
from ..types import Topic
from .base import Labeler, LabelRequest, LabelResult, TopicLabelStatus, label_key, normalize_name
from .keyword_labeler import distinct_keyword_label
from .names import closest_clash, keyword_list_problem
from .parents import ChildTopic, NamedNode, parent_requests
from .plan import CachedLabel

__all__ = ["ParentRun", "label_parents", "parent_cache"]

_ACCEPTED = ("ok", "repaired")


@dataclass
class ParentRun:
    """The outcome of :func:`label_parents`.

    Attributes:
        names: the name of every labeled parent (two or more children), by node id.
        statuses: one per labeled parent, lowest level first, then by id.
        prompt_tokens, completion_tokens, calls: spent on parents (retries included).
    """

    names: dict[int, NodeName] = field(default_factory=dict)
    statuses: list[TopicLabelStatus] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    def merge(self, stored: dict[int, NodeName]) -> dict[int, NodeName]:
        """``stored`` (the tree's names re-read at write time) with this run's names; a name
        pinned meanwhile by a person is kept."""
        out = dict(stored)
        for pid, name in self.names.items():
            current = stored.get(pid)
            if current is None or not current.pinned or name.pinned:
                out[pid] = name
        return out

    def add_spent(self, results: Sequence[LabelResult]) -> None:
        """Count the tokens and calls ``results`` cost."""
        self.prompt_tokens += sum(r.prompt_tokens for r in results)
        self.completion_tokens += sum(r.completion_tokens for r in results)
        self.calls += sum(r.calls for r in results)


def parent_cache(trees: Sequence[TopicTree]) -> dict[str, CachedLabel]:
    """Reusable parent names by cache key, from the trees of the kept versions (first wins)."""
    out: dict[str, CachedLabel] = {}
    for tree in trees:
        for name in tree.names.values():
            if name.key and name.source in ("llm", "keywords", "fallback") and not name.pinned:
                out.setdefault(name.key, CachedLabel(name.label, name.description, name.source))
    return out


def label_parents(
    tree: TopicTree,
    leaves: Sequence[Topic],
    labeler: Labeler,
    *,
    cache: dict[str, CachedLabel],
    force: bool = False,
    progress: bool = False,
) -> ParentRun:
    """Name every parent node of ``tree`` with two or more children, lowest level first.

    Args:
        tree: the version's topic tree (its stored names: pinned ones are kept, all are
            shown to the other parents of their level as names to avoid).
        leaves: the version's topics by position, already named, current sizes.
        labeler: the labeler of the run.
        cache: reusable names by cache key (:func:`parent_cache`).
        force: ignore the cache (pinned names are still kept).
        progress: passed to the labeler.

    Returns:
        The :class:`ParentRun`.

    Raises:
        LabelingError: the labeler returned results out of order or of the wrong count.
    """
    run = ParentRun()
    nodes: dict[int, ChildTopic] = {t.id: t for t in leaves}
    below = [t.label for t in leaves]
    shown = {pid: name.label for pid, name in tree.names.items()}
    for level in range(1, tree.depth + 1):
        at = sorted((n for n in tree.nodes if n.level == level), key=lambda n: n.id)
        groups = {n.id: list(n.children) for n in at if len(n.children) > 1}
        requests = parent_requests(groups, list(nodes.values()), names=shown) if groups else []
        named = _name_level(tree, level, requests, labeler, below, cache, force, progress, run)
        for node in at:
            nodes[node.id] = _as_child(node, named, requests, nodes)
        below += [name.label for name in named.values()]
    return run


def _as_child(
    node: TreeNode, named: dict[int, NodeName], requests: list[LabelRequest], nodes: dict[int, ChildTopic]
) -> ChildTopic:
    """A parent as a child of the level above: its name and merged keywords (one child: the child's)."""
    if node.id in named:
        req = next(r for r in requests if r.topic_id == node.id)
        return NamedNode(node.id, req.size, named[node.id].label, list(req.keywords))
    child = nodes[node.children[0]]
    return NamedNode(node.id, child.size, child.label, list(child.keywords))


def _name_level(
    tree: TopicTree,
    level: int,
    requests: list[LabelRequest],
    labeler: Labeler,
    below: list[str],
    cache: dict[str, CachedLabel],
    force: bool,
    progress: bool,
    run: ParentRun,
) -> dict[int, NodeName]:
    """Names of one level's parents (pinned, cached, or asked and checked); statuses go to ``run``."""
    keys = {r.topic_id: label_key(labeler.cache_id, r) for r in requests}
    pinned = {r.topic_id: tree.names[r.topic_id] for r in requests if _is_pinned(tree, r.topic_id)}
    hits = {} if force else {i: cache[k] for i, k in keys.items() if i not in pinned and k in cache}
    todo = [r for r in requests if r.topic_id not in pinned and r.topic_id not in hits]
    reserved = [*below, *(n.label for n in pinned.values()), *(c.label for c in hits.values())]
    results = _checked(labeler, todo, reserved, progress, run)
    named: dict[int, NodeName] = {}
    for req in requests:
        pid = req.topic_id
        if pid in pinned:
            named[pid] = pinned[pid]
            status = TopicLabelStatus(pid, "pinned", pinned[pid].label, pinned[pid].description, level=level)
        elif pid in hits:
            hit = hits[pid]
            named[pid] = NodeName(hit.label, hit.description, hit.source, keys[pid])
            status = TopicLabelStatus(pid, "cached", hit.label, hit.description, level=level)
        else:
            res = results[pid]
            named[pid] = NodeName(res.name, res.description, res.source, "" if res.transient else keys[pid])
            status = TopicLabelStatus(
                pid, res.status, res.name, res.description, res.error, res.transient, level=level
            )
        run.statuses.append(status)
    run.names.update(named)
    return named


def _is_pinned(tree: TopicTree, pid: int) -> bool:
    name = tree.names.get(pid)
    return name is not None and name.pinned


def _ask(
    labeler: Labeler, todo: list[LabelRequest], reserved: Collection[str], progress: bool, run: ParentRun
) -> list[LabelResult]:
    results = labeler.label(todo, reserved=reserved, progress=progress) if todo else []
    if [r.topic_id for r in results] != [r.topic_id for r in todo]:
        raise LabelingError(
            f"labeler {labeler.cache_id!r} returned {len(results)} results for {len(todo)} parent requests "
            "(or out of order); it must return one result per request, in order"
        )
    run.add_spent(results)
    return results


def _checked(
    labeler: Labeler, todo: list[LabelRequest], reserved: list[str], progress: bool, run: ParentRun
) -> dict[int, LabelResult]:
    """The labeler's results for ``todo`` after the copy check, one retry of the rejected
    parents, and the fallback of those still rejected; by parent id."""
    results = _ask(labeler, todo, reserved, progress, run)
    accepted = list(reserved)
    out: dict[int, LabelResult] = {}
    rejected: list[tuple[LabelRequest, str]] = []
    for req, res in zip(todo, results, strict=True):  # in parent-id order: the first claimant keeps a name
        problem = _problem(req, res, accepted)
        if problem is None:
            out[req.topic_id] = res
            accepted.append(res.name)
        else:
            rejected.append((req, problem))
    if not rejected:
        return out
    again = _ask(labeler, [req for req, _ in rejected], accepted, progress, run)
    taken = {normalize_name(n) for n in accepted}
    for (req, first), res in zip(rejected, again, strict=True):
        problem = _problem(req, res, accepted)
        if problem is None:
            out[req.topic_id] = replace(res, status="repaired", error=first)
            accepted.append(res.name)
            taken.add(normalize_name(res.name))
            continue
        name = distinct_keyword_label(req, taken)
        taken.add(normalize_name(name))
        out[req.topic_id] = LabelResult(
            topic_id=req.topic_id,
            name=name,
            keywords=list(req.keywords),
            status="fallback",
            source="fallback",
            error=f"{_kind(first)} rejected twice: {first}; then {problem}",
        )
    return out


def _kind(problem: str) -> str:
    copy = "already used" in problem or "the name of another group" in problem
    return "duplicate name" if copy else "keyword-list name"


def _problem(req: LabelRequest, res: LabelResult, accepted: list[str]) -> str | None:
    """Why the parent name ``res.name`` is rejected (``None``: it is kept).

    Every name must differ (case, spacing and punctuation aside) from the ``accepted``
    names, the request's siblings and children; an LLM name must not be a near-duplicate
    of one nor a keyword list.
    """
    others = [*accepted, *req.siblings, *req.children]
    wanted = normalize_name(res.name)
    same = next((o for o in others if normalize_name(o) == wanted), None)
    if same is not None:
        return f"the name {res.name!r} is already used by another group"
    if res.source != "llm" or res.status not in _ACCEPTED:
        return None
    close = closest_clash(res.name, others)
    if close is not None:
        return f"the name {res.name!r} is too close to {close!r}, the name of another group"
    # words of the siblings' names count too: "car / bike" for a politics group copies a sibling's keywords
    return keyword_list_problem(res.name, [*req.keywords, *req.children, *req.siblings])
