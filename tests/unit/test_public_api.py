"""Pins the public API: adding or removing a name must be deliberate."""

import cluster_rag

EXPECTED = {
    "Chunk", "ClusterIndex", "ClusterModel", "SearchBackend", "ConcurrentWriteError", "StoreCorruptedError",
    "StoreError", "TopicTree", "TreeNode", "SyncReport", "CrossEncoderReranker", "LLMReranker", "MMRReranker",
    "Reranker", "Scope", "ClusterRagError", "DimensionMismatchError", "DuplicateIdError", "Embedder",
    "EmptyTextError", "Hit", "IndexConfig", "InvalidInputError", "InvalidKError", "LabelingError",
    "LengthMismatchError", "MetadataError", "MissingDependencyError", "ModelInfo", "ModelMismatchError",
    "NotFittedError", "SentenceTransformerEmbedder", "KeywordLabeler", "LabelReport", "LabelRequest",
    "LabelResult", "Labeler", "OpenAILabeler", "SphericalKMeans", "StoreConnectionError",
    "StoreNotFoundError", "Topic", "UnknownDocumentError",
    "DriftReport", "DriftThresholds", "RefitReport", "TopicMatching", "UnknownTopicError", "UnsupportedFileError", "VersionError", "__version__",
}


def test_all_is_pinned() -> None:
    assert set(cluster_rag.__all__) == EXPECTED


def test_every_name_resolves() -> None:
    for name in cluster_rag.__all__:
        assert getattr(cluster_rag, name) is not None


def test_import_does_not_load_frameworks_or_models() -> None:
    import subprocess
    import sys

    code = (
        "import sys, cluster_rag; "
        "bad = [m for m in ('torch', 'sentence_transformers', 'langchain_core', 'llama_index', 'openai', 'mcp', "
        "'chromadb', 'faiss') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
