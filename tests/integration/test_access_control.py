"""Access control (issue 11): a Scope fixed at construction, enforced in the core, at every door.

A property-based test builds random multi-tenant collections (tenant names that differ
only in case among them, chunks of different tenants sharing one source file and one
id base, so neighbours cross tenants) and drives adversarial arguments through every
door: the Python API, the core / LangChain / LlamaIndex retrievers (sync and async),
OpenAI tool dispatch, LangChain tools, the LlamaIndex ToolSpec and the MCP server driven
by the real ``mcp`` SDK client over stdio. Every output is checked for chunks, ids,
keywords, e-mail addresses or texts of another scope (each tenant's texts, ids and
metadata carry a marker ``zz<j>y`` nobody else has). The fake embedder keeps it fast;
counts of cases per door are printed at the end of the module (``-s``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.errors import ClusterRagError, InvalidInputError
from cluster_rag.retriever import ClusteredRetriever
from cluster_rag.scope import Scope
from cluster_rag.tools import TopicTools
from tests.fixtures import FakeEmbedder

pytestmark = pytest.mark.integration

CFG = IndexConfig(progress=False)
ROOT = "/srv/kb"  # absolute ingest root of the shared source file
VOCAB = (
    "card fee atm cash pin transfer loan mortgage refund travel account balance statement "
    "limit fraud dispute branch savings interest deposit cheque wire currency exchange"
).split()
TENANT_NAMES = ("acme", "Acme", "ACME", "beta", "b", "gamma-1", "delta")
CASES: Counter[str] = Counter()


@dataclass
class Corpus:
    index: ClusterIndex
    tenants: list[str]  # tenant j has marker zz<j>y
    owner: dict[str, int]  # chunk id -> tenant position

    def marker(self, j: int) -> str:
        return f"zz{j}y"


def build_corpus(path: Path, tenants: list[str], sizes: list[int], seed: int, k: int) -> Corpus:
    import random

    rnd = random.Random(seed)
    texts, metas, ids = [], [], []
    owner: dict[str, int] = {}
    n = 0
    for j, size in enumerate(sizes):
        for i in range(size):
            words = [rnd.choice(VOCAB) for _ in range(rnd.randint(4, 8))]
            text = " ".join(words) + f" zz{j}ytok{i} zz{j}y{i}@mail.example"
            meta: dict[str, Any] = {"tenant": tenants[j], "email": f"zz{j}y{i}@mail.example"}
            if i % 2 == 0:  # ingest convention, one shared absolute source: neighbours cross tenants
                cid = f"{ROOT}/shared.md#{n}"
                meta.update(source=f"{ROOT}/shared.md", chunk_index=n)
                n += 1
            else:  # metadata-only neighbours in another shared source
                cid = f"zz{j}y-{i}"
                meta.update(source="notes.pdf", chunk_index=rnd.randint(0, 6))
            texts.append(text)
            metas.append(meta)
            ids.append(cid)
            owner[cid] = j
    index = ClusterIndex.open(path, embedder=FakeEmbedder(), config=CFG)
    index.add_texts(texts, metas, ids)
    index.fit(k=k)
    return Corpus(index, tenants, owner)


# ---- the leak check -------------------------------------------------------------------
def _scrub(text: str, arguments: list[str]) -> str:
    """``text`` without the caller's own argument strings (echoed queries and ids are not leaks)."""
    for arg in sorted(arguments, key=len, reverse=True):
        if len(arg) >= 4:
            text = text.replace(arg, "").replace(json.dumps(arg)[1:-1], "")
    return text


def assert_no_leak(corpus: Corpus, allowed: set[int], output: Any, arguments: list[str]) -> None:
    text = output if isinstance(output, str) else json.dumps(output, default=str, ensure_ascii=False)
    text = _scrub(text, arguments)
    for j in range(len(corpus.tenants)):
        if j not in allowed:
            assert corpus.marker(j) not in text, f"tenant {j} leaked: {text[:400]}"
    for cid, j in corpus.owner.items():
        if j in allowed or cid in arguments:
            continue
        shown = cid[len(ROOT) + 1 :] if cid.startswith(ROOT) else cid
        assert f'"{shown}"' not in text and f"'{shown}'" not in text, f"id {cid} of tenant {j} leaked"


