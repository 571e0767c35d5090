"""Real datasets from ../shared/data, as the benchmarks use them.

Each loader returns plain Python lists so the text that is embedded is defined in
exactly one place (the embedding cache keys on it).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DATA_DIR",
    "LabeledSet",
    "RetrievalSet",
    "banking77",
    "newsgroups_messages",
    "newsgroups_subjects",
    "scifact",
]

DATA_DIR = Path(os.environ.get("CLUSTER_RAG_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def _jsonl(path: Path) -> Iterator[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


@dataclass(frozen=True)
class LabeledSet:
    """Texts with a gold label each (clustering quality)."""

    name: str
    ids: list[str]
    texts: list[str]
    labels: list[str]


@dataclass(frozen=True)
class RetrievalSet:
    """BEIR-style corpus, queries and graded relevance judgments."""

    name: str
    doc_ids: list[str]
    docs: list[str]
    query_ids: list[str]
    queries: list[str]
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}


def scifact(split: str = "test") -> RetrievalSet:
    """BEIR SciFact: 5,183 abstracts (``title + " " + text``), queries of ``split`` that have qrels."""
    root = DATA_DIR / "scifact"
    corpus = list(_jsonl(root / "corpus.jsonl.gz"))
    qrels: dict[str, dict[str, int]] = {}
    with open(root / f"qrels_{split}.tsv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            qrels.setdefault(row["query_id"], {})[row["doc_id"]] = int(row["score"])
    queries = [q for q in _jsonl(root / "queries.jsonl.gz") if q["id"] in qrels]
    return RetrievalSet(
        name=f"scifact-{split}",
        doc_ids=[d["id"] for d in corpus],
        docs=[(d["title"] + " " + d["text"]).strip() for d in corpus],
        query_ids=[q["id"] for q in queries],
        queries=[q["text"] for q in queries],
        qrels=qrels,
    )


def banking77(splits: tuple[str, ...] = ("train", "test")) -> LabeledSet:
    """Banking77 customer questions with their 77 intents."""
    rows = [r for s in splits for r in _jsonl(DATA_DIR / "banking77" / f"{s}.jsonl.gz")]
    return LabeledSet("banking77", [r["id"] for r in rows], [r["text"] for r in rows], [r["label"] for r in rows])


def _newsgroups(splits: tuple[str, ...]) -> list[dict]:
    return [r for s in splits for r in _jsonl(DATA_DIR / "twenty_newsgroups" / f"{s}.jsonl.gz")]


def newsgroups_messages(splits: tuple[str, ...] = ("train", "test")) -> LabeledSet:
    """20 Newsgroups message bodies with headers stripped (sklearn ``remove=('headers',)``); empty bodies dropped."""
    ids, texts, labels = [], [], []
    for r in _newsgroups(splits):
        body = r["text"].split("\n\n", 1)[1].strip() if "\n\n" in r["text"] else ""
        if body:
            ids.append(r["id"])
            texts.append(body)
            labels.append(r["label"])
    return LabeledSet("20ng-messages", ids, texts, labels)


def newsgroups_subjects(splits: tuple[str, ...] = ("train", "test")) -> LabeledSet:
    """20 Newsgroups subject lines (MTEB TwentyNewsgroupsClustering clusters subjects); blank ones dropped."""
    ids, texts, labels = [], [], []
    for r in _newsgroups(splits):
        subject = (r.get("subject") or "").strip()
        if subject:
            ids.append(r["id"])
            texts.append(subject)
            labels.append(r["label"])
    return LabeledSet("20ng-subjects", ids, texts, labels)
