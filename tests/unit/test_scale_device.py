"""``device="auto"`` of the sentence-transformers embedder: CUDA when torch sees one (fp32
compute, larger batches), the CPU otherwise; an explicit device is used as given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cluster_rag import SentenceTransformerEmbedder
from cluster_rag.embedding import GPU_BATCH_FACTOR, resolve_device


@pytest.mark.parametrize(("cuda", "expected"), [(True, "cuda"), (False, "cpu")])
def test_auto_follows_cuda(monkeypatch: pytest.MonkeyPatch, cuda: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device("auto") == expected
    emb = SentenceTransformerEmbedder(batch_size=32)
    assert emb.resolved_device == expected
    assert emb.effective_batch_size == (32 * GPU_BATCH_FACTOR if cuda else 32)


@pytest.mark.parametrize("device", ["cpu", "cuda:1", None])
def test_an_explicit_device_is_used_as_given(monkeypatch: pytest.MonkeyPatch, device: str | None) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    emb = SentenceTransformerEmbedder(batch_size=32, device=device)
    assert emb.resolved_device == device and emb.effective_batch_size == 32


def test_auto_on_a_cpu_machine_embeds_like_cpu(embedder: SentenceTransformerEmbedder) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the CPU-equality check is for CPU-only machines")
    texts = ["how do I reset my card pin", "the rocket reached orbit"]
    auto = embedder.embed(texts)
    cpu = SentenceTransformerEmbedder(device="cpu", cache_size=0).embed(texts)
    assert embedder.device == "auto" and embedder.resolved_device == "cpu"
    assert np.allclose(auto, cpu, atol=1e-6)
