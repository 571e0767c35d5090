"""Property-based fuzzing of the agent-tool door (issue 16 item 6): whatever a model sends as a
tool call — unknown tools, wrong JSON, wrong types, lone surrogates, huge or nested values, extra
keys — ``TopicTools.dispatch`` answers JSON within the byte budget, UTF-8 encodable, with either a
result or ``{"error", "error_type", "tool"}`` naming a cluster-rag error; it never raises and never
answers "internal error". Derandomized, fixed budget (``FUZZ_EXAMPLES`` overrides)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cluster_rag.errors as errors
from cluster_rag import ClusterIndex, IndexConfig
from cluster_rag.tools import TOOL_NAMES, TopicTools
from tests.fixtures import FakeEmbedder
from tests.unit.test_living_index import add

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ERROR_TYPES = {name for name in dir(errors) if name.endswith("Error")}

scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udfffb", "x" * 20_000, "0", "pets", "1" * 200, "../../etc/passwd"]),
)
value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
arguments = st.one_of(
    st.dictionaries(
        st.sampled_from(["query", "topic", "k", "limit", "parent", "id", "where", "scope", "x"]),
        value,
        max_size=5,
    ),
    value,
)
name = st.one_of(st.sampled_from(TOOL_NAMES), st.text(max_size=12), st.none(), st.integers())


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> TopicTools:
    index = ClusterIndex.open(
        tmp_path_factory.mktemp("fuzz-tools") / "kb",
        embedder=FakeEmbedder(),
        config=IndexConfig(progress=False),
    )
    for topic in ("pets", "space", "food", "music"):
        add(index, topic)
    index.fit(k=4)
    return TopicTools(index, max_result_bytes=4096)


@FUZZ
@given(tool=name, args=arguments, as_text=st.booleans())
def test_any_tool_call_answers_bounded_json(tools: TopicTools, tool: Any, args: Any, as_text: bool) -> None:
    raw: Any = args
    if as_text:
        try:
            raw = json.dumps(args)
        except (TypeError, ValueError):  # not JSON-able (a dict with a non-str key): send it as is
            raw = args
    answer = tools.dispatch({"function": {"name": tool, "arguments": raw}})
    encoded = answer.encode("utf-8")  # raises on a lone surrogate in the answer
    assert len(encoded) <= tools.max_result_bytes
    out = json.loads(answer)
    assert isinstance(out, dict)
    if "error" in out:
        assert out["error_type"] in ERROR_TYPES and "internal error" not in out["error"]
