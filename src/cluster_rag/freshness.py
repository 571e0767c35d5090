"""Long-lived readers follow other processes' refits and rollbacks, without ever failing a read.

:func:`follow_active` is called by :class:`~cluster_rag.index.ClusterIndex` when the store's
``active`` record (re-read at most every ``ACTIVE_CHECK_SECONDS``) names another version than
the snapshot it holds. It loads the new version completely — record, centroids and search
backend — before the swap; if that fails (a store that another process is writing to right
now, or an embedded store whose vectors this process cannot see yet) the reader keeps
serving the snapshot it has and tries again at the next check.
"""

from __future__ import annotations

import logging

from .guard import retry_transient
from .model import ClusterModel, read_active
from .store import ChromaStore

__all__ = ["follow_active"]

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
