"""Image-level evaluation of ``rawproof.verify`` on whole images through platform channels (``image-eval``).

The product's protocol: each held-out image is developed whole by the ONNX NIP through the
SDK (``rawproof_train.foreign``), possibly edited, sent through a named channel of the
platform set (:data:`rawproof.platforms.NAMED_CHANNELS`, real codecs), and the served bytes
go to :func:`rawproof.verify` with the FAN under test. Groups:

- ``untouched``: rawproof images, every channel;
- ``foreign``: images no rawproof NIP developed (photos, reference ISP, LibRaw), every channel;
- ``global``: rawproof images sharpened, blurred, resampled or JPEG-80'd (the FAN classes'
  operations, ``rawproof_train.forensic_eval.manipulate``), channels ``--edit-channels``;
- ``local``: one region of 3-20 % of the frame pasted from another image, blurred, sharpened
  or copy-moved (``rawproof_train.local_edits``), ``--local-draws`` per image and kind; the
  reported box (the significant region overlapping the truth most, else any region) is
  scored by IoU with the truth box mapped into the served image.

Rates carry Wilson 95 % intervals. ``--calibrate all`` first fits the FAN's calibration and
decision rule (incl. the region mass threshold, :func:`rawproof.forensics.fit_decision`) on
the val split's readings inside the FAN's channels; ``--calibrate regions`` adds only the
region rule (:func:`rawproof.forensics.fit_region_threshold`) to the FAN's existing ones;
both write into ``--fan`` (as ``forensic-eval --calibrate`` does). Output: ``image_eval.json`` (every reading) and
``image_eval.md`` (the tables) in ``--out``; the command that made them heads the tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rawproof.forensics import fan_config, fit_calibration, fit_decision, fit_region_threshold
from rawproof.models import ModelKind, find_model
from rawproof.platforms import NAMED_CHANNELS, PlatformChannel, named_channels
from rawproof.verify import Verdict, VerifyReport, verify
from rawproof_train.evaluate import wilson_interval
from rawproof_train.foreign import WholeImage, foreign_images, rawproof_images
from rawproof_train.local_edits import LOCAL_EDITS, local_edit

__all__ = ["GLOBAL_EDITS", "box_iou", "read", "collect", "summarise", "markdown", "register"]

log = logging.getLogger(__name__)

GLOBAL_EDITS = ("sharpen", "gaussian", "resample", "jpeg")
"""Global manipulations (FAN class names; ``jpeg`` = real libjpeg q80)."""

MANIPULATED = {Verdict.NO_PROVENANCE_MANIPULATED, Verdict.MANIPULATED}


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (exclusive ends)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def read(rgb: np.ndarray, channel: PlatformChannel, fan: str | Path, truth: tuple[int, int, int, int] | None = None) -> tuple[dict[str, Any], VerifyReport]:
    """Send ``rgb`` through ``channel``, verify the served bytes; one result row (and the report)."""
    data = channel.apply(rgb)
    rep = verify(data, fan=fan, threads=1)
    fa = rep.forensics
    row: dict[str, Any] = {
        "verdict": rep.verdict.value, "manipulated": rep.verdict in MANIPULATED,
        "inconclusive": rep.verdict is Verdict.NO_PROVENANCE_INCONCLUSIVE,
        "no_rawproof_traces": rep.verdict is Verdict.NO_RAWPROOF_TRACES,
        "score": fa.score, "p_foreign": None if rep.origin is None else rep.origin.p_foreign,
        "regions": [g.to_dict() for g in fa.regions if g.significant],
    }
    if truth is not None:
        sx, sy = rep.width / rgb.shape[1], rep.height / rgb.shape[0]
        t = (truth[0] * sx, truth[1] * sy, truth[2] * sx, truth[3] * sy)
        significant = [g for g in fa.regions if g.significant]
        row["truth_box"] = list(t)
        row["truth_share"] = (truth[2] - truth[0]) * (truth[3] - truth[1]) / (rgb.shape[0] * rgb.shape[1])
        row["iou"] = max((box_iou(t, g.box) for g in (significant or fa.regions)), default=0.0)
    return row, rep


def collect(ours: list[WholeImage], theirs: list[WholeImage], fan: str | Path, channels: dict[str, PlatformChannel],
            edit_channels: dict[str, PlatformChannel], local_draws: int, seed: int, split: str,
            keep_reports: bool = False) -> tuple[list[dict[str, Any]], list[tuple[VerifyReport, str]]]:
    """Every reading of one split (module docstring); with ``keep_reports`` also (report, label) pairs for calibration."""
    from rawproof_train.forensic_eval import manipulate

    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    reports: list[tuple[VerifyReport, str]] = []

    def add(rgb: np.ndarray, ch_name: str, group: str, kind: str, image: str, label: str,
            truth: tuple[int, int, int, int] | None = None) -> None:
        row, rep = read(rgb, (channels | edit_channels)[ch_name], fan, truth)
        rows.append({"split": split, "group": group, "kind": kind, "channel": ch_name, "image": image, **row})
        if keep_reports:
            reports.append((rep, label))

    for im in tqdm(ours, desc=f"{split} rawproof", unit="img"):
        for name in channels:
            add(im.rgb, name, "untouched", "none", im.id, "native")
        for kind in GLOBAL_EDITS:
            edited = manipulate(np.array(im.rgb), kind)  # a writable copy: torch.from_numpy warns on read-only arrays
            for name in edit_channels:
                add(edited, name, "global", kind, im.id, kind)
        for kind in LOCAL_EDITS:
            for _ in range(local_draws):
                pool = [d for d in theirs + ours if d.id != im.id] or [im]
                donor = pool[int(rng.integers(len(pool)))].rgb
                try:
                    edited, box = local_edit(np.asarray(im.rgb), kind, rng, donor=np.asarray(donor))
                except ValueError:  # donor smaller than the box: paste from the image's own mirror
                    edited, box = local_edit(np.asarray(im.rgb), kind, rng, donor=np.asarray(im.rgb)[::-1, ::-1])
                for name in edit_channels:
                    add(edited, name, "local", kind, im.id, "local", box)
    for im in tqdm(theirs, desc=f"{split} foreign", unit="img"):
        for name in channels:
            add(im.rgb, name, "foreign", im.origin, im.id, "foreign")
    return rows, reports


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(k, n) if n else (float("nan"), float("nan"))
    return {"k": k, "n": n, "rate": k / n if n else None, "ci95": [lo, hi]}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates by (group, kind, channel) with Wilson 95 % intervals."""
    out: dict[str, Any] = {}
    keys = sorted({(r["group"], r["kind"], r["channel"]) for r in rows})
    for g, k, c in keys:
        sel = [r for r in rows if (r["group"], r["kind"], r["channel"]) == (g, k, c)]
        n = len(sel)
        entry = {
            "manipulated": _rate(sum(r["manipulated"] for r in sel), n),
            "inconclusive": _rate(sum(r["inconclusive"] for r in sel), n),
            "no_rawproof_traces": _rate(sum(r["no_rawproof_traces"] for r in sel), n),
        }
        if g == "local":
            det = [r for r in sel if r["manipulated"]]
            entry["iou_ge_0.3_of_detections"] = _rate(sum(r["iou"] >= 0.3 for r in det), len(det))
            mid = [r for r in sel if 0.05 <= r["truth_share"] <= 0.20]
            entry["manipulated_5_20pct"] = _rate(sum(r["manipulated"] for r in mid), len(mid))
        out[f"{g}/{k}/{c}"] = entry
    return out


