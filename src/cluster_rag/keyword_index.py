"""BM25 keyword index beside the vectors (``bm25s``: sparse, numpy-only scoring).

Why a keyword signal at all: on BEIR SciFact (scientific claims) all-MiniLM-L6-v2 dense
search scores 0.645 nDCG@10 while BM25 over the same abstracts scores 0.686 here
(bench/results/retrieval.md); rare technical terms (gene names, drug names) are what
a small sentence encoder blurs and an inverted index keeps.

Tokenization (:func:`tokenize`): lower-case, split on ``\\b\\w\\w+\\b`` (punctuation and
one-letter tokens dropped, as scikit-learn's ``CountVectorizer``), the English stop
list of ``bm25s``, and the Snowball English stemmer (``PyStemmer``); the same pipeline
for documents and queries. Scoring is ``bm25s``' Lucene BM25 (``k1=1.5, b=0.75``).

Updates: ``bm25s`` bakes the corpus statistics (IDF, mean length) into a sparse
score matrix, so adding a document changes every score. The index therefore keeps
a *snapshot* (the ``bm25s`` matrix) plus a *delta*: removed ids are masked out of
the snapshot at once, added ids are scored with the snapshot's statistics (the
Lucene formula, the same one ``bm25s`` uses) until the next rebuild. A rebuild
happens on the next search once the delta exceeds ``max(rebuild_min, rebuild_fraction
* n)`` rows, or on :meth:`KeywordIndex.rebuild`. Rebuilding reuses the cached tokens
(SciFact, 5,183 abstracts: tokenizing 0.9 s, indexing 0.5 s on one core).

Persistence (:meth:`KeywordIndex.save` / :meth:`KeywordIndex.load`): the tokens are
written as JSON documents into a Chroma collection (cluster-rag uses the store's
``NAME__meta`` collection), so an embedded folder and a Chroma server (no shared disk)
work the same; :meth:`KeywordIndex.from_collection` rebuilds from the stored chunk
texts instead when nothing was saved.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DuplicateIdError, InvalidInputError, LengthMismatchError, MissingDependencyError
from .store.chroma_store import pack_text, unpack_text

__all__ = ["KeywordHits", "KeywordIndex", "ids_fingerprint", "tokenize"]

_PIP = 'pip install "bm25s>=0.3" "PyStemmer>=2.2"'
_FORMAT = 1
_PART_CHARS = 2_000_000
_META_VECTOR = [1.0]

_stemmer_lock = threading.Lock()
_stemmer: Any = None


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError as exc:  # pragma: no cover - exercised only without the dependency
        raise MissingDependencyError(f"keyword search needs bm25s; install it with: {_PIP}") from exc
    return bm25s


def _stem() -> Any:
    global _stemmer
    with _stemmer_lock:
        if _stemmer is None:
            try:
                import Stemmer
            except ImportError as exc:  # pragma: no cover
                raise MissingDependencyError(
                    f"keyword search needs PyStemmer; install it with: {_PIP}"
                ) from exc
            _stemmer = Stemmer.Stemmer("english")
        return _stemmer


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Keyword tokens of each text: lower-cased, punctuation and stop words dropped, stemmed.

    Args:
        texts: documents or queries.

    Returns:
        One list of tokens per text (possibly empty), e.g. ``"The Cats' whiskers!"`` ->
        ``["cat", "whisker"]``.
    """
    if not texts:
        return []
    out = _bm25s().tokenize(
        list(texts), lower=True, stopwords="en", stemmer=_stem(), return_ids=False, show_progress=False
    )
    return [list(t) for t in out]


@dataclass(frozen=True)
class KeywordHits:
    """Keyword search results, best first.

    Attributes:
        ids: chunk ids.
        scores: ``(len(ids),)`` float32 BM25 scores, all > 0, descending.
    """

    ids: list[str]
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


