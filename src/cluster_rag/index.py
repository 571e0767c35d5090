"""ClusterIndex: the one class users start from.

It orchestrates the one-way flow chunks → vectors (Chroma) → cluster model →
topics → routed search, delegating each step to its module. State that readers
use (the active model version, its topics and its :class:`RoutingIndex`) lives in
one immutable :class:`_Active` snapshot swapped by reference, so a search never
mixes two versions.

Topic ids are stable across refits (see :mod:`cluster_rag.versioning`) and need
not run from 0 to k-1; the :class:`RoutingIndex` and the chunks' ``cr_v<N>`` keys
work in cluster *positions*. ``_Active.topics[pos].id`` maps a position to its id;
translation happens only at this class's boundary (hits, topics, ``topics=``).

Writes and crashes: a refit writes every assignment, then the centroids and the
payload, and only then switches the ``active`` record; a process killed at any
point before the switch leaves the previous version active and complete. Nothing
here deletes chunks except :meth:`ClusterIndex.delete`; pruning old versions
drops their centroids, payload and assignment keys only.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from tqdm.auto import tqdm

from ._validate import check_ids, check_metadatas, check_texts
from .clustering import SphericalKMeans, assign, fit_any, validate_k
from .clustering.online import OnlineState, initial_state, partial_fit_step
from .config import IndexConfig
from .drift import Baseline, DriftReport, DriftThresholds, compare, compute_baseline
from .embedding import Embedder, SentenceTransformerEmbedder, content_hash, normalize
from .errors import (
    DimensionMismatchError,
    DuplicateIdError,
    InvalidInputError,
    InvalidKError,
    LabelingError,
    ModelMismatchError,
    NotFittedError,
    StoreConnectionError,
    StoreNotFoundError,
    UnknownDocumentError,
    UnknownTopicError,
    VersionError,
)
from .ingest import load_chunks
from .labeling import ctfidf_keywords, keyword_label, representative_indices
from .labeling.base import Labeler, LabelReport, TopicLabelStatus
from .routing import RoutingIndex, calibrate
from .store import RESERVED_PREFIX, ChromaStore, added_key, version_key
from .store.chroma_store import HASH_KEY
from .types import Hit, ModelInfo, Topic
from .versioning import RefitReport, TopicMatching, match_topics

__all__ = ["ClusterIndex", "default_k"]

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def default_k(n_chunks: int) -> int:
    """Default number of clusters: ``round(sqrt(n))`` clamped to ``[2, n]``.

    sqrt(n) keeps both the number of centroids scored per query and the chunks
    per cluster near sqrt(n), which minimizes routed-search work; pick k from
    evidence (silhouette, Davies-Bouldin) when topics matter more than speed.
    """
    return max(2, min(n_chunks, round(math.sqrt(n_chunks))))


class _AddedLog:
    """Ids of chunks added since the fit: an append-only list shared by the successive
    snapshots of one version (appends happen under the write lock); each snapshot
    sees its own prefix, so extending it is O(batch) and never changes older snapshots."""

    __slots__ = ("_ids", "_n")

    def __init__(self, ids: list[str] | None = None) -> None:
        self._ids: list[str] = ids if ids is not None else []
        self._n = len(self._ids)

    def extended(self, ids: Sequence[str]) -> _AddedLog:
        base = self._ids if self._n == len(self._ids) else self._ids[: self._n]
        base.extend(ids)
        return _AddedLog(base)

    def ids(self) -> list[str]:
        return self._ids[: self._n]

    def __len__(self) -> int:
        return self._n


@dataclass(frozen=True)
class _Active:
    info: ModelInfo
    topics: tuple[Topic, ...]  # by cluster position; topics[pos].id is the stable id
    routing: RoutingIndex
    added: _AddedLog = field(default_factory=_AddedLog)
    baseline: Baseline | None = None  # drift baseline of the fit (None: written before it existed)
    online: OnlineState | None = None  # partial_fit statistics
    next_topic_id: int = 0

    @cached_property
    def position_of(self) -> dict[int, int]:
        """Stable topic id -> cluster position in :attr:`routing`."""
        return {t.id: pos for pos, t in enumerate(self.topics)}


@dataclass(frozen=True)
class _Previous:
    """The version active when a refit started, as topic matching needs it."""

    version: int
    topics: list[Topic]
    centroids: np.ndarray
    labels: np.ndarray  # position of each chunk of the refit, in its order
    fitted: np.ndarray  # bool: the chunk was one the previous version was fitted on (not added since)
    next_topic_id: int


def _chroma_settings() -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False, allow_reset=False)


class ClusterIndex:
    """Topics over a Chroma collection, with routed search.

    Build one with :meth:`open` (embedded folder), :meth:`connect` (Chroma server)
    or :meth:`from_client` (any chromadb client you made).

    Args:
        store: the Chroma-backed store.
        embedder: text → vectors; its ``name`` must match the store's model.
        config: settings.
    """

    def __init__(self, store: ChromaStore, embedder: Embedder, config: IndexConfig) -> None:
        self.store = store
        self.embedder = embedder
        self.config = config
        self.location = ""
        self._active: _Active | None = None
        self._loaded = False
        self._write_lock = threading.RLock()
        self._embedder_checked = False

    # construction -----------------------------------------------------------------
    @classmethod
    def from_client(
        cls,
        client: Any,
        *,
        collection: str | None = None,
        embedder: Embedder | None = None,
        config: IndexConfig | None = None,
        create: bool = True,
    ) -> ClusterIndex:
        """Open or create the index in any chromadb client.

        Raises:
            StoreNotFoundError: ``create=False`` and the collection does not exist.
            ModelMismatchError: the collection was built with another embedding model or dimension.
        """
        cfg = config or IndexConfig.from_env()
        if collection is not None:
            cfg = cfg.with_(collection=collection)
        emb = embedder or SentenceTransformerEmbedder(cfg.model, batch_size=cfg.batch_size)
        try:
            store = ChromaStore(client, cfg.collection, model_name=emb.name, dimension=None, create=False)
        except StoreNotFoundError:
            if not create:
                raise
            store = ChromaStore(client, cfg.collection, model_name=emb.name, dimension=emb.dimension)
        return cls(store, emb, cfg)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        collection: str | None = None,
        embedder: Embedder | None = None,
        config: IndexConfig | None = None,
        create: bool = True,
    ) -> ClusterIndex:
        """Embedded Chroma ``PersistentClient`` at ``path`` (created when ``create``).

        Raises:
            StoreNotFoundError: ``create=False`` and ``path`` or the collection does not exist.
        """
        import chromadb

        folder = Path(path)
        if not create and not folder.exists():
            raise StoreNotFoundError(
                f"no index at {str(folder)!r}; run `cluster-rag ingest --path {folder} FILES` first"
            )
        client = chromadb.PersistentClient(path=str(folder), settings=_chroma_settings())
        index = cls.from_client(client, collection=collection, embedder=embedder, config=config, create=create)
        index.location = str(folder)
        return index

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        collection: str | None = None,
        embedder: Embedder | None = None,
        config: IndexConfig | None = None,
        create: bool = True,
        headers: dict[str, str] | None = None,
    ) -> ClusterIndex:
        """Chroma server at ``url`` (e.g. ``http://127.0.0.1:8000``) via ``HttpClient``.

        Raises:
            StoreConnectionError: the server does not answer its heartbeat.
        """
        import chromadb

        parsed = urlparse(url if "://" in url else f"http://{url}")
        if not parsed.hostname:
            raise InvalidInputError(f"chroma url {url!r} has no host; use e.g. http://127.0.0.1:8000")
        ssl = parsed.scheme == "https"
        port = parsed.port or (443 if ssl else 8000)
        try:
            client = chromadb.HttpClient(
                host=parsed.hostname, port=port, ssl=ssl, headers=headers, settings=_chroma_settings()
            )
            client.heartbeat()
        except Exception as exc:
            if isinstance(exc, (ConnectionError, OSError)) or "connect" in type(exc).__name__.lower() or (
                "connect" in str(exc).lower()
            ):
                raise StoreConnectionError(
                    f"cannot reach a Chroma server at {url!r} ({exc}); start one with "
                    "`chroma run --path ./chroma-data --port 8000` or check the URL"
                ) from exc
            raise
        index = cls.from_client(client, collection=collection, embedder=embedder, config=config, create=create)
        index.location = url
        return index

    # writing ----------------------------------------------------------------------
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        update_centroids: bool | None = None,
    ) -> list[str]:
        """Embed and store texts, one chunk each; all or nothing.

        After :meth:`fit`, new chunks join their nearest cluster at once and are
        searchable immediately. They are marked as added since the fit, which
        :meth:`drift` compares with the fit's baseline.

        Args:
            texts: non-blank strings.
            metadatas: one dict (or ``None``) per text; values str/int/float/bool or lists of them.
            ids: one unique id per text; default: a hash of the text (repeats numbered).
            update_centroids: also move the active version's centroids toward the new
                chunks (MiniBatchKMeans ``partial_fit`` semantics: exact running mean,
                learning rate 1/count); ``None``: ``config.update_centroids``. The
                version is updated in place (same number): centroids, then counts.

        Returns:
            The ids written, in input order.

        Raises:
            EmptyTextError, LengthMismatchError, MetadataError, DuplicateIdError:
                nothing is written.
        """
        items = check_texts(texts)
        metas = check_metadatas(metadatas, len(items))
        given = check_ids(ids, len(items))
        fold = self._check_fold(update_centroids)
        if not items:
            return []
        hashes = [content_hash(t) for t in items]
        chunk_ids = given if given is not None else _default_ids(hashes)
        with self._write_lock:
            clash = self.store.existing_ids(chunk_ids)
            if clash:
                sample = sorted(clash)[:5]
                raise DuplicateIdError(
                    f"{len(clash)} id(s) already stored, e.g. {sample}; pass new ids, or delete the old "
                    "chunks first (nothing was written)"
                )
            vectors = self._embed_cached(items, hashes)
            return self._write(chunk_ids, items, vectors, metas, hashes, fold)

    def add_embeddings(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray,
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        update_centroids: bool | None = None,
    ) -> list[str]:
        """Store chunks whose vectors you computed with the index's model.

        Args:
            embeddings: ``(n, d)`` with ``d`` equal to the store's dimension; normalized here.

        Raises:
            DimensionMismatchError: wrong shape; plus everything :meth:`add_texts` raises.
        """
        items = check_texts(texts)
        metas = check_metadatas(metadatas, len(items))
        given = check_ids(ids, len(items))
        fold = self._check_fold(update_centroids)
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(items), self.store.dimension):
            raise DimensionMismatchError(
                f"embeddings have shape {vectors.shape}; expected ({len(items)}, {self.store.dimension}) "
                f"for model {self.store.model_name!r}"
            )
        if not np.all(np.isfinite(vectors)):
            raise InvalidInputError("embeddings contain NaN or inf; recompute them")
        hashes = [content_hash(t) for t in items]
        chunk_ids = given if given is not None else _default_ids(hashes)
        with self._write_lock:
            clash = self.store.existing_ids(chunk_ids)
            if clash:
                raise DuplicateIdError(
                    f"{len(clash)} id(s) already stored, e.g. {sorted(clash)[:5]}; nothing was written"
                )
            return self._write(chunk_ids, items, normalize(vectors), metas, hashes, fold)

    def ingest_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        text_field: str = "text",
        skip_existing: bool = True,
    ) -> list[str]:
        """Load ``.txt .md .jsonl .csv`` files or folders, chunk and add them.

        Args:
            paths: files or directories (walked recursively, sorted).
            text_field: JSONL key / CSV column holding the text.
            skip_existing: chunks whose id is already stored are skipped instead of
                raising :class:`DuplicateIdError` (re-ingesting a folder adds only what is new).

        Returns:
            Ids of the chunks added.
        """
        chunks = load_chunks(
            [Path(p) for p in paths],
            chunk_size=self.config.chunk_size,
            overlap=self.config.chunk_overlap,
            text_field=text_field,
        )
        if skip_existing and chunks:
            stored = self.store.existing_ids([c.id for c in chunks])
            chunks = [c for c in chunks if c.id not in stored]
        if not chunks:
            return []
        return self.add_texts([c.text for c in chunks], [c.metadata for c in chunks], [c.id for c in chunks])

    def _embed(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        """Embed with the index's model; the first call checks its dimension against the store."""
        if not self._embedder_checked:
            if self.embedder.dimension != self.store.dimension:
                raise ModelMismatchError(
                    f"collection {self.store.name!r} holds {self.store.dimension}-d vectors but embedder "
                    f"{self.embedder.name!r} produces {self.embedder.dimension}-d; open it with the model "
                    "that built it"
                )
            self._embedder_checked = True
        return self.embedder.embed(texts, progress=progress)

    def _embed_cached(self, texts: list[str], hashes: list[str]) -> np.ndarray:
        """Vectors for texts, reusing any vector already stored for the same text and model."""
        known = self.store.vectors_by_hash(hashes)
        missing = [i for i, h in enumerate(hashes) if h not in known]
        vectors = np.empty((len(texts), self.store.dimension), dtype=np.float32)
        if missing:
            fresh = self._embed([texts[i] for i in missing], progress=self.config.progress)
            vectors[missing] = fresh
        for i, h in enumerate(hashes):
            if h in known:
                vectors[i] = known[h]
        return vectors

    def _write(
        self,
        ids: list[str],
        texts: list[str],
        vectors: np.ndarray,
        metas: list[dict[str, Any]],
        hashes: list[str],
        fold: bool = False,
    ) -> list[str]:
        active = self._state()
        if (active.info.version if active else None) != self.store.active_version():
            self.refresh()  # another process refit or rolled back: assign to what is active now
            active = self._active
        rows = [{**m, HASH_KEY: h} for m, h in zip(metas, hashes, strict=True)]
        if active is None:
            self.store.add(ids, texts, vectors, rows)
            return ids
        version = active.info.version
        labels, _ = assign(vectors, active.routing.centroids)
        key, mark = version_key(version), added_key(version)
        rows = [{**r, key: int(c), mark: 2 if fold else 1} for r, c in zip(rows, labels, strict=True)]
        self.store.add(ids, texts, vectors, rows)
        routing = active.routing.with_added(ids, vectors, labels)
        online = active.online
        if fold:
            routing, online = self._fold(active, routing, vectors, labels)
        self._active = replace(active, routing=routing, added=active.added.extended(ids), online=online)
        return ids

    def _check_fold(self, update_centroids: bool | None) -> bool:
        if update_centroids is None:
            return bool(self.config.update_centroids)
        if not isinstance(update_centroids, bool):
            raise InvalidInputError(f"update_centroids={update_centroids!r} must be True, False or None")
        return update_centroids

    def _fold(
        self, active: _Active, routing: RoutingIndex, vectors: np.ndarray, labels: np.ndarray
    ) -> tuple[RoutingIndex, OnlineState]:
        """Move the active version's centroids toward ``vectors`` ``(b, d)`` and persist them in place.

        The touched centroid rows are written first (one upsert while k <= the store's batch
        size), then the counts in the payload; a crash between leaves moved centroids with old
        counts, which only changes the weight of later updates.
        """
        version = active.info.version
        online = active.online or initial_state(routing.vectors(), routing.labels(), routing.k)
        centroids, online = partial_fit_step(routing.centroids, online, vectors, labels)
        touched = np.unique(np.asarray(labels, dtype=np.int64))
        self.store.save_centroids(version, touched.tolist(), centroids[touched])
        payload = self.store.load_model(version)
        if payload is not None:
            payload["online"] = online.to_dict()
            self.store.update_model(version, payload)
        moved = copy.copy(routing)  # same blocks, new centroids: a new snapshot, readers keep theirs
        moved.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        return moved, online

    # clustering -------------------------------------------------------------------
    def fit(
        self,
        k: int | str | None = None,
        *,
        engine: str = "auto",
        clusterer: Any = None,
        n_init: int | None = None,
        matching: TopicMatching | None = None,
        reduce_dim: int | None = None,
    ) -> ModelInfo:
        """Cluster every stored chunk and make the result the new active model version.

        The switch is atomic: the new version becomes active only after its centroids
        and every chunk's assignment are written, so readers (and a process killed
        mid-refit) see the previous version until then. Topics matched to the previous
        version's keep their id and label (:mod:`cluster_rag.versioning`); see
        :meth:`refit_report` for what was new, merged, split or gone.

        Args:
            k: number of clusters; ``None``: :func:`default_k` (``round(sqrt(n))``);
                ``"auto"``: sweep k on a sample of the stored vectors and take the
                recommended one (:func:`~cluster_rag.clustering.choose_k.auto_k`; the
                sweep is recorded under ``"choose_k"`` in the version's payload).
            engine: ``"auto"``, ``"sklearn"``, ``"minibatch"`` or ``"faiss"`` (see
                :class:`~cluster_rag.clustering.SphericalKMeans`).
            clusterer: any scikit-learn-style estimator with ``fit`` and
                ``cluster_centers_``/``labels_``/``predict``; overrides ``k`` and ``engine``.
            n_init: k-means restarts (``None``: engine default).
            matching: thresholds of topic matching against the previous version.
            reduce_dim: find the clusters in this many PCA components (centroids stay
                in the original space); ``None``: no PCA.

        Returns:
            The new version's :class:`ModelInfo`.

        Raises:
            InvalidKError: ``k < 2`` or ``k`` > number of chunks.
        """
        if matching is not None and not isinstance(matching, TopicMatching):
            raise InvalidInputError(f"matching={matching!r} must be a TopicMatching or None")
        with self._write_lock:
            ids, vectors, metas = self.store.load_all()
            n = len(ids)
            if n < 2:
                raise NotFittedError(
                    f"the collection {self.store.name!r} holds {n} chunk(s); add at least 2 before fit"
                )
            sweep = None
            if clusterer is not None:
                centroids, labels = fit_any(clusterer, vectors)
                engine_used = type(clusterer).__name__
            else:
                if isinstance(k, str) and k == "auto":  # other strings: validate_k names them
                    from .clustering.choose_k import auto_k

                    sweep = auto_k(vectors, random_state=self.config.seed, progress=self.config.progress)
                    k = sweep.recommended
                if isinstance(k, str):
                    raise InvalidKError(f"k={k!r} must be an int, None (the default) or 'auto'")
                k = default_k(n) if k is None else k
                validate_k(k, n)
                km = SphericalKMeans(
                    k, engine=engine, random_state=self.config.seed, n_init=n_init,
                    progress=self.config.progress, reduce_dim=reduce_dim,
                ).fit(vectors)
                centroids, labels, engine_used = km.cluster_centers_, km.labels_, km.engine_
            previous = self._previous(vectors, metas)
            info = self._commit_version(ids, vectors, centroids, labels, engine_used, previous, matching)
            if sweep is not None:  # record how k was chosen next to the version it made
                payload = self.store.load_model(info.version) or {}
                self.store.update_model(info.version, {**payload, "choose_k": sweep.to_dict()})
            return info

    def _commit_version(
        self,
        ids: list[str],
        vectors: np.ndarray,
        centroids: np.ndarray,
        labels: np.ndarray,
        engine: str,
        previous: _Previous | None = None,
        matching: TopicMatching | None = None,
    ) -> ModelInfo:
        k = len(centroids)
        versions = self.store.versions()
        version = (max(versions) + 1) if versions else 1
        sims = np.einsum("ij,ij->i", vectors, centroids[labels])
        n_fit = len(ids)
        progress = self.config.progress
        self.store.write_assignments(version, ids, labels)
        # chunks added by another process while we fitted: assign them before switching
        if self.store.count() != len(ids):
            known = set(ids)
            extra_ids: list[str] = []
            extra_vecs: list[np.ndarray] = []
            for got in self.store.iter_all(include=["embeddings"]):
                for cid, vec in zip(got["ids"], got["embeddings"]):
                    if cid not in known:
                        extra_ids.append(cid)
                        extra_vecs.append(np.asarray(vec, dtype=np.float32))
            if extra_ids:
                extra = np.stack(extra_vecs)
                extra_labels, _ = assign(extra, centroids)
                self.store.write_assignments(version, extra_ids, extra_labels, added=True)
                ids = ids + extra_ids
                vectors = np.concatenate([vectors, extra])
                labels = np.concatenate([labels, extra_labels])
        topics = self._describe(ids, vectors, centroids, labels, progress)
        refit: RefitReport | None = None
        next_topic_id = k
        if previous is not None:
            # merges/splits/overlap are judged on the chunks the previous version was fitted on:
            # chunks added since were forced into their nearest topic, new topics hide among them
            fitted = previous.fitted
            topics, refit, next_topic_id = match_topics(
                previous.topics,
                previous.centroids,
                previous.labels[fitted],
                topics,
                centroids,
                labels[:n_fit][fitted],
                next_topic_id=previous.next_topic_id,
                previous_version=previous.version,
                matching=matching,
            )
        baseline = compute_baseline(vectors[:n_fit], labels[:n_fit], k)
        online = initial_state(vectors[:n_fit], labels[:n_fit], k)
        # default route: per-query centroid score gap calibrated on chunks as pseudo-queries
        # (a fixed n_probe calibrated that way under-probes real questions; see routing.py)
        cal = calibrate(
            vectors,
            labels,
            centroids,
            target=self.config.target_recall,
            n_queries=self.config.calibration_queries,
            seed=self.config.seed,
        )
        info = ModelInfo(
            version=version,
            k=k,
            n_chunks=len(ids),
            engine=engine,
            seed=self.config.seed,
            inertia=float(np.sum(1.0 - sims, dtype=np.float64)),
            n_probe=cal.n_probe,
            calibrated_recall=cal.recall,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            embedding_model=self.store.model_name,
            probe_gap=cal.gap,
        )
        payload = {
            "info": info.to_dict(),
            "topics": [t.to_dict() for t in topics],
            "recall_curve": cal.curve.tolist(),
        }
        payload.update(
            baseline=baseline.to_dict(),
            online=online.to_dict(),
            next_topic_id=next_topic_id,
            refit=refit.to_dict() if refit is not None else None,
        )
        self.store.save_model(version, payload, centroids)
        self.store.set_active(version)  # the atomic switch
        self._active = _Active(
            info,
            tuple(topics),
            RoutingIndex(centroids, ids, vectors, labels),
            added=_AddedLog(list(ids[n_fit:])),
            baseline=baseline,
            online=online,
            next_topic_id=next_topic_id,
        )
        self._loaded = True
        self._prune()
        return info

    def _describe(
        self,
        ids: list[str],
        vectors: np.ndarray,
        centroids: np.ndarray,
        labels: np.ndarray,
        progress: bool,
    ) -> list[Topic]:
        k = len(centroids)
        texts_by_id: dict[str, str] = {}
        for got in tqdm(
            self.store.iter_all(include=["documents"]),
            desc="topics",
            disable=not progress,
            leave=False,
            total=math.ceil(len(ids) / 5000),
        ):
            texts_by_id.update(zip(got["ids"], got["documents"]))
        texts = [texts_by_id.get(cid, "") for cid in ids]
        keywords = ctfidf_keywords(texts, labels, k)
        id_array = np.asarray(ids, dtype=object)
        topics: list[Topic] = []
        for c in range(k):
            members = np.nonzero(labels == c)[0]
            rep = members[representative_indices(vectors[members], centroids[c])]
            topics.append(
                Topic(
                    id=c,
                    size=len(members),
                    keywords=keywords[c],
                    representative_ids=[str(x) for x in id_array[rep]],
                    label=keyword_label(keywords[c]),
                )
            )
        return topics

    def _prune(self) -> None:
        active = self.store.active_version()
        old = [v for v in self.store.versions() if v != active]
        for version in old[: max(0, len(old) - (self.config.keep_versions - 1))]:
            self.store.delete_model(version)
            self.store.drop_assignments(version)

    # reading ----------------------------------------------------------------------
    def _state(self) -> _Active | None:
        if not self._loaded:
            with self._write_lock:
                if not self._loaded:
                    self._active = self._load_active()
                    self._loaded = True
        return self._active

    def _load_active(self) -> _Active | None:
        version = self.store.active_version()
        if version is None:
            return None
        payload = self.store.load_model(version)
        if payload is None:
            return None
        info = ModelInfo.from_dict(payload["info"])
        topics = tuple(Topic.from_dict(t) for t in payload["topics"])
        centroids = self.store.load_centroids(version, info.k)
        key, mark = version_key(version), added_key(version)
        ids, vectors, metas = self.store.load_all()
        labels = _positions_of(version, metas, vectors, centroids)
        # added since the fit: marked at add time, or written without this version's key
        # (by a process still on an older version)
        added = [cid for cid, m in zip(ids, metas, strict=True) if mark in m or key not in m]
        return _Active(
            info,
            topics,
            RoutingIndex(centroids, ids, vectors, labels),
            added=_AddedLog(added),
            baseline=Baseline.from_dict(payload["baseline"]) if payload.get("baseline") else None,
            online=OnlineState.from_dict(payload["online"]) if payload.get("online") else None,
            next_topic_id=_next_topic_id(payload, topics),
        )

    def _previous(self, vectors: np.ndarray, metas: list[dict[str, Any]]) -> _Previous | None:
        """The active version with each chunk's position in it, for topic matching."""
        version = self.store.active_version()
        payload = self.store.load_model(version) if version is not None else None
        if version is None or payload is None:
            return None
        info = ModelInfo.from_dict(payload["info"])
        topics = [Topic.from_dict(t) for t in payload["topics"]]
        centroids = self.store.load_centroids(version, info.k)
        labels = _positions_of(version, metas, vectors, centroids)
        key, mark = version_key(version), added_key(version)
        fitted = np.fromiter((key in m and mark not in m for m in metas), dtype=bool, count=len(metas))
        return _Previous(version, topics, centroids, labels, fitted, _next_topic_id(payload, topics))

    def refresh(self) -> None:
        """Re-read the active version from Chroma (after another process wrote to it)."""
        with self._write_lock:
            self._active = self._load_active()
            self._loaded = True

    def _require_fitted(self) -> _Active:
        state = self._state()
        if state is None:
            raise NotFittedError(
                f"collection {self.store.name!r} has no cluster model yet; call fit() "
                "(CLI: `cluster-rag cluster`) first"
            )
        return state

    @property
    def is_fitted(self) -> bool:
        return self._state() is not None

    @property
    def model_info(self) -> ModelInfo:
        """The active version's :class:`ModelInfo` (raises :class:`NotFittedError` before fit)."""
        return self._require_fitted().info

    def topics(self) -> list[Topic]:
        """Topics of the active model version, by id; sizes include chunks added since the fit."""
        return self._sized_topics(self._require_fitted())

    def _sized_topics(self, state: _Active) -> list[Topic]:
        sizes = state.routing.sizes()
        return [replace(t, size=int(sizes[pos])) for pos, t in enumerate(state.topics)]

    def topic(self, topic: int | str) -> Topic:
        """One topic by id or (case-insensitive) label."""
        state = self._require_fitted()
        return self._sized_topics(state)[state.position_of[self._resolve_topics(state, [topic])[0]]]

    def _resolve_topics(self, state: _Active, topics: Sequence[int | str]) -> list[int]:
        """Topic ids (stable, as in :class:`Topic`) of ids or labels; raises on unknown ones."""
        out: list[int] = []
        by_label = {t.label.casefold(): t.id for t in state.topics if t.label}
        for item in topics:
            if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                if int(item) not in state.position_of:
                    known = sorted(state.position_of)
                    span = (
                        f"topic ids run from 0 to {len(known) - 1}"
                        if known == list(range(len(known)))
                        else f"topic ids are {known[:30]}{' ...' if len(known) > 30 else ''}"
                    )
                    raise UnknownTopicError(f"topic {item} does not exist; {span} (see `cluster-rag topics`)")
                out.append(int(item))
                continue
            if isinstance(item, str):
                if item.strip().isdigit():
                    out.extend(self._resolve_topics(state, [int(item)]))
                    continue
                found = by_label.get(item.casefold())
                if found is not None:
                    out.append(found)
                    continue
                close = difflib.get_close_matches(item, [t.label for t in state.topics], n=5, cutoff=0.3)
                raise UnknownTopicError(
                    f"no topic named {item!r}; closest names: {close or '(none)'}; "
                    "use a topic id or a name from `cluster-rag topics`"
                )
            raise UnknownTopicError(f"topic {item!r} must be an int id or a str name")
        return out

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        n_probe: int | None = None,
        topics: Sequence[int | str] | None = None,
        where: dict[str, Any] | None = None,
    ) -> list[Hit]:
        """Embed ``query`` and search the nearest clusters exactly.

        Args:
            query: non-blank text.
            k: number of hits.
            n_probe: a fixed number of clusters to search; ``None``: the version's default
                route, every cluster whose centroid score is within ``probe_gap`` of the
                best (calibrated at fit time to ``config.target_recall`` recall@10 vs exact).
            topics: search only these topics (ids or labels) — "search within topic".
            where: Chroma metadata filter on user metadata, e.g. ``{"source": "a.md"}``;
                when fewer than ``k`` chunks of the probed clusters pass it, the search
                widens to the next-nearest clusters until ``k`` pass or all were searched.

        Returns:
            Up to ``k`` hits, best first.
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError(f"query must be a non-blank string, got {query!r}")
        state = self._require_fitted()
        vector = self._embed([query])[0]
        return self._search(state, vector, k, n_probe, topics, where)

    def search_by_vector(
        self,
        vector: np.ndarray,
        k: int = 10,
        *,
        n_probe: int | None = None,
        topics: Sequence[int | str] | None = None,
        where: dict[str, Any] | None = None,
    ) -> list[Hit]:
        """:meth:`search` with a precomputed ``(d,)`` query vector."""
        return self._search(self._require_fitted(), vector, k, n_probe, topics, where)

    def _search(
        self,
        state: _Active,
        vector: np.ndarray,
        k: int,
        n_probe: int | None,
        topics: Sequence[int | str] | None,
        where: dict[str, Any] | None,
    ) -> list[Hit]:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError(f"k={k!r} must be a positive int")
        if n_probe is not None and (isinstance(n_probe, bool) or not isinstance(n_probe, int) or n_probe < 1):
            raise InvalidInputError(f"n_probe={n_probe!r} must be a positive int or None")
        routing = state.routing
        q = routing.check_query(vector)
        chosen = None
        if topics is not None:
            chosen = [state.position_of[t] for t in self._resolve_topics(state, list(topics))]
        gap = state.info.probe_gap if n_probe is None and chosen is None else None
        probe = n_probe or (routing.probe_count(q, gap) if gap is not None else state.info.n_probe)
        if where is None:
            cands = routing.candidates(q, n_probe=probe, topics=chosen, limit=k)
            top_ids, top_scores, top_labels = list(cands.ids), cands.scores, cands.labels
        else:
            top_ids, top_scores, top_labels = self._filtered(routing, q, k, probe, chosen, where)
        if not top_ids:
            return []
        got = self.store.get([str(x) for x in top_ids])
        found = dict(zip(got["ids"], zip(got["documents"], got["metadatas"])))
        hits: list[Hit] = []
        for cid, score, label in zip(top_ids, top_scores, top_labels):
            record = found.get(str(cid))
            if record is None:  # deleted behind our back
                continue
            text, meta = record
            hits.append(
                Hit(
                    id=str(cid),
                    text=text or "",
                    score=float(score),
                    topic_id=state.topics[int(label)].id,
                    metadata=_public_metadata(meta),
                    topic_label=state.topics[int(label)].label,
                    model_version=state.info.version,
                )
            )
        return hits

    def _filtered(
        self,
        routing: RoutingIndex,
        q: np.ndarray,
        k: int,
        probe: int,
        chosen: list[int] | None,
        where: dict[str, Any],
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Best ``k`` chunks passing ``where``; widens the probe (x2 each round) until ``k`` pass.

        A selective filter may match nothing in the nearest clusters; rather than
        return fewer hits, the search moves on to the next-nearest clusters, up to
        all of them (or all of ``chosen``).
        """
        limit = routing.k if chosen is None else len(chosen)
        while True:
            cands = routing.candidates(q, n_probe=probe, topics=chosen)
            keep: list[int] = []
            window = max(4 * k, 256)
            for start in range(0, len(cands), window):
                part = [str(x) for x in cands.ids[start : start + window]]
                passing = self.store.filter_ids(part, where)
                keep.extend(start + i for i, cid in enumerate(part) if cid in passing)
                if len(keep) >= k:
                    break
            if len(keep) >= k or probe >= limit or chosen is not None:
                sel = np.asarray(keep[:k], dtype=np.int64)
                return [str(x) for x in cands.ids[sel]], cands.scores[sel], cands.labels[sel]
            probe = min(limit, probe * 2)

    def get(self, ids: Sequence[str]) -> list[Hit]:
        """Chunks by id (score 1.0), in the order given; unknown ids are skipped."""
        state = self._require_fitted()
        got = self.store.get(list(ids))
        pos_of = dict(zip(state.routing.ids(), state.routing.labels(), strict=True))
        out: list[Hit] = []
        for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
            pos = int(pos_of.get(cid, -1))
            topic = state.topics[pos] if pos >= 0 else None
            out.append(
                Hit(
                    id=cid,
                    text=text or "",
                    score=1.0,
                    topic_id=topic.id if topic is not None else -1,
                    metadata=_public_metadata(meta),
                    topic_label=topic.label if topic is not None else None,
                    model_version=state.info.version,
                )
            )
        return out

    # framework adapters -------------------------------------------------------------
    def as_langchain_retriever(self, **kwargs: Any) -> Any:
        """This index as a LangChain ``BaseRetriever`` (package ``langchain-cluster-rag``).

        Args:
            **kwargs: ``langchain_cluster_rag.ClusteredRetriever`` fields: ``k``, ``n_probe``,
                ``topics``, ``where``, ``reranker``, ``tags``, ``metadata``.

        Raises:
            MissingDependencyError: the adapter package (or langchain-core) is not installed;
                the message gives the pip command.
        """
        module = _import_adapter("langchain_cluster_rag", "langchain-cluster-rag", "integrations/langchain")
        return module.ClusteredRetriever(index=self, **kwargs)

    def as_llama_index_retriever(self, **kwargs: Any) -> Any:
        """This index as a LlamaIndex ``BaseRetriever`` (package ``llama-index-retrievers-cluster-rag``).

        Args:
            **kwargs: ``llama_index.retrievers.cluster_rag.ClusteredRetriever`` arguments:
                ``similarity_top_k``, ``n_probe``, ``topics``, ``where``, ``filters``, ``reranker``.

        Raises:
            MissingDependencyError: the adapter package (or llama-index-core) is not installed;
                the message gives the pip command.
        """
        module = _import_adapter(
            "llama_index.retrievers.cluster_rag",
            "llama-index-retrievers-cluster-rag",
            "integrations/llama-index",
        )
        return module.ClusteredRetriever(index=self, **kwargs)

    # labels -----------------------------------------------------------------------
    def label(
        self,
        labeler: Labeler | None = None,
        *,
        force: bool = False,
        n_representatives: int = 5,
        n_siblings: int = 5,
    ) -> LabelReport:
        """Name the active version's topics and store the names with that version.

        Each topic's labeler input is its c-TF-IDF keywords, ``n_representatives``
        chunks near the centroid (diversified with MMR) and the current labels of its
        ``n_siblings`` nearest topics. A label is cached under a key of labeler + model
        + prompt version + that content: topics whose key is unchanged (in this version
        or another kept one) keep their label without any call. Pinned topics (see
        :meth:`rename_topic`) are never relabeled; their names are reserved.
        Fallback labels are cached like the others (the same cluster and model give the
        same junk), except those caused by timeouts or server errors, which the next
        run retries; ``force=True`` redoes them all.

        Args:
            labeler: :class:`~cluster_rag.labeling.KeywordLabeler` (default) or
                :class:`~cluster_rag.labeling.OpenAILabeler`, or anything with
                ``cache_id`` and ``label(requests, reserved=, progress=)``.
            force: relabel every unpinned topic, ignoring the cache.
            n_representatives: representative chunks per topic.
            n_siblings: nearest topics whose labels are shown.

        Returns:
            Per-topic status (ok / repaired / fallback / cached / pinned) and tokens used.

        Raises:
            NotFittedError: no model yet.
            LabelingError: the labeler broke its contract or the server refused the key/model.
        """
        from .labeling import KeywordLabeler
        from .labeling.base import label_key
        from .labeling.plan import apply_result, build_requests, cache_of

        labeler = KeywordLabeler() if labeler is None else labeler
        if not isinstance(labeler, Labeler):
            raise InvalidInputError(
                f"labeler {type(labeler).__name__} lacks cache_id / label(requests, reserved=, progress=); "
                "use KeywordLabeler() or OpenAILabeler(client=..., model=...)"
            )
        for name, value, low in (("n_representatives", n_representatives, 1), ("n_siblings", n_siblings, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(f"{name}={value!r} must be an int >= {low}")
        state = self._require_fitted()
        version = state.info.version
        topics = self._sized_topics(state)
        requests = build_requests(  # routing is positional: build with positions, then map to ids
            [replace(t, id=pos) for pos, t in enumerate(topics)],
            state.routing.centroids,
            state.routing.members,
            self._texts_by_id,
            n_representatives=n_representatives,
            n_siblings=n_siblings,
        )
        requests = [replace(r, topic_id=t.id) for r, t in zip(requests, topics, strict=True)]
        keys = {r.topic_id: label_key(labeler.cache_id, r) for r in requests}
        older = []
        for v in self.store.versions():
            payload = self.store.load_model(v) if v != version else None
            if payload is not None:
                older.append([Topic.from_dict(t) for t in payload.get("topics", [])])
        cache = cache_of([state.topics, *older])
        cached = {}
        if not force:
            cached = {t.id: cache[keys[t.id]] for t in topics if not t.pinned and keys[t.id] in cache}
        todo = [r for r, t in zip(requests, topics, strict=True) if not t.pinned and t.id not in cached]
        reserved = [t.label for t in topics if t.pinned] + [c.label for c in cached.values()]
        results = labeler.label(todo, reserved=reserved, progress=self.config.progress) if todo else []
        if [r.topic_id for r in results] != [r.topic_id for r in todo]:
            raise LabelingError(
                f"labeler {labeler.cache_id!r} returned {len(results)} results for {len(todo)} requests "
                "(or out of order); it must return one result per request, in order"
            )
        by_id = {r.topic_id: r for r in results}

        def relabel(t: Topic) -> Topic:
            if t.pinned:
                return t
            if t.id in cached:
                hit = cached[t.id]
                return replace(
                    t,
                    label=hit.label,
                    description=hit.description,
                    label_source=hit.source,
                    label_key=keys[t.id],
                )
            return apply_result(t, by_id[t.id], keys[t.id]) if t.id in by_id else t

        stored = self._store_topics(version, relabel)
        statuses = []
        for t in stored:
            res = by_id.get(t.id)
            if t.pinned or res is None:
                status = "pinned" if t.pinned else "cached"
                statuses.append(TopicLabelStatus(t.id, status, t.label, t.description))
            else:
                statuses.append(
                    TopicLabelStatus(t.id, res.status, t.label, t.description, res.error, res.transient)
                )
        return LabelReport(
            version=version,
            labeler=labeler.cache_id,
            topics=statuses,
            prompt_tokens=sum(r.prompt_tokens for r in results),
            completion_tokens=sum(r.completion_tokens for r in results),
            calls=sum(r.calls for r in results),
        )

    def rename_topic(self, topic: int | str, name: str, *, description: str | None = None) -> Topic:
        """Give a topic a human label and pin it: :meth:`label` never overwrites it.

        Args:
            topic: topic id or current label.
            name: the new label; unique among the topics (case-insensitive), not a bare number.
            description: new one-sentence description; ``None`` keeps the current one.

        Returns:
            The renamed topic.

        Raises:
            InvalidInputError: blank, too long, numeric or already used name.
            UnknownTopicError: no such topic.
        """
        from .labeling.base import normalize_name

        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError(f"name={name!r} must be a non-blank string")
        name = " ".join(name.split())
        if len(name) > 120 or name.isdigit():
            raise InvalidInputError(
                f"name {name!r} must be at most 120 characters and not a bare number (numbers are topic ids)"
            )
        if description is not None and not isinstance(description, str):
            raise InvalidInputError(f"description={description!r} must be a string or None")
        with self._write_lock:
            state = self._require_fitted()
            tid = self._resolve_topics(state, [topic])[0]
            for other in state.topics:
                if other.id != tid and normalize_name(other.label) == normalize_name(name):
                    raise InvalidInputError(
                        f"topic {other.id} is already named {other.label!r}; pick another name for topic "
                        f"{tid} or rename topic {other.id} first"
                    )

            def pin(t: Topic) -> Topic:
                if t.id != tid:
                    return t
                desc = t.description if description is None else " ".join(description.split())
                return replace(
                    t, label=name, description=desc, pinned=True, label_source="human", label_key=""
                )

            self._store_topics(state.info.version, pin)
        return self.topic(tid)

    def unpin_topic(self, topic: int | str) -> Topic:
        """Release a pinned label: the next :meth:`label` run may rename the topic."""
        with self._write_lock:
            state = self._require_fitted()
            tid = self._resolve_topics(state, [topic])[0]
            self._store_topics(
                state.info.version, lambda t: replace(t, pinned=False, label_key="") if t.id == tid else t
            )
        return self.topic(tid)

    def _texts_by_id(self, ids: list[str]) -> dict[str, str]:
        got = self.store.get(ids, include=["documents"])
        return {cid: text or "" for cid, text in zip(got["ids"], got["documents"], strict=True)}

    def _store_topics(self, version: int, change: Callable[[Topic], Topic]) -> list[Topic]:
        """Apply ``change`` to the stored topics of ``version`` (re-read now, so labels written
        meanwhile by another process survive), save them and swap the active snapshot."""
        with self._write_lock:
            payload = self.store.load_model(version)
            if payload is None:
                raise VersionError(f"model version {version} was deleted meanwhile; refit or relabel")
            topics = [change(Topic.from_dict(t)) for t in payload["topics"]]
            payload["topics"] = [t.to_dict() for t in topics]
            self.store.update_model(version, payload)
            active = self._active
            if active is not None and active.info.version == version:
                self._active = replace(active, topics=tuple(topics))
            return topics

    # living index -------------------------------------------------------------------
    def drift(self, thresholds: DriftThresholds | None = None) -> DriftReport:
        """Compare the chunks added since the active version was fitted with its baseline.

        Args:
            thresholds: when to recommend ``"partial_update"`` or ``"refit"``
                (default :class:`~cluster_rag.drift.DriftThresholds`).

        Returns:
            Outlier share beyond the fit's p95 distance, inertia per chunk, Jensen-Shannon
            divergence of topic sizes, per-topic growth and a recommendation.
        """
        if thresholds is not None and not isinstance(thresholds, DriftThresholds):
            raise InvalidInputError(f"thresholds={thresholds!r} must be a DriftThresholds or None")
        state = self._require_fitted()
        _, vectors, _ = self._stored(state.added.ids(), with_metadata=False)
        centroids = state.routing.centroids
        labels, sims = assign(vectors, centroids) if len(vectors) else (np.zeros(0, np.int64), np.zeros(0))
        baseline = state.baseline or self._legacy_baseline(state)
        return compare(
            sims,
            labels,
            baseline,
            [t.id for t in state.topics],
            version=state.info.version,
            thresholds=thresholds,
        )

    def partial_fit(self) -> int:
        """Fold every chunk added since the fit and not folded yet into the active centroids.

        What :meth:`drift` recommends as ``"partial_update"``: the same online update as
        ``add_texts(update_centroids=True)``, applied afterwards. Chunks keep their topic.

        Returns:
            Number of chunks folded in.
        """
        with self._write_lock:
            state = self._require_fitted()
            version = state.info.version
            key, mark = version_key(version), added_key(version)
            ids, vectors, metas = self._stored(state.added.ids(), with_metadata=True)
            todo = [i for i, m in enumerate(metas) if m.get(mark) != 2]
            if not todo:
                return 0
            ids = [ids[i] for i in todo]
            vectors = vectors[todo]
            nearest = assign(vectors, state.routing.centroids)[0]
            labels = np.array(
                [int(metas[i].get(key, nearest[j])) for j, i in enumerate(todo)], dtype=np.int64
            )
            routing, online = self._fold(state, state.routing, vectors, labels)
            self.store.update_metadata(ids, [{key: int(c), mark: 2} for c in labels])
            self._active = replace(state, routing=routing, online=online)
            return len(ids)

    def refit_report(self, version: int | None = None) -> RefitReport | None:
        """What the refit that made ``version`` (default: the active one) changed.

        Returns:
            Topics kept (with similarity, overlap, relabeled), new, merged, split and gone;
            ``None`` for a first fit or a version written before reports existed.

        Raises:
            VersionError: no such version is kept.
        """
        if version is None:
            version = self._require_fitted().info.version
        payload = self.store.load_model(int(version))
        if payload is None:
            raise VersionError(f"model version {version} does not exist; see `cluster-rag versions`")
        data = payload.get("refit")
        return RefitReport.from_dict(data) if data else None

    def delete(self, ids: Sequence[str]) -> int:
        """Delete chunks by id, from Chroma and from the active snapshot; all or nothing.

        The only call that deletes chunks (refits and pruning never do).

        Returns:
            Number of chunks deleted.

        Raises:
            UnknownDocumentError: an id is not stored (nothing was deleted).
        """
        if isinstance(ids, str):
            raise InvalidInputError(
                f"ids must be a list of chunk ids, got the string {ids!r}; wrap it in a list"
            )
        wanted = list(dict.fromkeys(ids))
        for cid in wanted:
            if not isinstance(cid, str) or not cid:
                raise InvalidInputError(f"chunk id {cid!r} must be a non-empty string")
        if not wanted:
            return 0
        with self._write_lock:
            missing = sorted(set(wanted) - self.store.existing_ids(wanted))
            if missing:
                raise UnknownDocumentError(
                    f"{len(missing)} chunk id(s) not stored, e.g. {missing[:5]}; nothing was deleted"
                )
            self.store.delete(wanted)
            state = self._active
            if state is not None:
                gone = set(wanted)
                r = state.routing
                all_ids = r.ids()
                keep = np.fromiter((cid not in gone for cid in all_ids), dtype=bool, count=len(all_ids))
                routing = RoutingIndex(r.centroids, all_ids[keep], r.vectors()[keep], r.labels()[keep])
                self._active = replace(state, routing=routing)
            return len(wanted)

    def _stored(
        self, ids: list[str], *, with_metadata: bool
    ) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        """Ids still stored among ``ids``, their vectors ``(m, d)`` float32 and (optionally) metadata."""
        include = ["embeddings", "metadatas"] if with_metadata else ["embeddings"]
        out_ids: list[str] = []
        vecs: list[np.ndarray] = []
        metas: list[dict[str, Any]] = []
        for start in range(0, len(ids), self.store.batch_size):
            got = self.store.get(ids[start : start + self.store.batch_size], include=include)
            if not got["ids"]:
                continue
            out_ids.extend(got["ids"])
            vecs.append(np.asarray(got["embeddings"], dtype=np.float32))
            if with_metadata:
                metas.extend(m or {} for m in got["metadatas"])
        vectors = np.concatenate(vecs) if vecs else np.zeros((0, self.store.dimension), np.float32)
        return out_ids, vectors, metas

    def _legacy_baseline(self, state: _Active) -> Baseline:
        """Baseline of a version stored before baselines were: its non-added chunks."""
        added = set(state.added.ids())
        r = state.routing
        keep = np.fromiter((cid not in added for cid in r.ids()), dtype=bool, count=len(r))
        return compute_baseline(r.vectors()[keep], r.labels()[keep], r.k)

    # bookkeeping ------------------------------------------------------------------
    def __len__(self) -> int:
        return self.store.count()

    def versions(self) -> list[ModelInfo]:
        """Every stored model version, oldest first."""
        out = []
        for v in self.store.versions():
            payload = self.store.load_model(v)
            if payload is not None:
                out.append(ModelInfo.from_dict(payload["info"]))
        return out

    def rollback(self, version: int | None = None) -> ModelInfo:
        """Make an older version active again (default: the one before the active one)."""
        with self._write_lock:
            active = self.store.active_version()
            kept = self.store.versions()
            if version is None:
                older = [v for v in kept if active is None or v < active]
                if not older:
                    from .errors import VersionError

                    raise VersionError(f"no version older than {active} is kept; versions: {kept}")
                version = older[-1]
            self.store.set_active(version)
            self.refresh()
            return self.model_info

    def info(self) -> dict[str, Any]:
        """What the index holds, JSON-ready."""
        state = self._state()
        out: dict[str, Any] = {
            "location": self.location,
            "collection": self.store.name,
            "embedding_model": self.store.model_name,
            "dimension": self.store.dimension,
            "chunks": self.store.count(),
            "fitted": state is not None,
            "versions": self.store.versions(),
        }
        if state is not None:
            out.update(
                active_version=state.info.version,
                k=state.info.k,
                n_probe=state.info.n_probe,
                probe_gap=state.info.probe_gap,
                calibrated_recall=round(state.info.calibrated_recall, 4),
                engine=state.info.engine,
                fitted_at=state.info.created_at,
                chunks_at_fit=state.info.n_chunks,
                added_since_fit=len(state.added),
            )
        return out


def _default_ids(hashes: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for h in hashes:
        n = seen.get(h, 0)
        seen[h] = n + 1
        out.append(h[:24] if n == 0 else f"{h[:24]}-{n}")
    return out


def _positions_of(
    version: int, metas: list[dict[str, Any]], vectors: np.ndarray, centroids: np.ndarray
) -> np.ndarray:
    """Cluster position of each chunk in ``version`` (``(n,)`` int64): its ``cr_v<N>`` key, or
    the nearest centroid for chunks written without it."""
    key = version_key(version)
    labels = np.array([m.get(key, -1) for m in metas], dtype=np.int64)
    missing = labels < 0
    if missing.any():
        labels[missing] = assign(vectors[missing], centroids)[0]
    return labels


def _next_topic_id(payload: dict[str, Any], topics: Sequence[Topic]) -> int:
    """Smallest topic id never used (payloads before stable ids: max id + 1)."""
    used = max((t.id for t in topics), default=-1) + 1
    return max(int(payload.get("next_topic_id", 0)), used)


def _public_metadata(meta: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (meta or {}).items() if not k.startswith(RESERVED_PREFIX)}


def _import_adapter(module: str, dist: str, source_dir: str) -> Any:
    """Import a framework adapter package, or explain how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        from .errors import MissingDependencyError

        missing = exc.name or module
        raise MissingDependencyError(
            f"{module!r} could not be imported ({missing!r} is not installed). Install it with: "
            f"pip install {dist}  (from a cluster-rag source checkout: pip install -e {source_dir})"
        ) from exc
