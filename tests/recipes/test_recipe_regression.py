"""A 2-step recipe run whose losses match stored values (torchtune's recipe tests).

A change in data order, tokenization, initialisation, loss or optimizer shows
up here as a changed number. If the change is intended, update the values and
say why in the commit.
"""

import json

import pytest

import genloom
from tests.conftest import tiny_recipe

STORED = {"train": [3.7816355228424072, 3.7816317081451416], "valid": [3.7740684284695556]}


def test_two_step_rnnlm_recipe_reproduces_stored_losses(tmp_path):
    genloom.train(tiny_recipe(tmp_path, max_steps=2, eval_every=2))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for split, expected in STORED.items():
        got = [r["loss"] for r in records if r["split"] == split]
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6), split
