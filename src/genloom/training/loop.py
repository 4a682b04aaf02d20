"""The one explicit training loop every model family uses.

A model only has to offer ``loss(batch, carry) -> LossOutput`` (``nn/losses.py``); ``carry`` is
whatever state the model wants back with the next batch (the recurrent state of truncated BPTT),
detached between optimizer steps. A model may also offer ``after_update()``, called after each
optimizer step (its update counters), and ``lr_scales()``, LR multipliers by parameter-name prefix.
Everything else (optimizer, LR schedule, clipping, accumulation, bf16 autocast, evaluation and early
stopping, NaN guard, progress bar or plain progress lines, ``metrics.jsonl``, atomic snapshots, exact
resume, graceful stops on SIGTERM/SIGINT and at ``max_time``, curves PNG) lives here, once.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from genloom.checkpoint import atomic_write, load_snapshot, rng_state, save_snapshot, save_tensors, set_rng_state
from genloom.config import TrainConfig, parse_duration, to_dict
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
    ``best`` the best validation loss (``best_perplexity`` its perplexity); ``bad_evals`` the evaluations
    since it improved; ``plateaus`` the LR cuts of the plateau schedule and ``since_plateau`` the evaluations
    without improvement since the last improvement or cut.
    """

    step: int = 0
    epoch: int = 0
    batch: int = 0
    best: float | None = None
    bad_evals: int = 0
    carry: Any = None
    plateaus: int = 0
    since_plateau: int = 0
    best_perplexity: float | None = None


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
    """Token-weighted mean loss, perplexity and per-token stats of ``model`` over ``batches``.

    The perplexity is exp(NLL per token): of the ``nll`` stat when the model reports one (its loss then adds
    auxiliary terms, such as the pointer-generator's coverage penalty, which are no part of a perplexity),
    else of the loss.
    """
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
    result = {"loss": loss, "tokens": tokens}
    result.update({key: value / tokens for key, value in stats.items()})
    result["perplexity"] = math.exp(min(result.get("nll", loss), 700.0))
    return result


class StopSignals:
    """SIGTERM and SIGINT ask a run to stop at the next step boundary, with a snapshot; a second one stops it at
    once. SIGINT is taken even when the shell started the run with it ignored (``nohup … &``). Installed only in
    the main thread (Python delivers signals there alone); the previous handlers come back on exit."""

    NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT (Ctrl-C)"}

    def __init__(self) -> None:
        self.received: str | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for number in self.NAMES:
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = self.NAMES[number]
        print(f"\n{self.received}: stopping after this step with a snapshot (send it again to stop at once).",
              file=sys.stderr, flush=True)


