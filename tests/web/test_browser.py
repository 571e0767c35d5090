"""The explorer page in real headless Chromium (Playwright driving Debian's chromium) on a real index.

Screenshots go to tests/web/artifacts/ (map.png, topic.png, search.png, phone.png).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cluster_rag import ClusterIndex, IndexConfig, SentenceTransformerEmbedder
from cluster_rag.web import create_app

from .conftest import ARTIFACTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NEW_NAME = "Lost or stolen cards"
QUERY = "someone stole my card"


@pytest.fixture
def page(chromium: Any) -> Iterator[tuple[Any, list[str]]]:
    """A fresh 1280x900 page and the console errors / page errors it logs."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    try:
        yield tab, errors
    finally:
        context.close()


def _ready(tab: Any, url: str) -> None:
    tab.goto(url)
    tab.wait_for_selector("body[data-ready='1']", timeout=60_000)


def test_explore_rename_and_search(
    demo_index: ClusterIndex,
    page: tuple[Any, list[str]],
    live_server: Callable[[Any], Any],
    embedder: SentenceTransformerEmbedder,
    quiet_config: IndexConfig,
) -> None:
    tab, errors = page
    topics = demo_index.topics()
    with live_server(create_app(demo_index)) as url:
        _ready(tab, url)
        # the map: an SVG scatter whose last trace holds one point per topic
        traces = tab.locator("#map .scatterlayer .trace")
        assert traces.count() == 2
        assert traces.nth(1).locator("path.point").count() == len(topics)
        assert traces.nth(0).locator("path.point").count() > len(topics)
        assert tab.locator("#topic-list li").count() == len(topics)
        assert tab.locator("#versions tbody tr").count() == len(demo_index.versions())
        assert tab.locator("#drift strong").inner_text() == demo_index.drift().recommendation
        traces.nth(1).locator("path.point").first.hover(force=True)
        tab.wait_for_selector("#map .hoverlayer .hovertext")
        tab.screenshot(path=str(ARTIFACTS / "map.png"))

        # open, from the list, the topic the query's best hit is in
        target = demo_index.topic(demo_index.search(QUERY, k=1)[0].topic_id)
        tab.locator(f"#topic-list li[data-topic-id='{target.id}']").click()
        tab.wait_for_selector("#topic-panel:not([hidden])")
        assert tab.locator("#topic-title").inner_text() == (target.label or f"topic {target.id}")
        assert tab.locator("#members li").count() == min(20, target.size)
        tab.wait_for_selector("#kw-chart .bars path")
        if target.size > 20:  # the next page of members
            tab.click("#next-page")
            tab.wait_for_selector("#members[start='21']")
            assert tab.locator("#members li").count() == min(20, target.size - 20)
            tab.click("#prev-page")
            tab.wait_for_selector("#members[start='1']")

        # the list filter keeps topics whose label or keywords match
        tab.fill("#filter", target.keywords[0])
        kept = tab.locator("#topic-list li")
        assert 1 <= kept.count() < len(topics)
        assert tab.locator(f"#topic-list li[data-topic-id='{target.id}']").count() == 1
        tab.fill("#filter", "")

        # rename it inline: new name on the page, after a reload, and in index.topics()
        tab.fill("#rename-input", NEW_NAME)
        tab.click("#rename-btn")
        tab.wait_for_selector(f"#topic-title:text-is('{NEW_NAME}')")
        tab.wait_for_selector("#topic-pin:not([hidden])")
        tab.evaluate("document.getElementById('topic-panel').scrollIntoView({block: 'start'})")
        tab.screenshot(path=str(ARTIFACTS / "topic.png"))
        tab.reload()
        tab.wait_for_selector("body[data-ready='1']")
        assert tab.locator("#topic-title").inner_text() == NEW_NAME
        listed = tab.locator(f"#topic-list li[data-topic-id='{target.id}'] .label").inner_text()
        assert listed == NEW_NAME
        assert {t.id: t.label for t in demo_index.topics()}[target.id] == NEW_NAME
        reopened = ClusterIndex.open(
            demo_index.location, embedder=embedder, config=quiet_config, create=False
        )
        assert reopened.topic(target.id).label == NEW_NAME and reopened.topic(target.id).pinned

        # search: hits listed, their topics highlighted in the list and outlined on the map
        tab.fill("#q", QUERY)
        tab.click("#search-btn")
        tab.wait_for_selector("#hits li.hit")
        expected = demo_index.search(QUERY, k=10)
        shown = tab.locator("#hits li.hit")
        assert shown.count() == len(expected)
        hit_topics = {int(shown.nth(i).get_attribute("data-topic-id")) for i in range(shown.count())}
        assert hit_topics == {h.topic_id for h in expected}
        probed = {int(x) for x in tab.locator("#topic-list li.probed").evaluate_all(
            "els => els.map(e => e.dataset.topicId)")}
        assert hit_topics <= probed
        outlined = tab.evaluate(
            """() => {
                const t = document.getElementById('map').data.find(d => d.name === 'topics');
                return t.customdata.filter((row, i) => t.marker.line.width[i] > 1).map(row => row[0]);
            }"""
        )
        assert set(outlined) == probed
        tab.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)

        # phone width: one column, nothing wider than the screen
        tab.set_viewport_size({"width": 390, "height": 844})
        tab.wait_for_timeout(300)
        assert tab.evaluate("document.documentElement.scrollWidth") <= 390
        tab.screenshot(path=str(ARTIFACTS / "phone.png"))
    assert errors == []
