"""Files → chunks, and re-ingest that updates the stored chunks of changed files."""

from .chunker import chunk_text
from .loaders import SUPPORTED_SUFFIXES, file_kind, iter_files, load_chunks
from .sync import SyncReport, plan_sync, sync_chunks, sync_files

__all__ = [
    "SUPPORTED_SUFFIXES",
    "SyncReport",
    "chunk_text",
    "file_kind",
    "iter_files",
    "load_chunks",
    "plan_sync",
    "sync_chunks",
    "sync_files",
]
