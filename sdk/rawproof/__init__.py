"""rawproof: neural imaging pipeline, C2PA provenance at capture, and forensic verification.

Data path, top to bottom::

    frame = rawproof.RawFrame.from_file("photo.dng")     # raw.py   (rawpy / native unpack)
    stack = frame.to_stack()                               # native: any CFA -> RGGB, levels, WB
"""

from __future__ import annotations

from rawproof._version import __version__
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
from rawproof.provenance import (
    CaptureInfo,
    ModelRef,
    ProvenanceReport,
    ProvenanceState,
    Signer,
    SigningAlg,
    build_manifest,
    check_provenance,
    mosaic_sha256,
    sign_image,
)
from rawproof.raw import CFA, RawFrame
from rawproof.verify import Verdict, VerifyReport, save_heatmap, verify

__all__ = [
    "CFA",
    "RawFrame",
    "verify",
    "VerifyReport",
    "Verdict",
    "save_heatmap",
    "Signer",
    "SigningAlg",
    "CaptureInfo",
    "ModelRef",
    "ProvenanceReport",
    "ProvenanceState",
    "build_manifest",
    "sign_image",
    "check_provenance",
    "mosaic_sha256",
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
