"""The one explicit training loop every model family uses.

A model only has to offer ``loss(batch, carry) -> LossOutput``; ``carry`` is
whatever state the model wants back with the next batch (the recurrent state of
truncated BPTT), detached between optimizer steps. A model may also offer
``after_update()``, called after each optimizer step (its update counters), and
``lr_scales()``, LR multipliers by parameter-name prefix. Everything else
(optimizer, LR schedule, clipping, accumulation, bf16 autocast, evaluation and
early stopping, NaN guard, progress bar, ``metrics.jsonl``, atomic snapshots,
exact resume, curves PNG) lives here, once.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from genloom.checkpoint import atomic_write, load_snapshot, rng_state, save_snapshot, save_tensors, set_rng_state
from genloom.config import TrainConfig
from genloom.data.batching import Batch
from genloom.errors import UserError
from genloom.train import distributed
from genloom.train.optim import build_optimizer, learning_rate
from genloom.train.plot import plot_curves


@dataclass
class LossOutput:
    """What a model's ``loss`` returns.

    ``loss`` is the scalar to minimise (mean over ``n_tokens``); ``carry`` goes
    back into the next ``loss`` call; ``stats`` are extra figures summed over the
    batch (for example a KL term), averaged per token when logged.
    """

    loss: Tensor
    n_tokens: int
    carry: Any = None
    stats: dict[str, float] = field(default_factory=dict)


class TrainingInterrupted(Exception):
    """Ctrl-C during training; the last complete step was saved."""


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


def detach(tree: Any) -> Any:
    """Detach every tensor of a nested tuple/list/dict (the carry across TBPTT windows)."""
    if isinstance(tree, Tensor):
        return tree.detach()
    if isinstance(tree, (tuple, list)):
        return type(tree)(detach(t) for t in tree)
    if isinstance(tree, dict):
        return {k: detach(v) for k, v in tree.items()}
    return tree


def _to_device(tree: Any, device: torch.device) -> Any:
    if isinstance(tree, Tensor):
        return tree.to(device)
    if isinstance(tree, (tuple, list)):
        return type(tree)(_to_device(t, device) for t in tree)
    return tree


@contextlib.contextmanager
def evaluation_rng(device: torch.device, seed: int = 0):
    """A fixed random stream for evaluation, with the caller's stream restored after it: a model that samples
    while it is scored (a VAE's z) gets the same figures for the same weights, and evaluating in the middle of
    training never shifts the training randomness (so a resumed run stays exact)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[Batch], device: torch.device, precision: str = "fp32") -> dict[str, float]:
    """Token-weighted mean loss (and perplexity, and per-token stats) of ``model`` over ``batches``."""
    with evaluation_rng(device):
        return _evaluate(model, batches, device, precision)


