"""Tests of rawproof.forensics with a toy FAN trained and exported inside the test session.

References: torch ``F.interpolate`` for the resize, onnxruntime called directly for the
per-patch logits, numpy re-computations of the aggregation, scipy.optimize for calibration.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from _toy_fan import PATCH, blur, noise_image, toy_fan_path
from rawproof.errors import ModelError
from rawproof.forensics import (
    Calibration,
    DecisionRule,
    Traces,
    aggregate,
    analyze,
    LEGEND_HEIGHT,
    LEGEND_WIDTH,
    channel_mismatch,
    describe_regions,
    find_regions,
    fan_config,
    fit_calibration,
    measure_robustness,
    patch_origins,
    render_heatmap,
    resize_bilinear,
    softmax,
)
from rawproof.models import load_model_info


@pytest.fixture(scope="module")
def toy_fan():
    return load_model_info(toy_fan_path())


@pytest.mark.parametrize("shape,out", [((8, 10), (4, 5)), ((9, 7), (4, 3)), ((5, 6), (11, 13)), ((30, 40), (17, 9))])
def test_resize_bilinear_matches_torch(shape, out):
    x = np.random.default_rng(0).random((*shape, 3)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None], size=out, mode="bilinear",
                        align_corners=False, antialias=False)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(resize_bilinear(x, *out), ref, atol=1e-5)  # torch indexes in float32


def test_resize_by_two_is_box_average():
    x = np.random.default_rng(1).random((6, 8, 3)).astype(np.float32)
    box = x.reshape(3, 2, 4, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(resize_bilinear(x, 3, 4), box, atol=1e-6)


def test_patch_origins():
    np.testing.assert_array_equal(patch_origins(100, 32, 16), [0, 16, 32, 48, 64, 68])
    np.testing.assert_array_equal(patch_origins(64, 32, 32), [0, 32])
    np.testing.assert_array_equal(patch_origins(32, 32, 16), [0])
    assert patch_origins(31, 32, 16).size == 0
    with pytest.raises(ValueError):
        patch_origins(10, 4, 0)


def test_softmax_matches_formula():
    z = np.random.default_rng(2).normal(0, 5, (4, 3))
    e = np.exp(z / 2.0)
    np.testing.assert_allclose(softmax(z, 2.0), e / e.sum(axis=1, keepdims=True), rtol=1e-12)
    assert np.isfinite(softmax(np.array([[1e4, 0.0]]))).all()


def test_aggregate_matches_numpy_and_decision_rules():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2, (3, 4, 3))
    cal = Calibration(temperature=1.7, platt_a=1.3, platt_b=-0.2)
    agg = aggregate(z, 1, cal, DecisionRule(0.9, 0.5, 0.99))
    e = np.exp(z / 1.7)
    p = e / e.sum(axis=-1, keepdims=True)
    pm = 1 - p[..., 1]
    s = pm.mean()
    np.testing.assert_allclose(agg.probabilities, p, rtol=1e-12)
    np.testing.assert_allclose(agg.p_manipulated, pm, rtol=1e-12)
    np.testing.assert_allclose(agg.class_probabilities, p.reshape(-1, 3).mean(0), rtol=1e-12)
    assert agg.raw_score == pytest.approx(s)
    assert agg.score == pytest.approx(1 / (1 + np.exp(-(1.3 * np.log(s / (1 - s)) - 0.2))))
    assert agg.manipulated_fraction == pytest.approx((pm >= 0.5).mean())
    # A local manipulation: 3 of 12 patches certain, the rest native.
    z2 = np.zeros((3, 4, 2))
    z2[..., 0] = 10
    z2[0, :3] = [0, 10]
    assert aggregate(z2, 0, decision=DecisionRule(area_threshold=0.25)).traces is Traces.MANIPULATED
    assert aggregate(z2, 0, decision=DecisionRule(area_threshold=0.3)).traces is Traces.CONSISTENT
    with pytest.raises(ValueError):
        aggregate(np.zeros((0, 2)), 0)


def test_calibration_metadata_roundtrip_and_errors():
    cal = Calibration(2.0, 0.5, 0.1)
    assert Calibration.from_metadata(json.loads(json.dumps(cal.to_metadata()))) == cal
    assert Calibration.from_metadata(None) == Calibration()
    for bad in ({"temperature": -1}, {"platt": [1]}, "x"):
        with pytest.raises(ModelError):
            Calibration.from_metadata(bad)
    with pytest.raises(ModelError):
        DecisionRule.from_metadata({"area_threshold": 0})


def test_fit_calibration_matches_scipy():
    from scipy.optimize import minimize, minimize_scalar

    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 40)
    logits = [4.0 * np.eye(3)[y] + rng.normal(0, 2.5, (20, 3)) for y in labels]
    cal = fit_calibration(logits, labels, native_index=0)
    z = np.concatenate(logits)
    y = np.repeat(labels, 20)

    def nll(log_t: float) -> float:
        lp = np.log(softmax(z, np.exp(log_t)))
        return -lp[np.arange(len(y)), y].mean()

    t_ref = np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20)), method="bounded", options={"xatol": 1e-8}).x)
    assert cal.temperature == pytest.approx(t_ref, rel=1e-3)
    s = np.clip(np.array([1 - softmax(l, cal.temperature)[:, 0].mean() for l in logits]), 1e-7, 1 - 1e-7)
    x = np.log(s / (1 - s))
    t = (labels != 0).astype(float)

    def loss(w):
        q = w[0] * x + w[1]
        return np.sum(np.logaddexp(0, q) - t * q) + 0.5e-3 * (w @ w)

    w_ref = minimize(loss, [1.0, 0.0], method="BFGS", options={"gtol": 1e-10}).x
    assert (cal.platt_a, cal.platt_b) == pytest.approx(tuple(w_ref), rel=1e-3, abs=1e-4)
    with pytest.raises(ValueError, match="both"):
        fit_calibration(logits[:2], [1, 2])
    with pytest.raises(ValueError):
        fit_calibration(logits, labels[:-1])


def test_fan_config_defaults_and_errors(toy_fan, tmp_path):
    cfg = fan_config(toy_fan)
    assert cfg.patch_size == PATCH and cfg.native_index == 0
    assert cfg.trained_channel == {"downscale": 2}  # a blur detector: no codec in its channel
    assert cfg.calibration == Calibration() and cfg.decision == DecisionRule()
    import dataclasses

    with pytest.raises(ModelError, match="native"):
        fan_config(dataclasses.replace(toy_fan, classes=("a", "b")))
    with pytest.raises(ModelError, match="patch_size"):
        fan_config(dataclasses.replace(toy_fan, metadata={**toy_fan.metadata, "patch_size": "big"}))


def test_analyze_grid_logits_and_aggregation(toy_fan):
    rgb = noise_image(100, 150, seed=11)
    fa = analyze(rgb, toy_fan, stride=20)
    np.testing.assert_array_equal(fa.grid_y, patch_origins(100, PATCH, 20))
    np.testing.assert_array_equal(fa.grid_x, patch_origins(150, PATCH, 20))
    assert fa.grid_y[-1] + PATCH == 100 and fa.grid_x[-1] + PATCH == 150  # the grid covers the image
    assert fa.logits.shape == (len(fa.grid_y), len(fa.grid_x), 2)
    # Reference logits: onnxruntime directly, one patch at a time.
    sess = ort.InferenceSession(str(toy_fan.path), providers=["CPUExecutionProvider"])
    x = rgb.astype(np.float32) / 255
    for r, c in [(0, 0), (2, 3), (len(fa.grid_y) - 1, len(fa.grid_x) - 1)]:
        y0, x0 = fa.grid_y[r], fa.grid_x[c]
        patch = np.ascontiguousarray(x[y0:y0 + PATCH, x0:x0 + PATCH].transpose(2, 0, 1)[None])
        np.testing.assert_allclose(fa.logits[r, c], sess.run(["logits"], {"rgb": patch})[0][0], atol=1e-4)
    p = np.exp(fa.logits.astype(np.float64))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(fa.p_manipulated, p[..., 1], atol=1e-9)
    assert fa.score == pytest.approx(p[..., 1].mean(), abs=1e-7)
    assert fa.class_probabilities["gaussian"] == pytest.approx(p[..., 1].mean(), abs=1e-9)
    assert fa.traces is Traces.CONSISTENT and fa.available and fa.fan_ms > 0
    assert not fa.logits.flags.writeable


def test_analyze_detects_the_toy_manipulation(toy_fan):
    rgb = noise_image(96, 160, seed=12)
    assert analyze(blur(rgb), toy_fan).traces is Traces.MANIPULATED
    half = rgb.copy()
    half[:, :80] = blur(rgb)[:, :80]
    fa = analyze(half, toy_fan)
    assert fa.traces is Traces.MANIPULATED
    left = fa.grid_x + PATCH <= 80
    right = fa.grid_x >= 80
    assert (fa.p_manipulated[:, left] > 0.5).all() and (fa.p_manipulated[:, right] < 0.5).all()
    assert set(describe_regions(fa)) >= {"top-left", "middle-left", "bottom-left"}
    assert not {"top-right", "middle-right", "bottom-right"} & set(describe_regions(fa))
    assert list(fa.class_fractions()) == ["gaussian"]


def test_analyze_scale_and_small_images(toy_fan):
    rgb = noise_image(81, 130, seed=13)
    fa = analyze(rgb, toy_fan, scale=0.5)
    assert fa.analysed_size == (40, 65) and fa.scale == 0.5
    assert fa.grid_y[-1] + PATCH == 40
    small = analyze(noise_image(31, 200, seed=1), toy_fan)
    assert small.traces is Traces.UNAVAILABLE and "smaller than one FAN patch" in small.reason
    with pytest.raises(ValueError):
        analyze(rgb, toy_fan, scale=1.5)
    with pytest.raises(ValueError):
        analyze(rgb.astype(np.float32), toy_fan)  # type: ignore[arg-type]


def test_render_heatmap(toy_fan):
    rgb = noise_image(96, 160, seed=14)
    half = rgb.copy()
    half[:, :80] = blur(rgb)[:, :80]
    fa = analyze(half, toy_fan)
    grid = np.asarray(render_heatmap(fa, legend=False))
    assert grid.shape == (len(fa.grid_y) * 16, len(fa.grid_x) * 16, 3)
    assert np.asarray(render_heatmap(fa)).shape == (len(fa.grid_y) * 16 + LEGEND_HEIGHT, LEGEND_WIDTH, 3)
    with_legend = np.asarray(render_heatmap(fa, half))
    assert with_legend.shape == (96 + LEGEND_HEIGHT, LEGEND_WIDTH, 3)
    over = np.asarray(render_heatmap(fa, half, legend=False))
    assert over.shape == (96, 160, 3)
    assert np.array_equal(with_legend[:96, :160], over)
    grey = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(half).convert("L"), np.int16)
    # Right side (native): untinted grey; left side: tinted with the gaussian colour (blue).
    assert np.abs(over[:, 140:, 0].astype(np.int16) - grey[:, 140:]).max() <= 1
    assert (over[:, :20, 2].astype(int) - over[:, :20, 0]).mean() > 50


def test_render_heatmap_on_thin_preview(toy_fan):
    """A 48 x 4648 image's verify preview is 11 x 1024 (the short side rounded up by 0.43 px)."""
    from rawproof.verify import _preview

    rgb = noise_image(4648, 48, seed=15)
    fa = analyze(rgb, toy_fan)
    preview = _preview(rgb)
    assert preview.shape[:2] == (1024, 11)
    assert np.asarray(render_heatmap(fa, preview, legend=False)).shape == (1024, 11, 3)
    with pytest.raises(ValueError, match="aspect ratio"):
        render_heatmap(fa, preview[:, :6].copy())