def _pct(e: dict[str, Any]) -> str:
    if not e["n"]:
        return "-"
    lo, hi = e["ci95"]
    return f"{100 * e['rate']:.0f}% ({e['k']}/{e['n']}; {100 * lo:.0f}-{100 * hi:.0f})"


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    """The results tables (Markdown)."""
    lines = [
        "# Image-level evaluation through platform channels (generated)",
        "",
        f"Generated by `{meta['command']}` ({meta['date']}, {meta['seconds']:.0f} s). NIP `{meta['nip']}`, FAN `{meta['fan']}`"
        f"{', origin head `' + meta['origin_head'] + '`' if meta['origin_head'] else ', no origin head'}. Held-out split `{meta['split']}`:"
        f" {meta['n_rawproof']} rawproof images (developed whole by the NIP), {meta['n_foreign']} foreign images"
        f" ({meta['foreign_kinds']}). Each cell: rate (k/n; Wilson 95% interval in %).",
        "Channels: " + "; ".join(f"`{n}` = {c}" for n, c in meta["channels"].items()) + ".",
        "",
        "## Untouched rawproof images and foreign images, per channel",
        "",
        "| channel | untouched: read manipulated | untouched: inconclusive | untouched: no rawproof traces | foreign: read manipulated | foreign: no rawproof traces | foreign: inconclusive |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in meta["channels"]:
        u = summary.get(f"untouched/none/{c}")
        fkeys = [k for k in summary if k.startswith("foreign/") and k.endswith(f"/{c}")]

        def pool(field: str, keys: list[str] = fkeys) -> dict[str, Any]:
            return _rate(sum(summary[x][field]["k"] for x in keys), sum(summary[x][field]["n"] for x in keys))

        if u is None:
            continue
        lines.append(f"| `{c}` | {_pct(u['manipulated'])} | {_pct(u['inconclusive'])} | {_pct(u['no_rawproof_traces'])} | "
                     f"{_pct(pool('manipulated'))} | {_pct(pool('no_rawproof_traces'))} | {_pct(pool('inconclusive'))} |")
    lines += ["", "## Global manipulations (detected = verdict manipulated)", "",
              "| channel | " + " | ".join(GLOBAL_EDITS) + " | inconclusive (all) |", "|---|" + "---|" * (len(GLOBAL_EDITS) + 1)]
    for c in meta["edit_channels"]:
        cells = [_pct(summary[f"global/{k}/{c}"]["manipulated"]) for k in GLOBAL_EDITS if f"global/{k}/{c}" in summary]
        inc = [summary[f"global/{k}/{c}"]["inconclusive"] for k in GLOBAL_EDITS if f"global/{k}/{c}" in summary]
        lines.append(f"| `{c}` | " + " | ".join(cells) + f" | {_pct(_rate(sum(e['k'] for e in inc), sum(e['n'] for e in inc)))} |")
    lines += ["", "## Local manipulations (one region, 3-20% of the frame)", "",
              "| channel | edit | detected (3-20%) | detected (5-20%) | box IoU >= 0.3 among detections | inconclusive |", "|---|---|---|---|---|---|"]
    for c in meta["edit_channels"]:
        for k in LOCAL_EDITS:
            e = summary.get(f"local/{k}/{c}")
            if e:
                lines.append(f"| `{c}` | {k} | {_pct(e['manipulated'])} | {_pct(e['manipulated_5_20pct'])} | "
                             f"{_pct(e['iou_ge_0.3_of_detections'])} | {_pct(e['inconclusive'])} |")
    if meta.get("calibration"):
        lines += ["", f"Calibration fitted on the `val` split and written into the FAN: `{json.dumps(meta['calibration'])}`."]
    return "\n".join(lines) + "\n"


def _calibrate(reports: list[tuple[VerifyReport, str]], fan: str, what: str, fpr: float) -> dict[str, Any]:
    """``what="all"``: calibration and every threshold; ``"regions"``: only ``region_threshold``, the rest kept."""
    from rawproof_train.forensic_eval import write_calibration

    info = find_model(fan, ModelKind.FAN)
    classes, cfg = list(info.classes), fan_config(info)
    usable = [(r.forensics, lab) for r, lab in reports if r.forensics.available and not r.forensics.out_of_channel]
    natives = [fa for fa, lab in usable if lab == "native"]
    weight = min(1.0, (natives[0].stride / natives[0].patch_size) ** 2)
    native = classes.index("native")
    if what == "all":
        # Image labels for the temperature/Platt fit: global edits by class; locals are left out (mixed patches).
        fit = [(fa.logits, classes.index(lab)) for fa, lab in usable if lab in classes]
        cal = fit_calibration([z for z, _ in fit], [y for _, y in fit], native_index=native)
        rule = fit_decision([fa.logits for fa in natives], native, cal, false_positive_rate=fpr, patch_weight=weight)
    else:
        cal = cfg.calibration
        rule = fit_region_threshold([fa.logits for fa in natives], native, cal, cfg.decision, false_positive_rate=fpr,
                                    patch_weight=weight)
    write_calibration(fan, cal.to_metadata(), asdict(rule))
    return {"fitted": what, "fpr": fpr, "calibration": cal.to_metadata(), "decision": asdict(rule),
            "val_readings": len(usable), "val_native": len(natives)}


def _run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    channels, edit_channels = named_channels(args.channels), named_channels(args.edit_channels)
    fan_info = find_model(args.fan, ModelKind.FAN)
    cal = None
    if args.calibrate:
        ours = rawproof_images(args.data, args.nip, ("val",))
        if args.calibrate == "regions":  # natives only: through the channels, nothing edited
            reports = [(read(im.rgb, ch, fan_info.path)[1], "native") for im in ours for ch in channels.values()]
        else:
            _, reports = collect(ours, [], fan_info.path, channels, edit_channels, 1, args.seed + 1, "val", keep_reports=True)
        cal = _calibrate(reports, str(fan_info.path), args.calibrate, args.fpr)
        fan_info = find_model(args.fan, ModelKind.FAN)
        log.info("calibrated: %s", cal)
    split = tuple(args.split.split(","))
    ours, theirs = rawproof_images(args.data, args.nip, split), foreign_images(args.data, tuple(args.foreign_split.split(",")))
    rows, _ = collect(ours, theirs, fan_info.path, channels, edit_channels, args.local_draws, args.seed, args.split)
    summary = summarise(rows)
    from rawproof.origin import find_origin_head

    head = find_origin_head(fan_info)
    meta = {
        "command": "python -m rawproof_train " + " ".join(shlex.quote(a) for a in sys.argv[1:]), "date": time.strftime("%Y-%m-%d"), "seconds": time.perf_counter() - t0,
        "nip": find_model(args.nip, ModelKind.NIP).name, "fan": fan_info.name, "fan_sha256": fan_info.sha256,
        "origin_head": None if head is None else head.name, "split": args.split, "foreign_split": args.foreign_split,
        "n_rawproof": len(ours), "n_foreign": len(theirs),
        "foreign_kinds": ", ".join(f"{k} {sum(im.origin == k for im in theirs)}" for k in sorted({im.origin for im in theirs})),
        "channels": {n: c.name for n, c in channels.items()}, "edit_channels": list(edit_channels), "calibration": cal,
    }
    (out / "image_eval.json").write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1, default=float) + "\n")
    (out / "image_eval.md").write_text(markdown(summary, meta))
    print(markdown(summary, meta))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("image-eval", help="image-level verify() rates on whole images through the platform channels",
                              description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--nip", required=True, help="ONNX NIP (path or shipped name)")
    p.add_argument("--fan", required=True, help="ONNX FAN (path; --calibrate rewrites its metadata)")
    p.add_argument("--data", default="cache/dataset")
    p.add_argument("--split", default="test", help="split(s) of the rawproof images, comma-separated")
    p.add_argument("--foreign-split", default="test", help="split(s) of the foreign images (the origin head trains on 'train')")
    p.add_argument("--channels", nargs="+", default=list(NAMED_CHANNELS), choices=list(NAMED_CHANNELS))
    p.add_argument("--edit-channels", nargs="+", default=["trained", "web75"], choices=list(NAMED_CHANNELS))
    p.add_argument("--local-draws", type=int, default=3, help="random regions per image and local edit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calibrate", choices=["all", "regions"],
                   help="first fit on the val split and write into --fan: 'all' = calibration + every threshold "
                        "(incl. the region rule); 'regions' = only the region rule, the FAN's other thresholds kept")
    p.add_argument("--fpr", type=float, default=0.01, help="target false-positive rate of --calibrate on val untouched images")
    p.add_argument("-o", "--out", default="docs/results")
    p.set_defaults(func=_run)
