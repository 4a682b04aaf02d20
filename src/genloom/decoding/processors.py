"""Logits processors: small pure callables ``(tokens, logits) -> logits``.

``tokens`` is the (B, T) history of each row (its prompt and what it has
generated so far), ``logits`` the (B, V) scores for the next token. A processor
checks its arguments in ``__init__`` and never modifies its input in place.
"""

from __future__ import annotations

import torch
from torch import Tensor

NEG_INF = float("-inf")


class RepetitionPenalty:
    """Make tokens already in the history less likely (Keskar et al. 2019, CTRL).

    A positive logit is divided by ``penalty``, a negative one multiplied by it.

    Example:
        >>> RepetitionPenalty(2.0)(torch.tensor([[0]]), torch.tensor([[4.0, 4.0]]))
        tensor([[2., 4.]])
    """

    def __init__(self, penalty: float):
        if penalty <= 0:
            raise ValueError(f"repetition penalty must be positive, got {penalty}")
        self.penalty = penalty

    def __call__(self, tokens: Tensor, logits: Tensor) -> Tensor:
        seen = torch.gather(logits, 1, tokens)  # (B, T)
        penalised = torch.where(seen > 0, seen / self.penalty, seen * self.penalty)
        return logits.scatter(1, tokens, penalised)


class NoRepeatNGram:
    """Forbid any token that would repeat an n-gram already in the history.

    Example:
        >>> NoRepeatNGram(2)(torch.tensor([[1, 2, 1]]), torch.zeros(1, 3))
        tensor([[0., 0., -inf]])
    """

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"no-repeat n-gram size must be at least 1, got {size}")
        self.size = size

    def __call__(self, tokens: Tensor, logits: Tensor) -> Tensor:
        n = self.size
        if tokens.size(1) < n - 1:
            return logits
        banned = torch.zeros_like(logits, dtype=torch.bool)
        history = tokens.tolist()
        for row, seq in enumerate(history):
            prefix = tuple(seq[len(seq) - n + 1 :]) if n > 1 else ()
            for i in range(len(seq) - n + 1):
                if tuple(seq[i : i + n - 1]) == prefix:
                    banned[row, seq[i + n - 1]] = True
        return logits.masked_fill(banned, NEG_INF)


class SuppressTokens:
    """Forbid the tokens ``ids`` at every step (``<unk>``, which no reader wants to see in generated text).

    Args:
        ids: the token ids never to choose.
    """

    def __init__(self, ids: list[int]):
        if any(i < 0 for i in ids):
            raise ValueError(f"token ids must be ≥ 0, got {ids}")
        self.ids = sorted(set(ids))

    def __call__(self, tokens: Tensor | None, logits: Tensor) -> Tensor:
        banned = torch.zeros(logits.size(-1), dtype=torch.bool, device=logits.device)  # (V,)
        banned[[i for i in self.ids if i < logits.size(-1)]] = True
        return logits.masked_fill(banned, NEG_INF)


def _ends_with(tokens: Tensor, prefix: list[int]) -> Tensor:
    """(B,) True where a row's history ``tokens`` (B, T) ends with ``prefix`` (always True for an empty one)."""
    if not prefix:
        return torch.ones(tokens.size(0), dtype=torch.bool, device=tokens.device)
    if tokens.size(1) < len(prefix):
        return torch.zeros(tokens.size(0), dtype=torch.bool, device=tokens.device)
    tail = tokens[:, tokens.size(1) - len(prefix):]  # (B, len(prefix))
    return (tail == torch.tensor(prefix, device=tokens.device)).all(dim=1)


class BanSequences:
    """Never complete a banned token sequence: its last token is forbidden wherever the rest of it has just been
    generated (a one-token sequence is forbidden everywhere), as ``transformers``' ``NoBadWordsLogitsProcessor``.

    Args:
        sequences: the banned token sequences (each at least one id).

    Example:
        >>> BanSequences([[2, 3]])(torch.tensor([[1, 2], [2, 1]]), torch.zeros(2, 4)).tolist()
        [[0.0, 0.0, 0.0, -inf], [0.0, 0.0, 0.0, 0.0]]
    """

    def __init__(self, sequences: list[list[int]]):
        if any(not s or min(s) < 0 for s in sequences):
            raise ValueError(f"banned sequences must be non-empty lists of ids ≥ 0, got {sequences}")
        self.sequences = [list(s) for s in sequences]

    def __call__(self, tokens: Tensor, logits: Tensor) -> Tensor:
        banned = torch.zeros_like(logits, dtype=torch.bool)  # (B, V)
        for sequence in self.sequences:
            if sequence[-1] < logits.size(-1):
                banned[:, sequence[-1]] |= _ends_with(tokens, sequence[:-1])
        return logits.masked_fill(banned, NEG_INF)


