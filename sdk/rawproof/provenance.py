"""C2PA provenance at capture: sign a developed image, check a signed one.

The signing step of the data path (see ``DESIGN.md``)::

    capture = CaptureInfo(camera_make=..., raw_sha256=mosaic_sha256(frame.mosaic), ...)
    with Signer.from_files("device_chain.pem", "device_key.pem", alg="es256") as signer:
        signed_jpeg = sign_image(jpeg_bytes, "image/jpeg", capture, signer)

    report = check_provenance(signed_jpeg, device_anchors="root.pem")
    report.state            # ProvenanceState.VALID
    report.chain[0].trust   # TrustState.DEVICE

c2pa-python (c2pa-rs underneath) writes and validates the manifests; rawproof decides
what goes into the manifest (all of it signer-attributed: ``created_assertions``), which
anchors a signer is believed under (:class:`TrustState`), and how c2pa's results map
onto :class:`ProvenanceState` and the history (:class:`ManifestStep`). ``verify()``
turns the history into a verdict. Settings (thumbnails, trust anchors) travel in a per-call
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
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from rawproof._version import __version__
from rawproof.errors import ImageFormatError, SigningError, VerificationError
from rawproof.imageio import check_jpeg_structure, read_image_bytes
from rawproof.jumbf import JumbfError, check_boxes, check_manifest_boxes
from rawproof.untrusted import read_regular

__all__ = [
    "SigningAlg",
    "Signer",
    "ModelRef",
    "CaptureInfo",
    "TrustState",
    "ManifestStep",
    "ProvenanceState",
    "ProvenanceReport",
    "build_manifest",
    "signer_assertion_labels",
    "sign_image",
    "add_time_stamp",
    "check_provenance",
    "check_manifest_store",
    "mosaic_sha256",
    "bench_signing",
    "CAPTURE_ASSERTION_LABEL",
    "METADATA_ASSERTION_LABEL",
    "SIGNER_ASSERTION_LABELS",
    "DIGITAL_CAPTURE",
    "SOFT_BINDING_LABEL",
    "COMPUTATIONAL_CAPTURE",
    "CAPTURE_SOURCE_TYPES",
    "SYNTHETIC_SOURCE_TYPES",
]

CAPTURE_ASSERTION_LABEL = "org.rawproof.capture"
"""Label of the custom assertion holding :class:`CaptureInfo`."""

SOFT_BINDING_LABEL = "c2pa.soft-binding"
"""Label of the C2PA soft-binding assertion (:mod:`rawproof.softbinding`)."""

METADATA_ASSERTION_LABEL = "c2pa.metadata"
"""Label of the C2PA metadata assertion (EXIF/TIFF fields as JSON-LD: Make, Model, DateTimeOriginal)."""

SIGNER_ASSERTION_LABELS = ("c2pa.actions", CAPTURE_ASSERTION_LABEL, METADATA_ASSERTION_LABEL, SOFT_BINDING_LABEL)
"""Assertions the device signature stands behind: they go into the claim's ``created_assertions``
(C2PA 2.x §10.2.2; c2pa builder setting ``created_assertion_labels``; labels without a
``.vN`` version suffix). Every assertion of :func:`build_manifest` is added to these, so an
assertion added there later (such as :data:`SOFT_BINDING_LABEL`) is signer-attributed too."""

_IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
DIGITAL_CAPTURE = _IPTC + "digitalCapture"
"""IPTC digital source type rawproof declares: one exposure of a real scene by a digital
camera, developed by the device (docs/provenance.md says why not computationalCapture)."""
COMPUTATIONAL_CAPTURE = _IPTC + "computationalCapture"
"""IPTC: several frames of a real scene merged on the device (HDR, night modes)."""
CAPTURE_SOURCE_TYPES = frozenset({DIGITAL_CAPTURE, COMPUTATIONAL_CAPTURE})
"""Source types that make a ``c2pa.created`` action a capture of a real scene."""
SYNTHETIC_SOURCE_TYPES = frozenset(_IPTC + t for t in (
    "trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia",
    "compositeSynthetic", "composite", "compositeCapture", "trainedAlgorithmicData",
))
"""Source types of AI-generated, algorithmic or composite content: never an authentic capture."""

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


MAX_PEM_BYTES = 1 << 20
"""Largest PEM file read (bytes): certificate chains and trust lists are a few kB."""


def _read_pem(source: PemSource) -> bytes:
    """PEM bytes from bytes, PEM text, or a regular file of at most :data:`MAX_PEM_BYTES` (OSError otherwise)."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and "-----BEGIN" in source:
        return source.encode("utf-8")
    return read_regular(Path(source), MAX_PEM_BYTES)


