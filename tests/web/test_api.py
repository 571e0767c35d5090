"""The explorer's JSON API against a real fitted index (FastAPI TestClient, and a real uvicorn)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from cluster_rag import ClusterIndex
from cluster_rag.web import create_app
from cluster_rag.web.app import plotly_js_path

pytestmark = pytest.mark.integration

QUERY = "my card got stolen, what do I do"


@pytest.fixture(scope="module")
def client(shared_index: ClusterIndex) -> TestClient:
    return TestClient(create_app(shared_index))


def test_topics_match_the_python_api(client: TestClient, shared_index: ClusterIndex) -> None:
    body = client.get("/api/topics", params={"representatives": 2}).json()
    topics = shared_index.topics()
    assert body["version"] == shared_index.model_info.version
    assert [(t["id"], t["size"], t["label"], t["keywords"]) for t in body["topics"]] == [
        (t.id, t.size, t.label, t.keywords) for t in topics
    ]
    first = topics[0]
    texts = {h.id: h.text for h in shared_index.get(first.representative_ids[:2])}
    assert body["topics"][0]["representatives"] == [
        {"id": cid, "text": texts[cid]} for cid in first.representative_ids[:2]
    ]


def test_topic_detail_pages_every_member_nearest_first(
    client: TestClient, shared_index: ClusterIndex
) -> None:
    topic = max(shared_index.topics(), key=lambda t: t.size)
    seen: list[str] = []
    scores: list[float] = []
    offset = 0
    while True:
        page = client.get(f"/api/topics/{topic.id}", params={"offset": offset, "limit": 7}).json()
        assert page["label"] == topic.label and page["members"]["total"] == topic.size
        items = page["members"]["items"]
        if not items:
            break
        seen += [m["id"] for m in items]
        scores += [m["score"] for m in items]
        offset += 7
    model = shared_index.model
    member_ids, _ = model.members(model.position_of[topic.id])
    assert sorted(seen) == sorted(str(x) for x in member_ids)
    assert scores == sorted(scores, reverse=True)
    coverage = page["keyword_coverage"]
    assert [c["keyword"] for c in coverage] == topic.keywords[: len(coverage)]
    assert all(0.0 <= c["share"] <= 1.0 for c in coverage) and coverage[0]["share"] > 0


def test_unknown_ids_are_404_with_a_message(client: TestClient, shared_index: ClusterIndex) -> None:
    r = client.get("/api/topics/9999")
    assert r.status_code == 404
    assert "topic 9999 does not exist" in r.json()["detail"]
    r = client.get("/api/documents/no-such-chunk")
    assert r.status_code == 404 and "no-such-chunk" in r.json()["detail"]
    assert client.get("/api/topics/not-a-number").status_code == 422
    chunk = shared_index.topics()[0].representative_ids[0]
    assert client.get(f"/api/documents/{chunk}").json()["id"] == chunk


def test_search_returns_the_python_hits_and_the_probed_topics(
    client: TestClient, shared_index: ClusterIndex
) -> None:
    body = client.post("/api/search", json={"query": QUERY, "k": 5}).json()
    expected = shared_index.search(QUERY, k=5)
    assert [h["id"] for h in body["hits"]] == [h.id for h in expected]
    probed = [p["topic_id"] for p in body["probed"]]
    assert {h["topic_id"] for h in body["hits"]} <= set(probed)
    # the probed topics are the route: searching only them gives the same answer
    within = shared_index.search(QUERY, k=5, topics=probed)
    assert [h.id for h in within] == [h.id for h in expected]
    # nearest centroid first
    model = shared_index.model
    sims = model.centroids @ shared_index.embed_query(QUERY)
    assert probed[0] == model.topics[int(np.argmax(sims))].id
    assert [p["score"] for p in body["probed"]] == sorted((p["score"] for p in body["probed"]), reverse=True)


def test_search_within_topics_probes_exactly_those(client: TestClient, shared_index: ClusterIndex) -> None:
    ids = [t.id for t in shared_index.topics()[:2]]
    body = client.post("/api/search", json={"query": QUERY, "k": 3, "topics": ids}).json()
    assert sorted(p["topic_id"] for p in body["probed"]) == sorted(ids)
    assert {h["topic_id"] for h in body["hits"]} <= set(ids)


def test_bad_input_is_422(client: TestClient) -> None:
    bad = b'{"query": "card", '
    r = client.post("/api/search", content=bad, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    assert client.post("/api/search", json={"query": "", "k": 3}).status_code == 422
    assert client.post("/api/search", json={"query": "card", "k": 0}).status_code == 422
    r = client.post("/api/search", json={"query": "   "})
    assert r.status_code == 422 and "non-blank" in r.json()["detail"]
    assert client.get("/api/topics/0", params={"limit": 0}).status_code == 422


def test_rename_pin_unpin(demo_index: ClusterIndex) -> None:
    client = TestClient(create_app(demo_index))
    a, b = demo_index.topics()[:2]
    new = {"name": "Card troubles", "description": "Lost cards."}
    r = client.post(f"/api/topics/{a.id}/rename", json=new)
    assert r.status_code == 200 and r.json()["label"] == "Card troubles" and r.json()["pinned"]
    assert demo_index.topic(a.id).label == "Card troubles"
    assert demo_index.topic(a.id).description == "Lost cards."
    clash = client.post(f"/api/topics/{b.id}/rename", json={"name": "card troubles"})
    assert clash.status_code == 422 and "already named" in clash.json()["detail"]
    assert client.post(f"/api/topics/{a.id}/unpin").json()["pinned"] is False
    assert demo_index.topic(a.id).pinned is False
    assert client.post(f"/api/topics/{a.id}/pin").json()["pinned"] is True
    assert demo_index.topic(a.id).label == "Card troubles"
    labels = {t["id"]: t["label"] for t in client.get("/api/topics").json()["topics"]}
    assert labels[a.id] == "Card troubles"
    assert client.post("/api/topics/9999/rename", json={"name": "x y"}).status_code == 404


@pytest.mark.slow
def test_versions_rollback_and_drift(demo_index: ClusterIndex, banking_rows: list[dict[str, Any]]) -> None:
    client = TestClient(create_app(demo_index))
    assert client.get("/api/drift").json()["n_added"] == 0
    r = client.post("/api/rollback", json={})
    assert r.status_code == 404 and "older than 1" in r.json()["detail"]
    demo_index.add_texts([f"{r['text']} (again)" for r in banking_rows[:25]])
    drift = client.get("/api/drift").json()
    assert drift["n_added"] == 25 and drift["recommendation"] in ("ok", "partial_update", "refit")
    demo_index.fit(k=12)
    versions = client.get("/api/versions").json()
    listed = [v["version"] for v in versions["versions"]]
    assert listed == [v.version for v in demo_index.versions()] == [1, 2]
    assert versions["active"] == 2 and versions["refit"]["previous_version"] == 1
    assert len(client.get("/api/topics").json()["topics"]) == 12
    assert len(client.get("/api/map").json()["data"][1]["x"]) == 12
    back = client.post("/api/rollback", json={"version": 1}).json()
    assert back["version"] == 1 and demo_index.model_info.version == 1
    assert len(client.get("/api/map").json()["data"][1]["x"]) == 20
    assert client.post("/api/rollback", json={"version": 99}).status_code == 404


def test_map_has_one_point_per_topic_and_outlines_highlights(
    client: TestClient, shared_index: ClusterIndex
) -> None:
    fig = client.get("/api/map", params={"highlight": "0,3"}).json()
    chunks, topics = fig["data"]
    assert (chunks["name"], topics["name"]) == ("chunks", "topics")
    ids = [row[0] for row in topics["customdata"]]
    assert ids == [t.id for t in shared_index.model.topics]
    widths = dict(zip(ids, topics["marker"]["line"]["width"], strict=True))
    assert {i for i, w in widths.items() if w > 1} == {0, 3}
    assert 0 < len(chunks["x"]) <= len(shared_index)
    assert client.get("/api/map", params={"highlight": "x"}).status_code == 422
    for name in ("sizes", "heatmap", "keywords"):
        assert client.get(f"/api/charts/{name}").json()["data"]
    assert client.get("/api/charts/pie").status_code == 404


def test_page_uses_the_packaged_plotly_and_no_cdn(client: TestClient) -> None:
    page = client.get("/").text
    assert '<script src="/static/plotly.min.js"></script>' in page
    assert "http://" not in page and "https://" not in page
    assert client.get("/static/plotly.min.js").content == plotly_js_path().read_bytes()
    assert "Plotly.react" in client.get("/static/app.js").text
    assert client.get("/docs").status_code == 404  # swagger UI would load from a CDN
    spec = client.get("/openapi.json").json()
    assert {"/api/topics", "/api/topics/{topic_id}", "/api/search", "/api/versions", "/api/rollback",
            "/api/drift", "/api/documents/{doc_id}"} <= set(spec["paths"])


def test_real_uvicorn_on_loopback(shared_index: ClusterIndex, live_server: Callable[[Any], Any]) -> None:
    with live_server(create_app(shared_index)) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert url.startswith("http://127.0.0.1:")
        r = http.get("/api/topics/424242")
        assert r.status_code == 404 and "424242" in r.json()["detail"]
        r = http.post("/api/search", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422
        r = http.post("/api/search", json={"query": QUERY, "k": 3})
        assert [h["id"] for h in r.json()["hits"]] == [h.id for h in shared_index.search(QUERY, k=3)]
        assert http.get("/api/info").json()["chunks"] == len(shared_index)


def test_serve_rejects_a_bad_port(shared_index: ClusterIndex) -> None:
    from cluster_rag.errors import InvalidInputError
    from cluster_rag.web import serve

    with pytest.raises(InvalidInputError, match="port=0"):
        serve(shared_index, port=0)


def test_static_files_ship_as_package_data() -> None:
    import fnmatch
    from importlib import resources

    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")

    static = resources.files("cluster_rag.web") / "static"
    names = {"index.html", "app.js", "style.css"}
    assert names <= {p.name for p in static.iterdir()}
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["cluster_rag"]
    for name in names:  # a wheel built from pyproject.toml carries them
        assert any(fnmatch.fnmatch(f"web/static/{name}", pat) for pat in patterns), name
