"""Checks at the door, written once: every public entry point validates its input here
before any work, with a message that names the value and the fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import (
    DimensionMismatchError,
    DuplicateIdError,
    EmptyTextError,
    InvalidInputError,
    LengthMismatchError,
    MetadataError,
)
from .store import RESERVED_PREFIX

__all__ = [
    "check_bool",
    "check_chunk_ids",
    "check_float",
    "check_ids",
    "check_int",
    "check_metadatas",
    "check_optional_int",
    "check_query_text",
    "check_texts",
    "check_topic_name",
    "check_vectors",
]

_SCALARS = (str, int, float, bool)


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_texts(texts: Any) -> list[str]:
    """A list of non-blank ``str``.

    Raises:
        EmptyTextError: ``texts`` is a bare string, or an item is not ``str`` or is blank.
    """
    if isinstance(texts, (str, bytes)):
        raise EmptyTextError(
            f"texts must be a list of strings, got a single {type(texts).__name__} {_preview(texts)}; "
            "wrap it in a list"
        )
    try:
        items = list(texts)
    except TypeError:
        raise EmptyTextError(
            f"texts must be a list of strings, got {type(texts).__name__} {_preview(texts)}"
        ) from None
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise EmptyTextError(
                f"texts[{i}] is {type(text).__name__} {_preview(text)}, not str; convert or drop it"
            )
        if not text.strip():
            raise EmptyTextError(f"texts[{i}] is empty or whitespace-only ({text!r}); drop it")
    return items


def check_metadatas(metadatas: Sequence[Any] | None, n: int) -> list[dict[str, Any]]:
    """One dict per text with values Chroma can store (scalars or non-empty same-typed lists).

    Raises:
        LengthMismatchError: not ``n`` items.
        MetadataError: not a dict, a key that is empty, not ``str`` or reserved (``cr_*``), or a bad value.
    """
    if metadatas is None:
        return [{} for _ in range(n)]
    items = list(metadatas)
    if len(items) != n:
        raise LengthMismatchError(f"got {n} texts but {len(items)} metadatas; pass one dict per text")
    out: list[dict[str, Any]] = []
    for i, meta in enumerate(items):
        if meta is None:
            out.append({})
            continue
        if not isinstance(meta, dict):
            raise MetadataError(f"metadatas[{i}] is {type(meta).__name__}, expected a dict or None")
        for key, value in meta.items():
            if not isinstance(key, str) or not key:
                raise MetadataError(f"metadatas[{i}] has key {key!r}; keys must be non-empty strings")
            if key.startswith(RESERVED_PREFIX):
                raise MetadataError(
                    f"metadatas[{i}] key {key!r} uses the reserved prefix {RESERVED_PREFIX!r}; rename it"
                )
            if isinstance(value, _SCALARS):
                if isinstance(value, float) and value != value:
                    raise MetadataError(f"metadatas[{i}][{key!r}] is NaN; Chroma cannot store NaN")
                continue
            if (
                isinstance(value, list)
                and value
                and all(type(v) is type(value[0]) for v in value)
                and isinstance(value[0], _SCALARS)
            ):
                continue
            raise MetadataError(
                f"metadatas[{i}][{key!r}] = {_preview(value)} ({type(value).__name__}) cannot be stored in "
                "Chroma; use str, int, float, bool or a non-empty list of one of those "
                "(e.g. json.dumps it)"
            )
        out.append(dict(meta))
    return out


def check_ids(ids: Sequence[Any] | None, n: int) -> list[str] | None:
    """``n`` unique non-empty string ids, or ``None``.

    Raises:
        LengthMismatchError: not ``n`` items.
        DuplicateIdError: an id repeats inside the call.
        EmptyTextError: an id is not a non-empty str.
    """
    if ids is None:
        return None
    items = list(ids)
    if len(items) != n:
        raise LengthMismatchError(f"got {n} texts but {len(items)} ids; pass one id per text")
    seen: dict[str, int] = {}
    for i, cid in enumerate(items):
        if not isinstance(cid, str) or not cid:
            raise EmptyTextError(f"ids[{i}] = {_preview(cid)} must be a non-empty string")
        if cid in seen:
            raise DuplicateIdError(
                f"id {cid!r} appears twice in this call (positions {seen[cid]} and {i}); ids must be unique"
            )
        seen[cid] = i
    return items


def check_int(
    value: Any,
    name: str,
    *,
    low: int | None = None,
    high: int | None = None,
    error: type[InvalidInputError] = InvalidInputError,
) -> int:
    """An ``int`` (Python or numpy integer, never ``bool``) in ``[low, high]``.

    Raises:
        InvalidInputError (or ``error``): not an integer, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise error(f"{name}={_preview(value)} must be an int{_range_text(low, high)}")
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise error(f"{name}={number} is out of range: it must be an int{_range_text(low, high)}")
    return number


