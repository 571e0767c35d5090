"""The explorer's HTTP API for one access scope (``create_app(index, scope=...)``).

A scoped app answers only what a reader of that scope may see, all through the core's
scoped paths (:mod:`cluster_rag.scope`, :mod:`cluster_rag.search`):

========================================  ==========================================================
``GET /``                                 the explorer page (the operator panels stay empty)
``GET /api/info``                         the active version and how many topics the scope sees
``GET /api/topics``                       topics within the scope: in-scope sizes, keywords, names
                                          and representative chunks
``GET /api/topics/{id}``                  one visible topic and a page of its in-scope members
``POST /api/search``                      ``{"query", "k"?, "topics"?}``: hits within the scope
``GET /api/documents/{id}``               one chunk within the scope
========================================  ==========================================================

Everything else of the full explorer — the topic map and charts (drawn from every chunk),
renaming and pinning, versions, rollback and drift — is an operator view and is not
served (404). A topic or chunk outside the scope answers 404 exactly like a missing one.
The app has no authentication: put it behind the application or proxy that decides which
scope a user gets, and start one app per scope.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import (
    ClusterRagError,
    InvalidInputError,
    UnknownDocumentError,
    missing_dependency,
)
from ..index import ClusterIndex
from ..scope import Scope, scoped_view
from .common import error_response, page_routes

try:
    from fastapi import FastAPI, Query
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, Field
except ImportError:
    raise missing_dependency("fastapi", '"cluster-rag[web]"') from None

__all__ = ["create_scoped_app", "scoped_document", "scoped_search", "scoped_topic", "scoped_topics"]

MAX_PAGE = 200


class ScopedSearchBody(BaseModel):
    """Body of ``POST /api/search``."""

    query: str = Field(min_length=1, description="search text")
    k: int = Field(10, ge=1, le=100, description="hits wanted")
    topics: list[int] | None = Field(None, description="search only these topic ids")


def scoped_topics(index: ClusterIndex, scope: Scope, *, representatives: int = 3) -> dict[str, Any]:
    """Topics within ``scope`` with the texts of their first ``representatives`` in-scope chunks."""
    if isinstance(representatives, bool) or not isinstance(representatives, int) or representatives < 0:
        raise InvalidInputError(f"representatives={representatives!r} must be an int >= 0")
    model = index.model
    topics = index.topics(scope=scope)
    wanted = [cid for t in topics for cid in t.representative_ids[:representatives]]
    texts = {h.id: h.text for h in index.get(wanted, scope=scope)} if wanted else {}
    out = []
    for t in topics:
        item = t.to_dict()
        item["representatives"] = [
            {"id": cid, "text": texts[cid]} for cid in t.representative_ids[:representatives] if cid in texts
        ]
        out.append(item)
    return {"version": model.version, "topics": out}


def scoped_topic(
    index: ClusterIndex, scope: Scope, topic_id: int, *, offset: int = 0, limit: int = 20
) -> dict[str, Any]:
    """One visible topic with a page of its in-scope members (nearest the in-scope centroid first).

    Raises:
        UnknownTopicError: no such topic, or none the scope sees.
    """
    if offset < 0:
        raise InvalidInputError(f"offset={offset} must be >= 0")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit={limit} must be between 1 and {MAX_PAGE}")
    topic = index.topic(int(topic_id), scope=scope)
    model = index.model
    members = scoped_view(model, index.store, scope).members.get(topic.id, ())
    page = list(members[offset : offset + limit])
    found = {h.id: h for h in index.get(page, scope=scope)} if page else {}
    item = topic.to_dict()
    item["members"] = {
        "total": len(members),
        "offset": offset,
        "limit": limit,
        "items": [
            {"id": cid, "text": found[cid].text, "metadata": found[cid].metadata}
            for cid in page
            if cid in found
        ],
    }
    item["version"] = model.version
    return item


def scoped_search(
    index: ClusterIndex, scope: Scope, query: str, *, k: int = 10, topics: list[int] | None = None
) -> dict[str, Any]:
    """Routed search within ``scope``: ``{"query", "version", "hits": [Hit dict]}``."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError(f"query must be a non-blank string, got {query!r}")
    hits = index.search(query, k, topics=topics, scope=scope)
    version = hits[0].model_version if hits else index.model.version
    return {"query": query, "version": version, "hits": [h.to_dict() for h in hits]}


def scoped_document(index: ClusterIndex, scope: Scope, doc_id: str) -> dict[str, Any]:
    """One chunk within ``scope``.

    Raises:
        UnknownDocumentError: no chunk with this id in the scope (worded as for a missing one).
    """
    got = index.get([doc_id], scope=scope)
    if not got:
        shown = doc_id if len(doc_id) <= 80 else doc_id[:77] + "..."
        raise UnknownDocumentError(f"no chunk with id {shown!r}; ids appear in search hits and topic pages")
    return got[0].to_dict()


def create_scoped_app(index: ClusterIndex, scope: Scope, *, plotly_js: Path) -> FastAPI:
    """The scoped explorer app (see the module docstring).

    Raises:
        InvalidInputError: ``scope`` is not a :class:`Scope`, or belongs to another collection.
    """
    from .. import __version__

    if not isinstance(scope, Scope):
        raise InvalidInputError(f"scope={scope!r} must be a cluster_rag.Scope")
    scope.check_collection(index.store.name)
    static_dir = Path(str(resources.files("cluster_rag.web") / "static"))
    app = FastAPI(
        title="cluster-rag explorer (scoped)",
        version=__version__,
        description="Topics and routed search within one access scope.",
        docs_url=None,
        redoc_url=None,
    )

    app.add_exception_handler(ClusterRagError, error_response)  # type: ignore[arg-type]
    page_routes(app, static_dir, plotly_js)

    @app.get("/api/info", summary="The active version and the topics the scope sees")
    def info() -> JSONResponse:
        return JSONResponse(
            {"scoped": True, "fitted": True, "active_version": index.model.version,
             "topics": len(index.topics(scope=scope))}
        )

    @app.get("/api/topics", summary="Topics within the scope")
    def topics(representatives: int = Query(3, ge=0, le=20)) -> JSONResponse:
        return JSONResponse(scoped_topics(index, scope, representatives=representatives))

    @app.get("/api/topics/{topic_id}", summary="One topic and a page of its in-scope members")
    def topic(topic_id: int, offset: int = Query(0, ge=0), limit: int = Query(20, ge=1, le=MAX_PAGE)) -> Any:
        return JSONResponse(scoped_topic(index, scope, topic_id, offset=offset, limit=limit))

    @app.post("/api/search", summary="Routed search within the scope")
    def search(body: ScopedSearchBody) -> JSONResponse:
        return JSONResponse(scoped_search(index, scope, body.query, k=body.k, topics=body.topics))

    @app.get("/api/documents/{doc_id:path}", summary="One chunk within the scope")
    def document(doc_id: str) -> JSONResponse:
        return JSONResponse(scoped_document(index, scope, doc_id))

    return app
