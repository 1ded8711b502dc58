"""Structure-aware fuzzing (atheris) of the container layouts and metadata the byte-level targets miss.

Each input is decoded by ``atheris.FuzzedDataProvider`` into one of seven builds; every
build starts from a valid object and changes its *structure*, so the mutations land where
parsers disagree instead of being rejected by the first checksum:

0. **JPEG segment layout** of a C2PA-signed JPEG: stray bytes, fill bytes, bare markers
   and marker segments whose length spans the next segments, put between segments; header
   segments reordered, APP11 segments duplicated or dropped; sometimes the capture
   assertion's CBOR text length set to ~1.9 GB (the finding behind ``rawproof.jumbf``).
1. **PNG chunk layout** of a signed PNG: junk between chunks, extra and empty chunks,
   ``caBX`` duplicated or moved (before IHDR, after IDAT, after IEND), the CBOR bomb with the
   chunk CRC redone.
2. **WebP (RIFF) layout**: a Pillow WebP plus a ``C2PA`` chunk holding the signed PNG's
   store (sometimes bombed), with or without the odd-size pad byte, junk chunks, a wrong
   RIFF size.
3. **Progressive scan counts**: a progressive JPEG of up to 2048 x 2048 with 1..400 scans.
4. **TIFF/DNG header fields**: a Bayer DNG with fuzzed width, height, bits, compression,
   tiling, byte counts and extra tags, over lossless-JPEG, packed or random data.
5. **JSON depth and numeric ranges** in FAN metadata (``trained_channel``, ``patch_size``,
   ``size_multiple``, ``calibration``, ``decision``: NaN, Infinity, 1e400, 0, -0, 2**63,
   strings, nesting to 10^5) and in fingerprint metadata and values.
6. **Certificate algorithms**: the device certificate with its key-algorithm or curve OID
   changed, wrapped in PEM with UTF-8 comments, used as trust anchors and as a signing chain.

Contract (a violation is a finding): only :class:`rawproof.errors.RawproofError` escapes;
each input stays under 500 MB of peak RSS growth (``/proc/self/clear_refs`` then
``VmHWM``, checked here; libFuzzer's ``-timeout`` bounds the time); reports serialise
as strict JSON. Oracles: when the manifest pre-flight passes and c2pa finds a manifest,
the c2pa dialect of :func:`rawproof.containers.jpeg_segments` (or the PNG/WebP walk) saw
its store, i.e. the pre-flight models c2pa's own walk; a loaded FAN's channel values are
finite and in range; a fingerprint match gives a finite PCE.

Usage: ``python fuzz/fuzz_structure.py [corpus_dir ...] [libFuzzer flags]``; fixtures
from ``python fuzz/make_corpus.py``.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports(include=["rawproof"]):
    from rawproof.containers import jpeg_segments
    from rawproof.errors import RawproofError
    from rawproof.fingerprint import _HEADER, _MAGIC, FORMAT_VERSION, Fingerprint, match
    from rawproof.forensics import fan_config
    from rawproof.imageio import decode_rgb
    from rawproof.jumbf import JumbfError, check_manifest_boxes, manifest_stores
    from rawproof.models import load_model_info
    from rawproof.provenance import ProvenanceState, Signer, check_provenance
    from rawproof.raw import RawFrame
    from rawproof.untrusted import dumps_strict

import make_corpus

sys.path.insert(0, str(make_corpus.REPO_ROOT / "tests"))
from _hostile_inputs import bayer_dng, lossless_jpeg, progressive_jpeg_with_scans  # noqa: E402

PEAK_BOUND_MB = 500.0
_FUZZ_DIR = Path(os.environ.get("RAWPROOF_FUZZ_DIR", make_corpus.DEFAULT_OUT))
_F: dict[str, object] = {}
_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "0", "-0", "0.0", "1", "2", "16", "17", "100", "101",
            "1e300", "9223372036854775808", "-1", "1.5", "\"2\"", "null", "true", "[]", "{}"]


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))


def _jpeg_layout(fdp: atheris.FuzzedDataProvider) -> bytes:
    data = _F["signed_jpeg"] if fdp.ConsumeBool() else _F["bomb_jpeg"]
    segs = []
    for s in jpeg_segments(data, "libjpeg"):
        bare = s.marker in (0xD8, 0xD9, 0x01) or 0xD0 <= s.marker <= 0xD7
        segs.append(data[s.start - (2 if bare else 4) : s.end])
        if s.marker == 0xDA:
            rest = data[s.end :]
            break
    else:
        rest = b""
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        op, i = fdp.ConsumeIntInRange(0, 4), fdp.ConsumeIntInRange(0, max(0, len(segs) - 2))
        if op == 0 and len(segs) > 2:  # swap two header segments
            segs[i], segs[i + 1] = segs[i + 1], segs[i]
        elif op == 1:  # duplicate one (an APP11 most of the time)
            app11 = [k for k, s in enumerate(segs) if s[1:2] == b"\xeb"]
            k = fdp.PickValueInList(app11) if app11 and fdp.ConsumeBool() else i
            segs.insert(k, segs[k])
        elif op == 2 and len(segs) > 2:
            del segs[i]
    out = bytearray(b"\xff\xd8")
    for s in segs:
        k = fdp.ConsumeIntInRange(0, 7)
        if k == 1:
            out += bytes(b if b != 0xFF else 0 for b in fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8))) or b"\x00"
        elif k == 2:
            out += b"\xff" * fdp.ConsumeIntInRange(1, 8)
        elif k == 3:
            out += bytes([0xFF, fdp.PickValueInList([0x01, 0x02, 0x00, 0xD8, 0xDC, 0xDE, 0xDF, 0xF0, 0xFD, 0xD0])])
        elif k == 4:  # a marker segment whose length spans what follows
            marker = fdp.ConsumeIntInRange(0xC0, 0xFE)
            out += bytes([0xFF, marker]) + (len(s) + fdp.ConsumeIntInRange(2, 6)).to_bytes(2, "big")[-2:]
        out += s
    return bytes(out) + rest


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def _png_layout(fdp: atheris.FuzzedDataProvider) -> bytes:
    data = _F["signed_png"]
    chunks = []
    i = 8
    while i + 8 <= len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        chunks.append((data[i + 4 : i + 8], data[i + 8 : i + 8 + n]))
        i += 12 + n
    if fdp.ConsumeBool():
        k = next(j for j, (t, _) in enumerate(chunks) if t == b"caBX")
        body = chunks[k][1]
        at = body.find(b"dmake")
        if at >= 0:
            chunks[k] = (b"caBX", body[:at] + b"\x7a\x70\x00\x00\x00" + body[at + 5 :])
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        op, j = fdp.ConsumeIntInRange(0, 3), fdp.ConsumeIntInRange(0, len(chunks) - 1)
        cabx = next((c for c in chunks if c[0] == b"caBX"), None)
        if op == 0 and cabx is not None:
            chunks.insert(j, cabx)
        elif op == 1 and cabx is not None:
            chunks.remove(cabx)
            chunks.insert(fdp.PickValueInList([0, j, len(chunks)]), cabx)
        elif op == 2:
            chunks.insert(j, (fdp.ConsumeBytes(4).ljust(4, b"a"), fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))))
    out = bytearray(data[:8])
    for tag, body in chunks:
        if fdp.ConsumeIntInRange(0, 7) == 0:
            out += fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8))  # junk between chunks
        chunk = _png_chunk(tag, body)
        if fdp.ConsumeIntInRange(0, 15) == 0:  # a length field that lies
            chunk = struct.pack(">I", fdp.ConsumeIntInRange(0, 2**32 - 1)) + chunk[4:]
        out += chunk
    return bytes(out)


def _webp_layout(fdp: atheris.FuzzedDataProvider) -> bytes:
    store = _F["png_store"]
    if fdp.ConsumeBool():
        at = store.find(b"dmake")
        store = store[:at] + b"\x7a\x70\x00\x00\x00" + store[at + 5 :]
    body = store + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 1))
    chunks = [_F["webp_chunks"], b"C2PA" + struct.pack("<I", len(body)) + body]
    if len(body) & 1 and fdp.ConsumeBool():
        chunks[1] += b"\x00"  # the RIFF pad byte
    if fdp.ConsumeBool():
        chunks.reverse()
    if fdp.ConsumeIntInRange(0, 3) == 0:
        junk = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 32))
        chunks.insert(fdp.ConsumeIntInRange(0, 2), fdp.ConsumeBytes(4).ljust(4, b"x") + struct.pack("<I", len(junk)) + junk)
    payload = b"WEBP" + b"".join(chunks)
    size = len(payload) if fdp.ConsumeIntInRange(0, 3) else fdp.ConsumeIntInRange(0, 2**32 - 1)
    return b"RIFF" + struct.pack("<I", size) + payload


def _provenance_case(data: bytes, mime: str, store_walk_found: bool) -> None:
    try:
        check_manifest_boxes(data, mime)
        preflight_ok = True
    except JumbfError:
        preflight_ok = False
    try:
        report = check_provenance(data, trust_anchors=_F["root_pem"])
    except RawproofError:
        return
    dumps_strict({"state": report.state.value, "codes": report.status_codes, "error": report.error})
    if preflight_ok and report.state is not ProvenanceState.NO_MANIFEST and report.error is None:
        assert store_walk_found, "c2pa found a manifest store the pre-flight's walk did not see"


def _jpeg_case(fdp: atheris.FuzzedDataProvider) -> None:
    data = _jpeg_layout(fdp)
    seen = any(s.marker == 0xEB and data[s.start : s.start + 2] == b"JP" for s in jpeg_segments(data, "c2pa"))
    _provenance_case(data, "image/jpeg", seen)


def _png_case(fdp: atheris.FuzzedDataProvider) -> None:
    data = _png_layout(fdp)
    _provenance_case(data, "image/png", bool(manifest_stores(data, "image/png")))


def _webp_case(fdp: atheris.FuzzedDataProvider) -> None:
    data = _webp_layout(fdp)
    _provenance_case(data, "image/webp", bool(manifest_stores(data, "image/webp")))


def _scans_case(fdp: atheris.FuzzedDataProvider) -> None:
    w, h = fdp.ConsumeIntInRange(1, 2048), fdp.ConsumeIntInRange(1, 2048)
    data = progressive_jpeg_with_scans(w, h, fdp.ConsumeIntInRange(1, 400))
    try:
        decode_rgb(data)
    except RawproofError:
        pass


def _dng_case(fdp: atheris.FuzzedDataProvider) -> None:
    w = fdp.PickValueInList([2, 16, 96, 30000, 65535, 2**31, 0, 1, 97]) if fdp.ConsumeBool() else 2 * fdp.ConsumeIntInRange(1, 64)
    h = fdp.PickValueInList([2, 16, 64, 30000, 65535, 2**31, 0, 1, 65]) if fdp.ConsumeBool() else 2 * fdp.ConsumeIntInRange(1, 64)
    kind = fdp.ConsumeIntInRange(0, 2)
    if kind == 0:
        img = np.frombuffer(fdp.ConsumeBytes(2 * 64 * 64).ljust(2 * 64 * 64, b"\0"), "<u2").reshape(64, 64) & 0x0FFF
        data = lossless_jpeg(img[: max(1, min(h, 64)), : max(1, min(w, 64))])
    elif kind == 1:
        data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4 * 96 * 64))
    else:
        data = bytes(fdp.ConsumeIntInRange(0, 32768))
    dng = bayer_dng(w % 2**32, h % 2**32, data, compression=fdp.PickValueInList([1, 7, 7, 8, 34713, 0, 65535]),
                    tiled=fdp.ConsumeBool(), bits=fdp.PickValueInList([8, 10, 12, 14, 16, 0, 1, 32]),
                    byte_count=None if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 2**32 - 1))
    path = Path(_F["tmp"]) / "fuzz.dng"
    path.write_bytes(dng)
    try:
        RawFrame.from_file(path)
    except RawproofError:
        pass


def _meta_value(fdp: atheris.FuzzedDataProvider) -> str:
    if fdp.ConsumeIntInRange(0, 7) == 0:
        depth = fdp.PickValueInList([10, 100, 1000, 10_000, 100_000])
        return "[" * depth + fdp.PickValueInList(_NUMBERS) + "]" * depth
    return fdp.PickValueInList(_NUMBERS)


def _json_case(fdp: atheris.FuzzedDataProvider) -> None:
    if fdp.ConsumeBool():
        base = dict(_F["fan_meta"])
        fields = {"trained_channel": '{"downscale": %s, "jpeg_quality": %s, "jpeg_qualities": [%s], "subsampling": %s}',
                  "patch_size": "%s", "size_multiple": "%s", "calibration": '{"temperature": %s, "platt": [%s, %s]}',
                  "decision": '{"score_threshold": %s, "area_threshold": %s}', "config": "%s"}
        text = json.dumps(base)[:-1]
        for key, template in fields.items():
            if not fdp.ConsumeBool():
                continue
            text += f', "{key}": ' + template % tuple(_meta_value(fdp) for _ in range(template.count("%s")))
        Path(_F["fan_json"]).write_text(text + "}")
        try:
            cfg = fan_config(load_model_info(_F["fan_onnx"]))
        except RawproofError:
            return
        down = cfg.trained_channel.get("downscale", 1)
        assert math.isfinite(down) and 1 <= down <= 16, down
        return
    meta = _meta_value(fdp).encode()
    k = np.full((32, 32), fdp.PickValueInList([0.0, 1e-3, 3e38, 65536.0, 65537.0, 1e-45, -2.0]), "<f4")
    k[0, 0] = fdp.ConsumeFloatInRange(-1.0, 1.0)
    body = meta + k.tobytes()
    data = _HEADER.pack(_MAGIC, FORMAT_VERSION, 2, 0, 32, 32, 1, len(meta), hashlib.sha256(body).digest()) + body
    try:
        fp = Fingerprint.from_bytes(data)
        result = match(_F["fp_image"], fp)
    except RawproofError:
        return
    assert math.isfinite(result.pce), result
    dumps_strict(result.to_dict())


def _cert_case(fdp: atheris.FuzzedDataProvider) -> None:
    import base64

    der = bytearray(_F["device_der"])
    oids = [bytes.fromhex("06082a8648ce3d030107"), bytes.fromhex("06072a8648ce3d0201")]  # curve P-256, ecPublicKey
    oid = fdp.PickValueInList(oids)
    at = der.find(oid)
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        der[at + fdp.ConsumeIntInRange(2, len(oid) - 1)] = fdp.ConsumeIntInRange(0, 255)
    b64 = base64.encodebytes(bytes(der))
    comment = fdp.PickValueInList([b"", "# Zertifikat für Tests ✓\n".encode(), b"\xff\xfe junk\n", b"text\r\n"])
    pem = comment + b"-----BEGIN CERTIFICATE-----\n" + b64 + b"-----END CERTIFICATE-----\n"
    try:
        check_provenance(_F["signed_jpeg"], trust_anchors=pem)
    except RawproofError:
        pass
    try:
        Signer.from_files(pem, _F["device_key"]).close()
    except RawproofError:
        pass


_CASES = [_jpeg_case, _png_case, _webp_case, _scans_case, _dng_case, _json_case, _cert_case]


def test_one_input(data: bytes) -> None:
    """atheris entry: build one structured input and run it; only RawproofError may escape."""
    fdp = atheris.FuzzedDataProvider(data)
    case = _CASES[fdp.ConsumeIntInRange(0, len(_CASES) - 1)]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    rss0 = _status_mb("VmRSS:")
    case(fdp)
    grown = _status_mb("VmHWM:") - rss0
    assert grown < PEAK_BOUND_MB, f"{case.__name__}: peak RSS grew by {grown:.0f} MB"


def main() -> None:
    """Load the fixtures, then run atheris with the command-line libFuzzer flags."""
    from PIL import Image
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    seeds, pki = _FUZZ_DIR / "seeds" / "verify", _FUZZ_DIR / "pki"
    if not (seeds / "signed.jpg").is_file():
        sys.exit(f"fixtures missing under {_FUZZ_DIR}; run python fuzz/make_corpus.py first")
    signed_jpeg = (seeds / "signed.jpg").read_bytes()
    key = signed_jpeg.index(b"dmake")
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (10, 200, 30)).save(buf, "WEBP", lossless=True)
    tmp = tempfile.mkdtemp(prefix="fuzz_structure_", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    atexit.register(shutil.rmtree, tmp, True)
    fan_onnx = Path(tmp) / "fan.onnx"
    fan_onnx.write_bytes((_FUZZ_DIR / "models" / "fuzz_fan.onnx").read_bytes())
    fan_meta = json.loads((_FUZZ_DIR / "models" / "fuzz_fan.json").read_text())
    for k in ("trained_channel", "patch_size", "calibration", "decision", "config", "size_multiple"):
        fan_meta.pop(k, None)
    _F.update(
        signed_jpeg=signed_jpeg, bomb_jpeg=signed_jpeg[:key] + b"\x7a\x70\x00\x00\x00" + signed_jpeg[key + 5 :],
        signed_png=(seeds / "signed.png").read_bytes(), root_pem=(pki / "root.pem").read_bytes(),
        device_key=(pki / "device_key.pem").read_bytes(),
        device_der=x509.load_pem_x509_certificate((pki / "device_chain.pem").read_bytes()).public_bytes(serialization.Encoding.DER),
        webp_chunks=buf.getvalue()[12:], tmp=tmp, fan_onnx=fan_onnx, fan_json=fan_onnx.with_suffix(".json"),
        fan_meta=fan_meta, fp_image=np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8),
    )
    _F["png_store"] = manifest_stores(_F["signed_png"], "image/png")[0]
    atheris.Setup(sys.argv, atheris.instrument_func(test_one_input))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
