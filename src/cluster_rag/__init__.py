"""cluster-rag: topics over a pile of text, for RAG chains and chat agents.

Importing this package does no I/O and loads no model.
"""

from __future__ import annotations

from .backends import SearchBackend
from .clustering import SphericalKMeans
from .config import IndexConfig
from .drift import DriftReport, DriftThresholds
from .embedding import Embedder, SentenceTransformerEmbedder
from .errors import (
    ClusterRagError,
    DimensionMismatchError,
    DuplicateIdError,
    EmptyTextError,
    InvalidInputError,
    InvalidKError,
    LabelingError,
    LengthMismatchError,
    MetadataError,
    MissingDependencyError,
    ModelMismatchError,
    NotFittedError,
    StoreConnectionError,
    StoreNotFoundError,
    UnknownDocumentError,
    UnknownTopicError,
    UnsupportedFileError,
    VersionError,
)
from .index import ClusterIndex
from .labeling import KeywordLabeler, Labeler, LabelReport, LabelRequest, LabelResult, OpenAILabeler
from .model import ClusterModel
from .types import Chunk, Hit, ModelInfo, Topic
from .versioning import RefitReport, TopicMatching

__version__ = "0.1.0"

__all__ = [
    "Chunk",
    "ClusterIndex",
    "ClusterModel",
    "ClusterRagError",
    "DimensionMismatchError",
    "DriftReport",
    "DriftThresholds",
    "DuplicateIdError",
    "Embedder",
    "EmptyTextError",
    "Hit",
    "IndexConfig",
    "InvalidInputError",
    "InvalidKError",
    "KeywordLabeler",
    "LabelReport",
    "LabelRequest",
    "LabelResult",
    "Labeler",
    "LabelingError",
    "LengthMismatchError",
    "MetadataError",
    "MissingDependencyError",
    "ModelInfo",
    "ModelMismatchError",
    "NotFittedError",
    "OpenAILabeler",
    "RefitReport",
    "SearchBackend",
    "SentenceTransformerEmbedder",
    "SphericalKMeans",
    "StoreConnectionError",
    "StoreNotFoundError",
    "Topic",
    "TopicMatching",
    "UnknownDocumentError",
    "UnknownTopicError",
    "UnsupportedFileError",
    "VersionError",
    "__version__",
]
