"""The rawproof exception tree.

One base class, :class:`RawproofError`; each subclass is named for what the caller
does next. Native kernels raise ``ValueError``/``TypeError``; the SDK wraps them at its
boundary with ``raise ... from e`` so the original message is kept.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "RawproofError",
    "RawFormatError",
    "ModelError",
    "ProviderError",
    "SigningError",
    "VerificationError",
    "ImageFormatError",
    "FingerprintError",
    "ServiceLimitError",
    "RepositoryError",
]


class RawproofError(Exception):
    """Base class of every error rawproof raises on purpose."""


class RawFormatError(RawproofError, ValueError):
    """The RAW input (file or sensor buffer) is truncated, unsupported or inconsistent.

    Fix the input or its declared metadata (size, format, CFA, levels).
    """

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        super().__init__(f"{path}: {message}" if path is not None else message)
        self.path = None if path is None else str(path)


class ModelError(RawproofError):
    """A model file is missing, corrupt, or breaks the ONNX contract (name, kind, shape).

    Reinstall or re-export the model; pass ``model=`` explicitly.
    """

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        super().__init__(f"{path}: {message}" if path is not None else message)
        self.path = None if path is None else str(path)


class ProviderError(ModelError):
    """An execution provider was asked for that onnxruntime does not offer here."""


class SigningError(RawproofError):
    """Signing failed: bad key/certificate, unsupported algorithm, or the signer callback failed."""


class VerificationError(RawproofError):
    """verify() could not analyse the input at all (not a verdict: a failed check is a report)."""


class ImageFormatError(VerificationError, ValueError):
    """The image to verify is not a decodable JPEG/PNG/WebP, or its mode/size is unsupported."""


class FingerprintError(RawproofError):
    """A sensor fingerprint file is corrupt, of an unknown version, or does not match the image size."""


class ServiceLimitError(VerificationError):
    """The verify service (``rawproof serve``) refused or stopped an upload at one of its bounds.

    ``limit`` names it: ``"bytes"`` (upload too large), ``"queue"`` (too many files
    waiting), ``"time"`` (analysis past the time limit), ``"memory"`` (past the worker's
    memory limit), ``"crash"`` (the worker process died), ``"closed"`` (shutting down).
    Retry later for ``"queue"``/``"closed"``; otherwise the file is unverifiable on this server.
    """

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class RepositoryError(RawproofError):
    """A manifest repository could not be reached or refused a request.

    Attributes:
        status: The HTTP status the repository answered with, or ``None`` when it was not reached
            (a publisher queues the manifest and retries only then, on 429 and on 5xx).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
