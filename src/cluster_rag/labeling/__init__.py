"""Topic keywords, representative chunks and labels (keywords or any OpenAI-compatible LLM)."""

from .base import Labeler, LabelReport, LabelRequest, LabelResult, TopicLabelStatus
from .keyword_labeler import KeywordLabeler
from .keywords import ctfidf_keywords, keyword_label, representative_indices
from .mmr import mmr_indices
from .openai_labeler import OpenAILabeler

__all__ = [
    "KeywordLabeler",
    "LabelReport",
    "LabelRequest",
    "LabelResult",
    "Labeler",
    "OpenAILabeler",
    "TopicLabelStatus",
    "ctfidf_keywords",
    "keyword_label",
    "mmr_indices",
    "representative_indices",
]
