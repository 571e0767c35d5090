"""Shared pytest fixtures (loaded by the root conftest for core and integration packages).

- ``embedder``: the real bundled all-MiniLM-L6-v2, loaded once per session.
- ``fake_embedder``: deterministic hashing embedder for fast logic tests (unit only).
- ``banking_rows``: the shipped 400-row Banking77 sample.
- ``demo_index``: an embedded index at a temp path with the sample ingested and fitted (k=20).
- ``chroma_server``: a real ``chroma run`` on 127.0.0.1 with a temp path and a free port.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from cluster_rag import ClusterIndex, IndexConfig, SentenceTransformerEmbedder  # noqa: E402
from cluster_rag.testing import ServerStartError, sample_rows, serve  # noqa: E402

SAMPLE = "banking77_sample.jsonl"


class FakeEmbedder:
    """Deterministic bag-of-words hashing embedder: similar words → similar vectors.

    Only for unit tests of logic; integration tests use the real model.
    """

    def __init__(self, dimension: int = 64, name: str = "fake-hash-64") -> None:
        self._dim = dimension
        self._name = name
        self.calls = 0
        self.texts_embedded = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[i, h % self._dim] += 1.0
                out[i, (h // self._dim) % self._dim] += 0.5
            out[i] += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def load_sample_rows() -> list[dict[str, Any]]:
    return sample_rows()


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture(scope="session")
def banking_rows() -> list[dict[str, Any]]:
    return load_sample_rows()


@pytest.fixture(scope="session")
def quiet_config() -> IndexConfig:
    return IndexConfig(progress=False)


@pytest.fixture(scope="session")
def demo_index_path(
    tmp_path_factory: pytest.TempPathFactory,
    embedder: SentenceTransformerEmbedder,
    banking_rows: list[dict[str, Any]],
    quiet_config: IndexConfig,
) -> Path:
    """A folder with the sample ingested and fitted at k=20; copy it before writing to it."""
    path = tmp_path_factory.mktemp("demo-kb")
    index = ClusterIndex.open(path, embedder=embedder, config=quiet_config)
    index.add_texts(
        [r["text"] for r in banking_rows],
        metadatas=[{"label": r["label"]} for r in banking_rows],
        ids=[r["id"] for r in banking_rows],
    )
    index.fit(k=20)
    del index
    return path


@pytest.fixture
def demo_index(
    demo_index_path: Path, tmp_path: Path, embedder: SentenceTransformerEmbedder, quiet_config: IndexConfig
) -> ClusterIndex:
    """A private, writable copy of the fitted sample index."""
    target = tmp_path / "kb"
    shutil.copytree(demo_index_path, target)
    return ClusterIndex.open(target, embedder=embedder, config=quiet_config, create=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chroma_executable() -> list[str]:
    exe = shutil.which("chroma", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if exe is None:
        pytest.fail("the `chroma` CLI (from the chromadb wheel) is not on PATH; reinstall chromadb")
    return [exe]


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``chroma run`` on loopback; yield its URL; stop it at the end of the session."""
    data = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    cmd = [*_chroma_executable(), "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    try:
        with serve(cmd, f"{url}/api/v2/heartbeat", data / "server.log", timeout=60, env=env):
            yield url
    except ServerStartError as exc:
        pytest.fail(f"chroma server: {exc}")
