"""Run the benchmarks: ``python -m bench [SUITE|all] [--quick]`` (suites: :data:`SUITES`).

Each suite is a module ``bench/<name>.py`` with ``main(quick: bool) -> str`` that
prints its tables, writes ``bench/results/<name>.md`` (and any plots there) and
returns the markdown. Embeddings of the datasets are cached in ``bench/.cache``
(first run embeds on the CPU: minutes).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SUITES = ("core", "quality", "labels", "living", "retrieval", "hierarchy", "web", "scale")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("suite", nargs="?", default="all", choices=(*SUITES, "all"))
    parser.add_argument("--quick", action="store_true", help="smaller samples, for a smoke run")
    parser.add_argument("--size", type=int, default=None, help="scale only: rows (default 200,000)")
    parser.add_argument("--store", type=Path, default=None, help="scale only: reuse a folder it built")
    args = parser.parse_args()
    if (args.size is not None or args.store is not None) and args.suite != "scale":
        parser.error("--size and --store apply to the scale suite only: python -m bench scale --size N")
    for name in SUITES if args.suite == "all" else (args.suite,):
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"(suite {name!r} not present yet)")
                continue
            raise
        if name == "scale":
            module.main(quick=args.quick, size=args.size, store=args.store)
        else:
            module.main(quick=args.quick)


if __name__ == "__main__":
    main()
