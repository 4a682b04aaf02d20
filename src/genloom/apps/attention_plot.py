"""The source–target attention heatmap, with the tokens on the axes."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from genloom.plot import pyplot, save_png


def plot_attention(attention: Tensor, source_tokens: list[str], target_tokens: list[str], path: str | Path,
                   title: str = "") -> None:
    """Draw (T, S) ``attention``: one row per output token, one column per source token."""
    plt = pyplot()
    weights = attention.detach().float().cpu().numpy()[: len(target_tokens), : len(source_tokens)]
    source_tokens = [visible(t) for t in source_tokens]
    target_tokens = [visible(t) for t in target_tokens]
    width = max(4.0, 0.45 * len(source_tokens) + 2)
    height = max(3.0, 0.4 * len(target_tokens) + 1.5)
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source_tokens)), source_tokens, rotation=60, ha="right")
    ax.set_yticks(range(len(target_tokens)), target_tokens)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.set_title(title or "attention")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    save_png(fig, path)


def visible(token: str) -> str:
    """Spaces and the unigram word marker as a visible ␣, so character tokens stay readable on an axis."""
    return token.replace(" ", "␣").replace("▁", "␣") or "∅"
