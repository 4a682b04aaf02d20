"""Batches for training and evaluation: contiguous streams (TBPTT) and length-bucketed padded texts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass
class Batch:
    """One batch of target sequences, with their sources for conditional models.

    ``inputs`` and ``targets`` are (B, T) token ids, ``mask`` (B, T) is True where
    ``targets`` holds a real token. ``continues`` says that row b of this batch
    continues row b of the previous one, so recurrent state may carry over.
    Sequence-to-sequence batches add ``source`` (B, S) ids and ``source_mask``
    (B, S); ``source_extended`` (B, S) gives source words outside the vocabulary
    temporary ids V, V+1, … and ``targets_extended`` points at them (the copy
    mechanism's extended vocabulary, See et al. 2017).
    """

    inputs: Tensor
    targets: Tensor
    mask: Tensor
    continues: bool = False
    source: Tensor | None = None
    source_mask: Tensor | None = None
    source_extended: Tensor | None = None
    targets_extended: Tensor | None = None

    def to(self, device: torch.device | str) -> "Batch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, Tensor):
                moved[name] = value.to(device, non_blocking=True)
        return type(self)(**moved)

    @property
    def num_tokens(self) -> int:
        return int(self.mask.sum())


def stream_batches(ids: Tensor, batch_size: int, bptt: int) -> list[Batch]:
    """Cut one long id stream into ``batch_size`` parallel rows and ``bptt``-long windows.

    Row b of batch i continues row b of batch i-1 (Zaremba et al. 2014's layout),
    so a recurrent model may carry its state across batches.

    Args:
        ids: (N,) the whole corpus, each text followed by EOS.
        batch_size: number of parallel rows B.
        bptt: window length T.

    Returns:
        Batches with inputs/targets (B, ≤T); the last window may be shorter.
    """
    columns = (ids.numel() - 1) // batch_size
    if columns < 1:
        raise ValueError(f"a stream of {ids.numel()} tokens is too short for batch size {batch_size}.")
    inputs = ids[: columns * batch_size].view(batch_size, columns)  # (B, N/B)
    targets = ids[1 : columns * batch_size + 1].view(batch_size, columns)  # (B, N/B)
    batches = []
    for start in range(0, columns, bptt):
        x = inputs[:, start : start + bptt]
        y = targets[:, start : start + bptt]
        batches.append(Batch(x, y, torch.ones_like(y, dtype=torch.bool), continues=start > 0))
    return batches


def window_batches(ids: Tensor, batch_size: int, bptt: int, generator: torch.Generator) -> list[Batch]:
    """Cut one long id stream into ``bptt``-long windows and batch them in a random order.

    Every window is used once per pass, and a batch holds windows from all over
    the corpus (nanoGPT samples its batches this way, with replacement), so
    consecutive batches are not neighbouring text. No state carries over: for
    models that see each window alone, such as a GPT.

    Args:
        ids: (N,) the whole corpus, each text followed by EOS.
        batch_size: windows per batch B.
        bptt: window length T.
        generator: draws the order.

    Returns:
        Batches with inputs/targets (B, T); the last batch may hold fewer windows.
    """
    count = (ids.numel() - 1) // bptt
    if count < 1:
        raise ValueError(f"a stream of {ids.numel()} tokens is shorter than one window of {bptt}.")
    inputs = ids[: count * bptt].view(count, bptt)  # (W, T)
    targets = ids[1 : count * bptt + 1].view(count, bptt)  # (W, T)
    order = torch.randperm(count, generator=generator)
    batches = []
    for start in range(0, count, batch_size):
        rows = order[start : start + batch_size]
        y = targets[rows]
        batches.append(Batch(inputs[rows], y, torch.ones_like(y, dtype=torch.bool)))
    return batches


def pad(sequences: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad sequences into (B, T_max) ids and a (B, T_max) bool mask of real positions."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = True
    return ids, mask


def bucket_indices(lengths: list[int], batch_size: int, generator: torch.Generator | None = None,
                   bucket_factor: int = 50) -> list[list[int]]:
    """Group example indices into batches of similar length.

    Examples are shuffled (when ``generator`` is given), cut into pools of
    ``bucket_factor * batch_size``, sorted by length inside each pool, split into
    batches, and the batch order shuffled again; padding waste stays small while
    the order still changes from epoch to epoch.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist() if generator is not None else list(range(len(lengths)))
    pool = bucket_factor * batch_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def sentence_batches(texts: list[list[int]], batch_size: int, bos_id: int, eos_id: int, pad_id: int,
                     generator: torch.Generator | None = None) -> Iterator[Batch]:
    """Language-model batches of whole texts: inputs ``<bos> x``, targets ``x <eos>``, padded, bucketed."""
    for indices in bucket_indices([len(t) for t in texts], batch_size, generator):
        inputs, mask = pad([[bos_id] + texts[i] for i in indices], pad_id)  # (B, T)
        targets, _ = pad([texts[i] + [eos_id] for i in indices], pad_id)  # (B, T)
        yield Batch(inputs, targets, mask)
