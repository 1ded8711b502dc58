"""Training loops, evaluation and report on a tiny synthetic dataset (fast, CPU)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import yaml
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from rawproof_train.evaluate import ChannelSpec, evaluate_run, ssim, wilson_interval  # noqa: E402
from rawproof_train.prepare import prepare  # noqa: E402
from rawproof_train.report import write_report  # noqa: E402
from rawproof_train.train import TrainConfig, forensic_batch, load_config, run  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 96x128 textured photos -> unprocessed pairs (4 train, 1 val, 1 test)."""
    src = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    for i in range(6):
        base = 0.5 + 0.4 * np.sin(xx / (3 + i) + yy / (5 + i))[..., None] * np.array([1.0, 0.7, 0.4])
        img = np.clip(base + rng.normal(0, 0.05, (96, 128, 3)), 0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(src / f"p{i}.png")
    out = tmp_path_factory.mktemp("dataset")
    prepare(out, photos=[src], seed=0, val=0.2, test=0.2, progress=False, method="bilinear")
    return out


def _cfg(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(data=str(data), out=str(out), patch=32, batch=2, steps=3, val_patches=4, val_every=2, ckpt_every=2, patches_per_image=4, threads=1)
    base.update(kw)
    return load_config(None, **base)


def test_config_overrides_and_validation(tmp_path: Path) -> None:
    cfg = load_config(None, ["lr=1e-3", "batch=7"], out=str(tmp_path))
    assert cfg.lr == pytest.approx(1e-3) and cfg.batch == 7
    with pytest.raises(ValueError, match="bad override"):
        load_config(None, ["nosuchkey=1"])
    with pytest.raises(ValueError, match="multiple of"):
        load_config(None, patch=72)
    with pytest.raises(ValueError, match="regime"):
        load_config(None, regime="bogus")


def test_channel_lists_randomise_and_resume_records_the_change(tiny_dataset: Path, tmp_path: Path) -> None:
    from rawproof_train.train import describe_channel, make_channel

    cfg = load_config(None, ["quality=[50, 30]", "subsampling=[444, 420]", "resize=bilinear"])
    ch = make_channel(cfg)
    assert len(ch.choices) == 4 and ch.nominal.quality == 50 and ch.nominal.subsampling.value == "444"
    assert ch.nominal.resize.value == "bilinear"
    assert describe_channel(cfg) == "2x bilinear down + dJPEG {q50, q30} {444, 420} (hard rounding), drawn per step"
    assert describe_channel(load_config(None)) == "2x box down + dJPEG q50 444 (hard rounding)"
    with pytest.raises(ValueError):
        load_config(None, ["quality=[]"])
    # a fixed-channel run continued through a randomised channel: config.yaml says so
    run(_cfg(tiny_dataset, tmp_path / "nip", regime="nip", steps=1))
    nip = str(tmp_path / "nip" / "nip.pt")
    run(_cfg(tiny_dataset, tmp_path / "j", regime="joint", nip_checkpoint=nip, steps=2))
    run(_cfg(tiny_dataset, tmp_path / "j", regime="joint", nip_checkpoint=nip, steps=4, quality=[50, 30], resize=["box", "bilinear"]))
    meta = yaml.safe_load((tmp_path / "j" / "config.yaml").read_text())
    assert meta["quality"] == 50
    assert meta["changed_on_resume"] == [{"step": 2, "git_commit": meta["changed_on_resume"][0]["git_commit"],
                                          "quality": [50, 30], "resize": ["box", "bilinear"]}]
    fan = torch.load(tmp_path / "j" / "fan.pt", weights_only=False)
    assert "drawn per step" in fan["metrics"]["channel"]


def test_forensic_batch_labels_and_shapes() -> None:
    from rawproof_train.channel import Channel
    from rawproof_train.manipulations import create_manipulation

    rgb = torch.rand(3, 3, 32, 32)
    manips = [create_manipulation(n) for n in ("native", "gaussian")]
    x, y = forensic_batch(rgb, manips, Channel())
    assert x.shape == (6, 3, 16, 16)
    assert y.tolist() == [0, 0, 0, 1, 1, 1]


def test_nip_then_joint_then_resume(tiny_dataset: Path, tmp_path: Path) -> None:
    nip_metrics = run(_cfg(tiny_dataset, tmp_path / "nip", regime="nip", lr=1e-2))
    assert np.isfinite(nip_metrics["val_psnr_db"])
    ckpt = torch.load(tmp_path / "nip" / "nip.pt", weights_only=False)
    assert ckpt["kind"] == "nip" and ckpt["arch"] == "inet" and "psnr_db" in ckpt["metrics"]
    rows = list(csv.DictReader((tmp_path / "nip" / "log.csv").read_text().splitlines()))
    assert rows[-1]["step"] == "3"

    # joint training changes the NIP, and its state resumes where it stopped
    joint = _cfg(tiny_dataset, tmp_path / "joint", regime="joint", nip_checkpoint=str(tmp_path / "nip" / "nip.pt"), steps=2, lam=0.01)
    m = run(joint)
    assert 0.0 <= m["val_accuracy"] <= 1.0
    fan = torch.load(tmp_path / "joint" / "fan.pt", weights_only=False)
    assert fan["kind"] == "fan" and fan["classes"] == ["native", "sharpen", "gaussian", "jpeg", "resample"]
    before = torch.load(tmp_path / "joint" / "nip.pt", weights_only=False)["state_dict"]
    assert any(not torch.equal(before[k], ckpt["state_dict"][k]) for k in before), "joint training must update the NIP"
    state = torch.load(tmp_path / "joint" / "state.pt", weights_only=False)
    assert state["step"] == 2
    # a run killed after its checkpoint logged a step it will redo: that row is dropped on resume
    log_path = tmp_path / "joint" / "log.csv"
    log_path.write_text(log_path.read_text() + "3,9.9,0.0001,1,1,1,0.5,,\n")
    run(_cfg(tiny_dataset, tmp_path / "joint", regime="joint", nip_checkpoint=str(tmp_path / "nip" / "nip.pt"), steps=4, lam=0.01))
    steps = [int(r["step"]) for r in csv.DictReader((tmp_path / "joint" / "log.csv").read_text().splitlines())]
    assert steps[-1] == 4 and steps == sorted(steps) and len(steps) == len(set(steps))


def test_inetplus_starts_from_an_inet_checkpoint(tiny_dataset: Path, tmp_path: Path) -> None:
    from rawproof_train.nip import INet, INetPlus

    run(_cfg(tiny_dataset, tmp_path / "nip", regime="nip", steps=1))
    inet_ckpt = torch.load(tmp_path / "nip" / "nip.pt", weights_only=False)
    # zero steps as INetPlus: the saved model is the INet plus a residual that is still zero
    run(_cfg(tiny_dataset, tmp_path / "plus", regime="nip", nip="inetplus", nip_checkpoint=str(tmp_path / "nip" / "nip.pt"), steps=0))
    plus_ckpt = torch.load(tmp_path / "plus" / "nip.pt", weights_only=False)
    assert plus_ckpt["arch"] == "inetplus"
    inet, plus = INet(), INetPlus()
    inet.load_state_dict(inet_ckpt["state_dict"])
    plus.load_state_dict(plus_ckpt["state_dict"])
    x = torch.rand(1, 4, 16, 16)
    torch.testing.assert_close(plus(x), inet(x))
    # a checkpoint of another architecture is refused, not half-loaded
    with pytest.raises(RuntimeError):
        run(_cfg(tiny_dataset, tmp_path / "bad", regime="nip", nip="unet", nip_checkpoint=str(tmp_path / "nip" / "nip.pt"), steps=1))


def test_fan_regime_freezes_nip(tiny_dataset: Path, tmp_path: Path) -> None:
    run(_cfg(tiny_dataset, tmp_path / "nip", regime="nip", steps=1))
    nip_ckpt = tmp_path / "nip" / "nip.pt"
    run(_cfg(tiny_dataset, tmp_path / "fan", regime="fan", nip_checkpoint=str(nip_ckpt), steps=2))
    assert (tmp_path / "fan" / "fan.pt").exists() and not (tmp_path / "fan" / "nip.pt").exists()
    with pytest.raises(ValueError, match="pretrained NIP"):
        run(_cfg(tiny_dataset, tmp_path / "fan2", regime="fan", steps=1))

    res = evaluate_run(tmp_path / "fan", data=tiny_dataset, patches_per_class=6, patch=32, channels=(ChannelSpec("jpeg50", "jpeg", 50), ChannelSpec("webp50", "webp", 50)))
    assert [c.channel for c in res.channels] == ["jpeg50", "webp50"]
    conf = np.array(res.channels[0].confusion)
    assert conf.shape == (5, 5) and (conf.sum(axis=1) == res.channels[0].n_per_class).all()
    assert res.channels[0].accuracy == pytest.approx(np.trace(conf) / conf.sum())
    assert json.loads((tmp_path / "fan" / "eval.json").read_text())["channels"][0]["channel"] == "jpeg50"

    evaluate_run(tmp_path / "nip", data=tiny_dataset, patch=32)  # NIP-only: PSNR/SSIM, no channel
    shutil.copytree(tmp_path / "fan", tmp_path / "fan_web")
    web = evaluate_run(tmp_path / "fan_web", data=tiny_dataset, patches_per_class=6, patch=32,
                       channels=(ChannelSpec("jpeg50", "jpeg", 50), ChannelSpec("web50", "jpeg", 50, subsampling="420", resize="bilinear")))
    assert web.channels[0].confusion == res.channels[0].confusion  # same patches, same seed
    doc = write_report([tmp_path / "nip", tmp_path / "fan", tmp_path / "fan_web"], tmp_path / "report", data=tiny_dataset, command="cmd")
    text = doc.read_text()
    assert "| fan | fan |" in text and "| 2x box down + dJPEG q50 444 (hard rounding) |" in text
    # columns: every channel of any run, by name, even when a NIP-only run is listed first
    assert ("| run | PSNR [dB] | SSIM | flat rows / cols vs ref | clipped -> 255 | patches/class | jpeg50 | webp50 | web50 | paper q50 |"
            in text)
    assert "product protocol (the headline)" in text and "Paper protocol only" not in text
    # eval.json without a protocol (written before it existed) is listed apart, as the paper protocol
    legacy = json.loads((tmp_path / "fan" / "eval.json").read_text())
    del legacy["protocol"]
    (tmp_path / "fan" / "eval.json").write_text(json.dumps(legacy))
    assert "Paper protocol only" in write_report([tmp_path / "fan"], tmp_path / "report2", data=tiny_dataset).read_text()
    lines = text.splitlines()
    assert [ln for ln in lines if ln.startswith("| nip |") and ln.endswith("| — | — | — | — |")]
    # web50 was not measured for "fan", and no run asked for the paper protocol
    assert [ln for ln in lines if ln.startswith("| fan |") and ln.endswith("| — | — |") and ln.count("—") == 2]
    assert [ln for ln in lines if ln.startswith("| fan_web |") and ln.endswith("| — |") and ln.count("—") == 2]  # webp50, paper
    assert (tmp_path / "report" / "curves.png").exists()


def test_fan_fine_tune_behind_libjpeg(tiny_dataset: Path, tmp_path: Path) -> None:
    from rawproof_train.train import describe_channel, make_channel

    run(_cfg(tiny_dataset, tmp_path / "nip", regime="nip", steps=1))
    nip = str(tmp_path / "nip" / "nip.pt")
    run(_cfg(tiny_dataset, tmp_path / "j", regime="joint", nip_checkpoint=nip, steps=1))
    joint_fan = torch.load(tmp_path / "j" / "fan.pt", weights_only=False)["state_dict"]
    # real JPEG passes no gradient, so a regime that trains the NIP refuses it
    for regime in ("joint", "nip"):
        with pytest.raises(ValueError, match="libjpeg"):
            _cfg(tiny_dataset, tmp_path / "x", regime=regime, nip_checkpoint=nip, backend="libjpeg")
    with pytest.raises(ValueError, match="backend"):
        _cfg(tiny_dataset, tmp_path / "x", regime="fan", nip_checkpoint=nip, backend="webp")

    cfg = _cfg(tiny_dataset, tmp_path / "ft", regime="fan", nip_checkpoint=str(tmp_path / "j" / "nip.pt"),
               fan_checkpoint=str(tmp_path / "j" / "fan.pt"), backend="libjpeg", steps=0)
    # the training channel is Pillow's codec: the same bytes as encoding the box-downscaled patch directly
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    y = make_channel(cfg)(x)
    assert not y.requires_grad
    small = (x.detach().reshape(2, 3, 16, 2, 16, 2).mean(dim=(3, 5)) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for got, im in zip(y, small):
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=50, subsampling=0)
        ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        np.testing.assert_array_equal((got.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), ref)
    assert describe_channel(cfg) == "2x box down + libjpeg q50 444"
    # zero steps: the FAN saved is the joint run's, i.e. the fine-tune starts from it
    run(cfg)
    ft = torch.load(tmp_path / "ft" / "fan.pt", weights_only=False)
    assert all(torch.equal(ft["state_dict"][k], joint_fan[k]) for k in joint_fan)
    assert ft["metrics"]["channel"].startswith("2x box down + libjpeg q50 444")
    run(_cfg(tiny_dataset, tmp_path / "ft", regime="fan", nip_checkpoint=str(tmp_path / "j" / "nip.pt"),
             fan_checkpoint=str(tmp_path / "j" / "fan.pt"), backend="libjpeg", steps=2))
    ft = torch.load(tmp_path / "ft" / "fan.pt", weights_only=False)
    assert any(not torch.equal(ft["state_dict"][k], joint_fan[k]) for k in joint_fan), "the fine-tune must train the FAN"


def test_describe_channel_reads_old_config_dicts() -> None:
    from rawproof_train.train import describe_channel

    # a config.yaml from before the resize/subsampling/backend keys: their defaults apply
    assert describe_channel({"downscale": 2, "quality": 50, "rounding": "sin"}) == "2x box down + dJPEG q50 444 (sin rounding)"
    assert describe_channel({"quality": [50, 50, 30], "backend": "libjpeg"}) == "2x box down + libjpeg {q50, q30} 444, drawn per step"


def test_wilson_interval_against_known_values() -> None:
    # Reference: statsmodels proportion_confint(45, 50, method="wilson") = (0.7864, 0.9565)
    lo, hi = wilson_interval(45, 50)
    assert lo == pytest.approx(0.7864, abs=1e-4) and hi == pytest.approx(0.9565, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_ssim_identity_and_noise() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(40, 40, 3))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)) < 0.9


