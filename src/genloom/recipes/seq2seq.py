"""The sequence-to-sequence recipe: parallel text → joint tokenizer → encoder–decoder → the shared loop.

With ``model.copy`` and a word tokenizer, source words outside the vocabulary
get temporary ids V, V+1, … per example (See et al. 2017's extended
vocabulary), so the pointer-generator learns to copy them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from genloom.config import DataConfig, RunConfig, from_dict
from genloom.data.batching import Batch, bucket_indices, pad
from genloom.data.readers import read_jsonl, read_parallel, transform_text
from genloom.data.tokenizers import Tokenizer
from genloom.device import resolve_device
from genloom.errors import UserError
from genloom.recipes.runs import build_and_fit, check_recipe, epoch_batches, open_run
from genloom.training import distributed
from genloom.training.loop import evaluate


@dataclass
class Example:
    """One encoded pair; ``*_extended`` use per-example ids ≥ V for source OOV words, listed in ``oov``."""

    source: list[int]
    target: list[int]
    source_extended: list[int]
    target_extended: list[int]
    oov: list[str] = field(default_factory=list)


def read_pairs(data: DataConfig, split: str) -> list[tuple[str, str]] | None:
    """Source–target pairs of ``split`` (train, valid or test), or None when the recipe has none."""
    source, target = getattr(data, split), getattr(data, f"{split}_target")
    if not source:
        return None
    if data.format == "jsonl":
        pairs = [(s, t) for s, t in read_jsonl(source, [data.source_field, data.target_field])]
    elif target is None:
        pairs = read_parallel(source)
    else:
        pairs = read_parallel(source, target)
    pairs = [(transform_text(s, data.lowercase), transform_text(t, data.lowercase)) for s, t in pairs]
    if not pairs:
        raise UserError(f"no source–target pairs in {source}.")
    return pairs


def encode_example(source: str, target: str, tokenizer: Tokenizer, data: DataConfig) -> Example:
    """Encode and cut one pair; for word tokenizers, give source OOV words extended ids."""
    src = tokenizer.encode(source)[: data.max_source_length]
    tgt = tokenizer.encode(target)[: data.max_length]
    src_ext, tgt_ext, oov = list(src), list(tgt), []
    if tokenizer.kind == "word":
        src_ext, oov = extend_source(source, src, tokenizer)
        positions = {word: tokenizer.vocab_size + i for i, word in enumerate(oov)}
        words = tokenizer.spans(target)[: len(tgt)]
        if len(words) == len(tgt):
            tgt_ext = [positions.get(w, i) if i == tokenizer.unk_id else i for w, i in zip(words, tgt)]
    return Example(src, tgt, src_ext, tgt_ext, oov)


def extend_source(source: str, ids: list[int], tokenizer: Tokenizer) -> tuple[list[int], list[str]]:
    """Source ids with each distinct OOV word numbered V, V+1, …, and the list of those words."""
    if tokenizer.kind != "word":
        return list(ids), []
    words = tokenizer.spans(source)[: len(ids)]
    if len(words) != len(ids):
        return list(ids), []
    oov: dict[str, int] = {}
    extended = [tokenizer.vocab_size + oov.setdefault(w, len(oov)) if i == tokenizer.unk_id else i
                for w, i in zip(words, ids)]
    return extended, list(oov)


def make_batch(examples: list[Example], tokenizer: Tokenizer) -> Batch:
    """Pad a list of examples: source (B, S), decoder inputs ``<bos> y`` and targets ``y <eos>`` (B, T)."""
    pad_id, bos, eos = tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
    source, source_mask = pad([e.source or [eos] for e in examples], pad_id)  # (B, S)
    source_extended, _ = pad([e.source_extended or [eos] for e in examples], pad_id)
    inputs, mask = pad([[bos] + e.target for e in examples], pad_id)  # (B, T)
    targets, _ = pad([e.target + [eos] for e in examples], pad_id)
    targets_extended, _ = pad([e.target_extended + [eos] for e in examples], pad_id)
    return Batch(inputs, targets, mask, source=source, source_mask=source_mask,
                 source_extended=source_extended, targets_extended=targets_extended)


def seq2seq_batches(examples: list[Example], tokenizer: Tokenizer, batch_size: int,
                    generator: torch.Generator | None = None) -> list[Batch]:
    """Length-bucketed batches (by source length), shuffled when ``generator`` is given."""
    groups = bucket_indices([len(e.source) for e in examples], batch_size, generator)
    return [make_batch([examples[i] for i in group], tokenizer) for group in groups]


def check(run: RunConfig, resume: bool = False, device: str | None = None, read_data: bool = False) -> Any:
    """The seq2seq recipe's checks before training (``runs.check_recipe``); with ``read_data``, its pairs read
    as training and evaluation read them. Returns the model config."""
    config = check_recipe(run, resume, device)
    if read_data:
        for split in ("train", "valid", "test"):
            read_pairs(run.data, split)
    return config


def train(run: RunConfig, resume: bool = False, device: str | None = None) -> dict[str, Any]:
    """Run a seq2seq recipe and return its summary (steps, best validation loss)."""
    check(run, resume, device)
    torch_device = distributed.local_device(resolve_device(device or run.train.device))
    data, cfg = run.data, run.train
    train_pairs = read_pairs(data, "train")
    valid_pairs = read_pairs(data, "valid")
    start = open_run(run, resume, lambda: [t for pair in train_pairs for t in pair], torch_device)
    tokenizer = start.tokenizer
    train_examples = [encode_example(s, t, tokenizer, data) for s, t in train_pairs]
    train_batches = epoch_batches(
        lambda generator: seq2seq_batches(train_examples, tokenizer, cfg.batch_size, generator), cfg.seed)
    valid_batches = None
    if valid_pairs:
        valid_examples = [encode_example(s, t, tokenizer, data) for s, t in valid_pairs]
        valid_batches = seq2seq_batches(valid_examples, tokenizer, cfg.eval_batch_size)
    description = (f"vocabulary {tokenizer.vocab_size:,}, {len(train_examples):,} pairs, "
                   f"{sum(len(e.target) + 1 for e in train_examples):,} target tokens")
    return build_and_fit(run, start, train_batches, valid_batches, torch_device, resume, description)


def pair_loss(model: Any, tokenizer: Tokenizer, recipe: dict[str, Any], pairs: list[tuple[str, str]],
              device: torch.device) -> dict[str, float]:
    """Teacher-forced loss and perplexity of ``pairs``, batched as in the recipe."""
    data = from_dict(DataConfig, recipe["data"], "data")
    examples = [encode_example(s, t, tokenizer, data) for s, t in pairs]
    batches = seq2seq_batches(examples, tokenizer, recipe["train"]["eval_batch_size"])
    return evaluate(model, batches, device, recipe["train"].get("precision", "fp32"))
