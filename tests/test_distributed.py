"""Data-parallel training: 2 CPU ranks (gloo, 127.0.0.1) against one process with the doubled batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402

from rawproof_train import distributed as ddp  # noqa: E402
from rawproof_train.train import _build, load_config, train_step  # noqa: E402

WORLD = 2
BATCH = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def _fixed_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (BATCH,), generator=g)


def _set_env(rank: int, port: int) -> None:
    os.environ.update(WORLD_SIZE=str(WORLD), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))


def _rank_main(rank: int, port: int, out: str, nip_ckpt: str, x: torch.Tensor, t: torch.Tensor) -> None:
    """Both checks in one spawned job: starting torch twice per test costs more than the checks."""
    _set_env(rank, port)
    torch.set_num_threads(1)
    env = ddp.init_distributed("cpu")
    _sgd_rank(rank, env, out)
    _joint_rank(rank, env, out, nip_ckpt, x, t)
    ddp.shutdown(env)


def _sgd_rank(rank: int, env: ddp.DistEnv, out: str) -> None:
    model = _tiny().double()
    wrapped = ddp.wrap_ddp(model, env)
    x, y = _fixed_data()
    n = ddp.shard_size(BATCH, env)
    xs, ys = x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    nn.functional.cross_entropy(wrapped(xs), ys).backward()
    opt.step()
    torch.save({k: v.detach() for k, v in model.state_dict().items()}, Path(out) / f"rank{rank}.pt")


def _joint_rank(rank: int, env: ddp.DistEnv, out: str, nip_ckpt: str, x: torch.Tensor, t: torch.Tensor) -> None:
    torch.manual_seed(0)
    run = _build(_joint_cfg(out, nip_ckpt))
    run.nip_ddp, run.fan_ddp = ddp.wrap_ddp(run.nip, env), ddp.wrap_ddp(run.fan, env)
    n = ddp.shard_size(BATCH, env)
    row = train_step(run, x[rank * n:(rank + 1) * n], t[rank * n:(rank + 1) * n])
    grads = {f"nip.{k}": p.grad for k, p in run.nip.named_parameters()} | {f"fan.{k}": p.grad for k, p in run.fan.named_parameters()}
    torch.save({"grads": grads, "loss": ddp.mean_over_ranks(row, env)["loss"]},
               Path(out) / f"joint{rank}.pt")


def _joint_cfg(out: str, nip_ckpt: str):  # noqa: ANN202
    return load_config(None, regime="joint", out=out, nip="inet", nip_checkpoint=nip_ckpt, classes=["native", "gaussian"],
                       patch=32, batch=BATCH, steps=1, threads=1)


def test_env_and_sharding_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert ddp.dist_env() is None and ddp.init_distributed("cpu") is None
    assert ddp.shard_size(10, None) == 10 and ddp.wrap_ddp(nn.Linear(2, 2), None) is None
    # One process keeps the single-process stream exactly.
    assert np.array_equal(ddp.rank_rng(3, None).random(4), np.random.default_rng(3).random(4))
    env0, env1 = ddp.DistEnv(0, 2, 0, "gloo"), ddp.DistEnv(1, 2, 1, "gloo")
    a, b = ddp.rank_rng(3, env0).random(4), ddp.rank_rng(3, env1).random(4)
    assert not np.array_equal(a, b) and np.array_equal(a, ddp.rank_rng(3, env0).random(4))
    assert ddp.shard_size(10, env0) == 5
    with pytest.raises(ValueError, match="multiple of the world size"):
        ddp.shard_size(9, env0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        ddp.dist_env()
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="outside"):
        ddp.dist_env()


@pytest.fixture(scope="module")
def ddp_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, torch.Tensor, torch.Tensor]:
    """Run the 2-rank job once: (output folder, NIP checkpoint, joint-step stack, joint-step target)."""
    from rawproof_train.nip import create_nip

    tmp = tmp_path_factory.mktemp("ddp")
    torch.manual_seed(5)
    nip_ckpt = tmp / "nip.pt"
    torch.save({"kind": "nip", "state_dict": create_nip("inet").state_dict()}, nip_ckpt)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(BATCH, 4, 16, 16, generator=g)
    t = torch.rand(BATCH, 3, 32, 32, generator=g)
    mp.start_processes(_rank_main, args=(_free_port(), str(tmp), str(nip_ckpt), x, t), nprocs=WORLD, start_method="spawn")
    return tmp, nip_ckpt, x, t


def test_ddp_two_ranks_equal_one_process_with_full_batch(ddp_job: tuple) -> None:
    """SGD, float64: the mean-loss gradient over 8 samples equals DDP's average of two 4-sample gradients."""
    tmp_path = ddp_job[0]
    model = _tiny().double()
    x, y = _fixed_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for k, ref in model.state_dict().items():
        assert not torch.equal(ref, before[k])
        for r in ranks:
            assert torch.allclose(r[k], ref, atol=1e-6, rtol=0), k
    assert not dist.is_initialized()