def _pem_certificates(pem: bytes) -> tuple[bytes, list[x509.Certificate]]:
    """The certificates in ``pem`` and their re-encoded PEM (ASCII only).

    c2pa takes PEM as text; re-encoding drops whatever else the file held (comments in
    UTF-8, explanatory text between blocks), which a legal PEM file may contain.

    Raises:
        ValueError: no certificate, or a block that does not parse.
        UnsupportedAlgorithm: a certificate whose key algorithm or curve ``cryptography``
            does not know (the caller maps it to its own error).
    """
    certs = x509.load_pem_x509_certificates(pem)
    for c in certs:
        c.public_key()  # raises UnsupportedAlgorithm for an unknown key algorithm or curve
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs), certs


def _load_chain(source: PemSource, alg: SigningAlg) -> tuple[bytes, list[x509.Certificate]]:
    try:
        pem, certs = _pem_certificates(_read_pem(source))
    except (OSError, ValueError, UnsupportedAlgorithm) as e:
        raise SigningError(f"cannot load the certificate chain: {type(e).__name__}: {e}") from e
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
        device_id: The certificate's identity of the device: its subject ``serialNumber``
            (as ``rawproof keygen --device-id`` and vendor device certificates carry it),
            else :attr:`subject`. ``develop()`` records it as the capture's ``device_id``.
        tsa_url: The RFC 3161 time-stamp authority every signature asks, or ``None``.
    """

    def __init__(
        self,
        handle: c2pa.Signer,
        alg: SigningAlg,
        leaf: x509.Certificate,
        callback_errors: threading.local | None = None,
        tsa_url: str | None = None,
    ) -> None:
        """Use :meth:`from_files` or :meth:`from_callback`; this wraps an open c2pa signer."""
        self._handle: c2pa.Signer | None = handle
        self.alg = alg
        self.subject = leaf.subject.rfc4514_string()
        serials = leaf.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)
        self.device_id = str(serials[0].value) if serials else self.subject
        self.tsa_url = tsa_url
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
            tsa_url: RFC 3161 time-stamp authority (``http://`` or ``https://`` URL);
                each signature then asks it for a time stamp over the network, which
                keeps the signature valid after the device certificate expires.
                ``None``: no time stamp.

        Raises:
            SigningError: Unknown algorithm, unreadable certificate or key, key that does
                not fit ``alg`` or does not belong to the certificate.
        """
        sig_alg = SigningAlg.parse(alg)
        chain_pem, certs = _load_chain(cert_chain_pem, sig_alg)
        try:
            key = serialization.load_pem_private_key(_read_pem(private_key_pem), password=None)
            # Re-encoded for c2pa, which reads PEM as text (see _pem_certificates).
            key_pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise SigningError(f"cannot load the private key: {type(e).__name__}: {e}") from e
        # c2pa only notices a foreign key when the first signature fails to verify.
        if key.public_key() != certs[0].public_key():
            raise SigningError("the private key does not belong to the signing certificate")
        try:
            handle = c2pa.Signer.from_info(c2pa.C2paSignerInfo(sig_alg.value, chain_pem, key_pem, tsa_url))
        except (c2pa.C2paError, ValueError, TypeError) as e:
            raise SigningError(f"c2pa rejected the signer: {e}") from e
        return cls(handle, sig_alg, certs[0], tsa_url=tsa_url)

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
        return cls(handle, sig_alg, certs[0], errors, tsa_url=tsa_url)

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
        device_id: Identifier of the individual device (serial number). ``develop()``
            defaults it to the signing certificate's identity (:attr:`Signer.device_id`).
        raw_sha256: SHA-256 of the RAW sensor data, 64 lowercase hex digits (see
            :func:`mosaic_sha256`).
        nip: The neural imaging pipeline that developed the image.
        capture_time: When the sensor was exposed, from the RAW file's own metadata,
            ISO 8601: with a UTC offset when the file records one, else the camera's
            wall clock without an offset (``"2022-01-20T08:15:52"``: the zone is
            unknown). ``None`` when the RAW records no time: it is never the develop time.
        develop: Develop parameters (JSON-serialisable; the encoding as it was: format,
            JPEG quality and chroma subsampling, or none for PNG; tile size).
            Stored as a read-only mapping.
        fan: The forensic analysis network the NIP was trained with, if any.
        develop_time: When the device developed and signed the image, ISO 8601 with a
            UTC offset (the device clock), or ``None``.
        sdk_version: rawproof version that developed and signed the image.
    """

    camera_make: str
    camera_model: str
    device_id: str
    raw_sha256: str
    nip: ModelRef
    capture_time: str | None
    develop: Mapping[str, Any] = field(default_factory=dict)
    fan: ModelRef | None = None
    develop_time: str | None = None
    sdk_version: str = __version__

    def __post_init__(self) -> None:
        if not _HEX64.fullmatch(self.raw_sha256):
            raise ValueError(f"raw_sha256 must be 64 lowercase hex digits, got {self.raw_sha256!r}")
        for name, need_offset in (("capture_time", False), ("develop_time", True)):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                if datetime.fromisoformat(value).tzinfo is None and need_offset:
                    raise ValueError("no UTC offset")
            except (TypeError, ValueError) as e:
                raise ValueError(f"{name} must be ISO 8601{' with a UTC offset' if need_offset else ''}, got {value!r}: {e}") from e
        try:
            json.dumps(dict(self.develop), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"develop parameters must be JSON-serialisable: {e}") from e
        object.__setattr__(self, "develop", MappingProxyType(dict(self.develop)))

    @property
    def capture_datetime(self) -> datetime | None:
        """:attr:`capture_time` parsed (naive when the RAW recorded no offset), or ``None``."""
        return None if self.capture_time is None else datetime.fromisoformat(self.capture_time)

    def to_dict(self) -> dict[str, Any]:
        """The assertion payload (JSON-compatible; ``fan``, ``capture_time``, ``develop_time`` are ``None`` when absent)."""
        return {
            "camera": {"make": self.camera_make, "model": self.camera_model},
            "device_id": self.device_id,
            "raw_sha256": self.raw_sha256,
            "nip": {"name": self.nip.name, "sha256": self.nip.sha256},
            "fan": None if self.fan is None else {"name": self.fan.name, "sha256": self.fan.sha256},
            "develop": dict(self.develop),
            "sdk_version": self.sdk_version,
            "capture_time": self.capture_time,
            "develop_time": self.develop_time,
        }

    def metadata(self) -> dict[str, Any]:
        """The ``c2pa.metadata`` payload: ``tiff:Make``, ``tiff:Model`` and, when known,
        ``exif:DateTimeOriginal`` (XMP date form of :attr:`capture_time`), as JSON-LD."""
        data: dict[str, Any] = {
            "@context": {"exif": "http://ns.adobe.com/exif/1.0/", "tiff": "http://ns.adobe.com/tiff/1.0/"},
            "tiff:Make": self.camera_make,
            "tiff:Model": self.camera_model,
        }
        if self.capture_time is not None:
            data["exif:DateTimeOriginal"] = self.capture_time
        return data


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
    digital source type :data:`DIGITAL_CAPTURE` (``when`` = the capture time, only when
    the RAW recorded its UTC offset: C2PA wants RFC 3339 there), the
    ``org.rawproof.capture`` assertion (:meth:`CaptureInfo.to_dict`) and
    ``c2pa.metadata`` (:meth:`CaptureInfo.metadata`). ``claim_generator_info`` names
    rawproof and its version. c2pa adds the hard binding (``c2pa.hash.data``) when
    signing; :func:`sign_image` puts every assertion here among the claim's
    ``created_assertions`` (:func:`signer_assertion_labels`). ``soft_binding``: the data
    of a ``c2pa.soft-binding`` assertion (:func:`rawproof.softbinding.soft_binding_assertion`),
    added when given (signer-attributed like the rest: the device computed it from the pixels).
    """
    agent = {"name": "rawproof", "version": capture.sdk_version}
    created: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": DIGITAL_CAPTURE, "softwareAgent": agent}
    when = capture.capture_datetime
    if when is not None and when.tzinfo is not None:
        created["when"] = capture.capture_time
    manifest = {
        "claim_generator_info": [agent],
        "title": f"{capture.camera_make} {capture.camera_model} capture".strip(),
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [created]}},
            {"label": CAPTURE_ASSERTION_LABEL, "data": capture.to_dict()},
            {"label": METADATA_ASSERTION_LABEL, "data": capture.metadata()},
        ],
    }
    if soft_binding is not None:
        manifest["assertions"].append({"label": SOFT_BINDING_LABEL, "data": dict(soft_binding)})
    return manifest