def test_measure_robustness(toy_fan):
    images = [(noise_image(96, 96, seed=s), "native") for s in (20, 21)]
    images += [(blur(noise_image(96, 96, seed=s)), "gaussian") for s in (22, 23)]
    rows = measure_robustness(images, toy_fan, scales=(1.0, 0.5), jpeg_qualities=(None, 90))
    assert [(r["scale"], r["jpeg_quality"]) for r in rows] == [(1.0, None), (1.0, 90), (0.5, None), (0.5, 90)]
    assert rows[0]["n"] == 4 and rows[0]["accuracy"] == 1.0 and rows[0]["binary_accuracy"] == 1.0
    assert all(r["n"] == 4 for r in rows)
    with pytest.raises(ValueError, match="not a FAN class"):
        measure_robustness([(images[0][0], "sharpen")], toy_fan)


class TestFitDecision:
    def test_thresholds_hold_the_false_positive_rate(self) -> None:
        from rawproof.forensics import Calibration, aggregate, fit_decision

        rng = np.random.default_rng(0)
        native = [rng.normal(0, 1, (4, 4, 5)) + np.array([1.0, 0, 0, 0, 0]) for _ in range(200)]
        rule = fit_decision(native, 0, Calibration(), false_positive_rate=0.1)
        flagged = [aggregate(z, 0, Calibration(), rule).traces.value for z in native]
        assert np.mean([f == "manipulated" for f in flagged]) <= 0.1
        assert 0 < rule.score_threshold <= 1 and 0 < rule.area_threshold <= 1

    def test_bad_arguments(self) -> None:
        from rawproof.forensics import Calibration, fit_decision

        with pytest.raises(ValueError):
            fit_decision([], 0, Calibration())
        with pytest.raises(ValueError):
            fit_decision([np.zeros((1, 5))], 0, Calibration(), false_positive_rate=1.5)


