"""The agent tools of :mod:`cluster_rag.tools` over the Model Context Protocol (stdio).

Built on the official ``mcp`` Python SDK (2.x: the high-level server class is
``mcp.server.mcpserver.MCPServer``, formerly ``FastMCP``). The three tools are
marked read-only (``ToolAnnotations(read_only_hint=True)``) and return the same
JSON text as :meth:`TopicTools.call <cluster_rag.tools.TopicTools.call>`; a failed
call (unknown topic or id, bad arguments) is an ``is_error`` result whose text
tells the model how to fix it.

Arguments are checked once, by :class:`TopicTools` against the strict models of
:mod:`cluster_rag.tool_specs`, exactly as the client sent them: the SDK's own argument
handling (which drops unknown arguments and JSON-decodes strings such as ``"null"``)
is replaced by a pass-through, so an unknown argument, ``k: "5"`` or ``topic: true`` is an
``InvalidInputError`` naming the argument, never silently accepted or coerced. Each
tool's published ``inputSchema`` is its closed model (``additionalProperties: false``).

Run it with ``cluster-rag mcp --path ./kb`` (or ``--chroma-url URL``), or::

    from cluster_rag.mcp_server import serve
    serve(ClusterIndex.open("./kb", create=False))

Access scope: ``serve(index, scope=Scope(where={"tenant": "A"}))`` or
``cluster-rag mcp --scope '{"tenant": "A"}'`` (or ``$CLUSTER_RAG_SCOPE`` for hosts that
cannot pass flags). The scope is fixed when the server starts: it is not a tool argument,
the client cannot see or change it, and an id or topic outside it answers exactly like
one that does not exist. Every result is bounded (``TopicTools.max_result_bytes``).

``mcp`` is an optional dependency: ``pip install "cluster-rag[mcp]"``.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .errors import ClusterRagError, InvalidInputError, missing_dependency
from .scope import Scope
from .tool_specs import TOOL_NAMES, ToolSpec
from .tools import AuditHook, TopicTools

_MAX_ERROR_CHARS = 600

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.tools import Tool
    from mcp.types import ToolAnnotations

    from .index import ClusterIndex

__all__ = ["build_server", "serve"]

INSTRUCTIONS = (
    "Browse a knowledge base by topic. Call list_topics (with a query to rank topics) to see what it "
    "covers, search_within_topic to find chunks inside one topic, and get_document for a chunk's full "
    "text with the chunks around it. Every tool is read-only."
)


def _import_mcp() -> Any:
    try:
        return importlib.import_module("mcp.server.mcpserver")
    except ImportError as exc:  # mcp missing, or a 1.x SDK without MCPServer
        raise missing_dependency("mcp", '"cluster-rag[mcp]"  (needs mcp>=2)') from exc


def build_server(
    index: ClusterIndex,
    *,
    tools: TopicTools | None = None,
    name: str = "cluster-rag",
    scope: Scope | None = None,
    audit: AuditHook | None = None,
) -> MCPServer[Any]:
    """An ``MCPServer`` exposing ``list_topics``, ``search_within_topic`` and ``get_document``.

    Args:
        index: a fitted index.
        tools: the :class:`TopicTools` to serve (to change the result limits);
            default ``TopicTools(index, scope=scope, audit=audit)``.
        name: server name shown to clients.
        scope: the one :class:`~cluster_rag.scope.Scope` every call is answered within.
        audit: a hook receiving one record per call (see :mod:`cluster_rag.tools`).

    Raises:
        MissingDependencyError: ``mcp`` (2.x) is not installed.
        InvalidInputError: ``tools`` together with ``scope``/``audit`` (set them on the tools).
    """
    if tools is not None and (scope is not None or audit is not None):
        raise InvalidInputError("pass scope/audit to TopicTools(...) when you pass tools=, not both")
    mcpserver = _import_mcp()
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import ToolAnnotations

    from . import __version__

    topic_tools = tools or TopicTools(index, scope=scope, audit=audit)
    read_only = ToolAnnotations(
        read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
    )

    async def run(tool: str, **arguments: Any) -> str:
        import anyio.to_thread

        work = functools.partial(topic_tools.invoke, tool, arguments)
        try:
            result = await anyio.to_thread.run_sync(work)
        except ClusterRagError as exc:
            message = str(exc)
            if len(message) > _MAX_ERROR_CHARS:
                message = message[: _MAX_ERROR_CHARS - 1] + "…"
            raise ToolError(f"{type(exc).__name__}: {message}") from exc
        return json.dumps(result, ensure_ascii=False, default=str)

    served = [
        _tool(topic_tools.specs[tool], topic_tools.description(tool), run, read_only) for tool in TOOL_NAMES
    ]
    server: MCPServer[Any] = mcpserver.MCPServer(
        name, instructions=INSTRUCTIONS, version=__version__, log_level="WARNING", tools=served
    )
    return server


def _tool(
    spec: ToolSpec, description: str, run: Callable[..., Awaitable[str]], annotations: ToolAnnotations
) -> Tool:
    """The SDK tool for ``spec``: published schema = the closed argument model; arguments passed raw.

    The SDK validates a call's arguments with the tool's ``fn_metadata.arg_model`` and calls the
    function with that model's :meth:`model_dump_one_level`. Our model keeps every argument as sent
    (no field, extras allowed, no JSON pre-parsing) so that ``run`` (:meth:`TopicTools.invoke`) is
    the one strict check.
    """
    from mcp.server.mcpserver.tools import Tool
    from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata

    async def tool(**arguments: Any) -> str:
        return await run(spec.name, **arguments)

    tool.__name__ = tool.__qualname__ = spec.name
    schema = spec.args.model_json_schema()
    schema["title"] = f"{spec.name}Arguments"
    return Tool(
        fn=tool,
        name=spec.name,
        title=spec.name.replace("_", " ").capitalize(),
        description=description,
        parameters=schema,
        fn_metadata=FuncMetadata(arg_model=_raw_arguments_model()),
        is_async=True,
        context_kwarg=None,
        annotations=annotations,
    )


@functools.cache
def _raw_arguments_model() -> type[Any]:
    """An SDK argument model that accepts any object and hands it on unchanged (built once, lazily)."""
    from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
    from pydantic import ConfigDict

    class RawArguments(ArgModelBase):
        """Every argument as the client sent it; :class:`TopicTools` checks them."""

        model_config = ConfigDict(extra="allow")

        def model_dump_one_level(self) -> dict[str, Any]:
            return dict(self.model_extra or {})

    return RawArguments


def serve(
    index: ClusterIndex,
    *,
    tools: TopicTools | None = None,
    scope: Scope | None = None,
    audit: AuditHook | None = None,
) -> None:
    """Serve the tools over stdio until the client closes the connection (blocks).

    Nothing but protocol messages may reach stdout while it runs; logs go to stderr.
    ``scope`` and ``audit`` as for :func:`build_server`.
    """
    build_server(index, tools=tools, scope=scope, audit=audit).run("stdio")
