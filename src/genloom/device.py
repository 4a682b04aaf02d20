"""Where tensors live and in which precision: the device a run asks for, and the autocast it trains under."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor

from genloom.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; anything else must exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use cpu, cuda, cuda:N or auto.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' was asked for but this machine has no CUDA GPU; use --device cpu.")
    return device


def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bf16 kernels: oneDNN's (LSTM, GRU, matmul) need AVX-512 or AMX."""
    return torch.backends.cpu.get_cpu_capability().startswith(("AVX512", "AMX"))


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse ``bf16`` on a CPU that cannot run it, with the fix, before anything is trained or written."""
    if precision == "bf16" and device.type == "cpu" and not cpu_supports_bf16():
        capability = torch.backends.cpu.get_cpu_capability()
        raise UserError(f"train.precision is bf16, but this CPU ({capability}, no AVX-512) has no bf16 kernels; "
                        "set train.precision=fp32 (or auto), or train on a CUDA GPU.")


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (``auto`` or ``bf16``), bf16 on CPU only when asked, else nothing."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(tree: Any, device: torch.device) -> Any:
    """Move every tensor of a nested tuple/list to ``device`` (a recurrent carry, for instance)."""
    if isinstance(tree, Tensor):
        return tree.to(device)
    if isinstance(tree, (tuple, list)):
        return type(tree)(to_device(t, device) for t in tree)
    return tree


def free_memory(device: torch.device) -> int | None:
    """Bytes free on ``device`` now (CUDA: the driver's figure; CPU: the kernel's MemAvailable), or None when
    this system does not say."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in open("/proc/meminfo", encoding="ascii"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits(parameters: int, device: torch.device, training: bool, what: str) -> None:
    """Refuse a model whose weights alone (and, to train, their gradients and Adam's two moments: 16 bytes a
    parameter) need more memory than ``device`` has free, saying how much it would need."""
    need = parameters * (16 if training else 4)
    free = free_memory(device)
    if free is not None and need > free:
        purpose = "to train (weights, gradients and optimizer state)" if training else "to hold its weights"
        raise UserError(f"{what} has {parameters:,} parameters, which need about {need / 2**30:,.1f} GiB {purpose}, "
                        f"more than the {free / 2**30:,.1f} GiB free on {device}; make the model smaller.")
