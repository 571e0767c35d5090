"""Re-rankers: MMR order, cross-encoder sorting, LLM listwise parsing, bounds, cache and fallbacks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from cluster_rag.errors import InvalidInputError, StoreNotFoundError
from cluster_rag.rerank import (
    CrossEncoderReranker,
    LLMReranker,
    MMRReranker,
    Reranker,
    build_prompt,
    parse_ranking,
    reranker_from_spec,
)
from cluster_rag.types import Hit


def _hits(n: int) -> list[Hit]:
    return [Hit(id=f"h{i}", text=f"passage number {i}", score=1.0 - i / 10, topic_id=0) for i in range(n)]


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


# -- MMR ------------------------------------------------------------------------------------------
def _mmr(diversity: float) -> MMRReranker:
    vecs = {
        "h0": _unit([1.0, 0.0, 0.0]),
        "h1": _unit([0.99, 0.01, 0.0]),  # near-duplicate of h0
        "h2": _unit([0.8, 0.0, 0.6]),
    }
    return MMRReranker(
        lambda q: _unit([1.0, 0.0, 0.1]),
        lambda ids: {i: vecs[i] for i in ids if i in vecs},
        diversity=diversity,
    )


def test_mmr_relevance_only_then_diversity_demotes_the_near_duplicate() -> None:
    hits = _hits(3)
    assert [h.id for h in _mmr(0.0)("q", hits)] == ["h0", "h1", "h2"]
    assert [h.id for h in _mmr(0.7)("q", hits)] == ["h0", "h2", "h1"]


def test_mmr_keeps_hits_without_vectors_at_the_end() -> None:
    hits = [*_hits(3), Hit(id="gone", text="", score=0.0, topic_id=0)]
    out = _mmr(0.0)("q", [hits[3], *hits[:3]])
    assert [h.id for h in out] == ["h0", "h1", "h2", "gone"]
    assert isinstance(_mmr(0.3), Reranker)
    with pytest.raises(InvalidInputError):
        _mmr(1.5)


# -- cross-encoder --------------------------------------------------------------------------------
class _FakeCE:
    def __init__(self, n_out: int | None = None) -> None:
        self.n_out = n_out

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        scores = [float(text.split()[-1]) * (1 if int(text.split()[-1]) % 2 else -1) for _, text in pairs]
        return np.asarray(scores[: self.n_out] if self.n_out is not None else scores)


def test_cross_encoder_sorts_by_score_and_records_it() -> None:
    out = CrossEncoderReranker(_FakeCE())("q", _hits(4))
    assert [h.id for h in out] == ["h3", "h1", "h0", "h2"]
    assert out[0].metadata["rerank_score"] == 3.0
    assert out[0].score == _hits(4)[3].score  # Hit.score untouched


def test_cross_encoder_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        CrossEncoderReranker(object())
    with pytest.raises(InvalidInputError):
        CrossEncoderReranker(_FakeCE(n_out=2))("q", _hits(4))
    with pytest.raises(StoreNotFoundError):
        CrossEncoderReranker.from_path(tmp_path / "no-such-model")


# -- LLM ------------------------------------------------------------------------------------------
def test_parse_ranking() -> None:
    assert parse_ranking("[2] > [1] > [3]", 3) == [1, 0, 2]
    assert parse_ranking("3, 3, 9, 1", 4) == [2, 0, 1, 3]  # repeats and out-of-range skipped, rest appended
    assert parse_ranking("I cannot rank these.", 3) is None
    assert parse_ranking("[0] > [7]", 3) is None
    assert parse_ranking("", 3) is None


def test_prompt_is_bounded() -> None:
    messages = build_prompt("q " * 500, ["x" * 5000, "short"], max_chars=50)
    user = messages[-1]["content"]
    assert "[1] " + "x" * 50 + "\n" in user and "x" * 51 not in user
    assert "[2] short" in user
    assert len(user) < 400


class _FakeClient:
    """Answers with ``answers`` in turn; an Exception instance is raised instead."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    def _create(self, **kwargs: Any) -> Any:
        self.requests.append(kwargs)
        a = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(a, Exception):
            raise a
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=a))])


def test_llm_reorders_the_head_and_keeps_the_tail() -> None:
    client = _FakeClient("[3] > [1] > [2]")
    rr = LLMReranker(client, "m", max_candidates=3)
    out = rr("q", _hits(5))
    assert [h.id for h in out] == ["h2", "h0", "h1", "h3", "h4"]
    sent = client.requests[0]["messages"][-1]["content"]
    assert "[3] passage number 2" in sent and "passage number 3" not in sent
    assert rr.fallbacks == 0


@pytest.mark.parametrize(
    "answer", ["Sure! Here is the ranking you asked for.", None, TimeoutError("slow"), RuntimeError("500")]
)
def test_llm_falls_back_to_input_order(answer: Any) -> None:
    rr = LLMReranker(_FakeClient(answer), "m")
    hits = _hits(4)
    assert rr("q", hits) == hits
    assert rr.fallbacks == 1


def test_llm_caches_answers_but_not_failures() -> None:
    client = _FakeClient(RuntimeError("down"), "[2] > [1]")
    rr = LLMReranker(client, "m")
    hits = _hits(2)
    assert rr("q", hits) == hits  # failure: not cached
    first = rr("q", hits)
    second = rr("q", hits)
    assert [h.id for h in first] == [h.id for h in second] == ["h1", "h0"]
    assert len(client.requests) == 2
    rr("another query", hits)
    assert len(client.requests) == 3


def test_llm_argument_checks() -> None:
    with pytest.raises(InvalidInputError):
        LLMReranker(_FakeClient("x"), "m", max_candidates=1)
    with pytest.raises(InvalidInputError):
        LLMReranker(_FakeClient("x"), "m", timeout=0)


# -- specs (CLI --rerank, tool arguments) ---------------------------------------------------------
def test_reranker_from_spec(tmp_path: Path) -> None:
    index = SimpleNamespace(embed_query=lambda q: _unit([1.0, 0.0]), store=None)
    mmr = reranker_from_spec("mmr:0.6", index)
    assert isinstance(mmr, MMRReranker) and mmr.diversity == 0.6
    assert reranker_from_spec("MMR", index).diversity == 0.3  # type: ignore[attr-defined]
    llm = reranker_from_spec("llm:qwen2.5@http://127.0.0.1:9/v1", index)
    assert isinstance(llm, LLMReranker) and llm.model == "qwen2.5"
    assert str(llm.client.base_url).startswith("http://127.0.0.1:9/v1")
    with pytest.raises(StoreNotFoundError):
        reranker_from_spec(f"cross-encoder:{tmp_path / 'missing'}", index)
    for bad in ("bm25", "mmr:lots", "llm:no-url", "cross-encoder:"):
        with pytest.raises(InvalidInputError):
            reranker_from_spec(bad, index)
