"""Helpers for tests and benchmarks of cluster-rag and of code built on it.

``serve`` starts a server subprocess (``chroma run``, ``llama_cpp.server``, a
scripted OpenAI-compatible server) on 127.0.0.1, waits for its health URL and
stops it; shared by the project's test fixtures and benches.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["LLAMA_SERVER", "ServerStartError", "sample_rows", "serve"]


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


_LAUNCH = """
import runpy, sys
import llama_cpp.llama_cpp as C
_defaults = C.llama_model_default_params
def _params():
    p = _defaults()
    p.use_extra_bufts = False
    return p
C.llama_model_default_params = _params
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""
#: The command that starts ``python -m llama_cpp.server`` (append its arguments) with llama.cpp's
#: extra weight buffers (AMX tiles, repacked weights) off: on CPUs that report AMX but whose VM does
#: not let a process use it, the AMX matmul of Q4_1 weights (SmolLM2) dies on its first ``ldtilecfg``
#: (SIGSEGV, "general protection fault in libggml-cpu.so"). llama-cpp-python 0.3.36 has no flag
#: for ``use_extra_bufts``, so its default model params are patched before the server starts.
LLAMA_SERVER = [sys.executable, "-c", _LAUNCH]


def sample_rows() -> list[dict[str, Any]]:
    """The shipped 400-row Banking77 sample (``cluster_rag/data``; CC BY 4.0): ``{"id", "text", "label"}``."""
    import json
    from importlib import resources

    path = resources.files("cluster_rag") / "data" / "banking77_sample.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