def format_duration(seconds: float) -> str:
    """``3725`` → ``1h02m``, ``185`` → ``3m05s``, ``42.4`` → ``42s``."""
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


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
    batches_per_epoch = len(train_batches(0))
    horizon = Horizon.of(cfg, batches_per_epoch)
    state = run.restore(horizon, batches_per_epoch) if resume else TrainState()
    runner = distributed.wrap(model, device)  # model.loss as a module call, data-parallel under torchrun
    if cfg.compile:
        runner = torch.compile(runner)
    # A model whose training depends on how many updates it has had (a KL or temperature schedule, a GAN's
    # turns) counts them here, between steps, so a snapshot never holds a half-counted step.
    after_update = getattr(model, "after_update", None)
    model.train()
    start = time.time()
    deadline = start + parse_duration(cfg.max_time) if cfg.max_time is not None else None
    run.open_progress(horizon, state.step, title)
    window = LossWindow()
    stop = state.step >= horizon.total_steps
    stopped = None  # why the run ended before its horizon, when a clock or a signal ended it
    with StopSignals() as signals:
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
                    run.progress.add(loss, tokens)
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
                    run.show_progress(state, horizon, lr, time.time() - start)
                    epoch_done = state.batch >= len(batches)
                    if epoch_done:
                        state.epoch, state.batch, state.carry = state.epoch + 1, 0, None
                    stop = state.step >= horizon.total_steps
                    evaluated = state.step % horizon.eval_every == 0 or (epoch_done and cfg.eval_every is None) or stop
                    if evaluated:
                        reason = run.evaluate_and_keep(state, horizon)
                        if reason:
                            run.bar.write(reason)
                            stop = True
                    if not stop:
                        stopped = run.agree_to_stop(signals.received, deadline)
                    if stopped == "signal":
                        run.snapshot(state)
                        raise TrainingInterrupted(f"stopped by {signals.received} at step {state.step}; the run is "
                                                  f"saved in {run.run_dir}: resume it with --resume.")
                    if stopped == "max_time":
                        if not evaluated:
                            run.evaluate_and_keep(state, horizon)
                        run.bar.write(f"stopped at step {state.step} of {horizon.total_steps}: train.max_time "
                                      f"{cfg.max_time} is spent; resume it with --resume (the clock starts again).")
                        stop = True
                    if stop or epoch_done:
                        break
        except KeyboardInterrupt:
            run.bar.close()
            distributed.barrier()
            raise TrainingInterrupted(
                f"stopped at once at step {state.step} (interrupted twice): {run.run_dir} keeps its last snapshot; "
                "resume it with --resume.") from None
    run.bar.close()
    summary = run.finish(state, time.time() - start, title)
    if stopped is not None:
        summary["stopped"] = stopped
    return summary


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

    def restore(self, horizon: Horizon, batches_per_epoch: int) -> TrainState:
        """The model, optimizer, RNG and ``TrainState`` of the newest snapshot in the run folder; a ``train``
        section that differs from the snapshot's is refused where resuming could not stay exact, and otherwise
        applied and said (``explain_changes``)."""
        latest = load_snapshot(self.run_dir)
        if latest is None:
            raise UserError(f"--resume was given but {self.run_dir} holds no trainer snapshot to resume from.")
        model_tensors, saved = latest
        changes = explain_changes(saved.get("train"), self.cfg, saved.get("step", 0), saved.get("epoch", 0),
                                  saved.get("plateaus", 0), batches_per_epoch, horizon)
        if changes and self.main:
            print(changes)
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

    def open_progress(self, horizon: Horizon, step: int, title: str) -> None:
        """The progress bar on a terminal (stderr), and plain progress lines on stdout when it is not a terminal
        (nohup, CI, a log file), at most every ``progress_every`` seconds. Says up front when ``max_time`` may end
        the run before its LR schedule does."""
        self.bar = tqdm(total=horizon.total_steps, initial=step, desc=title or "train", unit="step",
                        dynamic_ncols=True, disable=None if self.main else True, file=sys.stderr)
        self.plain = self.main and not sys.stdout.isatty()
        self.progress, self.first_step, self.last_line = LossWindow(), step, time.time()
        cfg = self.cfg
        if cfg.max_time is not None and cfg.schedule in ("linear", "cosine") and self.main:
            horizon_key = "train.max_steps" if cfg.max_steps is not None and horizon.total_steps == cfg.max_steps \
                else "train.epochs"
            self.bar.write(f"train.max_time {cfg.max_time} stops this run by the clock, but its {cfg.schedule} "
                           f"learning-rate schedule spans {horizon.total_steps} steps ({horizon_key}): a run stopped "
                           "early ends before its learning rate has decayed.")

    def show_progress(self, state: TrainState, horizon: Horizon, lr: float, elapsed: float) -> None:
        """A plain progress line (step, epoch, loss, tokens/s, LR, elapsed and remaining time) when stdout is not a
        terminal and ``progress_every`` seconds have passed (0: at every logged step)."""
        every = self.cfg.progress_every
        due = (time.time() - self.last_line >= every) if every > 0 else state.step % self.cfg.log_every == 0
        if not self.plain or not (due or state.step == horizon.total_steps):
            return
        loss, tokens_per_s = self.progress.take()
        done = state.step - self.first_step
        remaining = elapsed / max(done, 1) * (horizon.total_steps - state.step)
        print(f"step {state.step}/{horizon.total_steps} ({100 * state.step / horizon.total_steps:.0f}%), epoch "
              f"{state.epoch + 1}/{horizon.epochs}, loss {loss:.4f}, {tokens_per_s:,.0f} tokens/s, lr {lr:.3g}, "
              f"elapsed {format_duration(elapsed)}, remaining {format_duration(remaining)}", flush=True)
        self.last_line = time.time()

    def agree_to_stop(self, received: str | None, deadline: float | None) -> str | None:
        """``signal`` when a stop signal came, ``max_time`` when the clock ran out, else None; every process
        agrees (they would otherwise stop at different steps and wait for each other forever)."""
        wants = [1.0 if received else 0.0, 1.0 if deadline is not None and time.time() >= deadline else 0.0]
        if self.world > 1:
            wants = distributed.all_sum(wants, self.device)
        return "signal" if wants[0] > 0 else "max_time" if wants[1] > 0 else None

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
        trainer.update(optimizer=self.optimizer.state_dict(), rng=self.step_rng, train=to_dict(self.cfg))
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
            state.best_perplexity = result["perplexity"]
        else:
            state.bad_evals += 1
            state.since_plateau += 1
        plateau = cfg.schedule == "plateau" and state.since_plateau >= cfg.plateau_patience
        if plateau:
            state.plateaus, state.since_plateau = state.plateaus + 1, 0
        if self.main and (improved or not self.keep_best):
            save_tensors(self.run_dir / "model.safetensors", self.model.state_dict())
        self.snapshot(state)
        auxiliary = {key: value for key, value in result.items() if key not in ("loss", "perplexity", "tokens")}
        figures = "".join(f", {key} {value:.4g}" if isinstance(value, float) else f", {key} {value}"
                          for key, value in {**auxiliary, **extra}.items())
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
            summary["best_valid_perplexity"] = (state.best_perplexity if state.best_perplexity is not None
                                                else math.exp(min(state.best, 700.0)))
        return summary


