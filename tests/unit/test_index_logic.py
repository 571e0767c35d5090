"""ClusterIndex behaviour on a real embedded Chroma with the fast fake embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cluster_rag import (
    ClusterIndex,
    DimensionMismatchError,
    DuplicateIdError,
    EmptyTextError,
    IndexConfig,
    InvalidInputError,
    InvalidKError,
    LengthMismatchError,
    MetadataError,
    ModelMismatchError,
    NotFittedError,
    StoreNotFoundError,
    UnknownTopicError,
)
from tests.fixtures import FakeEmbedder

CFG = IndexConfig(progress=False)
TOPICS = {
    "pets": "dog cat puppy kitten leash bark meow vet",
    "space": "rocket orbit moon mars launch astronaut nasa planet",
    "food": "pasta pizza recipe oven garlic tomato cheese bake",
}


def corpus(n_per: int = 30) -> tuple[list[str], list[dict[str, str]]]:
    rng = np.random.default_rng(0)
    texts, metas = [], []
    for name, words in TOPICS.items():
        vocab = words.split()
        for i in range(n_per):
            texts.append(" ".join(rng.choice(vocab, size=6)) + f" note {name} {i}")
            metas.append({"topic": name, "parity": "even" if i % 2 == 0 else "odd"})
    return texts, metas


@pytest.fixture
def index(tmp_path: Path) -> ClusterIndex:
    return ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)


def test_add_fit_search_roundtrip(index: ClusterIndex) -> None:
    texts, metas = corpus()
    ids = index.add_texts(texts, metas)
    assert len(ids) == len(set(ids)) == 90 and len(index) == 90
    info = index.fit(k=3)
    assert info.version == 1 and info.k == 3 and 1 <= info.n_probe <= 3
    topics = index.topics()
    assert sorted(t.size for t in topics) == [30, 30, 30]
    assert all(t.keywords and t.representative_ids and t.label for t in topics)
    hits = index.search("rocket moon launch", k=5)
    assert len(hits) == 5 and all(h.metadata["topic"] == "space" for h in hits)
    assert all(not k.startswith("cr_") for h in hits for k in h.metadata)
    assert hits[0].score >= hits[-1].score
    assert hits[0].topic_label == topics[hits[0].topic_id].label


def test_where_and_topics_filters(index: ClusterIndex) -> None:
    texts, metas = corpus()
    index.add_texts(texts, metas)
    index.fit(k=3)
    hits = index.search("pizza oven", k=10, where={"parity": "odd"})
    assert len(hits) == 10 and all(h.metadata["parity"] == "odd" for h in hits)
    space = index.search("rocket", k=1)[0].topic_id
    within = index.search("pizza oven", k=5, topics=[space])
    assert within and all(h.topic_id == space for h in within)
    by_name = index.search("pizza oven", k=5, topics=[index.topics()[space].label])
    assert [h.id for h in by_name] == [h.id for h in within]
    with pytest.raises(UnknownTopicError, match="closest names"):
        index.search("x", topics=["no such topic"])
    with pytest.raises(UnknownTopicError, match="0 to 2"):
        index.search("x", topics=[7])


def test_reopen_restores_without_refit(tmp_path: Path) -> None:
    emb = FakeEmbedder()
    a = ClusterIndex.open(tmp_path / "kb", embedder=emb, config=CFG)
    texts, metas = corpus()
    a.add_texts(texts, metas)
    a.fit(k=3)
    before = [h.id for h in a.search("garlic tomato", k=5)]
    b = ClusterIndex.open(tmp_path / "kb", embedder=emb, config=CFG, create=False)
    assert b.model_info == a.model_info
    assert [t.to_dict() for t in b.topics()] == [t.to_dict() for t in a.topics()]
    assert [h.id for h in b.search("garlic tomato", k=5)] == before


def test_same_data_same_model(tmp_path: Path) -> None:
    texts, metas = corpus()
    results = []
    for name in ("a", "b"):
        idx = ClusterIndex.open(tmp_path / name, embedder=FakeEmbedder(), config=CFG)
        idx.add_texts(texts, metas)
        idx.fit(k=3)
        results.append(([t.to_dict() for t in idx.topics()], idx.add_texts(["extra text here"])))
    assert results[0] == results[1]


def test_added_after_fit_is_searchable_at_once(index: ClusterIndex) -> None:
    texts, metas = corpus()
    index.add_texts(texts, metas)
    index.fit(k=3)
    [new_id] = index.add_texts(["rocket orbit astronaut mars brand new"], [{"topic": "space"}])
    hits = index.search("rocket orbit astronaut mars brand new", k=1)
    assert hits[0].id == new_id
    assert sum(t.size for t in index.topics()) == 91


def test_embedding_cache_never_embeds_twice(tmp_path: Path) -> None:
    emb = FakeEmbedder()
    idx = ClusterIndex.open(tmp_path / "kb", embedder=emb, config=CFG)
    idx.add_texts(["same words", "other words"], ids=["a", "b"])
    before = emb.texts_embedded
    idx.add_texts(["same words", "same words", "third"], ids=["c", "d", "e"])
    assert emb.texts_embedded - before == 1  # only "third"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"texts": "a string"}, EmptyTextError, "wrap it in a list"),
        ({"texts": ["ok", ""]}, EmptyTextError, r"texts\[1\]"),
        ({"texts": ["ok", "   \n"]}, EmptyTextError, "whitespace"),
        ({"texts": ["ok", 3]}, EmptyTextError, "int"),
        ({"texts": ["ok", None]}, EmptyTextError, "NoneType"),
        ({"texts": ["a", "b"], "metadatas": [{}]}, LengthMismatchError, "2 texts but 1 metadatas"),
        ({"texts": ["a", "b"], "ids": ["x"]}, LengthMismatchError, "2 texts but 1 ids"),
        ({"texts": ["a", "b"], "ids": ["x", "x"]}, DuplicateIdError, "'x' appears twice"),
        ({"texts": ["a"], "metadatas": [{"k": {"nested": 1}}]}, MetadataError, "cannot be stored"),
        ({"texts": ["a"], "metadatas": [{"k": [1, "a"]}]}, MetadataError, "cannot be stored"),
        ({"texts": ["a"], "metadatas": [{"cr_v1": 1}]}, MetadataError, "reserved"),
        ({"texts": ["a"], "metadatas": [{"k": float("nan")}]}, MetadataError, "NaN"),
        ({"texts": ["a"], "metadatas": ["no"]}, MetadataError, "expected a dict"),
    ],
)
def test_bad_input_writes_nothing(index: ClusterIndex, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        index.add_texts(**kwargs)
    assert len(index) == 0


def test_duplicate_against_store(index: ClusterIndex) -> None:
    index.add_texts(["first"], ids=["x"])
    with pytest.raises(DuplicateIdError, match="already stored"):
        index.add_texts(["second", "third"], ids=["y", "x"])
    assert len(index) == 1  # "y" was not written either


def test_failing_write_rolls_back(index: ClusterIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    index.add_texts(["keep me"], ids=["keep"])
    index.store.batch_size = 2
    calls = {"n": 0}
    real_add = index.store.chunks.add

    def flaky_add(**kw):  # fails on the second batch, after the first was written
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real_add(**kw)

    monkeypatch.setattr(index.store.chunks, "add", flaky_add)
    with pytest.raises(RuntimeError, match="disk full"):
        index.add_texts([f"t{i}" for i in range(5)])
    assert len(index) == 1 and index.store.existing_ids(["keep"]) == {"keep"}


def test_embeddings_dimension_checked(index: ClusterIndex) -> None:
    with pytest.raises(DimensionMismatchError, match=r"\(2, 64\)"):
        index.add_embeddings(["a", "b"], np.ones((2, 10)))
    index.add_embeddings(["a", "b"], np.ones((2, 64)))
    assert len(index) == 2


def test_k_out_of_range_and_not_fitted(index: ClusterIndex) -> None:
    with pytest.raises(NotFittedError, match="fit"):
        index.topics()
    with pytest.raises(NotFittedError, match="fit"):
        index.search("anything")
    with pytest.raises(NotFittedError, match="0 chunk"):
        index.fit()
    index.add_texts(["a b", "c d", "e f"])
    with pytest.raises(InvalidKError, match="k=4 but only 3 chunks"):
        index.fit(k=4)
    with pytest.raises(InvalidKError, match="k=1"):
        index.fit(k=1)
    assert index.fit().k == 2  # default round(sqrt(3)) clamped to >= 2


def test_search_argument_checks(index: ClusterIndex) -> None:
    index.add_texts(corpus()[0])
    index.fit(k=3)
    for bad in ("", "   "):
        with pytest.raises(InvalidInputError, match="non-blank"):
            index.search(bad)
    with pytest.raises(InvalidInputError, match="k=0"):
        index.search("x", k=0)
    with pytest.raises(InvalidInputError, match="n_probe"):
        index.search("x", n_probe=0)
    with pytest.raises(DimensionMismatchError):
        index.search_by_vector(np.ones(3))


def test_model_mismatch_on_open(tmp_path: Path) -> None:
    ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG).add_texts(["x"])
    with pytest.raises(ModelMismatchError, match="fake-hash-64"):
        ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(name="other-model"), config=CFG)
    same_name_other_width = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(dimension=32), config=CFG)
    with pytest.raises(ModelMismatchError, match="64-d vectors but embedder"):
        same_name_other_width.add_texts(["y"])  # checked on first use, before anything is written
    assert len(same_name_other_width) == 1


def test_missing_path_and_collection(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="no index at"):
        ClusterIndex.open(tmp_path / "nope", embedder=FakeEmbedder(), config=CFG, create=False)
    ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG).add_texts(["x"])
    with pytest.raises(StoreNotFoundError, match="'other' does not exist"):
        ClusterIndex.open(tmp_path / "kb", collection="other", embedder=FakeEmbedder(), config=CFG, create=False)


def test_versions_prune_and_rollback(tmp_path: Path) -> None:
    idx = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG.with_(keep_versions=2))
    idx.add_texts(corpus()[0])
    assert [idx.fit(k=k).version for k in (2, 3, 4)] == [1, 2, 3]
    assert [v.version for v in idx.versions()] == [2, 3]  # v1 pruned
    assert all("cr_v1" not in m for m in idx.store.load_all()[2])
    back = idx.rollback()
    assert back.version == 2 and back.k == 3 and idx.model_info.k == 3
    reopened = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)
    assert reopened.model_info.version == 2
    assert len(reopened.search("rocket", k=3)) == 3
