"""The language-model recipe: read text, train the tokenizer, build the model, call the loop."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from genloom import __version__
from genloom.checkpoint import atomic_write, read_json, write_json
from genloom.config import DataConfig, RunConfig, from_dict, to_dict
from genloom.data.batching import Batch, sentence_batches, stream_batches
from genloom.data.readers import read_corpus
from genloom.data.tokenizers import Tokenizer
from genloom.errors import UserError
from genloom.models import FAMILIES
from genloom.train.loop import evaluate, fit, resolve_device


def encode_texts(texts: list[str], tokenizer: Tokenizer, data: DataConfig) -> list[list[int]]:
    """Token ids of each text, cut to ``data.max_length`` in ``sentences`` batching."""
    ids = tokenizer.encode_batch(texts)
    if data.batching == "sentences":
        ids = [seq[: data.max_length] for seq in ids]
    return ids


def lm_batches(ids: list[list[int]], tokenizer: Tokenizer, data: DataConfig, batch_size: int, bptt: int,
               generator: torch.Generator | None = None) -> list[Batch]:
    """Batches for one pass: a TBPTT stream or bucketed whole texts (shuffled when ``generator`` is given)."""
    if data.batching == "stream":
        stream = torch.tensor([t for seq in ids for t in seq + [tokenizer.eos_id]], dtype=torch.long)
        try:
            return stream_batches(stream, batch_size, bptt)
        except ValueError as error:
            raise UserError(f"the text is too short to batch: {error}") from None
    return list(sentence_batches(ids, batch_size, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, generator))


def checkpoint_config(run: RunConfig, model_config: Any, tokenizer: Tokenizer) -> dict[str, Any]:
    """What ``config.json`` holds: enough to rebuild the model and its data pipeline exactly."""
    return {
        "family": run.family,
        "genloom_version": __version__,
        "model": to_dict(model_config),
        "tokenizer": {**to_dict(run.tokenizer), "vocab_size": tokenizer.vocab_size},
        "recipe": to_dict(run),
    }


def model_config_for(run: RunConfig, vocab_size: int) -> Any:
    family = FAMILIES.get(run.family)
    if family is None:
        raise UserError(f"unknown model family '{run.family}'; known families: {', '.join(FAMILIES)}.")
    config = from_dict(family.CONFIG, run.model, "model")
    config.vocab_size = vocab_size
    family.check_config(config)
    return config


def _check_resume_matches(run: RunConfig, saved: dict[str, Any], run_dir: Path) -> None:
    recipe = saved.get("recipe", {})
    for section in ("family", "model", "data", "tokenizer"):
        new = to_dict(run)[section]
        if recipe.get(section) != new:
            raise UserError(
                f"cannot resume {run_dir}: its '{section}' settings differ from this config's; "
                "resume with the config it was started with, or train into a new out_dir."
            )


def train(run: RunConfig, resume: bool = False, device: str | None = None) -> dict[str, Any]:
    """Run a language-model recipe end to end and return its summary (valid and test perplexity)."""
    run_dir = Path(run.out_dir)
    torch_device = resolve_device(device or run.train.device)
    has_checkpoint = (run_dir / "config.json").exists()
    if has_checkpoint and not resume:
        raise UserError(f"{run_dir} already holds a checkpoint; pass --resume to continue it, or set out_dir=... to train a new one.")
    if resume and not has_checkpoint:
        raise UserError(f"--resume was given but {run_dir} holds no checkpoint.")

    data = run.data
    train_texts = read_corpus(data.train, data.format, data.field, data.lowercase)
    valid_texts = read_corpus(data.valid, data.format, data.field, data.lowercase) if data.valid else None
    if resume:
        saved = read_json(run_dir / "config.json")
        _check_resume_matches(run, saved, run_dir)
        tokenizer = Tokenizer.load(run_dir / "tokenizer.json")
    else:
        tokenizer = Tokenizer.train(run.tokenizer.kind, train_texts, run.tokenizer.vocab_size, run.tokenizer.min_frequency)
    model_config = model_config_for(run, tokenizer.vocab_size)
    if not resume:
        atomic_write(run_dir / "tokenizer.json", tokenizer.save(run_dir / "tokenizer.json"))
        write_json(run_dir / "config.json", checkpoint_config(run, model_config, tokenizer))

    cfg = run.train
    train_ids = encode_texts(train_texts, tokenizer, data)
    valid_ids = encode_texts(valid_texts, tokenizer, data) if valid_texts else None
    epoch_cache: dict[int, list[Batch]] = {}

    def train_batches(epoch: int) -> list[Batch]:
        if epoch not in epoch_cache:
            epoch_cache.clear()
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            epoch_cache[epoch] = lm_batches(train_ids, tokenizer, data, cfg.batch_size, cfg.bptt, generator)
        return epoch_cache[epoch]

    valid_batches: Callable[[], list[Batch]] | None = None
    if valid_ids:
        fixed_valid = lm_batches(valid_ids, tokenizer, data, cfg.eval_batch_size, cfg.bptt)
        valid_batches = lambda: fixed_valid  # noqa: E731

    torch.manual_seed(cfg.seed)
    model = FAMILIES[run.family].build(model_config).to(torch_device)
    params = sum(p.numel() for p in model.parameters())
    print(f"{run.family}: {params:,} parameters, vocabulary {tokenizer.vocab_size:,}, "
          f"{sum(len(s) for s in train_ids):,} training tokens, device {torch_device}")
    summary = fit(model, train_batches, valid_batches, cfg, run_dir, torch_device, resume=resume, title=run.family)
    if data.test:
        from genloom.api import load

        result = load(run_dir, device=str(torch_device)).evaluate(data.test)
        summary["test_loss"], summary["test_perplexity"] = result["loss"], result["perplexity"]
    return summary


def evaluate_texts(model: Any, tokenizer: Tokenizer, recipe: dict[str, Any], texts: list[str],
                   device: torch.device) -> dict[str, float]:
    """Loss and perplexity of a trained LM on ``texts``, batched as in its recipe."""
    data = from_dict(DataConfig, recipe["data"], "data")
    train_cfg = recipe["train"]
    ids = encode_texts(texts, tokenizer, data)
    batches = lm_batches(ids, tokenizer, data, train_cfg["eval_batch_size"], train_cfg["bptt"])
    result = evaluate(model, batches, device, train_cfg.get("precision", "fp32"))
    result["bits_per_token"] = result["loss"] / math.log(2)
    return result