def signer_assertion_labels(manifest: Mapping[str, Any]) -> list[str]:
    """Labels for c2pa's ``builder.created_assertion_labels``: :data:`SIGNER_ASSERTION_LABELS`
    plus every assertion of ``manifest``, each without its ``.vN`` suffix (c2pa matches
    the base label: ``c2pa.actions`` covers ``c2pa.actions.v2``)."""
    labels = list(SIGNER_ASSERTION_LABELS)
    for a in manifest.get("assertions", []):
        base = re.sub(r"\.v\d+$", "", str(a.get("label", "")))
        if base and base not in labels:
            labels.append(base)
    return labels


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
    manifest = build_manifest(capture, soft_binding)
    settings = {"builder": {"thumbnail": {"enabled": thumbnail}, "created_assertion_labels": signer_assertion_labels(manifest)}}
    out = io.BytesIO()
    signer._take_callback_error()
    try:
        with c2pa.Context.from_dict(settings) as ctx, c2pa.Builder(manifest, ctx) as builder:
            builder.sign(handle, mime, io.BytesIO(image_bytes), out)
    except c2pa.C2paError as e:
        cause = signer._take_callback_error()
        if cause is not None:
            raise SigningError(f"the signing callback failed: {cause!r}") from cause
        raise SigningError(f"c2pa could not sign the image: {e}") from e
    return out.getvalue()


