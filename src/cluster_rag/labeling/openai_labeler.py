"""Cluster names from any OpenAI-compatible chat-completions server.

One request per cluster (keywords + MMR representatives + sibling names, cut to a
token budget). **Concurrency adapts to the endpoint** (see :mod:`.concurrency`): it
starts at 1 for a local server (loopback / private network), at ``concurrency`` for
any other, grows by one after a round of fast first-attempt successes, and halves on
timeouts, 429/503 and answers that needed retries. **Retries are the ``openai``
client's own** (``with_options(max_retries=..., timeout=...)``: timeouts, connection
errors, 408/409/429 and 5xx, exponential backoff with jitter, ``Retry-After``
honoured); a request that still timed out while more than one request was in flight
is queued again (at most :data:`MAX_REQUEUES` times) once the limit has dropped,
because the wait was ours, not the server's.

``response_format`` is negotiated per run: JSON schema first; a server that rejects
it (400/422, or llama.cpp's 500 naming ``response_format``) is asked with
``json_object`` and then with plain prompting, whose answer is parsed by taking its
first JSON object; until one request has succeeded requests go one at a time and the
first is sent without retries, so a rejection is seen at once. A malformed, empty,
keyword-list or duplicate answer gets exactly one repair request that says what was
wrong and lists the names to avoid; after that the cluster keeps its keyword label,
flagged ``"fallback"``. A name that equals or nearly equals (:mod:`.names`) a name
kept by a lower topic id, a reserved name, a sibling or child name shown in the
prompt, or another cluster's keyword label is a duplicate. Only errors no cluster can
recover from (401/403/404: wrong key or model) stop the run, with :class:`LabelingError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import AsyncIterator, Collection, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tqdm.auto import tqdm

from ..errors import InvalidInputError, LabelingError, missing_dependency
from .base import LabelRequest, LabelResult, normalize_name
from .concurrency import AdaptiveLimit, Outcome, endpoint_host, is_local_host
from .keyword_labeler import distinct_keyword_label
from .names import closest_clash, keyword_list_problem
from .prompt import (
    PROMPT_VERSION,
    TokenCounter,
    answer_schema,
    build_messages,
    parse_answer,
    repair_messages,
)

__all__ = ["MAX_REQUEUES", "OpenAILabeler"]

_MODES = ("json_schema", "json_object", "text")
_RETRY_STATUS = {408, 409, 429}
_CONGESTION_STATUS = {429, 503}
_FATAL_STATUS = {401, 403, 404}
#: times a request that timed out with more than one request in flight is queued again
MAX_REQUEUES = 3
T = TypeVar("T")


def _import_openai() -> Any:
    try:
        import openai
    except ImportError:
        raise missing_dependency("openai", '"cluster-rag[openai]"') from None
    return openai


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also when a loop is already running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="cluster-rag-label")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class _LoopThread:
    """One event loop in a daemon thread, so an ``AsyncOpenAI`` client (whose connection
    pool is bound to the loop it first ran on) is always driven from the same loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cluster-rag-labeler", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


class _Fatal(Exception):
    """An error no retry or other cluster can fix (bad key, unknown model)."""


class _Failed(Exception):
    """One request failed after its retries."""


@dataclass
class _Run:
    mode: str
    is_async: bool
    limit: AdaptiveLimit
    settled: bool  # the response format is known to work (a request succeeded with it)
    quick: Any  # the client without retries (the format probe)
    full: Any  # the client with the labeler's retries and timeout
    probe_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    fatal: BaseException | None = None

    @contextlib.asynccontextmanager
    async def probing(self) -> AsyncIterator[bool]:
        """Until one request has succeeded, requests go one at a time so that a server
        rejecting the response format is probed once, not by every request.
        Yields whether this request is such a probe."""
        held = False
        if not self.settled:
            await self.probe_lock.acquire()
            held = not self.settled
            if not held:
                self.probe_lock.release()
        try:
            yield held
        finally:
            if held:
                self.probe_lock.release()


@dataclass
class _Outcome:
    request: LabelRequest
    messages: list[dict[str, str]]
    answer: Any = None
    raw: str = ""
    repaired: bool = False
    error: str | None = None
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    history: list[str] = field(default_factory=list)
    fallback_name: str = ""
    transient: bool = False  # failed in transport (timeout, 5xx, connection), not on content
    truncated: bool = False  # the last answer stopped at max_tokens


