"""PNG figures: matplotlib without a display, files written atomically, and the train/validation curves
drawn from ``metrics.jsonl`` at the end of a run."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from genloom.checkpoint import atomic_write


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only, no display), imported when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (temp file, fsync, rename, like every genloom file) and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    atomic_write(path, buffer.getvalue())
    return Path(path)


def plot_curves(metrics_path: str | Path, png_path: str | Path, title: str = "") -> None:
    """Draw train and validation loss against the optimizer step."""
    plt = pyplot()
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
    save_png(fig, png_path)