class SequenceBias:
    """Add ``bias`` to the score of the last token of each sequence wherever the rest of it has just been
    generated (a one-token sequence everywhere), as ``transformers``' ``SequenceBiasLogitsProcessor``: a
    positive bias favours the phrase, a negative one discourages it.

    Args:
        biases: (token sequence, bias) pairs.

    Example:
        >>> SequenceBias([([3], 2.0)])(torch.tensor([[1]]), torch.zeros(1, 4)).tolist()
        [[0.0, 0.0, 0.0, 2.0]]
    """

    def __init__(self, biases: list[tuple[list[int], float]]):
        if any(not s or min(s) < 0 for s, _ in biases):
            raise ValueError(f"biased sequences must be non-empty lists of ids ≥ 0, got {biases}")
        self.biases = [(list(s), float(b)) for s, b in biases]

    def __call__(self, tokens: Tensor, logits: Tensor) -> Tensor:
        added = torch.zeros_like(logits)  # (B, V)
        for sequence, bias in self.biases:
            if sequence[-1] < logits.size(-1):
                added[:, sequence[-1]] += _ends_with(tokens, sequence[:-1]).to(logits.dtype) * bias
        return logits + added


class MinNewTokens:
    """Forbid EOS until each row has generated ``min_new`` tokens past its prompt.

    Args:
        min_new: the minimum number of new tokens.
        eos_id: the end-of-sequence id.
        prompt_lengths: (B,) each row's prompt length, so row b has generated ``T - prompt_lengths[b]``.
    """

    def __init__(self, min_new: int, eos_id: int, prompt_lengths: Tensor):
        if min_new < 0:
            raise ValueError(f"min_new_tokens must be ≥ 0, got {min_new}")
        self.min_new, self.eos_id, self.prompt_lengths = min_new, eos_id, prompt_lengths
        lengths = prompt_lengths.tolist()
        self.shortest, self.longest = (min(lengths), max(lengths)) if lengths else (0, 0)

    def __call__(self, tokens: Tensor, logits: Tensor) -> Tensor:
        if tokens.size(1) - self.longest >= self.min_new:  # every row is past its minimum: no tensor work a step
            return logits
        banned = logits.clone()  # only the EOS column changes: no (B, V) mask
        if tokens.size(1) - self.shortest < self.min_new:  # every row is short of it
            banned[:, self.eos_id] = NEG_INF
            return banned
        too_early = tokens.size(1) - self.prompt_lengths.to(logits.device) < self.min_new  # (B,)
        banned[:, self.eos_id] = logits[:, self.eos_id].masked_fill(too_early, NEG_INF)
        return banned


class TopK:
    """Keep the ``k`` highest logits of each row; ``k`` = 0 keeps all.

    Example:
        >>> TopK(2)(None, torch.tensor([[1.0, 3.0, 2.0]]))
        tensor([[-inf, 3., 2.]])
    """

    def __init__(self, k: int):
        if k < 0:
            raise ValueError(f"top-k must be ≥ 0, got {k}")
        self.k = k

    def __call__(self, tokens: Tensor | None, logits: Tensor) -> Tensor:
        if self.k == 0 or self.k >= logits.size(-1):
            return logits
        kth = torch.topk(logits, self.k, dim=-1).values[:, -1:]  # (B, 1)
        return logits.masked_fill(logits < kth, NEG_INF)


class Temperature:
    """Divide the logits by ``temperature`` (> 0): below 1 sharpens, above 1 flattens.

    Each row is shifted by its maximum first (softmax does not change), so a tiny temperature gives the one-hot
    choice of the best token instead of overflowing to ``inf`` and ``nan``.
    """

    def __init__(self, temperature: float):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}; use greedy decoding for 0")
        self.temperature = temperature

    def __call__(self, tokens: Tensor | None, logits: Tensor) -> Tensor:
        top = logits.amax(dim=-1, keepdim=True)  # (B, 1)
        shifted = logits - torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # ≤ 0, the best at 0
        return torch.where(shifted == 0, shifted, shifted / self.temperature)  # 0 / a temperature below fp32's range


class TopP:
    """Nucleus sampling (Holtzman et al. 2020): keep the smallest set of tokens whose probability mass is ≥ ``p``.

    Example:
        >>> TopP(0.5)(None, torch.tensor([[0.0, 1.0, 2.0]]).log())
        tensor([[  -inf,   -inf, 0.6931]])
    """

    def __init__(self, p: float):
        if not 0.0 < p <= 1.0:
            raise ValueError(f"top-p must lie in (0, 1], got {p}")
        self.p = p

    def __call__(self, tokens: Tensor | None, logits: Tensor) -> Tensor:
        if self.p >= 1.0:
            return logits
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits.float(), dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # mass of strictly better tokens
        drop_sorted = mass_before >= self.p
        drop_sorted[:, 0] = False  # the best token always stays (even for a p that rounds to 0 in float32)
        drop = drop_sorted.scatter(1, order, drop_sorted)
        return logits.masked_fill(drop, NEG_INF)


def process(processors: list, tokens: Tensor | None, logits: Tensor) -> Tensor:
    """Apply ``processors`` in order.

    ``build_processors`` orders them: the repetition penalty and sequence bias
    reweigh the model's scores; the bans (suppressed tokens, banned sequences,
    no-repeat n-gram, minimum length) forbid tokens; then, for sampling only,
    top-k, temperature and top-p shape the distribution (litgpt's order).
    """
    for processor in processors:
        logits = processor(tokens, logits)
    return logits
