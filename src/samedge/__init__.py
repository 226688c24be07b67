"""samedge: Segment Anything on edge hardware.

Importing samedge imports neither torch nor any inference backend; those load on first use.
"""
from __future__ import annotations

from .errors import (BackendUnavailableError, BundleError, CheckpointError, DownloadError, ExportError,
                     InputError, ManifestVersionError, ParityError, RunInterrupted, SamEdgeError)

__version__ = "0.1.0"

__all__ = ["SamPredictor", "SamAutomaticMaskGenerator", "load_bundle", "SamEdgeError", "InputError", "BundleError", "ManifestVersionError",
           "CheckpointError", "DownloadError", "ExportError", "ParityError", "BackendUnavailableError",
           "RunInterrupted", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import samedge` stays cheap (PIL and the predictor load on first use).
    if name == "SamPredictor":
        from .predictor import SamPredictor
        return SamPredictor
    if name == "SamAutomaticMaskGenerator":
        from .everything import SamAutomaticMaskGenerator
        return SamAutomaticMaskGenerator
    if name == "load_bundle":
        from .bundle import load_bundle
        return load_bundle
    raise AttributeError(name)
