"""Cluster names from any OpenAI-compatible chat-completions server.

One request per cluster (keywords + MMR representatives + sibling names, cut to a
token budget), at most ``concurrency`` in flight. Each request has a timeout and
is retried with exponential backoff on timeouts, connection errors, 408/409/429 and
5xx. ``response_format`` is negotiated per run: JSON schema first; a server that
rejects it (400/422, or llama.cpp's 500 naming ``response_format``) is asked with
``json_object`` and then with plain prompting, whose answer is parsed by taking
its first JSON object. A malformed, empty or duplicate answer gets exactly one
repair request that says what was wrong; after that the cluster keeps its keyword
label, flagged ``"fallback"``. Only errors no cluster can recover from
(401/403/404: wrong key or model) stop the run, with :class:`LabelingError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import AsyncIterator, Collection, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tqdm.auto import tqdm

from ..errors import InvalidInputError, LabelingError, missing_dependency
from .base import LabelRequest, LabelResult, normalize_name
from .keyword_labeler import distinct_keyword_label
from .prompt import (
    PROMPT_VERSION,
    TokenCounter,
    answer_schema,
    build_messages,
    parse_answer,
    repair_messages,
)

__all__ = ["OpenAILabeler"]

_MODES = ("json_schema", "json_object", "text")
_RETRY_STATUS = {408, 409, 429}
_FATAL_STATUS = {401, 403, 404}
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
    sem: asyncio.Semaphore
    settled: bool  # the response format is known to work (a request succeeded with it)
    probe_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    fatal: BaseException | None = None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """A concurrency slot; until one request has succeeded, requests go one at a time
        so that a server rejecting the response format is probed once, not by every request."""
        held = False
        if not self.settled:
            await self.probe_lock.acquire()
            held = not self.settled
            if not held:
                self.probe_lock.release()
        try:
            async with self.sem:
                yield
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


class OpenAILabeler:
    """Names clusters with an LLM behind any OpenAI-compatible ``/v1/chat/completions``.

    Args:
        client: an ``openai.OpenAI`` or ``openai.AsyncOpenAI`` you built (``base_url``,
            ``api_key``); it is used as given, never built here. A sync client runs in
            worker threads.
        model: model name the server knows.
        concurrency: requests in flight at once.
        timeout: seconds per request.
        max_retries: retries per request on timeouts, connection errors, 408/409/429, 5xx
            (the client's own retries are turned off so these are the only ones).
        backoff: first retry delay in seconds; doubles each retry (a ``Retry-After``
            header, if longer, wins), capped at ``max_backoff``.
        max_backoff: longest wait between retries, in seconds.
        max_prompt_tokens: budget of the prompt (estimated, see ``count_tokens``).
        max_chunk_tokens: budget of each representative text inside the prompt.
        max_tokens: completion tokens per answer.
        temperature: sampling temperature (0: as deterministic as the server allows).
        response_format: ``"auto"`` (JSON schema, degrading to ``json_object`` and then
            plain prompting when the server rejects it), or one of ``"json_schema"``,
            ``"json_object"``, ``"text"`` to force a mode.
        count_tokens: ``str -> int`` token counter; default ``ceil(chars / 4)``.
    """

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
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
        for name, fvalue in (("timeout", timeout), ("backoff", backoff), ("max_backoff", max_backoff)):
            if isinstance(fvalue, bool) or not isinstance(fvalue, (int, float)) or fvalue < 0 or (
                name == "timeout" and fvalue == 0
            ):
                raise InvalidInputError(f"{name}={fvalue!r} must be a positive number of seconds")
        if response_format not in ("auto", *_MODES):
            raise InvalidInputError(
                f"response_format={response_format!r} must be one of "
                "'auto', 'json_schema', 'json_object', 'text'"
            )
        self.client = client
        self.model = model
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_prompt_tokens = max_prompt_tokens
        self.max_chunk_tokens = max_chunk_tokens
        self.max_tokens = max_tokens
        self.temperature = float(temperature)
        self.response_format = response_format
        self.count_tokens = count_tokens
        self._loop: _LoopThread | None = None
        self._loop_lock = threading.Lock()

    @property
    def cache_id(self) -> str:
        return (
            f"openai:{self.model}:{PROMPT_VERSION}:t{self.temperature:g}"
            f":b{self.max_prompt_tokens}/{self.max_chunk_tokens}"
        )

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
        is_async = self._client_is_async(openai)
        run = _Run(
            mode="json_schema" if self.response_format == "auto" else self.response_format,
            is_async=is_async,
            sem=asyncio.Semaphore(self.concurrency),
            settled=self.response_format != "auto",
        )
        client = self.client
        if hasattr(client, "with_options"):  # our retries are the only ones
            client = client.with_options(max_retries=0)
        bar = tqdm(total=len(requests), desc="labels", unit="topic", disable=not progress, leave=False)

        async def first(req: LabelRequest) -> _Outcome:
            out = await self._first_pass(openai, client, run, req)
            bar.update(1)
            return out

        try:
            outcomes = list(await asyncio.gather(*(first(r) for r in requests)))
            if run.fatal is None:
                await self._resolve_duplicates(openai, client, run, outcomes, reserved)
        finally:
            bar.close()
        if run.fatal is not None:
            raise LabelingError(
                f"the server refused model {self.model!r}: {run.fatal}; check the model name, the base "
                "URL and the API key (OPENAI_API_KEY)"
            ) from run.fatal
        return [self._result(o) for o in outcomes]

    # one cluster ----------------------------------------------------------------------
    async def _first_pass(self, openai: Any, client: Any, run: _Run, req: LabelRequest) -> _Outcome:
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
            out.raw = await self._ask(openai, client, run, out, out.messages)
            out.answer, problem = self._check(out)
            if problem is not None:
                out.history.append(problem)
                out.repaired = True
                out.raw = await self._ask(
                    openai, client, run, out, repair_messages(out.messages, out.raw, problem, req.siblings)
                )
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
        self, openai: Any, client: Any, run: _Run, outcomes: list[_Outcome], reserved: Collection[str]
    ) -> None:
        """Make every name distinct, deterministically (in topic-id order, whatever order answers came in).

        A name clashes with a reserved name, with a name kept by a lower topic id, or with
        another cluster's keyword label (weak models copy the sibling names they are shown).
        The first claimant keeps a name; the others get their one repair, if still unused,
        else fall back. Fallback keyword labels are then made distinct too.
        """
        taken = {normalize_name(n) for n in reserved}
        keyword_names = {o.request.topic_id: normalize_name(o.request.keyword_label) for o in outcomes}

        def clashes(o: _Outcome) -> bool:
            key = normalize_name(o.answer.name)
            others = (v for t, v in keyword_names.items() if t != o.request.topic_id)
            return key in taken or key in set(others)

        ordered = sorted(outcomes, key=lambda o: o.request.topic_id)
        dupes: list[_Outcome] = []
        for o in ordered:
            if o.answer is not None:
                if clashes(o):
                    dupes.append(o)
                else:
                    taken.add(normalize_name(o.answer.name))
        display = {o.answer.name for o in outcomes if o.answer is not None} | set(reserved)

        async def repair(o: _Outcome) -> None:
            name = o.answer.name
            problem = f"the name {name!r} is already used by another group"
            o.history.append(problem)
            if o.repaired:
                o.answer, o.error = None, f"duplicate name {name!r} after one repair"
                return
            o.repaired = True
            avoid = display | set(o.request.siblings)
            try:
                again = repair_messages(o.messages, o.raw, problem, avoid)
                o.raw = await self._ask(openai, client, run, o, again)
            except (_Failed, _Fatal) as exc:
                o.answer, o.error, o.transient = None, str(exc), True
                return
            o.answer, bad = self._check(o)
            if bad is not None:
                o.error = f"invalid answer after one repair: {bad}"

        await asyncio.gather(*(repair(o) for o in dupes))
        for o in dupes:  # still in topic-id order
            if o.answer is None:
                continue
            if clashes(o):
                o.answer, o.error = None, f"duplicate name {o.answer.name!r} after one repair"
            else:
                taken.add(normalize_name(o.answer.name))
        for o in ordered:
            if o.answer is None:
                o.fallback_name = distinct_keyword_label(o.request, taken)
                taken.add(normalize_name(o.fallback_name))

    def _check(self, o: _Outcome) -> tuple[Any, str | None]:
        """Validate the last answer; a cut-off answer is named as such (it is why the JSON broke)."""
        answer, problem = parse_answer(o.raw)
        if problem is not None and o.truncated:
            problem = (
                f"the answer was cut off at {self.max_tokens} tokens ({problem}); "
                "keep the description to one short sentence"
            )
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

    # one request, with retries and response-format negotiation ------------------------------
    def _format_kwargs(self, mode: str) -> dict[str, Any]:
        if mode == "json_schema":
            schema = {"name": "cluster_label", "schema": answer_schema(), "strict": True}
            return {"response_format": {"type": "json_schema", "json_schema": schema}}
        if mode == "json_object":  # llama.cpp's server also honours the "schema" key here
            return {"response_format": {"type": "json_object", "schema": answer_schema()}}
        return {}

    async def _create(self, client: Any, run: _Run, **kwargs: Any) -> Any:
        create = client.chat.completions.create
        if run.is_async:
            return await create(**kwargs)
        result = await asyncio.to_thread(create, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _ask(
        self, openai: Any, client: Any, run: _Run, out: _Outcome, messages: list[dict[str, str]]
    ) -> str:
        """The answer text of one request; raises _Failed after the retries, _Fatal on 401/403/404."""
        attempt = 0
        while True:
            if run.fatal is not None:
                raise _Failed("skipped: the run stopped on a fatal error")
            mode = run.mode
            try:
                async with run.slot():
                    mode = run.mode
                    out.calls += 1
                    resp = await self._create(
                        client,
                        run,
                        model=self.model,
                        messages=messages,
                        max_tokens=self.max_tokens,
                        temperature=self.temperature,
                        timeout=self.timeout,
                        **self._format_kwargs(mode),
                    )
                    run.settled = True
            except openai.APIStatusError as exc:
                status = int(exc.status_code)
                text = str(exc)
                if self._rejects_format(mode, status, text):
                    if run.mode == mode:
                        run.mode = _MODES[_MODES.index(mode) + 1]
                    continue  # not counted as a retry
                if status in _FATAL_STATUS:
                    raise _Fatal(f"HTTP {status}: {_short(text)}") from exc
                if (status in _RETRY_STATUS or status >= 500) and attempt < self.max_retries:
                    await asyncio.sleep(self._delay(attempt, exc))
                    attempt += 1
                    continue
                raise _Failed(f"HTTP {status} after {attempt + 1} attempt(s): {_short(text)}") from exc
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                if attempt < self.max_retries:
                    await asyncio.sleep(self._delay(attempt, None))
                    attempt += 1
                    continue
                what = "timed out" if isinstance(exc, openai.APITimeoutError) else "connection failed"
                raise _Failed(
                    f"{what} after {attempt + 1} attempt(s) (timeout {self.timeout:g}s): {_short(str(exc))}"
                ) from exc
            usage = getattr(resp, "usage", None)
            if usage is not None:
                out.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
                out.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
            choices = getattr(resp, "choices", None) or []
            content = getattr(choices[0].message, "content", None) if choices else None
            out.truncated = bool(choices) and getattr(choices[0], "finish_reason", None) == "length"
            return content or ""

    def _rejects_format(self, mode: str, status: int, text: str) -> bool:
        if self.response_format != "auto" or mode == "text":
            return False
        if status in (400, 422):
            return True
        return status >= 500 and "response_format" in text

    def _delay(self, attempt: int, exc: Any) -> float:
        delay = self.backoff * (2**attempt)
        headers = getattr(getattr(exc, "response", None), "headers", None)
        retry_after = headers.get("retry-after") if headers is not None else None
        if retry_after is not None:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass
        return float(min(delay, self.max_backoff))


def _short(text: str, width: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
