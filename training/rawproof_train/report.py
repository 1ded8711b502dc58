"""Results document from training logs: ``python -m rawproof_train report RUN... -o docs/results``.

Reads each run folder's ``config.yaml``, ``log.csv`` and ``eval.json`` (from ``evaluate``) and
writes ``<out>/README.md`` with tables (NIP fidelity and visibility, FAN accuracy per channel
with 95% intervals under the product protocol, the paper-protocol figure beside it, labelled,
per-class accuracy) and plots (training curves, accuracy vs PSNR over lambda, confusion matrices,
100% crops of flat and textured areas developed whole as shipped, next to the reference). Nothing is typed in by
hand: every figure in the document comes from those files, so re-running the command
reproduces it.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from rawproof_train.data import load_manifest, load_pair  # noqa: E402
from rawproof_train.train import describe_channel  # noqa: E402

__all__ = ["load_run", "write_report", "register"]

log = logging.getLogger(__name__)


def load_run(path: str | Path) -> dict[str, Any]:
    """A run folder's config, log rows and evaluation (``None`` where absent)."""
    path = Path(path)
    cfg = yaml.safe_load((path / "config.yaml").read_text()) if (path / "config.yaml").exists() else {}
    for change in cfg.get("changed_on_resume", []):  # the settings the run ended with
        cfg |= {k: v for k, v in change.items() if k not in ("step", "git_commit")}
    rows: list[dict[str, float]] = []
    if (path / "log.csv").exists():
        with open(path / "log.csv") as fh:
            rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(fh)]
    ev = json.loads((path / "eval.json").read_text()) if (path / "eval.json").exists() else None
    return {"path": path, "name": path.name, "config": cfg, "log": rows, "eval": ev}


def _channel(cfg: dict) -> str:
    return "—" if cfg.get("regime") == "nip" else describe_channel(cfg)


