"""``python -m rawproof_train prnu-experiment``: does the sensor fingerprint survive the imaging pipeline?

One command measures PRNU camera identification (:mod:`rawproof.fingerprint`) on virtual
cameras (:mod:`rawproof_train.sensor_sim`) developed by:

* the reference pipeline (:func:`rawproof_train.isp.develop_reference`),
* each NIP checkpoint given with ``--nip-checkpoints NAME=PATH`` (export format, ``nip.pt``;
  input ``frame.to_stack(colour=True)``), rows skipped when the file is missing,

each both as developed (8-bit) and after the distribution channel (2x bilinear/box
downscale, then real JPEG q50 4:4:4 via Pillow; the fingerprint is box-downscaled by 2
before correlation). Enrolment uses 20 frames per camera, either flat sky-like frames
(the standard practice) or ordinary scenes (harder); the held-out test frames are always
scenes, cut from photos that no enrolment frame uses. Every pair (test frame,
fingerprint) is scored by the PCE; genuine pairs share the camera.

It then enrols and tests the five real 2592x1536 GRBG frames of one sensor in the data
folder (leave-one-out), against other sensors' frames and the virtual cameras, and times
the enrolment of 20 full-HD JPEG files. Writes ``results.json``, ``results.md`` and
``pce_*.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rawproof.fingerprint import PCE_THRESHOLD, align_fingerprint, enroll, pce, query_residual
from rawproof.raw import RawFrame
from rawproof.rawio import read_manifest_entry
from rawproof_train.evaluate import wilson_interval
from rawproof_train.isp import develop_reference
from rawproof_train.sensor_sim import capture, data_root, flat_frame, load_photos, make_cameras, scene_frame

__all__ = ["PairStats", "pce_matrix", "pair_stats", "channel_uint8", "run_experiment", "register"]

log = logging.getLogger(__name__)

Developer = Callable[[RawFrame], np.ndarray]
"""RawFrame -> uint8 H x W x 3 sRGB."""

REAL_FRAMES = ("Indoor1", "Outdoor1", "Outdoor2", "Outdoor3", "Outdoor4")
OTHER_SENSORS = ("raw/colorchecker_1920x1080_12bit_bggr.u16le", "raw/openisp_1920x1080_10bit_rggb.u16le")


@dataclass(frozen=True)
class PairStats:
    """Identification figures of one configuration at the PCE threshold.

    Attributes:
        tp, n_genuine: Genuine pairs above the threshold, and their number.
        fp, n_impostor: Impostor pairs above the threshold, and their number.
        tpr, fpr: The rates; ``*_ci``: Wilson 95 % intervals.
        genuine_median, genuine_min: PCE of genuine pairs.
        impostor_max: Largest impostor PCE.
    """

    tp: int
    n_genuine: int
    fp: int
    n_impostor: int
    tpr: float
    tpr_ci: tuple[float, float]
    fpr: float
    fpr_ci: tuple[float, float]
    genuine_median: float
    genuine_min: float
    impostor_max: float


def pair_stats(scores: np.ndarray, genuine: np.ndarray, threshold: float = PCE_THRESHOLD) -> PairStats:
    """Counts and rates from a PCE matrix and a same-camera mask of the same shape."""
    g, i = scores[genuine], scores[~genuine]
    tp, fp = int((g > threshold).sum()), int((i > threshold).sum())
    return PairStats(tp=tp, n_genuine=g.size, fp=fp, n_impostor=i.size, tpr=tp / max(g.size, 1),
                     tpr_ci=wilson_interval(tp, g.size), fpr=fp / max(i.size, 1), fpr_ci=wilson_interval(fp, i.size),
                     genuine_median=float(np.median(g)) if g.size else math.nan,
                     genuine_min=float(g.min()) if g.size else math.nan, impostor_max=float(i.max()) if i.size else math.nan)


def pce_matrix(tests: list[np.ndarray], fingerprints: list[np.ndarray]) -> np.ndarray:
    """PCE of every (test image, fingerprint) pair; each residual is computed once.

    Args:
        tests: uint8 H x W x 3 images.
        fingerprints: float32 fingerprints, aligned to each image by
            :func:`rawproof.fingerprint.align_fingerprint` (same size, downscaled or centre crop).

    Returns:
        float64, len(tests) x len(fingerprints).
    """
    out = np.zeros((len(tests), len(fingerprints)))
    for t, img in enumerate(tests):
        w, y = query_residual(img)
        for f, k in enumerate(fingerprints):
            out[t, f] = pce(w, y * align_fingerprint(k, *y.shape)[0])
    return out


def channel_uint8(img: np.ndarray) -> np.ndarray:
    """The distribution channel on a uint8 H x W x 3 image: :func:`rawproof_train.channel.channel`
    with the real codec (2x bilinear = 2x2 box downscale, then Pillow JPEG q50 4:4:4), back to uint8."""
    import torch

    from rawproof_train.channel import channel

    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
    out = channel(x, 2, 50, backend="libjpeg")[0].permute(1, 2, 0).numpy()
    return _to_uint8(out)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _reference(frame: RawFrame) -> np.ndarray:
    return _to_uint8(develop_reference(frame))


def _nip_developer(path: Path) -> Developer:
    import torch

    from rawproof_train.nip import nip_from_checkpoint

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    nip = nip_from_checkpoint(ckpt)

    def develop(frame: RawFrame) -> np.ndarray:
        with torch.no_grad():
            rgb = nip(torch.from_numpy(frame.to_stack(colour=True))[None]).clamp(0, 1)[0]
        return _to_uint8(rgb.permute(1, 2, 0).numpy())

    return develop


def _simulate(n_cameras: int, n_enrol: int, n_test: int, size: int, seed: int, modes: list[str],
              root: Path) -> tuple[list[Any], dict[str, list[list[RawFrame]]], list[list[RawFrame]], dict[str, Any]]:
    photos = load_photos(root)
    order = np.random.default_rng(seed).permutation(len(photos))
    n_test_photos = max(1, len(photos) // 4)
    test_pool = [photos[i] for i in order[:n_test_photos]]
    enrol_pool = [photos[i] for i in order[n_test_photos:]]
    cams = make_cameras(n_cameras, (size, size), seed=seed)
    enrol: dict[str, list[list[RawFrame]]] = {m: [] for m in modes}
    tests: list[list[RawFrame]] = []
    for c in cams:
        rng = np.random.default_rng([seed, int(c.name[4:]), 7])
        for m in modes:
            if m == "flat":
                frames = [capture(c, flat_frame((size, size), rng), rng) for _ in range(n_enrol)]
            else:
                frames = [capture(c, scene_frame(enrol_pool[int(rng.integers(len(enrol_pool)))][1], (size, size), rng), rng)
                          for _ in range(n_enrol)]
            enrol[m].append(frames)
        tests.append([capture(c, scene_frame(test_pool[int(rng.integers(len(test_pool)))][1], (size, size), rng), rng)
                      for _ in range(n_test)])
    info = {"photos": len(photos), "test_photos": sorted(p for p, _ in test_pool), "enrol_photos": len(enrol_pool),
            "cameras": [{"name": c.name, "prnu_std": c.prnu_std, "shot": c.noise.shot, "read": c.noise.read} for c in cams]}
    return cams, enrol, tests, info


def _real_sensor(root: Path, sim_fps: list[np.ndarray], sim_tests: list[np.ndarray]) -> dict[str, Any]:
    manifest = {e["path"]: e for e in json.loads((root / "manifest.json").read_text())["files"]}
    real = []
    for name in REAL_FRAMES:
        entry = next(e for p, e in manifest.items() if Path(p).name.startswith(name + "_"))
        real.append(_reference(read_manifest_entry(entry, root)))
    others = {Path(p).name.split("_")[0]: _reference(read_manifest_entry(manifest[p], root)) for p in OTHER_SENSORS}
    oh, ow = next(iter(others.values())).shape[:2]
    sh, sw = sim_tests[0].shape[:2]

    def centre(img: np.ndarray, h: int, w: int) -> np.ndarray:
        y0, x0 = ((img.shape[0] - h) // 2) & ~1, ((img.shape[1] - w) // 2) & ~1
        return img[y0:y0 + h, x0:x0 + w]

    rows = []
    for i, name in enumerate(REAL_FRAMES):
        t0 = time.perf_counter()
        fp = enroll([r for j, r in enumerate(real) if j != i], threads=2)
        enrol_s = time.perf_counter() - t0
        full = float(pce_matrix([real[i]], [fp.k])[0, 0])
        through_channel = float(pce_matrix([channel_uint8(real[i])], [fp.k])[0, 0])
        crop = float(pce_matrix([centre(real[i], oh, ow)], [fp.k])[0, 0])
        small = float(pce_matrix([centre(real[i], sh, sw)], [fp.k])[0, 0])
        vs_other = {k: float(v) for k, v in zip(others, pce_matrix(list(others.values()), [fp.k])[:, 0])}
        vs_sim_frames = pce_matrix(sim_tests, [fp.k])[:, 0]
        vs_sim_fps = pce_matrix([centre(real[i], sh, sw)], sim_fps)[0]
        rows.append({"test": name, "enrol_s": enrol_s, "genuine_full": full, "genuine_channel": through_channel, f"genuine_{ow}x{oh}": crop,
                     f"genuine_{sw}x{sh}": small, "other_sensors": vs_other,
                     "sim_frames_vs_fp_max": float(vs_sim_frames.max()), "sim_frames_vs_fp_median": float(np.median(vs_sim_frames)),
                     "frame_vs_sim_fps_max": float(vs_sim_fps.max())})
        log.info("real sensor, test %s: PCE %.1f (full), %.1f (%dx%d crop)", name, full, crop, ow, oh)
    return {"frames": list(REAL_FRAMES), "size": list(real[0].shape[:2]), "other_size": [oh, ow], "sim_size": [sh, sw],
            "other_sensors": list(others), "n_sim_frames": len(sim_tests), "n_sim_fps": len(sim_fps), "leave_one_out": rows}


def _bench(root: Path, repeats: int = 3) -> dict[str, Any]:
    photos = load_photos(root, max_side=2048)
    rng = np.random.default_rng(0)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(20):
            img = _to_uint8(scene_frame(photos[i % len(photos)][1], (1080, 1920), rng))
            p = Path(tmp) / f"frame{i:02d}.jpg"
            Image.fromarray(img).save(p, quality=90)
            paths.append(str(p))
        for _ in range(repeats):
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            enroll(paths)
            times.append((time.perf_counter() - t0, load))
    return {"frames": 20, "size": "1920x1080", "input": "JPEG q90 files (decode included)", "threads": os.cpu_count(),
            "seconds": [t for t, _ in times], "load_avg_1min_before": [ld for _, ld in times],
            "min_s": min(t for t, _ in times), "median_s": statistics.median(t for t, _ in times)}


def _plot(scores: dict[str, np.ndarray], genuine: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(scores), 1, figsize=(7, 1.8 * len(scores) + 0.6), sharex=True, squeeze=False)
    bins = np.linspace(-1, 4.5, 56)
    for ax, (name, s) in zip(axes[:, 0], scores.items()):
        tr = np.sign(s) * np.log10(1 + np.abs(s))
        ax.hist(tr[~genuine], bins=bins, alpha=0.6, label="impostor", color="tab:red")
        ax.hist(tr[genuine], bins=bins, alpha=0.6, label="genuine", color="tab:green")
        ax.axvline(math.log10(1 + PCE_THRESHOLD), color="k", ls="--", lw=1)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
    axes[0, 0].legend(fontsize=8)
    axes[0, 0].set_title(title, fontsize=9)
    axes[-1, 0].set_xlabel("sign(PCE) log10(1 + |PCE|)   (dashed: PCE = 60)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _markdown(res: dict[str, Any]) -> str:
    lines = [f"Frame size {res['size']}x{res['size']}, {res['cameras']} cameras, {res['enrol']} enrolment + "
             f"{res['held_out']} held-out frames per camera, threshold PCE > {PCE_THRESHOLD:g}, seed {res['seed']}.", "",
             "| pipeline | enrolment | channel | TP / genuine | TPR (95% CI) | FP / impostor | FPR (95% CI) | median genuine PCE | min genuine | max impostor |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        s = r["stats"]
        lines.append(f"| {r['pipeline']} | {r['enrolment']} | {r['channel']} | {s['tp']} / {s['n_genuine']} | "
                     f"{s['tpr']:.1%} ({s['tpr_ci'][0]:.1%}-{s['tpr_ci'][1]:.1%}) | {s['fp']} / {s['n_impostor']} | "
                     f"{s['fpr']:.1%} ({s['fpr_ci'][0]:.1%}-{s['fpr_ci'][1]:.1%}) | {s['genuine_median']:.0f} | "
                     f"{s['genuine_min']:.1f} | {s['impostor_max']:.1f} |")
    if res.get("missing_nips"):
        lines += ["", "Missing NIP checkpoints (rows skipped): " + ", ".join(res["missing_nips"])]
    real = res.get("real_sensor")
    if real:
        oh, ow = real["other_size"]
        sh, sw = real["sim_size"]
        lines += ["", f"Real sensor, leave-one-out (enrol 4 reference-developed {real['size'][1]}x{real['size'][0]} frames, test the 5th):", "",
                  f"| test frame | genuine PCE (full) | genuine after channel ({real['size'][1] // 2}x{real['size'][0] // 2} JPEG q50) | genuine ({ow}x{oh} crop) | genuine ({sw}x{sh} crop) | "
                  + " | ".join(f"{o} vs fp ({ow}x{oh})" for o in real["other_sensors"])
                  + f" | max of {real['n_sim_frames']} sim frames vs fp | max vs {real['n_sim_fps']} sim fps |",
                  "|---|---|---|---|---|" + "---|" * len(real["other_sensors"]) + "---|---|"]
        for r in real["leave_one_out"]:
            lines.append(f"| {r['test']} | {r['genuine_full']:.1f} | {r['genuine_channel']:.1f} | {r[f'genuine_{ow}x{oh}']:.1f} | {r[f'genuine_{sw}x{sh}']:.1f} | "
                         + " | ".join(f"{v:.1f}" for v in r["other_sensors"].values())
                         + f" | {r['sim_frames_vs_fp_max']:.1f} | {r['frame_vs_sim_fps_max']:.1f} |")
    b = res.get("bench")
    if b:
        lines += ["", f"Enrolment of {b['frames']} {b['size']} frames ({b['input']}, {b['threads']} threads): "
                  f"min {b['min_s']:.1f} s, median {b['median_s']:.1f} s over {len(b['seconds'])} runs "
                  f"(1-min load average before each run: {', '.join(f'{x:.1f}' for x in b['load_avg_1min_before'])})."]
    lines += ["", f"Total run time {res['elapsed_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def run_experiment(out: str | os.PathLike[str], *, nip_checkpoints: dict[str, str] | None = None, cameras: int = 10,
                   enrol: int = 20, held_out: int = 5, size: int = 768, seed: int = 0, modes: tuple[str, ...] = ("flat", "scenes"),
                   real: bool = True, bench: bool = True, data: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Run the whole experiment and write ``results.json``, ``results.md`` and plots to ``out``.

    Args:
        out: Output folder (created).
        nip_checkpoints: Row name -> ``nip.pt`` path; missing files are skipped and listed.
        cameras, enrol, held_out, size, seed: Virtual cameras, frames per camera, frame side (pixels).
        modes: Enrolment frames: ``"flat"`` (sky-like) and/or ``"scenes"``.
        real: Include the real-sensor leave-one-out test (needs the RAW frames in the data folder).
        bench: Time the enrolment of 20 full-HD frames.
        data: Data folder (default ``$RAWPROOF_DATA``).

    Returns:
        The results dict that is written to ``results.json``.
    """
    t_start = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(data) if data is not None else data_root()
    pipelines: dict[str, Developer] = {"reference": _reference}
    missing = []
    for name, path in (nip_checkpoints or {}).items():
        if Path(path).is_file():
            pipelines[name] = _nip_developer(Path(path))
        else:
            missing.append(f"{name} ({path})")
            log.warning("NIP checkpoint %s not found; row skipped", path)
    cams, enrol_frames, test_frames, info = _simulate(cameras, enrol, held_out, size, seed, list(modes), root)
    genuine = np.repeat(np.eye(cameras, dtype=bool), held_out, axis=0)
    rows, ref_tests, ref_fps = [], [], []
    for pname, dev in pipelines.items():
        t0 = time.perf_counter()
        tests = [dev(f) for frames in test_frames for f in frames]
        tests_ch = [channel_uint8(t) for t in tests]
        scores: dict[str, np.ndarray] = {}
        for mode in modes:
            fps = [enroll([dev(f) for f in frames]).k for frames in enrol_frames[mode]]
            if pname == "reference" and (mode == "flat" or not ref_fps):
                ref_fps, ref_tests = fps, tests
            for ch, imgs in (("none", tests), ("2x down + JPEG q50", tests_ch)):
                s = pce_matrix(imgs, fps)
                scores[f"{mode}, {'channel' if ch != 'none' else 'direct'}"] = s
                st = pair_stats(s, genuine)
                rows.append({"pipeline": pname, "enrolment": mode, "channel": ch, "stats": asdict(st)})
                log.info("%s / %s / %s: TP %d/%d, FP %d/%d", pname, mode, ch, st.tp, st.n_genuine, st.fp, st.n_impostor)
        _plot(scores, genuine, out_dir / f"pce_{pname}.png", f"{pname}: PCE of genuine vs impostor pairs")
        np.savez_compressed(out_dir / f"pce_{pname}.npz", genuine=genuine, **{k.replace(", ", "_").replace(" ", ""): v for k, v in scores.items()})
        log.info("%s done in %.0f s", pname, time.perf_counter() - t0)
    res: dict[str, Any] = {"size": size, "cameras": cameras, "enrol": enrol, "held_out": held_out, "seed": seed,
                           "modes": list(modes), "pipelines": list(pipelines), "missing_nips": missing, "simulation": info,
                           "threshold": PCE_THRESHOLD, "rows": rows}
    if real:
        res["real_sensor"] = _real_sensor(root, ref_fps, ref_tests)
    if bench:
        res["bench"] = _bench(root)
    res["elapsed_s"] = time.perf_counter() - t_start
    (out_dir / "results.json").write_text(json.dumps(res, indent=2))
    (out_dir / "results.md").write_text(_markdown(res))
    return res


