"""When is a topic name a copy? Near-duplicate names and keyword lists.

Weak local models copy the names they are shown: with SmolLM2-135M, 5 of 10 names
accepted as "ok" were another topic's name (issue 13), and others were the topic's own
keywords joined by slashes. Two checks catch them.

**Near-duplicates.** Names are compared by :func:`name_key`: case-folded, punctuation
and ``_`` as spaces, a plural ``s`` dropped (``ies`` → ``y``), function words (``of``,
``and``, ``the``, ...) dropped, words sorted. Two names are near-duplicates when the
:class:`difflib.SequenceMatcher` ratio of their keys is at least :data:`NEAR_DUPLICATE`
= 0.9 and they hold the same numbers (``Windows 95`` / ``Windows 98`` differ). The
threshold sits between what must pass and what must not: over all 2,926 + 190 pairs of
the distinct gold names of Banking77 (77 intents, ``_`` → space) and 20 Newsgroups
(hand-made readable names, bench/labels.py), the highest ratio is 0.882 (``verify my
identity`` / ``why verify identity``), then 0.833 (``get physical card`` / ``order
physical card``) and 0.815 (``ibm pc hardware`` / ``mac hardware``): distinct topics
that share most words stay apart. Rewrites of one name (case, punctuation, plural, word
order, ``of``/``and``: ``Space flights`` / ``flight, space``, ``Care of pets`` / ``Pet
care``) score 1.0. A name that only adds a word (``Pet care tips`` / ``Pet care``: 0.80)
is not caught: that is how distinct sibling intents are named (``card not working`` /
``virtual card not working``). The ratio is from the standard library; names are short,
so comparing each answer with a run's few hundred names costs milliseconds.

**Keyword lists.** A name is a keyword list when it is split by ``,``, ``/``, ``;``,
``|`` (or `` - ``) into two or more parts of which at least half are keywords of the
topic (a part whose words all occur among the keywords), or when it is made of three
or more whole keywords in their ranked order (``god jesus bible``; ``Top-up app`` is
two). One word (``Baseball``) or keywords rearranged into a phrase (``Space shuttle
launch`` from ``space, launch, nasa, orbit, shuttle``) is a name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

__all__ = ["NEAR_DUPLICATE", "closest_clash", "keyword_list_problem", "name_key", "similarity"]

#: SequenceMatcher ratio of two :func:`name_key` forms at or above which names are copies.
NEAR_DUPLICATE = 0.9

_FUNCTION_WORDS = frozenset(
    "a an the of and or for in on to with by about from at as & + my your our their its".split()
)
_SPLIT = re.compile(r"\s*(?:[,/;|·•]|\s-\s)\s*")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _words(text: str) -> list[str]:
    """Content words of ``text`` in order: case-folded, plural ``s`` dropped, function words dropped
    (all of them kept when nothing else is left)."""
    words = [_stem(w.replace("’", "'")) for w in _WORD.findall(text.casefold())]
    content = [w for w in words if w not in _FUNCTION_WORDS]
    return content or words


def name_key(name: str) -> str:
    """Comparison form of a name: content words, plural ``s`` dropped, sorted, single-spaced."""
    return " ".join(sorted(_words(name)))


def similarity(a: str, b: str) -> float:
    """SequenceMatcher ratio of the :func:`name_key` forms, in ``[0, 1]`` (1: the same name;
    0 when the names' numbers differ)."""
    ka, kb = name_key(a), name_key(b)
    if ka == kb:
        return 1.0
    if _numbers(ka) != _numbers(kb):
        return 0.0
    return difflib.SequenceMatcher(None, ka, kb, autojunk=False).ratio()


def _numbers(key: str) -> set[str]:
    return {w for w in key.split() if any(ch.isdigit() for ch in w)}


def closest_clash(name: str, others: Iterable[str], threshold: float = NEAR_DUPLICATE) -> str | None:
    """The name in ``others`` most similar to ``name`` if it is a near-duplicate, else ``None``.
    Names whose numbers differ (``Windows 95`` / ``Windows 98``) are never near-duplicates."""
    key = name_key(name)
    numbers = _numbers(key)
    best: tuple[float, str] | None = None
    for other in others:
        okey = name_key(other)
        if not okey:
            continue
        if okey == key:
            return other
        if _numbers(okey) != numbers:
            continue
        matcher = difflib.SequenceMatcher(None, key, okey, autojunk=False)
        if matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold:
            continue  # upper bounds: cheap rejection
        ratio = matcher.ratio()
        if ratio >= threshold and (best is None or ratio > best[0]):
            best = (ratio, other)
    return best[1] if best is not None else None


def keyword_list_problem(name: str, keywords: Sequence[str]) -> str | None:
    """Why ``name`` is just a list of ``keywords`` (``None`` when it is a name).

    Args:
        name: the candidate name.
        keywords: the topic's keywords, most distinctive first (for a parent topic,
            its children's names may be added).
    """
    known = {w for kw in keywords for w in _words(kw)}
    if not known:
        return None
    parts = [p for p in _SPLIT.split(name.strip()) if _words(p)]
    if len(parts) >= 2:
        listed = [p for p in parts if set(_words(p)) <= known]
        if 2 * len(listed) >= len(parts):
            return (
                f"the name {name!r} is a list of the group's keywords; write a short topic name in plain "
                "words instead of joining keywords"
            )
        return None
    ranks = _keyword_ranks(_words(name), [_words(kw) for kw in keywords])
    if ranks is not None and len(ranks) >= 3 and ranks == sorted(ranks):
        return (
            f"the name {name!r} only repeats the group's top keywords in order; write a short topic "
            "name in plain words"
        )
    return None


def _keyword_ranks(words: list[str], keywords: list[list[str]]) -> list[int] | None:
    """Cover ``words`` left to right with whole keywords (longest first at each place);
    the rank of each keyword used, or ``None`` when some word is not covered."""
    ranks: list[int] = []
    i = 0
    while i < len(words):
        best: tuple[int, int] | None = None  # (length, rank)
        for rank, kw in enumerate(keywords):
            if kw and words[i : i + len(kw)] == kw and (best is None or len(kw) > best[0]):
                best = (len(kw), rank)
        if best is None:
            return None
        ranks.append(best[1])
        i += best[0]
    return ranks
