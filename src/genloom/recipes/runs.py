"""What every recipe does around the loop: open the run directory, train or reload the tokenizer, write
``config.json``, cache each epoch's batches, build the model and call ``fit``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from genloom import __version__
from genloom.checkpoint import (LOCK_FILE, RUN_FILES, clear_run, has_progress, is_genloom_run, lock_run,
                                read_json, write_json)
from genloom.config import DataConfig, RunConfig, TokenizerConfig, from_dict, to_dict
from genloom.data.batching import Batch
from genloom.data.tokenizers import UNK_ID, Tokenizer, tokenizer_for
from genloom.device import check_fits, check_precision, resolve_device
from genloom.errors import UserError
from genloom.models import FAMILIES, Family
from genloom.models.loading import Checkpoint, load_checkpoint
from genloom.training import distributed
from genloom.training.loop import fit


def checkpoint_config(run: RunConfig, model_config: Any, tokenizer: Tokenizer) -> dict[str, Any]:
    """What ``config.json`` holds: enough to rebuild the model and its data pipeline exactly."""
    return {
        "family": run.family,
        "genloom_version": __version__,
        "model": to_dict(model_config),
        "tokenizer": {**to_dict(run.tokenizer), "vocab_size": tokenizer.vocab_size},
        "recipe": to_dict(run),
    }


def family_module(name: str) -> Family:
    """The family module of ``name``, or a clear error naming the known ones."""
    family = FAMILIES.get(name)
    if family is None:
        raise UserError(f"unknown model family '{name}'; known families: {', '.join(FAMILIES)}.")
    return family


def model_config_for(run: RunConfig, vocab_size: int, mask_id: int | None = None) -> Any:
    """The family's model config from the recipe's ``model`` section, with the tokenizer's vocabulary size
    (and mask id, for a family that has one), checked."""
    family = family_module(run.family)
    config = from_dict(family.CONFIG, run.model, "model")
    config.vocab_size = vocab_size
    if family.MASK_TOKEN:
        config.mask_id = mask_id
    family.check_config(config)
    return config


def check_recipe(run: RunConfig, resume: bool = False, device: str | None = None) -> Any:
    """What every recipe checks before it reads its data or writes anything, and ``genloom validate`` with it:
    the family and its batching, the device and precision, the run folder, the fine-tuning source, and whether
    the model fits in memory. Returns the model config (its vocabulary the tokenizer's upper bound until the
    tokenizer is trained)."""
    family = family_module(run.family)
    if family.BATCHING is not None and run.data.batching != family.BATCHING:
        raise UserError(f"the {run.family} family trains on data.batching: {family.BATCHING}, got {run.data.batching}.")
    torch_device = resolve_device(device or run.train.device)
    check_precision(torch_device, run.train.precision)
    run_dir = Path(run.out_dir)
    check_run_dir(run_dir, resume)
    if resume:
        saved = read_json(run_dir / "config.json")
        _check_resume_matches(run, saved, run_dir)
        config = from_dict(family.CONFIG, saved["model"], "model")
    elif run.init_from:
        if run.tokenizer.path:
            raise UserError("set either init_from or tokenizer.path: a fine-tuned model keeps its source's tokenizer.")
        config = _fine_tuning_config(run, _fine_tuning_source(run))
    elif run.tokenizer.path:
        reused = Tokenizer.load(run.tokenizer.path)
        config = model_config_for(run, reused.vocab_size, mask_id=UNK_ID)
    else:
        config = model_config_for(run, run.tokenizer.vocab_size, mask_id=UNK_ID)
    with torch.device("meta"), _NoInitialisation():  # counted without allocating or initialising anything
        parameters = sum(p.numel() for p in family.build(config).parameters())
    check_fits(parameters, torch_device, training=True, what=f"the {run.family} model of this recipe")
    return config


class _NoInitialisation(TorchFunctionMode):
    """Random initialisers (``nn.init.normal_`` and the like) leave their tensor as it is.

    Counting a model's parameters on the meta device needs no values, and ``normal_`` on a meta tensor goes
    through a Python reference that imports ``torch._dynamo``: 4 s added to every ``genloom train``.
    """

    SKIPPED = frozenset({"normal_", "uniform_", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
                         "kaiming_uniform_", "kaiming_normal_", "orthogonal_"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) in self.SKIPPED:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def _check_resume_matches(run: RunConfig, saved: dict[str, Any], run_dir: Path) -> None:
    recipe = saved.get("recipe", {})
    sections = {"data": DataConfig, "tokenizer": TokenizerConfig}  # compared with the defaults of keys added since
    for section in ("family", "model", "data", "tokenizer"):
        before = recipe.get(section)
        now = to_dict(run)[section]
        if section in sections and isinstance(before, dict):
            before = to_dict(from_dict(sections[section], before, section))
        if section == "tokenizer" and isinstance(before, dict):  # the cache holds the same tokenizer, or none
            before, now = {**before, "cache": None}, {**now, "cache": None}
        if before != now:
            raise UserError(
                f"cannot resume {run_dir}: its '{section}' settings differ from this config's; "
                "resume with the config it was started with, or train into a new out_dir."
            )


@dataclass
class RunStart:
    """What a recipe needs from ``open_run``: where to write, the tokenizer, the model config, and the
    starting weights when fine-tuning (``init_from``)."""

    run_dir: Path
    tokenizer: Tokenizer
    model_config: Any
    initial_weights: dict[str, torch.Tensor] | None = None
    lock: Any = None  # the run folder's lock, held while training (see checkpoint.lock_run)


def open_run(run: RunConfig, resume: bool, tokenizer_texts: Callable[[], list[str]], device: torch.device) -> RunStart:
    """Join the process group (under torchrun), check the run directory, then train the tokenizer (or take
    it from ``init_from``, or reload it on resume) and write the run's files.

    Nothing is written into a directory that already holds a checkpoint unless
    resuming it; with several processes, rank 0 writes and the others read what it wrote.
    """
    rank, _ = distributed.init(device)
    family = family_module(run.family)
    run_dir = Path(run.out_dir)
    lock = _claim_run_dir(run_dir, resume, rank)
    source = _fine_tuning_source(run) if run.init_from and not resume else None
    if not resume and rank == 0:
        if source is not None:
            tokenizer, model_config = source.tokenizer, _fine_tuning_config(run, source)
        else:
            started = time.time()
            tokenizer, origin = tokenizer_for(run.tokenizer, [] if run.tokenizer.path else tokenizer_texts(),
                                              mask_token=family.MASK_TOKEN, lowercase=run.data.lowercase)
            print(f"tokenizer: {run.tokenizer.kind}, {tokenizer.vocab_size:,} tokens, {origin} "
                  f"({time.time() - started:.1f} s)")
            model_config = model_config_for(run, tokenizer.vocab_size, tokenizer.mask_id)
        tokenizer.save(run_dir)
        write_json(run_dir / "config.json", checkpoint_config(run, model_config, tokenizer))
    distributed.barrier()
    tokenizer = Tokenizer.load(run_dir)
    saved_model = read_json(run_dir / "config.json")["model"]
    model_config = from_dict(family.CONFIG, saved_model, "model")
    weights = {k: v.detach().cpu() for k, v in source.model.state_dict().items()} if source is not None else None
    return RunStart(run_dir, tokenizer, model_config, weights, lock)


def _claim_run_dir(run_dir: Path, resume: bool, rank: int) -> Any:
    """Check ``run_dir`` again (``check_run_dir``), lock it (rank 0), and clear a run there that never reached its
    first snapshot; returns the lock (held while it stays open)."""
    check_run_dir(run_dir, resume)
    distributed.barrier()  # every process has looked before rank 0 writes anything
    lock = lock_run(run_dir) if rank == 0 else None
    if is_genloom_run(run_dir) and not has_progress(run_dir) and rank == 0:
        clear_run(run_dir)
        print(f"{run_dir}: the run there stopped before its first snapshot; starting it again.")
    return lock


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Whether ``run_dir`` may be trained into. Refused: a file where the folder should be; genloom's file names
    written by something else (no genloom config.json), which would be overwritten; a run with progress unless
    resuming; ``--resume`` of nothing."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"out_dir {run_dir} is a file; out_dir must name a folder (new, or a run to --resume).")
    ours = is_genloom_run(run_dir)
    foreign = [] if ours else [name for name in RUN_FILES if name != LOCK_FILE and (run_dir / name).exists()]
    progress = ours and has_progress(run_dir)
    if foreign:
        raise UserError(f"{run_dir} holds {', '.join(foreign)} that genloom did not write (it has no genloom "
                        "config.json); train into another out_dir so they are not overwritten.")
    if progress and not resume:
        raise UserError(f"{run_dir} already holds a checkpoint; pass --resume to continue it, "
                        "or set out_dir=... to train a new one.")
    if resume and not ours:
        raise UserError(f"--resume was given but {run_dir} holds no checkpoint.")
    if resume and not progress:
        raise UserError(f"{run_dir} holds a run that stopped before its first snapshot, so there is nothing to "
                        "resume; run the same command without --resume to start it again.")


def _fine_tuning_source(run: RunConfig) -> Checkpoint:
    source = load_checkpoint(run.init_from, device="cpu")
    if source.family != run.family:
        raise UserError(f"init_from {run.init_from} holds a '{source.family}' model, but this recipe trains "
                        f"'{run.family}'.")
    return source


def _fine_tuning_config(run: RunConfig, source: Checkpoint) -> Any:
    """The source model's config with the recipe's ``model`` keys on top (the vocabulary stays the source's)."""
    family = FAMILIES[run.family]
    merged = {**to_dict(source.model.config), **run.model}
    config = from_dict(family.CONFIG, merged, "model")
    if config.vocab_size != source.model.config.vocab_size:
        raise UserError("model.vocab_size cannot change when fine-tuning; the tokenizer comes from init_from.")
    family.check_config(config)
    return config


def epoch_batches(make: Callable[[torch.Generator], list[Batch]], seed: int) -> Callable[[int], list[Batch]]:
    """Epoch → its batches, shuffled by a generator seeded from (seed, epoch), one epoch cached at a time."""
    cache: dict[int, list[Batch]] = {}

    def batches(epoch: int) -> list[Batch]:
        if epoch not in cache:
            cache.clear()
            cache[epoch] = make(torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        return cache[epoch]

    return batches


def build_model(run: RunConfig, start: RunStart, device: torch.device, description: str) -> torch.nn.Module:
    """Build the family's model (seeded, or from the fine-tuning weights) on ``device`` and say what is trained."""
    torch.manual_seed(run.train.seed)
    model = FAMILIES[run.family].build(start.model_config)
    if start.initial_weights is not None:
        model.load_state_dict(start.initial_weights)
    model.to(device)
    params = sum(p.numel() for p in model.parameters())
    if distributed.rank() == 0:
        processes = f", {distributed.world_size()} processes" if distributed.world_size() > 1 else ""
        print(f"{run.family}: {params:,} parameters, {description}, device {device}{processes}")
    return model


def build_and_fit(run: RunConfig, start: RunStart, train_batches: Callable[[int], list[Batch]],
                  valid_batches: list[Batch] | None, device: torch.device, resume: bool,
                  description: str, report: Callable[[torch.nn.Module], dict[str, float]] | None = None) -> dict[str, Any]:
    """Build the model (``build_model``) and run the loop (``report``: the family's own figures at every
    evaluation, see ``fit``)."""
    model = build_model(run, start, device, description)
    valid = (lambda: valid_batches) if valid_batches else None
    return fit(model, train_batches, valid, run.train, start.run_dir, device, resume=resume, title=run.family,
               report=report)
