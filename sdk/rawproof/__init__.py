"""rawproof: neural imaging pipeline, C2PA provenance at capture, and forensic verification.

Data path, top to bottom::

    frame = rawproof.RawFrame.from_file("photo.crw")       # raw.py: rawpy, or native unpack for sensor dumps
    stack = frame.to_stack(colour=True)                      # native CFA -> RGGB, levels, WB; CCM per quad
    with rawproof.Signer.from_files("chain.pem", "key.pem") as signer:
        result = rawproof.develop(frame, signer=signer)      # NIP (onnxruntime, tiled) -> uint8 -> JPEG -> C2PA
    result.save("photo.jpg")
    report = rawproof.verify("photo.jpg", device_anchors="root.pem")  # C2PA validation + history + FAN traces
"""

from __future__ import annotations

from rawproof._version import __version__
from rawproof.develop import DevelopResult, SensorBuffer, develop
from rawproof.errors import (
    FingerprintError,
    ImageFormatError,
    ModelError,
    ProviderError,
    RawFormatError,
    RawproofError,
    RepositoryError,
    SigningError,
    VerificationError,
)
from rawproof.fingerprint import DeviceMatch, Fingerprint, enroll, match
from rawproof.provenance import (
    CaptureInfo,
    ManifestStep,
    ModelRef,
    ProvenanceReport,
    ProvenanceState,
    Signer,
    SigningAlg,
    TrustState,
    add_time_stamp,
    build_manifest,
    check_provenance,
    mosaic_sha256,
    sign_image,
)
from rawproof.pairs import ModelPair, list_pairs
from rawproof.raw import CFA, RawFrame
from rawproof.sensor import SensorSpec
from rawproof.verify import Verdict, VerifyReport, save_heatmap, verify

__all__ = [
    "CFA",
    "RawFrame",
    "develop",
    "DevelopResult",
    "SensorBuffer",
    "SensorSpec",
    "ModelPair",
    "list_pairs",
    "verify",
    "Fingerprint",
    "DeviceMatch",
    "enroll",
    "match",
    "VerifyReport",
    "Verdict",
    "save_heatmap",
    "Signer",
    "SigningAlg",
    "CaptureInfo",
    "ModelRef",
    "ProvenanceReport",
    "ProvenanceState",
    "TrustState",
    "ManifestStep",
    "build_manifest",
    "sign_image",
    "add_time_stamp",
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
    "RepositoryError",
    "__version__",
]
