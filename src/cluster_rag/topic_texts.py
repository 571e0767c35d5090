"""The chunk texts a fit's c-TF-IDF keywords come from, and reading them ahead of the k-means.

Which rows (:func:`keyword_rows`)
    Up to :data:`KEYWORD_TEXTS` chunks, every text. Above, an even random sample of each topic:
    ``min(size, cap)`` of its members with ``cap = max(KEYWORD_MIN_PER_TOPIC, KEYWORD_TEXTS // k)``,
    so a fit never holds every text.

Reading ahead (:class:`TextPrefetch`)
    The k-means of a large fit runs in FAISS with the GIL released; when its OpenMP threads leave
    a core idle (:func:`core_free_during_kmeans`; ``python -m bench scale`` pins them to one of the
    two cores) a thread reads texts meanwhile, so the topic descriptions that follow do not wait
    for Chroma (at 200k chunks that read was ~3 s of the fit's own time). Labels are not known
    yet, so it reads every text up to :data:`KEYWORD_TEXTS` chunks and above that a uniform random
    sample of :data:`PREFETCH_ROWS` rows. :func:`keyword_rows` then draws each topic's sample from
    the rows already read first and tops it up from the rest: a uniform subset of a uniform subset
    is uniform, so each topic's sample is still an even random sample of its members (seeded).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from .store import ChromaStore

__all__ = [
    "KEYWORD_MIN_PER_TOPIC",
    "KEYWORD_TEXTS",
    "PREFETCH_ROWS",
    "TextPrefetch",
    "core_free_during_kmeans",
    "keyword_rows",
    "read_texts",
]

#: Above this many chunks a fit reads the texts of a sample of each topic (at most about this
#: many texts in all; at least :data:`KEYWORD_MIN_PER_TOPIC` per topic) for its c-TF-IDF keywords.
KEYWORD_TEXTS = 100_000
KEYWORD_MIN_PER_TOPIC = 64
#: Texts a :class:`TextPrefetch` reads above :data:`KEYWORD_TEXTS` chunks: half as many again as
#: the keywords use, so few topics need a top-up after the k-means.
PREFETCH_ROWS = 150_000


def keyword_rows(
    order: np.ndarray,
    offsets: np.ndarray,
    n: int,
    seed: int,
    known: np.ndarray | None = None,
) -> np.ndarray:
    """Rows whose texts feed the keywords ``(m,)`` int64, grouped by cluster, each group in row order.

    Args:
        order: ``(n,)`` int64 rows grouped by cluster; ``offsets`` ``(k+1,)`` int64 bounds each group.
        n: rows in all; up to :data:`KEYWORD_TEXTS` every row is taken.
        seed: seeds the sample.
        known: ``(n,)`` bool, rows whose texts were read ahead (drawn first); ``None``: none.
    """
    if n <= KEYWORD_TEXTS:
        return order
    k = len(offsets) - 1
    cap = max(KEYWORD_MIN_PER_TOPIC, KEYWORD_TEXTS // k)
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    for c in range(k):
        members = order[offsets[c] : offsets[c + 1]]
        if len(members) > cap:
            members = np.sort(_draw(members, cap, rng, known))
        parts.append(members)
    return np.concatenate(parts) if parts else order[:0]


def _draw(members: np.ndarray, count: int, rng: np.random.Generator, known: np.ndarray | None) -> np.ndarray:
    """``count`` of ``members`` uniformly at random, those in ``known`` first."""
    if known is None:
        return rng.choice(members, count, replace=False)
    have, rest = members[known[members]], members[~known[members]]
    if len(have) >= count:
        return rng.choice(have, count, replace=False)
    return np.concatenate([have, rng.choice(rest, count - len(have), replace=False)])


def read_texts(
    store: ChromaStore,
    ids: Sequence[str],
    *,
    every: bool,
    progress: bool = False,
    stop: threading.Event | None = None,
) -> dict[str, str]:
    """Texts of ``ids`` by id (ids deleted meanwhile left out): page by page when ``every`` stored
    chunk is wanted, else by id in batches (a sample). ``stop`` set: return what was read so far."""
    found: dict[str, str] = {}
    if every:
        pages = store.iter_all(include=["documents"])
        total = -(-len(ids) // 5000)
        for got in tqdm(pages, desc="topics", disable=not progress, leave=False, total=total):
            found.update(zip(got["ids"], got["documents"], strict=True))
            if stop is not None and stop.is_set():
                break
        return found
    step = store.batch_size
    starts = range(0, len(ids), step)
    for start in tqdm(starts, desc="topics", disable=not progress, leave=False, total=len(starts)):
        if stop is not None and stop.is_set():
            break
        got = store.get(list(ids[start : start + step]), include=["documents"])
        found.update(zip(got["ids"], got["documents"], strict=True))
    return found


def core_free_during_kmeans(engine: str) -> bool:
    """Whether a k-means with ``engine`` (as resolved) leaves a core idle: FAISS whose OpenMP
    threads are fewer than the cores this process may run on. Other engines run their own
    thread pools on every core, and a busy core makes OpenMP threads spin."""
    if engine != "faiss":
        return False
    try:
        import faiss
    except ImportError:
        return False
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return int(faiss.omp_get_max_threads()) < cores


class TextPrefetch:
    """Texts of the rows a fit's keywords will most likely use, read ahead of the k-means.

    :meth:`read` runs on a background thread the fit starts (:mod:`cluster_rag.fitting`);
    :meth:`result` waits for it. A failed read is not raised here: the rows it missed are read
    again when the topics are described, where a store error surfaces as usual.

    Args:
        ids: ``(n,)`` chunk ids in the fit's row order.
        seed: seeds the sample (above :data:`KEYWORD_TEXTS` rows).

    Attributes:
        rows: ``(m,)`` int64 rows whose texts are read, ascending.
    """

    def __init__(self, store: ChromaStore, ids: Sequence[str], seed: int) -> None:
        n = len(ids)
        self.every = n <= KEYWORD_TEXTS
        if self.every:
            self.rows = np.arange(n, dtype=np.int64)
        else:
            rng = np.random.default_rng([seed, 1])
            self.rows = np.sort(rng.choice(n, min(n, PREFETCH_ROWS), replace=False))
        self._ids = [ids[i] for i in self.rows.tolist()]
        self._store = store
        self._stop = threading.Event()
        self._done = threading.Event()
        self._found: dict[str, str] = {}

    def read(self) -> None:
        """Read the texts (on the caller's thread); returns early once :meth:`cancel` is called."""
        try:
            self._found = read_texts(self._store, self._ids, every=self.every, stop=self._stop)
        except Exception:  # read again, and raised, by the topic descriptions
            self._found = {}
        finally:
            self._done.set()

    def result(self) -> Mapping[str, str]:
        """Texts read, by chunk id (waits for :meth:`read`; empty after :meth:`cancel`)."""
        self._done.wait()
        return self._found

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def cancel(self) -> None:
        """Stop reading: :meth:`read` returns at its next batch, :meth:`result` no longer waits."""
        self._stop.set()
        self._done.set()
