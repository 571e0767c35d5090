"""Split text into chunks on natural boundaries (paragraph, line, sentence, word)."""

from __future__ import annotations

import re

__all__ = ["chunk_text"]

_SEPARATORS = ("\n\n", "\n", ". ", " ")
_WS = re.compile(r"[ \t]+")


def chunk_text(text: str, *, chunk_size: int = 1000, overlap: int = 100) -> list[str]:
    """Split ``text`` into chunks of at most ``chunk_size`` characters.

    Splits on the coarsest separator that fits (blank line, newline, sentence end,
    space), then packs pieces greedily; consecutive chunks share up to ``overlap``
    characters of trailing context. Whitespace-only chunks are dropped.

    Args:
        text: any text.
        chunk_size: maximum characters per chunk (>= 20).
        overlap: characters of the previous chunk repeated at the start of the next.

    Returns:
        Chunks in document order; ``[]`` for blank text.
    """
    text = text.strip()
    if not text:
        return []
    if len(text) <= chunk_size:
        return [text]
    pieces = _split(text, chunk_size, 0)
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + len(piece) > chunk_size:
            chunks.append(current.strip())
            tail = current[-overlap:] if overlap else ""
            # start the overlap at a word boundary
            cut = tail.find(" ")
            tail = tail[cut + 1 :] if cut >= 0 else tail
            current = tail if len(tail) + len(piece) <= chunk_size else ""
        current += piece
    if current.strip():
        chunks.append(current.strip())
    return [c for c in chunks if c]


def _split(text: str, size: int, level: int) -> list[str]:
    """Pieces no longer than ``size``, each keeping its trailing separator."""
    if len(text) <= size:
        return [text]
    if level >= len(_SEPARATORS):
        return [text[i : i + size] for i in range(0, len(text), size)]
    sep = _SEPARATORS[level]
    parts = text.split(sep)
    out: list[str] = []
    for i, part in enumerate(parts):
        piece = part + (sep if i < len(parts) - 1 else "")
        if len(piece) <= size:
            out.append(piece)
        else:
            out.extend(_split(piece, size, level + 1))
    return out
