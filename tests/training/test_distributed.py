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


@pytest.mark.parametrize("batching", ["stream", "sentences"])
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, batching):
    recipe = tiny_recipe(tmp_path, max_steps=6, eval_every=3, batch_size=8, bptt=6, log_every=1, lr=0.02)
    recipe["data"]["batching"] = batching
    single = dict(recipe, out_dir=str(tmp_path / "single"))
    genloom.train(single)

    double = dict(recipe, out_dir=str(tmp_path / "double"))
    (tmp_path / "recipe.yaml").write_text("# two processes\n" + yaml.safe_dump(double), encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "genloom", "train", str(tmp_path / "recipe.yaml")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done:") == 1  # rank 0 alone reports

    (single_train, single_valid), (double_train, double_valid) = (train_losses(tmp_path / "single"),
                                                                  train_losses(tmp_path / "double"))
    assert len(double_train) == 6
    assert double_train == pytest.approx(single_train, rel=1e-5, abs=1e-6)
    assert double_valid == pytest.approx(single_valid, rel=1e-5, abs=1e-6)