def check_optional_int(
    value: Any, name: str, *, low: int | None = None, high: int | None = None
) -> int | None:
    """``None``, or :func:`check_int`."""
    return None if value is None else check_int(value, name, low=low, high=high)


def check_float(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    """A finite real number (not ``bool``) in ``[low, high]`` (``(low, high]`` with ``low_open``).

    Raises:
        InvalidInputError: not a finite number, or out of range.
    """
    bounds = f" in {'(' if low_open else '['}{low}, {high}]" if low is not None and high is not None else ""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"{name}={_preview(value)} must be a number{bounds}")
    number = float(value)
    if not np.isfinite(number):
        raise InvalidInputError(f"{name}={number} must be a finite number{bounds}")
    too_low = low is not None and (number <= low if low_open else number < low)
    if too_low or (high is not None and number > high):
        raise InvalidInputError(f"{name}={number} must be a number{bounds}")
    return number


def check_bool(value: Any, name: str) -> bool:
    """A real ``bool`` (``1``/``"yes"`` are rejected, not guessed)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"{name}={_preview(value)} must be True or False")
    return bool(value)


def check_query_text(query: Any) -> str:
    """A non-blank ``str`` query.

    Raises:
        InvalidInputError: not a str, or blank.
    """
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError(f"query must be a non-blank string, got {_preview(query)}")
    return query


def check_chunk_ids(ids: Any, name: str = "ids") -> list[str]:
    """A list of non-empty ``str`` chunk ids (a bare string is rejected), duplicates dropped in order.

    Raises:
        InvalidInputError: a bare str, not iterable, or an item that is not a non-empty str.
    """
    if isinstance(ids, (str, bytes)):
        raise InvalidInputError(
            f"{name} must be a list of chunk ids, got the string {_preview(ids)}; wrap it in a list"
        )
    try:
        items = list(ids)
    except TypeError:
        raise InvalidInputError(f"{name}={_preview(ids)} must be a list of chunk ids") from None
    for i, cid in enumerate(items):
        if not isinstance(cid, str) or not cid:
            raise InvalidInputError(f"{name}[{i}] = {_preview(cid)} must be a non-empty string chunk id")
    return list(dict.fromkeys(items))


def _range_text(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def check_vectors(embeddings: Any, n: int, dimension: int, model_name: str) -> np.ndarray:
    """``(n, dimension)`` finite, non-zero vectors as float32.

    Raises:
        DimensionMismatchError: wrong shape.
        InvalidInputError: not numeric, NaN/inf, or a zero vector.
    """
    try:
        vectors = np.asarray(embeddings, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"embeddings must be an (n, d) array of numbers, got {type(embeddings).__name__}"
        ) from None
    if vectors.ndim != 2 or vectors.shape != (n, dimension):
        raise DimensionMismatchError(
            f"embeddings have shape {vectors.shape}; expected ({n}, {dimension}) for model {model_name!r}"
        )
    if not np.all(np.isfinite(vectors)):
        raise InvalidInputError("embeddings contain NaN or inf; recompute them")
    if n and not np.all(np.linalg.norm(vectors, axis=1) > 0):
        raise InvalidInputError("embeddings contain a zero vector (no direction to compare); recompute it")
    return vectors


def check_topic_name(name: Any, description: Any) -> tuple[str, str | None]:
    """A topic name (whitespace folded, 1-120 characters, not a bare number) and an optional description.

    Raises:
        InvalidInputError: blank, too long or numeric name; description not a str.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"name={_preview(name)} must be a non-blank string")
    name = " ".join(name.split())
    if len(name) > 120 or name.isdigit():
        raise InvalidInputError(
            f"name {_preview(name)} must be at most 120 characters and not a bare number "
            "(numbers are topic ids)"
        )
    if description is not None and not isinstance(description, str):
        raise InvalidInputError(f"description={_preview(description)} must be a string or None")
    return name, description
