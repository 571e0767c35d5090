"""Topic keywords, representative chunks and labels (keywords or any OpenAI-compatible LLM)."""

from .base import Labeler, LabelReport, LabelRequest, LabelResult, TopicLabelStatus
from .keyword_labeler import KeywordLabeler
from .keywords import ctfidf_keywords, keyword_label, representative_indices
from .mmr import mmr_indices
from .names import NEAR_DUPLICATE, keyword_list_problem, similarity
from .openai_labeler import OpenAILabeler
from .parents import NamedNode, parent_requests

__all__ = [
    "NEAR_DUPLICATE",
    "KeywordLabeler",
    "LabelReport",
    "LabelRequest",
    "LabelResult",
    "NamedNode",
    "Labeler",
    "OpenAILabeler",
    "TopicLabelStatus",
    "ctfidf_keywords",
    "keyword_label",
    "keyword_list_problem",
    "mmr_indices",
    "parent_requests",
    "representative_indices",
    "similarity",
]
