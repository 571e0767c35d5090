"""langchain_cluster_rag.ClusteredRetriever on the real model + real Chroma (fitted Banking77 sample)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from langchain_cluster_rag import ClusteredRetriever, hit_to_document
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnablePassthrough

from cluster_rag import ClusterIndex, Hit, InvalidInputError, UnknownTopicError

pytestmark = pytest.mark.integration
QUERY = "my new card has not arrived yet"


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_retriever_start(self, serialized: dict[str, Any], query: str, **kwargs: Any) -> None:
        self.events.append(("start", query))

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(("end", [d.id for d in documents]))

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(("error", type(error).__name__))

    def on_chat_model_start(self, serialized: dict[str, Any], messages: Any, **kwargs: Any) -> None:
        self.events.append(("llm", messages[0][-1].content))


class AsyncRecorder(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.events: list[str] = []

    async def on_retriever_start(self, serialized: dict[str, Any], query: str, **kwargs: Any) -> None:
        self.events.append("start")

    async def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(f"end:{len(documents)}")


def test_hit_to_document_keeps_ids_scores_and_topics() -> None:
    hit = Hit(
        id="faq.md#3",
        text="Cards arrive in 5 days.",
        score=0.81,
        topic_id=4,
        model_version=2,
        metadata={"source": "faq.md", "score": "user"},
        topic_label="card / arrive",
    )
    doc = hit_to_document(hit)
    assert doc.id == "faq.md#3" and doc.page_content == "Cards arrive in 5 days."
    assert doc.metadata == {
        "source": "faq.md",
        "chunk_id": "faq.md#3",
        "score": 0.81,
        "topic_id": 4,
        "topic_label": "card / arrive",
        "model_version": 2,
    }


def test_invoke_maps_hits_and_per_call_options(demo_index: ClusterIndex) -> None:
    retriever = ClusteredRetriever(index=demo_index, k=5)
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke(QUERY)
    hits = demo_index.search(QUERY, k=5)
    assert [d.id for d in docs] == [h.id for h in hits]
    assert [d.metadata["score"] for d in docs] == pytest.approx([h.score for h in hits])
    assert all(d.metadata["chunk_id"] == d.id and d.metadata["topic_label"] for d in docs)
    assert {d.metadata["model_version"] for d in docs} == {demo_index.model_info.version}
    assert sum(d.metadata["label"] == "card_arrival" for d in docs) >= 3
    # per call: k, topics, where (and LangChain's own verbose kwarg is tolerated)
    other = next(t for t in demo_index.topics() if t.id != docs[0].metadata["topic_id"])
    within = retriever.invoke(QUERY, k=3, topics=[other.label], verbose=False)
    assert len(within) == 3 and all(d.metadata["topic_id"] == other.id for d in within)
    fees = retriever.invoke(QUERY, k=4, where={"label": "exchange_rate"}, n_probe=2)
    assert len(fees) == 4 and all(d.metadata["label"] == "exchange_rate" for d in fees)
    # fields changed after construction apply to the next call
    retriever.k = 2
    assert len(retriever.invoke(QUERY)) == 2


async def test_ainvoke_matches_invoke(demo_index: ClusterIndex) -> None:
    retriever = ClusteredRetriever(index=demo_index, k=4, n_probe=3)
    got = await retriever.ainvoke(QUERY, k=3)
    assert [d.id for d in got] == [d.id for d in retriever.invoke(QUERY, k=3)]
    batch = await retriever.abatch([QUERY, "how do I change my PIN"])
    assert [len(b) for b in batch] == [4, 4]


def test_bad_options_raise_typed_errors(demo_index: ClusterIndex) -> None:
    with pytest.raises(InvalidInputError, match="k=0"):
        ClusteredRetriever(index=demo_index, k=0)
    with pytest.raises(InvalidInputError, match="topics='card'"):
        ClusteredRetriever(index=demo_index, topics="card")
    with pytest.raises(InvalidInputError, match="index must be a cluster_rag.ClusterIndex"):
        ClusteredRetriever(index="./kb")
    retriever = ClusteredRetriever(index=demo_index)
    with pytest.raises(InvalidInputError, match=r"unknown retrieval option\(s\) \['filters'\]"):
        retriever.invoke(QUERY, filters={"label": "x"})
    with pytest.raises(UnknownTopicError, match="no topic named 'nope'"):
        retriever.invoke(QUERY, topics=["nope"])


async def test_callbacks_see_start_end_and_error(demo_index: ClusterIndex) -> None:
    retriever = demo_index.as_langchain_retriever(k=3, tags=["kb"])
    assert isinstance(retriever, ClusteredRetriever) and retriever.k == 3
    rec = Recorder()
    docs = retriever.invoke(QUERY, config={"callbacks": [rec]})
    assert rec.events == [("start", QUERY), ("end", [d.id for d in docs])]
    with pytest.raises(UnknownTopicError):
        retriever.invoke(QUERY, config={"callbacks": [rec]}, topics=["nope"])
    assert rec.events[-1] == ("error", "UnknownTopicError")
    arec = AsyncRecorder()
    await retriever.ainvoke(QUERY, config={"callbacks": [arec]})
    assert arec.events == ["start", "end:3"]


def test_in_a_rag_chain_with_a_fake_chat_model(demo_index: ClusterIndex) -> None:
    retriever = ClusteredRetriever(index=demo_index, k=3)

    def format_docs(docs: list[Document]) -> str:
        return "\n".join(f"[{d.id}] {d.page_content}" for d in docs)

    prompt = ChatPromptTemplate.from_messages(
        [("human", "Answer from the context.\nContext:\n{context}\nQuestion: {question}")]
    )
    llm = FakeListChatModel(responses=["Cards usually arrive within a week."])
    inputs = {"context": retriever | format_docs, "question": RunnablePassthrough()}
    chain = inputs | prompt | llm | StrOutputParser()
    rec = Recorder()
    answer = chain.invoke(QUERY, config={"callbacks": [rec]})
    assert answer == "Cards usually arrive within a week."
    kinds = [kind for kind, _ in rec.events]
    assert kinds == ["start", "end", "llm"]
    sent = rec.events[2][1]
    ids = rec.events[1][1]
    assert len(ids) == 3 and all(f"[{cid}]" in sent for cid in ids) and QUERY in sent


def test_langchain_chroma_search_types_and_kwargs(demo_index: ClusterIndex) -> None:
    plain = ClusteredRetriever(index=demo_index, search_kwargs={"k": 8})
    assert len(plain.invoke(QUERY)) == 8
    filtered = ClusteredRetriever(
        index=demo_index, search_kwargs={"k": 4, "filter": {"label": "card_arrival"}}
    )
    docs = filtered.invoke(QUERY)
    assert len(docs) == 4 and {d.metadata["label"] for d in docs} == {"card_arrival"}
    assert all(
        d.metadata["label"] == "pin_blocked" for d in filtered.invoke(QUERY, filter={"label": "pin_blocked"})
    )

    similar = [d.id for d in demo_index.as_langchain_retriever(k=8).invoke(QUERY)]
    mmr = demo_index.as_langchain_retriever(
        search_type="mmr", search_kwargs={"k": 8, "fetch_k": 40, "lambda_mult": 0.2}
    )
    diverse = [d.id for d in mmr.invoke(QUERY)]
    assert len(diverse) == 8 and diverse[0] == similar[0] and diverse != similar  # MMR reorders the pool
    dense = [h.id for h in demo_index.search(QUERY, k=8, mode="dense")]
    assert [d.id for d in mmr.invoke(QUERY, lambda_mult=1.0)] == dense  # lambda 1 = embedding-similarity order

    scores = [d.metadata["score"] for d in plain.invoke(QUERY, k=20)]
    cut = sorted(scores)[len(scores) // 2]
    thresholded = ClusteredRetriever(
        index=demo_index,
        search_type="similarity_score_threshold",
        search_kwargs={"score_threshold": cut, "k": 20},
    )
    kept = thresholded.invoke(QUERY)
    assert 0 < len(kept) < 20 and all(d.metadata["score"] >= cut for d in kept)
    assert thresholded.invoke(QUERY, score_threshold=0.99) == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"search_kwargs": {"kk": 3}}, r"unknown search_kwargs key\(s\) \['kk'\]; accepted"),
        ({"search_kwargs": {"k": "8"}}, r"k='8' must be a positive int"),
        ({"search_kwargs": {"filter": "label=x"}}, r"filter='label=x' must be a Chroma where dict"),
        ({"search_kwargs": {"filter": {"a": 1}, "where": {"a": 1}}}, "not both"),
        ({"search_type": "hybrid"}, r"search_type='hybrid' is not one of"),
        ({"search_type": "similarity_score_threshold"}, "needs search_kwargs=.*score_threshold"),
        (
            {"search_kwargs": {"score_threshold": 0.5}},
            "used by search_type='similarity_score_threshold' only",
        ),
        (
            {"search_type": "mmr", "search_kwargs": {"lambda_mult": 2}},
            r"lambda_mult=2 must be a number in \[0, 1\]",
        ),
        ({"search_kwargs": {"lambda_mult": 0.5}}, "used by search_type='mmr' only"),
        ({"k": 3, "search_kwargs": {"k": 8}}, r"\['k'\] given both"),
    ],
)
def test_search_kwargs_errors_name_the_key(
    demo_index: ClusterIndex, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ClusteredRetriever(index=demo_index, **params)


def test_per_call_typos_are_rejected(demo_index: ClusterIndex) -> None:
    retriever = ClusteredRetriever(index=demo_index, search_type="mmr")
    with pytest.raises(InvalidInputError, match=r"unknown retrieval option\(s\) \['fetchk'\]"):
        retriever.invoke(QUERY, fetchk=10)
    with pytest.raises(InvalidInputError, match="k=0 must be a positive int"):
        retriever.invoke(QUERY, k=0)
