"""Chroma persistence."""

from .chroma_store import RESERVED_PREFIX, ChromaStore, added_key, version_key

__all__ = ["RESERVED_PREFIX", "ChromaStore", "added_key", "version_key"]