def add_time_stamp(image_bytes: bytes, mime: str, signer: Signer) -> bytes:
    """Time-stamp an already signed image later: an update manifest holding an RFC 3161 token
    over its active manifest's signature (C2PA 2.x ``c2pa.time-stamp`` assertion).

    For a device that signed offline: once online, and before its certificate expires, it
    (or a trusted service) calls this, and the capture's signature stays valid after the
    certificate expires, as if it had been time-stamped at signing. The update manifest
    changes no pixel and declares no edit (``c2pa.opened`` of the signed image, intent
    *update*, no hard binding of its own), so ``verify()`` still reads the capture as
    ``AUTHENTIC`` when ``signer`` is trusted (:attr:`ManifestStep.is_update`).

    Args:
        image_bytes: A JPEG or PNG with a C2PA manifest.
        mime: ``"image/jpeg"`` or ``"image/png"``.
        signer: Signs the update manifest; it must have a ``tsa_url`` (c2pa asks that TSA
            for both the new token and the update manifest's own time stamp).

    Returns:
        The image with the update manifest added, pixels untouched.

    Raises:
        SigningError: no ``tsa_url``, unsupported ``mime``, a closed signer, an image
            without a manifest, or a failed signature or time stamp.
    """
    if mime not in _MIME_TYPES:
        raise SigningError(f"cannot time-stamp {mime!r}; supported: {list(_MIME_TYPES)}")
    if signer.tsa_url is None:
        raise SigningError("add_time_stamp needs a signer with a tsa_url")
    handle = signer._handle
    if handle is None:
        raise SigningError("the signer is closed")
    agent = {"name": "rawproof", "version": __version__}
    settings = {"builder": {"thumbnail": {"enabled": False},
                            # c2pa fetches a token for the parent's signature and writes c2pa.time-stamp
                            "auto_timestamp_assertion": {"enabled": True, "skip_existing": False, "fetch_scope": "parent"}}}
    out = io.BytesIO()
    signer._take_callback_error()
    try:
        with c2pa.Context.from_dict(settings) as ctx, c2pa.Builder({"claim_generator_info": [agent]}, ctx) as builder:
            builder.set_intent(c2pa.C2paBuilderIntent.UPDATE)
            builder.sign(handle, mime, io.BytesIO(image_bytes), out)
    except c2pa.C2paError as e:
        cause = signer._take_callback_error()
        if cause is not None:
            raise SigningError(f"the signing callback failed: {cause!r}") from cause
        raise SigningError(f"c2pa could not add a time stamp: {e}") from e
    return out.getvalue()


class ProvenanceState(enum.Enum):
    """Verdict of :func:`check_provenance` on the active manifest, as c2pa's validation gives it."""

    VALID = "valid"
    """Manifest intact, content matches its hash, signature verifies, and the signer
    chains to a trust anchor (device or other; c2pa state ``Trusted``)."""
    UNTRUSTED_SIGNER = "untrusted_signer"
    """Manifest intact and content matches, but the signing certificate does not chain
    to any trust anchor given (c2pa state ``Valid`` with ``signingCredential.untrusted``)."""
    INVALID = "invalid"
    """A manifest is present but something failed: content hash mismatch
    (``assertion.dataHash.mismatch``), bad signature, expired or revoked certificate,
    or a manifest c2pa cannot decode (see ``ProvenanceReport.error``)."""
    UNAVAILABLE = "manifest_unavailable"
    """The image points to a remote manifest (a URL, ``ProvenanceReport.remote_url``)
    that offline validation does not fetch: nothing can be said about it here."""
    NO_MANIFEST = "no_manifest"
    """The image carries no C2PA manifest (never signed, or stripped by re-encoding)."""


class TrustState(enum.Enum):
    """Which trust anchors a manifest's signer chains to (C2PA trust model: a trust list of
    CA roots, here split by what the verifier believes the signer about)."""

    DEVICE = "device"
    """Chains to a device anchor (``device_anchors``): believed about captures."""
    TRUSTED = "trusted"
    """Chains to another trusted signer's anchor (``trust_anchors``): believed about
    edits it declares, not about captures."""
    UNTRUSTED = "untrusted"
    """Chains to no anchor given: anyone can make such a signature."""


