"""Real sentence-transformers model + real embedded Chroma on the shipped Banking77 sample."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cluster_rag import ClusterIndex

pytestmark = pytest.mark.integration


def test_bundled_model_loads_offline(embedder) -> None:  # noqa: ANN001
    vecs = embedder.embed(["hello world", "hello world", "card arrival"])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(vecs[0], vecs[1])
    assert embedder.name == "sentence-transformers/all-MiniLM-L6-v2"


def test_topics_follow_true_intents(demo_index: ClusterIndex, banking_rows) -> None:  # noqa: ANN001
    label_of = {r["id"]: r["label"] for r in banking_rows}
    topics = demo_index.topics()
    assert len(topics) == 20 and sum(t.size for t in topics) == 400
    # purity of clusters w.r.t. the 20 true intents
    majority = 0
    for t in topics:
        model = demo_index.model
        ids, _ = model.members(model.position_of[t.id])
        majority += Counter(label_of[i] for i in ids).most_common(1)[0][1]
    assert majority / 400 > 0.7
    passcode = [t for t in topics if "passcode" in t.keywords[:3]]
    assert passcode, [t.keywords[:3] for t in topics]


def test_routed_search_matches_exact_on_sample(demo_index: ClusterIndex, banking_rows) -> None:  # noqa: ANN001
    queries = [r["text"] for r in banking_rows[::20]]
    recall = []
    for q in queries:
        routed = {h.id for h in demo_index.search(q, k=10)}
        exact = {h.id for h in demo_index.search(q, k=10, n_probe=demo_index.model_info.k)}
        recall.append(len(routed & exact) / 10)
    assert np.mean(recall) >= 0.9


def test_search_within_topic_and_where(demo_index: ClusterIndex) -> None:
    top = demo_index.search("I lost my card, somebody stole it", k=1)[0]
    assert top.metadata["label"] == "lost_or_stolen_card"
    within = demo_index.search("fees", k=5, topics=[top.topic_id])
    assert within and all(h.topic_id == top.topic_id for h in within)
    filtered = demo_index.search("fees", k=5, where={"label": "exchange_rate"})
    assert filtered and all(h.metadata["label"] == "exchange_rate" for h in filtered)


def test_ingest_files_and_readd(tmp_path, embedder, quiet_config) -> None:  # noqa: ANN001
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Cards\n\nYour card arrives in 5 days.\n\nPINs can be changed at ATMs.")
    (docs / "b.txt").write_text("Exchange rates update every minute on weekdays.")
    index = ClusterIndex.open(tmp_path / "kb", embedder=embedder, config=quiet_config)
    ids = index.ingest_files([docs])
    assert len(ids) == 2 and all(i.startswith(docs.as_posix()) for i in ids)
    assert index.ingest_files([docs]) == []  # re-ingest adds nothing
    (docs / "c.txt").write_text("New file about refunds.")
    assert len(index.ingest_files([docs])) == 1
    index.fit(k=2)
    hit = index.search("when does my card arrive", k=1)[0]
    assert hit.metadata["source"].endswith("a.md")
