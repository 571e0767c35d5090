"""The agent tools of :mod:`cluster_rag.tools` over the Model Context Protocol (stdio).

Built on the official ``mcp`` Python SDK (2.x: the high-level server class is
``mcp.server.mcpserver.MCPServer``, formerly ``FastMCP``). The three tools are
marked read-only (``ToolAnnotations(read_only_hint=True)``) and return the same
JSON text as :meth:`TopicTools.call <cluster_rag.tools.TopicTools.call>`; a failed
call (unknown topic or id, bad arguments) is an ``is_error`` result whose text
tells the model how to fix it.

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

# No ``from __future__ import annotations`` here: the SDK builds each tool's
# argument model from the closures' annotations at registration time, and those
# must be real objects (``Annotated[..., Field(...)]``), not strings.

import functools
import importlib
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from .errors import ClusterRagError, InvalidInputError, missing_dependency
from .scope import Scope
from .tool_specs import TOOL_NAMES, ToolSpec
from .tools import AuditHook, TopicTools

_MAX_ERROR_CHARS = 600

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

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
    index: "ClusterIndex",
    *,
    tools: TopicTools | None = None,
    name: str = "cluster-rag",
    scope: Scope | None = None,
    audit: AuditHook | None = None,
) -> "MCPServer[Any]":
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
    server: MCPServer[Any] = mcpserver.MCPServer(
        name, instructions=INSTRUCTIONS, version=__version__, log_level="WARNING"
    )
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

    for fn in (_tool_function(topic_tools.specs[name], run) for name in TOOL_NAMES):
        server.add_tool(
            fn,
            name=fn.__name__,
            title=fn.__name__.replace("_", " ").capitalize(),
            description=topic_tools.description(fn.__name__),
            annotations=read_only,
            structured_output=False,
        )
    return server


def _tool_function(spec: ToolSpec, run: Callable[..., Awaitable[str]]) -> Callable[..., Awaitable[str]]:
    """An async function whose signature is ``spec``'s argument model (the SDK builds its schema from it)."""

    async def tool(**arguments: Any) -> str:
        return await run(spec.name, **arguments)

    params = []
    for name, field in spec.args.model_fields.items():
        default = inspect.Parameter.empty if field.is_required() else field.default
        annotation = Annotated[field.annotation, field]  # type: ignore[name-defined]
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
    tool.__signature__ = inspect.Signature(params, return_annotation=str)  # type: ignore[attr-defined]
    tool.__annotations__ = {p.name: p.annotation for p in params} | {"return": str}
    tool.__name__ = tool.__qualname__ = spec.name
    return tool


def serve(
    index: "ClusterIndex",
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
