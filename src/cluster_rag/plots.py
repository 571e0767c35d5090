"""Pictures of a fitted index: interactive plotly figures and PNG charts.

Interactive figures, in the spirit of BERTopic's ``visualize_*`` (install with
``pip install "cluster-rag[web]"``; each returns a ``plotly.graph_objects.Figure``):

- :func:`visualize_topics`: topic map, a 2-D projection of the centroids (bubble area
  = topic size, hover = label + keywords) over a sample of chunks;
- :func:`visualize_barchart`: keyword bar charts, one panel per topic;
- :func:`visualize_sizes`: chunks per topic, largest first;
- :func:`visualize_heatmap`: cosine similarity of the centroids.

The projection (:func:`project_topics`) is UMAP when ``umap-learn`` is installed, else
PCA from scikit-learn, fitted on the centroids and the chunk sample together, seeded.

PNG files (matplotlib, ``pip install "cluster-rag[plot]"``, Agg backend so they work
headless): :func:`plot_choose_k` (a k sweep), :func:`plot_sizes` (cluster sizes), and
:func:`write_pngs`, which writes the four figures above as images (plotly + kaleido when
kaleido finds a Chrome/Chromium, else the same charts drawn with matplotlib).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .errors import InvalidInputError, missing_dependency

if TYPE_CHECKING:
    from .clustering.choose_k import KSweep
    from .index import ClusterIndex
    from .types import Topic

__all__ = [
    "PNG_NAMES",
    "TopicProjection",
    "centroid_similarity",
    "display_label",
    "keyword_coverage",
    "plot_choose_k",
    "plot_sizes",
    "project_topics",
    "topic_color",
    "visualize_barchart",
    "visualize_heatmap",
    "visualize_sizes",
    "visualize_topics",
    "write_pngs",
]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise missing_dependency("matplotlib", '"cluster-rag[plot]"') from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _target(path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise InvalidInputError(f"plot path {str(out)!r} must end in .png")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def plot_choose_k(sweep: KSweep, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Four panels (inertia with knee, silhouette, Davies-Bouldin, Calinski-Harabasz) against k.

    The recommended k is a dashed vertical line on every panel; the window the rule searched
    (``[knee / 2, 2 * knee]`` around the inertia knee) is shaded on the silhouette panel, and
    the rule itself is written under the panels, so the plot says why that k was chosen.

    Returns:
        The PNG path written.
    """
    plt = _pyplot()
    out = _target(path)
    ks = sweep.ks
    panels = [
        ("inertia", "inertia (sum 1 - cos), lower is tighter", sweep.knee, "knee"),
        ("silhouette", "silhouette (cosine), higher is better", sweep.best_silhouette, "best"),
        ("davies_bouldin", "Davies-Bouldin, lower is better", sweep.best_davies_bouldin, "best"),
        ("calinski_harabasz", "Calinski-Harabasz, higher is better", sweep.best_calinski_harabasz, "best"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    for ax, (col, label, mark, mark_name) in zip(axes.ravel(), panels, strict=True):
        values = sweep.column(col)
        ax.plot(ks, values, marker="o", ms=3, lw=1.2)
        if mark is not None and mark in ks:
            y = values[ks.index(mark)]
            ax.plot([mark], [y], "o", color="tab:orange", ms=8, label=f"{mark_name}: k={mark}")
        rec = sweep.recommended
        ax.axvline(rec, ls="--", color="tab:red", lw=1, label=f"recommended k={rec}")
        if col == "silhouette" and sweep.knee is not None:
            ax.axvspan(sweep.knee / 2, sweep.knee * 2, color="tab:green", alpha=0.12,
                       label="searched: knee/2 .. 2 x knee")
        ax.set_title(label, fontsize=10)
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("k (log scale)")
    fig.suptitle(title or f"choose k on {sweep.n_sample} rows", fontsize=12)
    why = textwrap.fill(f"why k={sweep.recommended}: {sweep.rule}", width=150)
    fig.text(0.5, 0.01, why, ha="center", va="bottom", fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_sizes(
    sizes: Sequence[int],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Bar chart of cluster sizes, largest first, with the mean as a line.

    Args:
        sizes: chunks per cluster.

    Returns:
        The PNG path written.
    """
    if len(sizes) == 0:
        raise InvalidInputError("no cluster sizes to plot")
    plt = _pyplot()
    out = _target(path)
    ordered = sorted((int(s) for s in sizes), reverse=True)
    mean = sum(ordered) / len(ordered)
    fig, ax = plt.subplots(figsize=(max(6.0, min(16.0, 0.12 * len(ordered) + 4)), 4))
    ax.bar(range(len(ordered)), ordered, width=0.9, color="tab:blue")
    ax.axhline(mean, ls="--", color="tab:red", lw=1, label=f"mean {mean:.0f}")
    ax.set_xlabel("clusters, largest first")
    ax.set_ylabel("chunks")
    ax.set_title(title or f"cluster sizes (k={len(ordered)}, n={sum(ordered)})", fontsize=11)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# interactive figures (plotly) ------------------------------------------------------------------

#: Chunks drawn under the topic bubbles of the map, spread over topics by size.
MAP_SAMPLE = 1000
#: Topics given a panel by :func:`visualize_barchart` when none are named (largest first).
BARCHART_TOPICS = 8
#: Chunks of a topic read to measure keyword coverage (an even, seeded sample beyond that).
COVERAGE_CHUNKS = 200

#: plotly's Dark24 qualitative palette, its near-black swapped for teal (black outlines mark highlights).
_PALETTE = (
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#17BECF", "#B68100", "#750D86",
    "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE",
    "#862A16", "#A777F1", "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038",
)


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise missing_dependency("plotly", '"cluster-rag[web]"') from None
    return go


def topic_color(position: int) -> str:
    """Hex colour of the topic at cluster ``position`` (a 24-colour cycle shared by all figures)."""
    return _PALETTE[position % len(_PALETTE)]


def display_label(topic_id: int, label: str) -> str:
    """``label``, or ``"topic <id>"`` when the topic has no label yet."""
    return label or f"topic {topic_id}"


@dataclass(frozen=True)
class TopicProjection:
    """2-D coordinates of the centroids and of a sample of chunks of one model version.

    Attributes:
        version: model version projected.
        method: ``"umap"`` or ``"pca"``.
        topic_ids: ``(k,)`` int64 stable topic ids, by cluster position.
        centroid_xy: ``(k, 2)`` float64 map coordinates of the centroids.
        sample_ids: ``(m,)`` object chunk ids of the sample.
        sample_topic_ids: ``(m,)`` int64 topic id of each sampled chunk.
        sample_xy: ``(m, 2)`` float64 map coordinates of the sample.
    """

    version: int
    method: str
    topic_ids: np.ndarray
    centroid_xy: np.ndarray
    sample_ids: np.ndarray
    sample_topic_ids: np.ndarray
    sample_xy: np.ndarray


def _sample_positions(sizes: np.ndarray, n_sample: int) -> np.ndarray:
    """Chunks to draw per cluster position: proportional to size, at least one per non-empty cluster."""
    total = int(sizes.sum())
    if total == 0 or n_sample == 0:
        return np.zeros(len(sizes), dtype=np.int64)
    want = np.floor(sizes * min(1.0, n_sample / total)).astype(np.int64)
    return np.asarray(np.minimum(sizes, np.maximum(want, (sizes > 0).astype(np.int64))), dtype=np.int64)


def project_topics(index: ClusterIndex, *, n_sample: int = MAP_SAMPLE, seed: int = 0) -> TopicProjection:
    """Project the active model's centroids and a sample of its chunks to 2-D.

    UMAP (cosine, ``random_state=seed``) when ``umap-learn`` is installed, else PCA; both are
    fitted on the centroids and the sample together, so chunks sit around their topic.

    Args:
        index: a fitted index.
        n_sample: chunks to draw (spread over topics by size; at least one per topic); 0 for none.
        seed: seed of the sample and of the projection.

    Returns:
        The coordinates, by cluster position.
    """
    if isinstance(n_sample, bool) or not isinstance(n_sample, int) or n_sample < 0:
        raise InvalidInputError(f"n_sample={n_sample!r} must be an int >= 0")
    model = index.model
    centroids = np.asarray(model.centroids, dtype=np.float32)
    topic_ids = np.asarray([t.id for t in model.topics], dtype=np.int64)
    rng = np.random.default_rng(seed)
    counts = _sample_positions(np.asarray(model.sizes, dtype=np.int64), n_sample)
    ids: list[np.ndarray] = []
    vecs: list[np.ndarray] = [centroids]
    owners: list[np.ndarray] = []
    for pos, n in enumerate(counts):
        if n == 0:
            continue
        member_ids, member_vecs = model.members(pos)
        take = np.sort(rng.choice(len(member_ids), size=min(int(n), len(member_ids)), replace=False))
        ids.append(np.asarray(member_ids, dtype=object)[take])
        vecs.append(np.asarray(member_vecs, dtype=np.float32)[take])
        owners.append(np.full(len(take), topic_ids[pos], dtype=np.int64))
    points = np.concatenate(vecs)
    method, xy = _project(points, seed)
    k = len(centroids)
    return TopicProjection(
        version=model.info.version,
        method=method,
        topic_ids=topic_ids,
        centroid_xy=xy[:k],
        sample_ids=np.concatenate(ids) if ids else np.zeros(0, dtype=object),
        sample_topic_ids=np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64),
        sample_xy=xy[k:],
    )


def _project(points: np.ndarray, seed: int) -> tuple[str, np.ndarray]:
    """``(n, d)`` float32 → (method, ``(n, 2)`` float64)."""
    if len(points) < 3:
        return "pca", np.column_stack([np.arange(len(points), dtype=np.float64), np.zeros(len(points))])
    try:
        import umap
    except ImportError:
        umap = None
    if umap is not None:
        reducer = umap.UMAP(
            n_components=2, metric="cosine", random_state=seed, n_neighbors=min(15, len(points) - 1)
        )
        return "umap", np.asarray(reducer.fit_transform(points), dtype=np.float64)
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, svd_solver="randomized", random_state=seed)  # 2 of d components: no full SVD
    return "pca", np.asarray(pca.fit_transform(points), dtype=np.float64)


def visualize_topics(
    index: ClusterIndex,
    *,
    projection: TopicProjection | None = None,
    n_sample: int = MAP_SAMPLE,
    highlight: Sequence[int] = (),
    width: int | None = None,
    height: int = 560,
) -> Any:
    """Topic map: one bubble per topic at its projected centroid over a sample of chunks.

    The chunk sample is trace 0 (name ``"chunks"``), the topics are trace 1 (name
    ``"topics"``, one point per topic in cluster-position order, ``customdata`` rows of
    ``[topic id, label, keywords, size]``). Bubble area is proportional to topic size.

    Args:
        index: a fitted index.
        projection: coordinates from :func:`project_topics` (computed when ``None``); must be
            of the active model version.
        n_sample: chunks in the sample when the projection is computed here.
        highlight: topic ids drawn with a thick outline (e.g. the topics a search probed).
        width: figure width in pixels (``None``: responsive).
        height: figure height in pixels.

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    go = _plotly()
    topics = index.topics()
    proj = projection if projection is not None else project_topics(index, n_sample=n_sample)
    if proj.version != index.model_info.version or len(proj.topic_ids) != len(topics):
        raise InvalidInputError(
            f"projection of version {proj.version} does not match the active version "
            f"{index.model_info.version}; call project_topics(index) again"
        )
    position = {int(tid): pos for pos, tid in enumerate(proj.topic_ids)}
    by_id = {t.id: t for t in topics}
    labels = [display_label(int(tid), by_id[int(tid)].label) for tid in proj.topic_ids]
    fig = go.Figure()
    fig.add_trace(_chunk_trace(go, proj, position, labels))
    fig.add_trace(_topic_trace(go, proj, by_id, labels, highlight))
    fig.update_layout(
        title={"text": f"Topic map (version {proj.version}, {proj.method.upper()})", "x": 0.01},
        showlegend=False,
        height=height,
        width=width,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={"visible": False},
        yaxis={"visible": False, "scaleanchor": "x"},
        plot_bgcolor="#fafafa",
        hovermode="closest",
    )
    return fig


def _chunk_trace(go: Any, proj: TopicProjection, position: dict[int, int], labels: list[str]) -> Any:
    """The topic map's chunk sample, coloured by topic (trace 0, name ``"chunks"``).

    Args:
        go: the ``plotly.graph_objects`` module.
        proj: the projection drawn.
        position: cluster position of each topic id.
        labels: display label per cluster position.

    Returns:
        A ``plotly.graph_objects.Scatter``.
    """
    return go.Scatter(
        x=proj.sample_xy[:, 0].tolist() if len(proj.sample_xy) else [],  # lists: plain JSON for the API
        y=proj.sample_xy[:, 1].tolist() if len(proj.sample_xy) else [],
        mode="markers",
        name="chunks",
        marker={
            "size": 4,
            "opacity": 0.35,
            "color": [topic_color(position[int(t)]) for t in proj.sample_topic_ids],
        },
        customdata=[[int(t)] for t in proj.sample_topic_ids],
        text=[labels[position[int(t)]] for t in proj.sample_topic_ids],
        hovertemplate="%{text}<extra>chunk</extra>",
    )


def _topic_trace(
    go: Any, proj: TopicProjection, by_id: dict[int, Topic], labels: list[str], highlight: Sequence[int]
) -> Any:
    """The topic map's bubbles, area proportional to size (trace 1, name ``"topics"``).

    Args:
        go: the ``plotly.graph_objects`` module.
        proj: the projection drawn.
        by_id: each topic by id.
        labels: display label per cluster position.
        highlight: topic ids drawn with a thick dark outline.

    Returns:
        A ``plotly.graph_objects.Scatter``, one point per topic in cluster-position order with
        ``customdata`` rows ``[topic id, label, keywords, size]``.
    """
    marked = {int(h) for h in highlight}
    sizes = np.asarray([by_id[int(tid)].size for tid in proj.topic_ids], dtype=np.float64)
    return go.Scatter(
        x=proj.centroid_xy[:, 0].tolist(),
        y=proj.centroid_xy[:, 1].tolist(),
        mode="markers",
        name="topics",
        marker={
            "size": sizes.tolist(),
            "sizemode": "area",
            "sizeref": 2.0 * max(float(sizes.max(initial=1.0)), 1.0) / (48.0**2),
            "sizemin": 6,
            "color": [topic_color(pos) for pos in range(len(proj.topic_ids))],
            "opacity": 0.8,
            "line": {
                "width": [4 if int(t) in marked else 1 for t in proj.topic_ids],
                "color": ["#111" if int(t) in marked else "#fff" for t in proj.topic_ids],
            },
        },
        customdata=[
            [int(tid), labels[pos], ", ".join(by_id[int(tid)].keywords[:8]), int(sizes[pos])]
            for pos, tid in enumerate(proj.topic_ids)
        ],
        hovertemplate=(
            "<b>%{customdata[1]}</b><br>topic %{customdata[0]} · %{customdata[3]} chunks"
            "<br>%{customdata[2]}<extra></extra>"
        ),
    )


def keyword_coverage(
    index: ClusterIndex, topic_id: int, *, n_words: int = 8, max_chunks: int = COVERAGE_CHUNKS, seed: int = 0
) -> list[tuple[str, float]]:
    """Share of a topic's chunks that contain each of its keywords (whole words, any case).

    Topics store their c-TF-IDF keywords without weights; the share of chunks using a
    keyword is a weight people can read ("62 % of the chunks say *card*").

    Args:
        index: a fitted index.
        topic_id: stable topic id.
        n_words: keywords to measure, most distinctive first.
        max_chunks: chunks read (an even seeded sample when the topic is larger).
        seed: seed of that sample.

    Returns:
        ``(keyword, share in [0, 1])`` pairs in keyword order.
    """
    import re

    topic = index.topic(int(topic_id))
    model = index.model
    member_ids, _ = model.members(model.position_of[topic.id])
    ids = [str(x) for x in member_ids]
    if len(ids) > max_chunks:
        rng = np.random.default_rng(seed)
        ids = [ids[i] for i in np.sort(rng.choice(len(ids), size=max_chunks, replace=False))]
    texts = [h.text.lower() for h in index.get(ids)] if ids else []
    out: list[tuple[str, float]] = []
    for word in topic.keywords[:n_words]:
        pattern = re.compile(r"\b" + re.escape(word.lower()) + r"\b")
        share = sum(1 for t in texts if pattern.search(t)) / len(texts) if texts else 0.0
        out.append((word, share))
    return out


def _chosen_topics(index: ClusterIndex, topics: Sequence[int] | None, top_n: int) -> list[Any]:
    all_topics = index.topics()
    if topics is None:
        return sorted(all_topics, key=lambda t: (-t.size, t.id))[:top_n]
    return [index.topic(int(t)) for t in topics]


def visualize_barchart(
    index: ClusterIndex,
    *,
    topics: Sequence[int] | None = None,
    top_n_topics: int = BARCHART_TOPICS,
    n_words: int = 8,
    columns: int = 4,
) -> Any:
    """Keyword bar charts: one panel per topic, bar = share of its chunks using the keyword.

    Args:
        index: a fitted index.
        topics: topic ids to draw (default: the ``top_n_topics`` largest).
        top_n_topics: topics drawn when ``topics`` is ``None``.
        n_words: keywords per panel.
        columns: panels per row.

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    go = _plotly()
    from plotly.subplots import make_subplots

    chosen = _chosen_topics(index, topics, top_n_topics)
    if not chosen:
        raise InvalidInputError("no topics to draw")
    position = index.model.position_of
    cols = max(1, min(columns, len(chosen)))
    rows = (len(chosen) + cols - 1) // cols
    titles = [_short(display_label(t.id, t.label), 32) for t in chosen]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.12)
    for i, t in enumerate(chosen):
        pairs = keyword_coverage(index, t.id, n_words=n_words)
        words = [w for w, _ in pairs][::-1]
        shares = [s for _, s in pairs][::-1]
        fig.add_trace(
            go.Bar(
                x=shares,
                y=words,
                orientation="h",
                marker={"color": topic_color(position[t.id])},
                hovertemplate="%{y}: %{x:.0%} of the chunks<extra></extra>",
                name=str(t.id),
            ),
            row=i // cols + 1,
            col=i % cols + 1,
        )
    fig.update_xaxes(tickformat=".0%", range=[0, 1])
    fig.update_layout(
        title={"text": "Keywords: share of the topic's chunks using each", "x": 0.01},
        showlegend=False,
        height=max(300, 250 * rows),
        margin={"l": 10, "r": 10, "t": 70, "b": 10},
    )
    return fig


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def visualize_sizes(index: ClusterIndex) -> Any:
    """Chunks per topic, largest first, with the mean as a dashed line.

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    go = _plotly()
    topics = sorted(index.topics(), key=lambda t: (-t.size, t.id))
    position = index.model.position_of
    mean = sum(t.size for t in topics) / max(1, len(topics))
    fig = go.Figure(
        go.Bar(
            x=[f"{t.id}: {_short(display_label(t.id, t.label), 28)}" for t in topics],
            y=[t.size for t in topics],
            marker={"color": [topic_color(position[t.id]) for t in topics]},
            hovertemplate="%{x}<br>%{y} chunks<extra></extra>",
        )
    )
    fig.add_hline(y=mean, line_dash="dash", line_color="#d62728", annotation_text=f"mean {mean:.0f}")
    fig.update_layout(
        title={"text": f"Topic sizes (k={len(topics)}, n={sum(t.size for t in topics)})", "x": 0.01},
        yaxis_title="chunks",
        height=420,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return fig


def centroid_similarity(index: ClusterIndex) -> tuple[list[int], np.ndarray]:
    """Topic ids by position and the ``(k, k)`` float64 cosine similarity of their centroids."""
    model = index.model
    c = np.asarray(model.centroids, dtype=np.float64)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return [t.id for t in model.topics], c @ c.T


def visualize_heatmap(index: ClusterIndex) -> Any:
    """Cosine similarity of the topic centroids (by topic id).

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    go = _plotly()
    ids, sim = centroid_similarity(index)
    by_id = {t.id: t for t in index.topics()}
    order = np.argsort(ids, kind="stable")
    names = [f"{ids[i]}: {_short(display_label(ids[i], by_id[ids[i]].label), 24)}" for i in order]
    fig = go.Figure(
        go.Heatmap(
            z=sim[np.ix_(order, order)].round(4).tolist(),
            x=names,
            y=names,
            colorscale="Blues",
            zmin=float(np.min(sim)),
            zmax=1.0,
            hovertemplate="%{y}<br>%{x}<br>cosine %{z:.2f}<extra></extra>",
        )
    )
    side = max(420, min(1000, 24 * len(names) + 200))
    fig.update_layout(
        title={"text": "Similarity of topic centroids (cosine)", "x": 0.01},
        height=side,
        yaxis={"autorange": "reversed"},
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return fig


# PNG files of the interactive figures ------------------------------------------------------------

PNG_NAMES = ("topic_map.png", "keywords.png", "sizes.png", "heatmap.png")


def _chrome_path() -> str | None:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def write_pngs(
    index: ClusterIndex,
    directory: str | os.PathLike[str],
    *,
    engine: Literal["auto", "kaleido", "matplotlib"] = "auto",
    projection: TopicProjection | None = None,
) -> list[Path]:
    """Write the topic map, keyword bars, sizes and heatmap as PNGs (names in :data:`PNG_NAMES`).

    Args:
        index: a fitted index.
        directory: folder to write into (created).
        engine: ``"kaleido"`` (plotly's renderer; it drives a local Chrome/Chromium),
            ``"matplotlib"``, or ``"auto"``: kaleido when it is installed and a Chrome or
            Chromium is on PATH, else matplotlib.
        projection: map coordinates (computed when ``None``).

    Returns:
        The PNG paths written, in :data:`PNG_NAMES` order.
    """
    if engine not in ("auto", "kaleido", "matplotlib"):
        raise InvalidInputError(f"engine={engine!r} must be 'auto', 'kaleido' or 'matplotlib'")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    proj = projection if projection is not None else project_topics(index)
    if engine == "auto":
        try:
            import kaleido  # noqa: F401

            engine = "kaleido" if _chrome_path() else "matplotlib"
        except ImportError:
            engine = "matplotlib"
    paths = [out / name for name in PNG_NAMES]
    if engine == "kaleido":
        try:
            import kaleido  # noqa: F401
        except ImportError:
            raise missing_dependency("kaleido", "kaleido") from None
        figs = [
            visualize_topics(index, projection=proj, width=1000, height=700),
            visualize_barchart(index),
            visualize_sizes(index),
            visualize_heatmap(index),
        ]
        chrome = _chrome_path()
        if chrome and not os.environ.get("BROWSER_PATH"):
            os.environ["BROWSER_PATH"] = chrome
        import plotly.io as pio

        for fig in figs:  # write_images renders them all in one browser session
            fig.update_layout(width=fig.layout.width or 1100, height=fig.layout.height or 600)
        pio.write_images(figs, [str(p) for p in paths])
        return paths
    _mpl_pngs(index, proj, paths)
    return paths


def _mpl_pngs(index: ClusterIndex, proj: TopicProjection, paths: list[Path]) -> None:
    """The four figures drawn with matplotlib into ``paths`` (map, keywords, sizes, heatmap)."""
    plt = _pyplot()
    topics = index.topics()
    by_id = {t.id: t for t in topics}
    position = index.model.position_of
    # map
    fig, ax = plt.subplots(figsize=(10, 7))
    if len(proj.sample_xy):
        ax.scatter(
            proj.sample_xy[:, 0], proj.sample_xy[:, 1], s=4, alpha=0.3,
            c=[topic_color(position[int(t)]) for t in proj.sample_topic_ids],
        )
    sizes = np.asarray([by_id[int(t)].size for t in proj.topic_ids], dtype=np.float64)
    ax.scatter(
        proj.centroid_xy[:, 0], proj.centroid_xy[:, 1], s=1200 * sizes / max(sizes.max(), 1.0) + 20,
        c=[topic_color(p) for p in range(len(sizes))], alpha=0.75, edgecolors="white",
    )
    for (x, y), tid in zip(proj.centroid_xy, proj.topic_ids, strict=True):
        name = _short(display_label(int(tid), by_id[int(tid)].label), 24)
        ax.annotate(name, (x, y), fontsize=7, ha="center")
    ax.set_axis_off()
    ax.set_title(f"Topic map (version {proj.version}, {proj.method.upper()})")
    fig.tight_layout()
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    # keyword bars
    chosen = _chosen_topics(index, None, BARCHART_TOPICS)
    cols = max(1, min(4, len(chosen)))
    rows = (len(chosen) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_visible(False)
    for ax, t in zip(axes.ravel(), chosen, strict=False):
        ax.set_visible(True)
        pairs = keyword_coverage(index, t.id)
        ax.barh([w for w, _ in pairs][::-1], [s for _, s in pairs][::-1], color=topic_color(position[t.id]))
        ax.set_xlim(0, 1)
        ax.set_title(_short(display_label(t.id, t.label), 32), fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle("Keywords: share of the topic's chunks using each")
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    # sizes
    plot_sizes([t.size for t in topics], paths[2], title=f"Topic sizes (k={len(topics)})")
    # heatmap
    ids, sim = centroid_similarity(index)
    order = np.argsort(ids, kind="stable")
    fig, ax = plt.subplots(figsize=(8, 7))
    img = ax.imshow(sim[np.ix_(order, order)], cmap="Blues")
    ticks = [str(ids[i]) for i in order]
    ax.set_xticks(range(len(ticks)), ticks, fontsize=6)
    ax.set_yticks(range(len(ticks)), ticks, fontsize=6)
    fig.colorbar(img, ax=ax, label="cosine")
    ax.set_title("Similarity of topic centroids (topic ids)")
    fig.tight_layout()
    fig.savefig(paths[3], dpi=110)
    plt.close(fig)

