"""Benchmarks for cluster-rag (run `python -m bench`; not part of the test suite)."""
