"""Shared fixtures: a tiny corpus, a tiny recipe, and one tiny trained checkpoint per session."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import genloom.training.loop as loop
from genloom.apps.toy_grammar import corpus

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Trained tokenizers are cached (tokenizer.cache); tests keep theirs in a fresh folder, never in the user's.
os.environ["GENLOOM_CACHE"] = tempfile.mkdtemp(prefix="genloom-test-cache-")


def write_corpus(folder: Path, train: int = 300, valid: int = 40) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, size, seed in (("train", train, 1), ("valid", valid, 2), ("test", valid, 3)):
        path = folder / f"{name}.txt"
        path.write_text("\n".join(corpus(size, seed)) + "\n", encoding="utf-8")
        paths[name] = str(path)
    return paths


def logged(run_dir: Path, split: str | None = None) -> list[dict]:
    """The records of a run's ``metrics.jsonl``, all or those of one split (``train`` or ``valid``)."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if split is None or r["split"] == split]


def tiny_recipe(folder: Path, **train_overrides) -> dict:
    """A recipe that trains a tiny LSTM LM in a second or two on CPU."""
    paths = write_corpus(folder / "data")
    train = {"optimizer": "adamw", "lr": 0.01, "schedule": "cosine", "max_steps": 12, "batch_size": 16,
             "eval_batch_size": 16, "eval_every": 4, "log_every": 1, "seed": 0, "device": "cpu"}
    train.update(train_overrides)
    return {
        "family": "rnnlm",
        "out_dir": str(folder / "run"),
        "data": {"train": paths["train"], "valid": paths["valid"], "test": paths["test"], "batching": "sentences"},
        "tokenizer": {"kind": "word", "vocab_size": 100},
        "model": {"embed_dim": 16, "hidden_dim": 24, "num_layers": 1},
        "train": train,
    }


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny trained RNN LM checkpoint, shared by the tests that only read it."""
    import genloom

    folder = tmp_path_factory.mktemp("trained")
    genloom.train(tiny_recipe(folder, max_steps=80, eval_every=40, lr=0.03))
    return folder / "run"


def train_tiny(folder: Path, family: str, model: dict, steps: int = 2, **data) -> Path:
    """A ``family`` checkpoint of the ``model`` settings, trained ``steps`` steps on the tiny corpus."""
    import genloom

    recipe = tiny_recipe(folder, max_steps=steps, eval_every=None, lr=0.01)
    recipe.update(family=family, model=model)
    recipe["data"].update(data)
    genloom.train(recipe)
    return folder / "run"


@pytest.fixture(scope="session")
def trained_gpt(tmp_path_factory) -> Path:
    """A tiny GPT checkpoint (one layer, width 16, a 48-token context), shared by the tests that only read it."""
    return train_tiny(tmp_path_factory.mktemp("gpt"), "gpt",
                      {"dim": 16, "num_layers": 1, "num_heads": 2, "context_length": 48}, batching="stream")


def signal_during_step(monkeypatch, number, at_call):
    """Send this process ``number`` (SIGTERM, SIGINT) while the optimizer takes its ``at_call``-th step, as a
    user's kill or Ctrl-C would arrive in the middle of a step."""
    real_step = loop.optimizer_step
    calls = {"n": 0}

    def step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_call:
            os.kill(os.getpid(), number)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "optimizer_step", step)
    return lambda: monkeypatch.setattr(loop, "optimizer_step", real_step)


@pytest.fixture(scope="session")
def lowercased_copier(tmp_path_factory):
    """A tiny seq2seq trained with ``data.lowercase: true`` to copy word sequences; its vocabulary (12 words) is
    smaller than the corpus' (20), so <unk> is common in its training targets."""
    import genloom

    folder = tmp_path_factory.mktemp("lowercased")
    rng = random.Random(0)
    words = [f"Word{i}" for i in range(20)]
    rows = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 5))) for _ in range(300)]
    (folder / "pairs.tsv").write_text("".join(f"{r}.\t{r}.\n" for r in rows), encoding="utf-8")
    genloom.train({"family": "seq2seq", "out_dir": str(folder / "run"),
                   "data": {"train": str(folder / "pairs.tsv"), "format": "tsv", "lowercase": True},
                   "tokenizer": {"kind": "word", "vocab_size": 16},
                   "model": {"embed_dim": 16, "hidden_dim": 32, "attention_dim": 16},
                   "train": {"max_steps": 60, "lr": 0.02, "batch_size": 32, "device": "cpu", "log_every": 100}})
    return folder / "run"


def parrot(folder: Path, line: str) -> Path:
    """A character LM trained in seconds to say ``line`` (greedy decoding of its first words repeats it)."""
    import genloom

    (folder / "train.txt").write_text(f"{line}\n" * 200, encoding="utf-8")
    genloom.train({"family": "rnnlm", "out_dir": str(folder / "run"), "data": {"train": str(folder / "train.txt")},
                   "tokenizer": {"kind": "char", "vocab_size": 60},
                   "model": {"embed_dim": 16, "hidden_dim": 48, "num_layers": 1},
                   "train": {"max_steps": 120, "lr": 0.02, "batch_size": 16, "device": "cpu", "log_every": 100}})
    return folder / "run"


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run genloom's command line in this process, as ``python -m genloom ARGS`` runs it but without a new
    interpreter's seconds of imports: the exit status, stdout and stderr (an uncaught exception fails the test, as
    a traceback would show in a terminal)."""
    from genloom.cli import main

    def run(*args, stdin: str | None = None) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        try:
            code = main([str(a) for a in args])
        except SystemExit as stop:  # argparse's usage errors
            code = stop.code
        said = capsys.readouterr()
        return CliResult(code, said.out, said.err)

    return run


@pytest.fixture
def browser():
    """Debian's chromium, headless, driven by Playwright, with a fresh profile: a persistent browser context.
    Skips when Playwright for Python or the chromium package is missing (.ci/run installs both)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield context
        context.close()
