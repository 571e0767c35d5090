"""LlamaIndex tools for cluster-rag: list topics, search within a topic, get a document.

Importing this package does no I/O and loads no model.
"""

from llama_index.tools.cluster_rag.base import ClusterRagToolSpec

__all__ = ["ClusterRagToolSpec"]
