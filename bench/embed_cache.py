"""On-disk embedding cache for the benchmarks, keyed by model name + the exact texts.

``cached_embeddings(texts)`` returns ``(n, 384)`` float32 L2-normalized vectors of
the default model; the first call embeds on the CPU (minutes for the larger sets)
and saves ``bench/.cache/<sha256 of model + texts>.npy``; later calls load it.
Files may hold float16 (halves their size); they are upcast on load.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def cache_key(texts: Sequence[str], model: str = MODEL) -> str:
    h = hashlib.sha256(model.encode())
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8")).digest())
    return h.hexdigest()[:32]


def cached_embeddings(texts: Sequence[str], *, model: str = MODEL, progress: bool = True) -> np.ndarray:
    path = CACHE_DIR / f"{cache_key(texts, model)}.npy"
    if path.exists():
        vecs = np.load(path).astype(np.float32)
        if vecs.shape[0] == len(texts):
            return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    from cluster_rag import SentenceTransformerEmbedder

    print(f"embedding {len(texts)} texts on the CPU (cached afterwards in {CACHE_DIR})", file=sys.stderr)
    vecs = SentenceTransformerEmbedder(model, cache_size=0).embed(list(texts), progress=progress)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs.astype(np.float32))
    return vecs
