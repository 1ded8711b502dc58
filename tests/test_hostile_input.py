"""Hostile inputs across modules: each gives its documented error within bounded time and memory.

Complements tests/test_imageio.py (decoder rules) and tests/test_native_*.py (argument
checks): here are allocation bombs (declared sizes far above the data), NaN/Inf in
float inputs, degenerate sizes, odd image modes and big garbage files, pushed through
the native kernels, ``RawFrame``, ``develop()`` and ``verify()``. Time and memory are
bounded with ``time.perf_counter`` and ``resource.getrusage`` (peak RSS), in a fresh
subprocess where the input itself is large.
"""

from __future__ import annotations

import io
import json
import os
import resource
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _onnx_models import NipWeights, make_fan, make_nip, write_model
from rawproof import _native
from rawproof.develop import SensorBuffer, develop
from rawproof.errors import ImageFormatError, RawFormatError
from rawproof.keygen import generate_test_pki
from rawproof.provenance import CaptureInfo, ModelRef, ProvenanceState, Signer, check_provenance, sign_image
from rawproof.raw import CFA, MAX_PIXELS, RawFrame
from rawproof.runtime import clear_session_cache
from rawproof.verify import Verdict, VerifyReport, verify

TIME_BOUND_S = 10.0
RSS_BOUND_MB = 500.0
REPO_ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class _Bounded:
    """Context manager asserting the block took < TIME_BOUND_S and raised peak RSS by < RSS_BOUND_MB."""

    def __enter__(self) -> _Bounded:
        self.rss0, self.t0 = _peak_rss_mb(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed, grown = time.perf_counter() - self.t0, _peak_rss_mb() - self.rss0
        assert elapsed < TIME_BOUND_S, f"took {elapsed:.1f} s"
        assert grown < RSS_BOUND_MB, f"peak RSS grew by {grown:.0f} MB"


def _isolated(code: str, tmp_path: Path) -> dict:
    """Run ``code`` in a fresh interpreter; it sets ``result`` (a str); returns time, RSS growth, result."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import json, resource, time\n"
        "def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "import rawproof.verify, rawproof.develop\n"
        "r0, t0 = rss(), time.perf_counter()\n"
        + textwrap.dedent(code)
        + "\nprint(json.dumps({'seconds': time.perf_counter() - t0, 'rss_growth_mb': rss() - r0, 'result': result}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def _png_declaring(width: int, height: int, extra: bytes = b"") -> bytes:
    """PNG signature + IHDR of width x height RGB8 + ``extra`` chunks + a tiny IDAT + IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + extra
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def _jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(_encode(Image.new("RGB", (16, 16), (90, 120, 200)), "JPEG", quality=80))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models")
    write_model(make_nip(NipWeights()), d / "tiny.onnx", {"name": "tiny", "kind": "nip", "receptive_field": 5})
    write_model(make_fan(5), d / "fan.onnx", {"name": "fan", "kind": "fan", "classes": ["native", "a", "b", "c", "d"],
                                               "patch_size": 16, "trained_channel": {"downscale": 2}})
    return d


@pytest.fixture(autouse=True)
def _models_env(model_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RAWPROOF_MODELS", str(model_dir))
    yield
    clear_session_cache()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    return generate_test_pki(tmp_path_factory.mktemp("pki"), alg="es256")


# ----------------------------------------------------------------------------- native kernels


@pytest.mark.parametrize(("width", "height"), [(65535, 65535), (2**31, 2), (2, 2**31), (2**40, 2**40), (1 << 16, 1 << 15)])
@pytest.mark.parametrize("fmt", ["raw10", "raw12", "u16le", "u8"])
def test_native_unpack_huge_declared_size_refused_before_allocating(width: int, height: int, fmt: str) -> None:
    with _Bounded(), pytest.raises(ValueError):
        _native.unpack(b"\x00" * 64, width, height, fmt)


@pytest.mark.parametrize(("width", "height"), [(0, 0), (0, 2), (4, 0), (-4, 2), (4, -2)])
def test_native_unpack_zero_or_negative_size(width: int, height: int) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        _native.unpack(b"", width, height, "u8")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39, -1e39])
def test_native_mosaic_to_rggb_rejects_nonfinite_and_float32_overflow(bad: float) -> None:
    m = np.full((4, 4), 100, np.uint16)
    for black, white, wb in (([0, 0, 0, bad], 1000.0, None), ([0, 0, 0, 0], bad, None), ([0, 0, 0, 0], 1000.0, [1, bad, 1, 1])):
        with pytest.raises(ValueError):
            _native.mosaic_to_rggb(m, "RGGB", black, white, wb)