def texts_of(items: list[Any]) -> list[Any]:
    out = []
    for item in items:
        if hasattr(item, "page_content"):  # LangChain Document
            out.append({"id": item.id, "text": item.page_content, "metadata": item.metadata})
        elif hasattr(item, "node"):  # LlamaIndex NodeWithScore
            node = item.node
            out.append({"id": node.node_id, "text": node.get_content(), "metadata": node.metadata})
        elif hasattr(item, "to_dict"):
            out.append(item.to_dict())
        else:
            out.append(item)
    return out


# ---- adversarial arguments --------------------------------------------------------------
def where_strategy(corpus: Corpus, own: str) -> st.SearchStrategy[Any]:
    names = st.sampled_from(corpus.tenants)
    return st.one_of(
        st.none(),
        names.map(lambda t: {"tenant": t}),
        names.map(lambda t: {"$or": [{"tenant": t}, {"tenant": own}]}),
        names.map(lambda t: {"TENANT": t}),
        names.map(lambda t: {"Tenant": {"$ne": t}}),
        st.just({"tenant": {"$in": list(corpus.tenants)}}),
        st.just({"tenant": {"$ne": own}}),
        st.just({"email": {"$ne": ""}}),
    )


def id_strategy(corpus: Corpus) -> st.SearchStrategy[str]:
    ids = sorted(corpus.owner)
    return st.one_of(
        st.sampled_from(ids),
        st.sampled_from(ids).map(lambda c: c[len(ROOT) + 1 :] if c.startswith(ROOT) else c),
        st.integers(0, 60).map(lambda i: f"{ROOT}/shared.md#{i}"),
        st.integers(0, 60).map(lambda i: f"shared.md#{i}"),
        st.text("abcdef-#", min_size=1, max_size=8),
    )


def topic_strategy(corpus: Corpus) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(-2, corpus.index.model.k + 2),
        st.integers(0, corpus.index.model.k + 2).map(str),
        st.integers(0, len(corpus.tenants) - 1).map(lambda j: f"zz{j}ytok1"),
        st.sampled_from(VOCAB),
    )


def query_strategy(corpus: Corpus) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(st.sampled_from(VOCAB), min_size=1, max_size=5).map(" ".join),
        st.integers(0, len(corpus.tenants) - 1).map(lambda j: f"zz{j}ytok2 card"),
    )


# ---- the doors --------------------------------------------------------------------------
def tool_args(data: st.DataObject, corpus: Corpus, own: str) -> tuple[str, dict[str, Any]]:
    name = data.draw(st.sampled_from(["list_topics", "search_within_topic", "get_document"]))
    if name == "list_topics":
        query = data.draw(st.none() | query_strategy(corpus))
        return name, {"query": query, "limit": data.draw(st.integers(1, 60))}
    if name == "search_within_topic":
        return name, {
            "query": data.draw(query_strategy(corpus)),
            "topic": data.draw(topic_strategy(corpus)),
            "k": data.draw(st.integers(1, 25)),
        }
    return name, {"id": data.draw(id_strategy(corpus))}


def arg_strings(args: Any) -> list[str]:
    if isinstance(args, dict):
        return [s for v in args.values() for s in arg_strings(v)]
    if isinstance(args, (list, tuple)):
        return [s for v in args for s in arg_strings(v)]
    return [args] if isinstance(args, str) and len(args) >= 4 else []


