"""C2PA provenance at capture: sign a developed image, check a signed one.

The signing step of the data path (see ``DESIGN.md``)::

    capture = CaptureInfo(camera_make=..., raw_sha256=mosaic_sha256(frame.mosaic), ...)
    with Signer.from_files("device_chain.pem", "device_key.pem", alg="es256") as signer:
        signed_jpeg = sign_image(jpeg_bytes, "image/jpeg", capture, signer)

    report = check_provenance(signed_jpeg, trust_anchors="root.pem")
    report.state  # ProvenanceState.VALID

c2pa-python (c2pa-rs underneath) writes and validates the manifests; rawproof decides
only what goes into the manifest and how c2pa's verdict maps onto
:class:`ProvenanceState`. Settings (thumbnails, trust anchors) travel in a per-call
``c2pa.Context``, so there is no process-global state and no lock: concurrent calls
with different trust anchors do not interfere.
"""

from __future__ import annotations

import enum
import hashlib
from datetime import datetime
import io
import json
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

import c2pa
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from rawproof._version import __version__
from rawproof.errors import ImageFormatError, SigningError, VerificationError
from rawproof.imageio import read_image_bytes
from rawproof.jumbf import JumbfError, check_boxes, check_manifest_boxes

__all__ = [
    "SigningAlg",
    "Signer",
    "ModelRef",
    "CaptureInfo",
    "ProvenanceState",
    "ProvenanceReport",
    "build_manifest",
    "sign_image",
    "check_provenance",
    "check_manifest_store",
    "mosaic_sha256",
    "bench_signing",
    "CAPTURE_ASSERTION_LABEL",
    "SOFT_BINDING_LABEL",
    "COMPUTATIONAL_CAPTURE",
]

CAPTURE_ASSERTION_LABEL = "org.rawproof.capture"
"""Label of the custom assertion holding :class:`CaptureInfo`."""

SOFT_BINDING_LABEL = "c2pa.soft-binding"
"""Label of the C2PA soft-binding assertion (:mod:`rawproof.softbinding`)."""

COMPUTATIONAL_CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/computationalCapture"
"""IPTC digital source type of an image a device computed from its own sensor data."""

_MIME_TYPES = ("image/jpeg", "image/png")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class SigningAlg(str, enum.Enum):
    """C2PA signature algorithms; the value is the name c2pa uses."""

    ES256 = "es256"
    """ECDSA on P-256 with SHA-256."""
    ES384 = "es384"
    """ECDSA on P-384 with SHA-384."""
    ES512 = "es512"
    """ECDSA on P-521 with SHA-512."""
    PS256 = "ps256"
    """RSASSA-PSS with SHA-256 (RSA key of 2048 bits or more)."""
    PS384 = "ps384"
    """RSASSA-PSS with SHA-384."""
    PS512 = "ps512"
    """RSASSA-PSS with SHA-512."""
    ED25519 = "ed25519"
    """EdDSA on Curve25519."""

    @classmethod
    def parse(cls, value: str | SigningAlg) -> SigningAlg:
        """Accept a member or its name in any case; raise :class:`SigningError` otherwise."""
        if isinstance(value, SigningAlg):
            return value
        # str() of a str-enum member (e.g. keygen.KeyAlg) is "KeyAlg.ES256", not its value.
        name = value.value if isinstance(value, enum.Enum) else value
        try:
            return cls(str(name).lower())
        except ValueError:
            raise SigningError(
                f"unsupported signing algorithm {value!r}; expected one of {[a.value for a in cls]}"
            ) from None

    def _key_matches(self, public_key: object) -> bool:
        if self in (SigningAlg.ES256, SigningAlg.ES384, SigningAlg.ES512):
            curve = {SigningAlg.ES256: ec.SECP256R1, SigningAlg.ES384: ec.SECP384R1, SigningAlg.ES512: ec.SECP521R1}
            return isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, curve[self])
        if self is SigningAlg.ED25519:
            return isinstance(public_key, ed25519.Ed25519PublicKey)
        return isinstance(public_key, rsa.RSAPublicKey)


