"""Kim (2014)'s convolutional sentence classifier with a highway layer: the text-GAN discriminator.

It reads token ids (B, T) or, for a generator trained through Gumbel-softmax
samples, distributions over the vocabulary (B, T, V), embedded as a weighted sum
of the embedding rows so that gradients reach the generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Highway(nn.Module):
    """y = g · relu(W x) + (1 − g) · x, with the gate g = sigmoid(W_g x) (Srivastava et al. 2015)."""

    def __init__(self, dim: int):
        super().__init__()
        self.transform = nn.Linear(dim, dim)
        self.gate = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.gate(x))
        return gate * F.relu(self.transform(x)) + (1 - gate) * x


class TextCNN(nn.Module):
    """Embeddings → one convolution per filter width → ReLU → max over time → highway → dropout → one logit."""

    def __init__(self, vocab_size: int, embed_dim: int, filter_sizes: list[int], num_filters: list[int],
                 dropout: float, pad_id: int = 0):
        super().__init__()
        if len(filter_sizes) != len(num_filters) or not filter_sizes:
            raise ValueError("filter_sizes and num_filters must be non-empty and of the same length")
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, n, w) for w, n in zip(filter_sizes, num_filters))
        self.widest = max(filter_sizes)
        features = sum(num_filters)
        self.highway = Highway(features)
        self.drop = nn.Dropout(dropout)
        self.classify = nn.Linear(features, 1)
        self.pad_id = pad_id

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) ids or (B, T, V) distributions → (B,) logits of "real"."""
        if tokens.dim() == 3:
            x = tokens @ self.embed.weight  # (B, T, E)
        else:
            x = self.embed(tokens)  # (B, T, E)
        if x.size(1) < self.widest:  # every filter needs at least its width of positions
            x = F.pad(x, (0, 0, 0, self.widest - x.size(1)))
        x = x.transpose(1, 2)  # (B, E, T)
        pooled = [F.relu(conv(x)).amax(dim=2) for conv in self.convs]  # each (B, N_w)
        features = self.drop(self.highway(torch.cat(pooled, 1)))  # (B, ΣN)
        return self.classify(features).squeeze(1)
