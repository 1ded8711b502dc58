"""Test PKI for C2PA signing: a self-signed root CA and one device certificate.

WARNING: these are *test* credentials. The root key sits in a file next to the device
key, nothing protects either, and no C2PA validator trusts the root unless told to.
A production camera gets its device certificate from a vendor CA whose root is on the
C2PA trust list, and keeps its private key in an HSM/TEE (see
:meth:`rawproof.provenance.Signer.from_callback`).

The device certificate carries what c2pa-rs checks in its certificate profile:
``keyUsage = digitalSignature`` (critical), ``extendedKeyUsage`` with
``emailProtection`` and the C2PA claim-signing purpose ``1.3.6.1.4.1.62558.2.1``,
``basicConstraints CA:false``, subject and authority key identifiers.

High-level use::

    pki = generate_test_pki("keys/", alg="es256", device_id="CAM-0001")
    with Signer.from_files(pki.device_chain, pki.device_key, alg=pki.alg) as signer: ...
    check_provenance(signed, trust_anchors=pki.root_cert)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import enum
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

__all__ = ["KeyAlg", "TestPki", "MAX_VALID_DAYS", "generate_test_pki", "TEST_CREDENTIALS_WARNING", "C2PA_CLAIM_SIGNING_OID", "register"]

C2PA_CLAIM_SIGNING_OID = ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
"""Extended key usage ``c2pa-kp-claimSigning`` defined by the C2PA specification (2.1+)."""

TEST_CREDENTIALS_WARNING = (
    "WARNING: these are TEST credentials (self-signed root, unprotected private keys). "
    "Validators report them as untrusted unless the root is passed as a trust anchor. "
    "Production devices need a device certificate issued by a vendor CA on the C2PA "
    "trust list, with the private key kept in an HSM/TEE."
)


class KeyAlg(str, enum.Enum):
    """Key types the test PKI can create; the value is the C2PA signing algorithm name."""

    ES256 = "es256"
    """ECDSA on P-256 with SHA-256: small, fast, the usual choice for cameras."""
    ES384 = "es384"
    """ECDSA on P-384 with SHA-384."""
    PS256 = "ps256"
    """RSASSA-PSS with SHA-256 on a 2048-bit RSA key (certificates signed RSA PKCS#1 v1.5/SHA-256)."""
    ED25519 = "ed25519"
    """EdDSA on Curve25519."""

    @classmethod
    def parse(cls, value: str | KeyAlg) -> KeyAlg:
        """Accept a member or its name in any case; raise ``ValueError`` otherwise."""
        if isinstance(value, KeyAlg):
            return value
        name = value.value if isinstance(value, enum.Enum) else value
        try:
            return cls(str(name).lower())
        except ValueError:
            raise ValueError(f"unsupported algorithm {value!r}; expected one of {[a.value for a in cls]}") from None


@dataclass(frozen=True)
class TestPki:
    """Files written by :func:`generate_test_pki` (all PEM).

    Attributes:
        root_cert: Self-signed root CA certificate: the trust anchor for validation.
        root_key: Root CA private key (unencrypted PKCS#8); only needed to issue more certificates.
        device_chain: The device (end-entity) certificate; what the signer embeds. It
            would list intermediates after it, if there were any; the root stays out
            (validators take it from their trust anchors, and c2pa trusts the chain
            either way).
        device_key: Device private key (unencrypted PKCS#8).
        alg: Signing algorithm matching ``device_key``.
    """

    __test__ = False  # not a pytest class despite the name

    root_cert: Path
    root_key: Path
    device_chain: Path
    device_key: Path
    alg: KeyAlg


def _new_key(alg: KeyAlg) -> ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey:
    if alg is KeyAlg.ES256:
        return ec.generate_private_key(ec.SECP256R1())
    if alg is KeyAlg.ES384:
        return ec.generate_private_key(ec.SECP384R1())
    if alg is KeyAlg.PS256:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


def _cert_hash(alg: KeyAlg) -> hashes.HashAlgorithm | None:
    # Ed25519 signs the message itself, so cryptography wants no hash for it.
    if alg is KeyAlg.ED25519:
        return None
    return hashes.SHA384() if alg is KeyAlg.ES384 else hashes.SHA256()


def _name(common_name: str, org: str, serial: str | None = None) -> x509.Name:
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ]
    if serial:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    return x509.Name(attrs)


