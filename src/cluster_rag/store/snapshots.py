"""A model version's assignment, stored once, and its search snapshot next to an embedded store.

Assignment (every version since this module; works embedded and against a server)
    The chunks a version was fitted on, as one array sorted by cluster position:
    ids in that order plus ``offsets`` ``(k+1,)`` (cluster ``c`` holds rows
    ``offsets[c]:offsets[c+1]``). The ids are written to the ``NAME__meta``
    collection as JSON documents ``assign:v<N>:<part>`` of :data:`PART_ROWS` ids
    each; the offsets, part count, row count and a digest go into the version's
    payload (``payload["assignment"]``). A refit therefore costs one write of about
    ``n × len(id)`` bytes instead of ``n`` chunk-metadata updates (measured in
    ``python -m bench scale``). Chunks added after the fit still carry
    ``cr_v<N>``/``cr_added_v<N>`` in their own metadata (written with them).

    Crash safety is unchanged: the parts are written before the centroids and the
    payload, and only a payload naming a complete set of parts (same count and
    digest) is ever read; a later attempt at the same version number deletes and
    rewrites leftover parts.

Snapshot (embedded stores only)
    The vectors of the fitted chunks in the assignment's order, one float32
    ``.npy`` file ``<store folder>/cluster_rag/<NAME>/v<N>-<digest>.npy`` read
    with ``mmap_mode="r"``: opening a version maps the file instead of reading
    every vector out of Chroma. The digest in the name ties the file to one
    assignment, so a reused version number never reads a stale file. Without the
    file (server mode, or deleted) the vectors are read from Chroma by id.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .chroma_store import pack_text, unpack_text

__all__ = [
    "PARTS_PER_WRITE",
    "PART_ROWS",
    "WRITE_ROWS",
    "Assignment",
    "PendingSnapshot",
    "check_assignment",
    "delete_assignment",
    "delete_snapshots",
    "fitted_positions",
    "load_assignment",
    "parts_readable_singly",
    "read_blocks",
    "read_parts",
    "read_snapshot",
    "save_assignment",
    "scatter_snapshot",
    "snapshot_folder",
    "snapshot_path",
    "sort_by_cluster",
    "start_snapshot",
    "write_snapshot",
]

#: Ids per stored part (about 0.5 MB of JSON with 24-character ids).
PART_ROWS = 20_000
#: Parts written per Chroma upsert: at 1M ids, 10 parts in one call took 0.54 s, one by one 1.85 s.
PARTS_PER_WRITE = 10
_META_VECTOR = [1.0]
#: Rows gathered per block when writing a snapshot (8,192 x 384 float32 = 12 MB).
WRITE_ROWS = 8_192


@dataclass(frozen=True)
class Assignment:
    """The fitted chunks of one version, sorted by cluster position.

    Attributes:
        ids: ``(n,)`` object chunk ids, cluster-sorted.
        offsets: ``(k+1,)`` int64; cluster ``c`` is ``ids[offsets[c]:offsets[c+1]]``.
        digest: hex digest of ids and offsets (names the snapshot file).
    """

    ids: np.ndarray
    offsets: np.ndarray
    digest: str

    @property
    def k(self) -> int:
        return len(self.offsets) - 1

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def labels(self) -> np.ndarray:
        """``(n,)`` int64 position of each id."""
        return np.repeat(np.arange(self.k, dtype=np.int64), np.diff(self.offsets))

    @cached_property
    def position_of(self) -> dict[str, int]:
        """Chunk id -> cluster position."""
        return dict(zip(self.ids.tolist(), self.labels.tolist(), strict=True))


def sort_by_cluster(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable order that groups rows by cluster ``(n,)`` int64, and the offsets ``(k+1,)`` int64."""
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=k) if len(labels) else np.zeros(k, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return order, offsets


def _digest(ids: list[str], offsets: np.ndarray) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    h.update("\n".join(ids).encode())
    h.update(np.asarray(offsets, dtype="<i8").tobytes())
    return h.hexdigest()[:16]


def _part_id(version: int, part: int) -> str:
    return f"assign:v{version}:{part}"


def _packed_part(ids: list[str], part: int) -> str:
    """Part ``part`` of the cluster-sorted ``ids`` as a packed JSON list (:func:`pack_text`)."""
    return pack_text(json.dumps(ids[part * PART_ROWS : (part + 1) * PART_ROWS]))


def delete_assignment(store: Any, version: int) -> None:
    """Delete every stored part of ``version``'s assignment (none: nothing happens)."""
    got = store.meta.get(where={"$and": [{"kind": "assign"}, {"version": int(version)}]}, include=[])
    if got["ids"]:
        store.meta.delete(ids=got["ids"])


def save_assignment(store: Any, version: int, ids: list[str], offsets: np.ndarray) -> dict[str, Any]:
    """Write a version's cluster-sorted ids as parts; returns the payload entry that names them.

    Args:
        store: a :class:`~cluster_rag.store.ChromaStore`.
        ids: ``(n,)`` chunk ids, cluster-sorted.
        offsets: ``(k+1,)`` int64.
    """
    delete_assignment(store, version)  # leftovers of an interrupted attempt at this version
    parts = max(1, -(-len(ids) // PART_ROWS))
    digest = _digest(ids, offsets)
    for first in range(0, parts, PARTS_PER_WRITE):
        group = range(first, min(parts, first + PARTS_PER_WRITE))
        store.meta.upsert(
            ids=[_part_id(version, part) for part in group],
            documents=[_packed_part(ids, part) for part in group],
            embeddings=[_META_VECTOR for _ in group],
            # the digest on each part lets a reader take single parts (read_parts) and still know
            # they belong to the entry that names them
            metadatas=[
                {"kind": "assign", "version": int(version), "part": part, "digest": digest} for part in group
            ],
        )
    return {
        "parts": parts,
        "n": len(ids),
        "offsets": np.asarray(offsets, dtype=np.int64).tolist(),
        "digest": digest,
        "parts_signed": True,
    }


def parts_readable_singly(store: Any, version: int, entry: dict[str, Any]) -> bool:
    """Whether :func:`read_parts` may read ``entry``'s parts one at a time: each carries the digest
    (entries written since then say so, ``parts_signed``; no read), or, for an older entry, every
    part is stored with it (reads their metadata)."""
    if entry.get("parts_signed"):
        return True
    wanted = [_part_id(version, p) for p in range(int(entry["parts"]))]
    got = store.meta.get(ids=wanted, include=["metadatas"])
    metas = zip(got["ids"], got["metadatas"], strict=True)
    digests = {cid: (meta or {}).get("digest") for cid, meta in metas}
    return all(digests.get(pid) == entry["digest"] for pid in wanted)


def read_parts(store: Any, version: int, entry: dict[str, Any], parts: Sequence[int]) -> dict[int, list[str]]:
    """Ids of the given parts of ``entry``'s assignment (part ``p`` holds rows
    ``p·PART_ROWS .. (p+1)·PART_ROWS``), each checked against the entry's digest and row count.

    Raises:
        StoreCorruptedError: a part is missing, from another attempt, or of the wrong length.
    """
    from ..errors import StoreCorruptedError

    wanted = {_part_id(version, p): p for p in parts}
    got = store.meta.get(ids=list(wanted), include=["documents", "metadatas"])
    out: dict[int, list[str]] = {}
    n = int(entry["n"])
    for pid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
        part = wanted[pid]
        ids = json.loads(unpack_text(doc))
        if (meta or {}).get("digest") == entry["digest"] and len(ids) == min(PART_ROWS, n - part * PART_ROWS):
            out[part] = ids
    lost = sorted(set(parts) - out.keys())
    if lost:
        raise StoreCorruptedError(
            f"version {version}'s stored assignment lost part {lost[0]} since it was opened; "
            "reopen the index, or refit (`cluster-rag fit`) to write a new one"
        )
    return out


def check_assignment(ids: list[str], entry: dict[str, Any]) -> None:
    """Raise :class:`~cluster_rag.errors.StoreCorruptedError` unless ``ids`` (every part, in order)
    match ``entry``'s row count and digest."""
    from ..errors import StoreCorruptedError

    offsets = np.asarray(entry["offsets"], dtype=np.int64)
    if len(ids) != int(entry["n"]) or _digest(ids, offsets) != entry["digest"]:
        raise StoreCorruptedError(
            "a version's stored assignment does not match its record; "
            "refit (`cluster-rag fit`) to write a new one"
        )


def load_assignment(store: Any, version: int, entry: dict[str, Any]) -> Assignment | None:
    """The assignment a payload entry names; ``None`` when its parts are missing or do not match."""
    parts = int(entry["parts"])
    wanted = [_part_id(version, p) for p in range(parts)]
    got = store.meta.get(ids=wanted, include=["documents"])
    docs = dict(zip(got["ids"], got["documents"], strict=True))
    if any(pid not in docs for pid in wanted):
        return None
    ids: list[str] = []
    for pid in wanted:
        ids.extend(json.loads(unpack_text(docs[pid])))
    offsets = np.asarray(entry["offsets"], dtype=np.int64)
    if len(ids) != int(entry["n"]) or _digest(ids, offsets) != entry["digest"]:
        return None
    return Assignment(np.asarray(ids, dtype=object), offsets, str(entry["digest"]))


_CACHE: dict[tuple[int, int, str], Assignment] = {}


def fitted_positions(store: Any, version: int, entry: dict[str, Any] | None) -> dict[str, int]:
    """Chunk id -> position of the chunks ``version`` was fitted on (empty: no stored assignment).

    The last few assignments read are cached per store (an assignment never changes once
    its payload names it; the digest is part of the key).
    """
    if entry is None:
        return {}
    key = (id(store), int(version), str(entry["digest"]))
    found = _CACHE.get(key)
    if found is None:
        found = load_assignment(store, version, entry)
        if found is None:
            return {}
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = found
    return found.position_of


def snapshot_folder(store: Any) -> Path | None:
    """``<store folder>/cluster_rag/<NAME>`` for an embedded (persistent) client, else ``None``."""
    try:
        settings = store.client.get_settings()
    except AttributeError:
        return None
    folder = getattr(settings, "persist_directory", None)
    if not getattr(settings, "is_persistent", False) or not folder:
        return None
    return Path(folder) / "cluster_rag" / str(store.name)


def snapshot_path(store: Any, version: int, digest: str) -> Path | None:
    """Where ``version``'s vector snapshot lives (``None``: the store has no folder)."""
    folder = snapshot_folder(store)
    return None if folder is None else folder / f"v{version}-{digest}.npy"


def write_snapshot(path: Path, vectors: np.ndarray, order: np.ndarray | None = None) -> None:
    """Write ``vectors[order]`` ``(n, d)`` float32 (assignment order) atomically (temp file + rename).

    Rows are gathered and written in blocks of :data:`WRITE_ROWS` with plain file writes
    (not a writable memory map, whose dirty pages would count in the process's resident
    memory), so no sorted copy of ``vectors`` is held (``order=None``: as given).
    """
    start_snapshot(path, vectors, order).finish()


class PendingSnapshot:
    """A snapshot whose rows are written to a temp file, and flushed with ``fsync``, by a background
    thread (:func:`start_snapshot`); :meth:`finish` waits for it and renames the file into place.

    A fit starts the snapshot, describes its topics, builds its tree and calibrates its route while
    the rows go to disk, and finishes before the payload that names the file is saved: the file is
    complete and durable before any version refers to it. Writing is mostly disk time (``write``
    and ``fsync`` release the GIL): at 200k rows x 384 (293 MB) 1.7-1.9 s in the fitting thread
    before it moved here; at 1M, the flush alone took ~7 s.
    """

    def __init__(self, tmp: Path, path: Path, fh: Any, vectors: np.ndarray, order: np.ndarray | None) -> None:
        self.tmp, self.path = tmp, path
        self._fh = fh
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._write, args=(vectors, order), name="cluster-rag-snapshot", daemon=True
        )
        self._thread.start()

    def _write(self, vectors: np.ndarray, order: np.ndarray | None) -> None:
        try:
            n = len(vectors) if order is None else len(order)
            for start in range(0, n, WRITE_ROWS):
                rows = slice(start, start + WRITE_ROWS)
                block = vectors[rows] if order is None else vectors[order[rows]]
                self._fh.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except BaseException as exc:  # re-raised by finish() in the fitting thread
            self._error = exc

    def finish(self) -> None:
        """Wait for the rows and their ``fsync``, close and rename the temp file to :attr:`path`
        (re-raises an ``OSError`` the writes met; the temp file is then removed)."""
        self._thread.join()
        self._fh.close()
        if self._error is not None:
            self.tmp.unlink(missing_ok=True)
            raise self._error
        os.replace(self.tmp, self.path)

    def abandon(self) -> None:
        """Wait for the writer and delete the temp file (the fit failed before its payload)."""
        self._thread.join()
        self._fh.close()
        self.tmp.unlink(missing_ok=True)


def start_snapshot(path: Path, vectors: np.ndarray, order: np.ndarray | None = None) -> PendingSnapshot:
    """Start writing the rows of :func:`write_snapshot` to ``path``'s temp file in the background; the
    caller must not change ``vectors`` until it calls :meth:`~PendingSnapshot.finish` (or
    :meth:`~PendingSnapshot.abandon`). Raises what creating the file raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    n = len(vectors) if order is None else len(order)
    header: dict[str, Any] = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
        "fortran_order": False,
        "shape": (n, int(vectors.shape[1])),
    }
    fh = open(tmp, "wb")  # noqa: SIM115 (closed by the PendingSnapshot, after its fsync)
    try:
        np.lib.format.write_array_header_1_0(fh, header)
    except BaseException:
        fh.close()
        tmp.unlink(missing_ok=True)
        raise
    return PendingSnapshot(tmp, path, fh, vectors, order)


def read_snapshot(path: Path | None, n: int, dimension: int) -> np.ndarray | None:
    """The snapshot mapped read-only ``(n, d)`` float32, or ``None`` when missing or not that shape."""
    if path is None or not path.is_file():
        return None
    try:
        vectors: np.ndarray = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if vectors.shape != (n, dimension) or vectors.dtype != np.float32:
        return None
    return vectors


def read_blocks(path: Path, n: int, dimension: int) -> Iterator[tuple[int, np.ndarray]]:
    """The rows of the ``(n, dimension)`` float32 ``.npy`` file ``path`` as ``(first row, block)``
    pairs of at most :data:`WRITE_ROWS` rows, read sequentially with plain reads (a memory map would
    add every page read to the process's resident memory).

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not ``(n, dimension)`` float32, or shorter or longer than that.
    """
    with open(path, "rb") as fh:
        major, _ = np.lib.format.read_magic(fh)
        read_header = (
            np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(fh)
        if shape != (n, dimension) or fortran or dtype != np.float32:
            raise ValueError(f"{path} holds {shape} {dtype}, not ({n}, {dimension}) float32")
        for start in range(0, n, WRITE_ROWS):
            count = min(WRITE_ROWS, n - start)
            block = np.fromfile(fh, dtype=np.float32, count=count * dimension)
            if len(block) != count * dimension:
                raise ValueError(f"{path} ends at row {start + len(block) // max(dimension, 1)} of {n}")
            yield start, block.reshape(count, dimension)
        if fh.read(1):
            raise ValueError(f"{path} holds more than {n} rows")


def scatter_snapshot(path: Path | None, n: int, dimension: int, dest: np.ndarray, out: np.ndarray) -> bool:
    """Copy snapshot row ``r`` into ``out[dest[r]]`` for every ``dest[r] >= 0``, reading the file
    sequentially (:func:`read_blocks`). ``False`` (``out`` untouched): the file is missing or not
    ``(n, dimension)`` float32.

    Args:
        dest: ``(n,)`` int64 target row of each snapshot row, ``-1``: not wanted.
        out: ``(m, dimension)`` float32, written in place.
    """
    if path is None or not path.is_file():
        return False
    try:
        for start, block in read_blocks(path, n, dimension):
            targets = dest[start : start + len(block)]
            wanted = targets >= 0
            out[targets[wanted]] = block[wanted]
    except (OSError, ValueError):
        return False
    return True


def snapshot_versions(store: Any) -> set[int]:
    """Versions with a snapshot file (or a killed fit's temp file) next to the store (none for a
    server store)."""
    folder = snapshot_folder(store)
    if folder is None or not folder.is_dir():
        return set()
    found = (path.name[1:].split("-", 1)[0] for path in folder.glob("v*-*"))
    return {int(number) for number in found if number.isdigit()}


def delete_snapshots(store: Any, version: int) -> None:
    """Delete every snapshot file of ``version``, temp files of a killed fit included (pruning)."""
    folder = snapshot_folder(store)
    if folder is None or not folder.is_dir():
        return
    for path in folder.glob(f"v{version}-*"):
        path.unlink(missing_ok=True)
