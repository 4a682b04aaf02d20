"""The train/validation curves PNG drawn from ``metrics.jsonl`` at the end of a run."""

from __future__ import annotations

import json
from pathlib import Path

from genloom.checkpoint import atomic_write


def plot_curves(metrics_path: str | Path, png_path: str | Path, title: str = "") -> None:
    """Draw train and validation loss against the optimizer step."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, tuple[list[int], list[float]]] = {}
    for line in Path(metrics_path).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "loss" in record and record.get("split") in ("train", "valid"):
            steps, losses = series.setdefault(record["split"], ([], []))
            steps.append(record["step"])
            losses.append(record["loss"])
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    styles = {"train": dict(color="tab:blue", alpha=0.8), "valid": dict(color="tab:orange", marker="o", markersize=3)}
    for split, (steps, losses) in series.items():
        ax.plot(steps, losses, label=split, **styles[split])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title or "training curves")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write(png_path, buffer.getvalue())
