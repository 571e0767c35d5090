"""Helpers every bench shares: markdown tables and thread pinning."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["md_table", "pin_threads"]


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], float_format: str = "{:.4f}") -> str:
    """A GitHub-markdown table; floats formatted with ``float_format``."""

    def cell(v: Any) -> str:
        return float_format.format(v) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def pin_threads(n: int = 1) -> None:
    """Pin BLAS/OpenMP (and FAISS, when imported) to ``n`` threads: on a shared 2-core machine
    their worker threads spin on a busy core and turn timings into noise."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
