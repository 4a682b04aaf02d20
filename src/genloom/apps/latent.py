"""What a VAE's latent space is for: sampling from the prior, reconstruction, interpolation between two
sentences (Bowman et al.'s homotopy) and a 2-D map of encoded sentences. Every decode goes through the
shared decoding engine, so greedy, beam and sampling all apply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genloom.api import LoadedModel
from genloom.errors import UserError
from genloom.plot import pyplot, save_png
from genloom.safety import redact


def sample(vae: LoadedModel, count: int, seed: int | None = None, **options: Any) -> list[str]:
    """``count`` sentences decoded from codes drawn from the prior N(0, I) (seeded when ``seed`` is given)."""
    if count < 1:
        raise UserError(f"the number of samples must be at least 1, got {count}.")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    z = torch.randn(count, vae.latent_model().config.latent_dim, generator=generator)  # (N, Z)
    return vae.from_latent(z, seed=seed, **options)


def reconstruct(vae: LoadedModel, texts: list[str], **options: Any) -> list[str]:
    """Encode each text (the posterior mean) and decode it again."""
    mean, _ = vae.to_latent(_redacted(texts, options))
    return vae.from_latent(mean, **options)


def interpolate(vae: LoadedModel, first: str, last: str, steps: int = 8, **options: Any) -> list[tuple[float, str]]:
    """Decode ``steps`` evenly spaced points on the line from the code of ``first`` to that of ``last``
    (both ends included): [(t, sentence)], t from 0 to 1."""
    if steps < 2:
        raise UserError(f"an interpolation needs at least 2 steps (its two ends), got {steps}.")
    mean, _ = vae.to_latent(_redacted([first, last], options))  # (2, Z)
    t = torch.linspace(0.0, 1.0, steps, device=mean.device)[:, None]  # (S, 1)
    z = (1 - t) * mean[0] + t * mean[1]  # (S, Z)
    return list(zip(t.flatten().tolist(), vae.from_latent(z, **options)))


def _redacted(texts: list[str], options: dict[str, Any]) -> list[str]:
    """The texts with their personal data replaced before the encoder reads them, when ``options`` ask."""
    return [redact(t, options["redact"]) for t in texts] if options.get("redact") else texts


def project_2d(points: torch.Tensor) -> torch.Tensor:
    """(N, Z) → (N, 2): the first two principal components (deterministic, needs no extra library)."""
    centred = points - points.mean(0, keepdim=True)
    if points.size(0) < 2 or points.size(1) < 2:
        raise UserError("a 2-D map needs at least two sentences and a latent space of at least two dimensions.")
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T


def plot_latent(vae: LoadedModel, texts: list[str], path: str | Path, labels: int = 12) -> Path:
    """Write a PNG of the texts' posterior means projected to 2-D by PCA, coloured by sentence length,
    with ``labels`` of the sentences written next to their points."""
    plt = pyplot()
    means = [vae.to_latent(texts[i : i + 256])[0].float().cpu() for i in range(0, len(texts), 256)]
    points = project_2d(torch.cat(means)).numpy()  # (N, 2)
    lengths = [len(t.split()) for t in texts]
    fig, ax = plt.subplots(figsize=(8, 6.5), dpi=110)
    scatter = ax.scatter(points[:, 0], points[:, 1], c=lengths, cmap="viridis", s=9, alpha=0.75)
    fig.colorbar(scatter, ax=ax, label="words in the sentence")
    step = max(1, len(texts) // max(labels, 1))
    for i in range(0, len(texts), step)[:labels]:
        ax.annotate(texts[i][:40] + ("…" if len(texts[i]) > 40 else ""), points[i], fontsize=7, alpha=0.85)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(f"posterior means of {len(texts):,} sentences (PCA of {means[0].size(1)}-d z)")
    fig.tight_layout()
    return save_png(fig, path)