def test_nip_width_travels_with_the_checkpoint(tiny_dataset: Path, tmp_path: Path) -> None:
    from rawproof_export.onnx_export import build_module, load_checkpoint
    from rawproof_train.nip import INetPlus, nip_from_checkpoint

    with pytest.raises(ValueError, match="nip_width"):
        load_config(None, nip="inet", nip_width=16)
    run(_cfg(tiny_dataset, tmp_path / "inet", regime="nip", steps=1))
    # a half-width residual (4 filters here, to stay fast) grown from the INet checkpoint
    run(_cfg(tiny_dataset, tmp_path / "wide", regime="nip", nip="inetplus", nip_width=4, nip_checkpoint=str(tmp_path / "inet" / "nip.pt"), steps=1))
    ckpt = torch.load(tmp_path / "wide" / "nip.pt", weights_only=False)
    assert ckpt["arch_kwargs"] == {"base_filters": 4}
    nip = nip_from_checkpoint(ckpt)
    assert isinstance(nip, INetPlus) and nip.residual.head.in_channels == 4
    exported = build_module(load_checkpoint(tmp_path / "wide" / "nip.pt"))
    x = torch.rand(1, 4, 16, 16)
    torch.testing.assert_close(exported(x), nip(x))
    # a FAN run on that NIP must say which width to use, not fail inside load_state_dict
    with pytest.raises(ValueError, match="nip_width: 4"):
        run(_cfg(tiny_dataset, tmp_path / "fan", regime="fan", nip="inetplus", nip_checkpoint=str(tmp_path / "wide" / "nip.pt"), steps=1))
    run(_cfg(tiny_dataset, tmp_path / "fan", regime="fan", nip="inetplus", nip_width=4, nip_checkpoint=str(tmp_path / "wide" / "nip.pt"), steps=1))
    res = evaluate_run(tmp_path / "fan", data=tiny_dataset, patches_per_class=2, patch=32, channels=(ChannelSpec("jpeg50", "jpeg", 50),))
    assert res.nip == "inetplus" and np.isfinite(res.psnr_db)


