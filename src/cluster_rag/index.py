"""ClusterIndex: the one class users start from — a thin facade.

It checks input at the door, takes the write lock and delegates each job to its module
(README's architecture section lists them). The fitted state is one immutable
:class:`~cluster_rag.model.ClusterModel` held by :class:`~cluster_rag.freshness.ActiveModel` and
swapped by reference, so a search never mixes two versions; :attr:`ClusterIndex.model` is its face.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import fitting, hybrid, living
from .adapters import import_adapter
from .config import IndexConfig
from .connection import check_embedder_dimension, http_client, open_store, persistent_client
from .drift import DriftReport, DriftThresholds
from .embedding import Embedder, normalize
from .errors import InvalidInputError
from .freshness import ActiveModel
from .guard import guard_public_methods
from .hierarchy import TopicTree
from .ingest.sync import ingest_paths
from .labeling.base import Labeler, LabelReport
from .model import ClusterModel, describe_index, refit_report, stored_versions
from .rerank import Reranker
from .scope import Scope
from .search import build_request, get_hits, routed_search
from .store import ChromaStore
from .topic_views import find_topic, list_topics
from .types import Hit, ModelInfo, Topic
from .validation import (
    check_bool,
    check_chunk_ids,
    check_int,
    check_optional_int,
    check_query_text,
    check_topic_name,
    check_topics,
    check_vectors,
    check_where,
)
from .versioning import RefitReport, TopicMatching

__all__ = ["ClusterIndex"]


class ClusterIndex:
    """Topics over a Chroma collection, with routed search.

    Build one with :meth:`open` (embedded folder), :meth:`connect` (Chroma server) or
    :meth:`from_client` (any chromadb client); they pass the ``store``, the ``embedder`` (its
    ``name`` must match the store's model) and the ``config``.
    """

    def __init__(self, store: ChromaStore, embedder: Embedder, config: IndexConfig) -> None:
        self.store = store
        self.embedder = embedder
        self.config = config
        self.location = ""
        self._active = ActiveModel(store)
        self._write_lock = self._active.lock
        self._keyword = hybrid.KeywordState()
        self._embedder_checked = False

    # construction -----------------------------------------------------------------
    @classmethod
    def from_client(
        cls, client: Any, *, collection: str | None = None, embedder: Embedder | None = None,
        config: IndexConfig | None = None, create: bool = True,
    ) -> ClusterIndex:
        """Open or create the index in any chromadb client (see :func:`~cluster_rag.connection.open_store`).

        Raises:
            StoreNotFoundError: ``create=False`` and the collection does not exist.
            ModelMismatchError: the collection was built with another embedding model or dimension.
        """
        opened = open_store(client, collection=collection, embedder=embedder, config=config, create=create)
        return cls(*opened)

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, collection: str | None = None, embedder: Embedder | None = None,
        config: IndexConfig | None = None, create: bool = True,
    ) -> ClusterIndex:
        """Embedded Chroma ``PersistentClient`` at ``path`` (created when ``create``).

        Raises:
            StoreNotFoundError: ``path`` is a file, or ``create=False`` and it or the collection is missing.
        """
        client = persistent_client(path, create=create)
        index = cls.from_client(
            client, collection=collection, embedder=embedder, config=config, create=create
        )
        index.location = str(Path(path))
        return index

    @classmethod
    def connect(
        cls, url: str, *, collection: str | None = None, embedder: Embedder | None = None,
        config: IndexConfig | None = None, create: bool = True, headers: dict[str, str] | None = None,
    ) -> ClusterIndex:
        """Chroma server at ``url`` (e.g. ``http://127.0.0.1:8000``) via ``HttpClient``.

        Raises:
            StoreConnectionError: the server does not answer its heartbeat.
        """
        client = http_client(url, headers=headers)
        index = cls.from_client(
            client, collection=collection, embedder=embedder, config=config, create=create
        )
        index.location = url
        return index

    # the fitted state -----------------------------------------------------------------
    @property
    def model(self) -> ClusterModel:
        """The active version, an immutable :class:`ClusterModel` (:class:`NotFittedError` before fit)."""
        return self._active.require()

    def refresh(self) -> None:
        """Re-read the active version from Chroma (after another process wrote to it)."""
        self._active.reload()

    @property
    def is_fitted(self) -> bool:
        return self._active.get() is not None

    @property
    def model_info(self) -> ModelInfo:
        """The active version's :class:`ModelInfo` (raises :class:`NotFittedError` before fit)."""
        return self.model.info

    def embed_query(self, text: str) -> np.ndarray:
        """``text`` embedded with the index's model: ``(d,)`` float32, L2-normalized."""
        vector: np.ndarray = self.embed_texts([check_query_text(text)])[0]
        return vector

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts embedded with the index's model: ``(n, d)`` float32, L2-normalized.

        Raises:
            ModelMismatchError: the embedder's dimension differs from the store's (checked once).
        """
        if not self._embedder_checked:
            check_embedder_dimension(self.embedder, self.store)
            self._embedder_checked = True
        return normalize(self.embedder.embed(list(texts), progress=self.config.progress and len(texts) > 64))

    # writing ----------------------------------------------------------------------
    def add_texts(
        self, texts: Iterable[str], metadatas: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None, *, update_centroids: bool | None = None,
    ) -> list[str]:
        """Embed and store texts, one chunk each, all or nothing; after :meth:`fit` new chunks join
        their nearest cluster at once and are searchable (see :mod:`~cluster_rag.living`).

        Args:
            texts: non-blank strings.
            metadatas: one dict (or ``None``) per text; values str/int/float/bool or lists of them.
            ids: one unique id per text; default: a hash of the text (repeats numbered).
            update_centroids: also move the active centroids toward the new chunks (online
                ``partial_fit``, in place); ``None``: ``config.update_centroids``.

        Returns the ids written, in input order.

        Raises:
            EmptyTextError, LengthMismatchError, MetadataError, DuplicateIdError: nothing is written.
        """
        batch = living.check_batch(texts, metadatas, ids)
        fold = self._check_fold(update_centroids)
        if not batch.ids:
            return []
        with self._write_lock:
            living.refuse_stored(self.store, batch.ids)
            vectors = living.embed_with_cache(self.store, self.embed_texts, batch.texts, batch.hashes)
            return self._write(batch, vectors, fold)

    def add_embeddings(
        self, texts: Sequence[str], embeddings: np.ndarray,
        metadatas: Sequence[dict[str, Any] | None] | None = None, ids: Sequence[str] | None = None, *,
        update_centroids: bool | None = None,
    ) -> list[str]:
        """:meth:`add_texts` with vectors ``(n, d)`` you computed with the index's model (normalized here);
        a wrong shape raises :class:`DimensionMismatchError`."""
        batch = living.check_batch(texts, metadatas, ids)
        fold = self._check_fold(update_centroids)
        vectors = check_vectors(embeddings, len(batch.ids), self.store.dimension, self.store.model_name)
        with self._write_lock:
            living.refuse_stored(self.store, batch.ids)
            return self._write(batch, normalize(vectors), fold)

    def update_embeddings(
        self, ids: Sequence[str], texts: Sequence[str], embeddings: np.ndarray,
        metadatas: Sequence[dict[str, Any] | None] | None = None,
    ) -> list[str]:
        """Overwrite stored chunks (text, metadata, vector ``(n, d)``) in one journaled write, as Chroma's
        ``update`` (:func:`~cluster_rag.living.replace_rows`); an unknown id raises UnknownDocumentError."""
        batch = living.check_batch(texts, metadatas, ids)
        vectors = check_vectors(embeddings, len(batch.ids), self.store.dimension, self.store.model_name)
        with self._write_lock:
            model = self._active.for_write()  # another process may have refit: assign to what is active now
            fold = bool(self.config.update_centroids)
            self._active.set(living.replace_rows(self.store, model, batch, normalize(vectors), fold=fold))
            self._keyword.forget(batch.ids)  # their BM25 entries are re-read on the next search
            return batch.ids

    def ingest_files(
        self, paths: Iterable[str | os.PathLike[str]], *, text_field: str = "text",
        skip_existing: bool = True, delete_missing: bool = False,
    ) -> list[str]:
        """Load ``.txt .md .jsonl[.gz] .csv[.gz]`` files or folders (recursively), chunk and store them;
        returns the ids of the chunks added or replaced.

        Re-ingesting updates (:func:`cluster_rag.ingest.sync_files`, which also returns the counts):
        unchanged chunks (same id and content hash) are skipped, edited ones replaced, and with
        ``delete_missing`` chunks of files gone from the given folders are removed.

        Args:
            text_field: JSONL key / CSV column holding the text.
            skip_existing: ``False``: add every chunk, raising :class:`DuplicateIdError` on a stored id.
            delete_missing: remove chunks of sources no longer on disk under ``paths``.
        """
        return ingest_paths(
            self, paths, text_field=text_field, skip_existing=skip_existing, delete_missing=delete_missing
        )

    def _write(self, batch: living.Batch, vectors: np.ndarray, fold: bool) -> list[str]:
        model = self._active.for_write()  # another process may have refit: assign to what is active now
        self._active.set(living.add_rows(self.store, model, batch, vectors, fold=fold))
        return batch.ids

    def _check_fold(self, update_centroids: bool | None) -> bool:
        if update_centroids is None:
            return bool(self.config.update_centroids)
        return check_bool(update_centroids, "update_centroids")

    # clustering -------------------------------------------------------------------
    def fit(
        self, k: int | str | None = None, *, engine: str = "auto", clusterer: Any = None,
        n_init: int | None = None, matching: TopicMatching | None = None, reduce_dim: int | None = None,
    ) -> ModelInfo:
        """Cluster every stored chunk and make the result the new active version (atomic switch;
        see :mod:`~cluster_rag.fitting`). Matched topics keep their id and label.

        Args:
            k: clusters; ``None`` or ``"auto"``: ``round(sqrt(n))`` (the routing leaves). Every fit
                also builds a topic tree and chooses its broad topics (:meth:`topic_tree`,
                ``topics(level=...)``); ``cluster-rag choose-k`` sweeps k when you want evidence.
            engine: ``"auto"``, ``"sklearn"``, ``"minibatch"`` or ``"faiss"``.
            clusterer: any scikit-learn-style estimator with ``fit``; overrides ``k`` and ``engine``.
            n_init: k-means restarts (``None``: engine default).
            matching: thresholds of topic matching against the previous version.
            reduce_dim: cluster in this many PCA components (centroids stay in the original space).

        Raises InvalidKError when ``k < 2`` or ``k`` > number of chunks.
        """
        if matching is not None and not isinstance(matching, TopicMatching):
            raise InvalidInputError(f"matching={matching!r} must be a TopicMatching or None")
        n_init = check_optional_int(n_init, "n_init", low=1)
        reduce_dim = check_optional_int(reduce_dim, "reduce_dim", low=1)
        if clusterer is not None and not callable(getattr(clusterer, "fit", None)):
            raise InvalidInputError(
                f"clusterer {type(clusterer).__name__} has no fit(); pass a scikit-learn-style estimator "
                "(e.g. sklearn.cluster.KMeans(n_clusters=8)) or None"
            )
        request = fitting.FitRequest(k, engine, clusterer, n_init, matching, reduce_dim)
        with self._write_lock:
            model = fitting.fit_version(self.store, self.config, self._active.get(), request)
            self._active.set(model)
            return model.info

    # reading ----------------------------------------------------------------------
    def topics(self, *, level: int | None = None, scope: Scope | None = None) -> list[Topic]:
        """Topics of the active version, by position; sizes include chunks added since the fit.

        With a ``level`` of the topic tree (:meth:`topic_tree`; ``0``: the topics themselves,
        ``topic_tree().depth``: the broad topics): that level's nodes, largest first; a parent
        node's id can be passed wherever a topic id is taken (``search(topics=[parent])``
        searches every topic under it). With a ``scope``: those it sees (:mod:`~cluster_rag.scope`).
        """
        return list_topics(self.model, self.store, level=level, scope=scope)

    def topic_tree(self) -> TopicTree:
        """The active version's topic tree over its topics (see :mod:`cluster_rag.hierarchy`):
        stored with the version, parent ids kept across refits; ``evidence`` tells how the
        number of broad topics was chosen."""
        return self.model.tree

    def topic(self, topic: int | str, *, scope: Scope | None = None) -> Topic:
        """One topic by id or name (see :meth:`ClusterModel.resolve_topics`), among those ``scope`` sees."""
        return find_topic(self.model, self.store, topic, scope)

    def search(
        self, query: str, k: int = 10, *, n_probe: int | None = None,
        topics: Sequence[int | str] | None = None, where: dict[str, Any] | None = None,
        scope: Scope | None = None, mode: str | None = None, rerank: Reranker | None = None,
        fetch_k: int | None = None,
    ) -> list[Hit]:
        """Search the index: routed dense, BM25 keywords, or both fused (see :mod:`~cluster_rag.hybrid`).

        Args:
            k: number of hits.
            n_probe: a fixed number of clusters; ``None``: the version's calibrated route
                (every cluster within ``probe_gap`` of the best centroid score).
            topics: search only these topics (ids or names).
            where: Chroma filter on user metadata; the search widens to further clusters until
                ``k`` chunks pass it.
            scope: the caller's :class:`~cluster_rag.scope.Scope`; ANDed with ``where``, never widened.
            mode: ``"hybrid"`` (default: routed dense + BM25, convex fusion; SciFact nDCG@10 0.729
                vs 0.643 dense), ``"dense"`` or ``"keyword"``. ``Hit.score`` is always the cosine.
            rerank: a :class:`~cluster_rag.rerank.Reranker` applied to the first ``fetch_k`` hits.
            fetch_k: candidates the re-ranker sees (default ``max(4 * k, 20)``).

        Returns up to ``k`` hits, best first.
        """
        check_query_text(query), check_topics(topics), check_where(where)
        model = self.model
        request = build_request(model, k, n_probe, topics, where, scope=scope, store=self.store)
        vector = self.embed_query(query)
        return hybrid.search(
            model, self.store, self._keyword, query, vector, request,
            mode=hybrid.check_mode(mode), rerank=rerank, fetch_k=fetch_k,
        )

    def search_by_vector(
        self, vector: np.ndarray, k: int = 10, *, n_probe: int | None = None,
        topics: Sequence[int | str] | None = None, where: dict[str, Any] | None = None,
        scope: Scope | None = None,
    ) -> list[Hit]:
        """:meth:`search` with a precomputed ``(d,)`` query vector."""
        check_topics(topics), check_where(where)
        model = self.model
        request = build_request(model, k, n_probe, topics, where, scope=scope, store=self.store)
        return routed_search(model, self.store, vector, request)

    def get(self, ids: Sequence[str], *, scope: Scope | None = None) -> list[Hit]:
        """Chunks by id (score 1.0), in the order given; unknown ids, and ids outside ``scope``, skipped."""
        return get_hits(self.model, self.store, check_chunk_ids(ids), scope)

    # framework adapters -------------------------------------------------------------
    def as_langchain_retriever(self, **kwargs: Any) -> Any:
        """This index as a LangChain ``BaseRetriever`` (package ``langchain-cluster-rag``; without it
        :class:`MissingDependencyError` gives the pip line)."""
        return import_adapter("langchain_cluster_rag").ClusteredRetriever(index=self, **kwargs)

    def as_llama_index_retriever(self, **kwargs: Any) -> Any:
        """This index as a LlamaIndex ``BaseRetriever`` (package ``llama-index-retrievers-cluster-rag``;
        without it :class:`MissingDependencyError` gives the pip line)."""
        return import_adapter("llama_index.retrievers.cluster_rag").ClusteredRetriever(index=self, **kwargs)

    # labels -----------------------------------------------------------------------
    def label(
        self, labeler: Labeler | None = None, *, force: bool = False, n_representatives: int = 5,
        n_siblings: int = 5,
    ) -> LabelReport:
        """Name the active version's topics, then the parent nodes of its topic tree, and store the names
        with it (:mod:`~cluster_rag.labeling.run`).

        Args:
            labeler: :class:`~cluster_rag.labeling.KeywordLabeler` (default),
                :class:`~cluster_rag.labeling.OpenAILabeler`, or any :class:`Labeler`.
            force: relabel every unpinned topic, ignoring the label cache.
            n_representatives: representative chunks per topic.
            n_siblings: nearest topics whose labels are shown.

        Raises:
            NotFittedError: no model yet.
            LabelingError: the labeler broke its contract or the server refused the key/model.
        """
        from .labeling.run import label_topics

        model = self.model
        stored, report = label_topics(
            self.store, model, labeler, force=force, n_representatives=n_representatives,
            n_siblings=n_siblings, progress=self.config.progress,
        )
        with self._write_lock:
            self._active.swap_labels(stored.version, stored.topics, stored.tree)
        return report

    def rename_topic(self, topic: int | str, name: str, *, description: str | None = None) -> Topic:
        """Give a topic, or a parent node of the topic tree, a human label and pin it (:meth:`label`
        keeps it); a blank, over-long, numeric or already used name raises :class:`InvalidInputError`."""
        from .labeling.run import pin_name

        name, description = check_topic_name(name, description)
        with self._write_lock:
            node, stored = pin_name(self.store, self.model, topic, name, description)
            self._active.swap_labels(stored.version, stored.topics, stored.tree)
        return self.topic(node)

    def unpin_topic(self, topic: int | str) -> Topic:
        """Release a pinned label (of a topic or parent node): the next :meth:`label` run may rename it."""
        from .labeling.run import unpin

        with self._write_lock:
            node, stored = unpin(self.store, self.model, topic)
            self._active.swap_labels(stored.version, stored.topics, stored.tree)
        return self.topic(node)

    # living index -------------------------------------------------------------------
    def drift(self, thresholds: DriftThresholds | None = None) -> DriftReport:
        """Compare the chunks added since the fit with its baseline (:mod:`~cluster_rag.drift`):
        outlier share, inertia, topic-size divergence, per-topic growth and a recommendation."""
        if thresholds is not None and not isinstance(thresholds, DriftThresholds):
            raise InvalidInputError(f"thresholds={thresholds!r} must be a DriftThresholds or None")
        return living.drift_report(self.store, self.model, thresholds)

    def partial_fit(self) -> int:
        """Fold every chunk added since the fit and not folded yet into the active centroids
        (what :meth:`drift` recommends as ``"partial_update"``); returns how many were folded."""
        with self._write_lock:
            model, folded = living.partial_fit(self.store, self.model)
            self._active.set(model)
            return folded

    def refit_report(self, version: int | None = None) -> RefitReport | None:
        """What the refit that made ``version`` (default: the active one) changed; ``None`` for a first fit;
        :class:`VersionError` when no such version is kept."""
        version = self.model.version if version is None else check_int(version, "version", low=1)
        return refit_report(self.store, version)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete chunks by id, all or nothing (an unknown id raises :class:`UnknownDocumentError`, nothing
        is deleted); the only call that deletes chunks. Returns the count."""
        wanted = check_chunk_ids(ids)
        if not wanted:
            return 0
        with self._write_lock:
            self._active.set(living.delete_rows(self.store, self._active.get(), wanted))
            return len(wanted)

    # bookkeeping ------------------------------------------------------------------
    def __len__(self) -> int:
        return self.store.count()

    def versions(self) -> list[ModelInfo]:
        """Every stored model version, oldest first."""
        return stored_versions(self.store)

    def rollback(self, version: int | None = None) -> ModelInfo:
        """Make an older version active again (default: the one before the active one)."""
        version = check_optional_int(version, "version", low=1)
        with self._write_lock:
            fitting.activate(self.store, version)
            self.refresh()
            return self.model_info

    def info(self) -> dict[str, Any]:
        """What the index holds, JSON-ready (from the version record; no chunk vectors)."""
        return describe_index(self.store, self._active.get(), self.location)


guard_public_methods(ClusterIndex)  # Chroma/sqlite/OS/HTTP errors leave as ClusterRagError
