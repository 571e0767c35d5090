"""Fill the embedding cache on a GPU machine (optional; the CPU path computes the same on a cache miss).

Usage there: CLUSTER_RAG_DATA=<data dir> python bench/gpu_embed.py <model dir> <out dir>
Writes float16 ``<cache key>.npy`` files for every benchmark text set.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import datasets  # noqa: E402
from bench.embed_cache import cache_key  # noqa: E402


def main() -> None:
    from sentence_transformers import SentenceTransformer

    model_dir, out = sys.argv[1], Path(sys.argv[2])
    model = SentenceTransformer(model_dir, device="cuda")
    model.float()  # weights travel as fp16; compute in fp32 like the CPU path
    sci = datasets.scifact("test")
    sets = {
        "scifact-docs": sci.docs,
        "scifact-queries": sci.queries,
        "banking77": datasets.banking77().texts,
        "20ng-messages": datasets.newsgroups_messages().texts,
        "20ng-subjects": datasets.newsgroups_subjects().texts,
    }
    for name, texts in sets.items():
        t = time.time()
        vecs = model.encode(texts, batch_size=256, convert_to_numpy=True, normalize_embeddings=True)
        np.save(out / f"{cache_key(texts)}.npy", vecs.astype(np.float16))
        print(f"{name}: {len(texts)} texts in {time.time() - t:.1f}s -> {cache_key(texts)}.npy", flush=True)


if __name__ == "__main__":
    main()