def test_native_mosaic_to_rggb_scale_overflow_is_refused_not_nan() -> None:
    # black one float32 ulp below white: wb / (white - black) overflows; a sample equal to
    # black would otherwise come out as 0 * inf = NaN.
    white = 1000.0
    black = float(np.nextafter(np.float32(white), np.float32(0)))
    m = np.full((2, 2), 999, np.uint16)
    with pytest.raises(ValueError, match="overflows float32"):
        _native.mosaic_to_rggb(m, "RGGB", [black] * 4, white, [3e38, 3e38, 3e38, 3e38])


def test_native_rggb_to_mosaic_infinities_clip_to_levels() -> None:
    stack = np.full((4, 2, 2), 0.5, np.float32)
    stack[0, 0, 0], stack[3, 1, 1] = np.inf, -np.inf
    m = _native.rggb_to_mosaic(stack, "RGGB", [64, 64, 64, 64], 1023.0)
    assert m[0, 0] == 1023 and m[3, 3] == 64  # +Inf -> white, -Inf -> black (numpy: clip then scale)
    stack[1, 0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _native.rggb_to_mosaic(stack, "RGGB", [64, 64, 64, 64], 1023.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("inverse", [False, True])
def test_native_dct_nonfinite_stays_in_its_block(bad: float, inverse: bool) -> None:
    img = np.random.default_rng(0).normal(0, 50, (16, 16, 3)).astype(np.float32)
    clean = _native.dct8x8(img, inverse)
    img[2, 3, 1] = bad
    out = _native.dct8x8(img, inverse)
    assert not np.isfinite(out[0:8, 0:8, 1]).all()
    mask = np.ones(out.shape, bool)
    mask[0:8, 0:8, 1] = False
    np.testing.assert_array_equal(out[mask], clean[mask])


# ----------------------------------------------------------------------------- RawFrame


@pytest.mark.parametrize(("width", "height"), [(65535, 65535), (65534, 65534), (1 << 15, 1 << 14), (2**31, 2)])
def test_rawframe_from_buffer_huge_declared_size(width: int, height: int) -> None:
    with _Bounded(), pytest.raises(RawFormatError, match="pixel limit|even"):
        RawFrame.from_buffer(b"\x00" * 1024, width, height, "raw12", "RGGB", 64, 4095)


def test_rawframe_from_buffer_at_the_limit_still_checks_length_first() -> None:
    side = int(np.sqrt(MAX_PIXELS))
    with _Bounded(), pytest.raises(RawFormatError, match="truncated"):
        RawFrame.from_buffer(b"\x00" * 1024, side, side, "u16le", "RGGB", 64, 4095)


@pytest.mark.parametrize(("width", "height"), [(0, 0), (0, 2), (2, 0), (1, 1), (65535, 1), (3, 2)])
def test_rawframe_degenerate_sizes(width: int, height: int) -> None:
    with pytest.raises(RawFormatError, match="even and at least 2x2"):
        RawFrame.from_buffer(b"\x00" * max(width * height, 0), width, height, "u8", "RGGB", 0, 255)


@pytest.mark.parametrize(("field", "value"), [
    ("black", np.nan), ("black", np.inf), ("black", (0, 0, np.nan, 0)), ("white", np.nan), ("white", np.inf),
    ("white", -np.inf), ("wb", (np.nan, 1, 1)), ("wb", (1, np.inf, 1, 1)), ("wb", (1, 1, 0, 1)),
    ("black", (1, 2)), ("black", (1, 2, 3, 4, 5)), ("black", ()),
])
def test_rawframe_nonfinite_or_malformed_levels(field: str, value: object) -> None:
    kw = {"black": 64.0, "white": 1023.0, "wb": None, field: value}
    with pytest.raises(RawFormatError):
        RawFrame(mosaic=np.zeros((4, 4), np.uint16), cfa=CFA.RGGB, **kw)
    with pytest.raises(RawFormatError):
        RawFrame.from_buffer(b"\x00" * 16, 4, 4, "u8", "RGGB", kw["black"], kw["white"], wb=kw["wb"])


def test_rawframe_gain_beyond_float32_is_a_raw_format_error_not_nan() -> None:
    frame = RawFrame(mosaic=np.full((4, 4), 64, np.uint16), cfa=CFA.RGGB, black=64, white=1023, wb=(1e300, 1, 1, 1))
    with pytest.raises(RawFormatError, match="float32 range"):
        frame.to_stack()


# ----------------------------------------------------------------------------- develop()


@pytest.mark.parametrize("buf", [
    SensorBuffer(b"\x00" * 64, 65535, 65535, "raw10", "RGGB", 64, 1023),
    SensorBuffer(b"\x00" * 64, 0, 0, "u8", "RGGB", 0, 255),
    SensorBuffer(b"\x00" * 64, 8, 8, "u8", "RGGB", float("nan"), 255),
    SensorBuffer(b"\x00" * 64, 8, 8, "u8", "RGGB", 0, float("inf")),
    SensorBuffer(b"\x00" * 64, 8, 8, "u8", "XYZW", 0, 255),
    SensorBuffer(b"\x00" * 64, 8, 8, "rgb24", "RGGB", 0, 255),
    SensorBuffer(b"\x00" * 64, 8, 8, "u8", "RGGB", 0, 255, wb=(1e300, 1, 1)),
    SensorBuffer(b"\x00" * 63, 8, 8, "u8", "RGGB", 0, 255),
    SensorBuffer(b"\x00" * 64, 8, 8, "u8", "RGGB", 0, 255, stride=-1),
])
def test_develop_hostile_sensor_buffers(buf: SensorBuffer) -> None:
    with _Bounded(), pytest.raises(RawFormatError):
        develop(buf)


@pytest.mark.parametrize(("h", "w"), [(2, 2), (2, 4096), (4096, 2)])
def test_develop_degenerate_but_valid_frames(h: int, w: int, pki) -> None:
    mosaic = np.random.default_rng(h + w).integers(0, 1024, (h, w), dtype=np.uint16)
    with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
        res = develop(RawFrame(mosaic=mosaic, cfa="GBRG", black=64, white=1023), tile=16, signer=signer, fmt="png")
    assert res.rgb.shape == (h, w, 3)
    report = verify(res.signed, device_anchors=pki.root_cert)
    assert report.verdict is Verdict.AUTHENTIC or report.verdict is Verdict.MANIPULATED
    assert (report.width, report.height) == (w, h)


@pytest.mark.parametrize("level", [0, 1023, 65535])
def test_develop_flat_frames(level: int) -> None:
    frame = RawFrame(mosaic=np.full((16, 16), level, np.uint16), cfa="RGGB", black=64, white=1023, wb=(8, 1, 1, 8))
    rgb = develop(frame).rgb[4:-4, 4:-4]  # away from the NIP's zero padding
    # The test NIP ends in a pixel shuffle, so flat in gives 2x2-periodic out; a NaN
    # turned into 0 by the quantiser would break the period.
    for dy in (0, 1):
        for dx in (0, 1):
            phase = rgb[dy::2, dx::2]
            assert np.all(phase == phase[0, 0])


def test_develop_garbage_raw_file(tmp_path: Path) -> None:
    p = tmp_path / "garbage.dng"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())
    with _Bounded(), pytest.raises(RawFormatError):
        develop(p)


# ----------------------------------------------------------------------------- verify()


def _hostile_images() -> dict[str, bytes]:
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    im = Image.fromarray(rgb)
    frames = [Image.fromarray(np.roll(rgb, k, axis=0)) for k in range(3)]
    return {
        "1x1.png": _encode(Image.new("RGB", (1, 1), (7, 8, 9)), "PNG"),
        "65535x1.png": _encode(Image.fromarray(rng.integers(0, 256, (1, 65535, 3), dtype=np.uint8)), "PNG"),
        "1x65500.jpg": _encode(Image.new("RGB", (1, 65500), (7, 8, 9)), "JPEG"),  # libjpeg maximum
        "cmyk.jpg": _encode(im.convert("CMYK"), "JPEG"),
        "gray16.png": _encode(Image.fromarray(rng.integers(0, 65536, (40, 48), dtype=np.uint16)), "PNG"),
        "rgba.png": _encode(im.convert("RGBA"), "PNG"),
        "la.png": _encode(im.convert("LA"), "PNG"),
        "palette.png": _encode(im.convert("P"), "PNG"),
        "bilevel.png": _encode(im.convert("1"), "PNG"),
        "anim.png": _encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "anim.webp": _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True),
    }


