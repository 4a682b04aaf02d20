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
