"""The explorer's HTTP service: a FastAPI app over one loaded :class:`ClusterIndex`.

The index (and its embedding model) stays loaded in the process, so a search costs one
query embedding plus the routed search. Routes (all JSON unless noted; OpenAPI at
``/openapi.json``; the interactive ``/docs`` page is off because it loads from a CDN):

========================================  ==========================================================
``GET /``                                 the explorer page (HTML; plotly served from the package)
``GET /api/info``                         what the index holds
``GET /api/topics``                       topics with sizes, keywords, labels, representative chunks
``GET /api/topics/{id}``                  one topic with keyword coverage and a page of members
``POST /api/topics/{id}/rename``          ``{"name", "description"?}``: rename and pin
``POST /api/topics/{id}/pin|unpin``       pin the current label / release it
``GET /api/map``                          the topic map as a plotly figure (JSON)
``GET /api/charts/{sizes|heatmap|keywords}``  the other figures (JSON)
``POST /api/search``                      ``{"query", "k"?, "topics"?}``: hits and probed topics
``GET /api/documents/{id}``               one chunk
``GET /api/versions``, ``POST /api/rollback``  kept versions, refit report; roll back
``GET /api/drift``                        drift of the chunks added since the fit
========================================  ==========================================================

Errors answer ``{"detail": message}``: unknown topic, chunk or version → 404; bad input → 422
(FastAPI's own validation errors too, e.g. malformed JSON); not fitted yet → 409.

Access scopes: ``create_app(index, scope=Scope(...))`` builds the scoped app of
:mod:`cluster_rag.web.scoped` instead (topics, search and documents within the scope; the
operator views are not served).
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
from ..plots import visualize_barchart, visualize_heatmap, visualize_sizes, visualize_topics
from ..scope import Scope
from . import views
from .common import error_response, page_routes

try:  # this module is imported only by create_app(), so the import error names the extra
    from fastapi import Depends, FastAPI, Query, Request
    from fastapi.responses import JSONResponse, Response
    from pydantic import BaseModel, Field
    from starlette.concurrency import run_in_threadpool
except ImportError:
    raise missing_dependency("fastapi", '"cluster-rag[web]"') from None

__all__ = ["create_app", "plotly_js_path"]

STATIC = "static"


class SearchBody(BaseModel):
    """Body of ``POST /api/search``."""

    query: str = Field(min_length=1, description="search text")
    k: int = Field(10, ge=1, le=100, description="hits wanted")
    topics: list[int] | None = Field(None, description="search only these topic ids")


class RenameBody(BaseModel):
    """Body of ``POST /api/topics/{id}/rename``."""

    name: str = Field(min_length=1, max_length=120, description="new label (pins the topic)")
    description: str | None = Field(None, description="new one-sentence description; null keeps it")


class RollbackBody(BaseModel):
    """Body of ``POST /api/rollback``."""

    version: int | None = Field(None, description="version to activate; null: the one before")


def plotly_js_path() -> Path:
    """The minified plotly.js shipped inside the installed ``plotly`` wheel."""
    try:
        import plotly
    except ImportError:
        raise missing_dependency("plotly", '"cluster-rag[web]"') from None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise missing_dependency("plotly (package_data/plotly.min.js is missing)", "--force-reinstall plotly")
    return path


def _json(data: Any) -> JSONResponse:
    """``data`` as JSON, skipping FastAPI's response encoding pass (payloads are JSON-ready dicts)."""
    return JSONResponse(data)


def _figure_json(fig: Any) -> Response:
    return Response(fig.to_json(), media_type="application/json")


