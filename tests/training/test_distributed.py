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
    """For both batchings; the two torchrun launches run at the same time (each spends most of its time importing)."""
    launches = {}
    for batching in ("stream", "sentences"):
        folder = tmp_path / batching
        recipe = tiny_recipe(folder, max_steps=6, eval_every=3, batch_size=8, bptt=6, log_every=1, lr=0.02)
        recipe["data"]["batching"] = batching
        double = dict(recipe, out_dir=str(folder / "double"))
        (folder / "recipe.yaml").write_text("# two processes\n" + yaml.safe_dump(double), encoding="utf-8")
        launches[batching] = subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
             "-m", "genloom", "train", str(folder / "recipe.yaml")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        genloom.train(dict(recipe, out_dir=str(folder / "single")))
    for batching, launch in launches.items():
        stdout, stderr = launch.communicate(timeout=300)
        assert launch.returncode == 0, stderr[-3000:]
        assert stdout.count("done:") == 1  # rank 0 alone reports

        (single_train, single_valid), (double_train, double_valid) = (train_losses(tmp_path / batching / "single"),
                                                                      train_losses(tmp_path / batching / "double"))
        assert len(double_train) == 6, batching
        assert double_train == pytest.approx(single_train, rel=1e-5, abs=1e-6), batching
        assert double_valid == pytest.approx(single_valid, rel=1e-5, abs=1e-6), batching
