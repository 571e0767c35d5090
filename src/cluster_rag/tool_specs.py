"""One typed spec per agent tool: the pydantic model of its arguments and its description.

Every door derives its schema from these models — the OpenAI function definitions
(:func:`openai_parameters`, strict mode), the LangChain ``args_schema``, the
LlamaIndex ``fn_schema``, the MCP tool signatures — and :class:`~cluster_rag.tools.TopicTools`
validates every call against them, so the copies cannot disagree.

Types are strict (no coercion), in the models and in every field, so the MCP SDK's own
argument models (built from these fields) are strict too: ``k`` and ``limit`` are JSON
integers, ``query`` and ``id`` strings, ``topic`` an integer id or a string (id or name). Unknown
arguments are rejected; nullable arguments may be omitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, create_model

__all__ = ["TOOL_NAMES", "ToolSpec", "openai_parameters", "tool_specs"]

TOOL_NAMES = ("list_topics", "search_within_topic", "get_document")

_CLOSED = ConfigDict(extra="forbid", strict=True)


@dataclass(frozen=True)
class ToolSpec:
    """One agent tool.

    Attributes:
        name: the tool's name.
        description: the model-facing description.
        args: the pydantic model of its arguments (strict, closed).
    """

    name: str
    description: str
    args: type[BaseModel]

    def parameter_descriptions(self) -> dict[str, str]:
        """Argument name → model-facing description."""
        return {name: f.description or "" for name, f in self.args.model_fields.items()}


def tool_specs(max_k: int = 20, max_topics: int = 50) -> dict[str, ToolSpec]:
    """The three tools, with the limits quoted in their descriptions.

    Args:
        max_k: largest ``k`` of ``search_within_topic``.
        max_topics: largest ``limit`` of ``list_topics``.
    """
    return {
        "list_topics": ToolSpec(
            "list_topics",
            "List the topics of the knowledge base: id, name, description, size (number of chunks), "
            "keywords and the number of subtopics. Without parent, the broad topics; with parent=<id>, "
            "that topic's subtopics. With a query, topics are ranked by similarity to it (best first, "
            "with a score); without one, largest first. Call this first to see what the knowledge base "
            "covers.",
            _list_topics_args(max_topics),
        ),
        "search_within_topic": ToolSpec(
            "search_within_topic",
            "Semantic search restricted to one topic (a broad topic searches all its subtopics). Returns "
            "the best matching chunks (id, text, score, metadata). Use a topic id or name from "
            "list_topics; an unknown name returns the closest names.",
            _search_args(max_k),
        ),
        "get_document": ToolSpec(
            "get_document",
            "Fetch one chunk by id (from search_within_topic) with its full text, metadata and topic, "
            "plus the neighbouring chunks of the same source file for context.",
            _get_document_args(),
        ),
    }


def _list_topics_args(max_topics: int) -> type[BaseModel]:
    query = "What you are looking for, to rank topics by; null to list the largest topics."
    limit = f"How many topics to return, 1 to {max_topics} (null: 20)."
    parent = "A topic id from list_topics whose subtopics to list; null: the broad topics."
    return create_model(
        "ListTopicsArgs",
        __config__=_CLOSED,
        query=(StrictStr | None, Field(default=None, description=query)),
        limit=(StrictInt | None, Field(default=20, ge=1, description=limit)),
        parent=(StrictInt | StrictStr | None, Field(default=None, description=parent)),
    )


def _search_args(max_k: int) -> type[BaseModel]:
    return create_model(
        "SearchWithinTopicArgs",
        __config__=_CLOSED,
        query=(StrictStr, Field(min_length=1, description="What to search for, in natural language.")),
        topic=(
            StrictInt | StrictStr,
            Field(description="A topic id (e.g. 3) or a topic name from list_topics."),
        ),
        k=(
            StrictInt | None,
            Field(default=5, ge=1, description=f"Number of chunks to return, 1 to {max_k} (null: 5)."),
        ),
    )


def _get_document_args() -> type[BaseModel]:
    described = "The chunk id, exactly as returned by search_within_topic."
    return create_model(
        "GetDocumentArgs", __config__=_CLOSED, id=(StrictStr, Field(min_length=1, description=described))
    )


def openai_parameters(spec: ToolSpec) -> dict[str, Any]:
    """JSON schema of ``spec``'s arguments in OpenAI strict mode: every property required,
    optional ones nullable by type, no extra properties, no pydantic titles/defaults."""
    props: dict[str, Any] = {}
    for name, field in spec.args.model_fields.items():
        schema = spec.args.model_json_schema()["properties"][name]
        types = [s["type"] for s in schema.get("anyOf", [schema])]
        entry: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
        entry["description"] = field.description or ""
        props[name] = entry
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }
