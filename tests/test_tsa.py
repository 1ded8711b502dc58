"""Tests of rawproof.tsa: the local RFC 3161 responder answers real time-stamp queries
(checked with OpenSSL's own ``ts -verify``), refuses bad ones, and c2pa accepts its tokens."""

from __future__ import annotations

import io
import shutil
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from rawproof.keygen import generate_test_pki
from rawproof.provenance import CaptureInfo, ModelRef, ProvenanceState, Signer, check_provenance, sign_image
from rawproof.tsa import LocalTsa

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the local TSA needs the openssl command-line tool")


def _post(url: str, body: bytes, content_type: str = "application/timestamp-query") -> bytes:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"] == "application/timestamp-reply"
        return resp.read()


def test_reply_verifies_with_openssl(tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"rawproof" * 100)
    query = subprocess.run(["openssl", "ts", "-query", "-data", str(data), "-sha256", "-cert"],
                           check=True, capture_output=True).stdout
    with LocalTsa() as tsa:
        reply = _post(tsa.url, query)
        (tmp_path / "reply.tsr").write_bytes(reply)
        (tmp_path / "root.pem").write_bytes(tsa.root_pem)
        (tmp_path / "tsa.pem").write_bytes(tsa.tsa_pem)
        assert tsa.requests == 1
    ok = subprocess.run(["openssl", "ts", "-verify", "-data", str(data), "-in", str(tmp_path / "reply.tsr"),
                         "-CAfile", str(tmp_path / "root.pem"), "-untrusted", str(tmp_path / "tsa.pem")],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "Verification: OK" in ok.stdout
    # A reply for other data does not verify: the token is bound to the query's digest.
    data.write_bytes(b"something else")
    bad = subprocess.run(["openssl", "ts", "-verify", "-data", str(data), "-in", str(tmp_path / "reply.tsr"),
                          "-CAfile", str(tmp_path / "root.pem"), "-untrusted", str(tmp_path / "tsa.pem")],
                         capture_output=True, text=True)
    assert bad.returncode != 0


def test_garbage_query_gets_a_rejection(tmp_path):
    # RFC 3161 §2.4.2: a malformed request is answered with a TimeStampResp of status "rejection".
    with LocalTsa() as tsa:
        reply = _post(tsa.url, b"not a query")
    (tmp_path / "reply.tsr").write_bytes(reply)
    text = subprocess.run(["openssl", "ts", "-reply", "-in", str(tmp_path / "reply.tsr"), "-text"],
                          check=True, capture_output=True, text=True).stdout
    assert "Status: Rejected" in text and "wrong format" in text and "TST info:\nNot included." in text


@pytest.mark.parametrize("body, ctype", [(b"x", "text/plain"), (b"", "application/timestamp-query")])
def test_bad_requests_get_400(body, ctype):
    with LocalTsa() as tsa:
        with pytest.raises(urllib.error.HTTPError) as e:
            _post(tsa.url, body, ctype)
        e.value.close()
        assert e.value.code == 400 and tsa.requests == 0


def test_close_is_idempotent():
    tsa = LocalTsa()
    url = tsa.url
    tsa.close()
    tsa.close()
    with pytest.raises(urllib.error.URLError):
        _post(url, b"q")


def test_c2pa_time_stamp(tmp_path):
    pki = generate_test_pki(tmp_path)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buf, "JPEG")
    capture = CaptureInfo("A", "B", "c", "0" * 64, ModelRef("nip", "0" * 64), None)
    with LocalTsa() as tsa, Signer.from_files(pki.device_chain, pki.device_key, tsa_url=tsa.url) as signer:
        assert signer.tsa_url == tsa.url
        signed = sign_image(buf.getvalue(), "image/jpeg", capture, signer)
        trusted = check_provenance(signed, device_anchors=pki.root_cert, tsa_anchors=tsa.root_pem)
        untrusted_tsa = check_provenance(signed, device_anchors=pki.root_cert)
    assert trusted.state is ProvenanceState.VALID and trusted.signing_time is not None
    assert "timeStamp.trusted" in trusted.success_codes and trusted.chain[0].time_stamp_trusted
    assert "timeStamp.untrusted" in untrusted_tsa.success_codes + untrusted_tsa.informational_codes
    assert not untrusted_tsa.chain[0].time_stamp_trusted


def test_add_time_stamp_errors(tmp_path):
    from rawproof.errors import SigningError
    from rawproof.provenance import add_time_stamp

    pki = generate_test_pki(tmp_path)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buf, "JPEG")
    with Signer.from_files(pki.device_chain, pki.device_key) as no_tsa:
        with pytest.raises(SigningError, match="tsa_url"):
            add_time_stamp(buf.getvalue(), "image/jpeg", no_tsa)
    with LocalTsa() as tsa, Signer.from_files(pki.device_chain, pki.device_key, tsa_url=tsa.url) as signer:
        with pytest.raises(SigningError):
            add_time_stamp(buf.getvalue(), "image/jpeg", signer)  # nothing signed to time-stamp
        with pytest.raises(SigningError, match="image/gif"):
            add_time_stamp(b"GIF89a", "image/gif", signer)


def test_timestamp_cli(tmp_path, capsys):
    from rawproof import cli

    pki = generate_test_pki(tmp_path / "pki")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buf, "PNG")
    capture = CaptureInfo("A", "B", "c", "0" * 64, ModelRef("nip", "0" * 64), None)
    with Signer.from_files(pki.device_chain, pki.device_key) as signer:
        (tmp_path / "s.png").write_bytes(sign_image(buf.getvalue(), "image/png", capture, signer))
    with LocalTsa() as tsa:
        code = cli.main(["timestamp", str(tmp_path / "s.png"), "--sign-cert", str(pki.device_chain),
                         "--sign-key", str(pki.device_key), "--tsa", tsa.url])
        assert code == 0 and tsa.requests == 2  # the parent's token and the update manifest's own
        report = check_provenance(tmp_path / "s_timestamped.png", device_anchors=pki.root_cert, tsa_anchors=tsa.root_pem)
    assert report.state is ProvenanceState.VALID and [s.is_update for s in report.chain] == [True, False]
    assert "time stamp from" in capsys.readouterr().out
    assert cli.main(["timestamp", str(tmp_path / "missing.png"), "--sign-cert", str(pki.device_chain),
                     "--sign-key", str(pki.device_key), "--tsa", "http://127.0.0.1:9/"]) == 3