@dataclass(frozen=True)
class ManifestStep:
    """One manifest of an image's history, as c2pa validated it.

    Attributes:
        label: The manifest's URN.
        trust: Which anchors its signer chains to.
        valid: c2pa reports no failure for it: claim signature, certificate validity,
            assertion hashes and (for the active manifest) the content hash;
            ``signingCredential.untrusted`` alone does not count as a failure (that is
            :attr:`trust`).
        failure_codes: c2pa's failure codes for this manifest (verbatim).
        signer_subject, signer_issuer: Of the signing certificate, ``"C=US, O=..., CN=..."``.
        signing_time: RFC 3161 time-stamp time (ISO 8601), or ``None`` without one.
        time_stamp_trusted: Whether c2pa trusted that time stamp (``timeStamp.trusted``).
        claim_generator: ``"name version"`` of the software that made the claim.
        actions: The ``c2pa.actions`` entries (keys ``action``, ``when``,
            ``softwareAgent``, ``digitalSourceType``, ``description``, ``reason``, as
            present), in order.
        source_types: Every ``digitalSourceType`` its actions declare.
        capture: The ``org.rawproof.capture`` assertion, or ``None``.
        metadata: The ``c2pa.metadata`` assertion, or ``None``.
        parent: URN of the manifest of its ``parentOf`` ingredient (the previous step),
            or ``None`` (a creation, or a parent without a manifest).
        parent_title: Title of the ``parentOf`` ingredient, or ``None``.
        is_update: An update manifest (C2PA: no hard binding of its own, only
            non-editorial changes such as a ``c2pa.time-stamp`` added later,
            :func:`add_time_stamp`): the content is still its parent's.
    """

    label: str
    trust: TrustState
    valid: bool
    failure_codes: tuple[str, ...] = ()
    signer_subject: str | None = None
    signer_issuer: str | None = None
    signing_time: str | None = None
    time_stamp_trusted: bool = False
    claim_generator: str | None = None
    actions: tuple[Mapping[str, Any], ...] = ()
    source_types: tuple[str, ...] = ()
    capture: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    parent: str | None = None
    parent_title: str | None = None
    is_update: bool = False

    @property
    def is_capture(self) -> bool:
        """A capture claim: ``c2pa.created`` with a capture source type
        (:data:`CAPTURE_SOURCE_TYPES`), rawproof's capture assertion, and no parent."""
        created = any(a.get("action") == "c2pa.created" and a.get("digitalSourceType") in CAPTURE_SOURCE_TYPES
                      for a in self.actions)
        return created and self.capture is not None and self.parent is None

    @property
    def is_synthetic(self) -> bool:
        """An action declares AI-generated, algorithmic or composite content (:data:`SYNTHETIC_SOURCE_TYPES`)."""
        return any(t in SYNTHETIC_SOURCE_TYPES for t in self.source_types)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (enums as values)."""
        return {
            "label": self.label, "trust": self.trust.value, "valid": self.valid,
            "failure_codes": list(self.failure_codes), "signer_subject": self.signer_subject,
            "signer_issuer": self.signer_issuer, "signing_time": self.signing_time,
            "time_stamp_trusted": self.time_stamp_trusted, "claim_generator": self.claim_generator,
            "actions": [dict(a) for a in self.actions], "source_types": list(self.source_types),
            "is_capture": self.is_capture, "is_synthetic": self.is_synthetic,
            "capture": None if self.capture is None else dict(self.capture),
            "metadata": None if self.metadata is None else dict(self.metadata),
            "parent": self.parent, "parent_title": self.parent_title, "is_update": self.is_update,
        }


@dataclass(frozen=True)
class ProvenanceReport:
    """Result of :func:`check_provenance`.

    Attributes:
        state: The verdict on the active manifest.
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
        capture: The active manifest's ``org.rawproof.capture`` assertion as a dict (see
            :meth:`CaptureInfo.to_dict`), or ``None`` if it has none.
        error: c2pa's message when a manifest is present but cannot be decoded or
            fetched; ``None`` otherwise.
        chain: The history: the active manifest first, then each ``parentOf``
            ingredient's manifest back to the first (:class:`ManifestStep`); empty
            without a readable manifest.
        remote_url: Where a remote manifest lives (state ``UNAVAILABLE``), else ``None``.
        soft_binding: The active manifest's ``c2pa.soft-binding`` assertion as a dict, or ``None``.
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
    chain: tuple[ManifestStep, ...] = ()
    remote_url: str | None = None
    soft_binding: Mapping[str, Any] | None = None

    @property
    def origin(self) -> ManifestStep | None:
        """The first manifest of the history (the last of :attr:`chain`), or ``None``."""
        return self.chain[-1] if self.chain else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form: enums as values, the chain as a list of step dicts."""
        return {
            "state": self.state.value, "status_codes": list(self.status_codes),
            "informational_codes": list(self.informational_codes), "success_codes": list(self.success_codes),
            "c2pa_state": self.c2pa_state, "active_manifest": self.active_manifest,
            "signer_subject": self.signer_subject, "signer_issuer": self.signer_issuer,
            "signing_time": self.signing_time, "error": self.error, "remote_url": self.remote_url,
            "chain": [step.to_dict() for step in self.chain],
            "soft_binding": None if self.soft_binding is None else dict(self.soft_binding),
        }


# c2pa's validation_state: Trusted = Valid + chains to an anchor; Valid = intact but untrusted.
_STATES = {
    "Trusted": ProvenanceState.VALID,
    "Valid": ProvenanceState.UNTRUSTED_SIGNER,
    "Invalid": ProvenanceState.INVALID,
}
_LABEL_IN_URL = re.compile(r"/c2pa/([^/]+)")
# Not failures of the manifest itself: trust is reported separately (TrustState).
_TRUST_CODES = frozenset({"signingCredential.untrusted"})
_ACTION_KEYS = ("action", "when", "softwareAgent", "digitalSourceType", "description", "reason")
_REMOTE_URL = re.compile(r"(https?://\S+)")


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


def _anchor_text(*sources: PemSource | None) -> str | None:
    """The given PEM sources joined into one anchor list for c2pa, or ``None`` if none is given."""
    texts = []
    for source in sources:
        if source is None:
            continue
        try:
            pem, _ = _pem_certificates(_read_pem(source))
        except (OSError, ValueError, UnsupportedAlgorithm) as e:
            raise VerificationError(f"cannot load the trust anchors: {type(e).__name__}: {e}") from e
        texts.append(pem.decode("ascii").strip() + "\n")
    return "".join(texts) if texts else None


def _read_store(data: bytes, mime: str, anchors: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """c2pa's manifest store report (``Reader.json()``) and crJSON, validated offline against ``anchors``."""
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if anchors is not None:
        settings["trust"] = {"trust_anchors": anchors}
    with c2pa.Context.from_dict(settings) as ctx, c2pa.Reader(mime, io.BytesIO(data), context=ctx) as reader:
        return json.loads(reader.json()), json.loads(reader.crjson())