# Train settings a resume may change: the schedule's (explained with the learning rate before and after) and the
# rest (said). Any other key (batch size, bptt, accumulation, seed, optimizer and its betas, momentum and weight
# decay) would make the resumed run differ from an uninterrupted one in ways no sentence can fix, so it is refused.
SCHEDULE_KEYS = ("lr", "schedule", "warmup_steps", "min_lr_ratio", "lr_decay", "lr_decay_start", "plateau_patience",
                 "max_plateaus", "epochs", "max_steps")
FREE_KEYS = ("max_time", "eval_every", "patience", "grad_clip", "log_every", "progress_every", "eval_batch_size",
             "device", "precision", "compile")


def explain_changes(saved: dict[str, Any] | None, cfg: TrainConfig, step: int, epoch: int, plateaus: int,
                    batches_per_epoch: int, horizon: Horizon) -> str:
    """What resuming with ``cfg`` instead of the snapshot's ``saved`` train settings changes, in sentences (empty
    when nothing does); a change that would break the resumed run is refused with a ``UserError``."""
    if not saved:
        return ""  # a snapshot written before genloom recorded its settings
    before = from_saved(saved)
    now = to_dict(cfg)
    changed = [key for key in now if key in saved and saved[key] != now[key]]
    fixed = [key for key in changed if key not in SCHEDULE_KEYS + FREE_KEYS]
    if fixed:
        key = fixed[0]
        raise UserError(f"cannot resume with train.{key} {now[key]} (the run was trained with {saved[key]}): it would "
                        "change the batches or the optimizer's state; resume with the old value, or train into a new "
                        "out_dir.")
    if not changed:
        return ""
    lines = ["resuming with changed settings: " + ", ".join(f"train.{k} {saved[k]} → {now[k]}" for k in changed) + "."]
    if any(key in SCHEDULE_KEYS for key in changed):
        old_horizon = Horizon.of(before, batches_per_epoch)
        was = learning_rate(before, step, old_horizon.total_steps, epoch, plateaus)
        will = learning_rate(cfg, step, horizon.total_steps, epoch, plateaus)
        trend = "jumps up" if will > was * 1.001 else "drops" if will < was * 0.999 else "stays"
        lines.append(f"The learning rate at step {step} {trend}: {was:.3g} on the old schedule, {will:.3g} on the new "
                     f"one, which runs to step {horizon.total_steps} (it ran to {old_horizon.total_steps}).")
    return " ".join(lines)


def from_saved(saved: dict[str, Any]) -> TrainConfig:
    """The ``TrainConfig`` a snapshot recorded (keys added since then keep their defaults)."""
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{key: value for key, value in saved.items() if key in known})


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
