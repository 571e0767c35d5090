"""Agent tools over a fitted index: list topics, search within a topic, get a document.

One framework-neutral definition of three read-only tools; every adapter (OpenAI
tool calling here, MCP in :mod:`cluster_rag.mcp_server`, the LangChain and
LlamaIndex packages under ``integrations/``) only translates types around it.

- ``list_topics(query=None, limit=20)``: topics (id, name, description, size,
  keywords), ranked by cosine similarity of ``query`` to each topic centroid when
  given, else largest first.
- ``search_within_topic(query, topic, k=5)``: the best ``k`` chunks of one topic;
  ``topic`` is an id or a name (unknown names fail with the closest names).
- ``get_document(id)``: one chunk's text, metadata and topic, plus its
  neighbouring chunks from the same source file (same ``source`` metadata,
  ``chunk_index`` ± ``neighbours``); chunks without those keys have no neighbours.

Results are bounded so one tool result never floods a context window (defaults,
all constructor arguments of :class:`TopicTools`):

=====================  =======  ==================================================
limit                  default  what it bounds
=====================  =======  ==================================================
``max_k``              20       hits per ``search_within_topic`` (larger k is capped)
``max_topics``         50       topics per ``list_topics`` (larger limit is capped)
``max_chars``          1200     characters of each hit / neighbour text
``max_document_chars`` 4000     characters of the ``get_document`` text
``max_keywords``       8        keywords per topic
``neighbours``         1        chunks on each side returned by ``get_document``
``max_result_bytes``   16384    UTF-8 bytes of one result's JSON, errors included
=====================  =======  ==================================================

Everything a result carries is bounded, not only texts: metadata (20 keys of at most
64 characters, string values of 300, lists of 20 items, 2,000 bytes per chunk), topic
names (200 characters), descriptions (``max_chars``), keywords (60 characters each),
the echoed query (200 characters) and error messages (600 characters). When a result
is still over ``max_result_bytes``, trailing items (hits, topics, neighbours) are
dropped and then texts shortened until it fits. Cut texts end in ``…``; an item that
was cut carries ``"truncated": true``, and so does a result that lost items; a capped
``k`` or ``limit`` is reported in a ``"note"``.

Source paths: ingested files are stored with the path they were read from, often
absolute (``/srv/kb/guide.md``). Agents see ``source`` and chunk ids relative to the
ingest root (``guide.md#3``): ``source_root`` when given, else the deepest folder
holding every absolute ``source`` the tools can see; ``get_document`` accepts both
forms.

Access scope and audit: ``TopicTools(index, scope=Scope(where={"tenant": "A"}))``
answers every call within the scope (see :mod:`cluster_rag.scope`: topic views from
in-scope chunks only; out-of-scope ids and topics answer exactly like missing ones);
``audit=`` takes a callable that receives one JSON-ready record per call (tool,
arguments cut to 200 characters each, scope, ids returned, error type; never texts);
:func:`audit_logger` logs them as JSON lines on the ``cluster_rag.audit`` logger.

Example (OpenAI chat completions)::

    tools = TopicTools(index)
    reply = client.chat.completions.create(model=m, messages=msgs, tools=tools.openai_tools())
    for call in reply.choices[0].message.tool_calls or []:
        msgs.append(tools.tool_message(call))  # {"role": "tool", "tool_call_id": ..., "content": json}
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import ValidationError

from .chunk_ids import chunk_id, split_chunk_id
from .errors import ClusterRagError, InvalidInputError, UnknownDocumentError, UnknownTopicError
from .hierarchy import TopicTree, TreeNode, node_centroids, node_topic
from .hybrid import check_mode
from .rerank import Reranker
from .scope import Scope, scoped_view
from .search import find_hits
from .tool_specs import TOOL_NAMES, ToolSpec, openai_parameters, tool_specs

if TYPE_CHECKING:
    from .index import ClusterIndex
    from .types import Hit, Topic

__all__ = ["TOOL_NAMES", "AuditHook", "TopicTools", "audit_logger", "openai_tools"]

logger = logging.getLogger(__name__)

#: Receives one JSON-ready record per tool call (see the module docstring).
AuditHook = Callable[[dict[str, Any]], None]

_MAX_METADATA_KEYS = 20
_MAX_METADATA_CHARS = 300
_MAX_KEY_CHARS = 64
_MAX_METADATA_BYTES = 2000
_MAX_NAME_CHARS = 200
_MAX_KEYWORD_CHARS = 60
_MAX_ECHO_CHARS = 200
_MAX_ERROR_CHARS = 600
_MIN_RESULT_BYTES = 1024
_NEIGHBOUR_SCAN = 50  # chunks of one source fetched at most when looking for neighbours


def openai_tools(
    *, api: Literal["chat", "responses"] = "chat", max_k: int = 20, max_topics: int = 50
) -> list[dict[str, Any]]:
    """The three tools as OpenAI function-tool definitions, ``strict`` mode on.

    Args:
        api: ``"chat"`` for Chat Completions (``{"type": "function", "function": {...}}``)
            or ``"responses"`` for the Responses API (flat ``{"type": "function", "name": ...}``).
        max_k: largest ``k`` quoted in the descriptions.
        max_topics: largest ``limit`` quoted in the descriptions.
    """
    if api not in ("chat", "responses"):
        raise InvalidInputError(f"api={api!r} must be 'chat' or 'responses'")
    out: list[dict[str, Any]] = []
    for spec in tool_specs(max_k, max_topics).values():
        body = {
            "name": spec.name,
            "description": spec.description,
            "parameters": openai_parameters(spec),
            "strict": True,
        }
        out.append({"type": "function", "function": body} if api == "chat" else {"type": "function", **body})
    return out


def _truncate(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    return text[: max(0, limit - 1)] + "…", True


def _collapsed(tree: TopicTree, node: TreeNode) -> TreeNode:
    """A node with a single child is shown as that child (down to a leaf topic)."""
    while len(node.children) == 1:
        node = tree.node(node.children[0])
    return node


def _short(text: str, limit: int) -> str:
    return _truncate(text, limit)[0]


def _size(data: Any) -> int:
    """UTF-8 bytes of ``data`` as the tools serialize it."""
    return len(json.dumps(data, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))


def _bounded_value(value: Any) -> tuple[Any, bool]:
    if isinstance(value, str):
        return _truncate(value, _MAX_METADATA_CHARS)
    if isinstance(value, list):
        items = [_bounded_value(v) for v in value[:_MAX_METADATA_KEYS]]
        return [v for v, _ in items], len(value) > _MAX_METADATA_KEYS or any(c for _, c in items)
    if isinstance(value, (bool, int, float)) or value is None:
        return value, False
    return _truncate(str(value), _MAX_METADATA_CHARS)


def _bounded_metadata(meta: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """At most 20 keys (64 characters each), values bounded, 2,000 bytes in all; and whether it was cut."""
    out: dict[str, Any] = {}
    cut = len(meta) > _MAX_METADATA_KEYS
    used = 2
    for key in sorted(meta, key=str)[:_MAX_METADATA_KEYS]:
        name, key_cut = _truncate(str(key), _MAX_KEY_CHARS)
        value, value_cut = _bounded_value(meta[key])
        cost = _size({name: value})
        if used + cost > _MAX_METADATA_BYTES:
            cut = True
            break
        out[name] = value
        used += cost
        cut = cut or key_cut or value_cut
    return out, cut


def _field(obj: Any, name: str) -> Any:
    """``obj[name]`` for mappings, ``obj.name`` otherwise (``None`` when absent)."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


