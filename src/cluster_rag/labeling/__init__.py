"""Topic keywords, representative chunks and labels."""

from .keywords import ctfidf_keywords, keyword_label, representative_indices

__all__ = ["ctfidf_keywords", "keyword_label", "representative_indices"]
