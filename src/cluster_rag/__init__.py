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
    ConcurrentWriteError,
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
    StoreCorruptedError,
    StoreError,
    StoreNotFoundError,
    UnknownDocumentError,
    UnknownTopicError,
    UnsupportedFileError,
    VersionError,
)
from .hierarchy import TopicTree, TreeNode
from .index import ClusterIndex
from .ingest.sync import SyncReport
from .labeling import KeywordLabeler, Labeler, LabelReport, LabelRequest, LabelResult, OpenAILabeler
from .model import ClusterModel
from .rerank import CrossEncoderReranker, LLMReranker, MMRReranker, Reranker
from .scope import Scope
from .types import Chunk, Hit, ModelInfo, Topic
from .versioning import RefitReport, TopicMatching

__version__ = "0.1.0"

__all__ = [
    "Chunk",
    "ClusterIndex",
    "ClusterModel",
    "ClusterRagError",
    "ConcurrentWriteError",
    "CrossEncoderReranker",
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
    "LLMReranker",
    "LabelReport",
    "LabelRequest",
    "LabelResult",
    "Labeler",
    "LabelingError",
    "LengthMismatchError",
    "MMRReranker",
    "MetadataError",
    "MissingDependencyError",
    "ModelInfo",
    "ModelMismatchError",
    "NotFittedError",
    "OpenAILabeler",
    "RefitReport",
    "Reranker",
    "Scope",
    "SearchBackend",
    "SentenceTransformerEmbedder",
    "SphericalKMeans",
    "StoreConnectionError",
    "StoreCorruptedError",
    "StoreError",
    "StoreNotFoundError",
    "SyncReport",
    "Topic",
    "TopicMatching",
    "TopicTree",
    "TreeNode",
    "UnknownDocumentError",
    "UnknownTopicError",
    "UnsupportedFileError",
    "VersionError",
    "__version__",
]
