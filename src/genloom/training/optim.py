"""Optimizers and learning-rate schedules: the LR is a pure function of the step, so resuming needs no scheduler object."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from genloom.config import TrainConfig


def build_optimizer(named_params: Iterable[tuple[str, nn.Parameter]], cfg: TrainConfig,
                    lr_scales: dict[str, float] | None = None) -> torch.optim.Optimizer:
    """AdamW, Adam or SGD (with optional momentum) over the trainable ``named_params``.

    Weight decay applies to matrices and embeddings only, never to biases and
    LayerNorm gains (the usual practice of GPT-2, nanoGPT and BERT). ``lr_scales``
    maps a parameter-name prefix to a multiplier of the scheduled LR (a GAN's
    discriminator learns more slowly than its generator); each group carries its
    ``lr_scale`` and ``optimizer_step`` applies it.
    """
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, param in named_params:
        if not param.requires_grad:
            continue
        scale = next((s for prefix, s in (lr_scales or {}).items() if name.startswith(prefix)), 1.0)
        groups.setdefault((scale, param.dim() >= 2), []).append(param)
    param_groups = [{"params": params, "weight_decay": cfg.weight_decay if decays else 0.0, "lr_scale": scale}
                    for (scale, decays), params in groups.items()]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=tuple(cfg.betas))
    if cfg.optimizer == "adam":
        return torch.optim.Adam(param_groups, lr=cfg.lr, betas=tuple(cfg.betas))
    return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum)


def learning_rate(cfg: TrainConfig, step: int, total_steps: int, epoch: int, plateaus: int = 0) -> float:
    """The LR for optimizer step ``step`` (0-based) of ``total_steps``, during epoch ``epoch`` (0-based), after
    ``plateaus`` validation plateaus.

    Linear warm-up over ``warmup_steps``, then the schedule: ``constant``;
    ``linear`` or ``cosine`` decay to ``min_lr_ratio * lr`` at ``total_steps``;
    ``step``: ``lr * lr_decay ** max(0, epoch + 1 - lr_decay_start)``;
    ``plateau``: ``lr * lr_decay ** plateaus`` (the loop counts the plateaus).

    Example:
        >>> cfg = TrainConfig(lr=1.0, schedule="linear", warmup_steps=2)
        >>> [round(learning_rate(cfg, s, 6, 0), 2) for s in range(6)]
        [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "plateau":
        return cfg.lr * cfg.lr_decay ** plateaus
    if cfg.schedule == "step":
        return cfg.lr * cfg.lr_decay ** max(0, epoch + 1 - cfg.lr_decay_start)
    span = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio * cfg.lr
    if cfg.schedule == "linear":
        return floor + (cfg.lr - floor) * (1.0 - progress)
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
