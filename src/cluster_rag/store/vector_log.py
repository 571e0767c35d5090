"""Vectors of recent adds, kept next to an embedded store until a fit's snapshot holds them.

A fit needs every stored vector, and reading them back through Chroma's Python client costs
far more than writing them did: at 200k x 384 chunks 8-10 s, most of it turning lists of
Python floats into arrays (``python -m bench scale``). So every add (or replace) of at least
:data:`MIN_LOG_ROWS` rows to an embedded store also writes its vectors, as given to Chroma, into
``<store folder>/cluster_rag/<NAME>/added/``:

- ``<token>.npy``: ``(m, d)`` float32, the add's rows in its id order;
- ``<token>.json``: the ids, the row count, the width and a CRC-32 of the vector bytes.

``<token>`` is the add's write token, which Chroma also holds in each row's ``cr_w`` metadata
(:mod:`cluster_rag.journal`). A logged vector is used only for a row whose stored stamp is that
token: Chroma stores a row's vector only through an add or a replace, and both stamp a fresh
token, so such a row still holds the logged vector (as given: Chroma's own copy, renormalized by
its cosine space, can differ in the last bits of float32, ~1e-8 measured). A replaced, deleted or re-added
row, the rows of an add killed midway (rolled back by the journal) and a damaged file (wrong
size, CRC or JSON) all fall back to reading Chroma. The files are a cache: they are written
without ``fsync`` (the CRC catches a torn file after a power loss), a failed write only logs
a warning, and a fit deletes the files it found before it read the vectors once its version
is active (their rows are in its snapshot; an add racing the fit writes a file named after
its own token, which stays). Server stores have no folder and no log.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import snapshots
from .chroma_store import WRITE_KEY, owner_alive

__all__ = ["LOG_FOLDER", "MIN_LOG_ROWS", "drop_logs", "log_tokens", "read_logged", "write_log"]

log = logging.getLogger("cluster_rag")

#: Sub-folder of the snapshot folder holding the logs.
LOG_FOLDER = "added"
#: Adds of fewer rows keep no log: a fit pays one stamp query per log (~22 ms at 200k chunks,
#: measured) and reads 1,000 vectors from Chroma by id in ~30 ms, so a smaller log costs the fit
#: more than it saves (and one-row adds would leave a file each).
MIN_LOG_ROWS = 1_000
#: Seconds after which an ids file without its vectors (a writer killed between the two
#: renames) is deleted by :func:`drop_logs`.
_STALE_S = 3600.0


def _folder(store: Any) -> Path | None:
    base = snapshots.snapshot_folder(store)
    return None if base is None else base / LOG_FOLDER


def write_log(store: Any, token: str, ids: Sequence[str], vectors: np.ndarray) -> None:
    """Keep the vectors ``(m, d)`` float32 the add ``token`` stored for ``ids`` (no-op for a store
    without a folder, or below :data:`MIN_LOG_ROWS` rows). An ``OSError`` is logged, not raised:
    the rows are in Chroma."""
    folder = _folder(store)
    if folder is None or len(ids) < max(1, MIN_LOG_ROWS):
        return
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    vec_path, ids_path = folder / f"{token}.npy", folder / f"{token}.json"
    tmp = vec_path.with_suffix(f".tmp{os.getpid()}")
    tmp_ids = ids_path.with_suffix(f".tmp{os.getpid()}j")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            np.save(fh, data)
        head = {"ids": list(ids), "n": len(data), "d": int(data.shape[1]), "crc32": zlib.crc32(data.data)}
        tmp_ids.write_text(json.dumps(head))
        os.replace(tmp_ids, ids_path)
        os.replace(tmp, vec_path)  # the vectors last: a log is whole once both files are there
    except OSError as exc:
        for path in (tmp, tmp_ids):
            path.unlink(missing_ok=True)
        log.warning(
            "could not keep the vectors of add %s next to the store (%s): a fit reads them from Chroma",
            token,
            exc,
        )


def log_tokens(store: Any) -> list[str]:
    """Tokens of the logs present now (both files there), oldest first."""
    folder = _folder(store)
    if folder is None or not folder.is_dir():
        return []
    found = [
        (p.stat().st_mtime, p.stem) for p in folder.glob("*.npy") if (folder / f"{p.stem}.json").is_file()
    ]
    return [token for _, token in sorted(found)]


def _writer_gone(path: Path) -> bool:
    """A temp file ``<token>.tmp<pid>[j]`` whose writing process has exited (killed mid-write)."""
    pid = path.suffix[len(".tmp") :].rstrip("j")
    return pid.isdigit() and not owner_alive({"host": socket.gethostname(), "pid": int(pid)})


def _head(folder: Path, token: str) -> dict[str, Any] | None:
    """A log's ids file (ids, n, d, crc32), or ``None`` when missing or unreadable."""
    try:
        head = json.loads((folder / f"{token}.json").read_text())
        head["ids"] = [str(i) for i in head["ids"]]
        head["n"], head["d"], head["crc32"] = int(head["n"]), int(head["d"]), int(head["crc32"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return head if len(head["ids"]) == head["n"] else None


def _scatter(path: Path, head: dict[str, Any], dest: np.ndarray, out: np.ndarray) -> bool:
    """Copy log row ``r`` into ``out[dest[r]]`` for every ``dest[r] >= 0``, reading the file
    sequentially (:func:`~cluster_rag.store.snapshots.read_blocks`) and checking its CRC on the
    way. ``False``: the file is damaged (then the rows written are not to be used)."""
    crc = 0
    try:
        for start, block in snapshots.read_blocks(path, head["n"], head["d"]):
            crc = zlib.crc32(np.ascontiguousarray(block).data, crc)
            targets = dest[start : start + len(block)]
            wanted = targets >= 0
            out[targets[wanted]] = block[wanted]
    except (OSError, ValueError):
        return False
    return bool(crc == head["crc32"])


def read_logged(
    store: Any, ids: Sequence[str], tokens: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of ``ids`` that a log holds for the row Chroma stores now.

    Args:
        ids: ``(n,)`` chunk ids.
        tokens: logs to read (default: :func:`log_tokens`).

    Returns:
        ``(n, d)`` float32 vectors (rows not found are zero) and ``(n,)`` bool, found.
    """
    folder = _folder(store)
    found = np.zeros(len(ids), dtype=bool)
    out = np.zeros((len(ids), store.dimension), np.float32)
    if folder is None:
        return out, found
    row_of = {cid: i for i, cid in enumerate(ids)}
    for token in log_tokens(store) if tokens is None else tokens:
        head = _head(folder, token)
        if head is None or head["d"] != store.dimension:
            continue
        stamped = {
            cid
            for got in store.iter_all(include=[], page=head["n"] + 1, where={WRITE_KEY: token})
            for cid in got["ids"]
        }
        dest = np.fromiter(
            (row_of.get(cid, -1) if cid in stamped else -1 for cid in head["ids"]), np.int64, head["n"]
        )
        if not bool((dest >= 0).any()):
            continue
        if _scatter(folder / f"{token}.npy", head, dest, out):
            found[dest[dest >= 0]] = True
        else:  # damaged: those rows are read from Chroma (and overwritten there)
            out[dest[dest >= 0]] = 0.0
    return out, found


def drop_logs(store: Any, tokens: Sequence[str]) -> None:
    """Delete the logs ``tokens`` (their rows are in an active version's snapshot)."""
    folder = _folder(store)
    if folder is None:
        return
    for token in tokens:
        (folder / f"{token}.npy").unlink(missing_ok=True)
        (folder / f"{token}.json").unlink(missing_ok=True)
    if folder.is_dir():  # and what killed writers left
        for path in folder.glob("*.tmp*"):
            if _writer_gone(path):
                path.unlink(missing_ok=True)
        for path in folder.glob("*.json"):  # killed between its two renames
            if not path.with_suffix(".npy").exists() and time.time() - path.stat().st_mtime > _STALE_S:
                path.unlink(missing_ok=True)
