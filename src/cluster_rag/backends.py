"""Where the exact search inside the probed clusters runs: the :class:`SearchBackend` seam.

Routing (query → nearest centroids, :mod:`cluster_rag.routing`) needs only the
model's centroids; a backend answers "the best chunks of these clusters for this
query vector". The first backend, :class:`~cluster_rag.routing.RoutingIndex`,
keeps every chunk vector in one contiguous numpy block per cluster (loaded from
Chroma when a model is first searched). A backend that keeps no vectors in the
client — one that searches inside Chroma — fits the same protocol: nothing in it
asks for vectors except :meth:`SearchBackend.members`, which such a backend
fetches on demand.

Backends are immutable snapshots: writes return a new backend (copy-on-write),
so readers holding one keep a consistent view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from .routing import Candidates

__all__ = ["SearchBackend", "build_numpy_backend", "build_sorted_backend"]


@runtime_checkable
class SearchBackend(Protocol):
    """Exact search inside given clusters of one model version.

    Positions are cluster positions ``0 .. k-1`` (not stable topic ids).
    """

    @property
    def k(self) -> int:
        """Number of clusters."""
        ...

    def __len__(self) -> int:
        """Number of chunks held."""
        ...

    def search(self, query: np.ndarray, clusters: np.ndarray, limit: int | None = None) -> Candidates:
        """Best chunks of ``clusters`` for ``query``.

        Args:
            query: ``(d,)`` float32, L2-normalized.
            clusters: ``(p,)`` int64 positions to search.
            limit: keep the best ``limit`` (``None``: every chunk of those clusters).

        Returns:
            Candidates (ids, cosine scores, positions), best first.
        """
        ...

    def search_where(
        self, query: np.ndarray, clusters: np.ndarray, limit: int, where: dict[str, Any]
    ) -> Candidates | None:
        """Best ``limit`` chunks of ``clusters`` that pass the Chroma metadata filter ``where``, the
        filter applied inside the store's own query (fewer come back when fewer pass).

        Returns:
            ``None`` when this backend cannot filter in the store: the caller then scores the
            clusters with :meth:`search` and filters the ids it gets.
        """
        ...

    def search_whole(self, query: np.ndarray, limit: int, order: np.ndarray) -> Candidates | None:
        """The best ``limit`` chunks of the whole model from a nearest-neighbour index the store
        keeps itself, each placed in its cluster; ``order`` ``(k,)`` int64 lists the clusters by
        centroid similarity (most similar first) for that placement.

        Returns:
            ``None`` when there is no such index (or a hit could not be placed): the caller routes
            the query and calls :meth:`search`.
        """
        ...

    def with_added(self, ids: Sequence[str], vectors: np.ndarray, labels: np.ndarray) -> SearchBackend:
        """A new backend that also holds these rows (``vectors`` ``(b, d)``, ``labels`` ``(b,)``)."""
        ...

    def without(self, ids: set[str]) -> SearchBackend:
        """A new backend without these chunk ids."""
        ...

    def ids(self) -> np.ndarray:
        """Every chunk id, ``(n,)`` object."""
        ...

    def labels(self) -> np.ndarray:
        """Position of each id of :meth:`ids`, ``(n,)`` int64."""
        ...

    def sizes(self) -> np.ndarray:
        """``(k,)`` int64 chunks per position."""
        ...

    def vectors(self) -> np.ndarray:
        """Vectors in :meth:`ids` order, ``(n, d)`` float32 (a vector-less backend fetches them)."""
        ...

    def members(self, cluster: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids ``(m,)`` and vectors ``(m, d)`` float32 of one cluster."""
        ...


def build_numpy_backend(
    centroids: np.ndarray, ids: Sequence[str] | np.ndarray, vectors: np.ndarray, labels: np.ndarray
) -> Any:
    """The in-process numpy backend (:class:`~cluster_rag.routing.RoutingIndex`).

    Args:
        centroids: ``(k, d)`` float32, L2-normalized.
        ids: ``(n,)`` chunk ids.
        vectors: ``(n, d)`` float32, L2-normalized.
        labels: ``(n,)`` int64 positions in ``[0, k)``.
    """
    from .routing import RoutingIndex

    return RoutingIndex(centroids, ids, vectors, labels)


def build_sorted_backend(
    centroids: np.ndarray,
    ids: np.ndarray,
    vectors: np.ndarray,
    offsets: np.ndarray,
    added: tuple[Sequence[str], np.ndarray, np.ndarray] | None = None,
) -> Any:
    """The numpy backend over rows already grouped by cluster, without copying them.

    Args:
        centroids: ``(k, d)`` float32, L2-normalized.
        ids: ``(n,)`` object chunk ids, cluster-sorted.
        vectors: ``(n, d)`` float32 in ``ids`` order (e.g. a version's memory-mapped snapshot).
        offsets: ``(k+1,)`` int64; cluster ``c`` is rows ``offsets[c]:offsets[c+1]``.
        added: ``(ids, vectors (b, d), labels (b,))`` rows kept beside the sorted blocks.
    """
    from .routing import RoutingIndex

    return RoutingIndex.from_sorted(centroids, ids, vectors, offsets, added)