PemSource = str | bytes | os.PathLike[str]
"""PEM text (``bytes``, or ``str`` containing ``-----BEGIN``) or the path of a PEM file."""


def _read_pem(source: PemSource) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and "-----BEGIN" in source:
        return source.encode("ascii")
    return Path(source).read_bytes()


def _load_chain(source: PemSource, alg: SigningAlg) -> tuple[bytes, list[x509.Certificate]]:
    try:
        pem = _read_pem(source)
        certs = x509.load_pem_x509_certificates(pem)
    except (OSError, ValueError) as e:
        raise SigningError(f"cannot load the certificate chain: {e}") from e
    if not alg._key_matches(certs[0].public_key()):
        raise SigningError(
            f"the signing certificate's key ({type(certs[0].public_key()).__name__}) does not fit {alg.value}"
        )
    return pem, certs


class Signer:
    """A C2PA signer: the device certificate chain plus a way to sign with its key.

    Build it with :meth:`from_files` (key in a PEM file) or :meth:`from_callback`
    (key in an HSM/TEE). It is a context manager; :meth:`close` is idempotent. One
    signer signs any number of images (:func:`sign_image`), also from several threads
    at once (c2pa guards the native handle).

    Attributes:
        alg: The signature algorithm.
        subject: RFC 4514 subject of the signing (device) certificate.
    """

    def __init__(
        self,
        handle: c2pa.Signer,
        alg: SigningAlg,
        leaf: x509.Certificate,
        callback_errors: threading.local | None = None,
    ) -> None:
        """Use :meth:`from_files` or :meth:`from_callback`; this wraps an open c2pa signer."""
        self._handle: c2pa.Signer | None = handle
        self.alg = alg
        self.subject = leaf.subject.rfc4514_string()
        self._callback_errors = callback_errors

    @classmethod
    def from_files(
        cls,
        cert_chain_pem: PemSource,
        private_key_pem: PemSource,
        alg: str | SigningAlg = SigningAlg.ES256,
        tsa_url: str | None = None,
    ) -> Signer:
        """Signer whose private key is a PEM file (or PEM text).

        Args:
            cert_chain_pem: Device certificate first, then any intermediates; the root
                may be left out (validators find it among their trust anchors).
            private_key_pem: Unencrypted PKCS#8 private key matching the device certificate.
            alg: Signature algorithm (:class:`SigningAlg` or its name).
            tsa_url: RFC 3161 time-stamp authority; each signature then asks it for a
                time stamp over the network. ``None``: no time stamp.

        Raises:
            SigningError: Unknown algorithm, unreadable certificate or key, key that does
                not fit ``alg`` or does not belong to the certificate.
        """
        sig_alg = SigningAlg.parse(alg)
        chain_pem, certs = _load_chain(cert_chain_pem, sig_alg)
        try:
            key_pem = _read_pem(private_key_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (OSError, ValueError, TypeError) as e:
            raise SigningError(f"cannot load the private key: {e}") from e
        # c2pa only notices a foreign key when the first signature fails to verify.
        if key.public_key() != certs[0].public_key():
            raise SigningError("the private key does not belong to the signing certificate")
        try:
            handle = c2pa.Signer.from_info(c2pa.C2paSignerInfo(sig_alg.value, chain_pem, key_pem, tsa_url))
        except (c2pa.C2paError, ValueError, TypeError) as e:
            raise SigningError(f"c2pa rejected the signer: {e}") from e
        return cls(handle, sig_alg, certs[0])

    @classmethod
    def from_callback(
        cls,
        fn: Callable[[bytes], bytes],
        cert_chain_pem: PemSource,
        alg: str | SigningAlg = SigningAlg.ES256,
        tsa_url: str | None = None,
    ) -> Signer:
        """Signer whose key never leaves an HSM/TEE: ``fn`` signs on its behalf.

        Args:
            fn: Called once per image with the bytes to sign (the COSE ``Sig_structure``,
                a few kB; the hash is the callee's job) and returns the signature:
                ES*: DER (as ``cryptography`` writes it) or raw ``r || s``; PS*: RSASSA-PSS
                with MGF1 of the same hash and salt length = hash length; Ed25519: the
                64-byte signature. An exception in ``fn`` becomes a :class:`SigningError`
                from :func:`sign_image` chained to it.
            cert_chain_pem: Device certificate chain, as in :meth:`from_files`.
            alg: Signature algorithm the callee uses.
            tsa_url: RFC 3161 time-stamp authority URL, or ``None``.

        Raises:
            SigningError: Unknown algorithm, unreadable chain, or a certificate key that
                does not fit ``alg``.
        """
        sig_alg = SigningAlg.parse(alg)
        chain_pem, certs = _load_chain(cert_chain_pem, sig_alg)
        if not callable(fn):
            raise SigningError(f"the signing callback must be callable, got {type(fn).__name__}")
        errors = threading.local()

        def call(data: bytes) -> bytes:
            # c2pa swallows callback exceptions into a generic COSE error; keep the
            # original so sign_image can chain it.
            try:
                sig = fn(data)
                if not isinstance(sig, (bytes, bytearray)) or not sig:
                    raise TypeError(f"signing callback returned {type(sig).__name__}, expected non-empty bytes")
                return bytes(sig)
            except BaseException as e:
                errors.value = e
                raise

        try:
            c2pa_alg = getattr(c2pa.C2paSigningAlg, sig_alg.name)
            handle = c2pa.Signer.from_callback(call, c2pa_alg, chain_pem.decode("ascii"), tsa_url)
        except (c2pa.C2paError, ValueError, TypeError) as e:
            raise SigningError(f"c2pa rejected the signer: {e}") from e
        return cls(handle, sig_alg, certs[0], errors)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._handle is None

    def close(self) -> None:
        """Release the native signer. Idempotent; never raises."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()

    def __enter__(self) -> Signer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self.close()

    def _take_callback_error(self) -> BaseException | None:
        if self._callback_errors is None:
            return None
        err = getattr(self._callback_errors, "value", None)
        self._callback_errors.value = None
        return err


@dataclass(frozen=True)
class ModelRef:
    """A model file named in the manifest.

    Attributes:
        name: Model name from its metadata (e.g. ``"nip-unet-d5"``).
        sha256: SHA-256 of the ``.onnx`` file, 64 lowercase hex digits.
    """

    name: str
    sha256: str

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("model name must not be empty")
        if not _HEX64.fullmatch(self.sha256):
            raise ValueError(f"model sha256 must be 64 lowercase hex digits, got {self.sha256!r}")


@dataclass(frozen=True)
class CaptureInfo:
    """What the camera asserts about one capture; becomes the ``org.rawproof.capture`` assertion.

    Attributes:
        camera_make: Camera manufacturer, e.g. ``"Canon"``.
        camera_model: Camera model, e.g. ``"EOS 550D"``.
        device_id: Identifier of the individual device (serial number).
        raw_sha256: SHA-256 of the RAW sensor data, 64 lowercase hex digits (see
            :func:`mosaic_sha256`).
        nip: The neural imaging pipeline that developed the image.
        capture_time: Time of capture, ISO 8601 with UTC offset, e.g. ``"2025-01-31T12:00:00+00:00"``.
        develop: Develop parameters (JSON-serialisable; e.g. JPEG quality, tile size).
            Stored as a read-only mapping.
        fan: The forensic analysis network the NIP was trained with, if any.
        sdk_version: rawproof version that developed and signed the image.
    """

    camera_make: str
    camera_model: str
    device_id: str
    raw_sha256: str
    nip: ModelRef
    capture_time: str
    develop: Mapping[str, Any] = field(default_factory=dict)
    fan: ModelRef | None = None
    sdk_version: str = __version__

    def __post_init__(self) -> None:
        if not _HEX64.fullmatch(self.raw_sha256):
            raise ValueError(f"raw_sha256 must be 64 lowercase hex digits, got {self.raw_sha256!r}")
        try:
            if datetime.fromisoformat(self.capture_time).tzinfo is None:
                raise ValueError("no UTC offset")
        except ValueError as e:
            raise ValueError(f"capture_time must be ISO 8601 with a UTC offset, got {self.capture_time!r}: {e}") from e
        try:
            json.dumps(dict(self.develop), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"develop parameters must be JSON-serialisable: {e}") from e
        object.__setattr__(self, "develop", MappingProxyType(dict(self.develop)))

    def to_dict(self) -> dict[str, Any]:
        """The assertion payload (JSON-compatible; ``fan`` is ``None`` when absent)."""
        return {
            "camera": {"make": self.camera_make, "model": self.camera_model},
            "device_id": self.device_id,
            "raw_sha256": self.raw_sha256,
            "nip": {"name": self.nip.name, "sha256": self.nip.sha256},
            "fan": None if self.fan is None else {"name": self.fan.name, "sha256": self.fan.sha256},
            "develop": dict(self.develop),
            "sdk_version": self.sdk_version,
            "capture_time": self.capture_time,
        }


def mosaic_sha256(mosaic: np.ndarray) -> str:
    """SHA-256 of a Bayer mosaic, the ``raw_sha256`` of :class:`CaptureInfo`.

    Args:
        mosaic: uint16, H x W, DN including black (``RawFrame.mosaic``). Hashed as
            C-order little-endian uint16 bytes, so the digest does not depend on the
            host's byte order or the array's strides.

    Returns:
        64 lowercase hex digits.

    Raises:
        ValueError: ``mosaic`` is not a 2-D uint16 array (either byte order).
    """
    if mosaic.dtype.kind != "u" or mosaic.dtype.itemsize != 2 or mosaic.ndim != 2:
        raise ValueError(f"mosaic must be a 2-D uint16 array, got {mosaic.dtype} with shape {mosaic.shape}")
    return hashlib.sha256(np.ascontiguousarray(mosaic, dtype="<u2").tobytes()).hexdigest()


def build_manifest(capture: CaptureInfo, soft_binding: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The C2PA manifest definition for one capture (the only place it is built).

    It holds a ``c2pa.actions.v2`` assertion with one ``c2pa.created`` action of
    digital source type computationalCapture, and the ``org.rawproof.capture``
    assertion (:meth:`CaptureInfo.to_dict`). ``claim_generator_info`` names rawproof and
    its version. c2pa adds the hard binding (``c2pa.hash.data``) when signing.
    ``soft_binding``: the data of a ``c2pa.soft-binding`` assertion
    (:func:`rawproof.softbinding.soft_binding_assertion`), added when given.
    """
    agent = {"name": "rawproof", "version": capture.sdk_version}
    manifest = {
        "claim_generator_info": [agent],
        "title": f"{capture.camera_make} {capture.camera_model} capture".strip(),
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": COMPUTATIONAL_CAPTURE,
                            "softwareAgent": agent,
                            "when": capture.capture_time,
                        }
                    ]
                },
            },
            {"label": CAPTURE_ASSERTION_LABEL, "data": capture.to_dict()},
        ],
    }
    if soft_binding is not None:
        manifest["assertions"].append({"label": SOFT_BINDING_LABEL, "data": dict(soft_binding)})
    return manifest


