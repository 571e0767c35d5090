"""Foreign exceptions never escape a public call: Chroma, sqlite, OS and HTTP errors become the
matching :class:`~cluster_rag.errors.ClusterRagError` subclass, with the fix named.

:func:`guard_public_methods` wraps every public method (and property, classmethod, ``__len__``)
of a class once, at import; :func:`translate` is the one mapping; :func:`retry_transient`
retries the errors a store shows while another client writes to it.

Only errors that come from the store's layers are translated: an exception raised by a
Chroma / httpx / sqlite frame, or an ``OSError``. A ``TypeError`` raised by cluster-rag's own
code is a bug and is left as it is, so it gets reported rather than hidden.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from .errors import (
    ClusterRagError,
    InvalidInputError,
    StoreConnectionError,
    StoreCorruptedError,
    StoreError,
    StoreNotFoundError,
    UnsupportedFileError,
)

__all__ = ["guard_public_methods", "is_transient", "retry_transient", "translate"]

T = TypeVar("T")
_FOREIGN_PACKAGES = ("chromadb", "httpx", "httpcore", "sqlite3", "urllib3", "requests")
_REPAIR = "run `cluster-rag repair --path PATH` (embedded) or check the server's disk"
_RESTART = "start the server again (`chroma run --path ./chroma-data --port 8000`) or check the URL"
#: message fragments of errors a store shows while another client writes (retried)
_TRANSIENT = ("error finding id", "database is locked", "busy", "temporarily", "timed out")
_CORRUPT = ("malformed", "not a database", "error loading hnsw", "hnsw segment", "corrupt", "failed to load")


def _raised_in(tb: TracebackType | None) -> str:
    """Top-level package of the innermost frame that raised (``""`` when unknown)."""
    filename = ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename.replace("\\", "/")
        tb = tb.tb_next
    for package in _FOREIGN_PACKAGES:
        if f"/{package}/" in filename or filename.endswith(f"/{package}.py"):
            return package
    return ""


def _origin(exc: BaseException) -> str:
    module = type(exc).__module__.split(".")[0]
    if module in _FOREIGN_PACKAGES:
        return module
    return _raised_in(exc.__traceback__)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def translate(exc: BaseException) -> ClusterRagError | None:
    """The :class:`ClusterRagError` a foreign exception stands for, or ``None`` to let it through.

    ``None`` for our own errors, for ``KeyboardInterrupt``-style exits and for exceptions that do
    not come from the store's layers (our own bugs).
    """
    if isinstance(exc, ClusterRagError) or not isinstance(exc, Exception):
        return None
    origin = _origin(exc)
    text = _short(exc)
    lowered = text.lower()
    name = type(exc).__name__
    if origin in ("httpx", "httpcore", "urllib3", "requests") or (
        origin == "chromadb" and ("could not connect" in lowered or isinstance(exc, ConnectionError))
    ):
        return StoreConnectionError(f"the Chroma server stopped answering ({name}: {text}); {_RESTART}")
    if origin == "chromadb":
        if name == "NotFoundError":
            return StoreNotFoundError(
                f"Chroma no longer finds it ({text}); another client deleted the collection: reopen the index"
            )
        if name in ("InvalidArgumentError", "DuplicateIDError") or type(exc) in (ValueError, TypeError):
            return InvalidInputError(f"Chroma rejected the request: {text}; check the arguments")
        if any(part in lowered for part in _CORRUPT):
            return StoreCorruptedError(f"the store cannot be read ({name}: {text}); {_REPAIR}")
        return StoreError(f"Chroma failed ({name}: {text}); retry, and if it persists {_REPAIR}")
    if isinstance(exc, sqlite3.Error) or origin == "sqlite3":
        if any(part in lowered for part in _CORRUPT):
            return StoreCorruptedError(f"the store's database is damaged ({text}); {_REPAIR}")
        return StoreError(f"the store's database failed ({name}: {text}); retry, or {_REPAIR}")
    if type(exc).__module__ in ("_csv", "csv"):
        return UnsupportedFileError(
            f"a CSV file could not be parsed ({text}); check its quoting, or split very long fields "
            "(a field may hold at most 131,072 characters)"
        )
    if isinstance(exc, json.JSONDecodeError):
        return StoreCorruptedError(f"a record of the store is not valid JSON ({text}); {_REPAIR}")
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return StoreError(
            f"the operating system refused{where}: {text}; check permissions and free disk space, then retry"
        )
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is one a store shows while another client writes (worth a retry)."""
    if isinstance(exc, ClusterRagError):
        return False
    return _origin(exc) in ("chromadb", "sqlite3") and any(p in _short(exc).lower() for p in _TRANSIENT)


def retry_transient(fn: Callable[[], T], *, attempts: int = 6, first_delay: float = 0.05) -> T:
    """``fn()``, retried with doubling delays while it raises a transient store error.

    Raises:
        The last error, translated by :func:`translate` when it is a foreign one.
    """
    delay = first_delay
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt + 1 < attempts and is_transient(exc):
                time.sleep(delay)
                delay *= 2
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            err = translate(exc)
            if err is None:
                raise
            raise err from exc

    wrapper.__cluster_rag_guarded__ = True  # type: ignore[attr-defined]
    return wrapper


def guard_public_methods(cls: type[T]) -> type[T]:
    """Wrap every public method, classmethod, staticmethod and property of ``cls`` (and
    ``__len__``/``__iter__``/``__contains__``) so foreign exceptions leave as :class:`ClusterRagError`."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") and name not in ("__len__", "__iter__", "__contains__"):
            continue
        if isinstance(member, classmethod):
            setattr(cls, name, classmethod(_guarded(member.__func__)))
        elif isinstance(member, staticmethod):
            setattr(cls, name, staticmethod(_guarded(member.__func__)))
        elif isinstance(member, property):
            setattr(
                cls,
                name,
                property(
                    _guarded(member.fget) if member.fget else None,
                    _guarded(member.fset) if member.fset else None,
                    member.fdel,
                    member.__doc__,
                ),
            )
        elif callable(member) and not getattr(member, "__cluster_rag_guarded__", False):
            setattr(cls, name, _guarded(member))
    return cls
