"""Tests of rawproof.raw: constructors, CFA phase, levels, errors. References: numpy, rawpy/LibRaw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rawproof.errors import RawFormatError
from rawproof.raw import CFA, RawFrame, bit_depth, plausible_wb, stack_to_srgb_primaries

# Where each canonical channel (R, Gr, Gb, B) sits in the 2x2 cell, written out by hand.
SITES = {
    "RGGB": {"R": (0, 0), "Gr": (0, 1), "Gb": (1, 0), "B": (1, 1)},
    "BGGR": {"R": (1, 1), "Gr": (1, 0), "Gb": (0, 1), "B": (0, 0)},
    "GRBG": {"R": (0, 1), "Gr": (0, 0), "Gb": (1, 1), "B": (1, 0)},
    "GBRG": {"R": (1, 0), "Gr": (1, 1), "Gb": (0, 0), "B": (0, 1)},
}
CHANNEL_OF = {"R": 0, "Gr": 1, "Gb": 1, "B": 2}


def mosaic_numpy(rgb: np.ndarray, cfa: str) -> np.ndarray:
    """Reference mosaic: sample an H x W x 3 image at each site's colour."""
    out = np.zeros(rgb.shape[:2], rgb.dtype)
    for name, (y, x) in SITES[cfa].items():
        out[y::2, x::2] = rgb[y::2, x::2, CHANNEL_OF[name]]
    return out


def chart(dn_black: float = 64, dn_white: float = 1023) -> np.ndarray:
    """2x2 patches of 8x8 px: red, green / blue, white; uint16 DN with black offset."""
    lin = np.zeros((16, 16, 3))
    lin[:8, :8] = (0.9, 0.05, 0.05)
    lin[:8, 8:] = (0.05, 0.9, 0.05)
    lin[8:, :8] = (0.05, 0.05, 0.9)
    lin[8:, 8:] = (0.9, 0.9, 0.9)
    return np.round(dn_black + lin * (dn_white - dn_black)).astype(np.uint16)


@pytest.mark.parametrize("cfa", list(SITES))
def test_cfa_orientation_all_patterns(cfa: str) -> None:
    dn = chart()
    m = mosaic_numpy(dn, cfa)
    f = RawFrame.from_buffer(m.astype("<u2").tobytes(), 16, 16, "u16le", cfa, 64, 1023)
    assert f.cfa is CFA(cfa)
    s = f.to_stack()
    assert s.shape == (4, 8, 8) and s.dtype == np.float32
    red, green, blue = s[:, :4, :4].mean((1, 2)), s[:, :4, 4:].mean((1, 2)), s[:, 4:, :4].mean((1, 2))
    assert red[0] > 0.85 and red[3] < 0.1
    assert green[1] > 0.85 and green[2] > 0.85 and green[0] < 0.1
    assert blue[3] > 0.85 and blue[0] < 0.1


def test_black_level_per_channel() -> None:
    rng = np.random.default_rng(1)
    black = (10.0, 20.0, 30.0, 40.0)
    m = rng.integers(0, 1024, size=(8, 10)).astype(np.uint16)
    f = RawFrame.from_buffer(m.tobytes(), 10, 8, "u16le", "GBRG", black, 1000.0)
    s = f.to_stack(white_balance=False)
    for c, name in enumerate(("R", "Gr", "Gb", "B")):
        y, x = SITES["GBRG"][name]
        ref = np.clip((m[y::2, x::2] - black[c]) / (1000.0 - black[c]), 0, 1)
        np.testing.assert_allclose(s[c], ref, atol=1e-6)


def test_wb_applied_and_clipped() -> None:
    m = np.full((4, 4), 500, np.uint16)
    f = RawFrame.from_buffer(m.tobytes(), 4, 4, "u16le", "RGGB", 0, 1000, wb=(2.5, 1.0, 1.5))
    assert f.wb == (2.5, 1.0, 1.0, 1.5) and f.wb_source == "given"
    np.testing.assert_allclose(f.to_stack()[:, 0, 0], [1.0, 0.5, 0.5, 0.75], atol=1e-6)


def test_stride_and_u8() -> None:
    m = np.arange(6 * 4, dtype=np.uint8).reshape(4, 6)
    padded = np.zeros((4, 8), np.uint8)
    padded[:, :6] = m
    f = RawFrame.from_buffer(padded.tobytes(), 6, 4, "u8", "RGGB", 0, 255, stride=8)
    np.testing.assert_array_equal(f.mosaic, m)
    m16 = np.arange(24, dtype="<u2").reshape(4, 6) * 100
    p16 = np.zeros((4, 7), "<u2")
    p16[:, :6] = m16
    f = RawFrame.from_buffer(p16.tobytes()[: 14 * 3 + 12], 6, 4, "u16le", "RGGB", 0, 4095, stride=14)
    np.testing.assert_array_equal(f.mosaic, m16)


