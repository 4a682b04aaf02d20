"""The SeqGAN synthetic-data oracle (Yu et al. 2017): a fixed random LSTM whose samples are the training
data and whose log-likelihood scores what a generator writes (NLL-oracle).

The parameters are the original ones (``../shared/data/seqgan_oracle/target_params.npz``, read without
pickle); the equations are in that folder's SOURCE.md: a one-layer LSTM in the row-vector convention,
no forget-gate offset, zero initial state, token 0's embedding as the first input, 20 tokens, vocabulary
5000. Its tokens are written as words ``w0`` … ``w4999`` so genloom's word tokenizer reads them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

NAMES = ("embedding", "Wi", "Ui", "bi", "Wf", "Uf", "bf", "Wog", "Uog", "bog", "Wc", "Uc", "bc", "Wo", "bo")


class Oracle:
    """The target LSTM: ``sample`` sequences of its tokens and score sequences with ``nll`` (or, one score a
    sequence, ``sequence_nll``)."""

    def __init__(self, params: dict[str, Tensor], length: int = 20):
        self.p, self.length = params, length
        self.vocab_size = params["embedding"].size(0)

    @classmethod
    def load(cls, path: str | Path) -> "Oracle":
        import numpy as np

        with np.load(path, allow_pickle=False) as arrays:
            return cls({name: torch.from_numpy(arrays[name].astype("float32")) for name in NAMES})

    def _step(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x, h, c (B, 32) → logits (B, V), h, c."""
        p = self.p
        i = torch.sigmoid(x @ p["Wi"] + h @ p["Ui"] + p["bi"])
        f = torch.sigmoid(x @ p["Wf"] + h @ p["Uf"] + p["bf"])
        o = torch.sigmoid(x @ p["Wog"] + h @ p["Uog"] + p["bog"])
        c = f * c + i * torch.tanh(x @ p["Wc"] + h @ p["Uc"] + p["bc"])
        h = o * torch.tanh(c)
        return h @ p["Wo"] + p["bo"], h, c

    def _start(self, count: int) -> tuple[Tensor, Tensor, Tensor]:
        h = torch.zeros(count, self.p["Wi"].size(1))
        return self.p["embedding"][torch.zeros(count, dtype=torch.long)], h, h.clone()

    @torch.no_grad()
    def sample(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        """(count, length) token ids drawn by plain multinomial sampling."""
        x, h, c = self._start(count)
        tokens = []
        for _ in range(self.length):
            logits, h, c = self._step(x, h, c)
            token = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(1)
            tokens.append(token)
            x = self.p["embedding"][token]
        return torch.stack(tokens, 1)

    @torch.no_grad()
    def sequence_nll(self, tokens: Tensor) -> Tensor:
        """The oracle's negative log-likelihood per token (nats) of each of (N, length) sequences: (N,)."""
        x, h, c = self._start(tokens.size(0))
        total = torch.zeros(tokens.size(0))
        for t in range(tokens.size(1)):
            logits, h, c = self._step(x, h, c)
            total += torch.nn.functional.cross_entropy(logits, tokens[:, t], reduction="none")
            x = self.p["embedding"][tokens[:, t]]
        return total / tokens.size(1)

    def nll(self, tokens: Tensor) -> float:
        """The oracle's mean negative log-likelihood per token (nats) of (N, length) sequences: NLL-oracle."""
        return float(self.sequence_nll(tokens).mean())


def as_text(tokens: Tensor) -> list[str]:
    """Oracle token ids → lines of words ``w<id>``."""
    return [" ".join(f"w{t}" for t in row) for row in tokens.tolist()]


def from_words(words: list[list[str]]) -> Tensor:
    """Lines of ``w<id>`` words (each ``length`` long) → (N, length) oracle ids; a word that is not an oracle
    token (an unknown-word marker, say) raises ValueError."""
    return torch.tensor([[int(w[1:]) if w.startswith("w") and w[1:].isdigit() else _not_oracle(w) for w in row]
                         for row in words], dtype=torch.long)


def _not_oracle(word: str) -> int:
    raise ValueError(f"'{word}' is not an oracle token")