def test_joint_train_step_under_ddp_matches_full_batch(ddp_job: tuple) -> None:
    """The real joint step (NIP -> manipulations -> channel -> FAN, two DDP wrappers): gradients match."""
    tmp_path, nip_ckpt, x, t = ddp_job
    torch.manual_seed(0)
    run = _build(_joint_cfg(str(tmp_path), str(nip_ckpt)))
    row = train_step(run, x, t)
    ref = {f"nip.{k}": p.grad for k, p in run.nip.named_parameters()} | {f"fan.{k}": p.grad for k, p in run.fan.named_parameters()}
    for r in range(WORLD):
        got = torch.load(tmp_path / f"joint{r}.pt")
        assert got["loss"] == pytest.approx(row["loss"], rel=1e-5)
        for k, gref in ref.items():
            if gref is None:  # frozen (e.g. INet's fixed Bayer scatter)
                assert got["grads"][k] is None, k
                continue
            assert torch.allclose(got["grads"][k], gref, atol=1e-6, rtol=1e-4), k
        # Parameters are not compared here: Adam's first step is lr * g / (|g| + eps), which
        # magnifies float32 rounding where |g| ~ eps; the SGD test above compares parameters.


def test_torchrun_train_nip_end_to_end(tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 2`` on the real CLI: one log, one checkpoint set, per-rank RNG states."""
    from PIL import Image

    from rawproof_train.prepare import prepare

    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    for i in range(4):
        base = 0.5 + 0.4 * np.sin(xx / (3 + i) + yy / (5 + i))[..., None] * np.array([1.0, 0.7, 0.4])
        Image.fromarray((np.clip(base + rng.normal(0, 0.05, (96, 128, 3)), 0, 1) * 255).astype(np.uint8)).save(src / f"p{i}.png")
    data = tmp_path / "dataset"
    prepare(data, photos=[src], seed=0, val=0.25, test=0.25, progress=False, method="bilinear")
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")} | {"OMP_NUM_THREADS": "1"}
    # --standalone: torchrun picks its own free loopback port (no race with a port chosen here).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "rawproof_train", "train-nip",
           "--data", str(data), "--out", str(out), "--steps", "2", "--threads", "1",
           "--set", "patch=32", "--set", "batch=4", "--set", "val_patches=4", "--set", "patches_per_image=4"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((out / "final_metrics.json").read_text())["val_psnr_db"] > 0
    state = torch.load(out / "state.pt", weights_only=False)
    assert state["step"] == 2 and state["world_size"] == 2 and len(state["ddp_numpy_rng"]) == 2
    assert state["ddp_numpy_rng"][0] != state["ddp_numpy_rng"][1]
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("2,")
    assert (out / "nip.pt").exists() and torch.load(out / "nip.pt", weights_only=False)["kind"] == "nip"
