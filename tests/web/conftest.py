"""Fixtures of the explorer tests: a shared read-only index, a real uvicorn on loopback, Chromium."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cluster_rag import ClusterIndex, IndexConfig, SentenceTransformerEmbedder

pytest.importorskip("fastapi", reason="the explorer needs the web extra: pip install -e '.[web]'")
pytest.importorskip("plotly", reason="the explorer needs the web extra: pip install -e '.[web]'")

ARTIFACTS = Path(__file__).parent / "artifacts"
#: Debian's Chromium; Playwright's own browser download is not reachable here.
CHROMIUM_NAMES = ("chromium", "chromium-browser")


@pytest.fixture(scope="module")
def shared_index(
    demo_index_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    embedder: SentenceTransformerEmbedder,
    quiet_config: IndexConfig,
) -> ClusterIndex:
    """A copy of the fitted sample index for tests that only read (one per module)."""
    target = tmp_path_factory.mktemp("web-kb") / "kb"
    shutil.copytree(demo_index_path, target)
    return ClusterIndex.open(target, embedder=embedder, config=quiet_config, create=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(app: Any, *, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn on 127.0.0.1 (in a thread); yield its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="explorer-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"uvicorn did not start on 127.0.0.1:{port} within {timeout:.0f} s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_server() -> Callable[[Any], Any]:
    """``with live_server(app) as url:`` runs a real uvicorn on loopback."""
    return running


def chromium_path() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium browser driven by Playwright (skips when chromium is absent)."""
    exe = chromium_path()
    if exe is None:
        pytest.skip("Debian's chromium is not installed (apt-get update && apt-get install -y chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test-web]'")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()
