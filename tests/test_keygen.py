"""Tests for rawproof.keygen: the test PKI, checked with cryptography's X.509 parser.

Whether c2pa accepts these certificates is tested in test_provenance.py, with c2pa's
own validator as the judge.
"""

from __future__ import annotations

import argparse
import datetime as dt
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from rawproof.keygen import C2PA_CLAIM_SIGNING_OID, TEST_CREDENTIALS_WARNING, KeyAlg, generate_test_pki, register

KEY_TYPES = {
    KeyAlg.ES256: (ec.EllipticCurvePrivateKey, "secp256r1"),
    KeyAlg.ES384: (ec.EllipticCurvePrivateKey, "secp384r1"),
    KeyAlg.PS256: (rsa.RSAPrivateKey, None),
    KeyAlg.ED25519: (ed25519.Ed25519PrivateKey, None),
}


@pytest.mark.parametrize("alg", list(KeyAlg))
def test_pki_structure(tmp_path, alg):
    pki = generate_test_pki(tmp_path, alg=alg.value, device_id="CAM-0042")
    root = x509.load_pem_x509_certificate(pki.root_cert.read_bytes())
    chain = x509.load_pem_x509_certificates(pki.device_chain.read_bytes())
    assert len(chain) == 1, "the chain holds the device certificate only; the root is the trust anchor"
    device = chain[0]
    key = serialization.load_pem_private_key(pki.device_key.read_bytes(), password=None)
    root_key = serialization.load_pem_private_key(pki.root_key.read_bytes(), password=None)

    key_type, curve = KEY_TYPES[alg]
    assert isinstance(key, key_type) and isinstance(root_key, key_type)
    if curve:
        assert key.curve.name == curve
    assert key.public_key() == device.public_key()
    assert root_key.public_key() == root.public_key()
    assert pki.alg is alg

    # Root: self-signed CA that may sign certificates.
    root.verify_directly_issued_by(root)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    root_ku = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert root_ku.key_cert_sign and root_ku.crl_sign

    # Device: end entity signed by the root, with what c2pa's certificate profile checks.
    device.verify_directly_issued_by(root)
    bc = device.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.value.ca is False and bc.critical
    ku = device.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = device.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku and C2PA_CLAIM_SIGNING_OID in eku
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = device.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert device.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest == (
        x509.SubjectKeyIdentifier.from_public_key(device.public_key()).digest
    )
    serial = device.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)
    assert [a.value for a in serial] == ["CAM-0042"]

    for key_path in (pki.device_key, pki.root_key):
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_validity_window(tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    pki = generate_test_pki(tmp_path, valid_days=10)
    device = x509.load_pem_x509_certificate(pki.device_chain.read_bytes())
    assert abs(device.not_valid_after_utc - (now + dt.timedelta(days=10))) < dt.timedelta(hours=2)
    assert device.not_valid_before_utc <= now


def test_expired_certificate(tmp_path):
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    start, end = now - dt.timedelta(days=30), now - dt.timedelta(days=1)
    pki = generate_test_pki(tmp_path, not_before=start, not_after=end)
    device = x509.load_pem_x509_certificate(pki.device_chain.read_bytes())
    root = x509.load_pem_x509_certificate(pki.root_cert.read_bytes())
    assert (device.not_valid_before_utc, device.not_valid_after_utc) == (start, end)
    assert root.not_valid_after_utc > now, "only the device certificate is expired"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alg": "rsa1024"}, "unsupported algorithm"),
        ({"valid_days": 0}, "valid_days"),
        ({"not_before": dt.datetime(2024, 1, 1)}, "timezone-aware"),
        (
            {
                "not_before": dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc),
                "not_after": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
            },
            "must be after",
        ),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_test_pki(tmp_path, **kwargs)


def test_cli_prints_warning(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="rawproof")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["keygen", "-o", str(tmp_path / "keys"), "--alg", "ed25519", "--device-id", "CAM-7"])
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert TEST_CREDENTIALS_WARNING in captured.err
    assert "WARNING" in captured.err and "TEST credentials" in captured.err
    assert "device_chain.pem" in captured.out
    device = x509.load_pem_x509_certificate((tmp_path / "keys" / "device_chain.pem").read_bytes())
    assert isinstance(device.public_key(), ed25519.Ed25519PublicKey)
    assert [a.value for a in device.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)] == ["CAM-7"]