_DECODABLE = _hostile_images()


@pytest.mark.parametrize("name", sorted(_DECODABLE))
def test_verify_odd_but_decodable_images(name: str) -> None:
    with _Bounded():
        report = verify(_DECODABLE[name], heatmap=False)
    assert isinstance(report, VerifyReport) and report.provenance.state is ProvenanceState.NO_MANIFEST
    assert report.verdict.name.startswith("NO_PROVENANCE")
    if min(report.width, report.height) < 16:  # smaller than one FAN patch: reported, not raised
        assert report.verdict is Verdict.NO_PROVENANCE_UNANALYZED
    else:
        assert report.forensics.available
    if name.startswith("anim"):
        assert report.frames == 3


@pytest.mark.parametrize("data", [
    _png_declaring(65535, 65535), _jpeg_declaring(65535, 65535), _png_declaring(0, 0), _png_declaring(12000, 10000),
    b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    _encode(Image.new("RGB", (8, 8)), "GIF", save_all=True, append_images=[Image.new("RGB", (8, 8), (9, 9, 9))]),
    _encode(Image.new("F", (4, 4)), "TIFF"),
], ids=["png-65535^2", "jpeg-65535^2", "png-0x0", "png-120MP", "empty", "jpeg-magic",
        "png-magic", "webp-magic", "animated-gif", "float-tiff"])
