"""The GAN recipe: MLE pretraining of the generator (for ``train.epochs`` or ``train.max_steps``), pretraining
of the discriminator, adversarial rounds (their sizes are model settings).

Each phase is one run of the shared loop in ``out_dir/phases/<phase>/`` (its own
snapshots, metrics and curves); a finished phase leaves ``final.safetensors`` and
``done.json``, so ``--resume`` skips the finished phases and continues the
interrupted one exactly, in the middle of the adversarial rounds included. The
run directory's ``model.safetensors`` is the generator and discriminator after
the last finished phase.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genloom.checkpoint import load_tensors, read_json, save_tensors, write_json
from genloom.config import RunConfig
from genloom.errors import UserError
from genloom.models.gan import TextGAN
from genloom.recipes import lm
from genloom.recipes.lm import prepare
from genloom.recipes.runs import build_model
from genloom.training import distributed
from genloom.training.loop import fit


def check(run: RunConfig, resume: bool = False, device: str | None = None, read_data: bool = False) -> Any:
    """The language-model recipes' checks (``lm.check``), and real and generated sequences of one length limit."""
    config = lm.check(run, resume, device, read_data)
    if run.data.max_length != config.max_length:
        raise UserError(f"data.max_length ({run.data.max_length}) must equal model.max_length "
                        f"({config.max_length}): real and generated sequences must have the same length limit.")
    return config


def phase_settings(run: RunConfig, model: TextGAN) -> list[tuple[str, Any, bool]]:
    """(phase, its TrainConfig, keep the best-validation weights) for each phase that trains anything.

    ``train.schedule`` shapes the MLE pretraining only; the discriminator and adversarial phases keep their
    learning rates constant, as SeqGAN and RelGAN do.
    """
    c, cfg = model.config, run.train
    round_length = c.generator_steps + c.disc_steps
    phases = [("mle", cfg, c.mle_weights == "best")]  # the recipe's own train.epochs / max_steps (at least one step)
    if c.disc_pretrain_epochs > 0:
        phases.append(("discriminator", dataclasses.replace(cfg, epochs=c.disc_pretrain_epochs, max_steps=None,
                                                            patience=None, warmup_steps=0, schedule="constant"),
                       False))
    if c.adversarial_rounds > 0:  # evaluated about 20 times over the rounds
        adversarial = dataclasses.replace(cfg, epochs=None, max_steps=c.adversarial_rounds * round_length,
                                          lr=c.adversarial_lr or cfg.lr, patience=None, warmup_steps=0,
                                          schedule="constant",
                                          eval_every=round_length * max(1, c.adversarial_rounds // 20))
        phases.append(("adversarial", adversarial, False))
    return phases


def train(run: RunConfig, resume: bool = False, device: str | None = None,
          report: Callable[[TextGAN], dict[str, float]] | None = None) -> dict[str, Any]:
    """Run a GAN recipe end to end; ``report`` (for example the oracle NLL of samples) is called at every
    evaluation of every phase. Returns each phase's summary."""
    check(run, resume, device)
    lm = prepare(run, resume, device)
    if distributed.world_size() > 1:
        raise UserError("GAN recipes train in one process; launch them without torchrun.")
    run_dir, config = lm.start.run_dir, lm.start.model_config
    model = build_model(run, lm.start, lm.device, f"objective {config.objective}, {lm.description}")
    summary: dict[str, Any] = {}
    for name, phase_cfg, keep_best in phase_settings(run, model):
        phase_dir = run_dir / "phases" / name
        if (phase_dir / "done.json").is_file():
            model.load_state_dict(load_tensors(phase_dir / "final.safetensors"))
            summary[name] = read_json(phase_dir / "done.json")
            continue
        phase_dir.mkdir(parents=True, exist_ok=True)
        model.phase, model.phase_lr = name, phase_cfg.lr
        continuing = resume and (phase_dir / "state").is_dir()
        if name == "adversarial" and not continuing:
            model.rollout.load_state_dict(model.generator.state_dict())  # the rollouts start from the pretrained policy
        valid = (lambda: lm.valid_batches) if lm.valid_batches else None
        result = fit(model, lm.train_batches, valid, phase_cfg, phase_dir, lm.device, resume=continuing,
                     title=f"gan {name}", report=report, keep_best=keep_best)
        if result.get("stopped"):  # train.max_time ran out: the phase is not done, and --resume continues it
            summary[name] = result
            break
        if keep_best and (phase_dir / "model.safetensors").is_file():
            model.load_state_dict(load_tensors(phase_dir / "model.safetensors"))
        save_tensors(phase_dir / "final.safetensors", model.state_dict())
        write_json(phase_dir / "done.json", result)
        save_tensors(run_dir / "model.safetensors", model.state_dict())
        summary[name] = result
    model.phase = "mle"
    return {"steps": sum(s["steps"] for s in summary.values()), "phases": summary,
            "best_valid_loss": summary.get("mle", {}).get("best_valid_loss")}


def finished_phases(run_dir: str | Path) -> list[str]:
    """The phases a GAN run directory has completed, in order."""
    return [name for name in ("mle", "discriminator", "adversarial")
            if (Path(run_dir) / "phases" / name / "done.json").is_file()]
