"""LangChain's own standard retriever suite (langchain-tests) against ClusteredRetriever.

Runs on the real bundled embedding model and a real embedded Chroma holding the
fitted 400-row Banking77 sample (the shared ``demo_index`` fixture).
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_cluster_rag import ClusteredRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests

from cluster_rag import ClusterIndex

pytestmark = pytest.mark.integration


class TestClusteredRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _bind_index(self, demo_index: ClusterIndex) -> None:
        # the suite reads constructor params from a property; hand it this test's index
        self._index = demo_index

    @property
    def retriever_constructor(self) -> type[ClusteredRetriever]:
        return ClusteredRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"index": self._index, "k": 4}

    @property
    def retriever_query_example(self) -> str:
        return "my card still has not arrived"
