"""Vectors → clusters."""

from .kmeans import SphericalKMeans, assign, default_k, fit_any, resolve_engine, validate_k

__all__ = ["SphericalKMeans", "assign", "default_k", "fit_any", "resolve_engine", "validate_k"]
