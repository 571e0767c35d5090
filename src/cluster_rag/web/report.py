"""The static report: one self-contained HTML file (plotly.js inlined) and optional PNGs."""

from __future__ import annotations

import html as html_lib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, missing_dependency
from ..plots import (
    project_topics,
    visualize_barchart,
    visualize_heatmap,
    visualize_sizes,
    visualize_topics,
    write_pngs,
)
from . import views

if TYPE_CHECKING:
    from ..index import ClusterIndex

__all__ = ["render_report", "write_report"]

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:12px;color:#222}
h1{font-size:1.5em;margin:.3em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
.meta{color:#555}.chart{width:100%}
table{border-collapse:collapse;width:100%;font-size:.92em}th,td{border-bottom:1px solid #eee;
padding:4px 6px;text-align:left;vertical-align:top}td.num{text-align:right}
.sw{display:inline-block;width:.8em;height:.8em;border-radius:50%;margin-right:.3em}
.kw{color:#555}.rep{color:#333;font-size:.9em}
@media (max-width:640px){td.rep,th.rep{display:none}}
"""


def _figure_div(fig: Any) -> str:
    import plotly.io as pio

    out: str = pio.to_html(
        fig, full_html=False, include_plotlyjs=False, config={"responsive": True, "displaylogo": False}
    )
    return out


def render_report(index: ClusterIndex) -> str:
    """The report as one HTML string: info, topic map, topic table, sizes, keywords, heatmap.

    Raises:
        MissingDependencyError: plotly is not installed.
    """
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise missing_dependency("plotly", '"cluster-rag[web]"') from None
    esc = html_lib.escape
    info = index.info()
    proj = project_topics(index)
    payload = views.topics_payload(index, representatives=1)
    rows = []
    for t in sorted(payload["topics"], key=lambda t: (-t["size"], t["id"])):
        rep = t["representatives"][0]["text"] if t["representatives"] else ""
        pin = " 📌" if t["pinned"] else ""
        rows.append(
            f'<tr><td class="num">{t["id"]}</td><td><span class="sw" style="background:{t["color"]}"></span>'
            f'{esc(t["display_label"])}{pin}</td><td class="num">{t["size"]}</td>'
            f'<td class="kw">{esc(", ".join(t["keywords"][:8]))}</td>'
            f'<td class="rep">{esc(rep[:200])}</td></tr>'
        )
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    figures = [
        ("Topic map", visualize_topics(index, projection=proj)),
        ("Topic sizes", visualize_sizes(index)),
        ("Keywords", visualize_barchart(index)),
        ("Centroid similarity", visualize_heatmap(index)),
    ]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>cluster-rag report: {esc(str(info.get('collection', '')))}</title>",
        f"<style>{_CSS}</style>",
        f"<script>{get_plotlyjs()}</script></head><body>",
        "<h1>cluster-rag topics</h1>",
        f"<p class='meta'>{esc(str(info.get('location') or info.get('collection')))} · "
        f"{info.get('chunks')} chunks · k={info.get('k')} · model version {info.get('active_version')} "
        f"({esc(str(info.get('engine')))}, fitted {esc(str(info.get('fitted_at')))}) · "
        f"{esc(str(info.get('embedding_model')))} · written {when}</p>",
        f"<h2>{figures[0][0]}</h2>",
        f"<div class='chart'>{_figure_div(figures[0][1])}</div>",
        "<h2>Topics</h2><table><thead><tr><th>id</th><th>label</th><th>size</th><th>keywords</th>"
        "<th class='rep'>representative chunk</th></tr></thead><tbody>",
        *rows,
        "</tbody></table>",
    ]
    for title, fig in figures[1:]:
        parts += [f"<h2>{title}</h2>", f"<div class='chart'>{_figure_div(fig)}</div>"]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    index: ClusterIndex,
    *,
    html: str | os.PathLike[str] | None = None,
    png_dir: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write the HTML report and/or the PNG charts (see :func:`cluster_rag.web.write_report`)."""
    if html is None and png_dir is None:
        raise InvalidInputError("give html= (a .html file) and/or png_dir= (a folder); nothing to write")
    written: list[Path] = []
    if html is not None:
        target = Path(html)
        if target.suffix.lower() not in (".html", ".htm"):
            raise InvalidInputError(f"report path {str(target)!r} must end in .html")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_report(index), encoding="utf-8")
        written.append(target)
    if png_dir is not None:
        written.extend(write_pngs(index, png_dir))
    return written
