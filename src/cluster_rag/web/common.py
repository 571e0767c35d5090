"""What the full and the scoped explorer apps share: error answers and the page routes."""

from __future__ import annotations

from pathlib import Path

from ..errors import (
    ClusterRagError,
    InvalidInputError,
    NotFittedError,
    UnknownDocumentError,
    UnknownTopicError,
    VersionError,
    missing_dependency,
)

try:  # imported only by the app modules, so the import error names the extra
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
except ImportError:
    raise missing_dependency("fastapi", '"cluster-rag[web]"') from None

__all__ = ["MAX_ERROR_CHARS", "error_response", "page_routes", "status_of"]

#: Characters of an error message sent back (a huge bad argument is not echoed whole).
MAX_ERROR_CHARS = 600


def status_of(exc: ClusterRagError) -> int:
    """HTTP status of a library error: unknown topic, chunk or version 404, not fitted 409, bad input 422."""
    if isinstance(exc, (UnknownTopicError, UnknownDocumentError, VersionError)):
        return 404
    if isinstance(exc, NotFittedError):
        return 409
    if isinstance(exc, InvalidInputError):
        return 422
    return 400


async def error_response(request: Request, exc: ClusterRagError) -> JSONResponse:
    """Answer a :class:`ClusterRagError` as ``{"detail", "error"}`` with the status of :func:`status_of`."""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    body = {"detail": str(message)[:MAX_ERROR_CHARS], "error": type(exc).__name__}
    return JSONResponse(body, status_code=status_of(exc))


def page_routes(app: FastAPI, static_dir: Path, js: Path) -> None:
    """``GET /``, the packaged plotly.js and the ``/static`` files (HTML and assets, not in OpenAPI)."""

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((static_dir / "index.html").read_text(encoding="utf-8"))

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(js, media_type="text/javascript")

    app.mount("/static", StaticFiles(directory=static_dir), name="static")
