"""Chroma clients and the store an index opens: embedded folder, server URL, or a client you made."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .config import IndexConfig
from .embedding import Embedder, SentenceTransformerEmbedder
from .errors import (
    InvalidInputError,
    ModelMismatchError,
    StoreConnectionError,
    StoreCorruptedError,
    StoreNotFoundError,
)
from .store import ChromaStore

__all__ = ["check_embedder_dimension", "http_client", "open_store", "persistent_client"]

_START_SERVER = "start one with `chroma run --path ./chroma-data --port 8000` or check the URL"


def _settings() -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False, allow_reset=False)


def persistent_client(path: str | os.PathLike[str], *, create: bool) -> Any:
    """An embedded ``chromadb.PersistentClient`` at ``path``.

    Raises:
        StoreNotFoundError: ``path`` is a file, or (``create=False``) does not exist.
    """
    import chromadb

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise StoreNotFoundError(f"{str(folder)!r} is a file, not an index folder; pick another --path")
    if not create and not (folder / "chroma.sqlite3").is_file():
        what = "no index" if not folder.exists() else "no Chroma store (chroma.sqlite3)"
        raise StoreNotFoundError(
            f"{what} at {str(folder)!r}; run `cluster-rag ingest --path {folder} FILES` first"
        )
    try:
        return chromadb.PersistentClient(path=str(folder), settings=_settings())
    except Exception as exc:
        from .guard import translate

        err = translate(exc)
        if err is None:
            raise
        raise StoreCorruptedError(
            f"the store at {str(folder)!r} cannot be opened ({err}); run `cluster-rag repair --path {folder}`"
        ) from exc


def http_client(url: str, *, headers: dict[str, str] | None = None) -> Any:
    """A ``chromadb.HttpClient`` for ``url`` that answered its heartbeat.

    Raises:
        InvalidInputError: the URL has no host or a bad port.
        StoreConnectionError: the server does not answer.
    """
    import chromadb
    import httpx

    parsed = urlparse(url if "://" in url else f"http://{url}")
    if not parsed.hostname:
        raise InvalidInputError(f"chroma url {url!r} has no host; use e.g. http://127.0.0.1:8000")
    ssl = parsed.scheme == "https"
    try:
        port = parsed.port or (443 if ssl else 8000)
    except ValueError:
        raise InvalidInputError(
            f"chroma url {url!r} has an invalid port; use e.g. http://127.0.0.1:8000"
        ) from None
    try:
        client = chromadb.HttpClient(
            host=parsed.hostname, port=port, ssl=ssl, headers=headers, settings=_settings()
        )
        client.heartbeat()
    except (ConnectionError, OSError, ValueError, httpx.TransportError) as exc:
        # chromadb reports an unreachable server as ValueError("Could not connect ...") or
        # as the underlying httpx transport error, depending on where it fails
        raise StoreConnectionError(
            f"cannot reach a Chroma server at {url!r} ({exc}); {_START_SERVER}"
        ) from exc
    return client


def open_store(
    client: Any,
    *,
    collection: str | None,
    embedder: Embedder | None,
    config: IndexConfig | None,
    create: bool,
) -> tuple[ChromaStore, Embedder, IndexConfig]:
    """The store of ``collection`` in ``client`` (created when missing and ``create``), the
    embedder (default: the configured sentence-transformers model, loaded on first use) and config.

    Raises:
        StoreNotFoundError: ``create=False`` and the collection does not exist (the message
            lists the collections that do).
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
            names = sorted(
                c if isinstance(c, str) else c.name
                for c in client.list_collections()
                if not (c if isinstance(c, str) else c.name).endswith(("__centroids", "__meta"))
            )
            raise StoreNotFoundError(
                f"collection {cfg.collection!r} does not exist; collections here: {names or '(none)'}; "
                "pass --collection NAME, or ingest data first"
            ) from None
        store = ChromaStore(client, cfg.collection, model_name=emb.name, dimension=emb.dimension)
    from .repair import on_open

    on_open(store)  # a damaged store fails here; writes killed processes left are undone/completed
    return store, emb, cfg


def check_embedder_dimension(embedder: Embedder, store: ChromaStore) -> None:
    """Raise :class:`ModelMismatchError` when ``embedder`` makes vectors of another size than ``store`` holds.

    (Asking an embedder its dimension may load its model, so the facade calls this on first embed.)
    """
    if embedder.dimension != store.dimension:
        raise ModelMismatchError(
            f"collection {store.name!r} holds {store.dimension}-d vectors but embedder {embedder.name!r} "
            f"produces {embedder.dimension}-d; open it with the model that built it"
        )