def pack_mipi(m: np.ndarray, bits: int) -> bytes:
    """MIPI CSI-2 RAW10/12/14 packing, written from the spec with numpy."""
    v = m.astype(np.uint32).reshape(-1, {10: 4, 12: 2, 14: 4}[bits])
    hi = (v >> (bits - 8)).astype(np.uint8)
    lo = v & ((1 << (bits - 8)) - 1)
    if bits == 10:
        tail = (lo[:, 0] | lo[:, 1] << 2 | lo[:, 2] << 4 | lo[:, 3] << 6)[:, None]
    elif bits == 12:
        tail = (lo[:, 0] | lo[:, 1] << 4)[:, None]
    else:
        word = lo[:, 0] | lo[:, 1] << 6 | lo[:, 2] << 12 | lo[:, 3] << 18
        tail = np.stack([word & 0xFF, word >> 8 & 0xFF, word >> 16 & 0xFF], axis=1)
    return np.concatenate([hi, tail.astype(np.uint8)], axis=1).tobytes()


@pytest.mark.parametrize("bits", [10, 12, 14])
def test_packed_formats_against_numpy_packer(bits: int) -> None:
    rng = np.random.default_rng(bits)
    m = rng.integers(0, 1 << bits, size=(6, 8)).astype(np.uint16)
    f = RawFrame.from_buffer(pack_mipi(m, bits), 8, 6, f"raw{bits}", "RGGB", 0, (1 << bits) - 1)
    np.testing.assert_array_equal(f.mosaic, m)


def test_shift_detects_and_removes_zero_lsbs() -> None:
    m = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 4).astype("<u2")
    bd = bit_depth(m)
    assert (bd.zero_lsbs, bd.container_bits, bd.effective_bits) == (2, 8, 6)
    plain = RawFrame.from_buffer(m.tobytes(), 8, 8, "u16le", "RGGB", 8, 1020)
    shifted = RawFrame.from_buffer(m.tobytes(), 8, 8, "u16le", "RGGB", 8, 1020, shift=2)
    np.testing.assert_array_equal(shifted.mosaic, m >> 2)
    assert shifted.black == (2.0,) * 4 and shifted.white == 255.0
    np.testing.assert_allclose(shifted.to_stack(), plain.to_stack(), atol=1e-6)
    with pytest.raises(RawFormatError, match="non-zero low bits"):
        RawFrame.from_buffer((m + 1).tobytes(), 8, 8, "u16le", "RGGB", 8, 1020, shift=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"buf": b"\0" * 31}, "truncated"),
        ({"buf": b"\0" * 33}, "longer than declared"),
        ({"fmt": "raw9"}, "unknown pixel format"),
        ({"cfa": "RGBG"}, "unknown CFA"),
        ({"black": 1023}, "black < white"),
        ({"width": 3, "buf": b"\0" * 24}, "even"),
        ({"width": 1 << 16, "height": 1 << 16}, "pixel limit"),
        ({"shift": 9}, "shift"),
    ],
)
def test_from_buffer_errors(kwargs: dict, match: str) -> None:
    args = {"buf": b"\0" * 32, "width": 4, "height": 4, "fmt": "u16le", "cfa": "RGGB", "black": 0, "white": 1023}
    args.update(kwargs)
    with pytest.raises(RawFormatError, match=match):
        RawFrame.from_buffer(args.pop("buf"), args.pop("width"), args.pop("height"), args.pop("fmt"), args.pop("cfa"),
                             args.pop("black"), args.pop("white"), **args)


def test_plausible_wb_rule() -> None:
    assert plausible_wb([1.0, 0.4037, 0.684, 0.0]) == pytest.approx((2.477, 1.0, 1.0, 1.694), abs=1e-3)
    assert plausible_wb([0.0, 1.0, 0.0, 0.0]) is None  # Kodak DC120: no as-shot WB
    assert plausible_wb([0.5, 1.0, 2.0]) is None  # red gain < 1
    assert plausible_wb([2.0, 1.0, 20.0]) is None
    assert plausible_wb([np.nan, 1, 1]) is None


def test_from_file_errors(tmp_path: Path) -> None:
    with pytest.raises(RawFormatError, match="no such file"):
        RawFrame.from_file(tmp_path / "missing.dng")
    bogus = tmp_path / "bogus.dng"
    bogus.write_bytes(b"II*\0" + b"\0" * 100)
    with pytest.raises(RawFormatError, match="LibRaw"):
        RawFrame.from_file(bogus)


# ---------------------------------------------------------------- data folder


def test_dng_matches_rawpy(shared_data: Path) -> None:
    import rawpy

    path = shared_data / "raw" / "canon550d_colorchart.dng"
    f = RawFrame.from_file(path)
    assert (f.width, f.height, f.cfa, f.white) == (1734, 1156, CFA.RGGB, 15000.0)
    assert f.black == (2056.0,) * 4 and f.wb_source == "camera"
    assert f.wb == pytest.approx((2.477, 1.0, 1.0, 1.694), abs=1e-3)
    with rawpy.imread(str(path)) as raw:
        vis = raw.raw_image_visible.copy()
        colors = raw.raw_colors_visible.copy()
        rgb_cam = raw.color_matrix[:, :3].copy()
    np.testing.assert_array_equal(f.mosaic, vis)
    s = f.to_stack(white_balance=False)
    red = vis[colors == 0].reshape(s.shape[1:])
    np.testing.assert_allclose(s[0], np.clip((red - 2056.0) / (15000 - 2056), 0, 1), atol=1e-6)
    np.testing.assert_allclose(f.ccm, rgb_cam, atol=1e-5)
    assert f.camera.startswith("Canon EOS")


