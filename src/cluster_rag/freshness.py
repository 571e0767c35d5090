"""The active model of a store, and how long-lived readers follow other processes' refits.

:class:`ActiveModel` holds the one reference to the active
:class:`~cluster_rag.model.ClusterModel` of a :class:`~cluster_rag.index.ClusterIndex`: read
lazily on first use, swapped whole under its lock (so a search never mixes two versions).
:func:`follow_active` is called when the store's ``active`` record (re-read at most every
``ACTIVE_CHECK_SECONDS``) names another version than the snapshot it holds. It loads the
new version completely — record, centroids and search backend — before the swap; if that
fails (a store that another process is writing to right now, or an embedded store whose
vectors this process cannot see yet) the reader keeps serving the snapshot it has and tries
again at the next check.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .errors import NotFittedError
from .guard import retry_transient
from .model import ClusterModel, read_active
from .store import ChromaStore
from .types import Topic

__all__ = ["ActiveModel", "follow_active"]

log = logging.getLogger("cluster_rag")


def follow_active(store: ChromaStore, current: ClusterModel | None) -> ClusterModel | None:
    """The store's active version, fully loaded; ``current`` when it cannot be loaded now."""
    try:
        model = retry_transient(lambda: read_active(store))
        if model is not None:
            model.backend  # noqa: B018 - load it now, so a failure leaves the reader on `current`
        return model
    except Exception as exc:  # any failure: keep serving what we have (logged, retried later)
        version = current.version if current is not None else None
        log.warning(
            "cluster-rag: another process switched the active version; keeping version %s for now (%s: %s)",
            version,
            type(exc).__name__,
            exc,
        )
        return current


class ActiveModel:
    """The one reference to ``store``'s active model, shared by every call of one index.

    Attributes:
        lock: the index's write lock (re-entrant); writers hold it while they build and swap
            the next snapshot.
    """

    def __init__(self, store: ChromaStore) -> None:
        self.store = store
        self.lock = threading.RLock()
        self._model: ClusterModel | None = None
        self._loaded = False

    def get(self) -> ClusterModel | None:
        """The active model (``None`` before any fit), following another process's switch."""
        if self._loaded and self.store.active_moved(self._model.version if self._model else None):
            with self.lock:  # another process refit or rolled back (checked at most every 2 s)
                self._model = follow_active(self.store, self._model)
        if not self._loaded:
            with self.lock:
                if not self._loaded:
                    self.set(read_active(self.store))
        return self._model

    def require(self) -> ClusterModel:
        """:meth:`get`, raising :class:`NotFittedError` before any fit."""
        model = self.get()
        if model is None:
            raise NotFittedError(
                f"collection {self.store.name!r} has no cluster model yet; call fit() "
                "(CLI: `cluster-rag cluster`) first"
            )
        return model

    def reload(self) -> ClusterModel | None:
        """Re-read the active version from the store now (retrying Chroma's transient errors)."""
        with self.lock:
            return self.set(retry_transient(lambda: read_active(self.store)))

    def for_write(self) -> ClusterModel | None:
        """The model a write must assign to: the store's active one, reloaded if another process moved it."""
        model = self.get()
        if (model.version if model else None) != self.store.active_version():
            return self.reload()
        return model

    def set(self, model: ClusterModel | None) -> ClusterModel | None:
        """Make ``model`` the snapshot every later call sees; returns it."""
        self._model, self._loaded = model, True
        return model

    def swap_labels(self, version: int, topics: list[Topic], tree: dict[str, Any] | None = None) -> None:
        """Replace the held model's topics (and stored topic-tree payload), if it is still ``version``."""
        model = self._model
        if model is not None and model.version == version:
            extras = model.record.extras if tree is None else {**model.record.extras, "tree": tree}
            self._model = model.evolve(topics=tuple(topics), extras=extras)
