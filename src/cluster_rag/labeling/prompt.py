"""The LLM prompt for one cluster, its token budget, and validation of the answer.

The answer must be one JSON object ``{"name", "description", "keywords"}``:
``name`` at most :data:`MAX_NAME_WORDS` words, ``description`` one sentence,
``keywords`` a short list. It is validated with pydantic; prose around the object
(servers without JSON mode) is tolerated by taking the first JSON object in the text.

Tokens are estimated as ``ceil(chars / 4)`` unless a counter is passed (for exact
counts pass e.g. ``lambda s: len(tiktoken.get_encoding("cl100k_base").encode(s))``;
tiktoken is not the default because it downloads its tables on first use).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection
from typing import Any

from ..errors import missing_dependency
from .base import LabelRequest

__all__ = [
    "MAX_NAME_WORDS",
    "PROMPT_VERSION",
    "answer_schema",
    "build_messages",
    "estimate_tokens",
    "extract_json",
    "parse_answer",
    "repair_messages",
]

#: Bump when the prompt or the validation rules change: cached LLM labels are then redone.
PROMPT_VERSION = "p2"  # p2: keyword lists and near-copies of other names are rejected; parent prompts
MAX_NAME_WORDS = 6
_MAX_NAME_CHARS = 80
_MAX_DESCRIPTION_CHARS = 400
_PLACEHOLDERS = {"name", "topic", "cluster", "group", "unknown", "none", "null", "n/a", "untitled", "label"}

SYSTEM_PROMPT = (
    "You name groups of similar documents for a topic index. Reply with one JSON object and "
    'nothing else: {"name": "...", "description": "...", "keywords": ["..."]}. '
    f"name: a specific topic name of at most {MAX_NAME_WORDS} words, in plain words, not a list of keywords. "
    "description: one sentence saying what the documents have in common. "
    "keywords: 3 to 6 short keywords. "
    "The name must differ from the names of the similar groups listed."
)

TokenCounter = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """Rough token count: ``ceil(len(text) / 4)`` (English BPE averages ~4 chars per token)."""
    return (len(text) + 3) // 4


def answer_schema() -> dict[str, Any]:
    """JSON schema of the answer, for ``response_format``."""
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": f"at most {MAX_NAME_WORDS} words"},
            "description": {"type": "string", "description": "one sentence"},
            "keywords": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "description", "keywords"],
        "additionalProperties": False,
    }


def _truncate(text: str, tokens: int, count: TokenCounter) -> str:
    text = " ".join(text.split())
    if tokens <= 0:
        return ""
    have = count(text)
    if have <= tokens:
        return text
    cut = max(1, int(len(text) * tokens / have))
    while cut > 1 and count(text[:cut] + "…") > tokens:
        cut = int(cut * 0.9)
    return text[:cut].rstrip() + "…"


def build_messages(
    request: LabelRequest,
    *,
    max_prompt_tokens: int = 1000,
    max_chunk_tokens: int = 150,
    count_tokens: TokenCounter | None = None,
) -> list[dict[str, str]]:
    """Chat messages asking for one cluster's label, within ``max_prompt_tokens``.

    Keywords, children's names (a parent node) and sibling names always go in;
    representative texts (each cut to ``max_chunk_tokens``) are added, most central
    first, while the budget lasts.
    """
    count = count_tokens or estimate_tokens
    head = f"Top keywords: {', '.join(request.keywords[:12]) or '(none)'}\n"
    if request.children:  # a parent node of the topic tree
        subtopics = "\n".join(f"- {json.dumps(c)}" for c in request.children)
        head += f"\nSubtopics of this broad group ({request.size} documents in all):\n{subtopics}\n"
    tail = ""
    if request.siblings:
        names = "; ".join(json.dumps(s) for s in request.siblings)
        what = "Other broad groups" if request.children else "Similar groups already named"
        tail = f"\n{what} (pick a different name): {names}\n"
    ask = (
        # SmolLM2-135M echoed "what its subtopics have in common" as the name: with keyword-named
        # subtopics 0 of 7 20NG parents got a name, asking for the covering topic in 1-4 plain words
        # 3 of 7 (a probe of bench/labels.py's quick fit); with its own subtopic names 1 of 7 (bench)
        "\nGive the broad topic that covers all of these subtopics: a plain name of 1 to 4 words "
        "(not a question, not a list, not one subtopic's name), and one short sentence."
        if request.children
        else "\nName this group."
    )
    used = count(SYSTEM_PROMPT) + count(head) + count(tail) + count(ask) + 8
    docs: list[str] = []
    for text in request.representatives:
        room = min(max_chunk_tokens, max_prompt_tokens - used - 4)
        if room < 16 and docs:
            break
        line = f"{len(docs) + 1}. {_truncate(text, max(room, 16), count)}"
        docs.append(line)
        used += count(line) + 1
    body = head
    if docs:
        size = "" if request.children else f" ({request.size} in the group)"
        body += f"\nExample documents{size}:\n" + "\n".join(docs) + "\n"
    body += tail + ask
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": body}]


def repair_messages(
    messages: list[dict[str, str]], answer: str, problem: str, taken: Collection[str] = ()
) -> list[dict[str, str]]:
    """The conversation extended with the bad answer, what was wrong with it, and the
    names to avoid (the first 30 of ``taken``, in its order)."""
    avoid = ""
    if taken:
        names = list(dict.fromkeys(taken))[:30]  # in the caller's order: the offending name first
        avoid = " The name must not be any of: " + "; ".join(json.dumps(t) for t in names) + "."
    fix = (
        f"That answer cannot be used: {problem}. Reply again with only the JSON object "
        '{"name": "...", "description": "...", "keywords": ["..."]}; '
        f"the name must have at most {MAX_NAME_WORDS} words.{avoid}"
    )
    return [
        *messages,
        {"role": "assistant", "content": (answer or "")[:1000]},
        {"role": "user", "content": fix},
    ]


def extract_json(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (prose and code fences around it are skipped)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None


@functools.lru_cache(maxsize=1)
def _answer_model() -> Any:
    try:
        from pydantic import BaseModel, ConfigDict, Field, field_validator
    except ImportError:  # pragma: no cover - pydantic ships with chromadb
        raise missing_dependency("pydantic", '"cluster-rag[openai]"') from None

    class LabelAnswer(BaseModel):
        model_config = ConfigDict(extra="ignore")

        name: str
        description: str
        keywords: list[str] = Field(default_factory=list)

        @field_validator("name")
        @classmethod
        def _name(cls, value: str) -> str:
            name = " ".join(value.split()).strip("\"'`*.:;,")
            if not name:
                raise ValueError("the name is empty")
            if "<" in name or ">" in name or name.casefold() in _PLACEHOLDERS:
                raise ValueError(f"the name {name!r} is a placeholder, not a topic name")
            words = sum(any(ch.isalnum() for ch in w) for w in name.split())  # "/" and "&" are no words
            if words > MAX_NAME_WORDS:
                raise ValueError(f"the name {name!r} has {words} words; use at most {MAX_NAME_WORDS}")
            if len(name) > _MAX_NAME_CHARS:
                raise ValueError(f"the name is {len(name)} characters long; keep it under {_MAX_NAME_CHARS}")
            if name.isdigit():
                raise ValueError("the name is a number; use words")
            return name

        @field_validator("description")
        @classmethod
        def _description(cls, value: str) -> str:
            text = " ".join(value.split())
            if not text:
                raise ValueError("the description is empty")
            end = text.find(". ")
            if end != -1:  # keep the first sentence
                text = text[: end + 1]
            return text[:_MAX_DESCRIPTION_CHARS]

        @field_validator("keywords", mode="before")
        @classmethod
        def _keywords(cls, value: Any) -> Any:
            if isinstance(value, str):
                value = value.split(",")
            if isinstance(value, list):
                return [" ".join(str(v).split()) for v in value if str(v).strip()][:10]
            return value

    return LabelAnswer


def parse_answer(text: str | None) -> tuple[Any, str | None]:
    """Validate a model answer.

    Returns:
        ``(answer, None)`` with an object having ``name``, ``description`` and
        ``keywords``, or ``(None, problem)`` where ``problem`` says in plain words
        what was wrong (it is sent back to the model in the repair request).
    """
    if text is None or not text.strip():
        return None, "the answer was empty"
    data = extract_json(text)
    if data is None:
        return None, "the answer contained no JSON object"
    from pydantic import ValidationError

    try:
        return _answer_model().model_validate(data), None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "answer"
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {msg}")
        return None, "; ".join(problems)