def sign_image(
    image_bytes: bytes,
    mime: str,
    capture: CaptureInfo,
    signer: Signer,
    *,
    thumbnail: bool = False,
    soft_binding: Mapping[str, Any] | None = None,
) -> bytes:
    """Embed a signed C2PA manifest for ``capture`` into an encoded image.

    Args:
        image_bytes: Encoded JPEG or PNG (e.g. from ``develop``); not modified.
        mime: ``"image/jpeg"`` or ``"image/png"``, the format of ``image_bytes``.
        capture: What the manifest asserts (:func:`build_manifest`).
        signer: An open :class:`Signer`.
        thumbnail: Also embed a c2pa-made thumbnail (1024 px long edge). Off by default:
            it costs ~120 ms and ~0.4 MB on a 12 MP JPEG (see ``docs/provenance.md``).
        soft_binding: ``c2pa.soft-binding`` assertion data computed on these pixels
            (:func:`rawproof.softbinding.soft_binding_assertion`); it goes among the
            claim's ``created_assertions``.

    Returns:
        The signed image, same format, pixels untouched.

    Raises:
        SigningError: Unsupported ``mime``, a closed signer, an image c2pa cannot
            parse, an expired certificate, or a failed signature (a callback error is
            chained as ``__cause__``).
    """
    if mime not in _MIME_TYPES:
        raise SigningError(f"cannot sign {mime!r}; supported: {list(_MIME_TYPES)}")
    handle = signer._handle
    if handle is None:
        raise SigningError("the signer is closed")
    # The soft binding is computed by this signer from the pixels, so it is a created assertion.
    settings = {"builder": {"thumbnail": {"enabled": thumbnail}, "created_assertion_labels": [SOFT_BINDING_LABEL]}}
    out = io.BytesIO()
    signer._take_callback_error()
    try:
        with c2pa.Context.from_dict(settings) as ctx, c2pa.Builder(build_manifest(capture, soft_binding), ctx) as builder:
            builder.sign(handle, mime, io.BytesIO(image_bytes), out)
    except c2pa.C2paError as e:
        cause = signer._take_callback_error()
        if cause is not None:
            raise SigningError(f"the signing callback failed: {cause!r}") from cause
        raise SigningError(f"c2pa could not sign the image: {e}") from e
    return out.getvalue()


