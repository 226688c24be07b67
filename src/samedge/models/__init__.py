"""PyTorch definitions of the SAM family whose state_dict keys match the official checkpoints.

Export-time only: nothing on the runtime path imports this package.
"""
from .sam import Sam, build_sam
from .checkpoint import load_checkpoint, detect_model_type, randomize_weights

__all__ = ["Sam", "build_sam", "load_checkpoint", "detect_model_type", "randomize_weights"]
