"""Property-based fuzzing of every public ClusterIndex method (hypothesis, fixed budget).

For any generated arguments a call either succeeds or raises a ClusterRagError subclass —
never a foreign or raw Python error — and a call that raises leaves the store unchanged
(chunk count + content hash of every record + active version). Budget: ``EXAMPLES`` examples
per method (``FUZZ_EXAMPLES`` overrides), derandomized so every run tries the same cases.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.errors import ClusterRagError
from tests.fixtures import FakeEmbedder

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
CFG = IndexConfig(progress=False)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# text that includes lone surrogates, control characters and very long strings
odd_text = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=30),
    st.sampled_from(["", " ", "\ud800", "a\udfffb", "dog cat", "x" * 5000, "\x00", "pets", "0", "1" * 100]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
    st.binary(max_size=8),
)
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(odd_text, st.integers()), inner, max_size=3)
    ),
    max_leaves=8,
)
where_keys = st.sampled_from(
    ["topic", "$and", "$or", "$in", "$nin", "$gt", "$eq", "$bogus", "", "chroma:x", "n"]
)
where_like = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(where_keys, inner, max_size=2)),
    max_leaves=6,
)
ids_like = st.one_of(anything, st.lists(st.one_of(odd_text, st.integers(), st.none()), max_size=4))
topics_like = st.one_of(anything, st.lists(st.one_of(st.integers(), odd_text), max_size=3))


def fingerprint(index: ClusterIndex) -> tuple[int, str, Any]:
    got = index.store.chunks.get(include=["documents", "metadatas"])
    metas = [json.dumps(m, sort_keys=True) for m in got["metadatas"]]
    rows = sorted(zip(got["ids"], got["documents"], metas, strict=True))
    return len(rows), hashlib.sha256(json.dumps(rows).encode()).hexdigest(), index.store.active_version()


def check(index: ClusterIndex, call: Any) -> None:
    before = fingerprint(index)
    try:
        call()
    except ClusterRagError as exc:
        str(exc).encode("utf-8")  # our messages are printable
        assert fingerprint(index) == before, f"{type(exc).__name__} but the store changed: {exc}"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> ClusterIndex:
    path: Path = tmp_path_factory.mktemp("fuzz")
    idx = ClusterIndex.open(path, embedder=FakeEmbedder(), config=CFG)
    rng = np.random.default_rng(0)
    words = "dog cat rocket moon pasta pizza guitar drum".split()
    idx.add_texts(
        [" ".join(rng.choice(words, 5)) + f" {i}" for i in range(60)], ids=[f"c{i}" for i in range(60)]
    )
    idx.fit(k=3)
    return idx


@FUZZ
@given(texts=st.one_of(anything, st.lists(odd_text, max_size=3)), metadatas=anything, ids=ids_like)
def test_add_texts(index: ClusterIndex, texts: Any, metadatas: Any, ids: Any) -> None:
    check(index, lambda: index.add_texts(texts, metadatas, ids))


@FUZZ
@given(
    texts=st.lists(odd_text, min_size=1, max_size=2),
    embeddings=st.one_of(anything, st.lists(st.lists(st.floats(), min_size=64, max_size=64), max_size=2)),
    metadatas=st.one_of(st.none(), st.lists(st.dictionaries(odd_text, anything, max_size=2), max_size=2)),
)
def test_add_embeddings(index: ClusterIndex, texts: Any, embeddings: Any, metadatas: Any) -> None:
    check(index, lambda: index.add_embeddings(texts, embeddings, metadatas))


@FUZZ
@given(query=anything, k=anything, n_probe=anything, topics=topics_like, where=where_like)
def test_search(index: ClusterIndex, query: Any, k: Any, n_probe: Any, topics: Any, where: Any) -> None:
    check(index, lambda: index.search(query, k, n_probe=n_probe, topics=topics, where=where))


@FUZZ
@given(vector=anything, k=anything, topics=topics_like, where=where_like)
def test_search_by_vector(index: ClusterIndex, vector: Any, k: Any, topics: Any, where: Any) -> None:
    check(index, lambda: index.search_by_vector(vector, k, topics=topics, where=where))


@FUZZ
@given(ids=ids_like)
def test_get_and_delete(index: ClusterIndex, ids: Any) -> None:
    check(index, lambda: index.get(ids))
    if not (isinstance(ids, list) and any(isinstance(i, str) and i.startswith("c") for i in ids)):
        check(index, lambda: index.delete(ids))  # never deletes the seed chunks


@FUZZ
@given(topic=anything, name=anything, description=anything)
def test_topics_and_names(index: ClusterIndex, topic: Any, name: Any, description: Any) -> None:
    check(index, lambda: index.topic(topic))
    check(index, lambda: index.rename_topic(topic, name, description=description))
    check(index, lambda: index.unpin_topic(topic))


@settings(FUZZ, max_examples=max(5, EXAMPLES // 4))
@given(k=anything, n_init=anything, reduce_dim=anything, version=anything)
def test_fit_rollback_and_reports(
    index: ClusterIndex, k: Any, n_init: Any, reduce_dim: Any, version: Any
) -> None:
    check(index, lambda: index.fit(k, n_init=n_init, reduce_dim=reduce_dim))
    check(index, lambda: index.rollback(version))
    check(index, lambda: index.refit_report(version))
    check(index, lambda: index.drift(version))