class ProvenanceState(enum.Enum):
    """Verdict of :func:`check_provenance`, as c2pa's validation gives it."""

    VALID = "valid"
    """Manifest intact, content matches its hash, signature verifies, and the signer
    chains to a trust anchor (c2pa state ``Trusted``)."""
    UNTRUSTED_SIGNER = "untrusted_signer"
    """Manifest intact and content matches, but the signing certificate does not chain
    to any trust anchor given (c2pa state ``Valid`` with ``signingCredential.untrusted``)."""
    INVALID = "invalid"
    """A manifest is present but something failed: content hash mismatch
    (``assertion.dataHash.mismatch``), bad signature, expired or revoked certificate,
    or a manifest c2pa cannot decode (see ``ProvenanceReport.error``)."""
    NO_MANIFEST = "no_manifest"
    """The image carries no C2PA manifest (never signed, or stripped by re-encoding)."""


@dataclass(frozen=True)
class ProvenanceReport:
    """Result of :func:`check_provenance`.

    Attributes:
        state: The verdict.
        status_codes: Failure codes of the active manifest, as c2pa reports them
            (e.g. ``assertion.dataHash.mismatch``, ``signingCredential.untrusted``,
            ``signingCredential.expired``); empty when nothing failed.
        informational_codes: c2pa's informational codes (e.g. ``signingCredential.ocsp.skipped``).
        success_codes: c2pa's success codes (e.g. ``claimSignature.validated``).
        c2pa_state: c2pa's own state string (``Trusted``/``Valid``/``Invalid``), or
            ``None`` when no manifest could be read.
        active_manifest: Label (URN) of the active manifest.
        signer_subject: Subject of the signing certificate, attributes in certificate
            order, e.g. ``"C=US, O=Acme, CN=Camera 42"``.
        signer_issuer: Issuer of the signing certificate, same form.
        signing_time: Time-stamp authority time (ISO 8601) when the signature carries
            an RFC 3161 time stamp; ``None`` otherwise.
        capture: The ``org.rawproof.capture`` assertion as a dict (see
            :meth:`CaptureInfo.to_dict`), or ``None`` if the manifest has none.
        error: c2pa's message when a manifest is present but cannot be decoded
            (state ``INVALID``, no status codes); ``None`` otherwise.
        soft_binding: The ``c2pa.soft-binding`` assertion as a dict, or ``None``.
    """

    state: ProvenanceState
    status_codes: tuple[str, ...] = ()
    informational_codes: tuple[str, ...] = ()
    success_codes: tuple[str, ...] = ()
    c2pa_state: str | None = None
    active_manifest: str | None = None
    signer_subject: str | None = None
    signer_issuer: str | None = None
    signing_time: str | None = None
    capture: Mapping[str, Any] | None = None
    error: str | None = None
    soft_binding: Mapping[str, Any] | None = None


