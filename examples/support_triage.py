"""Support triage: route a stream of tickets to topic queues and print each queue with its label.

Offline by default: topics are fitted on the first 300 of the 400 Banking77 tickets
shipped with cluster-rag (in a temp dir), and the other 100 arrive as the stream.
Each incoming ticket goes to the queue of its nearest topic: the best topic of
``list_topics`` ranked by the ticket (as an agent sees it through the tools), run
over micro-batches of tickets with ``TopicTools.list_topics_batch``.

    python examples/support_triage.py                     # shipped sample, offline
    python examples/support_triage.py --path ./kb --tickets new.jsonl   # your index, your tickets
    python examples/support_triage.py --json              # machine-readable

Banking77 tickets carry their true intent (``label``); the summary reports queue
purity: the share of tickets whose intent is the most common one in their queue.
A topic model only knows the intents it was fitted on: tickets whose intent none of
the fitted tickets had still land in their nearest queue, which then does not fit
them. The output says how many there are and marks them, instead of hiding them in
mislabelled queues.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from _shared import open_index, sample_rows

from cluster_rag.tools import TopicTools

HISTORY = 300  # sample tickets the topics are fitted on; the rest are the incoming stream


def read_tickets(path: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [i for i, r in enumerate(rows) if not isinstance(r.get("text"), str) or not r["text"].strip()]
    if bad:
        raise SystemExit(f'{path}: line(s) {[i + 1 for i in bad[:5]]} have no non-empty "text" field')
    return rows


def triage(tools: TopicTools, tickets: list[dict[str, Any]], batch: int = 32) -> list[dict[str, Any]]:
    """Queues, largest first: topic id, name, keywords and the tickets routed to it.

    Tickets arrive in micro-batches of ``batch``; each batch is embedded once and every
    ticket joins the queue of its nearest topic.
    """
    queues: dict[int, dict[str, Any]] = {}
    for start in range(0, len(tickets), batch):
        part = tickets[start : start + batch]
        ranked = tools.list_topics_batch([t["text"] for t in part], limit=1)
        for ticket, result in zip(part, ranked, strict=True):
            best = result["topics"][0]
            queue = queues.setdefault(
                best["id"],
                {"topic": best["id"], "name": best["name"], "keywords": best["keywords"][:5], "tickets": []},
            )
            queue["tickets"].append({**ticket, "score": best["score"]})
    return sorted(queues.values(), key=lambda q: (-len(q["tickets"]), q["topic"]))


def purity(queues: list[dict[str, Any]]) -> float | None:
    labelled = [[t["label"] for t in q["tickets"] if "label" in t] for q in queues]
    total = sum(len(x) for x in labelled)
    if total == 0:
        return None
    return sum(Counter(x).most_common(1)[0][1] for x in labelled if x) / total


def unseen_intents(history: list[dict[str, Any]], tickets: list[dict[str, Any]]) -> dict[str, int]:
    """Intents of incoming tickets that no fitted ticket had, with ticket counts (labelled data only)."""
    known = {r["label"] for r in history if "label" in r}
    if not known:
        return {}
    return dict(
        Counter(t["label"] for t in tickets if "label" in t and t["label"] not in known).most_common()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--path", help="a fitted cluster-rag index (default: the shipped sample in a temp dir)"
    )
    parser.add_argument("--tickets", help='JSONL of incoming tickets with a "text" field (default: sample)')
    parser.add_argument("--show", type=int, default=3, help="tickets shown per queue")
    parser.add_argument("--batch", type=int, default=32, help="tickets embedded together")
    parser.add_argument("--json", action="store_true", help="print the queues as JSON")
    args = parser.parse_args(argv)

    rows = sample_rows()
    index = open_index(args.path, rows[:HISTORY])
    tickets = read_tickets(args.tickets) if args.tickets else rows[HISTORY:]
    queues = triage(TopicTools(index), tickets, max(1, args.batch))
    share = purity(queues)
    unseen = unseen_intents(rows[:HISTORY] if args.path is None else [], tickets)
    n_unseen = sum(unseen.values())
    if args.json:
        print(
            json.dumps(
                {
                    "tickets": len(tickets),
                    "purity": share,
                    "unseen_intents": unseen,
                    "unseen_tickets": n_unseen,
                    "queues": queues,
                },
                indent=2,
            )
        )
        return 0
    for q in queues:
        intents = Counter(t.get("label", "?") for t in q["tickets"]).most_common(3)
        mix = ", ".join(f"{name} {n}" + (" (unseen intent)" if name in unseen else "") for name, n in intents)
        print(f"\n## queue {q['topic']}: {q['name']}  ({len(q['tickets'])} tickets; {mix})")
        for t in q["tickets"][: args.show]:
            mark = "  [unseen intent: no topic fits]" if t.get("label") in unseen else ""
            print(f"   - {t['text'][:90]}{mark}")
    print(f"\nrouted {len(tickets)} tickets into {len(queues)} queues", end="")
    print(f"; queue purity {share:.2f}" if share is not None else "")
    if n_unseen:
        print(
            f"note: {n_unseen} of {len(tickets)} tickets have an intent that none of the {HISTORY} "
            f"fitted tickets had ({len(unseen)} intents, e.g. {', '.join(list(unseen)[:3])}); they sit "
            "in their nearest queue, whose name does not describe them. Refit (`cluster-rag cluster`) "
            "once such tickets are stored; "
            "`cluster-rag drift` tells when."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
