"""The topic explorer: an HTTP API with a web page, and a static HTML report.

Install with ``pip install "cluster-rag[web]"`` (fastapi, uvicorn, plotly). Importing this
package imports none of them; each function does when called.

- :func:`serve`: run the explorer on http://127.0.0.1:8765 (blocking).
- :func:`create_app`: the FastAPI app, for tests or to mount in another ASGI app.
- :func:`write_report`: one self-contained HTML file (and optionally PNGs).
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInputError, missing_dependency

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..index import ClusterIndex
    from ..scope import Scope

__all__ = ["create_app", "serve", "write_report"]


def create_app(index: ClusterIndex, *, scope: Scope | None = None) -> FastAPI:
    """The explorer's FastAPI app over ``index`` (see :mod:`cluster_rag.web.app`); with a
    ``scope``, only what that scope sees (:mod:`cluster_rag.web.scoped`)."""
    from .app import create_app as _create

    return _create(index, scope=scope)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    index: ClusterIndex,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    quiet: bool = False,
    scope: Scope | None = None,
) -> None:
    """Serve the explorer until interrupted (uvicorn); the index and model stay loaded.

    The embedding model is loaded before the port opens, so the first search is as fast as
    the others. The API has no authentication: bind to a non-loopback ``host`` only on a
    network you trust (a warning says so).

    Args:
        index: an open, fitted index.
        host: interface to bind (default loopback only).
        port: TCP port (1-65535).
        quiet: no start-up line and only uvicorn warnings.
        scope: serve only what this access scope sees (no operator views).

    Raises:
        MissingDependencyError: fastapi, uvicorn or plotly is not installed.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidInputError(f"port={port!r} must be an int from 1 to 65535")
    try:
        import uvicorn
    except ImportError:
        raise missing_dependency("uvicorn", '"cluster-rag[web]"') from None
    app = create_app(index, scope=scope)
    index.model_info  # noqa: B018  (loads the active model now, not on the first request)
    index.embed_query("warm up")  # loads the embedding model
    if not quiet:
        if not _is_loopback(host):
            print(
                f"warning: binding {host}: the explorer has no authentication; anyone who can reach "
                "this port can read and rename topics",
                file=sys.stderr,
            )
        shown = f"[{host}]" if ":" in host else host
        print(f"cluster-rag explorer on http://{shown}:{port}  (Ctrl+C to stop)", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning" if quiet else "info")


def write_report(index: ClusterIndex, *, html: Path | None = None, png_dir: Path | None = None) -> list[Path]:
    """Write the static report: one self-contained HTML file and/or the charts as PNGs.

    Args:
        index: a fitted index.
        html: the HTML file to write (plotly.js inlined; opens offline).
        png_dir: folder for ``topic_map.png``, ``keywords.png``, ``sizes.png``, ``heatmap.png``.

    Returns:
        Every path written, the HTML first.

    Raises:
        InvalidInputError: neither ``html`` nor ``png_dir`` given.
    """
    from .report import write_report as _write

    return _write(index, html=html, png_dir=png_dir)