def test_verify_hostile_headers(data: bytes) -> None:
    with _Bounded(), pytest.raises(ImageFormatError):
        verify(data)


def test_verify_bomb_with_c2pa_box_reports_its_signature_state() -> None:
    # A file that carries a (broken) manifest gets the verdict of its signature even though its
    # pixels are refused (a 4 G-pixel header): INVALID_SIGNATURE, analysis unavailable. Without a
    # manifest c2pa can find, the refusal is an error as for any unsigned file.
    data = _png_declaring(65535, 65535, _png_chunk(b"caBX", b"\x00" * 40 + os.urandom(64)))
    with _Bounded():
        if check_provenance(data).state is ProvenanceState.NO_MANIFEST:
            with pytest.raises(ImageFormatError):
                verify(data)
            return
        report = verify(data)
    assert report.verdict is Verdict.INVALID_SIGNATURE and report.exit_code == 1
    assert not report.forensics.available and "does not decode" in report.forensics.reason


def test_check_provenance_on_bomb_with_broken_manifest_is_not_a_pillow_error() -> None:
    # c2pa fails on the box, then the broken-image probe must not decode (or trip Pillow's
    # DecompressionBombError on) a 4 G-pixel header: it reports a broken manifest.
    data = _png_declaring(65535, 65535, _png_chunk(b"caBX", b"\x00" * 40 + b"\xff" * 64))
    with _Bounded():
        report = check_provenance(data)
    assert report.state in (ProvenanceState.INVALID, ProvenanceState.NO_MANIFEST)