def _fmt_ci(acc: float, ci: list[float]) -> str:
    return f"{100 * acc:.1f}% [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _plot_curves(runs: list[dict], out: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, r in enumerate(runs):
        style = {"label": r["name"], "color": f"C{i % 10}"}  # one colour per run in both panels
        v = [row for row in r["log"] if "val_psnr_db" in row]
        if v:
            axes[0].plot([x["step"] for x in v], [x["val_psnr_db"] for x in v], **style)
        a = [row for row in r["log"] if "val_accuracy" in row]
        if a:
            axes[1].plot([x["step"] for x in a], [x["val_accuracy"] for x in a], **style)
    axes[0].set(xlabel="step", ylabel="val PSNR [dB]", title="NIP fidelity (validation)")
    axes[1].set(xlabel="step", ylabel="val accuracy", title="FAN accuracy (dJPEG channel, validation)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)
    return "curves.png"


def _plot_tradeoff(runs: list[dict], out: Path) -> str | None:
    pts = [(r["eval"]["psnr_db"], r["eval"]["channels"][0]["accuracy"], r) for r in runs
           if r["eval"] and r["eval"]["channels"] and r["eval"].get("protocol") == "product"]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for psnr, acc, r in pts:
        lam = r["config"].get("lam") if r["config"].get("regime") == "joint" else None
        label = f"{r['name']}" + (f" (λ={lam:g})" if lam is not None else "")
        ax.scatter(psnr, 100 * acc, s=40)
        ax.annotate(label, (psnr, 100 * acc), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set(xlabel="NIP PSNR vs reference [dB] (test images)", ylabel="FAN accuracy [%] (product protocol, first channel)", title="Fidelity vs forensic accuracy (whole frames)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "tradeoff.png", dpi=110)
    plt.close(fig)
    return "tradeoff.png"


def _plot_confusion(run: dict, out: Path) -> str | None:
    ev = run["eval"]
    if not ev or not ev["channels"]:
        return None
    conf = np.array(ev["channels"][0]["confusion"], dtype=float)
    conf /= conf.sum(axis=1, keepdims=True)
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(conf, cmap="Blues", vmin=0, vmax=1)
    classes = ev["classes"]
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{conf[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white" if conf[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=f"{run['name']} ({ev['channels'][0]['channel']})")
    fig.tight_layout()
    name = f"confusion_{run['name']}.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def _crop_at(target: np.ndarray, crop: int, flat: bool) -> tuple[int, int]:
    """Top-left of the flattest (or most textured) ``crop`` px block of a reference image, on a half-crop grid."""
    luma = target.astype(np.float32).mean(2)
    best, pos = None, (0, 0)
    for y in range(0, luma.shape[0] - crop + 1, crop // 2):
        for x in range(0, luma.shape[1] - crop + 1, crop // 2):
            block = luma[y:y + crop, x:x + crop]
            if flat and block.mean() > 250:  # a clipped sky is flat but shows nothing
                continue
            sd = float(block.std())
            if best is None or (sd < best if flat else sd > best):
                best, pos = sd, (y, x)
    return pos


def _samples(runs: list[dict], data: Path, out: Path, crop: int = 128) -> str | None:
    """100% crops (flat, then textured) of test images developed whole as shipped: reference, then each run's NIP,
    then each NIP's difference from the reference amplified 8x around grey."""
    from rawproof_train.evaluate import develop_whole, nip_model

    nips = [(r["name"], r["path"] / "nip.pt") for r in runs if (r["path"] / "nip.pt").exists()]
    if not nips:
        return None
    manifest = load_manifest(data)
    pairs = [load_pair(data, p["id"]) for p in sorted(manifest["pairs"], key=lambda p: p["id"]) if p["split"] == "test"][:3]
    developed = [develop_whole(pairs, nip_model(path), threads=0) for _, path in nips]
    rows = []
    for i, pair in enumerate(pairs):
        target = np.asarray(pair.target)
        for flat in (True, False):
            y, x = _crop_at(target, crop, flat)
            ref = target[y:y + crop, x:x + crop]
            nip_crops = [d[i].rgb[y:y + crop, x:x + crop] for d in developed]
            diffs = [np.clip(128 + 8 * (c.astype(np.int16) - ref.astype(np.int16)), 0, 255).astype(np.uint8) for c in nip_crops]
            rows.append(np.concatenate([ref, *nip_crops, *diffs], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(out / "samples.png")
    return "samples.png"


def write_report(run_dirs: list[str | Path], out: str | Path, *, data: str | Path = "cache/dataset", command: str = "") -> Path:
    """Write ``<out>/README.md`` and its plots from the given run folders."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [load_run(p) for p in run_dirs]
    lines = ["# Training results", "", "Generated from the run logs by:", "", "```bash", command or "python -m rawproof_train report ...", "```", ""]
    lines += ["## Runs", "",
              "`lr`: FAN (or NIP-only) learning rate; `NIP lr`: the NIP's in joint runs. `channel`: the training channel "
              "the run ended with (`{a, b}` = drawn per step; a run continued with other settings lists when in config.yaml "
              "`changed_on_resume`); dJPEG rounding `sin` is invertible (see rawproof_train.jpeg), `libjpeg` is real JPEG "
              "behind a frozen NIP. Validation rounds hard, through the nominal channel (the first of each drawn list).", "",
              "| run | regime | NIP | λ | steps | batch | patch | lr | NIP lr | channel | final val PSNR [dB] | final val acc |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        if not r["config"]:  # evaluated only (e.g. a shipped .onnx pair): nothing trained here
            continue
        c, last = r["config"], (r["log"][-1] if r["log"] else {})
        lam = f"{c.get('lam'):g}" if c.get("regime") == "joint" else "—"
        acc = f"{100 * last['val_accuracy']:.1f}%" if "val_accuracy" in last else "—"
        psnr = f"{last['val_psnr_db']:.2f}" if "val_psnr_db" in last else "—"
        nip_lr = c.get("nip_lr") or c.get("lr") if c.get("regime") == "joint" else "—"
        lines.append(f"| {r['name']} | {c.get('regime')} | {c.get('nip')} | {lam} | {int(last.get('step', 0))} | {c.get('batch')} | "
                     f"{c.get('patch')} | {c.get('lr')} | {nip_lr} | {_channel(c)} | {psnr} | {acc} |")
    evals = [r for r in runs if r["eval"]]
    # eval.json files written before the product protocol existed measured the paper's protocol.
    product = [r for r in evals if r["eval"].get("protocol") == "product"]
    legacy = [r for r in evals if r["eval"].get("protocol") != "product"]
    if product:
        chans = list(dict.fromkeys(c["channel"] for r in product for c in r["eval"]["channels"]))
        lines += ["", "## Held-out evaluation, product protocol (the headline)", "",
                  "Each test image developed whole through the SDK path (exported ONNX NIP, tiled as `develop()` tiles, "
                  "8-bit, clipped highlights white); NIP PSNR/SSIM of those developments against the reference pipeline. "
                  "FAN accuracy: 128 px crops at uniform random integer positions (every downscale phase and JPEG grid "
                  "alignment), x every class (applied with 8 px of frame context), then the downscale and the real codec: "
                  "`jpeg*`/`webp50` after the paper's 2x2 box downscale, JPEG 4:4:4; `web*` Pillow's defaults (antialiased "
                  "bilinear, JPEG 4:2:0). 95% Wilson intervals. `paper q50`: the same FAN with the NIP run on isolated patches "
                  "(Korus & Memon's protocol), for comparison only. Visibility: mean |row-to-row| / |column-to-column| "
                  "difference over the reference's flat pixels, NIP / reference (target <= 1.5); clipped: share of clipped "
                  "sensor values that come out at 255.", ""]
        lines += ["| run | PSNR [dB] | SSIM | flat rows / cols vs ref | clipped -> 255 | patches/class | " + " | ".join(chans) + " | paper q50 |",
                  "|---|---|---|---|---|---|" + "---|" * len(chans) + "---|"]
        for r in product:
            ev, vis = r["eval"], r["eval"].get("visibility", {})
            by_name = {c["channel"]: _fmt_ci(c["accuracy"], c["accuracy_ci"]) for c in ev["channels"]}
            n = ev["channels"][0]["n_per_class"] if ev["channels"] else "—"
            paper = _fmt_ci(ev["paper"]["accuracy"], ev["paper"]["accuracy_ci"]) if ev.get("paper") else "—"
            lines.append(f"| {r['name']} | {ev['psnr_db']:.2f} | {ev['ssim']:.4f} | {vis.get('flat_row_ratio', float('nan')):.2f}x / "
                         f"{vis.get('flat_col_ratio', float('nan')):.2f}x | {100 * vis.get('clipped_kept_white', float('nan')):.1f}% | {n} | "
                         + " | ".join(by_name.get(c, "—") for c in chans) + f" | {paper} |")
        lines += ["", "### Per-class accuracy, product protocol, first channel", ""]
        for r in product:
            if r["eval"]["channels"]:
                pc = r["eval"]["channels"][0]["per_class"]
                lines += [f"**{r['name']}**: " + ", ".join(f"{k} {_fmt_ci(v['accuracy'], v['ci95'])}" for k, v in pc.items()), ""]
    if legacy:
        chans = list(dict.fromkeys(c["channel"] for r in legacy for c in r["eval"]["channels"]))
        lines += ["", "## Paper protocol only (older evaluations: NIP run on isolated patches; not the product's figure)", ""]
        lines += ["| run | PSNR [dB] | SSIM | patches/class | " + " | ".join(chans) + " |", "|---|---|---|---|" + "---|" * len(chans)]
        for r in legacy:
            ev = r["eval"]
            by_name = {c["channel"]: _fmt_ci(c["accuracy"], c["accuracy_ci"]) for c in ev["channels"]}
            n = ev["channels"][0]["n_per_class"] if ev["channels"] else "—"
            lines.append(f"| {r['name']} | {ev['psnr_db']:.2f} | {ev['ssim']:.4f} | {n} | " + " | ".join(by_name.get(c, "—") for c in chans) + " |")
    figs = [_plot_curves(runs, out), _plot_tradeoff(runs, out), *[_plot_confusion(r, out) for r in evals], _samples(runs, Path(data), out)]
    lines += ["", "## Figures", ""]
    for f in figs:
        if f:
            lines += [f"![{f}]({f})", ""]
    if "samples.png" in figs:
        lines += ["`samples.png`: 100% crops of the first test images developed whole as shipped; per image a flat crop, then a "
                  "textured one. Columns: reference pipeline, the NIP of each run with a nip.pt (runs table order), then each "
                  "NIP's difference from the reference x8 around grey (where a trace would show).", ""]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    return out / "README.md"


def _run(args: argparse.Namespace) -> int:
    cmd = "python -m rawproof_train report " + " ".join(args.runs) + f" -o {args.out} --data {args.data}"
    print(write_report(args.runs, args.out, data=args.data, command=cmd))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="write the results document (tables + plots) from run folders", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders (with log.csv, config.yaml, eval.json)")
    p.add_argument("-o", "--out", default="docs/results", help="output folder (default docs/results)")
    p.add_argument("--data", default="cache/dataset", help="dataset cache, for the sample images")
    p.set_defaults(func=_run)
