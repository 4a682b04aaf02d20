"""The one explicit training loop every model family uses.

A model only has to offer ``loss(batch, carry) -> LossOutput`` (``nn/losses.py``); ``carry`` is
whatever state the model wants back with the next batch (the recurrent state of truncated BPTT),
detached between optimizer steps. A model may also offer ``after_update()``, called after each
optimizer step (its update counters), and ``lr_scales()``, LR multipliers by parameter-name prefix.
Everything else (optimizer, LR schedule, clipping, accumulation, bf16 autocast, evaluation and early
stopping, NaN guard, progress bar, ``metrics.jsonl``, atomic snapshots, exact resume, curves PNG)
lives here, once.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from genloom.checkpoint import atomic_write, load_snapshot, rng_state, save_snapshot, save_tensors, set_rng_state
from genloom.config import TrainConfig
from genloom.data.batching import Batch
from genloom.device import autocast_for, check_precision, to_device
from genloom.errors import TrainingInterrupted, UserError
from genloom.plot import plot_curves
from genloom.training import distributed
from genloom.training.optim import build_optimizer, learning_rate


@dataclass
class TrainState:
    """Where a run stands; a snapshot saves these fields and a resume restores them.

    ``batch`` is the next batch of the current epoch; ``carry`` the model's state after the last step;
    ``best`` the best validation loss; ``bad_evals`` the evaluations since it improved; ``plateaus`` the
    LR cuts of the plateau schedule and ``since_plateau`` the evaluations without improvement since the
    last improvement or cut.
    """

    step: int = 0
    epoch: int = 0
    batch: int = 0
    best: float | None = None
    bad_evals: int = 0
    carry: Any = None
    plateaus: int = 0
    since_plateau: int = 0


@dataclass
class Horizon:
    """How long the run is: optimizer steps per epoch, epochs, total steps, and the evaluation interval."""

    steps_per_epoch: int
    epochs: int
    total_steps: int
    eval_every: int

    @classmethod
    def of(cls, cfg: TrainConfig, batches_per_epoch: int) -> Horizon:
        steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum)
        epochs = cfg.epochs if cfg.epochs is not None else math.ceil(cfg.max_steps / steps_per_epoch)
        total = min(cfg.max_steps or epochs * steps_per_epoch, epochs * steps_per_epoch)
        return cls(steps_per_epoch, epochs, total, cfg.eval_every or steps_per_epoch)


def detach(tree: Any) -> Any:
    """Detach every tensor of a nested tuple/list/dict (the carry across TBPTT windows)."""
    if isinstance(tree, Tensor):
        return tree.detach()
    if isinstance(tree, (tuple, list)):
        return type(tree)(detach(t) for t in tree)
    if isinstance(tree, dict):
        return {k: detach(v) for k, v in tree.items()}
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
    run = Run(model, cfg, Path(run_dir), device, valid_batches, report, keep_best)
    horizon = Horizon.of(cfg, len(train_batches(0)))
    state = run.restore(horizon) if resume else TrainState()
    runner = distributed.wrap(model, device)  # model.loss as a module call, data-parallel under torchrun
    if cfg.compile:
        runner = torch.compile(runner)
    # A model whose training depends on how many updates it has had (a KL or temperature schedule, a GAN's
    # turns) counts them here, between steps, so a snapshot never holds a half-counted step.
    after_update = getattr(model, "after_update", None)
    model.train()
    start = time.time()
    run.open_progress(horizon.total_steps, state.step, title)
    window = LossWindow()
    stop = state.step >= horizon.total_steps
    try:
        while not stop and state.epoch < horizon.epochs:
            batches = train_batches(state.epoch)
            micro, carry = 0, state.carry
            for index in range(state.batch, len(batches)):
                done = run.forward_backward(runner, batches[index], carry, state.step)
                if done is None:
                    continue  # too few rows to give every process one; skipped by all alike
                loss, tokens, carry = done
                window.add(loss, tokens)
                micro += 1
                if micro < cfg.grad_accum and index + 1 < len(batches):
                    continue
                micro = 0
                lr = learning_rate(cfg, state.step, horizon.total_steps, state.epoch, state.plateaus)
                grad_norm = optimizer_step(model, run.optimizer, lr, cfg.grad_clip)
                if after_update is not None:
                    after_update()
                state.step, state.batch, state.carry = state.step + 1, index + 1, carry
                run.step_rng = rng_state()
                run.bar.update(1)
                if state.step % cfg.log_every == 0 or state.step == horizon.total_steps:
                    run.log_train(state, window.take(), lr, grad_norm, time.time() - start)
                epoch_done = state.batch >= len(batches)
                if epoch_done:
                    state.epoch, state.batch, state.carry = state.epoch + 1, 0, None
                stop = state.step >= horizon.total_steps
                if state.step % horizon.eval_every == 0 or (epoch_done and cfg.eval_every is None) or stop:
                    reason = run.evaluate_and_keep(state, horizon)
                    if reason:
                        run.bar.write(reason)
                        stop = True
                if stop or epoch_done:
                    break
    except KeyboardInterrupt:
        run.bar.close()
        run.snapshot(state)
        distributed.barrier()
        raise TrainingInterrupted(
            f"interrupted at step {state.step}; the run is saved in {run.run_dir}: resume it with --resume."
        ) from None
    run.bar.close()
    return run.finish(state, time.time() - start, title)


class LossWindow:
    """The token-weighted training loss and throughput since the last log line."""

    def __init__(self) -> None:
        self.loss, self.tokens, self.start = 0.0, 0, time.time()

    def add(self, loss: float, tokens: int) -> None:
        self.loss += loss * tokens
        self.tokens += tokens

    def take(self) -> tuple[float, float]:
        """(mean loss, tokens per second) of the window, which then starts again."""
        elapsed = max(time.time() - self.start, 1e-9)
        figures = self.loss / max(self.tokens, 1), self.tokens / elapsed
        self.loss, self.tokens, self.start = 0.0, 0, time.time()
        return figures


class Run:
    """What ``fit`` keeps while it trains: the model and optimizer, where they are saved, the progress bar,
    and the steps of the loop that touch them (restore, forward/backward, evaluate-and-keep, snapshot)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, run_dir: Path, device: torch.device,
                 valid_batches: Callable[[], Iterable[Batch]] | None,
                 report: Callable[[nn.Module], dict[str, float]] | None, keep_best: bool):
        self.model, self.cfg, self.run_dir, self.device = model, cfg, run_dir, device
        self.valid_batches, self.report, self.keep_best = valid_batches, report, keep_best
        check_precision(device, cfg.precision)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.main = self.rank == 0  # only the first process logs and writes files
        self.metrics_path = run_dir / "metrics.jsonl"
        torch.manual_seed(cfg.seed + self.rank)  # each process draws its own dropout masks
        lr_scales = model.lr_scales() if hasattr(model, "lr_scales") else None
        self.optimizer = build_optimizer(model.named_parameters(), cfg, lr_scales)
        # The RNG as it was right after the last completed step: a snapshot taken on Ctrl-C, in the
        # middle of a step whose dropout masks were already drawn, must not include those draws.
        self.step_rng = rng_state()
        self.bar: Any = None

    def restore(self, horizon: Horizon) -> TrainState:
        """The model, optimizer, RNG and ``TrainState`` of the newest snapshot in the run folder."""
        latest = load_snapshot(self.run_dir)
        if latest is None:
            raise UserError(f"--resume was given but {self.run_dir} holds no trainer snapshot to resume from.")
        model_tensors, saved = latest
        try:
            self.model.load_state_dict(model_tensors)
            self.optimizer.load_state_dict(saved["optimizer"])
            if saved.get("world_size", 1) != self.world:
                raise UserError(f"{self.run_dir} was trained by {saved.get('world_size', 1)} processes; "
                                "resume it with as many.")
            per_rank = saved["per_rank"][self.rank] if self.world > 1 else {"rng": saved["rng"], "carry": saved["carry"]}
            set_rng_state(per_rank["rng"])
            defaults = TrainState()  # older snapshots lack the plateau counters
            state = TrainState(**{f.name: saved.get(f.name, getattr(defaults, f.name)) for f in fields(TrainState)})
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
            raise UserError(f"the newest snapshot in {self.run_dir / 'state'} is damaged and cannot be resumed "
                            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else error!r}).") from None
        self.step_rng = rng_state()
        state.carry = to_device(per_rank["carry"], self.device)
        if self.main:
            _truncate_metrics(self.metrics_path, state.step)
        if state.step >= horizon.total_steps:
            print(f"{self.run_dir} already finished {state.step} of {horizon.total_steps} steps; nothing to resume.",
                  file=sys.stderr)
        return state

    def open_progress(self, total_steps: int, step: int, title: str) -> None:
        self.bar = tqdm(total=total_steps, initial=step, desc=title or "train", unit="step",
                        dynamic_ncols=True, disable=None if self.main else True, file=sys.stderr)

    def forward_backward(self, runner: nn.Module, batch: Batch, carry: Any,
                         step: int) -> tuple[float, int, Any] | None:
        """One micro-batch: this process's share, the loss under autocast, the NaN guard, backward.

        Returns the whole batch's loss and token count (the same in every process) and the detached carry,
        or None when the batch has too few rows to give every process one.
        """
        cfg, loss_scale = self.cfg, 1.0
        if self.world > 1:
            if batch.inputs.size(0) < self.world:
                return None
            # Each process's mean loss × its share of the batch's tokens × world: the averaged
            # gradient is then the gradient of the whole batch's mean loss.
            whole = batch.num_tokens
            batch = distributed.shard(batch, self.rank, self.world)
            loss_scale = batch.num_tokens * self.world / max(whole, 1)
        with autocast_for(self.device, cfg.precision):
            out = runner(batch.to(self.device), carry)
        value, tokens = float(out.loss.detach()), out.n_tokens
        if self.world > 1:  # the whole batch's loss and token count, the same in every process
            total, count = distributed.all_sum([value * tokens, tokens], self.device)
            value, tokens = total / max(count, 1), int(count)
        if not math.isfinite(value):
            raise UserError(
                f"training stopped at step {step}: the loss became {value}; the last good checkpoint "
                f"in {self.run_dir} is kept. Lower train.lr or set train.grad_clip."
            )
        (out.loss * (loss_scale / cfg.grad_accum)).backward()
        return value, tokens, detach(out.carry)

    def log(self, record: dict[str, Any]) -> None:
        if self.main:
            with open(self.metrics_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def log_train(self, state: TrainState, window: tuple[float, float], lr: float, grad_norm: float,
                  elapsed: float) -> None:
        loss, tokens_per_s = window
        self.log({"step": state.step, "epoch": state.epoch, "split": "train", "loss": loss, "lr": lr,
                  "grad_norm": grad_norm, "tokens_per_s": tokens_per_s, "elapsed_s": elapsed})
        self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}")

    def snapshot(self, state: TrainState) -> None:
        """Save the trainer state (a collective call: every process's RNG and carry go to rank 0)."""
        trainer = {f.name: getattr(state, f.name) for f in fields(TrainState)}
        trainer.update(optimizer=self.optimizer.state_dict(), rng=self.step_rng)
        if self.world > 1:
            trainer.update(world_size=self.world, carry=None, per_rank=distributed.gather(
                {"rng": self.step_rng, "carry": to_device(state.carry, torch.device("cpu"))}))
        if self.main:
            save_snapshot(self.run_dir, state.step, self.model.state_dict(), trainer)
            if self.valid_batches is None:
                save_tensors(self.run_dir / "model.safetensors", self.model.state_dict())

    def evaluate_and_keep(self, state: TrainState, horizon: Horizon) -> str | None:
        """Evaluate, keep the best weights, snapshot, and say why training should stop, if it should."""
        if self.valid_batches is None:
            self.snapshot(state)
            return None
        cfg = self.cfg
        result = evaluate(self.model, self.valid_batches(), self.device, cfg.precision)
        extra = {}
        if self.report is not None:
            with evaluation_rng(self.device):
                extra = self.report(self.model)
        self.log({"step": state.step, "epoch": state.epoch, "split": "valid", **result, **extra})
        improved = state.best is None or result["loss"] < state.best
        if improved:
            state.best, state.bad_evals, state.since_plateau = result["loss"], 0, 0
        else:
            state.bad_evals += 1
            state.since_plateau += 1
        plateau = cfg.schedule == "plateau" and state.since_plateau >= cfg.plateau_patience
        if plateau:
            state.plateaus, state.since_plateau = state.plateaus + 1, 0
        if self.main and (improved or not self.keep_best):
            save_tensors(self.run_dir / "model.safetensors", self.model.state_dict())
        self.snapshot(state)
        figures = "".join(f", {key} {value:.4g}" if isinstance(value, float) else f", {key} {value}"
                          for key, value in extra.items())
        self.bar.write(f"step {state.step}: valid loss {result['loss']:.4f}, perplexity {result['perplexity']:.2f}"
                       + figures + ("" if improved else f" (no improvement {state.bad_evals}/{cfg.patience or '∞'})"))
        return self.stop_reason(state, horizon, plateau)

    def stop_reason(self, state: TrainState, horizon: Horizon, plateau: bool) -> str | None:
        """Why training ends after this evaluation (too many plateaus, patience run out), or None."""
        cfg = self.cfg
        if plateau and cfg.max_plateaus is not None and state.plateaus >= cfg.max_plateaus:
            return f"early stop: validation plateau number {state.plateaus} (train.max_plateaus)."
        if plateau:
            next_lr = learning_rate(cfg, state.step, horizon.total_steps, state.epoch, state.plateaus)
            self.bar.write(f"validation plateau: the learning rate is now {next_lr:.3g}")
        if cfg.patience is not None and state.bad_evals > 0 and state.bad_evals >= cfg.patience:
            return f"early stop: no validation improvement in {state.bad_evals} evaluations (train.patience)."
        return None

    def finish(self, state: TrainState, wall: float, title: str) -> dict[str, Any]:
        """Draw the curves and sum the run up."""
        if self.main:
            plot_curves(self.metrics_path, self.run_dir / "curves.png", title)
        distributed.barrier()
        summary = {"steps": state.step, "wall_s": wall, "best_valid_loss": state.best}
        if state.best is not None:
            summary["best_valid_perplexity"] = math.exp(min(state.best, 700.0))
        return summary


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after the snapshot being resumed, so curves never show a step twice; a line that
    is not whole JSON (the last one, torn by a kill mid-write) goes too."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step", step + 1) <= step:
            keep.append(line)
    atomic_write(path, "".join(line + "\n" for line in keep))
