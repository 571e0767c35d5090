"""Topic keywords by class-based TF-IDF (c-TF-IDF) and representative chunks.

c-TF-IDF treats all chunks of one cluster as one document:
``weight(t, c) = tf(t, c) / |c| * log(1 + A / f(t))`` where ``tf(t, c)`` is the
count of term ``t`` in cluster ``c``, ``|c|`` the cluster's total term count,
``f(t)`` the term's count over all clusters and ``A`` the mean term count per
cluster. Terms frequent in one cluster and rare elsewhere rank first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

__all__ = ["ctfidf_keywords", "keyword_label", "representative_indices"]

_CONTRACTIONS = {
    "dont", "im", "ive", "cant", "doesnt", "didnt", "isnt", "wont", "youre", "thats", "whats",
    "hasnt", "havent", "ill", "id", "arent", "wasnt", "couldnt", "shouldnt", "wouldnt", "theres",
    "lets", "hes", "shes", "theyre", "weve", "youve", "ok",
}


def _stop_words() -> list[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return sorted(set(ENGLISH_STOP_WORDS) | _CONTRACTIONS)


#: e-mail addresses and URLs: their pieces ("edu", "com", "cmu") would rank as keywords of
#: mail-like text (20 Newsgroups: +0.1 label hit rate when dropped, see bench/labels.py)
_ADDRESSES = re.compile(r"\S+@\S+|(?:https?://|www\.)\S+", re.IGNORECASE)


def _preprocess(text: str) -> str:
    """Drop e-mail addresses and URLs, lower-case, and drop apostrophes so "don't"
    becomes the stop word "dont"."""
    return _ADDRESSES.sub(" ", text).lower().replace("\u2019", "").replace("'", "")


def ctfidf_keywords(
    texts: Sequence[str],
    labels: np.ndarray,
    k: int,
    *,
    top_n: int = 10,
    ngram_range: tuple[int, int] = (1, 2),
) -> list[list[str]]:
    """Top ``top_n`` c-TF-IDF terms of each of the ``k`` clusters.

    Args:
        texts: chunk texts, ``n`` items.
        labels: ``(n,)`` int cluster of each text in ``[0, k)``.
        k: number of clusters (empty clusters get ``[]``).

    Returns:
        ``k`` lists of terms, most distinctive first.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    stop_words = _stop_words()
    docs = [""] * k
    grouped: list[list[str]] = [[] for _ in range(k)]
    for text, label in zip(texts, labels, strict=True):
        grouped[int(label)].append(text)
    docs = [" ".join(g) for g in grouped]
    vectorizer = CountVectorizer(
        stop_words=stop_words,
        preprocessor=_preprocess,
        ngram_range=ngram_range,
        token_pattern=r"(?u)\b[a-z][a-z0-9-]+\b",
        min_df=1,
        max_features=50_000,
    )
    try:
        counts = vectorizer.fit_transform(docs).astype(np.float64)
    except ValueError:  # every text is stop words or numbers
        return [[] for _ in range(k)]
    terms = vectorizer.get_feature_names_out()
    tf = counts.toarray()
    cluster_totals = tf.sum(axis=1, keepdims=True)
    cluster_totals[cluster_totals == 0] = 1.0
    term_totals = tf.sum(axis=0)
    avg = tf.sum() / max(1, k)
    idf = np.log1p(avg / np.maximum(term_totals, 1.0))
    weights = tf / cluster_totals * idf
    out: list[list[str]] = []
    for c in range(k):
        row = weights[c]
        order = np.argsort(-row, kind="stable")
        chosen: list[str] = []
        for j in order:
            if row[j] <= 0 or len(chosen) >= top_n:
                break
            term = str(terms[j])
            # skip a unigram already covered by a chosen bigram and vice versa
            if any(term in t.split() or t in term.split() for t in chosen):
                continue
            chosen.append(term)
        out.append(chosen)
    return out


#: Keywords in a keyword label. Measured (bench/labels.py, 3 seeds): 5 instead of 3 raises
#: the label hit rate on readable gold names from 0.78 to 0.85 (20 Newsgroups) and from 0.63
#: to 0.72 (Banking77); raw names 0.70 -> 0.68 and 0.65 -> 0.73.
KEYWORDS_IN_LABEL = 5


def keyword_label(keywords: Sequence[str], n: int = KEYWORDS_IN_LABEL) -> str:
    """A readable label from the top keywords, e.g. ``"card / pin / atm / cash / limit"``."""
    return " / ".join(keywords[:n]) if keywords else "(no keywords)"


def representative_indices(
    vectors: np.ndarray, centroid: np.ndarray, n: int = 3
) -> np.ndarray:
    """Rows nearest the centroid.

    Args:
        vectors: ``(m, d)`` float32, L2-normalized members of one cluster.
        centroid: ``(d,)`` float32, L2-normalized.

    Returns:
        ``(min(n, m),)`` int64 row indices, nearest first.
    """
    if len(vectors) == 0:
        return np.empty(0, dtype=np.int64)
    sims = vectors @ centroid
    return np.argsort(-sims, kind="stable")[:n]
