"""The loopback server starter lives in :mod:`cluster_rag.testing`; tests import it from here."""

from cluster_rag.testing import ServerStartError, serve

__all__ = ["ServerStartError", "serve"]