def _codes_by_manifest(store: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """``{manifest label: {"success"|"informational"|"failure": [codes]}}`` from the active
    manifest's results and every ingredient's deltas, attributed by the URL each code names."""
    results = store.get("validation_results") or {}
    active = store.get("active_manifest")
    blocks = [results.get("activeManifest") or {}]
    blocks += [d.get("validationDeltas") or {} for d in results.get("ingredientDeltas") or []]
    out: dict[str, dict[str, list[str]]] = {}
    for block in blocks:
        for kind in ("success", "informational", "failure"):
            for entry in block.get(kind) or []:
                found = _LABEL_IN_URL.search(str(entry.get("url") or ""))
                label = found.group(1) if found else active
                out.setdefault(label, {"success": [], "informational": [], "failure": []})[kind].append(entry["code"])
    return out


def _trusted_labels(store: Mapping[str, Any]) -> set[str]:
    return {label for label, codes in _codes_by_manifest(store).items() if "signingCredential.trusted" in codes["success"]}


def _step(label: str, store: Mapping[str, Any], cr: Mapping[str, Any], codes: Mapping[str, list[str]],
          trust: TrustState, valid: bool) -> ManifestStep:
    manifest = store["manifests"][label]
    assertions = manifest.get("assertions") or []
    actions = tuple(
        {k: act[k] for k in _ACTION_KEYS if k in act}
        for a in assertions if str(a.get("label", "")).startswith("c2pa.actions")
        for act in (a.get("data") or {}).get("actions") or []
    )
    data = {a.get("label"): a.get("data") for a in assertions}
    parent = next((i for i in manifest.get("ingredients") or [] if i.get("relationship") == "parentOf"), None)
    cr_manifest: Mapping[str, Any] = next((m for m in cr.get("manifests", []) if m.get("label") == label), {})
    cert = (cr_manifest.get("signature") or {}).get("certificateInfo") or {}
    gen = (manifest.get("claim_generator_info") or [{}])[0]
    return ManifestStep(
        label=label, trust=trust, valid=valid,
        failure_codes=tuple(c for c in codes["failure"]),
        signer_subject=_dn(cert.get("subject")), signer_issuer=_dn(cert.get("issuer")),
        signing_time=(manifest.get("signature_info") or {}).get("time"),
        time_stamp_trusted="timeStamp.trusted" in codes["success"],
        claim_generator=f"{gen.get('name', '')} {gen.get('version', '')}".strip() or None,
        actions=actions, source_types=tuple(a["digitalSourceType"] for a in actions if a.get("digitalSourceType")),
        capture=data.get(CAPTURE_ASSERTION_LABEL), metadata=data.get(METADATA_ASSERTION_LABEL),
        parent=None if parent is None else parent.get("active_manifest"),
        parent_title=None if parent is None else parent.get("title"),
        is_update=bool(cr_manifest.get("isUpdateManifest")),
    )


def check_provenance(
    image: bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes],
    *,
    trust_anchors: PemSource | None = None,
    device_anchors: PemSource | None = None,
    tsa_anchors: PemSource | None = None,
) -> ProvenanceReport:
    """Validate the C2PA manifests of an image with c2pa's own validator and read its history.

    Validation is offline: no remote manifests, no OCSP. A JPEG/PNG/WebP without a
    manifest is an expected case (``NO_MANIFEST``), not an error; so is a remote
    manifest (``UNAVAILABLE``).

    Trust follows the C2PA trust model (a list of CA roots the signer must chain to),
    with the roots split by what they are believed about. c2pa validates against all
    of them; when both device and other anchors are given it validates a second time
    against the device anchors alone, and a manifest trusted then is ``DEVICE``.

    Args:
        image: Encoded image as bytes, a path, or a binary file object (read to the end).
        trust_anchors: Roots (PEM text or path) of trusted signers other than devices
            (editors, services): ``TRUSTED``. They replace c2pa's built-in anchors
            (setting ``trust.trust_anchors``) for this call only.
        device_anchors: Roots of device certificates, the only signers whose capture
            claims count: ``DEVICE``.
        tsa_anchors: Roots of time-stamp authorities, so that a time stamp keeps a
            signature valid after its certificate expires (c2pa 0.91 keeps one anchor
            store: give roots here that issue nothing but TSA certificates).
        All ``None``: c2pa's default trust configuration.

    Returns:
        The report; its ``state`` is the verdict on the active manifest and its
        ``chain`` the history with each step's trust.

    Raises:
        ImageFormatError: ``image`` is not a JPEG/PNG/WebP, or it is so damaged that
            neither c2pa nor Pillow can parse it.
        VerificationError: Unreadable anchors, or a c2pa state this version does not know.
        OSError: ``image`` is a path that cannot be read.
    """
    data = read_image_bytes(image)
    return _validate(data, _sniff_mime(data), trust_anchors, device_anchors, tsa_anchors)


