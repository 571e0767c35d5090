"""One exception tree for cluster-rag.

Every error the library raises on purpose derives from :class:`ClusterRagError`.
Subclasses also inherit the builtin they refine, so ``except ValueError`` keeps
working for callers who do not know this package::

    ClusterRagError
    ├── InvalidInputError (ValueError)
    │   ├── EmptyTextError              empty, whitespace-only or non-str text
    │   ├── LengthMismatchError         texts / metadatas / ids of different lengths
    │   ├── DuplicateIdError            id repeated in a call or already stored
    │   ├── MetadataError               a value Chroma cannot store, or a reserved key
    │   ├── InvalidKError               k < 2 or k > number of chunks
    │   ├── DimensionMismatchError      vector of the wrong width
    │   ├── UnknownTopicError (KeyError) topic id or name that does not exist
    │   └── UnknownDocumentError (KeyError) chunk id that does not exist
    ├── NotFittedError (ValueError)     search / topics before fit
    ├── ModelMismatchError (ValueError) store made with another embedding model
    ├── StoreNotFoundError (FileNotFoundError)  missing path or collection
    ├── StoreConnectionError (ConnectionError)  Chroma server unreachable
    ├── StoreError (RuntimeError)       Chroma, sqlite or the disk failed an operation
    │   └── StoreCorruptedError         the store cannot be read: run `cluster-rag repair`
    ├── ConcurrentWriteError (RuntimeError)  another process changed the store meanwhile
    ├── UnsupportedFileError (ValueError)       unknown suffix or undecodable file
    ├── VersionError (LookupError)      unknown model version (rollback, prune)
    ├── LabelingError (RuntimeError)    a labeler could not produce a label
    └── MissingDependencyError (ImportError)    optional extra not installed
"""

from __future__ import annotations

__all__ = [
    "ClusterRagError",
    "ConcurrentWriteError",
    "DimensionMismatchError",
    "DuplicateIdError",
    "EmptyTextError",
    "InvalidInputError",
    "InvalidKError",
    "LabelingError",
    "LengthMismatchError",
    "MetadataError",
    "MissingDependencyError",
    "ModelMismatchError",
    "NotFittedError",
    "StoreConnectionError",
    "StoreCorruptedError",
    "StoreError",
    "StoreNotFoundError",
    "UnknownDocumentError",
    "UnknownTopicError",
    "UnsupportedFileError",
    "VersionError",
]


class ClusterRagError(Exception):
    """Base class of every error raised on purpose by cluster-rag."""


class InvalidInputError(ClusterRagError, ValueError):
    """Input rejected at the door; nothing was written."""


class EmptyTextError(InvalidInputError):
    """A text is empty, whitespace-only or not a ``str``."""


class LengthMismatchError(InvalidInputError):
    """Parallel lists (texts, metadatas, ids) have different lengths."""


class DuplicateIdError(InvalidInputError):
    """An id is repeated inside one call or already exists in the store."""


class MetadataError(InvalidInputError):
    """A metadata value cannot be stored in Chroma, or a key is reserved."""


class InvalidKError(InvalidInputError):
    """The number of clusters is out of range for the data."""


class DimensionMismatchError(InvalidInputError):
    """A vector does not have the dimension the store was built with."""


class UnknownTopicError(InvalidInputError, KeyError):
    """A topic id or name that does not exist in the active model."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnknownDocumentError(InvalidInputError, KeyError):
    """A chunk id that does not exist in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class NotFittedError(ClusterRagError, ValueError):
    """The index has no cluster model yet: call ``fit`` first."""


class ModelMismatchError(ClusterRagError, ValueError):
    """The store was built with another embedding model or dimension."""


class StoreNotFoundError(ClusterRagError, FileNotFoundError):
    """The path or collection does not exist."""


class StoreConnectionError(ClusterRagError, ConnectionError):
    """The Chroma server cannot be reached."""


class StoreError(ClusterRagError, RuntimeError):
    """Chroma, its sqlite database or the disk failed an operation (the message names the fix)."""


class StoreCorruptedError(StoreError):
    """The store's files cannot be read (e.g. a half-written vector segment after a crash);
    ``cluster-rag repair --path PATH`` rebuilds them from the records Chroma keeps."""


class ConcurrentWriteError(ClusterRagError, RuntimeError):
    """Another process changed the store while this write ran (e.g. two fits at once);
    nothing of this call was made active: retry it."""


class UnsupportedFileError(ClusterRagError, ValueError):
    """A file has an unsupported suffix or cannot be decoded."""


class VersionError(ClusterRagError, LookupError):
    """A cluster-model version that does not exist or cannot be used."""


class LabelingError(ClusterRagError, RuntimeError):
    """A labeler failed to produce a usable label."""


class MissingDependencyError(ClusterRagError, ImportError):
    """An optional dependency is not installed; the message gives the pip line."""


def missing_dependency(module: str, extra: str) -> MissingDependencyError:
    """Build the error for an optional import that failed.

    Args:
        module: the import name that failed, e.g. ``"faiss"``.
        extra: the cluster-rag extra or pip requirement that provides it.
    """
    return MissingDependencyError(
        f"{module!r} is not installed. Install it with: pip install {extra}"
    )
