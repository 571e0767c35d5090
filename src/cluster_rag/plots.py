"""PNG plots of a k sweep and of cluster sizes (matplotlib, imported lazily).

Install with ``pip install "cluster-rag[plot]"``. Both functions write one PNG and
return its path; they use the non-interactive Agg backend, so they work headless.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidInputError, missing_dependency

if TYPE_CHECKING:
    from .clustering.choose_k import KSweep

__all__ = ["plot_choose_k", "plot_sizes"]


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

    The recommended k is a dashed vertical line on every panel.

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
        ax.set_title(label, fontsize=10)
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("k (log scale)")
    fig.suptitle(title or f"choose k on {sweep.n_sample} rows", fontsize=12)
    fig.tight_layout()
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
