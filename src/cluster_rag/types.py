"""Plain data passed between modules: chunks, hits, topics and model versions."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Chunk", "Hit", "ModelInfo", "Topic"]

Metadata = dict[str, Any]


@dataclass(frozen=True)
class Chunk:
    """One unit of text that is embedded and clustered.

    Attributes:
        id: stable chunk id (``"<source>#<index>"`` for files, content hash otherwise).
        text: the chunk text, never empty.
        metadata: user metadata plus ``source`` / ``chunk_index`` for files.
    """

    id: str
    text: str
    metadata: Metadata = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        id: chunk id.
        text: chunk text.
        score: cosine similarity in [-1, 1] between query and chunk (higher is closer).
        topic_id: stable topic id of the chunk in the model version that answered
            (ids survive refits, so they need not run from 0 to k - 1).
        metadata: the chunk's user metadata (reserved ``cr_*`` keys removed).
        topic_label: the topic's label when the model has one, else ``None``.
        model_version: the model version that answered; every hit of one search
            comes from the same version, even while a refit switches versions.
    """

    id: str
    text: str
    score: float
    topic_id: int
    metadata: Metadata = field(default_factory=dict)
    topic_label: str | None = None
    model_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def provenance_metadata(self) -> dict[str, Any]:
        """The chunk's metadata plus ``chunk_id``, ``score``, ``topic_id``, ``topic_label`` and
        ``model_version`` (these win over user keys of the same name): what the framework
        adapters put on a LangChain ``Document`` or a LlamaIndex node."""
        return {
            **self.metadata,
            "chunk_id": self.id,
            "score": self.score,
            "topic_id": self.topic_id,
            "topic_label": self.topic_label,
            "model_version": self.model_version,
        }


@dataclass(frozen=True)
class Topic:
    """One cluster of the active model, as shown to people and agents.

    Attributes:
        id: stable topic id: ``0 .. k-1`` after the first fit; a refit keeps the id of
            every topic it matches and gives new topics ids never used before.
        size: number of chunks assigned to it.
        keywords: c-TF-IDF keywords, most distinctive first.
        representative_ids: ids of the chunks nearest the centroid, nearest first.
        label: short human-readable name (keyword label until an LLM or a person names it).
        description: one sentence, empty when no labeler wrote one.
        pinned: ``True`` when a person fixed the label; relabeling keeps it.
        label_source: who wrote the label: ``"keywords"``, ``"llm"``, ``"fallback"`` or ``"human"``.
        label_key: cache key of the label (labeler + model + prompt version + cluster
            content); ``""`` when the label must be redone on the next labeling run.
    """

    id: int
    size: int
    keywords: list[str]
    representative_ids: list[str]
    label: str = ""
    description: str = ""
    pinned: bool = False
    label_source: str = "keywords"
    label_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Topic:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ModelInfo:
    """What one fitted cluster-model version is.

    Attributes:
        version: monotonically increasing integer, starting at 1.
        k: number of clusters.
        n_chunks: chunks assigned when the version was fitted.
        engine: clustering engine used (``"sklearn"``, ``"minibatch"``, ``"faiss"`` or a class name).
        seed: random seed of the fit.
        inertia: sum over chunks of ``1 - cos(chunk, centroid)``.
        n_probe: typical (median) number of clusters the default route searches per
            query, calibrated at fit time; the fixed count used when ``probe_gap`` is ``None``.
        calibrated_recall: recall@10 against exact search the default route reached
            on the calibration sample.
        created_at: ISO-8601 UTC timestamp.
        embedding_model: name of the embedding model the vectors came from.
        probe_gap: the default route searches every cluster whose centroid similarity
            to the query is within ``probe_gap`` of the best one (per-query adaptive);
            ``None`` in versions written before it existed (fixed ``n_probe``).
    """

    version: int
    k: int
    n_chunks: int
    engine: str
    seed: int
    inertia: float
    n_probe: int
    calibrated_recall: float
    created_at: str
    embedding_model: str
    probe_gap: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})
