"""The chunk-id format, written once: ``<base>#<n>`` is piece ``n`` of a split source.

Files are chunked into ``<path>#0``, ``<path>#1``, …; a JSONL/CSV record that needs
several chunks becomes ``<record id>#<n>`` (one chunk keeps the bare record id).
Evaluation maps chunk ids back to document ids with :func:`document_id`; agent
tools find a chunk's neighbours with :func:`split_chunk_id`.
"""

from __future__ import annotations

import re

__all__ = ["chunk_id", "document_id", "split_chunk_id"]

_PIECE = re.compile(r"^(?P<base>.+)#(?P<n>\d+)$")


def chunk_id(base: str, n: int) -> str:
    """Id of piece ``n`` (0-based) of ``base``."""
    return f"{base}#{n}"


def split_chunk_id(cid: str) -> tuple[str, int] | None:
    """``(base, n)`` of a piece id, or ``None`` when ``cid`` is not one."""
    match = _PIECE.match(cid)
    return (match["base"], int(match["n"])) if match else None


def document_id(cid: str) -> str:
    """The document a chunk belongs to: ``base`` of a piece id, else ``cid`` itself."""
    parts = split_chunk_id(cid)
    return parts[0] if parts else cid
