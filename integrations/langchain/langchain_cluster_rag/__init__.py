"""LangChain integration for cluster-rag.

Importing this package does no I/O and loads no model.
"""

from langchain_cluster_rag.retrievers import ClusteredRetriever, hit_to_document

__all__ = ["ClusteredRetriever", "hit_to_document"]