def create_app(index: ClusterIndex, *, n_sample: int | None = None, scope: Scope | None = None) -> FastAPI:
    """Build the explorer app over ``index`` (loaded once, shared by all requests).

    Args:
        index: an open index (fitted, for everything but ``/api/info``).
        n_sample: chunks drawn on the topic map (default :data:`cluster_rag.plots.MAP_SAMPLE`).
        scope: serve only what this access scope sees (:mod:`cluster_rag.web.scoped`).

    Returns:
        The FastAPI application; run it with uvicorn (see :func:`cluster_rag.web.serve`) or
        test it with ``fastapi.testclient.TestClient``.

    Raises:
        MissingDependencyError: fastapi or plotly is not installed.
    """
    from .. import __version__

    js = plotly_js_path()
    if scope is not None:
        from .scoped import create_scoped_app

        return create_scoped_app(index, scope, plotly_js=js)
    static_dir = Path(str(resources.files("cluster_rag.web") / STATIC))
    cache = views.ProjectionCache(n_sample) if n_sample is not None else views.ProjectionCache()

    app = FastAPI(
        title="cluster-rag explorer",
        version=__version__,
        description="Topics, routed search and the living-index controls of one cluster-rag index.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.index = index
    app.add_exception_handler(ClusterRagError, error_response)  # type: ignore[arg-type]
    # registration order is route-matching order: "/static/plotly.min.js" before the "/static" mount
    page_routes(app, static_dir, js)
    _topic_routes(app)
    _figure_routes(app, cache)
    _search_routes(app)
    _admin_routes(app)
    return app


async def _index(request: Request) -> ClusterIndex:
    """The app's one loaded index (a FastAPI dependency)."""
    found: ClusterIndex = request.app.state.index
    return found


_IDX = Depends(_index)


def _topic_routes(app: FastAPI) -> None:
    """``/api/info`` and the ``/api/topics`` routes: list, detail, rename, pin, unpin."""

    @app.get("/api/info", summary="What the index holds")
    def info(idx: ClusterIndex = _IDX) -> JSONResponse:
        return _json(idx.info())

    @app.get("/api/topics", summary="Topics with sizes, keywords, labels and representative chunks")
    async def topics(
        representatives: int = Query(3, ge=0, le=20, description="representative chunks per topic (texts)"),
        idx: ClusterIndex = _IDX,
    ) -> JSONResponse:
        if representatives == 0:  # in memory only: answered on the event loop, no thread hop
            return _json(views.topics_payload(idx, representatives=0))
        return _json(await run_in_threadpool(views.topics_payload, idx, representatives=representatives))

    @app.get("/api/topics/{topic_id}", summary="One topic with keyword coverage and a page of members")
    def topic(
        topic_id: int,
        offset: int = Query(0, ge=0),
        limit: int = Query(20, ge=1, le=views.MAX_PAGE),
        idx: ClusterIndex = _IDX,
    ) -> JSONResponse:
        return _json(views.topic_detail(idx, topic_id, offset=offset, limit=limit))

    @app.post("/api/topics/{topic_id}/rename", summary="Rename a topic and pin the name")
    def rename(topic_id: int, body: RenameBody, idx: ClusterIndex = _IDX) -> JSONResponse:
        return _json(idx.rename_topic(topic_id, body.name, description=body.description).to_dict())

    @app.post("/api/topics/{topic_id}/pin", summary="Pin the current label (relabeling keeps it)")
    def pin(topic_id: int, idx: ClusterIndex = _IDX) -> JSONResponse:
        current = idx.topic(topic_id)
        if not current.label:
            raise InvalidInputError(f"topic {topic_id} has no label to pin; rename it instead")
        return _json(idx.rename_topic(topic_id, current.label).to_dict())

    @app.post("/api/topics/{topic_id}/unpin", summary="Release a pinned label")
    def unpin(topic_id: int, idx: ClusterIndex = _IDX) -> JSONResponse:
        return _json(idx.unpin_topic(topic_id).to_dict())


def _figure_routes(app: FastAPI, cache: views.ProjectionCache) -> None:
    """``/api/map`` (drawn over ``cache``'s projection) and ``/api/charts/{name}``: plotly figure JSON."""

    @app.get("/api/map", summary="Topic map (plotly figure JSON)")
    def topic_map(
        highlight: str = Query("", description="comma-separated topic ids to outline"),
        idx: ClusterIndex = _IDX,
    ) -> Any:
        try:
            marked = [int(x) for x in highlight.split(",") if x.strip()]
        except ValueError:
            raise InvalidInputError(f"highlight={highlight!r} must be comma-separated topic ids") from None
        return _figure_json(visualize_topics(idx, projection=cache.get(idx), highlight=marked))

    @app.get("/api/charts/{name}", summary="sizes, heatmap or keywords chart (plotly figure JSON)")
    def chart(name: str, idx: ClusterIndex = _IDX) -> Any:
        makers = {"sizes": visualize_sizes, "heatmap": visualize_heatmap, "keywords": visualize_barchart}
        if name not in makers:
            raise UnknownDocumentError(f"no chart named {name!r}; charts: {sorted(makers)}")
        return _figure_json(makers[name](idx))


def _search_routes(app: FastAPI) -> None:
    """``POST /api/search`` (routed search) and ``GET /api/documents/{id}`` (one chunk)."""

    @app.post("/api/search", summary="Routed search: hits and the topics probed")
    def search(body: SearchBody, idx: ClusterIndex = _IDX) -> JSONResponse:
        return _json(views.search_payload(idx, body.query, k=body.k, topics=body.topics))

    @app.get("/api/documents/{doc_id:path}", summary="One chunk by id")
    def document(doc_id: str, idx: ClusterIndex = _IDX) -> JSONResponse:
        return _json(views.document_payload(idx, doc_id))


def _admin_routes(app: FastAPI) -> None:
    """The living-index controls: ``/api/versions``, ``POST /api/rollback``, ``/api/drift``."""

    @app.get("/api/versions", summary="Kept model versions and what the active one's refit changed")
    def versions(idx: ClusterIndex = _IDX) -> JSONResponse:
        return _json(views.versions_payload(idx))

    @app.post("/api/rollback", summary="Make an older version active")
    def rollback(body: RollbackBody | None = None, idx: ClusterIndex = _IDX) -> JSONResponse:
        return _json(idx.rollback(body.version if body is not None else None).to_dict())

    @app.get("/api/drift", summary="Drift of the chunks added since the fit, with a recommendation")
    def drift(idx: ClusterIndex = _IDX) -> JSONResponse:
        return _json(views.drift_payload(idx))