@pytest.mark.parametrize("flip_at", [0.3, 0.6, 0.9])
def test_verify_bitflipped_and_truncated_signed_images(pki, flip_at: float) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    capture = CaptureInfo(camera_make="T", camera_model="C", device_id="d", raw_sha256="a" * 64,
                          nip=ModelRef("nip", "b" * 64), capture_time="2025-01-31T12:00:00+00:00")
    with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
        signed = sign_image(_encode(Image.fromarray(rgb), "JPEG", quality=90), "image/jpeg", capture, signer)
    assert verify(signed, device_anchors=pki.root_cert).verdict is not Verdict.INVALID_SIGNATURE
    pos = int(len(signed) * flip_at)
    flipped = signed[:pos] + bytes([signed[pos] ^ 0x10]) + signed[pos + 1:]
    for data in (flipped, signed[:pos]):
        try:
            report = verify(data, device_anchors=pki.root_cert)
        except ImageFormatError:
            continue
        assert report.verdict in (Verdict.INVALID_SIGNATURE, Verdict.AUTHENTIC, Verdict.MANIPULATED,
                                  Verdict.NO_PROVENANCE_CONSISTENT, Verdict.NO_PROVENANCE_MANIPULATED,
                                  Verdict.NO_PROVENANCE_UNANALYZED, Verdict.NO_PROVENANCE_INCONCLUSIVE)
        if report.verdict in (Verdict.AUTHENTIC, Verdict.MANIPULATED):
            # a flip c2pa still validates can only be outside the hashed content (e.g. in padding)
            assert data is flipped


@pytest.mark.parametrize("magic", [b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n"])
def test_verify_50mb_garbage_in_bounded_time_and_memory(magic: bytes, tmp_path: Path) -> None:
    probe = _isolated(f"""
        import os
        from rawproof.errors import ImageFormatError
        from rawproof.verify import verify
        data = {magic!r} + os.urandom(50 * 1024 * 1024)
        try:
            verify(data)
            result = "no error"
        except ImageFormatError as e:
            result = "ImageFormatError"
    """, tmp_path)
    assert probe["result"] == "ImageFormatError"
    assert probe["seconds"] < TIME_BOUND_S and probe["rss_growth_mb"] < RSS_BOUND_MB, probe


def test_develop_50mb_garbage_sensor_buffer_in_bounded_time_and_memory(tmp_path: Path) -> None:
    probe = _isolated("""
        import os
        from rawproof.errors import RawFormatError
        from rawproof.develop import SensorBuffer, develop
        from _onnx_models import NipWeights, make_nip, write_model
        import pathlib, tempfile
        d = pathlib.Path(tempfile.mkdtemp())
        write_model(make_nip(NipWeights()), d / "tiny.onnx", {"name": "tiny", "kind": "nip", "receptive_field": 5})
        data = os.urandom(50 * 1024 * 1024)
        try:
            develop(SensorBuffer(data, 65536, 65536, "raw12", "RGGB", 64, 4095), model=d / "tiny.onnx")
            result = "no error"
        except RawFormatError:
            result = "RawFormatError"
    """, tmp_path)
    assert probe["result"] == "RawFormatError"
    assert probe["seconds"] < TIME_BOUND_S and probe["rss_growth_mb"] < RSS_BOUND_MB, probe
