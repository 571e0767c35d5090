"""A LlamaIndex query engine over a cluster-rag index (ClusteredRetriever → RetrieverQueryEngine).

Offline by default: the index is built from the Banking77 sample shipped with
cluster-rag (bundled embedding model, nothing downloaded) and the LLM is
llama-index-core's ``MockLLM``, which echoes its prompt, so you see exactly the
context the retriever handed over. Point it at any OpenAI-compatible endpoint
(vLLM, llama.cpp server, Ollama, OpenAI, ...) with ``--base-url`` and ``--model``;
that path uses LlamaIndex's ``OpenAILike`` (``pip install -e ".[examples]"``).

    pip install -e ".[examples]" -e integrations/llama-index
    python examples/llama_index_query_engine.py
    python examples/llama_index_query_engine.py --question "How do I unblock my PIN?" --k 3
    python examples/llama_index_query_engine.py --path ./kb       # an index you built and fitted
    python examples/llama_index_query_engine.py --base-url http://127.0.0.1:8080/v1 --model my-model
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from importlib import resources
from pathlib import Path

from llama_index.core.llms import LLM, MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine

from cluster_rag import ClusterIndex, IndexConfig


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


def openai_compatible_llm(base_url: str, model: str, api_key: str) -> LLM:
    """LlamaIndex's own ``OpenAILike`` chat LLM on any OpenAI-compatible endpoint."""
    try:
        from llama_index.llms.openai_like import OpenAILike
    except ImportError:
        sys.exit(
            "--base-url needs LlamaIndex's OpenAI-compatible LLM: pip install llama-index-llms-openai-like "
            "(or: pip install -e '.[examples]')"
        )
    return OpenAILike(
        model=model, api_base=base_url, api_key=api_key, is_chat_model=True, temperature=0, max_tokens=256
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, help="a fitted cluster-rag index (default: build the demo)")
    parser.add_argument("--question", default="My card still hasn't arrived, what should I do?")
    parser.add_argument("--k", type=int, default=4, help="chunks retrieved (similarity_top_k)")
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
        llm = openai_compatible_llm(args.base_url, args.model, args.api_key) if args.base_url else MockLLM()
        retriever = index.as_llama_index_retriever(similarity_top_k=args.k, n_probe=args.n_probe)
        engine = RetrieverQueryEngine.from_args(retriever, llm=llm)
        response = engine.query(args.question)

    print(f"Question: {args.question}")
    print("Sources:")
    for nws in response.source_nodes:
        meta = nws.node.metadata
        print(
            f"  {nws.node.node_id}  score={nws.score:.3f}  topic={meta['topic_id']} ({meta['topic_label']})  "
            f"{nws.node.get_content()[:70]}"
        )
    if not args.base_url:
        print("Answer (MockLLM echoes its prompt; pass --base-url and --model for a real answer):")
    else:
        print("Answer:")
    print(str(response))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