def test_manifest_raws_open_with_documented_values(data_manifest: dict, shared_data: Path) -> None:
    n = 0
    for e in data_manifest["files"]:
        if e["kind"] in ("photo", "matrix"):
            continue
        f = RawFrame.from_manifest_entry(e, shared_data)
        n += 1
        assert f.cfa is CFA.parse(e["cfa"]), e["path"]
        assert f.white == float(e["white"]), e["path"]
        assert f.black == (float(e["black"] or 0),) * 4, e["path"]
        if e["container"] == "dng":  # LibRaw reports the active area, see details.active_size
            assert [f.width, f.height] == e["details"]["active_size"]
        else:
            assert (f.width, f.height) == (e["width"], e["height"]), e["path"]
    assert n == 12


def test_extra_camera_files_open(shared_data: Path) -> None:
    files = sorted((shared_data / "extra" / "raw").rglob("*.*"))
    if not files:
        pytest.skip("extra/raw not present")
    for p in files:
        f = RawFrame.from_file(p)
        expected = "GRBG" if p.suffix == ".KDC" else "RGGB"
        assert f.cfa.value == expected, p.name
        if p.suffix == ".CRW":
            assert f.black == (32.0,) * 4 and f.white == 1023.0 and f.wb_source == "camera"
            assert (f.width, f.height) == (2312, 1720)
            assert f.camera.startswith("Canon PowerShot")
        else:
            assert f.camera.startswith("Eastman Kodak")


def test_crw_wb_and_ccm_match_libraw_half_size(shared_data: Path) -> None:
    """Our WB + CCM (from rgb_xyz_matrix) on the 2x2-binned stack vs LibRaw's half_size linear sRGB."""
    import rawpy

    p = shared_data / "extra" / "raw" / "canon_powershot_g2" / "CRW_0304.CRW"
    if not p.is_file():
        pytest.skip("extra/raw not present")
    f = RawFrame.from_file(p)
    s = f.to_stack()
    ours = np.clip(np.stack([s[0], (s[1] + s[2]) / 2, s[3]], -1) @ f.ccm.T, 0, 1)
    with rawpy.imread(str(p)) as raw:
        ref = raw.postprocess(
            half_size=True, use_camera_wb=True, no_auto_bright=True, gamma=(1, 1), output_bps=16,
            output_color=rawpy.ColorSpace.sRGB, adjust_maximum_thr=0.0, highlight_mode=rawpy.HighlightMode.Clip, user_flip=0,
        ).astype(np.float32) / 65535
    assert ref.shape == ours.shape
    assert float(np.abs(ref - ours).mean()) < 1e-4


class TestStackToSrgbPrimaries:
    def test_matches_per_quad_reference(self) -> None:
        rng = np.random.default_rng(3)
        stack = rng.uniform(0.0, 0.6, size=(4, 6, 10)).astype(np.float32)
        ccm = np.array([[1.7, -0.6, -0.1], [-0.2, 1.5, -0.3], [0.05, -0.45, 1.4]], dtype=np.float32)
        out = stack_to_srgb_primaries(stack, ccm)
        r, gr, gb, b = stack.astype(np.float64)
        g = (gr + gb) / 2
        want = np.stack([
            ccm[0, 0] * r + ccm[0, 1] * g + ccm[0, 2] * b,
            ccm[1, 0] * r + ccm[1, 1] * gr + ccm[1, 2] * b,
            ccm[1, 0] * r + ccm[1, 1] * gb + ccm[1, 2] * b,
            ccm[2, 0] * r + ccm[2, 1] * g + ccm[2, 2] * b,
        ]).clip(0, 1)
        np.testing.assert_allclose(out, want, atol=1e-6)
        assert out.dtype == np.float32

    def test_grey_stays_grey_and_none_is_identity(self) -> None:
        ccm = np.array([[1.7, -0.6, -0.1], [-0.2, 1.5, -0.3], [0.05, -0.45, 1.4]], dtype=np.float32)
        grey = np.full((4, 2, 2), 0.3, np.float32)
        np.testing.assert_allclose(stack_to_srgb_primaries(grey, ccm), grey, atol=1e-5)
        assert stack_to_srgb_primaries(grey, None) is grey

    def test_bad_matrix(self) -> None:
        with pytest.raises(RawFormatError):
            stack_to_srgb_primaries(np.zeros((4, 2, 2), np.float32), np.eye(2))

    def test_frame_to_stack_colour(self) -> None:
        mosaic = np.full((4, 4), 1000, np.uint16)
        ccm = np.array([[2.0, -1.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 2.0]], np.float32)
        frame = RawFrame(mosaic=mosaic, cfa=CFA.RGGB, black=(0, 0, 0, 0), white=4000, ccm=ccm)
        np.testing.assert_allclose(frame.to_stack(colour=True), stack_to_srgb_primaries(frame.to_stack(), ccm))