def run_door(door: str, corpus: Corpus, scope: Scope, own: str, data: st.DataObject, seen: list[str]) -> Any:
    """One adversarial call through ``door``; returns what it answered. The caller's own argument
    strings are appended to ``seen`` before the call (an echoed argument is not a leak)."""
    index = corpus.index
    real_draw = data.draw

    def draw(strategy: st.SearchStrategy[Any]) -> Any:
        value = real_draw(strategy)
        seen.extend(arg_strings(value))
        return value

    data = _Drawer(draw)  # type: ignore[assignment]
    if door == "api":
        op = data.draw(st.sampled_from(["search", "get", "topics", "topic"]))
        if op == "search":
            args = {
                "query": data.draw(query_strategy(corpus)),
                "where": data.draw(where_strategy(corpus, own)),
                "topics": data.draw(st.none() | st.lists(topic_strategy(corpus), min_size=1, max_size=2)),
            }
            out: Any = index.search(args["query"], k=data.draw(st.integers(1, 30)), where=args["where"],
                                    topics=args["topics"], scope=scope)
            return texts_of(out)
        if op == "get":
            ids = data.draw(st.lists(id_strategy(corpus), min_size=1, max_size=8))
            return texts_of(index.get(ids, scope=scope))
        if op == "topics":
            return texts_of(index.topics(scope=scope))
        item = data.draw(topic_strategy(corpus))
        return index.topic(item, scope=scope).to_dict()
    if door in ("retriever", "retriever_async"):
        retriever = ClusteredRetriever(index, k=5, where={"tenant": own}, scope=scope)
        args = {"query": data.draw(query_strategy(corpus)), "where": data.draw(where_strategy(corpus, own))}
        if door == "retriever":
            hits = retriever.retrieve(args["query"], where=args["where"], k=data.draw(st.integers(1, 30)))
        else:
            hits = asyncio.run(retriever.aretrieve(args["query"], where=args["where"]))
        return texts_of(hits)
    if door in ("langchain_retriever", "langchain_retriever_async"):
        from langchain_cluster_rag import ClusteredRetriever as LCRetriever

        lc = LCRetriever(index=index, k=5, search_kwargs={"filter": {"tenant": own}}, scope=scope)
        args = {"query": data.draw(query_strategy(corpus)), "where": data.draw(where_strategy(corpus, own))}
        key = data.draw(st.sampled_from(["where", "filter"]))
        if door == "langchain_retriever":
            docs = lc.invoke(args["query"], **{key: args["where"]})
        else:
            docs = asyncio.run(lc.ainvoke(args["query"], **{key: args["where"]}))
        return texts_of(docs)
    if door in ("llama_retriever", "llama_retriever_async"):
        from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters
        from llama_index.retrievers.cluster_rag import ClusteredRetriever as LIRetriever

        li = LIRetriever(index=index, similarity_top_k=5, scope=scope)
        other = data.draw(st.sampled_from(corpus.tenants))
        filters = data.draw(st.sampled_from([
            None,
            MetadataFilters(filters=[MetadataFilter(key="tenant", value=other)]),
            MetadataFilters(filters=[MetadataFilter(key="tenant", value=other),
                                     MetadataFilter(key="tenant", value=own)], condition="or"),
        ]))
        query = data.draw(query_strategy(corpus))
        if door == "llama_retriever":
            nodes = li.retrieve(query, filters=filters)
        else:
            nodes = asyncio.run(li.aretrieve(query, filters=filters))
        return texts_of(nodes)
    if door == "openai_dispatch":
        tools = TopicTools(index, scope=scope)
        name, args = tool_args(data, corpus, own)
        out = tools.dispatch({"id": "c1", "function": {"name": name, "arguments": json.dumps(args)}})
        return out
    if door == "langchain_tools":
        from langchain_cluster_rag import make_tools

        lc_tools = {t.name: t for t in make_tools(index, scope=scope)}
        name, args = tool_args(data, corpus, own)
        return lc_tools[name].invoke(args)
    if door == "llama_toolspec":
        from llama_index.tools.cluster_rag import ClusterRagToolSpec

        li_tools = {t.metadata.name: t for t in ClusterRagToolSpec(index, scope=scope).to_tool_list()}
        name, args = tool_args(data, corpus, own)
        return li_tools[name].call(**args).content
    raise AssertionError(door)


