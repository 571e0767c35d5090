"""Adaptive concurrency of OpenAILabeler: the AIMD limit alone, then over real HTTP to a
scripted server on 127.0.0.1 that is slow for a while (issue 12 item 11)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from openai import AsyncOpenAI, OpenAI

from cluster_rag import OpenAILabeler
from cluster_rag.labeling import LabelRequest
from cluster_rag.labeling.concurrency import AdaptiveLimit, Outcome, is_local_host
from tests.llm_stub import Reply, ScriptedLLM, answer, keywords_line, llm

__all__ = ["llm"]  # the fixture, re-exported for pytest


# the limit alone ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("192.168.1.20", True),
        ("10.0.0.7", True), ("gpu-box.local", True), ("0.0.0.0", True),
        ("api.openai.com", False), ("8.8.8.8", False), ("", False), (None, False),
    ],
)
def test_local_hosts(host: str | None, local: bool) -> None:
    assert is_local_host(host) is local


def test_start_follows_the_endpoint() -> None:
    local = OpenAILabeler(OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k"), "m", concurrency=6)
    remote = OpenAILabeler(OpenAI(base_url="https://api.example.com/v1", api_key="k"), "m", concurrency=6)
    pinned = OpenAILabeler(
        OpenAI(base_url="http://localhost:9/v1", api_key="k"), "m", concurrency=6, start_concurrency=3
    )
    starts = (local.initial_concurrency(), remote.initial_concurrency(), pinned.initial_concurrency())
    assert starts == (1, 6, 3)


def _drive(limit: AdaptiveLimit, outcomes: list[Outcome], *, together: int = 1) -> None:
    """Run calls through ``limit``, ``together`` at a time (all acquired before any is released)."""

    async def main() -> None:
        for i in range(0, len(outcomes), together):
            batch = outcomes[i : i + together]
            tickets = [await limit.acquire() for _ in batch]
            for ticket, outcome in zip(tickets, batch, strict=True):
                await limit.release(ticket, outcome)

    asyncio.run(main())


def test_additive_increase_one_per_round_up_to_the_maximum() -> None:
    limit = AdaptiveLimit(1, 3)
    _drive(limit, ["ok"] * 10)
    assert limit.trace == [1, 2, 3]  # +1 after 1 success, +1 after 2 more, then capped
    held = AdaptiveLimit(1, 3)
    _drive(held, ["ok", "slow", "ok", "slow", "ok"])  # a slow success resets the round: no growth after it
    assert held.trace == [1, 2]


def test_multiplicative_decrease_once_per_round() -> None:
    limit = AdaptiveLimit(8, 8)
    _drive(limit, ["congested"] * 4, together=4)  # four timeouts of calls that started together
    assert limit.trace == [8, 4]
    _drive(limit, ["congested", "congested"])  # later calls each saw the new limit
    assert limit.trace == [8, 4, 2, 1]
    _drive(limit, ["congested"])  # never below one
    assert limit.limit == 1 and limit.inflight == 0


def test_waiters_respect_the_limit() -> None:
    limit = AdaptiveLimit(2, 2)
    peak = 0

    async def call() -> None:
        nonlocal peak
        ticket = await limit.acquire()
        peak = max(peak, limit.inflight)
        await asyncio.sleep(0.01)
        await limit.release(ticket, "other")

    async def main() -> None:
        await asyncio.gather(*(call() for _ in range(6)))

    asyncio.run(main())
    assert peak == 2 and limit.inflight == 0 and limit.trace == [2]


# over HTTP ------------------------------------------------------------------------------------
def _requests(n: int) -> list[LabelRequest]:
    return [
        LabelRequest(topic_id=i, size=10, keywords=[f"word{i}", f"term{i}"], representatives=[f"text {i}"])
        for i in range(n)
    ]


def _named(body: dict[str, Any]) -> str:
    return "Subject " + keywords_line(body).removeprefix("Top keywords: word").split(",")[0]


@pytest.mark.parametrize("client_kind", ["sync", "async"])
def test_a_server_slow_for_a_while_is_backed_off_from_and_every_topic_finishes(
    llm: ScriptedLLM, client_kind: str
) -> None:
    slow_left = [8]  # the first 8 requests outlast the client timeout (the server is busy)
    lock = threading.Lock()

    def script(body: dict[str, Any], n: int) -> Reply:
        with lock:
            slow = slow_left[0] > 0
            slow_left[0] -= 1
        return Reply(answer(_named(body)), delay=1.0 if slow else 0.0)

    llm.script = script
    cls = OpenAI if client_kind == "sync" else AsyncOpenAI
    labeler = OpenAILabeler(
        cls(base_url=llm.url, api_key="k"),
        "stub",
        concurrency=4,
        start_concurrency=4,
        timeout=0.4,
        max_retries=1,  # the client's own retry: 4 first attempts + 4 retries time out
        response_format="json_schema",
    )
    results = labeler.label(_requests(10))
    assert [r.status for r in results] == ["ok"] * 10  # every topic finished, none fell back
    assert [r.name for r in results] == [f"Subject {i}" for i in range(10)]
    trace = labeler.concurrency_trace_
    assert trace[0] == 4 and trace[1] == 2  # halved once for the four calls that timed out together
    assert min(trace) < 4 and not any(r.transient for r in results)
    assert llm.max_inflight <= 4 + 4  # the server still works on abandoned requests; we sent at most 4
    timed_out = [r for r in results if r.calls > 1]
    assert timed_out and all(r.calls == 3 for r in timed_out)  # 2 attempts (client retry) + 1 requeued


def test_a_loopback_server_starts_at_one_request_and_grows(llm: ScriptedLLM) -> None:
    llm.script = lambda body, n: Reply(answer(_named(body)), delay=0.05)
    labeler = OpenAILabeler(
        AsyncOpenAI(base_url=llm.url, api_key="k"), "stub", concurrency=3, timeout=5, max_retries=0
    )
    results = labeler.label(_requests(9))
    assert all(r.status == "ok" for r in results)
    assert labeler.concurrency_trace_ == [1, 2, 3]
    assert llm.arrivals[:2] == [1, 1]  # the format probe, then one at a time until a round succeeded
    assert llm.max_inflight <= 3


def test_rate_limits_halve_the_limit_and_are_retried(llm: ScriptedLLM) -> None:
    limited = [6]
    lock = threading.Lock()

    def script(body: dict[str, Any], n: int) -> Reply:
        with lock:
            refuse = limited[0] > 0
            limited[0] -= 1
        if refuse:
            return Reply(status=429, error="rate limited", headers={"retry-after-ms": "20"})
        return Reply(answer(_named(body)))

    llm.script = script
    labeler = OpenAILabeler(
        AsyncOpenAI(base_url=llm.url, api_key="k"),
        "stub",
        concurrency=4,
        start_concurrency=4,
        max_retries=1,
        response_format="json_schema",
    )
    results = labeler.label(_requests(8))
    assert all(r.status == "ok" for r in results)
    assert labeler.concurrency_trace_[1] == 2 and len(llm.requests) == 8 + 6


def test_a_server_that_cannot_overlap_requests_finishes_every_topic(llm: ScriptedLLM) -> None:
    """Issue 12: ``--concurrency 4`` timed out 7 of 39 topics on llama_cpp.server, 1 none. This server
    answers at once when a request has it to itself and stalls past the client timeout when two overlap
    (the stalled work runs on after the client gave up, as a real server's does)."""
    # alone: 0.05 s; overlapped: 0.6 s, past the 0.4 s timeout but done before the client retries (>= 0.375 s)
    llm.script = lambda body, n: Reply(answer(_named(body)), delay=0.6 if llm.inflight > 1 else 0.05)
    labeler = OpenAILabeler(AsyncOpenAI(base_url=llm.url, api_key="k"), "stub", timeout=0.4, max_retries=1)
    results = labeler.label(_requests(8))  # the default concurrency (at most 4): loopback starts at 1
    assert [r.status for r in results] == ["ok"] * 8
    trace = labeler.concurrency_trace_
    assert trace[0] == 1 and llm.arrivals[0] == 1  # the first request goes alone
    assert max(llm.arrivals) > 1  # it grew past one request, so requests overlapped and stalled ...
    assert any(b < a for a, b in zip(trace, trace[1:], strict=False))  # ... and it backed off