def test_random_crops_stay_inside_the_margin_and_cover_every_phase() -> None:
    from rawproof_train.train import random_crops

    n, size, margin, k = 3, 8, 5, 40
    x = torch.arange(n * 32 * 32, dtype=torch.float32).reshape(n, 1, 32, 32)
    crops = random_crops(x, size, margin, k, torch.Generator().manual_seed(0))
    assert crops.shape == (n * k, 1, size, size)
    tops = []
    for j, c in enumerate(crops):
        i = j // k  # crops of image i come together
        local = int(c[0, 0, 0]) - i * 32 * 32
        y, xx = divmod(local, 32)
        assert margin <= y <= 32 - margin - size and margin <= xx <= 32 - margin - size
        torch.testing.assert_close(c, x[i, :, y:y + size, xx:xx + size])
        tops.append((y % 2, xx % 8))
    assert {t[0] for t in tops} == {0, 1} and len({t[1] for t in tops}) == 8  # odd offsets and every JPEG-grid phase


def test_product_protocol_joint_run_with_context_codec_mix_and_visibility(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="region"):
        load_config(None, region=48)
    with pytest.raises(ValueError, match="product protocol"):
        load_config(None, crops=4)
    with pytest.raises(ValueError, match="libjpeg-st"):
        load_config(None, regime="joint", backend="libjpeg")
    run(_cfg(tiny_dataset, tmp_path / "nip", regime="nip", steps=1))
    cfg = _cfg(tiny_dataset, tmp_path / "ctx", regime="joint", nip_checkpoint=str(tmp_path / "nip" / "nip.pt"), steps=2,
               region=64, context=8, crops=2, vis=1.0, backend=["libjpeg-st", "torch"])
    metrics = run(cfg)
    assert 0.0 <= metrics["val_accuracy"] <= 1.0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "ctx" / "log.csv").read_text())))
    assert float(rows[-1]["vis"]) >= 0.0 and rows[-1]["val_accuracy"]
    from rawproof_train.train import describe_channel

    assert describe_channel(cfg) == ("2x box down + {libjpeg (straight-through), dJPEG} q50 444 (hard rounding), drawn per step; "
                                     "product protocol: 2 crops of 32 px per 64 px NIP window, >= 8 px inside")


def test_evaluate_never_reuses_a_stale_nip_export(tiny_dataset: Path, tmp_path: Path) -> None:
    from rawproof.models import file_sha256, load_model_info

    run(_cfg(tiny_dataset, tmp_path / "n", regime="nip", steps=1))
    first = evaluate_run(tmp_path / "n", data=tiny_dataset, patch=32).psnr_db
    shutil.copytree(tmp_path / "n", tmp_path / "copy")  # the copy's nip.onnx is as new as its nip.pt
    run(_cfg(tiny_dataset, tmp_path / "copy", regime="nip", steps=3))  # resumed: nip.pt changes
    second = evaluate_run(tmp_path / "copy", data=tiny_dataset, patch=32).psnr_db
    info = load_model_info(tmp_path / "copy" / "nip.onnx")
    assert info.metadata["checkpoint_sha256"] == file_sha256(tmp_path / "copy" / "nip.pt")
    assert second != first
