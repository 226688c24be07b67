"""Typed errors. Every message says what was given and what is allowed."""
from __future__ import annotations


class SamEdgeError(Exception):
    """Base class of every error samedge raises on purpose."""


class InputError(SamEdgeError, ValueError):
    """A user-supplied array or argument is malformed (shape, dtype, range, NaN)."""


class BundleError(SamEdgeError):
    """A bundle directory is missing files, is corrupt, or does not match its manifest."""


class ManifestVersionError(BundleError):
    """The manifest was written by an unknown (newer or foreign) format version."""


class CheckpointError(SamEdgeError):
    """A checkpoint cannot be used: unreadable, wrong model type, or wrong keys/shapes."""


class DownloadError(SamEdgeError):
    """An official checkpoint could not be fetched or failed its sha256 check."""


class ExportError(SamEdgeError):
    """Exporting a graph failed."""


class ParityError(ExportError):
    """An exported graph disagrees with the PyTorch reference beyond the allowed thresholds."""

    def __init__(self, message: str, report: dict | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


class RunInterrupted(SamEdgeError):
    """A graph run was stopped on purpose before it finished (runtimes.Interrupt, e.g. set_image_async with
    preempt=True superseding an encode); it has no result."""


class BackendUnavailableError(SamEdgeError):
    """An optional backend library or device is not available; the message names the pip extra."""
