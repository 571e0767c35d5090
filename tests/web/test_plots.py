"""Plot API (plotly figures, PNGs) and the static report, on the real fitted sample index."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cluster_rag import ClusterIndex
from cluster_rag.errors import InvalidInputError
from cluster_rag.plots import (
    PNG_NAMES,
    centroid_similarity,
    keyword_coverage,
    plot_sizes,
    project_topics,
    visualize_barchart,
    visualize_heatmap,
    visualize_sizes,
    visualize_topics,
    write_pngs,
)
from cluster_rag.web import write_report

from .conftest import chromium_path

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_projection_is_seeded_and_spreads_the_sample_over_topics(shared_index: ClusterIndex) -> None:
    a = project_topics(shared_index, n_sample=120, seed=3)
    b = project_topics(shared_index, n_sample=120, seed=3)
    np.testing.assert_array_equal(a.centroid_xy, b.centroid_xy)
    np.testing.assert_array_equal(a.sample_ids, b.sample_ids)
    assert a.centroid_xy.shape == (len(shared_index.topics()), 2) and a.method in ("pca", "umap")
    assert set(a.sample_topic_ids.tolist()) == {t.id for t in shared_index.topics() if t.size}
    assert len(a.sample_ids) <= 120 + len(a.topic_ids)
    none = project_topics(shared_index, n_sample=0)
    assert len(none.sample_ids) == 0 and none.centroid_xy.shape == a.centroid_xy.shape
    with pytest.raises(InvalidInputError, match="n_sample"):
        project_topics(shared_index, n_sample=-1)


def test_topic_map_has_one_bubble_per_topic_sized_by_topic(shared_index: ClusterIndex) -> None:
    topics = {t.id: t for t in shared_index.topics()}
    fig = visualize_topics(shared_index, n_sample=100, highlight=[1])
    bubbles = fig.data[1]
    ids = [row[0] for row in bubbles.customdata]
    assert sorted(ids) == sorted(topics)
    assert list(bubbles.marker.size) == [topics[i].size for i in ids]
    assert [row[1] for row in bubbles.customdata] == [topics[i].label or f"topic {i}" for i in ids]
    assert [w for i, w in zip(ids, bubbles.marker.line.width, strict=True) if w > 1] == [4]
    assert ids[list(bubbles.marker.line.width).index(4)] == 1


def test_keyword_coverage_counts_whole_words(shared_index: ClusterIndex) -> None:
    topic = max(shared_index.topics(), key=lambda t: t.size)
    pairs = keyword_coverage(shared_index, topic.id, n_words=3, max_chunks=10_000)
    model = shared_index.model
    ids, _ = model.members(model.position_of[topic.id])
    texts = [h.text.lower() for h in shared_index.get([str(x) for x in ids])]
    word, share = pairs[0]
    assert word == topic.keywords[0]
    assert share == sum(bool(re.search(rf"\b{re.escape(word)}\b", t)) for t in texts) / len(texts)


def test_barchart_sizes_heatmap(shared_index: ClusterIndex) -> None:
    topics = shared_index.topics()
    bars = visualize_barchart(shared_index, top_n_topics=3, n_words=4)
    assert len(bars.data) == 3 and all(len(b.y) == 4 for b in bars.data)
    assert all(0.0 <= x <= 1.0 for b in bars.data for x in b.x)
    sizes = visualize_sizes(shared_index).data[0].y
    assert list(sizes) == sorted((t.size for t in topics), reverse=True)
    ids, sim = centroid_similarity(shared_index)
    assert sim.shape == (len(topics), len(topics)) and sorted(ids) == [t.id for t in topics]
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-5)
    np.testing.assert_allclose(sim, sim.T, atol=1e-6)
    heat = visualize_heatmap(shared_index).data[0]
    assert len(heat.z) == len(topics)


def test_matplotlib_pngs_and_old_plots(shared_index: ClusterIndex, tmp_path: Path) -> None:
    paths = write_pngs(shared_index, tmp_path / "png", engine="matplotlib")
    assert [p.name for p in paths] == list(PNG_NAMES)
    assert all(p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 5_000 for p in paths)
    assert plot_sizes([5, 3, 9], tmp_path / "sizes.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(InvalidInputError, match="engine"):
        write_pngs(shared_index, tmp_path, engine="svg")  # type: ignore[arg-type]


@pytest.mark.slow
def test_kaleido_pngs(shared_index: ClusterIndex, tmp_path: Path) -> None:
    pytest.importorskip("kaleido", reason="pip install kaleido")
    if chromium_path() is None:
        pytest.skip("kaleido needs Chrome/Chromium (apt-get install -y chromium)")
    paths = write_pngs(shared_index, tmp_path, engine="kaleido")
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)


def test_static_report_is_self_contained(shared_index: ClusterIndex, tmp_path: Path) -> None:
    written = write_report(shared_index, html=tmp_path / "out" / "report.html")
    assert written == [tmp_path / "out" / "report.html"]
    page = written[0].read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js is inlined, nothing fetched
    assert "Plotly.newPlot" in page and page.count("Plotly.newPlot") == 4
    for t in shared_index.topics():
        assert (t.label or f"topic {t.id}").replace("&", "&amp;") in page
    with pytest.raises(InvalidInputError, match="nothing to write"):
        write_report(shared_index)
    with pytest.raises(InvalidInputError, match=".html"):
        write_report(shared_index, html=tmp_path / "report.txt")
