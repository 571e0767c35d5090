"""KeywordIndex: tokenization, BM25 search, delta updates, rebuilds and persistence in Chroma."""

from __future__ import annotations

import chromadb
import numpy as np
import pytest

from cluster_rag.errors import DuplicateIdError, InvalidInputError, LengthMismatchError
from cluster_rag.keyword_index import KeywordIndex, ids_fingerprint, tokenize

DOCS = {
    "d1": "BRCA1 mutations raise the risk of breast cancer.",
    "d2": "Cats and dogs: caring for your pets at home.",
    "d3": "Aspirin lowers the risk of heart attacks in older adults.",
    "d4": "The dog chased the cat around the garden.",
    "d5": "Vitamin D supplements and bone density in women.",
    "d6": "Heart disease and cancer are leading causes of death.",
}


def _index(**kwargs: object) -> KeywordIndex:
    return KeywordIndex(**kwargs).build(list(DOCS), list(DOCS.values()))  # type: ignore[arg-type]


def test_tokenize_case_punctuation_stopwords_stemming() -> None:
    assert tokenize(["The CATS' whiskers, and the cat!"]) == [["cat", "whisker", "cat"]]
    assert tokenize(["of the and a"]) == [[]]
    assert tokenize([]) == []


def test_search_ranks_rare_terms_and_respects_k_and_allowed_ids() -> None:
    kw = _index()
    got = kw.search("brca1 breast cancer", k=3)
    assert got.ids[0] == "d1"
    assert "d6" in got.ids  # shares "cancer"
    assert np.all(got.scores > 0) and np.all(np.diff(got.scores) <= 0)
    assert len(kw.search("cancer heart dog cat", k=2)) == 2
    only = kw.search("brca1 breast cancer", k=5, allowed_ids={"d6", "d2"})
    assert only.ids == ["d6"]
    assert kw.search("the of and", k=5).ids == []  # stop words only
    assert kw.search("zebra", k=5).ids == []  # unknown term
    with pytest.raises(InvalidInputError):
        kw.search("cat", k=0)


def test_added_rows_are_searchable_before_a_rebuild_and_score_like_their_twin() -> None:
    kw = _index()
    kw.add(["d7"], [DOCS["d3"]])  # the same text as d3
    assert kw.pending == 1
    got = kw.search("aspirin heart", k=10)
    assert kw.pending == 1  # below the rebuild threshold: served from the delta
    scores = dict(zip(got.ids, got.scores, strict=True))
    assert scores["d7"] == pytest.approx(scores["d3"], rel=1e-5)


def test_delta_ranking_matches_a_fresh_build_after_rebuild() -> None:
    kw = _index()
    kw.add(["d7", "d8"], ["Breast cancer screening with mammograms.", "A cat sleeps."])
    kw.remove(["d4"])
    kw.rebuild()
    fresh = KeywordIndex().build(
        [*[i for i in DOCS if i != "d4"], "d7", "d8"],
        [
            *[t for i, t in DOCS.items() if i != "d4"],
            "Breast cancer screening with mammograms.",
            "A cat sleeps.",
        ],
    )
    for query in ("breast cancer", "cat dog", "heart risk"):
        a, b = kw.search(query, k=10), fresh.search(query, k=10)
        assert a.ids == b.ids
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)


def test_removed_rows_never_come_back() -> None:
    kw = _index()
    kw.add(["d7"], ["brca1 brca1 brca1"])
    assert kw.remove(["d1", "d7", "unknown"]) == 2
    assert kw.remove(["d1"]) == 0
    assert "d1" not in kw and len(kw) == len(DOCS) - 1
    assert not {"d1", "d7"} & set(kw.search("brca1 breast", k=10).ids)
    kw.rebuild()
    assert not {"d1", "d7"} & set(kw.search("brca1 breast", k=10).ids)
    kw.add(["d1"], ["brca1 again"])  # an id can come back after removal
    assert kw.search("brca1", k=1).ids == ["d1"]


def test_search_rebuilds_once_the_delta_passes_the_threshold() -> None:
    kw = _index(rebuild_min=1, rebuild_fraction=0.0)
    kw.add(["d7"], ["one more cat"])
    assert kw.pending == 1  # at the threshold, not past it
    kw.add(["d8"], ["and another cat"])
    kw.search("cat", k=3)
    assert kw.pending == 0


def test_input_errors() -> None:
    kw = _index()
    with pytest.raises(DuplicateIdError):
        kw.add(["d1"], ["again"])
    with pytest.raises(DuplicateIdError):
        KeywordIndex().build(["a", "a"], ["x", "y"])
    with pytest.raises(LengthMismatchError):
        kw.add(["x", "y"], ["only one"])
    with pytest.raises(InvalidInputError):
        KeywordIndex(rebuild_fraction=2.0)


def test_save_and_load_through_a_chroma_collection() -> None:
    client = chromadb.EphemeralClient()
    meta = client.get_or_create_collection("kwtest__meta", embedding_function=None)
    assert KeywordIndex.load(meta) is None
    kw = _index()
    kw.add(["d7"], ["brca2 and brca1 carriers"])
    kw.save(meta)
    assert KeywordIndex.saved_fingerprint(meta) == kw.fingerprint() == ids_fingerprint(kw.ids)
    loaded = KeywordIndex.load(meta)
    assert loaded is not None and sorted(loaded.ids) == sorted(kw.ids)
    for query in ("brca1", "heart cancer", "cat"):
        kw.rebuild()
        a, b = kw.search(query, k=10), loaded.search(query, k=10)
        assert a.ids == b.ids
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    # a second save replaces the first and leaves no stale parts behind
    kw.remove(["d7"])
    kw.save(meta)
    again = KeywordIndex.load(meta)
    assert again is not None and "d7" not in again
    assert sorted(meta.get(include=[])["ids"]) == ["kw:keyword", "kw:keyword:1:0"]


def test_from_collection_reads_the_stored_texts() -> None:
    client = chromadb.EphemeralClient()
    chunks = client.get_or_create_collection("kwtest_chunks", embedding_function=None)
    chunks.add(ids=list(DOCS), documents=list(DOCS.values()), embeddings=np.eye(len(DOCS)).tolist())
    kw = KeywordIndex.from_collection(chunks, page=4)
    assert sorted(kw.ids) == sorted(DOCS)
    assert kw.search("vitamin bone", k=1).ids == ["d5"]