@pytest.mark.parametrize(
    ("fmt", "q", "sub", "inside"),
    [("JPEG", 50, "444", True), ("JPEG", 55, "444", True), ("JPEG", 56, "444", False), ("JPEG", 44, "444", False),
     ("JPEG", 50, "420", False), ("JPEG", None, "444", False), ("PNG", None, None, False), ("WEBP", None, None, False)],
)
def test_channel_mismatch_fixed_channel(fmt, q, sub, inside):
    why = channel_mismatch({"downscale": 2, "jpeg_quality": 50}, fmt, q, sub)
    assert (why is None) is inside
    if not inside:
        assert "trained behind JPEG q50 444" in why


def test_channel_mismatch_randomised_channel_and_no_codec():
    trained = {"downscale": 2, "jpeg_quality": 50, "jpeg_qualities": [50, 30, 90], "subsampling": ["444", "420"]}
    assert channel_mismatch(trained, "JPEG", 75, "420") is None
    assert channel_mismatch(trained, "JPEG", 25, "444") is None
    assert "JPEG q97 420" in channel_mismatch(trained, "JPEG", 97, "420")
    assert "q30-90 444/420" in channel_mismatch(trained, "JPEG", 70, "422")
    # a FAN trained without a codec in its channel is not checked
    assert channel_mismatch({"downscale": 2}, "PNG", None, None) is None


