"""Helpers for tests and benchmarks of cluster-rag and of code built on it.

``serve`` starts a server subprocess (``chroma run``, ``llama_cpp.server``, a
scripted OpenAI-compatible server) on 127.0.0.1, waits for its health URL and
stops it; shared by the project's test fixtures and benches.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["ServerStartError", "serve"]


class ServerStartError(RuntimeError):
    """The server exited or did not answer its health URL in time (the message holds its log tail)."""


@contextmanager
def serve(
    cmd: Sequence[str],
    health_url: str,
    log_path: Path,
    *,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd``, wait until ``health_url`` answers 200, yield the process, terminate it on exit.

    Raises:
        ServerStartError: the process exited early or ``timeout`` seconds passed.
    """
    name = Path(cmd[0]).name if len(cmd) < 3 else " ".join(cmd[:3])
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(cmd), stdout=log, stderr=subprocess.STDOUT, env=dict(env) if env else None
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise ServerStartError(f"{name} exited with {proc.returncode}:\n{tail}")
                try:
                    with urllib.request.urlopen(health_url, timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerStartError(f"{name} did not answer {health_url} within {timeout:.0f} s")
                time.sleep(0.2)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