def _clash_problem(name: str, other: str) -> str:
    """What the repair prompt says about ``name`` clashing with ``other``."""
    if normalize_name(name) == normalize_name(other):
        return f"the name {name!r} is already used by another group"
    return f"the name {name!r} is too close to {other!r}, the name of another group"


def _answer_text(resp: Any, out: _Outcome) -> str:
    """The text of a chat completion ``resp`` (``""`` when none); adds its token usage to ``out``
    and sets ``out.truncated`` when the answer stopped at ``max_tokens``."""
    usage = getattr(resp, "usage", None)
    if usage is not None:
        out.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
        out.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
    choices = getattr(resp, "choices", None) or []
    content = getattr(choices[0].message, "content", None) if choices else None
    out.truncated = bool(choices) and getattr(choices[0], "finish_reason", None) == "length"
    return content or ""


class OpenAILabeler:
    """Names clusters with an LLM behind any OpenAI-compatible ``/v1/chat/completions``.

    Args:
        client: an ``openai.OpenAI`` or ``openai.AsyncOpenAI`` you built (``base_url``,
            ``api_key``); it is used as given (a copy with this labeler's ``timeout`` and
            ``max_retries`` via ``with_options``), never built here. A sync client runs in
            worker threads.
        model: model name the server knows.
        concurrency: the most requests in flight at once.
        start_concurrency: requests in flight at the start; ``None``: 1 when the client's
            ``base_url`` is a local host (loopback, private network, ``localhost``, ``*.local``:
            such servers decode one request at a time), else ``concurrency``. The limit then
            adapts between 1 and ``concurrency`` (AIMD, see :mod:`cluster_rag.labeling.concurrency`).
        timeout: seconds per attempt.
        max_retries: the ``openai`` client's retries per request (timeouts, connection
            errors, 408/409/429, 5xx; exponential backoff, ``Retry-After`` honoured).
        max_prompt_tokens: budget of the prompt (estimated, see ``count_tokens``).
        max_chunk_tokens: budget of each representative text inside the prompt.
        max_tokens: completion tokens per answer.
        temperature: sampling temperature (0: as deterministic as the server allows).
        response_format: ``"auto"`` (JSON schema, degrading to ``json_object`` and then
            plain prompting when the server rejects it), or one of ``"json_schema"``,
            ``"json_object"``, ``"text"`` to force a mode.
        count_tokens: ``str -> int`` token counter; default ``ceil(chars / 4)``.

    Attributes:
        concurrency_trace_: the in-flight limit of the last run, at its start and after
            each change (e.g. ``[4, 2, 1, 2]``).
    """

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        concurrency: int = 4,
        start_concurrency: int | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        max_prompt_tokens: int = 1000,
        max_chunk_tokens: int = 150,
        max_tokens: int = 200,
        temperature: float = 0.0,
        response_format: str = "auto",
        count_tokens: TokenCounter | None = None,
    ) -> None:
        completions = getattr(getattr(client, "chat", None), "completions", None)
        if not callable(getattr(completions, "create", None)):
            raise InvalidInputError(
                f"client must be an openai.OpenAI or openai.AsyncOpenAI client, got {type(client).__name__}; "
                "build one with OpenAI(base_url=..., api_key=...)"
            )
        if not isinstance(model, str) or not model.strip():
            raise InvalidInputError(f"model={model!r} must be a non-blank model name the server knows")
        for name, value, low in (
            ("concurrency", concurrency, 1),
            ("max_retries", max_retries, 0),
            ("max_prompt_tokens", max_prompt_tokens, 100),
            ("max_chunk_tokens", max_chunk_tokens, 16),
            ("max_tokens", max_tokens, 16),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(f"{name}={value!r} must be an int >= {low}")
        if start_concurrency is not None and (
            isinstance(start_concurrency, bool)
            or not isinstance(start_concurrency, int)
            or not 1 <= start_concurrency <= concurrency
        ):
            raise InvalidInputError(
                f"start_concurrency={start_concurrency!r} must be None (by endpoint) or an int in "
                f"[1, concurrency={concurrency}]"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidInputError(f"timeout={timeout!r} must be a positive number of seconds")
        if response_format not in ("auto", *_MODES):
            raise InvalidInputError(
                f"response_format={response_format!r} must be one of "
                "'auto', 'json_schema', 'json_object', 'text'"
            )
        self.client = client
        self.model = model
        self.concurrency = concurrency
        self.start_concurrency = start_concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.max_prompt_tokens = max_prompt_tokens
        self.max_chunk_tokens = max_chunk_tokens
        self.max_tokens = max_tokens
        self.temperature = float(temperature)
        self.response_format = response_format
        self.count_tokens = count_tokens
        self.concurrency_trace_: list[int] = []
        self._loop: _LoopThread | None = None
        self._loop_lock = threading.Lock()

    @property
    def cache_id(self) -> str:
        return (
            f"openai:{self.model}:{PROMPT_VERSION}:t{self.temperature:g}"
            f":b{self.max_prompt_tokens}/{self.max_chunk_tokens}"
        )

    def initial_concurrency(self) -> int:
        """Requests in flight at the start of a run (``start_concurrency``, or by endpoint)."""
        if self.start_concurrency is not None:
            return self.start_concurrency
        return 1 if is_local_host(endpoint_host(self.client)) else self.concurrency

    # public -------------------------------------------------------------------------
    def label(
        self,
        requests: Sequence[LabelRequest],
        *,
        reserved: Collection[str] = (),
        progress: bool = False,
    ) -> list[LabelResult]:
        """Label clusters (blocking); see :meth:`alabel`."""
        is_async = self._client_is_async(_import_openai())
        coro = self.alabel(requests, reserved=reserved, progress=progress)
        if not is_async:
            return run_sync(coro)
        with self._loop_lock:
            if self._loop is None:
                self._loop = _LoopThread()
        return self._loop.run(coro)

    def _client_is_async(self, openai: Any) -> bool:
        create = self.client.chat.completions.create
        return isinstance(self.client, openai.AsyncOpenAI) or inspect.iscoroutinefunction(create)

    async def alabel(
        self,
        requests: Sequence[LabelRequest],
        *,
        reserved: Collection[str] = (),
        progress: bool = False,
    ) -> list[LabelResult]:
        """Label clusters concurrently.

        Returns:
            One :class:`LabelResult` per request, in order.

        Raises:
            MissingDependencyError: ``openai`` is not installed.
            LabelingError: the server refused the key or the model (401/403/404).
        """
        openai = _import_openai()
        client = self.client
        quick = full = client
        if hasattr(client, "with_options"):
            quick = client.with_options(max_retries=0, timeout=self.timeout)
            full = client.with_options(max_retries=self.max_retries, timeout=self.timeout)
        run = _Run(
            mode="json_schema" if self.response_format == "auto" else self.response_format,
            is_async=self._client_is_async(openai),
            limit=AdaptiveLimit(self.initial_concurrency(), self.concurrency),
            settled=self.response_format != "auto",
            quick=quick,
            full=full,
        )
        self.concurrency_trace_ = run.limit.trace
        bar = tqdm(total=len(requests), desc="labels", unit="topic", disable=not progress, leave=False)

        async def first(req: LabelRequest) -> _Outcome:
            out = await self._first_pass(openai, run, req)
            bar.update(1)
            return out

        try:
            outcomes = list(await asyncio.gather(*(first(r) for r in requests)))
            if run.fatal is None:
                await self._resolve_duplicates(openai, run, outcomes, reserved)
        finally:
            bar.close()
        if run.fatal is not None:
            raise LabelingError(
                f"the server refused model {self.model!r}: {run.fatal}; check the model name, the base "
                "URL and the API key (OPENAI_API_KEY)"
            ) from run.fatal
        return [self._result(o) for o in outcomes]

    # one cluster ----------------------------------------------------------------------
    async def _first_pass(self, openai: Any, run: _Run, req: LabelRequest) -> _Outcome:
        out = _Outcome(
            request=req,
            messages=build_messages(
                req,
                max_prompt_tokens=self.max_prompt_tokens,
                max_chunk_tokens=self.max_chunk_tokens,
                count_tokens=self.count_tokens,
            ),
        )
        try:
            out.raw = await self._ask(openai, run, out, out.messages)
            out.answer, problem = self._check(out)
            if problem is not None:
                out.history.append(problem)
                out.repaired = True
                avoid = [*req.siblings, *req.children]
                again = repair_messages(out.messages, out.raw, problem, avoid)
                out.raw = await self._ask(openai, run, out, again)
                out.answer, problem = self._check(out)
                if problem is not None:
                    out.error = f"invalid answer after one repair: {problem}"
        except _Failed as exc:
            out.answer, out.error, out.transient = None, str(exc), True
        except _Fatal as exc:
            out.answer, out.error = None, str(exc)
            run.fatal = run.fatal or exc
        return out

    async def _resolve_duplicates(
        self, openai: Any, run: _Run, outcomes: list[_Outcome], reserved: Collection[str]
    ) -> None:
        """Make every name distinct, deterministically (in topic-id order, whatever order answers came in).

        A name clashes when it equals or nearly equals (:func:`.names.closest_clash`) a
        reserved name, a name kept by a lower topic id, another cluster's keyword label,
        or a sibling or child name shown in its prompt (weak models copy the names they
        are shown). The first claimant keeps a name; the others get their one repair
        (listing the names to avoid), if still unused, else fall back. Fallback keyword
        labels are then made distinct too.
        """
        kept: list[str] = list(reserved)
        keyword_names = {o.request.topic_id: o.request.keyword_label for o in outcomes}

        def clash(o: _Outcome) -> str | None:
            others = [
                *kept,
                *(v for t, v in keyword_names.items() if t != o.request.topic_id and v),
                *o.request.siblings,
                *o.request.children,
            ]
            return closest_clash(o.answer.name, others)

        ordered = sorted(outcomes, key=lambda o: o.request.topic_id)
        dupes: list[tuple[_Outcome, str]] = []
        for o in ordered:
            if o.answer is not None:
                other = clash(o)
                if other is not None:
                    dupes.append((o, other))
                else:
                    kept.append(o.answer.name)
        display = [o.answer.name for o in ordered if o.answer is not None] + list(reserved)

        await asyncio.gather(*(self._repair_name(openai, run, o, other, display) for o, other in dupes))
        for o, _ in dupes:  # still in topic-id order
            if o.answer is None:
                continue
            other = clash(o)
            if other is not None:
                o.answer, o.error = None, f"duplicate name {o.answer.name!r} (of {other!r}) after one repair"
            else:
                kept.append(o.answer.name)
        taken = {normalize_name(n) for n in kept}
        for o in ordered:
            if o.answer is None:
                o.fallback_name = distinct_keyword_label(o.request, taken)
                taken.add(normalize_name(o.fallback_name))

    async def _repair_name(self, openai: Any, run: _Run, o: _Outcome, other: str, display: list[str]) -> None:
        """Ask once more for a name of ``o`` other than ``other`` and the ``display`` names.

        Updates ``o`` in place: its new answer (checked), or ``answer = None`` with the error
        when it was repaired already, the request failed, or the new answer is invalid.
        """
        name = o.answer.name
        problem = _clash_problem(name, other)
        o.history.append(problem)
        if o.repaired:
            o.answer, o.error = None, f"duplicate name {name!r} (of {other!r}) after one repair"
            return
        o.repaired = True
        avoid = dict.fromkeys([other, *display, *o.request.siblings, *o.request.children])
        try:
            again = repair_messages(o.messages, o.raw, problem, list(avoid))
            o.raw = await self._ask(openai, run, o, again)
        except (_Failed, _Fatal) as exc:
            o.answer, o.error, o.transient = None, str(exc), True
            return
        o.answer, bad = self._check(o)
        if bad is not None:
            o.error = f"invalid answer after one repair: {bad}"

    def _check(self, o: _Outcome) -> tuple[Any, str | None]:
        """Validate the last answer: the JSON object, then a name that is not just keywords.
        A cut-off answer is named as such (it is why the JSON broke)."""
        answer, problem = parse_answer(o.raw)
        if problem is not None and o.truncated:
            problem = (
                f"the answer was cut off at {self.max_tokens} tokens ({problem}); "
                "keep the description to one short sentence"
            )
        if answer is not None:
            problem = keyword_list_problem(answer.name, [*o.request.keywords, *o.request.children])
            if problem is not None:
                answer = None
        return answer, problem

    def _result(self, o: _Outcome) -> LabelResult:
        req = o.request
        if o.answer is None:
            return LabelResult(
                topic_id=req.topic_id,
                name=o.fallback_name or req.keyword_label,
                keywords=list(req.keywords),
                status="fallback",
                source="fallback",
                error=o.error or "no answer",
                transient=o.transient,
                prompt_tokens=o.prompt_tokens,
                completion_tokens=o.completion_tokens,
                calls=o.calls,
            )
        return LabelResult(
            topic_id=req.topic_id,
            name=o.answer.name,
            description=o.answer.description,
            keywords=list(o.answer.keywords) or list(req.keywords),
            status="repaired" if o.repaired else "ok",
            source="llm",
            error="; ".join(o.history) or None,
            prompt_tokens=o.prompt_tokens,
            completion_tokens=o.completion_tokens,
            calls=o.calls,
        )

    # one request: the client's retries, adaptive concurrency, response-format negotiation ----------
    def _format_kwargs(self, mode: str) -> dict[str, Any]:
        if mode == "json_schema":
            schema = {"name": "cluster_label", "schema": answer_schema(), "strict": True}
            return {"response_format": {"type": "json_schema", "json_schema": schema}}
        if mode == "json_object":  # llama.cpp's server also honours the "schema" key here
            return {"response_format": {"type": "json_object", "schema": answer_schema()}}
        return {}

    async def _create(self, client: Any, run: _Run, **kwargs: Any) -> tuple[Any, int]:
        """The completion and the retries the client took (``with_raw_response.retries_taken``)."""
        completions = client.chat.completions
        raw_api = getattr(completions, "with_raw_response", None)
        create = raw_api.create if raw_api is not None else completions.create
        if run.is_async:
            result = await create(**kwargs)
        else:
            result = await asyncio.to_thread(create, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        if raw_api is None:
            return result, 0
        return result.parse(), int(getattr(result, "retries_taken", 0) or 0)

    async def _ask(self, openai: Any, run: _Run, out: _Outcome, messages: list[dict[str, str]]) -> str:
        """The answer text of one request; raises _Failed after the retries, _Fatal on 401/403/404."""
        requeues = 0
        quick = True  # the format probe goes without retries until it fails for another reason
        while True:
            if run.fatal is not None:
                raise _Failed("skipped: the run stopped on a fatal error")
            async with run.probing() as probe:
                use_quick = probe and quick and run.quick is not run.full
                retries = 0 if use_quick else self.max_retries
                ticket = await run.limit.acquire()
                outcome: Outcome = "other"
                try:
                    mode = run.mode
                    started = time.monotonic()
                    try:
                        resp, taken = await self._create(
                            run.quick if use_quick else run.full,
                            run,
                            model=self.model,
                            messages=messages,
                            max_tokens=self.max_tokens,
                            temperature=self.temperature,
                            **self._format_kwargs(mode),
                        )
                    except openai.APIStatusError as exc:
                        status = int(exc.status_code)
                        text = str(exc)
                        retryable = status in _RETRY_STATUS or status >= 500
                        out.calls += 1 + (retries if retryable else 0)
                        if self._rejects_format(mode, status, text):
                            if run.mode == mode:
                                run.mode = _MODES[_MODES.index(mode) + 1]
                            continue  # not counted as a retry
                        if status in _FATAL_STATUS:
                            raise _Fatal(f"HTTP {status}: {_short(text)}") from exc
                        if status in _CONGESTION_STATUS:
                            outcome = "congested"
                        if retryable and use_quick:
                            quick = False
                            continue
                        if outcome == "congested" and ticket.limit > 1 and requeues < MAX_REQUEUES:
                            requeues += 1
                            continue
                        attempts = retries + 1 if retryable else 1
                        raise _Failed(f"HTTP {status} after {attempts} attempt(s): {_short(text)}") from exc
                    except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                        out.calls += 1 + retries
                        timed_out = isinstance(exc, openai.APITimeoutError)
                        outcome = "congested" if timed_out else "other"
                        if use_quick:
                            quick = False
                            continue
                        if timed_out and ticket.limit > 1 and requeues < MAX_REQUEUES:
                            requeues += 1  # the wait was ours: ask again once the limit dropped
                            continue
                        what = "timed out" if timed_out else "connection failed"
                        raise _Failed(
                            f"{what} after {retries + 1} attempt(s) (timeout {self.timeout:g}s, "
                            f"{ticket.limit} in flight): {_short(str(exc))}"
                        ) from exc
                    out.calls += 1 + taken
                    run.settled = True
                    outcome = self._answered_outcome(taken, time.monotonic() - started)
                finally:
                    await run.limit.release(ticket, outcome)
            return _answer_text(resp, out)

    def _answered_outcome(self, retries_taken: int, seconds: float) -> Outcome:
        """How an answered request went, for the adaptive limit: ``"congested"`` when it needed
        retries (the server is struggling), ``"slow"`` past half the timeout, else ``"ok"``."""
        if retries_taken:
            return "congested"
        if seconds > self.timeout / 2:
            return "slow"
        return "ok"

    def _rejects_format(self, mode: str, status: int, text: str) -> bool:
        if self.response_format != "auto" or mode == "text":
            return False
        if status in (400, 422):
            return True
        return status >= 500 and "response_format" in text


def _short(text: str, width: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