# c2pa's validation_state: Trusted = Valid + chains to an anchor; Valid = intact but untrusted.
_STATES = {
    "Trusted": ProvenanceState.VALID,
    "Valid": ProvenanceState.UNTRUSTED_SIGNER,
    "Invalid": ProvenanceState.INVALID,
}


def _sniff_mime(data: bytes) -> str:
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ImageFormatError(f"not a JPEG, PNG or WebP image (starts with {data[:12]!r})")


def _image_decodes(data: bytes) -> bool:
    """Whether Pillow decodes every pixel; tells a broken image from a broken manifest.

    A header declaring more than :data:`rawproof.imageio.MAX_PIXELS` counts as readable
    without decoding: decoding it is the allocation a decompression bomb is after
    (``verify()`` refuses such an image when it decodes it).
    """
    from PIL import Image, UnidentifiedImageError

    from rawproof.imageio import MAX_PIXELS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height <= MAX_PIXELS:
                    im.load()
            return True
        except Image.DecompressionBombError:
            return True
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError):
            return False


def _dn(name: Mapping[str, str] | None) -> str | None:
    if not name:
        return None
    return ", ".join(f"{k}={v}" for k, v in name.items())


def check_provenance(
    image: bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes],
    *,
    trust_anchors: PemSource | None = None,
) -> ProvenanceReport:
    """Validate the C2PA manifest of an image with c2pa's own validator.

    Validation is offline: no remote manifests, no OCSP. A JPEG/PNG/WebP without a
    manifest is an expected case (``NO_MANIFEST``), not an error.

    Args:
        image: Encoded image as bytes, a path, or a binary file object (read to the end).
        trust_anchors: Root certificates (PEM text or path) the signer must chain to;
            they replace c2pa's built-in anchors (c2pa setting ``trust.trust_anchors``)
            for this call only. ``None``: c2pa's default trust configuration.

    Returns:
        The report; its ``state`` is the verdict.

    Raises:
        ImageFormatError: ``image`` is not a JPEG/PNG/WebP, or it is so damaged that
            neither c2pa nor Pillow can parse it.
        VerificationError: Unreadable ``trust_anchors``, or a c2pa state this version
            does not know.
        OSError: ``image`` is a path that cannot be read.
    """
    data = read_image_bytes(image)
    return _validate(data, _sniff_mime(data), trust_anchors)