def check_manifest_store(
    store: bytes, *, trust_anchors: PemSource | None = None, device_anchors: PemSource | None = None,
    tsa_anchors: PemSource | None = None,
) -> ProvenanceReport:
    """Validate a detached C2PA manifest store (``application/c2pa``, e.g. from a repository).

    Without its asset, c2pa cannot check the hard binding: the report's ``status_codes``
    then hold ``assertion.dataHash.mismatch`` however intact the store is. The signature,
    the certificate chain, the assertion hashes and the history are checked as for an
    embedded manifest (anchors as for :func:`check_provenance`).

    Raises:
        VerificationError: unreadable anchors, or a c2pa state this version does not know.
    """
    return _validate(bytes(store), "application/c2pa", trust_anchors, device_anchors, tsa_anchors)


def _validate(data: bytes, mime: str, trust_anchors: PemSource | None, device_anchors: PemSource | None,
              tsa_anchors: PemSource | None) -> ProvenanceReport:
    if mime != "application/c2pa":
        check_jpeg_structure(data)
    every = _anchor_text(device_anchors, trust_anchors, tsa_anchors)
    devices_apart = device_anchors is not None and trust_anchors is not None
    try:
        if mime == "application/c2pa":
            check_boxes(data)
        else:
            check_manifest_boxes(data, mime)
        store, cr = _read_store(data, mime, every)
        device_store = _read_store(data, mime, _anchor_text(device_anchors, tsa_anchors))[0] if devices_apart else None
    except c2pa.C2paError.ManifestNotFound:
        return ProvenanceReport(state=ProvenanceState.NO_MANIFEST)
    except RecursionError:
        # c2pa turned a manifest into JSON nested deeper than Python's parser goes.
        return ProvenanceReport(state=ProvenanceState.INVALID, error="manifest JSON nested too deeply")
    except (c2pa.C2paError, JumbfError) as e:
        if isinstance(e, c2pa.C2paError) and str(e).startswith("Remote"):
            url = _REMOTE_URL.search(str(e))
            return ProvenanceReport(state=ProvenanceState.UNAVAILABLE, error=str(e),
                                    remote_url=url.group(1).rstrip(").,") if url else None)
        if mime != "application/c2pa" and not _image_decodes(data):
            raise ImageFormatError(f"cannot parse the {mime} image: {e}") from e
        return ProvenanceReport(state=ProvenanceState.INVALID, error=str(e))

    c2pa_state = store.get("validation_state")
    if c2pa_state not in _STATES:
        raise VerificationError(f"c2pa returned an unknown validation state {c2pa_state!r}")
    label = store.get("active_manifest")
    manifests = store.get("manifests") or {}
    manifest = manifests.get(label, {})
    by_label = _codes_by_manifest(store)
    trusted = _trusted_labels(store)
    if device_anchors is None:
        device: set[str] = set()
    else:
        device = trusted if device_store is None else _trusted_labels(device_store) & trusted
    empty = {"success": [], "informational": [], "failure": []}
    chain: list[ManifestStep] = []
    current = label
    while current in manifests and all(s.label != current for s in chain):
        codes = by_label.get(current, empty)
        trust = TrustState.DEVICE if current in device else TrustState.TRUSTED if current in trusted else TrustState.UNTRUSTED
        valid = not set(codes["failure"]) - _TRUST_CODES
        chain.append(_step(current, store, cr, codes, trust, valid))
        current = chain[-1].parent
    active = chain[0] if chain else None
    assertions = {a.get("label"): a.get("data") for a in manifest.get("assertions", [])}
    return ProvenanceReport(
        state=_STATES[c2pa_state],
        status_codes=tuple(by_label.get(label, empty)["failure"]),
        informational_codes=tuple(by_label.get(label, empty)["informational"]),
        success_codes=tuple(by_label.get(label, empty)["success"]),
        c2pa_state=c2pa_state,
        active_manifest=label,
        signer_subject=None if active is None else active.signer_subject,
        signer_issuer=None if active is None else active.signer_issuer,
        signing_time=(manifest.get("signature_info") or {}).get("time"),
        capture=assertions.get(CAPTURE_ASSERTION_LABEL),
        soft_binding=assertions.get(SOFT_BINDING_LABEL),
        chain=tuple(chain),
    )


