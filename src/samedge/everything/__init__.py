"""Segment everything: the official automatic mask generator on exported graphs (numpy and the backend only)."""
from __future__ import annotations

from .agreement import RecordAgreement, compare_records, recall
from .generator import GenerationStats, GeneratorConfig, SamAutomaticMaskGenerator

__all__ = ["SamAutomaticMaskGenerator", "GeneratorConfig", "GenerationStats", "RecordAgreement", "compare_records",
           "recall"]
