"""A LangChain RAG chain over a cluster-rag index (retriever → prompt → chat model).

Offline by default: the index is built from the Banking77 sample shipped with
cluster-rag (bundled embedding model, nothing downloaded) and the chat model is
LangChain's ``FakeListChatModel``, so the chain runs end to end with no network.
Point it at any OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama,
OpenAI, ...) with ``--base-url`` and ``--model``; that path uses LangChain's ``ChatOpenAI``
(``pip install -e ".[examples]"``).

    pip install -e ".[examples]" -e integrations/langchain
    python examples/langchain_rag_chain.py
    python examples/langchain_rag_chain.py --question "How do I unblock my PIN?" --k 3
    python examples/langchain_rag_chain.py --path ./kb            # an index you built and fitted
    python examples/langchain_rag_chain.py --base-url http://127.0.0.1:8080/v1 --model my-model
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from cluster_rag import ClusterIndex, IndexConfig

OFFLINE_ANSWER = "(offline FakeListChatModel: pass --base-url and --model to get a real answer)"
PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer the question using only the context. Cite chunk ids in brackets."),
        ("human", "Context:\n{context}\n\nQuestion: {question}"),
    ]
)


def build_demo_index(path: Path) -> ClusterIndex:
    """Embed the shipped Banking77 sample (400 rows) into ``path`` and fit 20 topics."""
    sample = resources.files("cluster_rag") / "data" / "banking77_sample.jsonl"
    rows = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines() if line.strip()]
    index = ClusterIndex.open(path, config=IndexConfig.from_env(progress=False))
    index.add_texts(
        [r["text"] for r in rows], [{"intent": r["label"]} for r in rows], [r["id"] for r in rows]
    )
    index.fit(k=20)
    return index


def format_docs(docs: list[Document]) -> str:
    return "\n".join(f"[{d.id}] ({d.metadata['topic_label']}) {d.page_content}" for d in docs)


def openai_compatible_chat(base_url: str, model: str, api_key: str) -> Runnable[Any, Any]:
    """LangChain's own ``ChatOpenAI`` on any OpenAI-compatible endpoint."""
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        sys.exit(
            "--base-url needs LangChain's OpenAI chat model: pip install langchain-openai "
            "(or: pip install -e '.[examples]')"
        )
    return ChatOpenAI(model=model, base_url=base_url, api_key=api_key, temperature=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, help="a fitted cluster-rag index (default: build the demo)")
    parser.add_argument("--question", default="My card still hasn't arrived, what should I do?")
    parser.add_argument("--k", type=int, default=4, help="chunks retrieved")
    parser.add_argument("--n-probe", type=int, default=None, help="clusters searched (default: calibrated)")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--model", help="model name at --base-url")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "not-needed"))
    args = parser.parse_args(argv)
    if args.base_url and not args.model:
        parser.error("--base-url needs --model")

    with tempfile.TemporaryDirectory() as tmp:
        if args.path is None:
            print("building the demo index from the shipped Banking77 sample ...", file=sys.stderr)
            index = build_demo_index(Path(tmp) / "kb")
        else:
            index = ClusterIndex.open(args.path, create=False, config=IndexConfig.from_env(progress=False))
        llm: Runnable[Any, Any] = (
            openai_compatible_chat(args.base_url, args.model, args.api_key)
            if args.base_url
            else FakeListChatModel(responses=[OFFLINE_ANSWER])
        )
        retriever = index.as_langchain_retriever(k=args.k, n_probe=args.n_probe)
        answer_chain = (
            RunnableLambda(lambda x: {"context": format_docs(x["docs"]), "question": x["question"]})
            | PROMPT
            | llm
            | StrOutputParser()
        )
        # retrieve once; keep the documents as sources next to the answer
        chain = {"docs": retriever, "question": RunnablePassthrough()} | RunnablePassthrough.assign(
            answer=answer_chain
        )
        result = chain.invoke(args.question)

    print(f"Question: {args.question}")
    print("Sources:")
    for doc in result["docs"]:
        meta = doc.metadata
        print(
            f"  {doc.id}  score={meta['score']:.3f}  topic={meta['topic_id']} ({meta['topic_label']})  "
            f"{doc.page_content[:70]}"
        )
    print(f"Answer: {result['answer']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