def _pem_key(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


MAX_VALID_DAYS = 36_500
"""Longest device certificate lifetime (days, ~100 years). The root lives 10 times as long,
and X.509 validity ends at year 9999, so larger values cannot be encoded."""


def generate_test_pki(
    out_dir: str | Path,
    *,
    alg: str | KeyAlg = KeyAlg.ES256,
    device_id: str = "rawproof-test-device",
    valid_days: int = 365,
    not_before: _dt.datetime | None = None,
    not_after: _dt.datetime | None = None,
) -> TestPki:
    """Create a test root CA and a device certificate it signs, and write them as PEM.

    The root is valid for ``10 * valid_days`` from ``not_before``; the device
    certificate from ``not_before`` to ``not_after``. Pass a past ``not_after`` to make
    an already-expired device certificate (tests of ``signingCredential.expired``).

    Args:
        out_dir: Folder to write into (created if missing). Existing files are replaced.
        alg: Key type of both root and device (:class:`KeyAlg` or its name).
        device_id: Device identifier; the device certificate's subject serialNumber and
            part of its common name.
        valid_days: Device certificate lifetime in days when ``not_after`` is not given.
        not_before: Start of validity (timezone-aware); default now minus one hour
            (tolerates clock skew between camera and validator).
        not_after: End of the device certificate's validity (timezone-aware).

    Returns:
        The paths written: ``root.pem``, ``root_key.pem``, ``device_chain.pem`` and
        ``device_key.pem``.

    Raises:
        ValueError: Unknown ``alg``, ``valid_days`` outside 1..:data:`MAX_VALID_DAYS`,
            naive datetimes, or ``not_after`` not after ``not_before``.
        OSError: ``out_dir`` exists and is not a folder (``NotADirectoryError``), or a file
            cannot be written.
    """
    key_alg = KeyAlg.parse(alg)
    if isinstance(valid_days, bool) or not isinstance(valid_days, int) or not 1 <= valid_days <= MAX_VALID_DAYS:
        raise ValueError(f"valid_days must be an integer in 1..{MAX_VALID_DAYS}, got {valid_days!r}")
    for label, t in (("not_before", not_before), ("not_after", not_after)):
        if t is not None and t.tzinfo is None:
            raise ValueError(f"{label} must be timezone-aware")
    start = not_before or _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(hours=1)
    end = not_after or start + _dt.timedelta(days=valid_days)
    if end <= start:
        raise ValueError(f"not_after ({end.isoformat()}) must be after not_before ({start.isoformat()})")

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    sig_hash = _cert_hash(key_alg)

    root_key = _new_key(key_alg)
    root_name = _name("rawproof TEST root CA", "rawproof test PKI (NOT FOR PRODUCTION)")
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(max(end, start + _dt.timedelta(days=10 * valid_days)))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(root_ski, critical=False)
        .sign(root_key, sig_hash)
    )

    dev_key = _new_key(key_alg)
    device = (
        x509.CertificateBuilder()
        .subject_name(_name(f"rawproof test device {device_id}", "rawproof test device", device_id))
        .issuer_name(root_name)
        .public_key(dev_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, C2PA_CLAIM_SIGNING_OID]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(dev_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False)
        .sign(root_key, sig_hash)
    )

    root_pem = root.public_bytes(serialization.Encoding.PEM)
    device_pem = device.public_bytes(serialization.Encoding.PEM)
    pki = TestPki(
        root_cert=out / "root.pem",
        root_key=out / "root_key.pem",
        device_chain=out / "device_chain.pem",
        device_key=out / "device_key.pem",
        alg=key_alg,
    )
    pki.root_cert.write_bytes(root_pem)
    pki.root_key.write_bytes(_pem_key(root_key))
    pki.device_chain.write_bytes(device_pem)
    pki.device_key.write_bytes(_pem_key(dev_key))
    for key_path in (pki.root_key, pki.device_key):
        key_path.chmod(0o600)
    return pki


def _run(args: argparse.Namespace) -> int:
    print(TEST_CREDENTIALS_WARNING, file=sys.stderr)
    pki = generate_test_pki(args.out, alg=args.alg, device_id=args.device_id, valid_days=args.valid_days)
    for label, path in (
        ("root CA (trust anchor)", pki.root_cert),
        ("device chain", pki.device_chain),
        ("device key", pki.device_key),
    ):
        print(f"{label:24s} {path}")
    print(f"algorithm                {pki.alg.value}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``keygen`` subcommand to the ``rawproof`` CLI."""
    p = subparsers.add_parser(
        "keygen",
        help="create a TEST root CA and device certificate for C2PA signing",
        description=TEST_CREDENTIALS_WARNING,
    )
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    p.add_argument("--alg", default=KeyAlg.ES256.value, choices=[a.value for a in KeyAlg], help="key type")
    p.add_argument("--device-id", default="rawproof-test-device", help="device identifier in the certificate")
    p.add_argument("--valid-days", type=int, default=365, help="device certificate lifetime (days)")
    p.set_defaults(func=_run)