def _grid(flags: list[str], p_on: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """p_manipulated and 2-class probabilities of a grid drawn as text ('#' flagged)."""
    pm = np.array([[p_on if ch == "#" else 0.05 for ch in row] for row in flags])
    return pm, np.stack([1 - pm, pm], axis=-1)


class TestRegions:
    def test_components_boxes_and_order(self) -> None:
        pm, probs = _grid(["##....#",
                           "##....#",
                           ".......",
                           "...###.",
                           "#......"])
        regions = find_regions(pm, probs, ["native", "gaussian"], DecisionRule(patch_threshold=0.5, region_threshold=3.5))
        assert [(g.cells, g.patches) for g in regions] == [((0, 0, 2, 2), 4), ((3, 3, 4, 6), 3), ((0, 6, 2, 7), 2), ((4, 0, 5, 1), 1)]
        assert regions[0].mass == pytest.approx(4 * 0.95) and regions[0].dominant_class == "gaussian"
        assert [g.significant for g in regions] == [True, False, False, False]

    def test_every_region_is_listed(self) -> None:
        pm, probs = _grid(["#.#.#.#.#.#", "...........", "#.#.#.#.#.#"])
        assert len(find_regions(pm, probs, ["native", "x"], DecisionRule())) == 12

    def test_region_rule_decides_where_area_would_not(self) -> None:
        pm, _ = _grid(["........", "..##....", "..##....", "........", "........"])
        z = np.log(np.stack([1 - pm, pm], axis=-1))  # logits whose softmax is (1 - pm, pm)
        area_only = DecisionRule(score_threshold=0.99, patch_threshold=0.5, area_threshold=0.25)
        assert aggregate(z, 0, decision=area_only).traces is Traces.CONSISTENT  # 4/40 = 10% < 25%
        local = DecisionRule(score_threshold=0.99, patch_threshold=0.5, area_threshold=0.25, region_threshold=3.0)
        agg = aggregate(z, 0, decision=local, classes=["native", "gaussian"])
        assert agg.traces is Traces.MANIPULATED and agg.regions[0].significant and agg.regions[0].cells == (1, 2, 3, 4)
        # Overlapping patches weigh less: at stride = patch / 2 each counts a quarter.
        assert aggregate(z, 0, decision=local, patch_weight=0.25).traces is Traces.CONSISTENT

    def test_fit_decision_region_threshold_is_the_native_quantile(self) -> None:
        from rawproof.forensics import fit_decision

        rng = np.random.default_rng(3)
        native = [rng.normal(0, 1, (6, 6, 3)) + np.array([1.5, 0, 0]) for _ in range(300)]
        rule = fit_decision(native, 0, Calibration(), false_positive_rate=0.06)
        assert rule.region_threshold is not None
        heaviest = []
        for z in native:
            p = softmax(z)
            regs = find_regions(1 - p[..., 0], p, ["native", "a", "b"], rule)
            heaviest.append(max((g.mass for g in regs), default=0.0))
        assert np.mean(np.array(heaviest) >= rule.region_threshold) <= 0.02 + 1e-9
        assert np.mean([aggregate(z, 0, Calibration(), rule).traces is Traces.MANIPULATED for z in native]) <= 0.06
        flat = fit_decision([z.reshape(-1, 3) for z in native], 0, Calibration(), false_positive_rate=0.06)
        assert flat.region_threshold is None

    def test_region_metadata_errors(self) -> None:
        assert DecisionRule.from_metadata({"region_threshold": 2.5}).region_threshold == 2.5
        assert DecisionRule.from_metadata({"region_threshold": None}).region_threshold is None
        with pytest.raises(ModelError, match="region_threshold"):
            DecisionRule.from_metadata({"region_threshold": 0})
        with pytest.raises(ModelError, match="area_threshold"):
            DecisionRule.from_metadata({"area_threshold": None})

    def test_analyze_maps_boxes_to_input_pixels(self, toy_fan) -> None:
        small = noise_image(96, 128, seed=31)
        small[32:64, 32:96] = blur(small)[32:64, 32:96]  # two patches of the 32 px grid
        # Each pixel repeated 2 x 2: the 2x bilinear downscale (a 2x2 box) gives ``small`` back exactly.
        edited = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
        fa = analyze(edited, toy_fan, scale=0.5)
        assert fa.regions
        g = fa.regions[0]
        r0, c0, r1, c1 = g.cells
        assert g.box == (fa.grid_x[c0] * 2, fa.grid_y[r0] * 2, (fa.grid_x[c1 - 1] + PATCH) * 2, (fa.grid_y[r1 - 1] + PATCH) * 2)
        assert g.box == (64, 64, 192, 128)
        assert fa.to_dict()["regions"][0]["box"] == list(g.box)

    def test_fit_region_threshold_keeps_the_other_thresholds(self) -> None:
        from rawproof.forensics import fit_region_threshold

        rng = np.random.default_rng(4)
        native = [rng.normal(0, 1, (5, 7, 2)) + np.array([1.0, 0]) for _ in range(100)]
        base = DecisionRule(score_threshold=0.9, patch_threshold=0.6, area_threshold=0.3)
        rule = fit_region_threshold(native, 0, Calibration(), base, false_positive_rate=0.1)
        assert (rule.score_threshold, rule.patch_threshold, rule.area_threshold) == (0.9, 0.6, 0.3)
        masses = []
        for z in native:
            p = softmax(z)
            masses.append(max((g.mass for g in find_regions(p[..., 1], p, ["native", "a"], base)), default=0.0))
        assert np.mean(np.array(masses) >= rule.region_threshold) <= 0.1
        assert np.mean(np.array(masses) >= np.quantile(masses, 0.85)) > 0.1  # not trivially high
        with pytest.raises(ValueError, match="logit grid"):
            fit_region_threshold([z.reshape(-1, 2) for z in native], 0, Calibration(), base)
        with pytest.raises(ValueError, match="false_positive_rate"):
            fit_region_threshold(native, 0, Calibration(), base, false_positive_rate=1.0)


def test_heatmap_outside_the_channel_is_marked_not_evidence(toy_fan):
    from dataclasses import replace

    rgb = noise_image(96, 160, seed=14)
    half = rgb.copy()
    half[:, :80] = blur(rgb)[:, :80]
    fa = analyze(half, toy_fan)
    tinted = np.asarray(render_heatmap(fa, half, legend=False)).astype(int)
    assert (tinted[..., 2] - tinted[..., 0]).max() > 50  # the blur is tinted blue in a finding
    void = np.asarray(render_heatmap(replace(fa, out_of_channel="JPEG q90 444"), half, legend=False)).astype(int)
    assert np.array_equal(void[..., 0], void[..., 1]) and np.array_equal(void[..., 1], void[..., 2])  # grey only
    assert (void == 255).all(axis=2).sum() > 96  # crossed out in white
    other = np.asarray(render_heatmap(fa, half, legend=False, not_evidence="no rawproof traces")).astype(int)
    assert np.array_equal(other, void)
    panel = np.asarray(render_heatmap(replace(fa, out_of_channel="JPEG q90 444"), half))[96:]
    assert (panel[..., 0] > 200).sum() > 50 and (panel[..., 0] - panel[..., 2] > 100).any()  # the red NOT EVIDENCE line