def _evaluate(model: nn.Module, batches: Iterable[Batch], device: torch.device, precision: str) -> dict[str, float]:
    was_training = model.training
    model.eval()
    total, tokens, carry = 0.0, 0, None
    stats: dict[str, float] = {}
    with autocast_for(device, precision):
        for batch in batches:
            out = model.loss(batch.to(device), carry)
            carry = out.carry
            total += float(out.loss) * out.n_tokens
            tokens += out.n_tokens
            for key, value in out.stats.items():
                stats[key] = stats.get(key, 0.0) + float(value)
    model.train(was_training)
    if tokens == 0:
        raise UserError("the evaluation data holds no tokens.")
    loss = total / tokens
    result = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": tokens}
    result.update({key: value / tokens for key, value in stats.items()})
    return result


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, lr: float, grad_clip: float | None) -> float:
    """Clip, set the LR (times each group's ``lr_scale``), step, zero the gradients; returns the gradient norm
    before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip else float("inf"))
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def fit(
    model: nn.Module,
    train_batches: Callable[[int], list[Batch]],
    valid_batches: Callable[[], Iterable[Batch]] | None,
    cfg: TrainConfig,
    run_dir: str | Path,
    device: torch.device,
    resume: bool = False,
    title: str = "",
    report: Callable[[nn.Module], dict[str, float]] | None = None,
    keep_best: bool = True,
) -> dict[str, Any]:
    """Train ``model`` and keep ``run_dir`` a loadable checkpoint throughout.

    Args:
        model: any module with ``loss(batch, carry) -> LossOutput``, already on ``device``.
        train_batches: epoch number → that epoch's batches, the same list for the same epoch
            (so a resumed run skips to exactly where it stopped).
        valid_batches: a fresh pass over the validation batches, or None.
        cfg: the shared training settings.
        run_dir: the checkpoint directory (``config.json`` and ``tokenizer.json`` already written).
        device: where the model lives.
        resume: continue from the newest snapshot in ``run_dir``.
        title: the curves plot's title.
        report: called with the model at every evaluation, after the validation loss; the figures it
            returns are logged and printed with it (a family's own measures, such as a VAE's KL).
        keep_best: ``model.safetensors`` holds the best-validation weights; False: the latest evaluated
            ones (adversarial training, where a lower NLL is not the goal).

    Returns:
        A summary: steps, best validation loss and perplexity, wall time.
    """
    run_dir = Path(run_dir)
    rank, world = distributed.rank(), distributed.world_size()
    main = rank == 0  # only the first process logs and writes files
    torch.manual_seed(cfg.seed + rank)  # each process draws its own dropout masks
    runner = distributed.wrap(model, device)  # model.loss as a module call, data-parallel under torchrun
    if cfg.compile:
        runner = torch.compile(runner)
    lr_scales = model.lr_scales() if hasattr(model, "lr_scales") else None
    optimizer = build_optimizer(model.named_parameters(), cfg, lr_scales)
    # A model whose training depends on how many updates it has had (a KL or temperature schedule, a GAN's
    # generator and discriminator turns) counts them here, between steps, so a snapshot never holds a
    # half-counted step.
    after_update = model.after_update if hasattr(model, "after_update") else None
    steps_per_epoch = math.ceil(len(train_batches(0)) / cfg.grad_accum)
    epochs = cfg.epochs if cfg.epochs is not None else math.ceil(cfg.max_steps / steps_per_epoch)
    total_steps = min(cfg.max_steps or epochs * steps_per_epoch, epochs * steps_per_epoch)
    eval_every = cfg.eval_every or steps_per_epoch
    # plateaus / since_plateau: the LR cuts of the plateau schedule, and the evaluations without improvement
    # since the last improvement or cut.
    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "best": None, "bad_evals": 0, "carry": None,
                             "plateaus": 0, "since_plateau": 0}
    metrics_path = run_dir / "metrics.jsonl"

    if resume:
        latest = load_snapshot(run_dir)
        if latest is None:
            raise UserError(f"--resume was given but {run_dir} holds no trainer snapshot to resume from.")
        model_tensors, saved = latest
        model.load_state_dict(model_tensors)
        optimizer.load_state_dict(saved["optimizer"])
        if saved.get("world_size", 1) != world:
            raise UserError(f"{run_dir} was trained by {saved.get('world_size', 1)} processes; resume it with as many.")
        per_rank = saved["per_rank"][rank] if world > 1 else {"rng": saved["rng"], "carry": saved["carry"]}
        set_rng_state(per_rank["rng"])
        state = {key: saved.get(key, value) for key, value in state.items()}  # older snapshots lack the plateaus
        state["carry"] = _to_device(per_rank["carry"], device)
        if main:
            _truncate_metrics(metrics_path, state["step"])
        if state["step"] >= total_steps:
            print(f"{run_dir} already finished {state['step']} of {total_steps} steps; nothing to resume.", file=sys.stderr)

    # The RNG as it was right after the last completed step: a snapshot taken on Ctrl-C, in the
    # middle of a step whose dropout masks were already drawn, must not include those draws.
    step_rng = rng_state()

    def snapshot() -> None:
        """Save the trainer state (a collective call: every process's RNG and carry go to rank 0)."""
        trainer = {key: state[key] for key in state}
        trainer.update(optimizer=optimizer.state_dict(), rng=step_rng)
        if world > 1:
            trainer.update(world_size=world, carry=None, per_rank=distributed.gather(
                {"rng": step_rng, "carry": _to_device(state["carry"], torch.device("cpu"))}))
        if main:
            save_snapshot(run_dir, state["step"], model.state_dict(), trainer)
            if valid_batches is None:
                save_tensors(run_dir / "model.safetensors", model.state_dict())

    def log(record: dict[str, Any]) -> None:
        if main:
            with open(metrics_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def run_eval() -> str | None:
        """Evaluate, keep the best weights, and say why training should stop (patience or plateaus), if it should."""
        if valid_batches is None:
            snapshot()
            return None
        result = evaluate(model, valid_batches(), device, cfg.precision)
        extra = {}
        if report is not None:
            with evaluation_rng(device):
                extra = report(model)
        log({"step": state["step"], "epoch": state["epoch"], "split": "valid", **result, **extra})
        improved = state["best"] is None or result["loss"] < state["best"]
        if improved:
            state["best"], state["bad_evals"], state["since_plateau"] = result["loss"], 0, 0
        else:
            state["bad_evals"] += 1
            state["since_plateau"] += 1
        plateau = cfg.schedule == "plateau" and state["since_plateau"] >= cfg.plateau_patience
        if plateau:
            state["plateaus"], state["since_plateau"] = state["plateaus"] + 1, 0
        if main and (improved or not keep_best):
            save_tensors(run_dir / "model.safetensors", model.state_dict())
        snapshot()
        figures = "".join(f", {key} {value:.4g}" if isinstance(value, float) else f", {key} {value}"
                          for key, value in extra.items())
        bar.write(f"step {state['step']}: valid loss {result['loss']:.4f}, perplexity {result['perplexity']:.2f}"
                  + figures + ("" if improved else f" (no improvement {state['bad_evals']}/{cfg.patience or '∞'})"))
        if plateau and cfg.max_plateaus is not None and state["plateaus"] >= cfg.max_plateaus:
            return f"early stop: validation plateau number {state['plateaus']} (train.max_plateaus)."
        if plateau:
            next_lr = learning_rate(cfg, state["step"], total_steps, state["epoch"], state["plateaus"])
            bar.write(f"validation plateau: the learning rate is now {next_lr:.3g}")
        if cfg.patience is not None and state["bad_evals"] >= cfg.patience:
            return f"early stop: no validation improvement in {cfg.patience} evaluations."
        return None

    model.train()
    start = time.time()
    bar = tqdm(total=total_steps, initial=state["step"], desc=title or "train", unit="step",
               dynamic_ncols=True, disable=None if main else True, file=sys.stderr)
    window_loss, window_tokens, window_start = 0.0, 0, time.time()
    stop = state["step"] >= total_steps
    try:
        while not stop and state["epoch"] < epochs:
            batches = train_batches(state["epoch"])
            micro, carry = 0, state["carry"]
            for index in range(state["batch"], len(batches)):
                batch, loss_scale = batches[index], 1.0
                if world > 1:
                    if batch.inputs.size(0) < world:
                        continue  # too few rows to give every process one; skipped by all alike
                    # Each process's mean loss × its share of the batch's tokens × world: the averaged
                    # gradient is then the gradient of the whole batch's mean loss.
                    whole = batch.num_tokens
                    batch = distributed.shard(batch, rank, world)
                    loss_scale = batch.num_tokens * world / max(whole, 1)
                batch = batch.to(device)
                with autocast_for(device, cfg.precision):
                    out = runner(batch, carry)
                value, tokens = float(out.loss.detach()), out.n_tokens
                if world > 1:  # the whole batch's loss and token count, the same in every process
                    total, count = distributed.all_sum([value * tokens, tokens], device)
                    value, tokens = total / max(count, 1), int(count)
                if not math.isfinite(value):
                    raise UserError(
                        f"training stopped at step {state['step']}: the loss became {value}; the last good checkpoint "
                        f"in {run_dir} is kept. Lower train.lr or set train.grad_clip."
                    )
                (out.loss * (loss_scale / cfg.grad_accum)).backward()
                carry = detach(out.carry)
                window_loss += value * tokens
                window_tokens += tokens
                micro += 1
                if micro < cfg.grad_accum and index + 1 < len(batches):
                    continue
                micro = 0
                lr = learning_rate(cfg, state["step"], total_steps, state["epoch"], state["plateaus"])
                grad_norm = optimizer_step(model, optimizer, lr, cfg.grad_clip)
                if after_update is not None:
                    after_update()
                state["step"] += 1
                state["batch"], state["carry"] = index + 1, carry
                step_rng = rng_state()
                bar.update(1)
                if state["step"] % cfg.log_every == 0 or state["step"] == total_steps:
                    elapsed = max(time.time() - window_start, 1e-9)
                    loss = window_loss / max(window_tokens, 1)
                    log({"step": state["step"], "epoch": state["epoch"], "split": "train", "loss": loss,
                         "lr": lr, "grad_norm": grad_norm, "tokens_per_s": window_tokens / elapsed,
                         "elapsed_s": time.time() - start})
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{window_tokens / elapsed:,.0f}")
                    window_loss, window_tokens, window_start = 0.0, 0, time.time()
                epoch_done = state["batch"] >= len(batches)
                if epoch_done:
                    state["epoch"], state["batch"], state["carry"] = state["epoch"] + 1, 0, None
                if state["step"] >= total_steps:
                    stop = True
                # Evaluate every eval_every steps (once an epoch when it is unset) and at the end.
                if state["step"] % eval_every == 0 or (epoch_done and cfg.eval_every is None) or stop:
                    reason = run_eval()
                    if reason:
                        bar.write(reason)
                        stop = True
                if stop or epoch_done:
                    break
    except KeyboardInterrupt:
        bar.close()
        snapshot()
        distributed.barrier()
        raise TrainingInterrupted(
            f"interrupted at step {state['step']}; the run is saved in {run_dir}: resume it with --resume."
        ) from None
    bar.close()
    wall = time.time() - start
    if main:
        plot_curves(metrics_path, run_dir / "curves.png", title)
    distributed.barrier()
    summary = {"steps": state["step"], "wall_s": wall, "best_valid_loss": state["best"]}
    if state["best"] is not None:
        summary["best_valid_perplexity"] = math.exp(min(state["best"], 700.0))
    return summary


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after the snapshot being resumed, so curves never show a step twice."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines() if json.loads(line)["step"] <= step]
    atomic_write(path, "".join(line + "\n" for line in keep))