class KeywordIndex:
    """BM25 over ``(id, text)`` rows with cheap adds and removes.

    Args:
        rebuild_fraction: rebuild the snapshot on the next search once pending adds plus
            removes exceed this share of the rows...
        rebuild_min: ...or this many rows, whichever is larger.
        k1: BM25 term-frequency saturation.
        b: BM25 length normalization.

    Thread-safe: one lock guards every method.
    """

    def __init__(
        self,
        *,
        rebuild_fraction: float = 0.1,
        rebuild_min: int = 1000,
        k1: float = 1.5,
        b: float = 0.75,
    ) -> None:
        if not 0.0 <= rebuild_fraction <= 1.0:
            raise InvalidInputError(f"rebuild_fraction={rebuild_fraction!r} must be in [0, 1]")
        if rebuild_min < 0:
            raise InvalidInputError(f"rebuild_min={rebuild_min!r} must be >= 0")
        self.rebuild_fraction = float(rebuild_fraction)
        self.rebuild_min = int(rebuild_min)
        self.k1 = float(k1)
        self.b = float(b)
        self._lock = threading.RLock()
        self._tokens: dict[str, list[str]] = {}  # every live row
        self._snap_ids: list[str] = []
        self._snap_pos: dict[str, int] = {}
        self._snap_live = np.zeros(0, dtype=np.float32)  # 1.0 live, 0.0 removed since the snapshot
        self._snap_avgdl = 1.0
        self._bm25: Any = None
        self._pending: list[str] = []  # added since the snapshot, in order
        self._n_removed = 0
        #: Text-change notes the saved copy this index was loaded from reflected (:meth:`load`).
        self.saved_notes: list[str] = []

    # -- building ------------------------------------------------------------------------
    def build(self, ids: Sequence[str], texts: Sequence[str]) -> KeywordIndex:
        """Replace the contents with ``ids``/``texts`` and index them; returns ``self``."""
        _check_rows(ids, texts)
        tokens = tokenize(texts)
        with self._lock:
            self._tokens = dict(zip((str(i) for i in ids), tokens, strict=True))
            self._rebuild()
        return self

    def build_tokenized(self, ids: Sequence[str], tokens: Sequence[Sequence[str]]) -> KeywordIndex:
        """:meth:`build` from tokens already made by :func:`tokenize`; returns ``self``."""
        if len(ids) != len(tokens):
            raise LengthMismatchError(f"{len(ids)} ids but {len(tokens)} token lists; give one per id")
        with self._lock:
            self._tokens = {str(cid): list(t) for cid, t in zip(ids, tokens, strict=True)}
            self._rebuild()
        return self

    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Add rows (searchable at once, through the delta). Ids must be new."""
        _check_rows(ids, texts)
        tokens = tokenize(texts)
        with self._lock:
            clash = [i for i in ids if str(i) in self._tokens]
            if clash:
                raise DuplicateIdError(f"ids already in the keyword index: {clash[:5]}; remove them first")
            for cid, toks in zip(ids, tokens, strict=True):
                self._tokens[str(cid)] = toks
                self._pending.append(str(cid))

    def remove(self, ids: Iterable[str]) -> int:
        """Remove rows; unknown ids are ignored. Returns how many were removed."""
        removed = 0
        with self._lock:
            gone = {str(i) for i in ids} & self._tokens.keys()
            if not gone:
                return 0
            for cid in gone:
                del self._tokens[cid]
                pos = self._snap_pos.get(cid)
                if pos is not None and self._snap_live[pos]:
                    self._snap_live[pos] = 0.0
                    self._n_removed += 1
                removed += 1
            if any(cid in gone for cid in self._pending):
                self._pending = [cid for cid in self._pending if cid not in gone]
        return removed

    def rebuild(self) -> None:
        """Fold the delta into a fresh snapshot now (reuses the cached tokens)."""
        with self._lock:
            self._rebuild()

    def _rebuild(self) -> None:
        self._snap_ids = list(self._tokens)
        self._snap_pos = {cid: i for i, cid in enumerate(self._snap_ids)}
        self._snap_live = np.ones(len(self._snap_ids), dtype=np.float32)
        self._pending, self._n_removed = [], 0
        if not self._snap_ids:
            self._bm25 = None
            return
        corpus = [self._tokens[cid] for cid in self._snap_ids]
        self._snap_avgdl = max(float(np.mean([len(t) for t in corpus])), 1e-9)
        bm25 = _bm25s().BM25(k1=self.k1, b=self.b, method="lucene")
        bm25.index(corpus, show_progress=False)
        self._bm25 = bm25

    # -- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)

    def __contains__(self, cid: object) -> bool:
        with self._lock:
            return cid in self._tokens

    @property
    def ids(self) -> list[str]:
        """Every indexed id (snapshot order, then pending adds)."""
        with self._lock:
            return list(self._tokens)

    @property
    def pending(self) -> int:
        """Rows added or removed since the last rebuild."""
        with self._lock:
            return len(self._pending) + self._n_removed

    def fingerprint(self) -> str:
        """SHA-256 (hex, 16 chars) of the sorted ids: compare with the store to detect staleness."""
        with self._lock:
            return _fingerprint(self._tokens)

    def search(self, query: str, k: int = 10, *, allowed_ids: Collection[str] | None = None) -> KeywordHits:
        """The ``k`` rows with the highest BM25 score for ``query`` (only rows scoring > 0).

        Args:
            query: text, tokenized like the documents.
            k: maximum number of hits.
            allowed_ids: restrict to these ids (topic or metadata filter resolved by the caller).

        Returns:
            :class:`KeywordHits`, best first; ties broken by insertion order.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError(f"k={k!r} must be a positive int")
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a string, got {type(query).__name__}")
        q = tokenize([query])[0]
        with self._lock:
            if len(self._pending) + self._n_removed > max(
                self.rebuild_min, self.rebuild_fraction * len(self._tokens)
            ):
                self._rebuild()
            if not q or not self._tokens:
                return KeywordHits([], np.zeros(0, dtype=np.float32))
            ids, scores = self._score_all(q)
        positive = np.flatnonzero(scores > 0)
        if allowed_ids is not None:  # only rows sharing a query term are checked
            allowed = allowed_ids if isinstance(allowed_ids, (set, frozenset)) else set(allowed_ids)
            positive = positive[np.fromiter((ids[i] in allowed for i in positive), bool, len(positive))]
        if len(positive) > k:
            part = np.argpartition(-scores[positive], k - 1)[:k]
            positive = positive[part]
        order = positive[np.lexsort((positive, -scores[positive]))]
        return KeywordHits([ids[i] for i in order], scores[order].astype(np.float32))

    def _score_all(self, q: list[str]) -> tuple[list[str], np.ndarray]:
        """Scores of every live row: snapshot (masked) then pending. Caller holds the lock."""
        parts: list[np.ndarray] = []
        ids: list[str] = []
        if self._bm25 is not None:
            vocab = self._bm25.vocab_dict
            known = [t for t in q if t in vocab]
            snap = (
                np.asarray(self._bm25.get_scores(known, weight_mask=self._snap_live), dtype=np.float32)
                if known
                else np.zeros(len(self._snap_ids), dtype=np.float32)
            )
            parts.append(snap)
            ids.extend(self._snap_ids)
        if self._pending:
            parts.append(self._delta_scores(q, [self._tokens[cid] for cid in self._pending]))
            ids.extend(self._pending)
        return ids, np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def _delta_scores(self, q: list[str], docs: list[list[str]]) -> np.ndarray:
        """Lucene BM25 of rows not in the snapshot, with the snapshot's IDF and mean length."""
        n = len(self._snap_ids)
        idf: dict[str, float] = {}
        vocab = self._bm25.vocab_dict if self._bm25 is not None else {}
        indptr = self._bm25.scores["indptr"] if self._bm25 is not None else None
        for t in q:
            tid = vocab.get(t)
            df = 0 if tid is None or indptr is None else int(indptr[tid + 1] - indptr[tid])
            idf[t] = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        out = np.zeros(len(docs), dtype=np.float32)
        for j, doc in enumerate(docs):
            tf = Counter(doc)
            norm = self.k1 * (1.0 - self.b + self.b * len(doc) / self._snap_avgdl)
            out[j] = sum(idf[t] * tf[t] / (tf[t] + norm) for t in q if tf.get(t))
        return out

    # -- persistence ------------------------------------------------------------------------------
    def to_payload(self) -> dict[str, Any]:
        """JSON-ready contents: ids and their tokens (rebuilding from them skips tokenizing)."""
        with self._lock:
            return {
                "format": _FORMAT,
                "k1": self.k1,
                "b": self.b,
                "ids": list(self._tokens),
                "tokens": [" ".join(t) for t in self._tokens.values()],
            }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], **kwargs: Any) -> KeywordIndex:
        """Inverse of :meth:`to_payload`."""
        if payload.get("format") != _FORMAT:
            raise InvalidInputError(
                f"keyword index payload format {payload.get('format')!r} is not {_FORMAT}"
            )
        tokens = [t.split() if t else [] for t in payload["tokens"]]
        return cls(k1=float(payload["k1"]), b=float(payload["b"]), **kwargs).build_tokenized(
            [str(cid) for cid in payload["ids"]], tokens
        )

    def save(self, collection: Any, key: str = "keyword", *, notes: Sequence[str] = ()) -> None:
        """Write the index into a Chroma collection as JSON documents (embedded or server).

        Parts go under ids ``kw:<key>:<generation>:<i>``; the manifest ``kw:<key>`` is
        upserted last (atomically), then older generations are deleted, so a reader
        never sees half a save.

        Args:
            collection: a Chroma collection whose records take 1-d embeddings
                (cluster-rag's ``NAME__meta``).
            key: name of this index inside the collection.
            notes: keys of the text-change notes this index already reflects (kept in the manifest,
                read back as :attr:`saved_notes`).
        """
        text = json.dumps(self.to_payload())
        parts = [text[i : i + _PART_CHARS] for i in range(0, len(text), _PART_CHARS)] or [""]
        got = collection.get(ids=[f"kw:{key}"], include=["documents"])
        old = json.loads(got["documents"][0]) if got["ids"] else None
        gen = int(old["generation"]) + 1 if old else 0
        ids = [f"kw:{key}:{gen}:{i}" for i in range(len(parts))]
        for pid, part in zip(ids, parts, strict=True):
            collection.upsert(ids=[pid], documents=[pack_text(part)], embeddings=[_META_VECTOR])
        manifest = {
            "generation": gen,
            "parts": len(parts),
            "n": len(self),
            "fingerprint": self.fingerprint(),
            "notes": list(notes),
        }
        collection.upsert(ids=[f"kw:{key}"], documents=[json.dumps(manifest)], embeddings=[_META_VECTOR])
        if old:
            collection.delete(ids=[f"kw:{key}:{old['generation']}:{i}" for i in range(int(old["parts"]))])

    @classmethod
    def load(cls, collection: Any, key: str = "keyword", **kwargs: Any) -> KeywordIndex | None:
        """Read an index written by :meth:`save`; ``None`` when there is none."""
        got = collection.get(ids=[f"kw:{key}"], include=["documents"])
        if not got["ids"]:
            return None
        manifest = json.loads(got["documents"][0])
        ids = [f"kw:{key}:{manifest['generation']}:{i}" for i in range(int(manifest["parts"]))]
        parts = collection.get(ids=ids, include=["documents"])
        by_id = dict(zip(parts["ids"], parts["documents"], strict=True))
        if set(by_id) != set(ids):
            return None
        index = cls.from_payload(json.loads("".join(unpack_text(by_id[i]) for i in ids)), **kwargs)
        index.saved_notes = [str(n) for n in manifest.get("notes", [])]
        return index

    @classmethod
    def saved_fingerprint(cls, collection: Any, key: str = "keyword") -> str | None:
        """The fingerprint recorded by the last :meth:`save`, without loading the index."""
        got = collection.get(ids=[f"kw:{key}"], include=["documents"])
        return str(json.loads(got["documents"][0])["fingerprint"]) if got["ids"] else None

    @classmethod
    def from_collection(cls, collection: Any, *, page: int = 5000, **kwargs: Any) -> KeywordIndex:
        """Build from every record of a Chroma chunk collection (ids + documents)."""
        ids: list[str] = []
        texts: list[str] = []
        offset = 0
        while True:
            got = collection.get(include=["documents"], limit=page, offset=offset)
            if not got["ids"]:
                break
            ids.extend(got["ids"])
            texts.extend(d or "" for d in got["documents"])
            offset += len(got["ids"])
        return cls(**kwargs).build(ids, texts)


def ids_fingerprint(ids: Iterable[str]) -> str:
    """The fingerprint :meth:`KeywordIndex.fingerprint` gives for rows with these ids."""
    return _fingerprint(ids)


def _fingerprint(ids: Iterable[str]) -> str:
    h = hashlib.sha256()
    for cid in sorted(ids):
        h.update(cid.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def _check_rows(ids: Sequence[str], texts: Sequence[str]) -> None:
    if len(ids) != len(texts):
        raise LengthMismatchError(f"{len(ids)} ids but {len(texts)} texts; give one id per text")
    if len(set(map(str, ids))) != len(ids):
        raise DuplicateIdError("ids repeat within the call; give each row its own id")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise InvalidInputError(f"texts[{bad[0]}] is {type(texts[bad[0]]).__name__}, expected str")
