"""rawproof.fingerprint: residual, ML estimate, zero-mean, DFT Wiener, PCE, file format, enroll/match, CLI."""

from __future__ import annotations

import argparse
import struct

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from rawproof.errors import FingerprintError
from rawproof.fingerprint import (
    FORMAT_VERSION,
    PCE_THRESHOLD,
    Fingerprint,
    align_fingerprint,
    downscale_fingerprint,
    enroll,
    estimate_fingerprint,
    luminance,
    match,
    noise_residual,
    pce,
    register,
    wiener_dft,
    zero_mean,
)

SIZE = 128


def _scene(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    s = ndimage.gaussian_filter(rng.random((size, size)), 6)
    return (s - s.min()) / (s.max() - s.min()) * 150 + 50


def _shot(k: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uint8 RGB frame of a sensor with PRNU k: smooth scene x (1 + k) + noise."""
    y = _scene(rng, k.shape[0]) * (1 + k) + rng.normal(0, 1.0, k.shape)
    g = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


@pytest.fixture(scope="module")
def cameras() -> tuple[list[np.ndarray], list[Fingerprint]]:
    rng = np.random.default_rng(1)
    ks = [rng.normal(0, 0.01, (SIZE, SIZE)) for _ in range(2)]
    fps = [enroll([_shot(k, rng) for _ in range(8)], threads=2, meta={"camera": f"cam{i}"}) for i, k in enumerate(ks)]
    return ks, fps


class TestLuminance:
    def test_weights_and_scaling(self) -> None:
        rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
        np.testing.assert_allclose(luminance(rgb)[0], [0.299 * 255, 0.587 * 255, 0.114 * 255], rtol=1e-6)
        np.testing.assert_allclose(luminance(rgb.astype(np.float32) / 255), luminance(rgb), rtol=1e-5)
        assert luminance(np.full((4, 5), 7, np.uint8)).shape == (4, 5)

    def test_encoded_png(self, tmp_path) -> None:
        rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(tmp_path / "a.png")
        np.testing.assert_allclose(luminance(tmp_path / "a.png"), luminance(rgb))

    @pytest.mark.parametrize("bad", [np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4), np.int32)])
    def test_rejects(self, bad: np.ndarray) -> None:
        with pytest.raises(FingerprintError):
            luminance(bad)


def test_wiener_shrink_matches_scipy_reference() -> None:
    from rawproof.fingerprint import _wiener_shrink

    def reference(c: np.ndarray, nv: float) -> np.ndarray:  # Goljan's WaveNoise with scipy's box filter
        v = np.minimum.reduce([np.maximum(ndimage.uniform_filter(c * c, w, mode="reflect") - nv, 0) for w in (3, 5, 7, 9)])
        return c * nv / (v + nv)

    for shape in [(2, 3), (7, 5), (40, 33)]:
        c = np.random.default_rng(0).normal(0, 4, shape)
        np.testing.assert_allclose(_wiener_shrink(c, 9.0), reference(c, 9.0), rtol=1e-9, atol=1e-12)


class TestResidual:
    def test_flat_image_has_no_residual(self) -> None:
        assert np.abs(noise_residual(np.full((64, 80), 120, np.uint8))).max() < 1e-3

    def test_residual_tracks_added_noise(self) -> None:
        rng = np.random.default_rng(0)
        noise = rng.normal(0, 2.0, (96, 100))
        r = noise_residual((_scene(rng, 100)[:96] + noise).astype(np.float32) / 255)
        assert r.shape == (96, 100) and r.dtype == np.float32
        assert np.corrcoef(r.ravel(), noise.ravel())[0, 1] > 0.6

    def test_too_small(self) -> None:
        with pytest.raises(FingerprintError):
            noise_residual(np.zeros((8, 64), np.uint8))


def test_zero_mean_every_phase_row_and_column() -> None:
    k = zero_mean(np.random.default_rng(0).normal(3, 1, (10, 12)))
    for dy in (0, 1):
        for dx in (0, 1):
            sub = k[dy::2, dx::2].astype(np.float64)
            np.testing.assert_allclose(sub.sum(axis=0), 0, atol=1e-4)
            np.testing.assert_allclose(sub.sum(axis=1), 0, atol=1e-4)


def test_wiener_dft_removes_periodic_keeps_white() -> None:
    rng = np.random.default_rng(0)
    white = rng.normal(0, 1, (128, 128))
    periodic = 2.0 * np.cos(2 * np.pi * np.arange(128) / 8)[None, :] * np.ones((128, 1))
    out = wiener_dft(white + periodic).astype(np.float64)
    assert abs((out * periodic).mean()) < 0.1 * (periodic * periodic).mean()
    assert np.corrcoef(out.ravel(), white.ravel())[0, 1] > 0.9


def test_estimate_recovers_exact_prnu() -> None:
    rng = np.random.default_rng(0)
    k = rng.normal(0, 0.01, (16, 16))
    imgs = [rng.uniform(20, 200, (16, 16)) for _ in range(3)]
    imgs[0][0, 0] = 255  # saturated: left out of the estimate
    est, n = estimate_fingerprint((i * k, i) for i in imgs)
    expected = sum(i * k * i * (i < 250) for i in imgs) / (sum((i * (i < 250)) ** 2 for i in imgs) + 1.0)
    assert n == 3
    np.testing.assert_allclose(est, expected, rtol=1e-5)
    with pytest.raises(FingerprintError):
        estimate_fingerprint([])
    with pytest.raises(FingerprintError):
        estimate_fingerprint([(imgs[0], imgs[0]), (imgs[0][:8], imgs[0][:8])])


class TestPCE:
    def test_matches_direct_definition(self) -> None:
        rng = np.random.default_rng(0)
        a, b = rng.normal(size=(24, 20)), rng.normal(size=(24, 20))
        a += 0.3 * b
        a0, b0 = a - a.mean(), b - b.mean()
        # Circular cross-correlation by explicit shifts (independent of the FFT route).
        xc = np.array([[np.sum(a0 * np.roll(b0, (dy, dx), axis=(0, 1))) for dx in range(20)] for dy in range(24)])
        mask = np.ones_like(xc, bool)
        mask[np.ix_(np.arange(-5, 6) % 24, np.arange(-5, 6) % 20)] = False
        expected = np.sign(xc[0, 0]) * xc[0, 0] ** 2 / np.mean(xc[mask] ** 2)
        assert pce(a, b) == pytest.approx(expected, rel=1e-9)

    def test_unrelated_is_small(self) -> None:
        rng = np.random.default_rng(1)
        assert abs(pce(rng.normal(size=(64, 64)), rng.normal(size=(64, 64)))) < 20
        with pytest.raises(FingerprintError):
            pce(np.zeros((4, 4)), np.zeros((4, 5)))


class TestEnrollMatch:
    def test_genuine_and_impostor(self, cameras) -> None:
        ks, fps = cameras
        rng = np.random.default_rng(7)
        for i, k in enumerate(ks):
            test = _shot(k, rng)
            results = [match(test, fp) for fp in fps]
            assert results[i].match and results[i].pce > 10 * PCE_THRESHOLD
            assert not results[1 - i].match and abs(results[1 - i].pce) < PCE_THRESHOLD
            assert results[i].alignment == "same size" and results[i].fingerprint_frames == 8

    def test_downscaled_image_uses_downscaled_fingerprint(self, cameras) -> None:
        ks, fps = cameras
        img = _shot(ks[0], np.random.default_rng(8)).astype(np.float32)
        small = np.rint(img.reshape(SIZE // 2, 2, SIZE // 2, 2, 3).mean(axis=(1, 3))).astype(np.uint8)
        r = match(small, fps[0])
        assert r.alignment == "downscaled x2" and (r.width, r.height) == (SIZE // 2, SIZE // 2) and r.match
        np.testing.assert_allclose(align_fingerprint(fps[0].k, SIZE // 2, SIZE // 2)[0], downscale_fingerprint(fps[0].k, 2))

    def test_centre_crop_and_larger(self, cameras) -> None:
        ks, fps = cameras
        img = _shot(ks[1], np.random.default_rng(9))
        r = match(img[14:14 + 100, 10:10 + 108], fps[1])
        assert r.alignment == "centre crop" and r.match
        with pytest.raises(FingerprintError):
            match(np.zeros((SIZE + 2, SIZE, 3), np.uint8), fps[1])

    def test_enroll_rejects_mixed_sizes(self) -> None:
        with pytest.raises(FingerprintError):
            enroll([np.zeros((32, 32), np.uint8), np.zeros((32, 48), np.uint8)])


class TestFile:
    def test_roundtrip(self, cameras, tmp_path) -> None:
        fp = cameras[1][0]
        back = Fingerprint.load(fp.save(tmp_path / "d.fp"))
        np.testing.assert_array_equal(back.k, fp.k)
        assert back.frames == fp.frames and back.meta == fp.meta and back.meta["camera"] == "cam0"
        half = Fingerprint.load(fp.save(tmp_path / "h.fp", dtype="float16"))
        np.testing.assert_allclose(half.k, fp.k, rtol=1e-3, atol=1e-7)
        assert (tmp_path / "h.fp").stat().st_size < (tmp_path / "d.fp").stat().st_size
        assert match(_shot(cameras[0][0], np.random.default_rng(3)), tmp_path / "h.fp").match

    @pytest.fixture()
    def blob(self, cameras, tmp_path) -> bytes:
        return cameras[1][0].save(tmp_path / "d.fp").read_bytes()

    def test_truncated(self, blob) -> None:
        for cut in (10, len(blob) - 1):
            with pytest.raises(FingerprintError, match="truncated"):
                Fingerprint.from_bytes(blob[:cut])
        with pytest.raises(FingerprintError, match="trailing"):
            Fingerprint.from_bytes(blob + b"\0")

    def test_bit_flip(self, blob) -> None:
        for pos in (len(blob) - 5, 70):  # payload, and the metadata right after the 56-byte header
            bad = bytearray(blob)
            bad[pos] ^= 0x10
            with pytest.raises(FingerprintError, match="checksum"):
                Fingerprint.from_bytes(bytes(bad))

    def test_wrong_magic_version_dtype(self, blob) -> None:
        with pytest.raises(FingerprintError, match="magic"):
            Fingerprint.from_bytes(b"XXXX" + blob[4:])
        with pytest.raises(FingerprintError, match="version"):
            Fingerprint.from_bytes(blob[:4] + struct.pack("<H", FORMAT_VERSION + 1) + blob[6:])
        with pytest.raises(FingerprintError, match="dtype"):
            Fingerprint.from_bytes(blob[:6] + bytes([9]) + blob[7:])

    def test_missing_file(self, tmp_path) -> None:
        with pytest.raises(FingerprintError):
            Fingerprint.load(tmp_path / "none.fp")


def test_cli_enroll(cameras, tmp_path) -> None:
    rng = np.random.default_rng(11)
    paths = []
    for i in range(6):
        p = tmp_path / f"f{i}.png"
        Image.fromarray(_shot(cameras[0][1], rng)).save(p)
        paths.append(str(p))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["enroll", *paths, "-o", str(tmp_path / "cam.fp"), "--camera", "test cam", "--threads", "1"])
    assert args.func(args) == 0
    fp = Fingerprint.load(tmp_path / "cam.fp")
    assert fp.frames == 6 and fp.meta["camera"] == "test cam" and (fp.width, fp.height) == (SIZE, SIZE)
    assert match(_shot(cameras[0][1], rng), fp).match


class TestVerifyIntegration:
    def test_verify_reports_device_match(self, cameras, tmp_path) -> None:
        from rawproof.verify import format_report, verify

        ks, fps = cameras
        fps[0].save(tmp_path / "cam0.fp")
        img = tmp_path / "shot.png"
        Image.fromarray(_shot(ks[0], np.random.default_rng(21))).save(img)
        report = verify(img, fingerprint=tmp_path / "cam0.fp", heatmap=False)
        assert report.device is not None and report.device.match and report.device.threshold == PCE_THRESHOLD
        d = report.to_dict()["device"]
        assert d["match"] is True and d["pce"] > PCE_THRESHOLD and d["alignment"] == "same size"
        assert "device: MATCH, PCE" in format_report(report, "shot.png")
        other = verify(img, fingerprint=fps[1], heatmap=False)
        assert other.device is not None and not other.device.match
        assert verify(img, heatmap=False).to_dict()["device"] is None

    def test_cli_fingerprint_option_and_corrupt_file(self, cameras, tmp_path, capsys) -> None:
        import json

        from rawproof.verify import register as register_verify

        ks, fps = cameras
        img = tmp_path / "shot.png"
        Image.fromarray(_shot(ks[1], np.random.default_rng(22))).save(img)
        blob = fps[1].save(tmp_path / "cam1.fp").read_bytes()
        parser = argparse.ArgumentParser()
        register_verify(parser.add_subparsers())
        args = parser.parse_args(["verify", str(img), "--json", "--fingerprint", str(tmp_path / "cam1.fp")])
        args.func(args)
        assert json.loads(capsys.readouterr().out)["device"]["match"] is True
        (tmp_path / "bad.fp").write_bytes(blob[:-3])
        args = parser.parse_args(["verify", str(img), "--fingerprint", str(tmp_path / "bad.fp")])
        with pytest.raises(FingerprintError):
            args.func(args)
