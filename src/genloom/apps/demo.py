"""``genloom demo``: teach an attention seq2seq model to read dates written many ways, then show it working.

Needs nothing but the installed package: ``apps/toy_dates`` writes the data
("the 3rd of May 1970", "03.05.1970", "Sunday, May 3rd 1970" … → "1970-05-03").
Training takes well under a minute on two CPU cores; the run directory
(checkpoint, metrics, training curves, an attention heatmap) is left in
``runs/demo``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from genloom.api import load, train
from genloom.apps.attention_plot import plot_attention
from genloom.apps.toy_dates import pairs
from genloom.checkpoint import atomic_write
from genloom.errors import UserError

MARKER = ".genloom-demo"
SHOWCASE = ["Sunday, March 1st 2026", "the 29th of February 2024", "31.12.1999", "jul 4 1976", "2049/1/9"]


def demo_recipe(out_dir: Path) -> dict:
    """The demo's recipe: a character-level bidirectional GRU encoder–decoder with additive attention."""
    data = out_dir / "data"
    return {
        "family": "seq2seq",
        "out_dir": str(out_dir),
        "data": {"train": str(data / "train.tsv"), "valid": str(data / "valid.tsv"), "format": "tsv",
                 "max_length": 16, "max_source_length": 48},
        "tokenizer": {"kind": "char", "vocab_size": 100},
        "model": {"cell": "gru", "embed_dim": 32, "hidden_dim": 96, "attention": "additive", "attention_dim": 64,
                  "bidirectional": True, "input_feeding": True, "dropout": 0.0},
        "train": {"optimizer": "adamw", "lr": 0.004, "schedule": "cosine", "warmup_steps": 50, "epochs": 3,
                  "batch_size": 64, "eval_batch_size": 250, "eval_every": 100, "grad_clip": 1.0, "log_every": 25,
                  "seed": 0},
    }


def _prepare(out_dir: Path, train_pairs: int, test_pairs: int) -> list[tuple[str, str]]:
    """Write fresh train/valid data; return the held-out test pairs (never seen in training)."""
    if out_dir.exists():
        if not (out_dir / MARKER).exists():
            raise UserError(f"{out_dir} exists and is not a demo run; choose another --out-dir so nothing is overwritten.")
        shutil.rmtree(out_dir)
    data = out_dir / "data"
    for name, size, seed in (("train", train_pairs, 1), ("valid", 500, 2)):
        atomic_write(data / f"{name}.tsv", "".join(f"{s}\t{t}\n" for s, t in pairs(size, seed)))
    atomic_write(out_dir / MARKER, "written by genloom demo; the next demo replaces this folder\n")
    return pairs(test_pairs, 3)


def run_demo(out_dir: Path, device: str | None = None, train_pairs: int = 10_000, test_pairs: int = 1000) -> dict:
    """Train the demo model on ``train_pairs`` dates, score it on ``test_pairs`` others, print outputs and metrics,
    save the attention heatmap; returns the figures. ``genloom demo`` trains on 10,000 (the tests, on fewer)."""
    out_dir = Path(out_dir)
    test = _prepare(out_dir, train_pairs, test_pairs)
    print("genloom demo: an attention encoder–decoder learns to read dates written many ways and write them "
          f"as ISO dates,\nfrom {train_pairs:,} generated examples, character by character; output in {out_dir}\n")
    started = time.time()
    summary = train(demo_recipe(out_dir), device=device)
    model = load(out_dir, device=device)

    greedy = model.transduce(SHOWCASE, max_new_tokens=12)
    beam = model.complete(SHOWCASE, method="beam", num_beams=4, num_return_sequences=2, max_new_tokens=12)
    print(f"\n{'input':<28}{'greedy':<14}{'beam 1st':<14}beam 2nd (score order)")
    for source, g, b in zip(SHOWCASE, greedy, beam):
        print(f"{source:<28}{g.text:<14}{b[0]:<14}{b[1]}")

    sources, references = [s for s, _ in test], [t for _, t in test]
    greedy_out = [r[0] for r in model.complete(sources, max_new_tokens=12)]
    beam_out = [r[0] for r in model.complete(sources, method="beam", num_beams=4, max_new_tokens=12)]
    exact_greedy = sum(o.strip() == r for o, r in zip(greedy_out, references)) / len(test)
    exact_beam = sum(o.strip() == r for o, r in zip(beam_out, references)) / len(test)
    heatmap = out_dir / "attention.png"
    example = greedy[0]
    plot_attention(example.attention, example.source_tokens, example.target_tokens, heatmap,
                   title=f"'{SHOWCASE[0]}' → '{example.text}'")
    figures = {"exact_match_greedy": exact_greedy, "exact_match_beam": exact_beam,
               "valid_perplexity": summary["best_valid_perplexity"], "train_wall_s": summary["wall_s"],
               "wall_s": time.time() - started}
    mistakes = [(s, o, r) for s, o, r in zip(sources, greedy_out, references) if o.strip() != r][:3]
    print(f"\nHeld-out dates ({len(test):,}, none seen in training):")
    print(f"  exact match, greedy       {exact_greedy:.1%}")
    print(f"  exact match, beam of 4    {exact_beam:.1%}")
    print(f"  validation perplexity     {figures['valid_perplexity']:.4f} (per output character)")
    for source, output, reference in mistakes:
        print(f"  miss: {source!r} → {output!r} (expected {reference})")
    print(f"\nCheckpoint: {out_dir}   try:  echo 'the 5th of November 1955' | genloom translate {out_dir}")
    print(f"Curves:     {out_dir / 'curves.png'}")
    print(f"Attention:  {heatmap}")
    print(f"Done in {figures['wall_s']:.0f} s (training {figures['train_wall_s']:.0f} s).")
    return figures
