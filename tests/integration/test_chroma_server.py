"""The same API against a real `chroma run` server on loopback (started by the fixture)."""

from __future__ import annotations

import pytest

from cluster_rag import ClusterIndex, ModelMismatchError, StoreConnectionError, StoreNotFoundError
from tests.fixtures import FakeEmbedder, _free_port

pytestmark = [pytest.mark.integration, pytest.mark.server]


def test_server_roundtrip(chroma_server: str, embedder, quiet_config, banking_rows) -> None:  # noqa: ANN001
    rows = banking_rows[:120]
    index = ClusterIndex.connect(chroma_server, collection="srv_bank", embedder=embedder, config=quiet_config)
    index.add_texts([r["text"] for r in rows], [{"label": r["label"]} for r in rows], [r["id"] for r in rows])
    info = index.fit(k=6)
    assert info.k == 6 and len(index) == 120
    hit = index.search("my card has not arrived", k=1)[0]
    assert hit.metadata["label"] == "card_arrival"
    # a second client (another process would do the same) sees the fitted model
    again = ClusterIndex.connect(chroma_server, collection="srv_bank", embedder=embedder, config=quiet_config,
                                 create=False)
    assert again.model_info == info
    assert [h.id for h in again.search("my card has not arrived", k=3)] == [
        h.id for h in index.search("my card has not arrived", k=3)
    ]


def test_server_errors(chroma_server: str, quiet_config) -> None:  # noqa: ANN001
    with pytest.raises(StoreNotFoundError, match="missing_one"):
        ClusterIndex.connect(chroma_server, collection="missing_one", embedder=FakeEmbedder(),
                             config=quiet_config, create=False)
    ClusterIndex.connect(chroma_server, collection="srv_fake", embedder=FakeEmbedder(), config=quiet_config).add_texts(
        ["x"]
    )
    with pytest.raises(ModelMismatchError):
        ClusterIndex.connect(chroma_server, collection="srv_fake", embedder=FakeEmbedder(name="other"),
                             config=quiet_config)


def test_unreachable_server(quiet_config) -> None:  # noqa: ANN001
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(StoreConnectionError, match="cannot reach a Chroma server"):
        ClusterIndex.connect(url, embedder=FakeEmbedder(), config=quiet_config)