def bench_signing(width: int = 4000, height: int = 3000, repeats: int = 5) -> list[dict[str, Any]]:
    """Time signing and validation of one ``width`` x ``height`` JPEG (q90, ES256 test PKI).

    Figures, each over ``repeats`` wall-clock runs in one thread (after one warm-up):
    ``sign_jpeg_no_thumbnail`` (target 15 ms), ``sign_jpeg_tsa`` (the same with an RFC 3161
    time stamp from a local responder, :class:`rawproof.tsa.LocalTsa`; the two alternate
    run by run, so they see the same machine state), ``tsa_added`` (the difference of
    their best and of their median times, target 20 ms), ``sign_jpeg_thumbnail`` (no target) and ``check_provenance_jpeg``
    (target 50 ms). The TSA rows are left out without an ``openssl`` executable. The image
    is a bilinear upscale of noise, so its size (~3 MB at 12 MP) resembles a photo's.

    Returns:
        One dict per figure: ``name``, ``best_ms``, ``median_ms``, ``target_ms``
        (``None`` when there is none), ``repeats``, ``image`` (``"WxH jpeg N bytes"``).
    """
    import contextlib
    import shutil
    import tempfile

    from PIL import Image

    from rawproof.keygen import generate_test_pki
    from rawproof.tsa import LocalTsa

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

    def timed(*fns: Callable[[], object]) -> list[list[float]]:
        """Run the functions alternately (one warm-up round), ``repeats`` times each; ms per run."""
        out: list[list[float]] = [[] for _ in fns]
        for i in range(repeats + 1):
            for ms, fn in zip(out, fns):
                t0 = time.perf_counter()
                fn()
                if i:
                    ms.append((time.perf_counter() - t0) * 1e3)
        return out

    runs: dict[str, tuple[list[float], float | None]] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        pki = generate_test_pki(tmp, alg="es256")
        signer = stack.enter_context(Signer.from_files(pki.device_chain, pki.device_key, alg="es256"))
        plain = lambda: sign_image(jpeg, "image/jpeg", capture, signer)  # noqa: E731
        if shutil.which("openssl") is not None:
            tsa = stack.enter_context(LocalTsa())
            stamped = stack.enter_context(Signer.from_files(pki.device_chain, pki.device_key, alg="es256", tsa_url=tsa.url))
            no_tsa, with_tsa = timed(plain, lambda: sign_image(jpeg, "image/jpeg", capture, stamped))
            runs["sign_jpeg_no_thumbnail"] = (no_tsa, 15.0)
            runs["sign_jpeg_tsa"] = (with_tsa, None)
            runs["tsa_added"] = ([], 20.0)  # best and median of the difference, below
        else:
            runs["sign_jpeg_no_thumbnail"] = (timed(plain)[0], 15.0)
        runs["sign_jpeg_thumbnail"] = (timed(lambda: sign_image(jpeg, "image/jpeg", capture, signer, thumbnail=True))[0], None)
        signed = plain()
        anchors = pki.root_cert.read_bytes()
        runs["check_provenance_jpeg"] = (timed(lambda: check_provenance(signed, device_anchors=anchors))[0], 50.0)
    rows = {name: {"name": name, "best_ms": min(ms) if ms else 0.0, "median_ms": float(np.median(ms)) if ms else 0.0,
                   "target_ms": target, "repeats": repeats, "image": f"{width}x{height} jpeg {len(jpeg)} bytes"}
            for name, (ms, target) in runs.items()}
    if "tsa_added" in rows:
        for key in ("best_ms", "median_ms"):
            rows["tsa_added"][key] = rows["sign_jpeg_tsa"][key] - rows["sign_jpeg_no_thumbnail"][key]
    return list(rows.values())
