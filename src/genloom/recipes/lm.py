"""The language-model recipe: read text, train the tokenizer, build the model, call the loop."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from genloom.config import DataConfig, RunConfig, from_dict
from genloom.data.batching import Batch, sentence_batches, stream_batches, window_batches
from genloom.data.readers import read_corpus
from genloom.data.tokenizers import Tokenizer
from genloom.device import resolve_device
from genloom.errors import UserError
from genloom.recipes.runs import RunStart, build_and_fit, check_recipe, epoch_batches, open_run
from genloom.training import distributed
from genloom.training.loop import evaluate


def encode_texts(texts: list[str], tokenizer: Tokenizer, data: DataConfig) -> list[list[int]]:
    """Token ids of each text, cut to ``data.max_length`` in ``sentences`` batching."""
    ids = tokenizer.encode_batch(texts)
    if data.batching == "sentences":
        ids = [seq[: data.max_length] for seq in ids]
    return ids


def hold_out(ids: list[list[int]], fraction: float) -> tuple[list[list[int]], list[list[int]]]:
    """Split off the last ``fraction`` of the data: the last texts, or the last tokens of a single text."""
    if len(ids) == 1:
        cut = int(len(ids[0]) * (1 - fraction))
        parts = [ids[0][:cut]], [ids[0][cut:]]
    else:
        cut = int(len(ids) * (1 - fraction))
        parts = ids[:cut], ids[cut:]
    if not parts[0] or not parts[1] or not parts[0][0] or not parts[1][0]:
        raise UserError(f"data.valid_fraction {fraction} leaves no training or no validation data.")
    return parts


def lm_batches(ids: list[list[int]], tokenizer: Tokenizer, data: DataConfig, batch_size: int, bptt: int,
               generator: torch.Generator | None = None) -> list[Batch]:
    """Batches for one pass: a TBPTT stream or bucketed whole texts (shuffled when ``generator`` is given)."""
    if data.batching == "stream":
        stream = torch.tensor([t for seq in ids for t in seq + [tokenizer.eos_id]], dtype=torch.long)
        if data.random_offset and generator is not None:
            stream = stream[int(torch.randint(0, bptt, (1,), generator=generator)) :]
        try:
            if data.shuffle_windows and generator is not None:
                return window_batches(stream, batch_size, bptt, generator)
            return stream_batches(stream, batch_size, bptt)
        except ValueError as error:
            raise UserError(f"the text is too short to batch: {error}") from None
    return list(sentence_batches(ids, batch_size, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, generator))


@dataclass
class LMData:
    """What ``prepare`` hands a language-model recipe: the opened run and its batches."""

    start: RunStart
    device: torch.device
    train_batches: Callable[[int], list[Batch]]
    valid_batches: list[Batch] | None
    description: str


def check(run: RunConfig, resume: bool = False, device: str | None = None, read_data: bool = False) -> Any:
    """The language-model recipes' checks before training (``runs.check_recipe``); with ``read_data``, their
    data read as training and evaluation read it. Returns the model config."""
    config = check_recipe(run, resume, device)
    if read_data:
        read_texts(run.data, "train", "valid", "test")
    return config


def read_texts(data: DataConfig, *splits: str) -> list[list[str] | None]:
    """The texts of each split (``train``, ``valid``, ``test``) as the recipe reads them, None where unset."""
    return [read_corpus(getattr(data, split), data.format, data.field, data.lowercase) if getattr(data, split)
            else None for split in splits]


def prepare(run: RunConfig, resume: bool, device: str | None) -> LMData:
    """Read the text, open the run (tokenizer, config.json), encode, hold out validation data, batch."""
    torch_device = distributed.local_device(resolve_device(device or run.train.device))
    data, cfg = run.data, run.train
    train_texts, valid_texts = read_texts(data, "train", "valid")
    start = open_run(run, resume, lambda: train_texts, torch_device)
    tokenizer = start.tokenizer
    train_ids = encode_texts(train_texts, tokenizer, data)
    valid_ids = encode_texts(valid_texts, tokenizer, data) if valid_texts else None
    if data.valid_fraction:
        train_ids, valid_ids = hold_out(train_ids, data.valid_fraction)
    train_batches = epoch_batches(
        lambda generator: lm_batches(train_ids, tokenizer, data, cfg.batch_size, cfg.bptt, generator), cfg.seed)
    valid_batches = lm_batches(valid_ids, tokenizer, data, cfg.eval_batch_size, cfg.bptt) if valid_ids else None
    description = f"vocabulary {tokenizer.vocab_size:,}, {sum(len(s) for s in train_ids):,} training tokens"
    return LMData(start, torch_device, train_batches, valid_batches, description)


def train(run: RunConfig, resume: bool = False, device: str | None = None) -> dict[str, Any]:
    """Run a language-model recipe end to end and return its summary (steps, best validation perplexity)."""
    check(run, resume, device)
    lm = prepare(run, resume, device)
    return build_and_fit(run, lm.start, lm.train_batches, lm.valid_batches, lm.device, resume, lm.description)


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
