"""Checks at the door: every public write validates its whole input before touching the store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import DuplicateIdError, EmptyTextError, LengthMismatchError, MetadataError
from .store import RESERVED_PREFIX

__all__ = ["check_ids", "check_metadatas", "check_texts"]

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
    items = list(texts)
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
            if isinstance(value, list) and value and all(type(v) is type(value[0]) for v in value) and isinstance(
                value[0], _SCALARS
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
