"""Files → chunks."""

from .chunker import chunk_text
from .loaders import SUPPORTED_SUFFIXES, iter_files, load_chunks

__all__ = ["SUPPORTED_SUFFIXES", "chunk_text", "iter_files", "load_chunks"]
