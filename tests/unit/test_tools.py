"""cluster_rag.tools: the agent tools, their OpenAI schemas and dispatch (fake embedder, real Chroma)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from cluster_rag import (
    ClusterIndex,
    Hit,
    IndexConfig,
    InvalidInputError,
    UnknownDocumentError,
    UnknownTopicError,
)
from cluster_rag.tools import TOOL_NAMES, TopicTools, openai_tools
from tests.fixtures import FakeEmbedder

CFG = IndexConfig(progress=False, chunk_size=200, chunk_overlap=20)
VOCAB = {
    "pets": "dog cat puppy kitten leash bark meow vet",
    "space": "rocket orbit moon mars launch astronaut nasa planet",
    "food": "pasta pizza recipe oven garlic tomato cheese bake",
}


@pytest.fixture
def index(tmp_path: Path) -> ClusterIndex:
    rng = np.random.default_rng(0)
    texts, metas = [], []
    for name, words in VOCAB.items():
        for i in range(30):
            texts.append(" ".join(rng.choice(words.split(), size=6)) + f" note {name} {i}")
            metas.append({"topic": name})
    idx = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)
    idx.add_texts(texts, metas, ids=[f"n{i}" for i in range(len(texts))])
    idx.fit(k=3)
    return idx


def topic_of(index: ClusterIndex, name: str) -> int:
    return index.search(VOCAB[name], k=1)[0].topic_id


# schemas ------------------------------------------------------------------------------
def _assert_strict(schema: dict[str, Any]) -> None:
    """OpenAI strict mode: every object closed and every property required; nullables by type."""
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == sorted(schema["properties"])
    for prop in schema["properties"].values():
        kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        assert set(kinds) <= {"string", "integer", "null"} and prop["description"]
        assert not {"default", "minimum", "maximum", "anyOf"} & set(prop)  # keywords strict mode may refuse


def test_openai_schemas_are_strict_and_match_the_validator() -> None:
    chat = openai_tools()
    assert [t["function"]["name"] for t in chat] == list(TOOL_NAMES)
    for tool in chat:
        assert tool["type"] == "function" and tool["function"]["strict"] is True
        _assert_strict(tool["function"]["parameters"])
        jsonschema.Draft202012Validator.check_schema(tool["function"]["parameters"])
    responses = openai_tools(api="responses")
    assert [t["name"] for t in responses] == list(TOOL_NAMES) and all(t["strict"] for t in responses)
    schema = chat[1]["function"]["parameters"]
    jsonschema.validate({"query": "q", "topic": "3", "k": None}, schema)
    for bad in ({"query": "q", "topic": "3"}, {"query": "q", "topic": "3", "k": None, "x": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    with pytest.raises(InvalidInputError, match="'chat' or 'responses'"):
        openai_tools(api="assistants")  # type: ignore[arg-type]


def test_limits_are_validated_and_quoted(index: ClusterIndex) -> None:
    tools = TopicTools(index, max_k=7, max_topics=2)
    described = json.dumps(tools.openai_tools())
    assert "1 to 7" in described and "1 to 2" in described
    for kwargs in ({"max_k": 0}, {"max_chars": 5}, {"neighbours": 9}, {"max_topics": True}):
        with pytest.raises(InvalidInputError, match=next(iter(kwargs))):
            TopicTools(index, **kwargs)


# list_topics ---------------------------------------------------------------------------
def test_list_topics_by_size_and_by_query(index: ClusterIndex) -> None:
    tools = TopicTools(index, max_keywords=3)
    plain = tools.list_topics()
    assert plain["total_topics"] == 3 and plain["returned"] == 3
    sizes = [t["size"] for t in plain["topics"]]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == 90
    assert all(len(t["keywords"]) <= 3 and t["name"] and "score" not in t for t in plain["topics"])
    ranked = tools.list_topics("rocket launch to mars", limit=2)
    assert ranked["returned"] == 2
    assert ranked["topics"][0]["id"] == topic_of(index, "space")
    assert ranked["topics"][0]["score"] >= ranked["topics"][1]["score"]
    assert tools.list_topics("   ")["topics"] == plain["topics"]  # blank query: same as none


def test_list_topics_batch_matches_one_by_one(index: ClusterIndex) -> None:
    tools = TopicTools(index)
    queries = ["rocket launch to mars", "pizza with garlic", "puppy at the vet"]
    batch = tools.list_topics_batch(queries, limit=2)
    single = [tools.list_topics(q, limit=2) for q in queries]
    assert [[t["id"] for t in b["topics"]] for b in batch] == [[t["id"] for t in s["topics"]] for s in single]
    for b, s in zip(batch, single, strict=True):
        assert [t["score"] for t in b["topics"]] == pytest.approx([t["score"] for t in s["topics"]], abs=1e-3)
    assert [b["topics"][0]["id"] for b in tools.list_topics_batch(queries)] == [
        topic_of(index, name) for name in ("space", "food", "pets")
    ]
    assert tools.list_topics_batch([]) == []
    with pytest.raises(InvalidInputError, match="single str"):
        tools.list_topics_batch("rocket")
    with pytest.raises(InvalidInputError, match=r"queries\[1\]"):
        tools.list_topics_batch(["rocket", " "])


def test_list_topics_caps_and_rejects(index: ClusterIndex) -> None:
    tools = TopicTools(index, max_topics=2)
    capped = tools.list_topics(limit=50)
    assert capped["returned"] == 2 and "capped at 2" in capped["note"]
    for bad in (0, -3, "5", True):
        with pytest.raises(InvalidInputError, match="limit"):
            tools.list_topics(limit=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="query"):
        tools.list_topics(query=42)  # type: ignore[arg-type]


# search_within_topic ----------------------------------------------------------------------
def test_search_within_topic_by_id_name_and_digit_string(index: ClusterIndex) -> None:
    tools = TopicTools(index)
    food = topic_of(index, "food")
    name = index.topic(food).label
    by_id = tools.search_within_topic("rocket moon", food, k=4)
    assert by_id["topic"]["id"] == food and by_id["topic"]["name"] == name
    assert len(by_id["hits"]) == 4
    assert all(index.get([h["id"]])[0].topic_id == food for h in by_id["hits"])
    assert [h["id"] for h in tools.search_within_topic("rocket moon", name.upper(), k=4)["hits"]] == [
        h["id"] for h in by_id["hits"]
    ]
    assert tools.search_within_topic("rocket moon", str(food), k=4)["hits"] == by_id["hits"]
    scores = [h["score"] for h in by_id["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_search_within_topic_bounds_and_errors(index: ClusterIndex) -> None:
    tools = TopicTools(index, max_k=3, max_chars=20)
    out = tools.search_within_topic("pizza", 0, k=100)
    assert len(out["hits"]) == 3 and "k=100 was capped at 3" in out["note"]
    assert all(len(h["text"]) <= 20 and h["truncated"] and h["text"].endswith("…") for h in out["hits"])
    with pytest.raises(UnknownTopicError, match="closest names.*list_topics"):
        tools.search_within_topic("pizza", "no such topic at all")
    with pytest.raises(UnknownTopicError, match="0 to 2"):
        tools.search_within_topic("pizza", 7)
    with pytest.raises(InvalidInputError, match="non-blank"):
        tools.search_within_topic("  ", 0)
    with pytest.raises(InvalidInputError, match="k="):
        tools.search_within_topic("pizza", 0, k=0)


# get_document ------------------------------------------------------------------------------
def test_get_document_neighbours_from_files(tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text(" ".join(f"Sentence {i} about rockets and the moon." for i in range(60)))
    records = tmp_path / "tickets.jsonl"
    lines = [{"id": "long", "text": "pizza oven cheese garlic " * 30}]
    lines += [{"id": f"t{i}", "text": f"short ticket {i} about my dog"} for i in range(5)]
    records.write_text("\n".join(json.dumps(x) for x in lines))
    index = ClusterIndex.open(tmp_path / "kb", embedder=FakeEmbedder(), config=CFG)
    index.ingest_files([notes, records])
    index.fit(k=2)
    tools = TopicTools(index, neighbours=2, max_chars=50, max_document_chars=60)
    middle = f"{notes.as_posix()}#5"
    doc = tools.get_document(middle)
    # agents see paths relative to the ingest root (issue 16), and may pass either form back
    assert doc["id"] == "notes.md#5" and doc["metadata"]["source"] == "notes.md"
    assert tools.get_document("notes.md#5") == doc and str(tmp_path) not in json.dumps(doc)
    assert doc["metadata"]["chunk_index"] == 5 and doc["truncated"]
    assert len(doc["text"]) == 60 and doc["topic"]["name"]
    assert [(n["chunk_index"], n["position"]) for n in doc["neighbours"]] == [
        (3, "before"),
        (4, "before"),
        (6, "after"),
        (7, "after"),
    ]
    assert all(n["id"] == f"notes.md#{n['chunk_index']}" for n in doc["neighbours"])
    assert all(len(n["text"]) <= 50 for n in doc["neighbours"])
    first = tools.get_document(f"{notes.as_posix()}#0")
    assert [n["chunk_index"] for n in first["neighbours"]] == [1, 2]
    split = tools.get_document("long#1")  # a long record split in pieces: its own pieces only
    assert {n["id"] for n in split["neighbours"]} <= {"long#0", "long#2", "long#3"}
    assert "long#0" in {n["id"] for n in split["neighbours"]}
    assert tools.get_document("t2")["neighbours"] == []  # one-chunk records have no neighbours
    assert TopicTools(index, neighbours=0).get_document(middle)["neighbours"] == []


def test_get_document_custom_ids_and_errors(index: ClusterIndex) -> None:
    index.add_texts(
        ["part one of the manual", "part two of the manual", "part three", "an orphan chunk", "a twin"],
        [
            {"source": "manual.pdf", "chunk_index": 0},
            {"source": "manual.pdf", "chunk_index": 1},
            {"source": "manual.pdf", "chunk_index": 2},
            {"source": "dup.pdf", "chunk_index": 0},
            {"source": "dup.pdf", "chunk_index": 0},
        ],
        ids=["m-a", "m-b", "m-c", "d-a", "d-b"],
    )
    index.add_texts(["next to both twins"], [{"source": "dup.pdf", "chunk_index": 1}], ids=["d-c"])
    tools = TopicTools(index)
    assert [n["id"] for n in tools.get_document("m-b")["neighbours"]] == ["m-a", "m-c"]
    assert tools.get_document("d-c")["neighbours"] == []  # two chunks claim position 0: ambiguous
    assert tools.get_document("n3")["neighbours"] == []  # no source / chunk_index metadata
    with pytest.raises(UnknownDocumentError, match="no chunk with id 'nope'"):
        tools.get_document("nope")
    with pytest.raises(InvalidInputError, match="non-empty string"):
        tools.get_document("")


# dispatch --------------------------------------------------------------------------------
def test_dispatch_accepts_openai_objects_dicts_and_responses_items(index: ClusterIndex) -> None:
    from openai.types.chat import ChatCompletionMessageFunctionToolCall
    from openai.types.responses import ResponseFunctionToolCall

    tools = TopicTools(index)
    args = json.dumps({"query": "dog vet", "limit": 1})
    call = ChatCompletionMessageFunctionToolCall.model_validate(
        {"id": "call_1", "type": "function", "function": {"name": "list_topics", "arguments": args}}
    )
    from_object = json.loads(tools.dispatch(call))
    assert from_object["topics"][0]["id"] == topic_of(index, "pets")
    as_dict = {"id": "call_1", "type": "function", "function": {"name": "list_topics", "arguments": args}}
    assert json.loads(tools.dispatch(as_dict)) == from_object
    item = ResponseFunctionToolCall(type="function_call", call_id="c", name="list_topics", arguments=args)
    assert json.loads(tools.dispatch(item)) == from_object
    message = tools.tool_message(call)
    assert message["role"] == "tool" and message["tool_call_id"] == "call_1"
    assert json.loads(message["content"]) == from_object
    doc_id = from_object and tools.search_within_topic("dog", topic_of(index, "pets"), k=1)["hits"][0]["id"]
    got = json.loads(tools.call("get_document", {"id": doc_id}))
    assert got["id"] == doc_id and got["metadata"]["topic"] == "pets"
    nulls = json.loads(tools.call("search_within_topic", {"query": "dog", "topic": 0, "k": None}))
    assert len(nulls["hits"]) == 5  # null k: the default


@pytest.mark.parametrize(
    ("call", "error_type", "fragment"),
    [
        ({"function": {"name": "drop_table", "arguments": "{}"}}, "InvalidInputError", "available tools"),
        ({"function": {"name": "list_topics", "arguments": "{oops"}}, "InvalidInputError", "not valid JSON"),
        ({"function": {"name": "list_topics", "arguments": "[1]"}}, "InvalidInputError", "JSON object"),
        (
            {"function": {"name": "list_topics", "arguments": '{"limit": "3"}'}},
            "InvalidInputError",
            "'limit' must be integer or null",
        ),
        (
            {"function": {"name": "list_topics", "arguments": '{"limit": 0}'}},
            "InvalidInputError",
            "positive integer",
        ),
        (
            {"function": {"name": "search_within_topic", "arguments": '{"query": "x"}'}},
            "InvalidInputError",
            "needs argument 'topic'",
        ),
        (
            {
                "function": {
                    "name": "search_within_topic",
                    "arguments": '{"query": "x", "topic": "0", "n": 1}',
                }
            },
            "InvalidInputError",
            "unexpected argument(s) ['n']",
        ),
        (
            {"function": {"name": "search_within_topic", "arguments": '{"query": "x", "topic": "zzz"}'}},
            "UnknownTopicError",
            "closest names",
        ),
        (
            {"function": {"name": "get_document", "arguments": '{"id": "missing"}'}},
            "UnknownDocumentError",
            "no chunk with id 'missing'",
        ),
        ({"function": {"arguments": "{}"}}, "InvalidInputError", "no function name"),
    ],
)
def test_bad_calls_come_back_as_readable_json(
    index: ClusterIndex, call: dict[str, Any], error_type: str, fragment: str
) -> None:
    out = json.loads(TopicTools(index).dispatch(call))
    assert out["error_type"] == error_type and fragment in out["error"]


def test_unfitted_and_unexpected_failures_do_not_raise(tmp_path: Path) -> None:
    bare = ClusterIndex.open(tmp_path / "bare", embedder=FakeEmbedder(), config=CFG)
    out = json.loads(TopicTools(bare).call("list_topics", {}))
    assert out["error_type"] == "NotFittedError" and "fit()" in out["error"]

    class Broken:
        @property
        def model(self) -> None:
            raise RuntimeError("disk on fire")

    out = json.loads(TopicTools(Broken()).call("list_topics", None))  # type: ignore[arg-type]
    assert out["error_type"] == "RuntimeError" and "disk on fire" in out["error"]


def test_search_within_topic_passes_mode_and_reranker_through(index: ClusterIndex) -> None:
    class Shortest:
        """Re-ranker stand-in: shortest passage first."""

        def __call__(self, query: str, hits: list[Hit]) -> list[Hit]:
            return sorted(hits, key=lambda h: (len(h.text), h.id))

    space = topic_of(index, "space")
    plain = TopicTools(index, mode="dense").search_within_topic("rocket orbit", space, k=5)["hits"]
    ranked = TopicTools(index, mode="dense", reranker=Shortest())
    out = json.loads(
        ranked.dispatch(
            {
                "function": {
                    "name": "search_within_topic",
                    "arguments": json.dumps({"query": "rocket orbit", "topic": space, "k": 5}),
                }
            }
        )
    )
    lengths = [len(h["text"]) for h in out["hits"]]
    assert lengths == sorted(lengths) and [h["id"] for h in out["hits"]] != [h["id"] for h in plain]
    with pytest.raises(InvalidInputError, match="mode="):
        TopicTools(index, mode="fuzzy")
