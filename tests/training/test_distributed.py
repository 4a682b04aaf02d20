"""Data-parallel training: two CPU processes (gloo, launched by torchrun) train exactly like one process
with the same global batch."""

import os
import subprocess
import sys

import pytest
import yaml

import genloom
from tests.conftest import logged, tiny_recipe


def train_losses(run_dir):
    return [r["loss"] for r in logged(run_dir, "train")], [r["loss"] for r in logged(run_dir, "valid")]


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    """For both batchings, in one torchrun launch: each worker runs ``genloom train`` (the CLI's ``main``) on the
    two recipes in turn, as ``torchrun -m genloom train`` would one after the other, with one start-up."""
    recipes = []
    for batching in ("stream", "sentences"):
        folder = tmp_path / batching
        recipe = tiny_recipe(folder, max_steps=6, eval_every=3, batch_size=8, bptt=6, log_every=1, lr=0.02)
        recipe["data"]["batching"] = batching
        double = dict(recipe, out_dir=str(folder / "double"))
        (folder / "recipe.yaml").write_text("# two processes\n" + yaml.safe_dump(double), encoding="utf-8")
        recipes.append(str(folder / "recipe.yaml"))
        genloom.train(dict(recipe, out_dir=str(folder / "single")))
    worker = tmp_path / "train_both.py"
    worker.write_text("import sys\nfrom genloom.cli import main\n"
                      "for recipe in sys.argv[1:]:\n    assert main(['train', recipe]) == 0\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker), *recipes],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done:") == 2  # rank 0 alone reports, once a recipe
    for batching in ("stream", "sentences"):
        (single_train, single_valid), (double_train, double_valid) = (train_losses(tmp_path / batching / "single"),
                                                                      train_losses(tmp_path / batching / "double"))
        assert len(double_train) == 6, batching
        assert double_train == pytest.approx(single_train, rel=1e-5, abs=1e-6), batching
        assert double_valid == pytest.approx(single_valid, rel=1e-5, abs=1e-6), batching
