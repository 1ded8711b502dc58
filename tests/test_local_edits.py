"""rawproof_train.local_edits and the helpers of rawproof_train.image_eval / origin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rawproof_train.image_eval import box_iou, summarise
from rawproof_train.local_edits import LOCAL_EDITS, draw_box, local_edit
from rawproof_train.manipulations import gaussian
from rawproof_train.origin import fit_logistic


def img(seed: int, h: int = 120, w: int = 160) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_boxes_cover_the_requested_share():
    rng = np.random.default_rng(0)
    shares = []
    for _ in range(300):
        x0, y0, x1, y1 = draw_box(120, 160, rng, (0.05, 0.20))
        assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 120
        shares.append((x1 - x0) * (y1 - y0) / (120 * 160))
    assert 0.04 < min(shares) and max(shares) < 0.215


@pytest.mark.parametrize("kind", LOCAL_EDITS)
def test_edits_touch_only_the_box(kind):
    rgb, donor = img(1), img(2, 200, 200)
    out, (x0, y0, x1, y1) = local_edit(rgb, kind, np.random.default_rng(3), donor=donor)
    mask = np.zeros(rgb.shape[:2], bool)
    mask[y0:y1, x0:x1] = True
    assert np.array_equal(out[~mask], rgb[~mask]) and not np.array_equal(out[mask], rgb[mask])
    region = out[y0:y1, x0:x1]
    bh, bw = y1 - y0, x1 - x0
    if kind == "paste":
        assert any(np.array_equal(region, donor[y:y + bh, x:x + bw]) for y in range(201 - bh) for x in range(201 - bw))
    elif kind == "copymove":
        hits = [(y, x) for y in range(121 - bh) for x in range(161 - bw) if np.array_equal(region, rgb[y:y + bh, x:x + bw])]
        assert hits and all(y + bh <= y0 or y >= y1 or x + bw <= x0 or x >= x1 for y, x in hits)
    elif kind == "blur":
        # Independent of the margin: the box's interior equals the whole image blurred there.
        t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        ref = (gaussian(t)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        assert np.array_equal(region[2:-2, 2:-2], ref[y0 + 2:y1 - 2, x0 + 2:x1 - 2])


def test_edit_errors():
    with pytest.raises(ValueError, match="unknown local edit"):
        local_edit(img(0), "smudge", np.random.default_rng(0))
    with pytest.raises(ValueError, match="donor"):
        local_edit(img(0), "paste", np.random.default_rng(0))


def test_box_iou_and_summary():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    rows = [{"group": "local", "kind": "blur", "channel": "web75", "manipulated": m, "inconclusive": False,
             "no_rawproof_traces": False, "iou": i, "truth_share": s}
            for m, i, s in [(True, 0.5, 0.1), (True, 0.1, 0.04), (False, 0.0, 0.15), (True, 0.4, 0.2)]]
    e = summarise(rows)["local/blur/web75"]
    assert e["manipulated"]["k"] == 3 and e["manipulated"]["n"] == 4
    assert e["iou_ge_0.3_of_detections"]["k"] == 2 and e["iou_ge_0.3_of_detections"]["n"] == 3
    assert e["manipulated_5_20pct"]["n"] == 3 and e["manipulated_5_20pct"]["k"] == 2
    lo, hi = e["manipulated"]["ci95"]
    assert lo < 0.75 < hi


def test_fit_logistic_against_scipy():
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (200, 3))
    t = (x @ [1.5, -1.0, 0.5] + rng.normal(0, 1, 200) > 0.8).astype(float)
    w, b = fit_logistic(x, t, ridge=0.1)
    sw = np.where(t == 1, 0.5 / t.mean(), 0.5 / (1 - t.mean()))

    def loss(v):
        z = x @ v[:3] + v[3]
        return np.sum(sw * (np.logaddexp(0, z) - t * z)) + 0.05 * np.sum(v[:3] ** 2)

    ref = minimize(loss, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
    assert np.allclose(np.append(w, b), ref, atol=1e-4)
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic(x, np.zeros(200))
