"""Search modes through a real embedded index: topics, where, scope, updates, persistence, re-rank."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.errors import InvalidInputError
from cluster_rag.hybrid import fetch_depth
from cluster_rag.keyword_index import KeywordIndex
from cluster_rag.types import Hit
from tests.fixtures import FakeEmbedder

pytestmark = pytest.mark.integration

WORDS = {
    "pets": "dog cat puppy kitten leash bark meow vet",
    "space": "rocket orbit moon mars launch astronaut nasa planet",
    "food": "pasta pizza recipe oven garlic tomato cheese bake",
    "music": "guitar piano drums melody chord concert band song",
}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> ClusterIndex:
    rng = np.random.default_rng(0)
    texts, metas = [], []
    for name, words in WORDS.items():
        vocab = words.split()
        for i in range(20):
            texts.append(" ".join(rng.choice(vocab, size=6)) + f" note {name} {i}")
            metas.append({"lang": "fr" if i % 2 else "en", "group": name})
    idx = ClusterIndex.open(
        tmp_path_factory.mktemp("hybrid") / "kb", embedder=FakeEmbedder(), config=IndexConfig(progress=False)
    )
    idx.add_texts(texts, metadatas=metas)
    idx.fit(k=4)
    return idx


def _topic_of(index: ClusterIndex, group: str) -> int:
    hit = index.search(f"note {group} 0", k=1, where={"group": group})[0]
    return hit.topic_id


@pytest.mark.parametrize("mode", ["keyword", "hybrid", "dense"])
def test_modes_return_hits_with_their_topic_and_cosine_score(index: ClusterIndex, mode: str) -> None:
    hits = index.search("rocket launch orbit", k=5, mode=mode)
    assert len(hits) == 5
    assert all(h.metadata["group"] == "space" for h in hits)
    q = index.embed_query("rocket launch orbit")
    stored = {h.id: h for h in index.get([h.id for h in hits])}
    for h in hits:
        assert h.topic_id == stored[h.id].topic_id  # BM25 hits carry their topic
        vec = np.asarray(index.store.get([h.id], include=["embeddings"])["embeddings"][0], dtype=np.float32)
        assert h.score == pytest.approx(float(vec @ q), abs=1e-5)


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_topics_and_where_are_respected(index: ClusterIndex, mode: str) -> None:
    food = _topic_of(index, "food")
    # a query about space, restricted to the food topic: nothing from space comes back
    hits = index.search("rocket pizza", k=10, mode=mode, topics=[food])
    assert hits and all(h.topic_id == food for h in hits)
    hits = index.search("rocket launch", k=10, mode=mode, where={"lang": "fr"})
    assert hits and all(h.metadata["lang"] == "fr" for h in hits)


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_a_caller_scope_is_respected(index: ClusterIndex, mode: str) -> None:
    Scope = pytest.importorskip("cluster_rag.scope", reason="the access-control work is not merged").Scope
    food = _topic_of(index, "food")
    hits = index.search("rocket launch", k=10, mode=mode, scope=Scope(where={"lang": "en"}))
    assert hits and all(h.metadata["lang"] == "en" for h in hits)
    hits = index.search("rocket pizza", k=10, mode=mode, scope=Scope(topics=[food]))
    assert hits and all(h.topic_id == food for h in hits)


def test_keyword_index_follows_adds_and_deletes_and_is_saved(tmp_path: Path) -> None:
    idx = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=IndexConfig(progress=False))
    idx.add_texts([f"{w} note {i}" for i, w in enumerate(WORDS["pets"].split() * 3)])
    idx.fit(k=2)
    assert idx.search("zeppelin", k=3, mode="keyword") == []
    assert KeywordIndex.saved_fingerprint(idx.store.meta) is not None  # built once, saved in the store
    [new_id] = idx.add_texts(["zeppelin airship over the dog park"])
    assert [h.id for h in idx.search("zeppelin", k=3, mode="keyword")] == [new_id]
    idx.delete([new_id])
    assert idx.search("zeppelin", k=3, mode="keyword") == []
    # another process opening the same store reads the saved copy and catches up on the delta
    other = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=IndexConfig(progress=False))
    [late] = idx.add_texts(["a zeppelin again"])
    other.refresh()
    assert [h.id for h in other.search("zeppelin", k=3, mode="keyword")] == [late]


def test_a_saved_keyword_copy_follows_other_processes_edits(tmp_path: Path) -> None:
    """A chunk edited in place, or deleted and written again under its id, by one index is found by
    its new words in another index that loads the keyword copy saved before the change (the copy keeps
    ids and tokens, so only the writer's note tells it these texts changed)."""
    cfg = IndexConfig(progress=False)
    writer = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=cfg)
    ids = writer.add_texts([f"{w} note {i}" for i, w in enumerate(WORDS["pets"].split() * 3)])
    writer.fit(k=2)
    assert writer.search("zeppelin", k=3, mode="keyword") == []  # builds and saves the copy
    saved = KeywordIndex.saved_fingerprint(writer.store.meta)
    emb = FakeEmbedder()
    edited = "zeppelin airship over the dog park"
    writer.update_embeddings([ids[0]], [edited], emb.embed([edited]))
    writer.delete([ids[1]])
    again = "a zeppelin moored by the vet"
    writer.add_embeddings([again], emb.embed([again]), ids=[ids[1]])
    assert KeywordIndex.saved_fingerprint(writer.store.meta) == saved  # not re-saved: the copy is stale
    reader = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=cfg)
    assert {h.id for h in reader.search("zeppelin", k=3, mode="keyword")} == {ids[0], ids[1]}
    noted = {h.id for h in reader.search("note", k=50, mode="keyword")}  # every old text had "note"
    assert ids[2] in noted and ids[0] not in noted and ids[1] not in noted