def check_manifest_store(store: bytes, *, trust_anchors: PemSource | None = None) -> ProvenanceReport:
    """Validate a detached C2PA manifest store (``application/c2pa``, e.g. from a repository).

    Without its asset, c2pa cannot check the hard binding: the report's ``status_codes``
    then hold ``assertion.dataHash.mismatch`` however intact the store is. The signature,
    the certificate chain and the assertion hashes are checked as for an embedded manifest
    (``claimSignature.validated`` and ``signingCredential.trusted`` among ``success_codes``).

    Raises:
        VerificationError: unreadable ``trust_anchors``, or a c2pa state this version does not know.
    """
    return _validate(bytes(store), "application/c2pa", trust_anchors)


def _validate(data: bytes, mime: str, trust_anchors: PemSource | None) -> ProvenanceReport:
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchors is not None:
        try:
            anchors = _read_pem(trust_anchors)
            x509.load_pem_x509_certificates(anchors)
        except (OSError, ValueError) as e:
            raise VerificationError(f"cannot load the trust anchors: {e}") from e
        settings["trust"] = {"trust_anchors": anchors.decode("ascii")}
    try:
        if mime == "application/c2pa":
            check_boxes(data)
        else:
            check_manifest_boxes(data, mime)
        with c2pa.Context.from_dict(settings) as ctx, c2pa.Reader(mime, io.BytesIO(data), context=ctx) as reader:
            store = json.loads(reader.json())
            cr = json.loads(reader.crjson())
    except c2pa.C2paError.ManifestNotFound:
        return ProvenanceReport(state=ProvenanceState.NO_MANIFEST)
    except (c2pa.C2paError, JumbfError) as e:
        if mime != "application/c2pa" and not _image_decodes(data):
            raise ImageFormatError(f"cannot parse the {mime} image: {e}") from e
        return ProvenanceReport(state=ProvenanceState.INVALID, error=str(e))

    c2pa_state = store.get("validation_state")
    if c2pa_state not in _STATES:
        raise VerificationError(f"c2pa returned an unknown validation state {c2pa_state!r}")
    label = store.get("active_manifest")
    manifest = store.get("manifests", {}).get(label, {})
    results = (store.get("validation_results") or {}).get("activeManifest") or {}

    def codes(kind: str) -> tuple[str, ...]:
        return tuple(entry["code"] for entry in results.get(kind, []))

    cert_info: Mapping[str, Any] = {}
    for m in cr.get("manifests", []):
        if m.get("label") == label:
            cert_info = (m.get("signature") or {}).get("certificateInfo") or {}
    assertions = {a.get("label"): a.get("data") for a in manifest.get("assertions", [])}
    capture = assertions.get(CAPTURE_ASSERTION_LABEL)
    return ProvenanceReport(
        state=_STATES[c2pa_state],
        status_codes=codes("failure"),
        informational_codes=codes("informational"),
        success_codes=codes("success"),
        c2pa_state=c2pa_state,
        active_manifest=label,
        signer_subject=_dn(cert_info.get("subject")),
        signer_issuer=_dn(cert_info.get("issuer")),
        signing_time=(manifest.get("signature_info") or {}).get("time"),
        capture=capture,
        soft_binding=assertions.get(SOFT_BINDING_LABEL),
    )


