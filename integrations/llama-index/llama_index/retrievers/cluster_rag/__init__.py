"""LlamaIndex integration for cluster-rag: topic-routed retrieval.

Importing this package does no I/O and loads no model.
"""

from llama_index.retrievers.cluster_rag.base import ClusteredRetriever, filters_to_where, hit_to_node

__all__ = ["ClusteredRetriever", "filters_to_where", "hit_to_node"]
