"""Checks at the door, written once: every public entry point validates its input here
before any work, with a message that names the value and the fix."""

from __future__ import annotations

import math
import re
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
    UnknownTopicError,
)
from .store import RESERVED_PREFIX

__all__ = [
    "check_bool",
    "check_chunk_ids",
    "check_collection_name",
    "check_encodable",
    "check_float",
    "check_ids",
    "check_int",
    "check_metadatas",
    "check_optional_int",
    "check_query_text",
    "check_texts",
    "check_topic_name",
    "check_topics",
    "check_vectors",
    "check_where",
]

_SCALARS = (str, int, float, bool)
_INT64 = (-(2**63), 2**63 - 1)
#: metadata keys Chroma keeps for itself or reads as filter operators
_CHROMA_RESERVED = ("chroma:", "$", "#")
_WHERE_COMPARE = ("$gt", "$gte", "$lt", "$lte")
_WHERE_OPERATORS = (*_WHERE_COMPARE, "$ne", "$eq", "$in", "$nin", "$contains", "$not_contains")
_COLLECTION_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
#: longest topic-id number accepted (int64); longer digit strings are unknown topics, never parsed
_MAX_TOPIC_DIGITS = 18


def _preview(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<an int of {value.bit_length()} bits>"  # repr of a huge int raises past 4300 digits
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not replace our message
        return f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def check_encodable(text: str, what: str, error: type[InvalidInputError] = InvalidInputError) -> str:
    """``text`` if it encodes as UTF-8 (no lone surrogates such as ``"\\ud800"``).

    Raises:
        InvalidInputError (or ``error``): the position and code point of the first lone surrogate.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise error(
            f"{what} holds a lone surrogate {bad!r} (U+{ord(bad):04X}) at position {exc.start}, which is not "
            "valid Unicode text and cannot be stored; decode the source with errors='replace' or drop it"
        ) from None
    return text


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
        check_encodable(text, f"texts[{i}]", EmptyTextError)
    return items


def check_metadatas(metadatas: Any, n: int) -> list[dict[str, Any]]:
    """One dict per text with values Chroma can store (scalars or non-empty same-typed lists).

    Raises:
        LengthMismatchError: not ``n`` items.
        MetadataError: not a dict; a key that is empty, not ``str``, reserved (``cr_*``, ``chroma:*``,
            ``$*``, ``#*``) or not valid Unicode; a value that is not a finite float, an int outside
            int64, valid Unicode text, or a non-empty list of one of those types.
    """
    if metadatas is None:
        return [{} for _ in range(n)]
    if isinstance(metadatas, (str, bytes, dict)):
        raise MetadataError(
            f"metadatas must be a list with one dict (or None) per text, got {type(metadatas).__name__}"
        )
    try:
        items = list(metadatas)
    except TypeError:
        raise MetadataError(f"metadatas={_preview(metadatas)} must be a list of dicts (or None)") from None
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
            _check_meta_key(key, f"metadatas[{i}]")
            _check_meta_value(value, f"metadatas[{i}][{key!r}]")
        out.append(dict(meta))
    return out


def _check_meta_key(key: Any, where: str) -> None:
    if not isinstance(key, str) or not key:
        raise MetadataError(f"{where} has key {_preview(key)}; keys must be non-empty strings")
    check_encodable(key, f"{where} key {_preview(key)}", MetadataError)
    if key.startswith(RESERVED_PREFIX):
        raise MetadataError(f"{where} key {key!r} uses the reserved prefix {RESERVED_PREFIX!r}; rename it")
    for prefix in _CHROMA_RESERVED:
        if key.startswith(prefix):
            raise MetadataError(
                f"{where} key {_preview(key)} starts with {prefix!r}, which Chroma reserves "
                "(for its own fields or filter operators); rename it"
            )


def _check_scalar(value: Any, where: str) -> bool:
    """True for a storable scalar; raises for a scalar Chroma cannot store; False for a non-scalar."""
    if isinstance(value, bool):
        return True
    if isinstance(value, str):
        check_encodable(value, f"{where} = {_preview(value)}", MetadataError)
        return True
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise MetadataError(
                f"{where} = {_preview(value)} is outside the 64-bit integer range Chroma stores; "
                "store it as a string"
            )
        return True
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MetadataError(
                f"{where} is {'NaN' if value != value else value}; Chroma stores only finite numbers "
                "(use None or a string)"
            )
        return True
    return False


def _check_meta_value(value: Any, where: str) -> None:
    if _check_scalar(value, where):
        return
    if isinstance(value, list) and value and all(type(v) is type(value[0]) for v in value):
        if all(_check_scalar(v, f"{where}[{j}]") for j, v in enumerate(value)):
            return
    raise MetadataError(
        f"{where} = {_preview(value)} ({type(value).__name__}) cannot be stored in "
        "Chroma; use str, int, float, bool or a non-empty list of one of those "
        "(e.g. json.dumps it)"
    )


def check_ids(ids: Sequence[Any] | None, n: int) -> list[str] | None:
    """``n`` unique non-empty string ids, or ``None``.

    Raises:
        LengthMismatchError: not ``n`` items.
        DuplicateIdError: an id repeats inside the call.
        EmptyTextError: an id is not a non-empty str.
    """
    if ids is None:
        return None
    if isinstance(ids, (str, bytes)):
        raise InvalidInputError(
            f"ids must be a list with one id per text, got the string {_preview(ids)}; wrap it in a list"
        )
    try:
        items = list(ids)
    except TypeError:
        raise InvalidInputError(f"ids={_preview(ids)} must be a list of strings (one per text)") from None
    if len(items) != n:
        raise LengthMismatchError(f"got {n} texts but {len(items)} ids; pass one id per text")
    seen: dict[str, int] = {}
    for i, cid in enumerate(items):
        if not isinstance(cid, str) or not cid:
            raise EmptyTextError(f"ids[{i}] = {_preview(cid)} must be a non-empty string")
        check_encodable(cid, f"ids[{i}]")
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
    return check_encodable(query, "query")


def check_chunk_ids(ids: Any, name: str = "ids") -> list[str]:
    """A list of non-empty ``str`` chunk ids (a bare string is rejected), duplicates dropped in order.

    Raises:
        InvalidInputError: a bare str, not iterable, or an item that is not a non-empty str.
    """
    if isinstance(ids, (str, bytes)):
        raise InvalidInputError(
            f"{name} must be a list of chunk ids, got the string {_preview(ids)}; wrap it in a list"
        )
    if ids is None or isinstance(ids, dict):
        raise InvalidInputError(f"{name}={_preview(ids)} must be a list of chunk ids")
    try:
        items = list(ids)
    except TypeError:
        raise InvalidInputError(f"{name}={_preview(ids)} must be a list of chunk ids") from None
    for i, cid in enumerate(items):
        if not isinstance(cid, str) or not cid:
            raise InvalidInputError(f"{name}[{i}] = {_preview(cid)} must be a non-empty string chunk id")
        check_encodable(cid, f"{name}[{i}]")
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
        with np.errstate(over="ignore"):  # values beyond float32 become inf, rejected below
            vectors = np.asarray(embeddings, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
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


def check_where(where: Any, name: str = "where") -> dict[str, Any] | None:
    """A Chroma metadata filter, checked against Chroma's grammar before any work.

    Grammar: ``{field: scalar}``, ``{field: {op: operand}}`` with ``op`` one of ``$eq $ne $gt $gte
    $lt $lte $in $nin $contains $not_contains``, or ``{"$and"|"$or": [filter, filter, ...]}``
    (at least two). ``$gt``-style operands are numbers; ``$in``/``$nin`` take a non-empty list
    of one scalar type.

    Raises:
        InvalidInputError: the first part that breaks the grammar, named with its path.
    """
    if where is None:
        return None
    _check_where_node(where, name)
    return dict(where)


def _where_error(path: str, problem: str) -> InvalidInputError:
    return InvalidInputError(
        f"{path}: {problem}; a filter looks like {{'lang': 'en'}}, {{'year': {{'$gte': 2020}}}} or "
        "{'$and': [{'lang': 'en'}, {'year': {'$in': [2020, 2021]}}]}"
    )


def _check_where_node(node: Any, path: str) -> None:
    if not isinstance(node, dict):
        raise _where_error(path, f"{_preview(node)} must be a dict")
    if len(node) != 1:
        raise _where_error(path, f"{_preview(node)} must have exactly one key (combine several with $and)")
    key, value = next(iter(node.items()))
    if not isinstance(key, str) or not key:
        raise _where_error(path, f"key {_preview(key)} must be a non-empty string")
    check_encodable(key, f"{path} key")
    if key in ("$and", "$or"):
        if not isinstance(value, list) or len(value) < 2:
            raise _where_error(
                f"{path}[{key!r}]", f"{_preview(value)} must be a list of at least two filters"
            )
        for i, sub in enumerate(value):
            _check_where_node(sub, f"{path}[{key!r}][{i}]")
        return
    if key.startswith("$"):
        raise _where_error(path, f"{key!r} is not a field and not $and/$or")
    here = f"{path}[{key!r}]"
    if isinstance(value, dict):
        if len(value) != 1:
            raise _where_error(here, f"{_preview(value)} must hold exactly one operator")
        op, operand = next(iter(value.items()))
        if op not in _WHERE_OPERATORS:
            raise _where_error(
                here, f"unknown operator {_preview(op)}; use one of {', '.join(_WHERE_OPERATORS)}"
            )
        _check_operand(op, operand, f"{here}[{op!r}]")
        return
    _check_where_scalar(value, here)


def _check_operand(op: str, operand: Any, path: str) -> None:
    if op in _WHERE_COMPARE:
        if isinstance(operand, bool) or not isinstance(operand, (int, float)):
            raise _where_error(path, f"{_preview(operand)} must be a number")
        _check_where_scalar(operand, path)
        return
    if op in ("$in", "$nin"):
        if not isinstance(operand, list) or not operand:
            raise _where_error(path, f"{_preview(operand)} must be a non-empty list")
        if not all(type(v) is type(operand[0]) for v in operand):
            raise _where_error(path, f"{_preview(operand)} mixes types; use one type")
        for i, v in enumerate(operand):
            _check_where_scalar(v, f"{path}[{i}]")
        return
    _check_where_scalar(operand, path)


def _check_where_scalar(value: Any, path: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, str):
        check_encodable(value, path)
        return
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise _where_error(path, f"{_preview(value)} is outside the 64-bit integer range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _where_error(path, f"{value} is not a finite number")
        return
    raise _where_error(path, f"{_preview(value)} ({type(value).__name__}) must be a str, int, float or bool")


def check_collection_name(name: Any) -> str:
    """A collection name Chroma accepts (3-512 of ``[a-zA-Z0-9._-]``, alphanumeric at both ends, no
    ``..``, not an IPv4 address), short enough for the ``__centroids`` companion collection.

    Raises:
        InvalidInputError: the name and the rule it breaks.
    """
    if not isinstance(name, str):
        raise InvalidInputError(f"collection={_preview(name)} must be a string")
    longest = 512 - len("__centroids")
    if (
        not _COLLECTION_NAME.match(name)
        or ".." in name
        or len(name) > longest
        or re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name)
    ):
        raise InvalidInputError(
            f"collection name {_preview(name)} is not allowed: use 3-{longest} characters from "
            "[a-zA-Z0-9._-], starting and ending with a letter or digit, without '..' (e.g. 'docs')"
        )
    return name


def check_topics(topics: Any) -> list[int | str] | None:
    """``None`` or a non-empty list of topic ids (int) or names (non-blank str), checked before lookup.

    A number (or digit string) longer than 18 digits cannot be a topic id and is rejected as
    unknown without being parsed.

    Raises:
        InvalidInputError: a bare value instead of a list, an empty list, or an item of another type.
        UnknownTopicError: an id too large to exist.
    """
    if topics is None:
        return None
    if isinstance(topics, (str, bytes, int, float, dict)):
        raise InvalidInputError(f"topics={_preview(topics)} must be a list of topic ids or names, e.g. [3]")
    try:
        items = list(topics)
    except TypeError:
        raise InvalidInputError(f"topics={_preview(topics)} must be a list of topic ids or names") from None
    if not items:
        raise InvalidInputError("topics=[] selects nothing; pass None to search every topic")
    for i, item in enumerate(items):
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            digits = (
                len(str(abs(int(item)))) if abs(int(item)) < 10**_MAX_TOPIC_DIGITS else _MAX_TOPIC_DIGITS + 1
            )
            if digits > _MAX_TOPIC_DIGITS or int(item) < 0:
                raise UnknownTopicError(
                    f"topics[{i}] = {_preview(item)} is not a topic id (see `cluster-rag topics`)"
                )
        elif isinstance(item, str) and item.strip():
            check_encodable(item, f"topics[{i}]")
            if item.strip().isdigit() and len(item.strip()) > _MAX_TOPIC_DIGITS:
                raise UnknownTopicError(
                    f"topics[{i}] = {_preview(item)} is not a topic id (see `cluster-rag topics`)"
                )
        else:
            raise InvalidInputError(
                f"topics[{i}] = {_preview(item)} must be a topic id (int) or a name (str)"
            )
    return items
