"""cluster-rag's agent tools as LangChain ``StructuredTool``s.

The tools themselves live in :mod:`cluster_rag.tools` (one definition for every
framework); this module only wraps each one, with the core's pydantic argument model
(:mod:`cluster_rag.tool_specs`) as its ``args_schema``. Every tool returns the JSON text of
:meth:`TopicTools.call <cluster_rag.tools.TopicTools.call>`; a failed call
(unknown topic or id, arguments that fail the schema) returns
``{"error": ..., "error_type": ..., "tool": ...}`` instead of raising, so an
agent loop keeps going and the model can correct itself.

Example:
    .. code-block:: python

        from langchain_cluster_rag import make_tools

        tools = make_tools(index)            # list_topics, search_within_topic, get_document
        model = chat_model.bind_tools(tools)
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.tools import BaseTool, BaseToolkit, StructuredTool
from pydantic import ConfigDict, Field, ValidationError

from cluster_rag import ClusterIndex
from cluster_rag.tools import TOOL_NAMES, TopicTools

__all__ = ["ClusterRagToolkit", "make_tools"]


def _validation_error(name: str) -> Any:
    def handle(error: ValidationError) -> str:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in error.errors()
        )
        return json.dumps({"error": f"invalid arguments: {problems}", "error_type": "ValidationError",
                           "tool": name})

    return handle


def make_tools(index: ClusterIndex | TopicTools, **limits: Any) -> list[BaseTool]:
    """``list_topics``, ``search_within_topic`` and ``get_document`` as ``StructuredTool``s.

    Args:
        index: a fitted :class:`~cluster_rag.ClusterIndex`, or a ready
            :class:`~cluster_rag.tools.TopicTools`.
        **limits: :class:`~cluster_rag.tools.TopicTools` options (``max_k``,
            ``max_chars``, ``neighbours``, ``max_result_bytes``, ``scope``, ``audit``, …); only
            with an index. A ``scope`` (:class:`cluster_rag.scope.Scope`) is fixed here: no tool
            argument can widen it.

    Returns:
        Three tools returning JSON text, in :data:`~cluster_rag.tools.TOOL_NAMES` order.
    """
    if isinstance(index, TopicTools):
        if limits:
            raise TypeError(f"limits {sorted(limits)} apply only with an index; set them on TopicTools")
        tools = index
    else:
        tools = TopicTools(index, **limits)
    out: list[BaseTool] = []
    for name in TOOL_NAMES:

        def run(_name: str = name, **kwargs: Any) -> str:
            return tools.call(_name, kwargs)

        out.append(
            StructuredTool.from_function(
                func=run,
                name=name,
                description=tools.description(name),
                args_schema=tools.specs[name].args,
                handle_validation_error=_validation_error(name),
            )
        )
    return out


class ClusterRagToolkit(BaseToolkit):
    """The three cluster-rag tools as a LangChain toolkit.

    Args:
        index: a fitted :class:`~cluster_rag.ClusterIndex`.
        limits: :class:`~cluster_rag.tools.TopicTools` limits, e.g. ``{"max_k": 10}``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: ClusterIndex
    limits: dict[str, Any] = Field(default_factory=dict)

    def get_tools(self) -> list[BaseTool]:
        return make_tools(self.index, **self.limits)