class _Drawer:
    def __init__(self, draw: Any) -> None:
        self.draw = draw


DOORS = (
    "api", "retriever", "retriever_async", "langchain_retriever", "langchain_retriever_async",
    "llama_retriever", "llama_retriever_async", "openai_dispatch", "langchain_tools", "llama_toolspec",
)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large
    ],
    derandomize=True,
)
@given(data=st.data())
def test_no_door_leaks_another_scope(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    names = data.draw(st.lists(st.sampled_from(TENANT_NAMES), min_size=2, max_size=4, unique=True), "tenants")
    sizes = data.draw(st.lists(st.integers(6, 22), min_size=len(names), max_size=len(names)), "sizes")
    k = data.draw(st.integers(3, 6), "k")
    corpus = build_corpus(tmp_path_factory.mktemp("kb"), names, sizes, data.draw(st.integers(0, 999)), k)
    index = corpus.index
    own_j = data.draw(st.integers(0, len(names) - 1), "own")
    kind = data.draw(st.sampled_from(["one", "in", "one+topics"]), "scope kind")
    allowed = {own_j}
    topics = None
    if kind == "in" and len(names) > 2:
        allowed = {own_j, (own_j + 1) % len(names)}
    where: dict[str, Any] = (
        {"tenant": names[own_j]} if len(allowed) == 1 else {"tenant": {"$in": [names[j] for j in allowed]}}
    )
    if kind == "one+topics":
        ids = [t.id for t in index.topics()]
        allow = st.lists(st.sampled_from(ids), min_size=1, max_size=len(ids), unique=True)
        topics = data.draw(allow, "allow")
    scope = Scope(where=where, topics=topics)
    chunk_ids, labels = index.model.assignments()
    topic_of = {str(c): int(p) for c, p in zip(chunk_ids, labels, strict=True)}
    for _ in range(50):
        door = data.draw(st.sampled_from(DOORS))
        arguments: list[str] = []
        try:
            out = run_door(door, corpus, scope, names[own_j], data, arguments)
        except ClusterRagError as exc:  # typed errors are answers too: no leak in them either
            assert_no_leak(corpus, allowed, str(exc), arguments)
            CASES[door] += 1
            continue
        assert_no_leak(corpus, allowed, out, arguments)
        if topics is not None:  # an allow-list: every chunk shown lies in an allowed topic
            shown = json.dumps(out, default=str)
            for cid, pos in topic_of.items():
                if index.model.topics[pos].id not in topics and corpus.owner.get(cid) == own_j:
                    rel = cid[len(ROOT) + 1 :] if cid.startswith(ROOT) else cid
                    assert f'"{rel}"' not in _scrub(shown, arguments) and f'"{cid}"' not in _scrub(
                        shown, arguments
                    ), f"chunk {cid} of a topic outside the allow-list was shown"
        CASES[door] += 1


@pytest.fixture(scope="module", autouse=True)
def _report_cases() -> Iterator[None]:
    yield
    if CASES:
        print(f"\naccess-control cases per door: {dict(sorted(CASES.items()))} (total {sum(CASES.values())})")


# ---- the MCP door: the real SDK client over stdio -----------------------------------------
SERVER = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.fixtures import FakeEmbedder
from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.mcp_server import serve
from cluster_rag.scope import Scope
from cluster_rag.tools import TopicTools
config = IndexConfig(progress=False)
index = ClusterIndex.open(sys.argv[2], embedder=FakeEmbedder(), config=config, create=False)
serve(index, tools=TopicTools(index, scope=Scope.from_env(), max_result_bytes=int(sys.argv[3])))
"""
REPO = str(Path(__file__).resolve().parents[2])


@asynccontextmanager
async def mcp_session(kb: Path, scope_json: str, budget: int, errlog: Any) -> AsyncIterator[Any]:
    """A real ``mcp`` SDK client session with a scoped server (scope from ``$CLUSTER_RAG_SCOPE``)."""
    from mcp import ClientSession, StdioServerParameters, stdio_client

    env = {**os.environ, "CLUSTER_RAG_SCOPE": scope_json}
    args = ["-c", SERVER, REPO, str(kb), str(budget)]
    params = StdioServerParameters(command=sys.executable, args=args, env=env)
    async with stdio_client(params, errlog=errlog) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=120) as session:  # type: ignore[arg-type]
            await session.initialize()
            yield session


@contextmanager
def blocking_session(kb: Path, scope_json: str, budget: int, log: Path) -> Iterator[tuple[Any, Any]]:
    """The session driven from synchronous (hypothesis) code through an anyio portal."""
    from anyio.from_thread import start_blocking_portal

    with log.open("w") as errlog, start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(mcp_session(kb, scope_json, budget, errlog)) as session:
            yield portal, session


@pytest.fixture(scope="module")
def mcp_door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Corpus, Any, Any]]:
    base = tmp_path_factory.mktemp("mcp-door")
    corpus = build_corpus(base / "kb", ["acme", "Acme", "beta"], [16, 12, 10], seed=7, k=4)
    shutil.copytree(base / "kb", base / "served")  # the server process opens its own copy
    scope = json.dumps({"tenant": "acme"})
    with blocking_session(base / "served", scope, 16384, base / "server.log") as door:
        yield corpus, *door


def test_mcp_client_cannot_see_or_change_the_scope(mcp_door: tuple[Corpus, Any, Any]) -> None:
    corpus, portal, session = mcp_door
    listed = portal.call(session.list_tools).tools
    schemas = json.dumps([t.model_dump(mode="json") for t in listed])
    assert "tenant" not in schemas and "acme" not in schemas and "scope" not in schemas
    for sneaky in ({"scope": None}, {"where": None}, {"where": {"tenant": "beta"}}):
        call = {"query": "card", "topic": 0, "k": 20, **sneaky}
        result = portal.call(session.call_tool, "search_within_topic", call)
        text = result.content[0].text  # rejected, or ignored by the SDK: never widened
        assert_no_leak(corpus, {0}, text, [])
        if not result.is_error:
            assert {h["metadata"]["tenant"] for h in json.loads(text)["hits"]} == {"acme"}


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mcp_stdio_door_leaks_nothing(mcp_door: tuple[Corpus, Any, Any], data: st.DataObject) -> None:
    corpus, portal, session = mcp_door
    name, args = tool_args(data, corpus, "acme")
    result = portal.call(session.call_tool, name, args)
    text = "".join(getattr(c, "text", "") for c in result.content)
    assert_no_leak(corpus, {0}, text, arg_strings(args))
    CASES["mcp_stdio"] += 1


def test_mcp_out_of_scope_id_answers_like_a_missing_one(mcp_door: tuple[Corpus, Any, Any]) -> None:
    corpus, portal, session = mcp_door
    theirs = next(cid for cid, j in corpus.owner.items() if j == 1 and not cid.startswith("/"))  # zz1y-<i>
    made_up = "zz9y-" + theirs.split("-")[1]  # same length, never stored
    answers = [portal.call(session.call_tool, "get_document", {"id": cid}) for cid in (theirs, made_up)]
    assert all(a.is_error for a in answers)
    texts = [a.content[0].text for a in answers]
    assert texts[0].replace(theirs, "ID") == texts[1].replace(made_up, "ID")


# ---- the six rows of issue 11's table, as regression tests ---------------------------------------
@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory: pytest.TempPathFactory) -> ClusterIndex:
    import random

    rnd = random.Random(11)
    texts, metas, ids = [], [], []
    for tenant in ("A", "B"):
        for i in range(60):
            words = " ".join(rnd.choice(VOCAB) for _ in range(6))
            texts.append(f"{words} ticket {tenant.lower()}{i}")
            meta: dict[str, Any] = {"tenant": tenant}
            if tenant == "B":
                meta["email"] = f"customer{i}@b-corp.example"
            metas.append(meta)
            ids.append(f"{tenant.lower()}-{i}")
    index = ClusterIndex.open(tmp_path_factory.mktemp("two") / "kb", embedder=FakeEmbedder(), config=CFG)
    index.add_texts(texts, metas, ids)
    index.fit(k=5)
    return index


A_ONLY = Scope(where={"tenant": "A"})


def _tenants(items: list[Any]) -> set[str]:
    return {str(x["metadata"]["tenant"]) for x in texts_of(items)}


def test_row1_a_call_without_where_stays_in_scope(two_tenants: ClusterIndex) -> None:
    retriever = ClusteredRetriever(two_tenants, k=20, where={"tenant": "A"}, scope=A_ONLY)
    assert _tenants(retriever.retrieve("card fee", where=None)) == {"A"}
    with pytest.raises(InvalidInputError, match="unknown retrieval option"):
        retriever.retrieve("card fee", scope=None)  # not a per-call option


def test_row2_a_call_naming_another_tenant_gets_nothing(two_tenants: ClusterIndex) -> None:
    retriever = ClusteredRetriever(two_tenants, k=20, scope=A_ONLY)
    assert retriever.retrieve("card fee", where={"tenant": "B"}) == []
    trick = {"$or": [{"tenant": "B"}, {"tenant": "A"}]}
    assert _tenants(retriever.retrieve("card fee", where=trick)) == {"A"}
    assert retriever.retrieve("card fee", where={"TENANT": "B"}) == []


async def test_row3_framework_retrievers_with_cleared_filters(two_tenants: ClusterIndex) -> None:
    from langchain_cluster_rag import ClusteredRetriever as LCRetriever
    from llama_index.retrievers.cluster_rag import ClusteredRetriever as LIRetriever

    lc = LCRetriever(index=two_tenants, k=20, where={"tenant": "A"}, scope=A_ONLY)
    assert _tenants(lc.invoke("card fee", where=None)) == {"A"}
    assert _tenants(await lc.ainvoke("card fee", filter=None)) == {"A"}
    li = LIRetriever(index=two_tenants, similarity_top_k=20, where={"tenant": "A"}, scope=A_ONLY)
    assert _tenants(li.retrieve("card fee", filters=None)) == {"A"}
    assert _tenants(await li.aretrieve("card fee", where=None)) == {"A"}


def test_row4_search_within_topic_returns_no_other_tenant(two_tenants: ClusterIndex) -> None:
    tools = TopicTools(two_tenants, scope=A_ONLY)
    for topic in tools.list_topics(limit=50)["topics"]:
        out = tools.call("search_within_topic", {"query": "card fee atm", "topic": topic["id"], "k": 20})
        assert "b-corp" not in out and '"B"' not in out and json.loads(out)["hits"]
    hidden = {t.id for t in two_tenants.topics()} - {t["id"] for t in tools.list_topics(limit=50)["topics"]}
    for tid in hidden:  # a topic holding only B's chunks does not exist for A
        assert json.loads(tools.call("search_within_topic", {"query": "x", "topic": tid}))["error_type"] == (
            "UnknownTopicError"
        )


def test_row5_guessed_ids_answer_like_missing_ones(two_tenants: ClusterIndex) -> None:
    tools = TopicTools(two_tenants, scope=A_ONLY)
    theirs = json.loads(tools.call("get_document", {"id": "b-1"}))
    never = json.loads(tools.call("get_document", {"id": "x-1"}))
    assert theirs["error_type"] == never["error_type"] == "UnknownDocumentError"
    assert theirs["error"].replace("b-1", "ID") == never["error"].replace("x-1", "ID")
    guessed = [f"b-{i}" for i in range(1, 200, 2)]
    assert len(guessed) == 100
    found = [json.loads(tools.call("get_document", {"id": cid})) for cid in guessed]
    assert sum("error" not in f for f in found) == 0
    assert two_tenants.get(guessed, scope=A_ONLY) == []
    assert len(two_tenants.get(guessed)) == 30  # the unscoped index does hold them (b-0..b-59)


def test_row6_list_topics_shows_only_in_scope_sizes_keywords_and_chunks(two_tenants: ClusterIndex) -> None:
    tools = TopicTools(two_tenants, scope=A_ONLY)
    listed = tools.list_topics(limit=50)
    text = json.dumps(listed)
    assert "b-corp" not in text and not any(f"b{i}" in text.split('"') for i in range(60))
    words = [w for t in listed["topics"] for w in t["keywords"]]
    assert words and not any(w.startswith("b") and w[1:].isdigit() for w in words)
    assert sum(t["size"] for t in listed["topics"]) == 60  # A's chunks only
    assert all(t["description"] == "" for t in listed["topics"])  # labels withheld: names from A's words
    for topic in two_tenants.topics(scope=A_ONLY):
        assert all(cid.startswith("a-") for cid in topic.representative_ids)
    unscoped = TopicTools(two_tenants).list_topics(limit=50)
    assert sum(t["size"] for t in unscoped["topics"]) == 120


def test_scope_value_parsing_and_immutability() -> None:
    scope = Scope.parse('{"tenant": "A"}')
    assert scope == Scope(where={"tenant": "A"}) and hash(scope) == hash(Scope(where={"tenant": "A"}))
    scope.where["tenant"] = "B"  # type: ignore[index]  # a copy: the scope cannot be changed
    assert scope.where == {"tenant": "A"}
    full = Scope.parse('{"where": {"topics": "x"}, "topics": [1, 2], "collection": "kb_a"}')
    assert full.where == {"topics": "x"} and full.topics == frozenset({1, 2}) and full.collection == "kb_a"
    assert Scope.from_env({"CLUSTER_RAG_SCOPE": ' {"tenant": "A"} '}) == scope
    assert Scope.from_env({}) is None
    trick = {"$or": [{"tenant": "B"}]}
    assert scope.combine(trick) == {"$and": [{"tenant": "A"}, trick]}
    bad_scopes = ("", "[1]", "{}", "not json", '{"where": "x"}', '{"topics": "1"}', '{"t": {"$bogus": 1}}')
    for bad in bad_scopes:
        with pytest.raises(InvalidInputError):
            Scope.parse(bad)
    with pytest.raises(InvalidInputError, match="restricts nothing"):
        Scope()


def test_scope_of_another_collection_is_refused(two_tenants: ClusterIndex) -> None:
    other = Scope(where={"tenant": "A"}, collection="tenant_a")
    with pytest.raises(InvalidInputError, match="belongs to collection 'tenant_a'"):
        TopicTools(two_tenants, scope=other)
    with pytest.raises(InvalidInputError, match="belongs to collection"):
        two_tenants.search("card", scope=other)


def test_audit_hook_sees_ids_never_texts(two_tenants: ClusterIndex) -> None:
    records: list[dict[str, Any]] = []
    tools = TopicTools(two_tenants, scope=A_ONLY, audit=records.append)
    topic = json.loads(tools.call("list_topics", {"limit": 1}))["topics"][0]["id"]
    hits = json.loads(tools.call("search_within_topic", {"query": "card", "topic": topic, "k": 3}))["hits"]
    tools.call("get_document", {"id": "b-3"})
    assert [r["tool"] for r in records] == ["list_topics", "search_within_topic", "get_document"]
    assert records[1]["ids"] == [h["id"] for h in hits] and records[1]["scope"]["where"] == {"tenant": "A"}
    assert records[2]["error"] == "UnknownDocumentError" and records[2]["arguments"] == {"id": "b-3"}
    assert not any(h["text"] in json.dumps(records) for h in hits)


def test_scoped_web_app_serves_only_the_scope(two_tenants: ClusterIndex) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from cluster_rag.web import create_app

    client = TestClient(create_app(two_tenants, scope=A_ONLY))
    topics = client.get("/api/topics").json()["topics"]
    assert sum(t["size"] for t in topics) == 60
    assert all(r["id"].startswith("a-") for t in topics for r in t["representatives"])
    detail = client.get(f"/api/topics/{topics[0]['id']}?limit=200").json()
    assert detail["members"]["total"] == topics[0]["size"]
    assert all(m["id"].startswith("a-") for m in detail["members"]["items"])
    hits = client.post("/api/search", json={"query": "card fee", "k": 50}).json()["hits"]
    assert hits and {h["metadata"]["tenant"] for h in hits} == {"A"}
    theirs, never = client.get("/api/documents/b-1"), client.get("/api/documents/zz-1")
    assert theirs.status_code == never.status_code == 404
    assert theirs.json()["detail"].replace("b-1", "ID") == never.json()["detail"].replace("zz-1", "ID")
    assert client.get("/api/documents/a-1").status_code == 200
    for path in ("/api/map", "/api/charts/sizes", "/api/versions", "/api/drift"):
        assert client.get(path).status_code == 404  # operator views are not served
    assert client.post("/api/topics/0/rename", json={"name": "x"}).status_code in (404, 405)
    assert "b-corp" not in json.dumps([topics, detail, hits])


def test_hard_isolation_one_collection_per_tenant(tmp_path: Path) -> None:
    """The stronger option: each tenant's chunks in its own collection, opened by name, same API;
    a scope naming its collection refuses any other, and the CLI opens the scope's collection."""
    from click.testing import CliRunner

    from cluster_rag.cli import cli

    folder = tmp_path / "kb"
    for tenant, word in (("tenant_a", "alpha"), ("tenant_b", "bravo")):
        index = ClusterIndex.open(folder, collection=tenant, embedder=FakeEmbedder(), config=CFG)
        texts = [f"{word} card fee note {i}" for i in range(12)]
        index.add_texts(texts, ids=[f"{word}-{i}" for i in range(12)])
        index.fit(k=2)
    a = ClusterIndex.open(folder, collection="tenant_a", embedder=FakeEmbedder(), config=CFG, create=False)
    b = ClusterIndex.open(folder, collection="tenant_b", embedder=FakeEmbedder(), config=CFG, create=False)
    only_a = Scope(collection="tenant_a")
    tools = TopicTools(a, scope=only_a)
    assert {h.id.split("-")[0] for h in a.search("card fee", k=50, scope=only_a)} == {"alpha"}
    assert "bravo" not in tools.call("list_topics", {"limit": 50})
    with pytest.raises(InvalidInputError, match="belongs to collection 'tenant_a'"):
        TopicTools(b, scope=only_a)
    assert a.get(["bravo-1"]) == [] and len(b.get(["bravo-1"])) == 1
    # the CLI opens the scope's collection when --collection is not given (no model needed to fail fast)
    scope = json.dumps({"collection": "tenant_c"})
    done = CliRunner().invoke(cli, ["mcp", "--path", str(folder), "--scope", scope])
    assert done.exit_code != 0 and "collection 'tenant_c' does not exist" in str(done.exception)


def test_hard_isolation_chroma_tenant_and_database(tmp_path: Path) -> None:
    """A Chroma tenant/database per customer: from_client over a client bound to it, same API."""
    import chromadb
    from chromadb.config import Settings

    admin = chromadb.AdminClient(
        Settings(is_persistent=True, persist_directory=str(tmp_path), anonymized_telemetry=False)
    )
    admin.create_tenant("acme")
    admin.create_database("kb_acme", tenant="acme")
    client = chromadb.PersistentClient(path=str(tmp_path), tenant="acme", database="kb_acme")
    index = ClusterIndex.from_client(client, embedder=FakeEmbedder(), config=CFG)
    index.add_texts([f"card fee note {i}" for i in range(10)], ids=[f"acme-{i}" for i in range(10)])
    index.fit(k=2)
    assert len(index.search("card fee", k=20)) == 10
    default = chromadb.PersistentClient(path=str(tmp_path))  # another tenant sees nothing of it
    other = ClusterIndex.from_client(default, embedder=FakeEmbedder(), config=CFG)
    assert len(other) == 0 and other.store.existing_ids(["acme-1"]) == set()