class TopicTools:
    """The three agent tools over one :class:`~cluster_rag.ClusterIndex`.

    The methods :meth:`list_topics`, :meth:`search_within_topic` and
    :meth:`get_document` return JSON-ready dicts and raise typed errors;
    :meth:`call` and :meth:`dispatch` return JSON strings and never raise, so a
    bad tool call becomes a result the model can read and correct.

    Args:
        index: a fitted index (``fit`` was called, or it was opened from a fitted store).
        max_k: cap on ``k`` of :meth:`search_within_topic`.
        max_topics: cap on ``limit`` of :meth:`list_topics`.
        max_chars: characters kept of each hit / neighbour text.
        max_document_chars: characters kept of the :meth:`get_document` text.
        max_keywords: keywords shown per topic.
        neighbours: chunks on each side returned by :meth:`get_document` (0 to 5).
        max_result_bytes: UTF-8 bytes of one result's JSON (at least 1024).
        scope: the reader's :class:`~cluster_rag.scope.Scope`; every call is answered within it.
        audit: called with one record per call (see the module docstring), e.g. :func:`audit_logger`.
        source_root: folder that ``source`` paths and chunk ids are shown relative to
            (default: the deepest folder holding every absolute ``source``).
        mode: search mode of :meth:`search_within_topic` (``None``: the index's default, hybrid).
        reranker: a :class:`~cluster_rag.rerank.Reranker` for :meth:`search_within_topic`'s hits.

    Raises:
        InvalidInputError: a limit out of range, a scope of another collection.
    """

    def __init__(
        self,
        index: ClusterIndex,
        *,
        max_k: int = 20,
        max_topics: int = 50,
        max_chars: int = 1200,
        max_document_chars: int = 4000,
        max_keywords: int = 8,
        neighbours: int = 1,
        max_result_bytes: int = 16384,
        scope: Scope | None = None,
        audit: AuditHook | None = None,
        source_root: str | os.PathLike[str] | None = None,
        mode: str | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        for name, value, low in (
            ("max_k", max_k, 1),
            ("max_topics", max_topics, 1),
            ("max_chars", max_chars, 20),
            ("max_document_chars", max_document_chars, 20),
            ("max_keywords", max_keywords, 0),
            ("neighbours", neighbours, 0),
            ("max_result_bytes", max_result_bytes, _MIN_RESULT_BYTES),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(f"{name}={value!r} must be an int >= {low}")
        if neighbours > 5:
            raise InvalidInputError(f"neighbours={neighbours} must be at most 5")
        if scope is not None:
            if not isinstance(scope, Scope):
                raise InvalidInputError(f"scope={scope!r} must be a cluster_rag.Scope or None")
            scope.check_collection(index.store.name)
        if audit is not None and not callable(audit):
            raise InvalidInputError(f"audit={audit!r} must be a callable taking one dict, or None")
        self.index = index
        self.max_result_bytes = max_result_bytes
        self._scope = scope
        self.audit = audit
        self._root = _clean_root(source_root) if source_root is not None else None
        self._auto_root: tuple[object, str | None] | None = None
        self._root_lock = threading.Lock()
        self.max_k = max_k
        self.max_topics = max_topics
        self.max_chars = max_chars
        self.max_document_chars = max_document_chars
        self.max_keywords = max_keywords
        self.neighbours = neighbours
        self.specs = tool_specs(max_k, max_topics)
        self.mode = None if mode is None else check_mode(mode)
        if reranker is not None and not callable(reranker):
            raise InvalidInputError(f"reranker={reranker!r} must be callable (query, hits) -> hits")
        self.reranker = reranker

    @property
    def scope(self) -> Scope | None:
        """The fixed scope every call is answered within (``None``: the whole index)."""
        return self._scope

    def _view(self) -> Any:
        """The scope's topic view of the active model, or ``None`` when unscoped."""
        scope = self._scope
        if scope is None or not scope.filters_rows:
            return None
        return scoped_view(self.index.model, self.index.store, scope)

    # the three tools -------------------------------------------------------------
    def list_topics(
        self, query: str | None = None, limit: int | None = 20, parent: int | str | None = None
    ) -> dict[str, Any]:
        """Broad topics of the topic tree (or a node's subtopics), ranked by similarity to
        ``query`` when given, else by size (largest first).

        Args:
            query: text to rank topics by; ``None`` or blank: rank by size.
            limit: topics returned, ``>= 1``; capped at ``max_topics``; ``None``: 20.
            parent: a node id from an earlier answer: list its subtopics; ``None``: the top level.

        Returns:
            ``{"topics": [{"id", "name", "description", "size", "keywords", "subtopics"[, "score"]}],
            "total_topics", "returned"[, "note"]}``; ``score`` is the cosine similarity of
            the query to the topic centroid; ``subtopics`` counts the node's children (0: a leaf).

        Raises:
            InvalidInputError: ``query`` not a str, ``limit`` not a positive int, ``parent`` under a
                row-filtering scope.
            UnknownTopicError: no such ``parent``.
            NotFittedError: the index has no cluster model.
        """
        if query is not None and not isinstance(query, str):
            raise InvalidInputError(f"query={query!r} must be a string or null")
        limit, note = self._cap("limit", 20 if limit is None else limit, self.max_topics)
        topics, centroids, children = self._nodes(parent)
        if parent is not None and not topics:
            leaf = f"topic {_short(str(parent), 40)} has no subtopics; search it with search_within_topic"
            note = f"{note} {leaf}" if note else leaf
        sims = centroids @ self.index.embed_query(query) if query is not None and query.strip() else None
        return self._ranked(topics, sims, limit, note, children)

    def _nodes(self, parent: int | str | None) -> tuple[list[Topic], np.ndarray, dict[int, int] | None]:
        """Topic-tree nodes to list (top level, or ``parent``'s children) as topics, their centroids
        ``(t, d)`` and child counts; under a row-filtering scope, the flat in-scope topics."""
        if self._view() is not None:
            if parent is not None:
                raise InvalidInputError("parent= (drill-down) is not available under this scope; omit it")
            topics, centroids = self._topics()
            return topics, centroids, None
        model = self.index.model
        tree = model.tree
        if parent is None:
            nodes = tree.top
        else:
            pid = tree.parent_id(parent)
            if pid is None:
                self.index.topic(parent)  # a leaf topic (no subtopics), or UnknownTopicError
                nodes = []
            else:
                nodes = tree.children(pid)
        nodes = [_collapsed(tree, n) for n in nodes]
        leaves = model.sized_topics()
        topics = [node_topic(tree, n.id, leaves) for n in nodes]
        ids = [n.id for n in nodes]
        centroids = node_centroids(tree, ids, model.centroids, model.sizes) if ids else model.centroids[:0]
        return topics, centroids, {n.id: len(n.children) for n in nodes}

    def _topics(self) -> tuple[list[Topic], np.ndarray]:
        """Visible topics (current sizes) and their centroids ``(t, d)``, row-aligned."""
        view = self._view()
        if view is not None:
            return list(view.topics), view.centroids
        model = self.index.model
        return model.sized_topics(), model.centroids

    def list_topics_batch(self, queries: Sequence[str], limit: int | None = 1) -> list[dict[str, Any]]:
        """:meth:`list_topics` for many queries with one embedding batch (routing a stream of texts).

        Not one of the agent tools; ``limit=1`` gives each query's nearest topic.

        Args:
            queries: non-blank texts.
            limit: topics per query, ``>= 1``; capped at ``max_topics``.

        Returns:
            One :meth:`list_topics` result per query, in order.

        Raises:
            InvalidInputError: a query is not a non-blank str; ``limit`` not a positive int.
        """
        if isinstance(queries, str):
            raise InvalidInputError("queries must be a list of strings, got a single str; wrap it in a list")
        items = list(queries)
        for i, q in enumerate(items):
            if not isinstance(q, str) or not q.strip():
                raise InvalidInputError(f"queries[{i}]={q!r} must be a non-blank string")
        limit, note = self._cap("limit", 1 if limit is None else limit, self.max_topics)
        if not items:
            return []
        topics, centroids = self._topics()
        vectors = self.index.embed_texts(items)  # (n, d) float32, L2-normalized
        sims = vectors @ centroids.T  # (n, t) cosine per query and topic
        return [self._ranked(topics, row, limit, note) for row in sims]

    def _ranked(
        self,
        topics: list[Topic],
        sims: np.ndarray | None,
        limit: int,
        note: str,
        children: dict[int, int] | None = None,
    ) -> dict[str, Any]:
        """Topics ordered by ``sims`` ``(t,)`` (aligned with ``topics``) or, when ``None``, by size."""
        if sims is not None:
            order = sorted(range(len(topics)), key=lambda i: (-float(sims[i]), topics[i].id))
        else:
            order = sorted(range(len(topics)), key=lambda i: (-topics[i].size, topics[i].id))
        rows = []
        for i in order[:limit]:
            row = self._topic_row(topics[i], topics[i].size)
            if children is not None:
                row["subtopics"] = children.get(topics[i].id, 0)
            if sims is not None:
                row["score"] = round(float(sims[i]), 4)
            rows.append(row)
        out: dict[str, Any] = {"topics": rows, "total_topics": len(topics), "returned": len(rows)}
        if note:
            out["note"] = note
        return self._fit(out, "topics")

    def search_within_topic(self, query: str, topic: int | str, k: int | None = 5) -> dict[str, Any]:
        """The best ``k`` chunks of one topic for ``query``.

        Args:
            query: non-blank text.
            topic: topic id (int or digit string) or name (case-insensitive).
            k: hits, ``>= 1``; capped at ``max_k``; ``None``: 5.

        Returns:
            ``{"topic": {"id", "name", "size"}, "query", "hits": [{"id", "text", "score",
            "metadata"[, "truncated"]}][, "note"]}``, best hit first.

        Raises:
            UnknownTopicError: no such topic; the message lists the closest names.
            InvalidInputError: blank query, ``k`` not a positive int.
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError(f"query={query!r} must be a non-blank string")
        k, note = self._cap("k", 5 if k is None else k, self.max_k)
        try:
            found = self.index.topic(topic, scope=self._scope)
        except UnknownTopicError as exc:
            raise UnknownTopicError(f"{exc} (call list_topics for the ids and names)") from exc
        hits = self.index.search(
            query, k=k, topics=[found.id], scope=self._scope, mode=self.mode, rerank=self.reranker
        )
        out: dict[str, Any] = {
            "topic": {"id": found.id, "name": self._name(found), "size": found.size},
            "query": _short(query, _MAX_ECHO_CHARS),
            "hits": [self._hit_row(h, self.max_chars) for h in hits],
        }
        if note:
            out["note"] = note
        return self._fit(out, "hits")

    def get_document(self, id: str) -> dict[str, Any]:  # noqa: A002 - the tool's public argument name
        """One chunk with its metadata, topic and neighbouring chunks of the same source.

        Args:
            id: a chunk id, e.g. from :meth:`search_within_topic`.

        Returns:
            ``{"id", "text", "metadata", "topic": {"id", "name"}, "neighbours": [{"id",
            "chunk_index", "position", "text"}][, "truncated"]}``; ``position`` is
            ``"before"`` or ``"after"``; neighbours are in reading order.

        Raises:
            UnknownDocumentError: no chunk has this id.
            InvalidInputError: ``id`` is not a non-empty string.
        """
        if not isinstance(id, str) or not id.strip():
            raise InvalidInputError(
                f"id={_short(repr(id), 80)} must be a non-empty string (a chunk id from a search hit)"
            )
        got = self._get([id])
        root = self._source_root()
        if not got and root is not None and not id.startswith("/"):
            got = self._get([f"{root}/{id}"])  # the relative form the tools show
        if not got:
            raise UnknownDocumentError(
                f"no chunk with id {_short(repr(id), 80)}; use an id exactly as returned by "
                "search_within_topic"
            )
        hit = got[0]
        text, cut = _truncate(hit.text, self.max_document_chars)
        metadata, meta_cut = _bounded_metadata(self._shown_metadata(hit.metadata))
        out: dict[str, Any] = {
            "id": self._shown_id(hit.id),
            "text": text,
            "metadata": metadata,
            "topic": {
                "id": hit.topic_id,
                "name": _short(hit.topic_label or f"topic {hit.topic_id}", _MAX_NAME_CHARS),
            },
            "neighbours": self._neighbours(hit),
        }
        if cut or meta_cut:
            out["truncated"] = True
        return self._fit(out, "neighbours", text_key="text")

    def _get(self, ids: list[str]) -> list[Hit]:
        return self.index.get(ids, scope=self._scope)

    # neutral entry points ----------------------------------------------------------
    def invoke(self, name: str, arguments: Any) -> dict[str, Any]:
        """Validate ``arguments`` against tool ``name``'s schema and run it.

        Args:
            name: one of :data:`TOOL_NAMES`.
            arguments: a dict, or its JSON text. Nullable arguments may be omitted.

        Raises:
            InvalidInputError: unknown tool, arguments not an object, a missing,
                unexpected or wrongly typed argument; plus what the tool raises.
        """
        if self.audit is None:
            return self._invoke(name, arguments)
        try:
            result = self._invoke(name, arguments)
        except Exception as exc:
            self._audit(name, arguments, None, type(exc).__name__)
            raise
        self._audit(name, arguments, result, None)
        return result

    def _invoke(self, name: str, arguments: Any) -> dict[str, Any]:
        spec = self.specs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise InvalidInputError(
                f"unknown tool {_short(repr(name), 80)}; available tools: {', '.join(TOOL_NAMES)}"
            )
        args = self._check_args(spec, arguments)
        if name == "list_topics":
            return self.list_topics(args["query"], args["limit"], args["parent"])
        if name == "search_within_topic":
            return self.search_within_topic(args["query"], args["topic"], args["k"])
        return self.get_document(args["id"])

    def _audit(self, name: Any, arguments: Any, result: dict[str, Any] | None, error: str | None) -> None:
        """Hand one record to the audit hook: tool, arguments (cut), scope, ids returned; never texts."""
        assert self.audit is not None
        record = {
            "tool": _short(str(name), 80),
            "arguments": _audit_arguments(arguments),
            "scope": self._scope.to_dict() if self._scope is not None else None,
            "ids": _returned_ids(result) if result is not None else [],
            "error": error,
        }
        try:
            self.audit(record)
        except Exception:  # an audit sink that fails must not hide the answer; it is logged
            logger.exception("audit hook failed for tool %r", record["tool"])

    def call(self, name: str, arguments: Any) -> str:
        """:meth:`invoke`, as JSON text; never raises.

        Returns:
            The result as JSON, or ``{"error": message, "error_type": class name,
            "tool": name}`` when the call failed (bad arguments, unknown topic or id, …).
        """
        limit = min(_MAX_ERROR_CHARS, self.max_result_bytes // 8)  # 4 bytes a character at most, twice
        try:
            return json.dumps(self.invoke(name, arguments), ensure_ascii=False, default=str)
        except ClusterRagError as exc:
            return _error_json(name, type(exc).__name__, str(exc), limit)
        except Exception as exc:  # a tool result must never kill the chat loop
            logger.exception("tool %r failed unexpectedly", _short(repr(name), 80))
            return _error_json(name, type(exc).__name__, f"internal error: {exc}", limit)

    def dispatch(self, tool_call: Any) -> str:
        """Run one OpenAI tool call and return the tool result text (JSON); never raises.

        Args:
            tool_call: a Chat Completions tool call (object or dict with
                ``function.name`` / ``function.arguments``) or a Responses API
                ``function_call`` item (``name`` / ``arguments``); ``arguments``
                is JSON text or a dict.
        """
        function = _field(tool_call, "function")
        source = function if function is not None else tool_call
        name = _field(source, "name")
        raw = _field(source, "arguments")
        if not isinstance(name, str):
            return _error_json(None, "InvalidInputError", "tool call has no function name")
        if isinstance(raw, str):
            try:
                raw = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as exc:
                return _error_json(
                    name, "InvalidInputError", f"arguments are not valid JSON ({exc}); send a JSON object"
                )
        return self.call(name, raw)

    def tool_message(self, tool_call: Any) -> dict[str, str]:
        """:meth:`dispatch` wrapped as a Chat Completions ``{"role": "tool", ...}`` message."""
        call_id = str(_field(tool_call, "id") or "")
        return {"role": "tool", "tool_call_id": call_id, "content": self.dispatch(tool_call)}

    def openai_tools(self, *, api: Literal["chat", "responses"] = "chat") -> list[dict[str, Any]]:
        """:func:`openai_tools` with this instance's limits in the descriptions."""
        return openai_tools(api=api, max_k=self.max_k, max_topics=self.max_topics)

    def description(self, name: str) -> str:
        """The model-facing description of tool ``name`` (shared by every adapter)."""
        return self.specs[name].description

    def parameter_descriptions(self, name: str) -> dict[str, str]:
        """Argument name → model-facing description, for adapters that build their own schemas."""
        return self.specs[name].parameter_descriptions()

    # helpers -----------------------------------------------------------------------
    def _cap(self, name: str, value: Any, cap: int) -> tuple[int, str]:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidInputError(f"{name}={value!r} must be a positive integer (at most {cap})")
        if value > cap:
            return cap, f"{name}={int(value)} was capped at {cap}"
        return int(value), ""

    @staticmethod
    def _name(topic: Topic) -> str:
        return _short(topic.label or f"topic {topic.id}", _MAX_NAME_CHARS)

    def _topic_row(self, topic: Topic, size: int) -> dict[str, Any]:
        description, cut = _truncate(topic.description, self.max_chars)
        keywords = [_truncate(str(w), _MAX_KEYWORD_CHARS) for w in topic.keywords[: self.max_keywords]]
        row: dict[str, Any] = {
            "id": topic.id,
            "name": self._name(topic),
            "description": description,
            "size": size,
            "keywords": [w for w, _ in keywords],
        }
        if cut or any(c for _, c in keywords) or len(topic.label) > _MAX_NAME_CHARS:
            row["truncated"] = True
        return row

    def _hit_row(self, hit: Hit, limit: int) -> dict[str, Any]:
        text, cut = _truncate(hit.text, limit)
        metadata, meta_cut = _bounded_metadata(self._shown_metadata(hit.metadata))
        row: dict[str, Any] = {
            "id": self._shown_id(hit.id),
            "text": text,
            "score": round(hit.score, 4),
            "metadata": metadata,
        }
        if cut or meta_cut:
            row["truncated"] = True
        return row

    # the byte budget -------------------------------------------------------------------
    def _fit(self, out: dict[str, Any], items: str, *, text_key: str | None = None) -> dict[str, Any]:
        """``out`` within ``max_result_bytes``: trailing ``out[items]`` dropped, then texts shortened."""
        budget = self.max_result_bytes
        if _size(out) <= budget:
            return out
        rows = out[items]
        while rows and _size(out) > budget:
            rows.pop()
            out["truncated"] = True
        if "returned" in out:
            out["returned"] = len(rows)
        limit = 4096
        while _size(out) > budget and limit >= 16:
            if text_key is not None and isinstance(out.get(text_key), str):
                out[text_key] = _short(out[text_key], limit)
            for row in rows:
                if isinstance(row.get("text"), str):
                    row["text"] = _short(row["text"], limit)
                    row["truncated"] = True
            out["truncated"] = True
            limit //= 2
        if _size(out) > budget:  # metadata alone too large for a tiny budget
            for row in [out, *rows]:
                if "metadata" in row:
                    row["metadata"] = {}
        return out

    # source paths relative to the ingest root ----------------------------------------------
    def _source_root(self) -> str | None:
        """``source_root``, or the deepest folder holding every absolute ``source`` in scope
        (computed once per model snapshot)."""
        if self._root is not None:
            return self._root
        try:
            model = self.index.model
        except ClusterRagError:
            return None
        with self._root_lock:
            if self._auto_root is not None and self._auto_root[0] is model:
                return self._auto_root[1]
            where = self._scope.where if self._scope is not None else None
            sources: set[str] = set()
            for page in self.index.store.iter_all(include=["metadatas"], where=where):
                for meta in page["metadatas"]:
                    src = (meta or {}).get("source")
                    if isinstance(src, str) and src.startswith("/"):
                        sources.add(src)
            root = None
            if sources:
                common = posixpath.commonpath(sorted(sources))
                root = common if common not in sources else posixpath.dirname(common)
                root = None if root in ("", "/") else root
            self._auto_root = (model, root)
            return root

    def _shown_id(self, cid: str) -> str:
        root = self._source_root() if cid.startswith("/") else None
        return cid[len(root) + 1 :] if root is not None and cid.startswith(root + "/") else cid

    def _shown_metadata(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        src = meta.get("source")
        if not isinstance(src, str) or not src.startswith("/"):
            return dict(meta)
        return {**meta, "source": self._shown_id(src)}

    def _neighbours(self, hit: Hit) -> list[dict[str, Any]]:
        """Chunks of the same ``source`` whose ``chunk_index`` is within ``neighbours`` of ``hit``'s.

        When the id follows the ingest convention ``<base>#<n>`` (a file's chunks, or a
        long record split in several) the neighbours are ``<base>#<n±j>``, so records of
        one JSONL/CSV file never pass as neighbours of each other. Other ids are matched
        on metadata alone and a position is kept only when exactly one chunk holds it.
        """
        source, index = hit.metadata.get("source"), hit.metadata.get("chunk_index")
        if self.neighbours == 0 or not isinstance(source, str) or isinstance(index, bool):
            return []
        if not isinstance(index, int):
            return []
        span = range(index - self.neighbours, index + self.neighbours + 1)
        wanted = [i for i in span if i >= 0 and i != index]
        if not wanted:
            return []
        own = split_chunk_id(hit.id)
        by_position: dict[int, list[tuple[str, str]]] = {}
        if own is not None:  # ingest convention: the neighbours' ids are known
            got = self._get([chunk_id(own[0], i) for i in wanted])
        else:  # the scope is applied inside find_hits, as for every other read
            got = find_hits(
                self.index.model,
                self.index.store,
                {"$and": [{"source": source}, {"chunk_index": {"$in": wanted}}]},
                limit=_NEIGHBOUR_SCAN,
                scope=self._scope,
            )
        for near in got:
            position = near.metadata.get("chunk_index")
            cid = near.id
            if cid == hit.id or near.metadata.get("source") != source or not isinstance(position, int):
                continue
            if own is None and split_chunk_id(cid) is not None:
                continue  # a piece of another split record, not a neighbour of this one
            by_position.setdefault(position, []).append((cid, near.text))
        rows = []
        for position in sorted(by_position):
            found = by_position[position]
            if len(found) != 1:  # ambiguous: several chunks claim this place
                continue
            cid, text = found[0]
            short, cut = _truncate(text, self.max_chars)
            row: dict[str, Any] = {
                "id": self._shown_id(cid),
                "chunk_index": position,
                "position": "before" if position < index else "after",
                "text": short,
            }
            if cut:
                row["truncated"] = True
            rows.append(row)
        return rows

    @staticmethod
    def _check_args(spec: ToolSpec, arguments: Any) -> dict[str, Any]:
        """Arguments validated against ``spec.args`` (strict types, closed), with readable errors."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"arguments of {spec.name} are not valid JSON ({exc})") from exc
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, Mapping):
            raise InvalidInputError(
                f"arguments of {spec.name} must be a JSON object, got {type(arguments).__name__}"
            )
        fields = spec.args.model_fields
        extra = sorted(str(key) for key in arguments if key not in fields)
        if extra:
            raise InvalidInputError(
                f"{spec.name} got unexpected argument(s) {extra}; it takes {list(fields)}"
            )
        clean = {
            key: int(value)
            if isinstance(value, float) and value.is_integer() and _takes_int(spec, key)
            else value
            for key, value in arguments.items()
        }
        try:
            return spec.args.model_validate(clean).model_dump()
        except ValidationError as exc:
            raise InvalidInputError(_explain(spec, exc)) from None


def _takes_int(spec: ToolSpec, name: str) -> bool:
    types = openai_parameters(spec)["properties"][name]["type"]
    return "integer" in (types if isinstance(types, list) else [types])


def _explain(spec: ToolSpec, error: ValidationError) -> str:
    """One readable sentence for the first problem pydantic found."""
    problem = error.errors()[0]
    name = str(problem["loc"][0]) if problem["loc"] else "arguments"
    kind = problem["type"]
    described = spec.parameter_descriptions().get(name, "")
    if kind == "missing":
        return f"{spec.name} needs argument {name!r} ({described})"
    value = problem.get("input")
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    if kind in ("greater_than_equal", "greater_than"):
        return f"{spec.name} argument {name!r} must be a positive integer, got {name}={shown}"
    if kind == "string_too_short":
        return f"{spec.name} argument {name!r} must be a non-empty string, got {shown}"
    types = openai_parameters(spec)["properties"][name]["type"]
    kinds = " or ".join(types) if isinstance(types, list) else types
    return f"{spec.name} argument {name!r} must be {kinds}, got {type(value).__name__} {shown}"


def _error_json(tool: Any, kind: str, message: str, limit: int = _MAX_ERROR_CHARS) -> str:
    name = _short(tool, 80) if isinstance(tool, str) else None
    return json.dumps(
        {"error": _short(message, limit), "error_type": _short(kind, 80), "tool": name},
        ensure_ascii=False,
    )


def _clean_root(root: str | os.PathLike[str]) -> str:
    text = os.fspath(root)
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"source_root={root!r} must be a folder path")
    return text.replace(os.sep, "/").rstrip("/") or "/"


def _audit_arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        return _short(arguments, _MAX_ECHO_CHARS)
    if isinstance(arguments, Mapping):
        items = list(arguments.items())[:10]
        return {
            _short(str(k), 64): _short(v, _MAX_ECHO_CHARS)
            if isinstance(v, str)
            else v
            if isinstance(v, (int, float, bool)) or v is None
            else _short(repr(v), _MAX_ECHO_CHARS)
            for k, v in items
        }
    return _short(repr(arguments), _MAX_ECHO_CHARS)


def _returned_ids(result: Mapping[str, Any]) -> list[Any]:
    """Ids a result carries: topic ids, hit ids, the document and its neighbours."""
    ids: list[Any] = []
    if "topics" in result:
        ids.extend(t["id"] for t in result["topics"])
    if "hits" in result:
        ids.extend(h["id"] for h in result["hits"])
    if "neighbours" in result:
        ids.append(result["id"])
        ids.extend(n["id"] for n in result["neighbours"])
    return ids


def audit_logger(log: logging.Logger | None = None, level: int = logging.INFO) -> AuditHook:
    """An audit hook that writes each record as one JSON line on ``log`` (default ``cluster_rag.audit``)."""
    target = log if log is not None else logging.getLogger("cluster_rag.audit")

    def hook(record: dict[str, Any]) -> None:
        target.log(level, "%s", json.dumps(record, ensure_ascii=False, default=str, sort_keys=True))

    return hook
