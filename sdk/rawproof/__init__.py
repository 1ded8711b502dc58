"""rawproof: neural imaging pipeline, C2PA provenance at capture, and forensic verification.

Data path, top to bottom::

    frame = rawproof.RawFrame.from_file("photo.dng")     # raw.py   (rawpy / native unpack)
    stack = frame.to_stack()                               # native: any CFA -> RGGB, levels, WB
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from rawproof.errors import (
    FingerprintError,
    ImageFormatError,
    ModelError,
    ProviderError,
    RawFormatError,
    RawproofError,
    SigningError,
    VerificationError,
)
from rawproof.raw import CFA, RawFrame

try:
    __version__ = version("rawproof")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = [
    "CFA",
    "RawFrame",
    "RawproofError",
    "RawFormatError",
    "ModelError",
    "ProviderError",
    "SigningError",
    "VerificationError",
    "ImageFormatError",
    "FingerprintError",
    "__version__",
]
