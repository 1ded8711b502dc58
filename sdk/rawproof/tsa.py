"""A local RFC 3161 time-stamp authority for tests and benchmarks: OpenSSL's ``ts -reply``
behind a small HTTP server on 127.0.0.1.

WARNING: a *test* TSA. Its root and signing key are made on the spot and kept in a
temporary folder; no validator trusts them unless told to. A production camera uses a
public TSA whose root is on the C2PA TSA trust list (``Signer(..., tsa_url=)``).

::

    with LocalTsa() as tsa:                          # starts the server, port chosen by the OS
        with Signer.from_files(chain, key, tsa_url=tsa.url) as signer:
            signed = sign_image(jpeg, "image/jpeg", capture, signer)
        check_provenance(signed, device_anchors=root, trust_anchors=tsa.root_pem)

Each request runs ``openssl ts -reply`` once (a real responder: it parses the
``TimeStampReq``, checks the policy, and signs a ``TimeStampResp`` with the TSA
certificate, ``ESSCertIDv2``, SHA-256). The server answers ``POST`` with
``Content-Type: application/timestamp-query`` only.
"""

from __future__ import annotations

import datetime as _dt
import http.server
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LocalTsa", "TSA_POLICY_OID"]

TSA_POLICY_OID = "1.3.6.1.4.1.62558.99.1"
"""Policy OID the test TSA stamps into every token (an arbitrary test value)."""

_MAX_QUERY = 64 * 1024  # a TimeStampReq is ~100 bytes; refuse anything large

_CONFIG = """\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/tsa.pem
signer_key = $dir/tsa_key.pem
signer_digest = sha256
default_policy = {policy}
digests = sha256, sha384, sha512
accuracy = secs:1
clock_precision_digits = 0
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rawproof test TSA (NOT FOR PRODUCTION)"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _write_pki(folder: Path, valid_days: int) -> tuple[bytes, bytes]:
    """Make a TSA root and a TSA signing certificate (EKU timeStamping, critical); return (root PEM, TSA PEM)."""
    now = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(hours=1)
    root_key, tsa_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (
        x509.CertificateBuilder().subject_name(_name("rawproof TEST TSA root")).issuer_name(_name("rawproof TEST TSA root"))
        .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + _dt.timedelta(days=10 * valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(root_ski, critical=False)
        .sign(root_key, hashes.SHA256())
    )
    tsa = (
        x509.CertificateBuilder().subject_name(_name("rawproof TEST TSA")).issuer_name(root.subject)
        .public_key(tsa_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + _dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        # RFC 3161 §2.3: the TSA certificate has exactly one EKU, id-kp-timeStamping, critical.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    root_pem, tsa_pem = root.public_bytes(serialization.Encoding.PEM), tsa.public_bytes(serialization.Encoding.PEM)
    (folder / "tsa.pem").write_bytes(tsa_pem)
    (folder / "tsa_key.pem").write_bytes(tsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (folder / "tsa_key.pem").chmod(0o600)
    (folder / "serial").write_text("01\n")
    return root_pem, tsa_pem


class LocalTsa:
    """A running local RFC 3161 TSA (context manager; :meth:`close` is idempotent).

    Args:
        openssl: The ``openssl`` executable (found on ``PATH`` by default).
        valid_days: Lifetime of the TSA certificate.

    Attributes:
        url: ``http://127.0.0.1:PORT/`` to pass as ``tsa_url``.
        root_pem: PEM of the TSA's root: a trust anchor for validating its tokens.
        tsa_pem: PEM of the TSA signing certificate.
        requests: Number of time stamps issued so far.

    Raises:
        FileNotFoundError: no ``openssl`` executable.
    """

    def __init__(self, *, openssl: str | None = None, valid_days: int = 365) -> None:
        exe = openssl or shutil.which("openssl")
        if exe is None:
            raise FileNotFoundError("the local TSA needs the openssl command-line tool")
        self._openssl = exe
        # openssl ts -reply reads and writes a few small files per request (query, reply,
        # serial): a RAM-backed folder keeps disk latency out of the time-stamp round trip.
        shm = Path("/dev/shm")
        self._tmp = tempfile.TemporaryDirectory(prefix="rawproof-tsa-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None)
        folder = Path(self._tmp.name)
        self.root_pem, self.tsa_pem = _write_pki(folder, valid_days)
        self._config = folder / "tsa.cnf"
        self._config.write_text(_CONFIG.format(dir=folder, policy=TSA_POLICY_OID))
        self._lock = threading.Lock()  # openssl updates the serial file on each reply
        self.requests = 0
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="rawproof-local-tsa", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def reply(self, query: bytes) -> bytes:
        """The DER ``TimeStampResp`` for a DER ``TimeStampReq`` (runs ``openssl ts -reply``)."""
        folder = Path(self._tmp.name)
        with self._lock:
            q, r = folder / "query.tsq", folder / "reply.tsr"
            q.write_bytes(query)
            subprocess.run(
                [self._openssl, "ts", "-reply", "-config", str(self._config), "-queryfile", str(q), "-out", str(r)],
                check=True, capture_output=True, timeout=30,
            )
            self.requests += 1
            return r.read_bytes()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        tsa = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Content-Type") != "application/timestamp-query" or not 0 < length <= _MAX_QUERY:
                    self.send_error(400, "expected an application/timestamp-query body")
                    return
                try:
                    body = tsa.reply(self.rfile.read(length))
                except subprocess.CalledProcessError as e:
                    self.send_error(400, f"openssl ts rejected the query: {e.stderr.decode(errors='replace')[:200]}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # quiet: tests and benchmarks
                return

        return Handler

    def close(self) -> None:
        """Stop the server and delete the TSA's keys. Idempotent."""
        server, self._server = getattr(self, "_server", None), None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join()
            self._tmp.cleanup()

    def __enter__(self) -> LocalTsa:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
