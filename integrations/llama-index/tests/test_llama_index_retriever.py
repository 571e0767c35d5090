"""llama_index.retrievers.cluster_rag on the real model + real Chroma (fitted Banking77 sample)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import llama_index.core.instrumentation as instrument
import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent, RetrievalStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode
from llama_index.core.tools import RetrieverTool
from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters
from llama_index.retrievers.cluster_rag import ClusteredRetriever, filters_to_where, hit_to_node

from cluster_rag import ClusterIndex, Hit, InvalidInputError, UnknownTopicError

pytestmark = pytest.mark.integration
QUERY = "my new card has not arrived yet"


class RetrievalEvents(BaseEventHandler):
    """Records retrieval instrumentation events."""

    events: list[tuple[str, Any]] = []

    @classmethod
    def class_name(cls) -> str:
        return "RetrievalEvents"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, RetrievalStartEvent):
            self.events.append(("start", event.str_or_query_bundle))
        elif isinstance(event, RetrievalEndEvent):
            self.events.append(("end", [n.node.node_id for n in event.nodes]))


@pytest.fixture
def events() -> Iterator[RetrievalEvents]:
    handler = RetrievalEvents(events=[])
    dispatcher = instrument.get_dispatcher()
    dispatcher.add_event_handler(handler)
    try:
        yield handler
    finally:
        dispatcher.event_handlers.remove(handler)


def test_hit_to_node_keeps_ids_scores_and_topics() -> None:
    hit = Hit(
        id="faq.md#3",
        text="Cards arrive in 5 days.",
        score=0.81,
        topic_id=4,
        model_version=2,
        metadata={"source": "faq.md"},
        topic_label="card / arrive",
    )
    nws = hit_to_node(hit)
    assert nws.node.node_id == "faq.md#3" and nws.score == 0.81 and nws.node.get_content() == hit.text
    assert nws.node.metadata == {
        "source": "faq.md",
        "chunk_id": "faq.md#3",
        "score": 0.81,
        "topic_id": 4,
        "topic_label": "card / arrive",
        "model_version": 2,
    }
    llm_text = nws.node.get_content(MetadataMode.LLM)
    assert "topic_label: card / arrive" in llm_text and "source: faq.md" in llm_text
    assert "score" not in llm_text and "chunk_id" not in llm_text and "model_version" not in llm_text


def test_filters_to_where() -> None:
    f = MetadataFilters(
        filters=[
            MetadataFilter(key="label", value="card_arrival"),
            MetadataFilters(
                filters=[
                    MetadataFilter(key="year", value=2020, operator=">="),
                    MetadataFilter(key="lang", value=["en", "de"], operator="in"),
                ],
                condition="or",
            ),
        ]
    )
    assert filters_to_where(f) == {
        "$and": [
            {"label": {"$eq": "card_arrival"}},
            {"$or": [{"year": {"$gte": 2020}}, {"lang": {"$in": ["en", "de"]}}]},
        ]
    }
    assert filters_to_where(MetadataFilters(filters=[MetadataFilter(key="a", value=1, operator="!=")])) == {
        "a": {"$ne": 1}
    }
    with pytest.raises(InvalidInputError, match="operator 'text_match' on key 'label' is not supported"):
        filters_to_where(
            MetadataFilters(filters=[MetadataFilter(key="label", value="x", operator="text_match")])
        )
    with pytest.raises(InvalidInputError, match="condition 'not'"):
        filters_to_where(MetadataFilters(filters=[MetadataFilter(key="a", value=1)] * 2, condition="not"))
    with pytest.raises(InvalidInputError, match="no conditions"):
        filters_to_where(MetadataFilters(filters=[]))


def test_retrieve_maps_hits_and_per_call_options(demo_index: ClusterIndex) -> None:
    retriever = ClusteredRetriever(index=demo_index, similarity_top_k=5)
    assert isinstance(retriever, BaseRetriever) and retriever.similarity_top_k == 5
    nodes = retriever.retrieve(QUERY)
    hits = demo_index.search(QUERY, k=5)
    assert [n.node.node_id for n in nodes] == [h.id for h in hits]
    assert [n.score for n in nodes] == pytest.approx([h.score for h in hits])  # cosine similarity
    assert all(n.node.metadata["topic_label"] for n in nodes)
    assert {n.node.metadata["model_version"] for n in nodes} == {demo_index.model_info.version}
    other = next(t for t in demo_index.topics() if t.id != nodes[0].node.metadata["topic_id"])
    within = retriever.retrieve(QUERY, similarity_top_k=3, topics=[other.id])
    assert len(within) == 3 and all(n.node.metadata["topic_id"] == other.id for n in within)
    rate = MetadataFilters(filters=[MetadataFilter(key="label", value="exchange_rate")])
    for kwargs in ({"filters": rate}, {"where": {"label": "exchange_rate"}}):
        got = retriever.retrieve(QUERY, similarity_top_k=4, **kwargs)
        assert len(got) == 4 and all(n.node.metadata["label"] == "exchange_rate" for n in got)
    # constructor filters, cleared per call
    filtered = ClusteredRetriever(index=demo_index, similarity_top_k=4, filters=rate)
    assert all(n.node.metadata["label"] == "exchange_rate" for n in filtered.retrieve(QUERY))
    assert [n.node.node_id for n in filtered.retrieve(QUERY, filters=None)] == [h.id for h in hits[:4]]


def test_bad_options_raise_typed_errors(demo_index: ClusterIndex) -> None:
    with pytest.raises(InvalidInputError, match="k=0"):
        ClusteredRetriever(index=demo_index, similarity_top_k=0)
    with pytest.raises(InvalidInputError, match="not both"):
        ClusteredRetriever(
            index=demo_index,
            where={"label": "x"},
            filters=MetadataFilters(filters=[MetadataFilter(key="label", value="x")]),
        )
    with pytest.raises(InvalidInputError, match="index must be a cluster_rag.ClusterIndex"):
        ClusteredRetriever(index=None)  # type: ignore[arg-type]
    retriever = ClusteredRetriever(index=demo_index)
    with pytest.raises(InvalidInputError, match=r"unknown retrieval option\(s\) \['k'\]"):
        retriever.retrieve(QUERY, k=3)
    with pytest.raises(UnknownTopicError, match="no topic named 'nope'"):
        retriever.retrieve(QUERY, topics=["nope"])


async def test_events_and_callbacks_fire_sync_and_async(
    demo_index: ClusterIndex, events: RetrievalEvents
) -> None:
    debug = LlamaDebugHandler()
    retriever = demo_index.as_llama_index_retriever(
        similarity_top_k=3, callback_manager=CallbackManager([debug])
    )
    assert isinstance(retriever, ClusteredRetriever)
    nodes = retriever.retrieve(QUERY)
    anodes = await retriever.aretrieve(QUERY, similarity_top_k=2)
    ids = [n.node.node_id for n in nodes]
    assert [n.node.node_id for n in anodes] == ids[:2]
    assert events.events == [("start", QUERY), ("end", ids), ("start", QUERY), ("end", ids[:2])]
    assert len(debug.get_event_pairs(CBEventType.RETRIEVE)) == 2


async def test_in_retriever_query_engine_with_mock_llm(
    demo_index: ClusterIndex, events: RetrievalEvents
) -> None:
    retriever = ClusteredRetriever(index=demo_index, similarity_top_k=3)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query(QUERY)
    expected = retriever.retrieve(QUERY)
    assert [n.node.node_id for n in response.source_nodes] == [n.node.node_id for n in expected]
    assert [n.score for n in response.source_nodes] == pytest.approx([n.score for n in expected])
    # MockLLM echoes its prompt: the retrieved chunks (with their topic label) reached the LLM
    text = str(response)
    assert QUERY in text and all(n.node.get_content() in text for n in expected)
    assert "topic_label:" in text and "chunk_id" not in text
    aresponse = await engine.aquery(QUERY)
    assert [n.node.node_id for n in aresponse.source_nodes] == [n.node.node_id for n in expected]
    assert [kind for kind, _ in events.events].count("end") == 3  # query, retrieve, aquery


async def test_wrapped_in_retriever_tool(demo_index: ClusterIndex) -> None:
    retriever = ClusteredRetriever(index=demo_index, similarity_top_k=2)
    tool = RetrieverTool.from_defaults(
        retriever, name="search_kb", description="Search the banking FAQ by meaning."
    )
    assert tool.metadata.name == "search_kb"
    out = tool.call(QUERY)
    assert len(out.raw_output) == 2 and all(n.node.get_content() in out.content for n in out.raw_output)
    aout = await tool.acall(QUERY)
    assert [n.node.node_id for n in aout.raw_output] == [n.node.node_id for n in out.raw_output]
