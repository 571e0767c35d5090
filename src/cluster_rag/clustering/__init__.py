"""Vectors → clusters."""

from .kmeans import SphericalKMeans, assign, fit_any, validate_k

__all__ = ["SphericalKMeans", "assign", "fit_any", "validate_k"]
