"""How many LLM requests to keep in flight: additive increase, multiplicative decrease (AIMD).

A local server (llama.cpp, Ollama, LM Studio on 127.0.0.1 or the LAN) usually decodes
one request at a time and queues the rest; a client timeout does not stop the work the
server already queued, so every extra request in flight lengthens the wait of all the
others. Measured (issue 12): ``--concurrency 4`` against ``llama_cpp.server`` timed out
7 of 39 topics after 4 attempts each, concurrency 1 none. Hosted APIs, on the other
hand, serve many requests at once.

So the limit adapts, as TCP's congestion window does:

- it **starts** at 1 for a local endpoint (loopback, private, link-local addresses,
  ``localhost``, ``*.local``) and at the configured maximum for any other host;
- it **grows** by one after ``limit`` consecutive calls that succeeded at the first
  attempt within half the timeout (one "round" at the current limit), up to the maximum;
- a **slow** success (more than half the timeout) holds it;
- a **congestion** signal (a timeout, 429 or 503 after the client's retries, or a
  success that needed retries) **halves** it, at most once per round: calls that
  started before the last decrease do not decrease it again (they saw the old limit).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = ["AdaptiveLimit", "Outcome", "Ticket", "endpoint_host", "is_local_host"]

#: ``ok``: first attempt, fast; ``slow``: succeeded but took over half the timeout;
#: ``congested``: timeout / 429 / 503, or success after retries; ``other``: any other error.
Outcome = Literal["ok", "slow", "congested", "other"]


def endpoint_host(client: Any) -> str | None:
    """The host of an OpenAI client's ``base_url`` (``None`` when it has none)."""
    base = getattr(client, "base_url", None)
    if base is None:
        return None
    host = getattr(base, "host", None)  # httpx.URL
    if isinstance(host, str) and host:
        return host
    return urlsplit(str(base)).hostname


def is_local_host(host: str | None) -> bool:
    """``True`` for loopback, private-network and link-local addresses, ``localhost`` and ``*.local``."""
    if not host:
        return False
    name = host.strip("[]").casefold()
    if name in ("localhost", "host.docker.internal") or name.endswith((".localhost", ".local")):
        return True
    try:
        addr = ipaddress.ip_address(name)
    except ValueError:
        return False
    return addr.is_loopback or addr.is_private or addr.is_link_local or addr.is_unspecified


@dataclass(frozen=True)
class Ticket:
    """A held slot: the round it started in and the limit it saw."""

    epoch: int
    limit: int


@dataclass
class AdaptiveLimit:
    """An AIMD concurrency limit for one event loop.

    Args:
        start: first limit, ``1 <= start <= maximum``.
        maximum: the limit never grows past it.

    Attributes:
        limit: current limit.
        trace: the limit at the start and after each change, in order.
    """

    start: int
    maximum: int
    limit: int = 0
    inflight: int = 0
    trace: list[int] = field(default_factory=list)
    _epoch: int = 0
    _streak: int = 0
    _cond: asyncio.Condition | None = None

    def __post_init__(self) -> None:
        self.limit = max(1, min(self.start, self.maximum))
        self.trace = [self.limit]

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:  # created inside the running loop
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> Ticket:
        """Wait for a free slot."""
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self.inflight < self.limit)
            self.inflight += 1
            return Ticket(self._epoch, self.limit)

    async def release(self, ticket: Ticket, outcome: Outcome) -> None:
        """Free the slot and adapt the limit to how the call went."""
        cond = self._condition()
        async with cond:
            self.inflight -= 1
            self._adapt(ticket, outcome)
            cond.notify_all()

    def _adapt(self, ticket: Ticket, outcome: Outcome) -> None:
        if outcome == "congested":
            self._streak = 0
            if ticket.epoch == self._epoch:  # one decrease per round
                self._epoch += 1
                if self.limit > 1:
                    self.limit = max(1, self.limit // 2)
                    self.trace.append(self.limit)
        elif outcome == "ok":
            self._streak += 1
            if self._streak >= self.limit and self.limit < self.maximum:
                self.limit += 1
                self._streak = 0
                self.trace.append(self.limit)
        elif outcome == "slow":
            self._streak = 0
