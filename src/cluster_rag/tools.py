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
=====================  =======  ==================================================

Truncated texts end in ``…`` and carry ``"truncated": true``; a capped ``k`` or
``limit`` is reported in a ``"note"``.

Example (OpenAI chat completions)::

    tools = TopicTools(index)
    reply = client.chat.completions.create(model=m, messages=msgs, tools=tools.openai_tools())
    for call in reply.choices[0].message.tool_calls or []:
        msgs.append(tools.tool_message(call))  # {"role": "tool", "tool_call_id": ..., "content": json}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import ValidationError

from .chunk_ids import chunk_id, split_chunk_id
from .errors import ClusterRagError, InvalidInputError, UnknownDocumentError, UnknownTopicError
from .tool_specs import TOOL_NAMES, ToolSpec, openai_parameters, tool_specs

if TYPE_CHECKING:
    from .index import ClusterIndex
    from .model import ClusterModel
    from .types import Hit, Topic

__all__ = ["TOOL_NAMES", "TopicTools", "openai_tools"]

logger = logging.getLogger(__name__)


_MAX_METADATA_KEYS = 20
_MAX_METADATA_CHARS = 300
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


def _bounded_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(meta)[:_MAX_METADATA_KEYS]:
        value = meta[key]
        if isinstance(value, str):
            value = _truncate(value, _MAX_METADATA_CHARS)[0]
        elif isinstance(value, list):
            value = value[:_MAX_METADATA_KEYS]
        out[key] = value
    return out


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

    Raises:
        InvalidInputError: a limit out of range.
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
    ) -> None:
        for name, value, low in (
            ("max_k", max_k, 1),
            ("max_topics", max_topics, 1),
            ("max_chars", max_chars, 20),
            ("max_document_chars", max_document_chars, 20),
            ("max_keywords", max_keywords, 0),
            ("neighbours", neighbours, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(f"{name}={value!r} must be an int >= {low}")
        if neighbours > 5:
            raise InvalidInputError(f"neighbours={neighbours} must be at most 5")
        self.index = index
        self.max_k = max_k
        self.max_topics = max_topics
        self.max_chars = max_chars
        self.max_document_chars = max_document_chars
        self.max_keywords = max_keywords
        self.neighbours = neighbours
        self.specs = tool_specs(max_k, max_topics)

    # the three tools -------------------------------------------------------------
    def list_topics(self, query: str | None = None, limit: int | None = 20) -> dict[str, Any]:
        """Topics, ranked by similarity to ``query`` when given, else by size (largest first).

        Args:
            query: text to rank topics by; ``None`` or blank: rank by size.
            limit: topics returned, ``>= 1``; capped at ``max_topics``; ``None``: 20.

        Returns:
            ``{"topics": [{"id", "name", "description", "size", "keywords"[, "score"]}],
            "total_topics", "returned"[, "note"]}``; ``score`` is the cosine similarity of
            the query to the topic centroid.

        Raises:
            InvalidInputError: ``query`` not a str, ``limit`` not a positive int.
            NotFittedError: the index has no cluster model.
        """
        if query is not None and not isinstance(query, str):
            raise InvalidInputError(f"query={query!r} must be a string or null")
        limit, note = self._cap("limit", 20 if limit is None else limit, self.max_topics)
        model = self.index.model
        if query is not None and query.strip():
            sims = model.centroids @ self.index.embed_query(query)  # (k,) cosine per topic
            return self._ranked(model, sims, limit, note)
        return self._ranked(model, None, limit, note)

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
        model = self.index.model
        vectors = self.index.embed_texts(items)  # (n, d) float32, L2-normalized
        sims = vectors @ model.centroids.T  # (n, k) cosine per query and topic
        return [self._ranked(model, row, limit, note) for row in sims]

    def _ranked(self, model: ClusterModel, sims: np.ndarray | None, limit: int, note: str) -> dict[str, Any]:
        """Topics ordered by ``sims`` ``(k,)`` (by cluster position) or, when ``None``, by size."""
        # sims / sizes are by cluster position (= index in model.topics); topic ids are stable
        # across refits and need not equal positions
        topics = list(model.topics)
        sizes = model.sizes
        if sims is not None:
            order = sorted(range(len(topics)), key=lambda i: (-float(sims[i]), topics[i].id))
        else:
            order = sorted(range(len(topics)), key=lambda i: (-int(sizes[i]), topics[i].id))
        rows = []
        for i in order[:limit]:
            row = self._topic_row(topics[i], int(sizes[i]))
            if sims is not None:
                row["score"] = round(float(sims[i]), 4)
            rows.append(row)
        out: dict[str, Any] = {"topics": rows, "total_topics": len(topics), "returned": len(rows)}
        if note:
            out["note"] = note
        return out

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
            found = self.index.topic(topic)
        except UnknownTopicError as exc:
            raise UnknownTopicError(f"{exc} (call list_topics for the ids and names)") from exc
        hits = self.index.search(query, k=k, topics=[found.id])
        out: dict[str, Any] = {
            "topic": {"id": found.id, "name": self._name(found), "size": found.size},
            "query": query,
            "hits": [self._hit_row(h, self.max_chars) for h in hits],
        }
        if note:
            out["note"] = note
        return out

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
            raise InvalidInputError(f"id={id!r} must be a non-empty string (a chunk id from a search hit)")
        got = self.index.get([id])
        if not got:
            raise UnknownDocumentError(
                f"no chunk with id {id!r}; use an id exactly as returned by search_within_topic"
            )
        hit = got[0]
        text, cut = _truncate(hit.text, self.max_document_chars)
        out: dict[str, Any] = {
            "id": hit.id,
            "text": text,
            "metadata": _bounded_metadata(hit.metadata),
            "topic": {"id": hit.topic_id, "name": hit.topic_label or f"topic {hit.topic_id}"},
            "neighbours": self._neighbours(hit),
        }
        if cut:
            out["truncated"] = True
        return out

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
        spec = self.specs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise InvalidInputError(f"unknown tool {name!r}; available tools: {', '.join(TOOL_NAMES)}")
        args = self._check_args(spec, arguments)
        if name == "list_topics":
            return self.list_topics(args["query"], args["limit"])
        if name == "search_within_topic":
            return self.search_within_topic(args["query"], args["topic"], args["k"])
        return self.get_document(args["id"])

    def call(self, name: str, arguments: Any) -> str:
        """:meth:`invoke`, as JSON text; never raises.

        Returns:
            The result as JSON, or ``{"error": message, "error_type": class name,
            "tool": name}`` when the call failed (bad arguments, unknown topic or id, …).
        """
        try:
            return json.dumps(self.invoke(name, arguments), ensure_ascii=False, default=str)
        except ClusterRagError as exc:
            return _error_json(name, type(exc).__name__, str(exc))
        except Exception as exc:  # a tool result must never kill the chat loop
            logger.exception("tool %r failed unexpectedly", name)
            return _error_json(name, type(exc).__name__, f"internal error: {exc}")

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
        return topic.label or f"topic {topic.id}"

    def _topic_row(self, topic: Topic, size: int) -> dict[str, Any]:
        return {
            "id": topic.id,
            "name": self._name(topic),
            "description": _truncate(topic.description, self.max_chars)[0],
            "size": size,
            "keywords": list(topic.keywords[: self.max_keywords]),
        }

    def _hit_row(self, hit: Hit, limit: int) -> dict[str, Any]:
        text, cut = _truncate(hit.text, limit)
        row: dict[str, Any] = {
            "id": hit.id,
            "text": text,
            "score": round(hit.score, 4),
            "metadata": _bounded_metadata(hit.metadata),
        }
        if cut:
            row["truncated"] = True
        return row

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
            got = self.index.store.get([chunk_id(own[0], i) for i in wanted])
        else:
            got = self.index.store.find(
                {"$and": [{"source": source}, {"chunk_index": {"$in": wanted}}]}, limit=_NEIGHBOUR_SCAN
            )
        candidates = zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=False)
        for cid, text, meta in candidates:
            position = (meta or {}).get("chunk_index")
            if cid == hit.id or (meta or {}).get("source") != source or not isinstance(position, int):
                continue
            if own is None and split_chunk_id(cid) is not None:
                continue  # a piece of another split record, not a neighbour of this one
            by_position.setdefault(position, []).append((cid, text or ""))
        rows = []
        for position in sorted(by_position):
            found = by_position[position]
            if len(found) != 1:  # ambiguous: several chunks claim this place
                continue
            cid, text = found[0]
            short, cut = _truncate(text, self.max_chars)
            row: dict[str, Any] = {
                "id": cid,
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


def _error_json(tool: str | None, kind: str, message: str) -> str:
    return json.dumps({"error": message, "error_type": kind, "tool": tool}, ensure_ascii=False)
