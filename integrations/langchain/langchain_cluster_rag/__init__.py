"""LangChain integration for cluster-rag.

Importing this package does no I/O and loads no model.
"""

from langchain_cluster_rag.retrievers import ClusteredRetriever, hit_to_document
from langchain_cluster_rag.tools import ClusterRagToolkit, make_tools

__all__ = ["ClusterRagToolkit", "ClusteredRetriever", "hit_to_document", "make_tools"]
