"""Data-parallel training over ``torch.distributed``, launched by ``torchrun``.

Every process holds the whole batch list (the same seeded order) and trains on
its contiguous share of each batch's rows; gradients are averaged by
``DistributedDataParallel``. Losses are scaled so that the summed gradient equals
the single-process gradient of the whole batch, so N processes with batch B
train exactly like one process with batch B. Rank 0 alone logs and writes files.

    torchrun --standalone --nproc_per_node=2 -m genloom train configs/x.yaml
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from genloom.data.batching import Batch


def init(device: torch.device) -> tuple[int, int]:
    """Join the process group that torchrun describes in the environment; (rank, world size), (0, 1) alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def local_device(device: torch.device) -> torch.device:
    """One GPU per process: ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def shard(batch: Batch, rank: int, world: int) -> Batch:
    """This process's contiguous share of the batch's rows (every tensor field is split the same way)."""
    parts = {f.name: getattr(batch, f.name) for f in fields(batch)}
    for name, value in parts.items():
        if isinstance(value, torch.Tensor):
            parts[name] = torch.tensor_split(value, world, dim=0)[rank]
    return type(batch)(**parts)


class LossModule(nn.Module):
    """Routes ``model.loss`` through ``forward`` so DistributedDataParallel sees the computation."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch, carry: Any) -> Any:
        return self.model.loss(batch, carry)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model.loss`` as a module call, data-parallel when there are several processes."""
    module = LossModule(model)
    if world_size() == 1:
        return module
    return nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over all processes (every process gets the totals)."""
    if world_size() == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather(value: Any) -> list[Any]:
    """Every process's ``value`` (CPU tensors and plain data), in rank order. Object collectives
    pickle, but only between this run's own processes, never from a file."""
    if world_size() == 1:
        return [value]
    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    return values
