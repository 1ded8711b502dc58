"""Data-parallel training under ``torchrun``: process group, rank-sharded sampling, DDP wrapping.

``torchrun --nproc_per_node N -m rawproof_train train-joint ...`` sets ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`rawproof_train.train.run`
then calls :func:`init_distributed` and trains with :class:`~torch.nn.parallel.DistributedDataParallel`
(gloo on CPU, nccl on CUDA). Without those variables (or with ``WORLD_SIZE=1``) nothing here
is used and training is the single-process loop, unchanged.

Equivalence with one process. With a global batch ``B`` and ``W`` ranks, each rank draws
``B / W`` patches from its own generator, seeded ``(seed, rank)``. Every loss in the training
loop is a mean over the samples of the batch (MSE over pixels, cross-entropy over patches and
manipulation classes, and the models have no batch-coupled layers such as BatchNorm), and
DDP averages gradients over ranks. So the step's gradient is the gradient of the mean loss
over all ``B`` patches, as one process with batch ``B`` would compute it. The draw is
reproducible for a given ``(seed, W)``, but it is not the same set of patches as the
single-process stream, which is seeded ``seed`` alone (tests/test_distributed.py checks the
gradient identity on fixed data).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistEnv", "dist_env", "init_distributed", "shard_size", "rank_rng", "wrap_ddp", "mean_over_ranks",
           "gather_objects", "shutdown"]


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job.

    Attributes:
        rank: Global rank, 0 .. world_size - 1; rank 0 writes logs and checkpoints.
        world_size: Number of processes.
        local_rank: Rank on this node; the CUDA device index under nccl.
        backend: ``"gloo"`` (CPU) or ``"nccl"`` (CUDA).
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.rank == 0


def dist_env() -> DistEnv | None:
    """The job read from torchrun's environment, or ``None`` for a single process (``WORLD_SIZE`` unset or 1).

    Raises:
        ValueError: ``WORLD_SIZE`` > 1 without ``RANK``, or inconsistent values.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    if "RANK" not in os.environ:
        raise ValueError("WORLD_SIZE > 1 but RANK is not set: launch with torchrun")
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not 0 <= rank < world:
        raise ValueError(f"RANK {rank} outside [0, {world})")
    return DistEnv(rank, world, local, "")


def init_distributed(device: str) -> DistEnv | None:
    """Join the process group torchrun describes; ``None`` (and no side effects) for a single process.

    Args:
        device: ``"cpu"`` (gloo) or ``"cuda"`` (nccl; this process then uses
            ``cuda:LOCAL_RANK`` as its current device, so ``"cuda"`` means that GPU).

    Raises:
        ValueError: a bad environment, or ``device="cuda"`` without enough GPUs.
    """
    env = dist_env()
    if env is None:
        return None
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if backend == "nccl":
        if torch.cuda.device_count() <= env.local_rank:
            raise ValueError(f"LOCAL_RANK {env.local_rank} but only {torch.cuda.device_count()} CUDA device(s)")
        torch.cuda.set_device(env.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
    return DistEnv(env.rank, env.world_size, env.local_rank, backend)


def shard_size(batch: int, env: DistEnv | None) -> int:
    """Patches each rank draws per step: ``batch / world_size``.

    Raises:
        ValueError: ``batch`` is not a multiple of the world size (unequal shards would
            weight the ranks' samples unequally in DDP's gradient average).
    """
    if env is None:
        return batch
    if batch % env.world_size:
        raise ValueError(f"batch {batch} must be a multiple of the world size {env.world_size}")
    return batch // env.world_size


def rank_rng(seed: int, env: DistEnv | None) -> np.random.Generator:
    """The sampling generator: ``default_rng(seed)`` for one process, ``default_rng((seed, rank))`` per rank."""
    return np.random.default_rng(seed if env is None else (seed, env.rank))


def wrap_ddp(module: nn.Module | None, env: DistEnv | None) -> nn.Module | None:
    """``module`` in DistributedDataParallel when it has trainable parameters and a job is running, else ``None``.

    The caller keeps the bare module for ``state_dict()`` (checkpoint keys stay free of the
    ``module.`` prefix) and calls the wrapper in the forward pass so the gradients are
    all-reduced. DDP broadcasts rank 0's parameters and buffers at construction.
    """
    if env is None or module is None or not any(p.requires_grad for p in module.parameters()):
        return None
    from torch.nn.parallel import DistributedDataParallel

    dev = next(module.parameters()).device
    return DistributedDataParallel(module, device_ids=[dev.index if dev.index is not None else env.local_rank]
                                   if dev.type == "cuda" else None)


def mean_over_ranks(values: dict[str, float], env: DistEnv | None, device: str | torch.device = "cpu") -> dict[str, float]:
    """Average scalar metrics over ranks (a collective: every rank must call it at the same step)."""
    if env is None or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                     device=torch.device("cuda", env.local_rank) if env.backend == "nccl" else torch.device(device))
    dist.all_reduce(t)
    t /= env.world_size
    return dict(zip(keys, t.tolist()))


def gather_objects(obj: Any, env: DistEnv | None) -> list[Any]:
    """Every rank's ``obj``, in rank order (a collective); ``[obj]`` for one process."""
    if env is None:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def shutdown(env: DistEnv | None) -> None:
    """Leave the process group (after a final barrier); no-op for one process."""
    if env is not None and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