class _Reverse:
    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def __call__(self, query: str, hits: list[Hit]) -> list[Hit]:
        self.seen.append([h.id for h in hits])
        return list(reversed(hits))


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_rerank_sees_the_deeper_list_and_decides_the_order(index: ClusterIndex, mode: str) -> None:
    rr = _Reverse()
    plain = index.search("guitar song", k=40, mode=mode)
    hits = index.search("guitar song", k=3, mode=mode, rerank=rr)
    assert len(rr.seen) == 1 and len(rr.seen[0]) == fetch_depth(3, rr) == 20
    assert rr.seen[0] == [h.id for h in plain[:20]]
    assert [h.id for h in hits] == rr.seen[0][::-1][:3]
    index.search("guitar song", k=3, mode=mode, rerank=rr, fetch_k=7)
    assert len(rr.seen[1]) == 7


@pytest.mark.parametrize("bad", [{"mode": "sparse"}, {"rerank": "mmr"}, {"rerank": _Reverse(), "fetch_k": 0}])
def test_bad_arguments(index: ClusterIndex, bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        index.search("guitar", k=3, **bad)


def test_compare_modes_scores_every_mode_and_reranker(index: ClusterIndex) -> None:
    from cluster_rag.hybrid import compare_modes

    docs = {g: [h.id for h in index.search(f"note {g}", k=20, where={"group": g})] for g in WORDS}
    queries = {"q1": "rocket launch orbit", "q2": "pasta pizza", "q3": "nothing relevant here"}
    qrels = {"q1": dict.fromkeys(docs["space"], 1), "q2": dict.fromkeys(docs["food"], 1)}
    rows = compare_modes(index, queries, qrels, rerankers={"reverse": _Reverse()})
    assert [r.name for r in rows] == ["dense", "keyword", "hybrid", "hybrid + reverse"]
    assert all(r.n_queries == 2 and 0.0 <= r.ndcg_at_10 <= 1.0 for r in rows)
    by = {r.name: r for r in rows}
    assert by["keyword"].ndcg_at_10 == pytest.approx(1.0)  # every hit shares a query word with its topic
    assert by["hybrid + reverse"].ndcg_at_10 < by["hybrid"].ndcg_at_10
    with pytest.raises(InvalidInputError):
        compare_modes(index, {"q3": "x"}, qrels)
