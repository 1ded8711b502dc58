"""docs/vendor.md, run as written: RAW12 dumps -> a tiny pair -> signed original -> verify with its own FAN.

Every ```bash block of the guide is concatenated, in order, into one script run by bash with ``set -euo
pipefail``; only the variables of its step 0 are set small (the ``VENDOR_TINY`` settings below), so the
commands the guide shows are the commands tested. The pair is tiny (a few steps on 512x384 crops): its FAN is
at chance level, calibrated by step 7 like any vendor FAN; the test checks the plumbing that makes a vendor's
pair work, not its accuracy.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TINY_CONFIG = """\
nip: inet
patch: 64
batch: 2
lr: 1.0e-3
lr_decay: 0.85
decay_every: 600
lam: 0.01
downscale: 2
quality: 50
rounding: hard
patches_per_image: 4
val_patches: 10
val_every: 1000
ckpt_every: 1000
seed: 0
"""


def _guide_script() -> str:
    text = (REPO / "docs" / "vendor.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    assert len(blocks) >= 8, "docs/vendor.md lost its command blocks"
    return "set -euo pipefail\n" + "\n".join(blocks)


@pytest.mark.slow
@pytest.mark.data
def test_vendor_guide_end_to_end(shared_data: Path, tmp_path: Path) -> None:
    crws = sorted((shared_data / "extra" / "raw").glob("canon_powershot_*/*.CRW"))[:5]
    if len(crws) < 5:
        pytest.skip("the Canon CRW files of extra/raw are not in the data folder")
    (tmp_path / "tiny.yaml").write_text(TINY_CONFIG)
    work = tmp_path / "work"
    env = {
        **os.environ,
        "RAWPROOF_DATA": str(shared_data),
        # VENDOR_TINY: the step-0 variables, scaled down
        "WORK": str(work), "CAMERA_RAWS": " ".join(map(str, crws)), "CROP": "512,384,800,640",
        "CONFIG": str(tmp_path / "tiny.yaml"), "THREADS": "1", "NIP_STEPS": "3", "JOINT_STEPS": "4", "FT_STEPS": "3",
        "EVAL_PATCHES": "5", "FE_CROP": "128",
    }
    # The guide's commands run the rawproof a vendor installed (pip install ".[train]"), as CI installs it:
    # the source tree on PYTHONPATH would lack the built native extension.
    env.pop("RAWPROOF_MODELS", None)
    for var in ("NAME", "TIER", "DUMPS", "DEVICE", "PRE_NIP", "NIP", "FRAME"):  # the guide's other variables: its defaults
        env.pop(var, None)
    script = tmp_path / "vendor.sh"
    script.write_text(_guide_script().replace("python -m ", f"{sys.executable} -m "))
    res = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"docs/vendor.md failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"

    # the dumps are RAW12 with their sensor manifest entries
    entries = json.loads((work / "dumps" / "manifest.json").read_text())["files"]
    assert len(entries) == 5 and {e["container"] for e in entries} == {"raw12"} and entries[0]["width"] == 512
    assert json.loads((work / "dataset" / "manifest.json").read_text())["skipped"] == []
    # the pair, as rawproof models lists it
    assert "mysensor: tier cpu, NIP mysensor [" in res.stdout
    fan_json = json.loads((work / "models" / "fan_mysensor.json").read_text())
    assert fan_json["paired"]["name"] == "mysensor" and fan_json["patch_size"] == 32 and "decision" in fan_json
    # develop recorded both; the signed original verifies AUTHENTIC with the pair's FAN named
    dev = json.loads((work / "develop.json").read_text())
    assert dev["model"]["name"] == "mysensor" and dev["fan"] == {"name": "fan_mysensor", "sha256": fan_json["sha256"]}
    rep = json.loads((work / "verify.json").read_text())
    assert rep["verdict"] == "authentic" and rep["exit_code"] == 0
    assert rep["forensics"]["fan"] == {"name": "fan_mysensor", "sha256": fan_json["sha256"], "source": "manifest"}
    assert rep["capture"]["nip"]["name"] == "mysensor" and rep["capture"]["fan"]["name"] == "fan_mysensor"
    assert "forensics: FAN fan_mysensor (manifest" in res.stdout
    # a FAN of another pair does not read the traces: inconclusive with the reason, never manipulated
    other = json.loads((work / "verify_other_fan.json").read_text())
    assert other["verdict"] == "authentic" and other["forensics"]["traces"] == "unavailable"
    assert other["forensics"]["reason"].startswith("traces not read (inconclusive): FAN fan_inetplus_joint is paired with NIP inetplus_joint")
    assert "developed by NIP mysensor" in other["forensics"]["reason"]
    # the visibility step measured both
    assert re.search(r"NIP: row-to-row [\d.]+ DN", res.stdout) and (work / "visibility.png").is_file()