def _parse_nips(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep:
            name, path = Path(v).parent.name or Path(v).stem, v
        out[name] = path
    return out


def _run(args: argparse.Namespace) -> int:
    res = run_experiment(args.out, nip_checkpoints=_parse_nips(args.nip_checkpoints), cameras=args.cameras, enrol=args.enrol,
                         held_out=args.held_out, size=args.size, seed=args.seed, modes=tuple(args.modes.split(",")),
                         real=not args.no_real, bench=not args.no_bench, data=args.data)
    print(_markdown(res))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``prnu-experiment --out DIR [--nip-checkpoints NAME=PATH ...]``."""
    p = subparsers.add_parser("prnu-experiment", help="sensor-fingerprint identification through the reference ISP, NIPs and the channel",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("experiment")
    g.add_argument("--out", default="docs/fingerprint", help="output folder (default docs/fingerprint)")
    g.add_argument("--nip-checkpoints", nargs="*", default=[], metavar="NAME=PATH",
                   help="NIP checkpoints (nip.pt) to add as rows, e.g. fidelity=runs/nip_inet/nip.pt; missing files are skipped")
    g.add_argument("--data", default=None, help="data folder (default $RAWPROOF_DATA)")
    g.add_argument("--seed", type=int, default=0)
    s = p.add_argument_group("size")
    s.add_argument("--cameras", type=int, default=10)
    s.add_argument("--enrol", type=int, default=20, help="enrolment frames per camera")
    s.add_argument("--held-out", type=int, default=5, help="test frames per camera")
    s.add_argument("--size", type=int, default=768, help="square frame side, pixels (even; default 768, the documented run)")
    s.add_argument("--modes", default="flat,scenes", help="enrolment frames: flat, scenes or both (comma-separated)")
    s.add_argument("--no-real", action="store_true", help="skip the real-sensor leave-one-out test")
    s.add_argument("--no-bench", action="store_true", help="skip the full-HD enrolment timing")
    p.set_defaults(func=_run)
