"""``genloom demo``: learn a small grammar from scratch with the RNN LM, then show what the model writes.

Needs nothing but the installed package: the corpus comes from
``apps/toy_grammar``. Training takes one to two minutes on two CPU cores; the
run directory (checkpoint, metrics, curves PNG) is left in ``runs/demo``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from genloom.apps.toy_grammar import corpus, is_grammatical
from genloom.checkpoint import atomic_write
from genloom.errors import UserError

MARKER = ".genloom-demo"


def demo_recipe(out_dir: Path) -> dict:
    """The demo's recipe: a one-layer word-level LSTM on the toy grammar."""
    data = out_dir / "data"
    return {
        "family": "rnnlm",
        "out_dir": str(out_dir),
        "data": {"train": str(data / "train.txt"), "valid": str(data / "valid.txt"), "test": str(data / "test.txt"),
                 "batching": "sentences"},
        "tokenizer": {"kind": "word", "vocab_size": 100},
        "model": {"cell": "lstm", "embed_dim": 64, "hidden_dim": 128, "num_layers": 1, "dropout": 0.0,
                  "tie_embeddings": False, "init_range": 0.1},
        "train": {"optimizer": "adamw", "lr": 0.005, "schedule": "cosine", "warmup_steps": 20, "epochs": 6,
                  "batch_size": 32, "eval_batch_size": 64, "grad_clip": 1.0, "eval_every": 100, "log_every": 20,
                  "seed": 0},
    }


def _prepare(out_dir: Path) -> None:
    if out_dir.exists():
        if not (out_dir / MARKER).exists():
            raise UserError(f"{out_dir} exists and is not a demo run; choose another --out-dir so nothing is overwritten.")
        shutil.rmtree(out_dir)
    data = out_dir / "data"
    for name, size, seed in (("train", 6000, 1), ("valid", 400, 2), ("test", 400, 3)):
        atomic_write(data / f"{name}.txt", "\n".join(corpus(size, seed)) + "\n")
    atomic_write(out_dir / MARKER, "written by genloom demo; the next demo replaces this folder\n")


def run_demo(out_dir: Path, device: str | None = None) -> dict:
    """Train the demo model and print samples and metrics; returns the figures."""
    from genloom.api import load, train
    from genloom.metrics import distinct_n, self_bleu

    out_dir = Path(out_dir)
    _prepare(out_dir)
    print(f"genloom demo: an LSTM language model learns a toy English grammar (subject–verb agreement, "
          f"nested noun phrases) from 6,000 sentences; output in {out_dir}")
    started = time.time()
    summary = train(demo_recipe(out_dir), device=device)
    lm = load(out_dir, device=device)
    training_set = set((out_dir / "data" / "train.txt").read_text(encoding="utf-8").splitlines())

    print("\nGreedy continuations:")
    for prompt in ("the", "two happy", "a robot near the cats"):
        print(f"  {prompt!r:26} → {prompt} {''.join(lm.generate(prompt, max_new_tokens=30)).strip()}")
    print("\nBeam search (4 beams), 3-best for 'every child':")
    for text in lm.complete(["every child"], method="beam", num_beams=4, num_return_sequences=3, max_new_tokens=30)[0]:
        print(f"  every child {text.strip()}")
    samples = [s[0].strip() for s in lm.complete([""] * 300, method="sample", temperature=1.0, max_new_tokens=40, seed=0)]
    print("\nSamples (temperature 1.0):")
    for text in samples[:5]:
        print(f"  {text}")

    grammatical = sum(is_grammatical(s) for s in samples) / len(samples)
    novel = sum(s not in training_set for s in samples) / len(samples)
    figures = {
        "valid_perplexity": summary["best_valid_perplexity"],
        "test_perplexity": summary["test_perplexity"],
        "grammatical": grammatical,
        "novel": novel,
        "distinct_1": distinct_n(samples, 1),
        "distinct_2": distinct_n(samples, 2),
        "self_bleu_4": self_bleu(samples, 4, max_hypotheses=100),
        "wall_s": time.time() - started,
    }
    print("\nMetrics:")
    print(f"  test perplexity        {figures['test_perplexity']:.3f}  (valid {figures['valid_perplexity']:.3f})")
    print(f"  grammatical samples    {grammatical:.1%}  (checked against the grammar)")
    print(f"  samples not in train   {novel:.1%}")
    print(f"  distinct-1 / distinct-2 {figures['distinct_1']:.3f} / {figures['distinct_2']:.3f}")
    print(f"  self-BLEU-4            {figures['self_bleu_4']:.3f}")
    print(f"\nCheckpoint: {out_dir}  (try: genloom generate {out_dir} --prompt 'the cat' --stream)")
    print(f"Curves:     {out_dir / 'curves.png'}")
    print(f"Done in {figures['wall_s']:.0f} s.")
    return figures
