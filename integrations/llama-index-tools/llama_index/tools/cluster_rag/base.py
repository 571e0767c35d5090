"""cluster-rag's agent tools as a LlamaIndex ``BaseToolSpec``.

The tools live in :mod:`cluster_rag.tools` (one definition for every framework);
this spec only exposes them as methods and gives LlamaIndex the shared
descriptions and an argument schema per tool. Each method returns the JSON text
of :meth:`TopicTools.call <cluster_rag.tools.TopicTools.call>`: a failed call
(unknown topic or id, a bad argument) returns ``{"error": ..., "error_type": ...,
"tool": ...}`` instead of raising, so the agent can read it and try again.

Example:
    .. code-block:: python

        from llama_index.core.agent.workflow import FunctionAgent
        from llama_index.tools.cluster_rag import ClusterRagToolSpec

        tools = ClusterRagToolSpec(index).to_tool_list()
        agent = FunctionAgent(tools=tools, llm=llm)
"""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import BaseModel
from llama_index.core.tools.tool_spec.base import SPEC_FUNCTION_TYPE, BaseToolSpec
from llama_index.core.tools.types import ToolMetadata

from cluster_rag import ClusterIndex
from cluster_rag.tools import TOOL_NAMES, TopicTools

__all__ = ["ClusterRagToolSpec"]


class ClusterRagToolSpec(BaseToolSpec):
    """Browse a cluster-rag index by topic: ``list_topics``, ``search_within_topic``, ``get_document``.

    Args:
        index: a fitted :class:`~cluster_rag.ClusterIndex`, or a ready
            :class:`~cluster_rag.tools.TopicTools`.
        **limits: :class:`~cluster_rag.tools.TopicTools` options (``max_k``,
            ``max_chars``, ``neighbours``, ``max_result_bytes``, ``scope``, ``audit``, …); only
            with an index. A ``scope`` (:class:`cluster_rag.scope.Scope`) is fixed here: no tool
            argument can widen it.
    """

    spec_functions: list[SPEC_FUNCTION_TYPE] = list(TOOL_NAMES)

    def __init__(self, index: ClusterIndex | TopicTools, **limits: Any) -> None:
        if isinstance(index, TopicTools):
            if limits:
                raise TypeError(f"limits {sorted(limits)} apply only with an index; set them on TopicTools")
            self.tools = index
        else:
            self.tools = TopicTools(index, **limits)

    def list_topics(self, query: str | None = None, limit: int | None = 20) -> str:
        """List the topics of the knowledge base, ranked by similarity to ``query`` when given."""
        return self.tools.call("list_topics", {"query": query, "limit": limit})

    def search_within_topic(self, query: str, topic: int | str, k: int | None = 5) -> str:
        """Semantic search restricted to one topic (an id or a name from list_topics)."""
        return self.tools.call("search_within_topic", {"query": query, "topic": topic, "k": k})

    def get_document(self, id: str) -> str:  # noqa: A002 - the tool's public argument name
        """One chunk by id with its metadata, topic and neighbouring chunks of the same source."""
        return self.tools.call("get_document", {"id": id})

    # metadata: the descriptions shared with every other adapter ---------------------
    def get_fn_schema_from_fn_name(
        self, fn_name: str, spec_functions: list[SPEC_FUNCTION_TYPE] | None = None
    ) -> type[BaseModel] | None:
        """The argument model of tool ``fn_name``: the core's (:mod:`cluster_rag.tool_specs`)."""
        if fn_name not in TOOL_NAMES:
            raise ValueError(f"invalid tool name {fn_name!r}; tools: {list(TOOL_NAMES)}")
        return self.tools.specs[fn_name].args

    def get_metadata_from_fn_name(
        self, fn_name: str, spec_functions: list[SPEC_FUNCTION_TYPE] | None = None
    ) -> ToolMetadata | None:
        """Name, the core's model-facing description and the argument schema of ``fn_name``."""
        return ToolMetadata(
            name=fn_name,
            description=self.tools.description(fn_name),
            fn_schema=self.get_fn_schema_from_fn_name(fn_name),
        )
