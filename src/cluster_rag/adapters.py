"""Framework adapters on demand: import an ``integrations/`` package or say how to install it."""

from __future__ import annotations

import importlib
from typing import Any

from .errors import MissingDependencyError

__all__ = ["import_adapter"]

#: adapter module -> (PyPI distribution, folder in a source checkout)
ADAPTERS = {
    "langchain_cluster_rag": ("langchain-cluster-rag", "integrations/langchain"),
    "llama_index.retrievers.cluster_rag": ("llama-index-retrievers-cluster-rag", "integrations/llama-index"),
}


def import_adapter(module: str) -> Any:
    """Import a framework adapter package.

    Raises:
        MissingDependencyError: it (or its framework) is not installed; the message gives the pip command.
    """
    dist, source_dir = ADAPTERS[module]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        raise MissingDependencyError(
            f"{module!r} could not be imported ({missing!r} is not installed). Install it with: "
            f"pip install {dist}  (from a cluster-rag source checkout: pip install -e {source_dir})"
        ) from exc