def bench_signing(width: int = 4000, height: int = 3000, repeats: int = 5) -> list[dict[str, Any]]:
    """Time signing and validation of one ``width`` x ``height`` JPEG (q90, ES256 test PKI).

    Three figures, each the best of ``repeats`` wall-clock runs in one thread:
    ``sign_jpeg_no_thumbnail`` (target 30 ms), ``sign_jpeg_thumbnail`` (no target) and
    ``check_provenance_jpeg`` (target 50 ms). The image is a bilinear upscale of
    noise, so its size (~3 MB at 12 MP) resembles a photo's.

    Returns:
        One dict per figure: ``name``, ``best_ms``, ``median_ms``, ``target_ms``
        (``None`` when there is none), ``repeats``, ``image`` (``"WxH jpeg N bytes"``).
    """
    import tempfile

    from PIL import Image

    from rawproof.keygen import generate_test_pki

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (max(height // 10, 1), max(width // 10, 1), 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.BILINEAR).save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    capture = CaptureInfo(
        camera_make="Bench",
        camera_model="Synthetic",
        device_id="bench-0",
        raw_sha256=hashlib.sha256(jpeg).hexdigest(),
        nip=ModelRef("bench-nip", hashlib.sha256(b"nip").hexdigest()),
        capture_time="2025-01-01T00:00:00+00:00",
    )

    def timed(fn: Callable[[], object]) -> list[float]:
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
        return out

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        pki = generate_test_pki(tmp, alg="es256")
        with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
            runs = {
                "sign_jpeg_no_thumbnail": (timed(lambda: sign_image(jpeg, "image/jpeg", capture, signer)), 30.0),
                "sign_jpeg_thumbnail": (
                    timed(lambda: sign_image(jpeg, "image/jpeg", capture, signer, thumbnail=True)),
                    None,
                ),
            }
            signed = sign_image(jpeg, "image/jpeg", capture, signer)
        anchors = pki.root_cert.read_bytes()
        runs["check_provenance_jpeg"] = (timed(lambda: check_provenance(signed, trust_anchors=anchors)), 50.0)
    for name, (ms, target) in runs.items():
        results.append(
            {
                "name": name,
                "best_ms": min(ms),
                "median_ms": float(np.median(ms)),
                "target_ms": target,
                "repeats": repeats,
                "image": f"{width}x{height} jpeg {len(jpeg)} bytes",
            }
        )
    return results
