"""Labels without an LLM: the top c-TF-IDF keywords of each cluster joined into a name."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ..errors import InvalidInputError
from .base import LabelRequest, LabelResult, normalize_name
from .keywords import KEYWORDS_IN_LABEL, keyword_label

__all__ = ["KeywordLabeler", "distinct_keyword_label"]


def distinct_keyword_label(
    request: LabelRequest, taken: Collection[str], n: int = KEYWORDS_IN_LABEL
) -> str:
    """The keyword label of ``request``, with more keywords (then the topic id) until its
    :func:`normalize_name` form is not in ``taken`` (a set of normalized names)."""
    name = keyword_label(request.keywords, n)
    while normalize_name(name) in taken and n < len(request.keywords):
        n += 1
        name = keyword_label(request.keywords, n)
    if normalize_name(name) in taken:
        name = f"{name} ({request.topic_id})"
    return name


class KeywordLabeler:
    """Names each cluster after its top ``n_keywords`` keywords, e.g. ``"card / pin / atm / cash / limit"``.

    When two clusters would get the same name, the later one takes further keywords
    until the names differ. No network, no model, deterministic.

    Args:
        n_keywords: keywords in a label.
    """

    def __init__(self, n_keywords: int = KEYWORDS_IN_LABEL) -> None:
        if isinstance(n_keywords, bool) or not isinstance(n_keywords, int) or n_keywords < 1:
            raise InvalidInputError(f"n_keywords={n_keywords!r} must be a positive int")
        self.n_keywords = n_keywords

    @property
    def cache_id(self) -> str:
        return f"keywords:n{self.n_keywords}:v1"

    def label(
        self,
        requests: Sequence[LabelRequest],
        *,
        reserved: Collection[str] = (),
        progress: bool = False,
    ) -> list[LabelResult]:
        """Keyword labels for every request (never fails, never calls out)."""
        taken = {normalize_name(r) for r in reserved}
        out: list[LabelResult] = []
        for req in requests:
            name = distinct_keyword_label(req, taken, self.n_keywords)
            taken.add(normalize_name(name))
            out.append(
                LabelResult(
                    topic_id=req.topic_id,
                    name=name,
                    keywords=list(req.keywords),
                    status="ok",
                    source="keywords",
                )
            )
        return out
