import dataclasses
from pathlib import Path

import pytest

from genloom.config import (DataConfig, RunConfig, TokenizerConfig, TrainConfig, _attribute_docs, apply_overrides, describe,
                            from_dict, load_run_config, parse_run_config)
from genloom.errors import UserError
from genloom.models import FAMILIES

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_unknown_key_names_the_nearest_known_one():
    with pytest.raises(UserError, match=r"unknown config key 'train.lrr'; did you mean 'lr'\?"):
        from_dict(TrainConfig, {"lrr": 0.1}, "train")
    with pytest.raises(UserError, match=r"'genloom config FAMILY' lists every key"):
        from_dict(TrainConfig, {"lrr": 0.1}, "train")


@pytest.mark.parametrize("values, message", [
    ({"lr": "fast"}, r"'train.lr' must be a float, got a string 'fast'"),
    ({"batch_size": 2.5}, r"'train.batch_size' must be a int, got a number 2.5"),
    ({"batch_size": True}, r"'train.batch_size' must be a int, got a boolean True"),
    ({"schedule": "exp"}, r"'train.schedule' must be one of 'constant', 'linear', 'cosine', 'step', 'plateau', got 'exp'"),
    ({"betas": 0.9}, r"'train.betas' must be a list"),
])
def test_wrong_types_are_rejected_with_the_path(values, message):
    with pytest.raises(UserError, match=message):
        from_dict(TrainConfig, values, "train")


def test_int_is_accepted_where_a_float_is_expected():
    assert from_dict(TrainConfig, {"lr": 1}, "train").lr == 1.0


def test_overrides_parse_yaml_values_and_create_sections():
    values = apply_overrides({"train": {"lr": 1.0}}, ["train.lr=0.5", "train.grad_clip=null", "model.cell=gru"])
    assert values == {"train": {"lr": 0.5, "grad_clip": None}, "model": {"cell": "gru"}}
    with pytest.raises(UserError, match="key=value"):
        apply_overrides({}, ["train.lr"])


@pytest.mark.parametrize("train, message", [
    ({"max_steps": 0}, "'train.max_steps' must be at least 1"),
    ({"epochs": -1, "max_steps": None}, "'train.epochs' must be at least 1"),
    ({"lr": float("nan")}, "'train.lr' must be a finite number, got nan"),
    ({"lr": float("inf")}, "'train.lr' must be a finite number, got inf"),
    ({"lr": 0.0}, "'train.lr' must be positive"),
    ({"eval_every": -2}, "'train.eval_every' must be at least 1"),
    ({"eval_every": 0}, "'train.eval_every' must be at least 1"),
    ({"warmup_steps": -1}, "'train.warmup_steps' must be at least 0"),
    ({"patience": -1}, "'train.patience' must be at least 0"),
    ({"grad_clip": 0.0}, "'train.grad_clip' must be positive"),
    ({"weight_decay": -0.1}, "'train.weight_decay' must be at least 0"),
    ({"lr_decay": 0.0}, "'train.lr_decay' must lie in"),
    ({"betas": [0.9, 1.5]}, "'train.betas' must be two numbers"),
])
def test_train_ranges_are_checked_where_the_recipe_is_parsed(train, message):
    """Regression: max_steps 0, a NaN or infinite lr and negative eval_every/warmup_steps passed validate; some
    then ended in a traceback, others trained silently wrong."""
    with pytest.raises(UserError, match=message):
        parse_run_config({"family": "rnnlm", "data": {"train": "x.txt"}, "train": {"max_steps": 10, **train}})


def test_a_recipe_without_a_length_is_rejected():
    with pytest.raises(UserError, match="train.epochs' or 'train.max_steps"):
        parse_run_config({"family": "rnnlm", "data": {"train": "x.txt"}})


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_recipe_parses_and_builds(path):
    """Each YAML recipe opens with a comment, parses, and builds its model (data need not be present)."""
    assert path.read_text(encoding="utf-8").startswith("#"), f"{path.name} must open with a comment"
    run = load_run_config(path)
    module = FAMILIES[run.family]
    config = from_dict(module.CONFIG, run.model, "model")
    config.vocab_size = 50
    model = module.build(config)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_config_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, genloom.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("cls", [RunConfig, DataConfig, TokenizerConfig, TrainConfig]
                         + [family.CONFIG for family in FAMILIES.values()], ids=lambda cls: cls.__name__)
def test_every_config_key_has_a_one_line_meaning(cls):
    """``genloom config`` reads each key's meaning from its class's Attributes section: a key added without one,
    or one documented that no longer exists, fails here, so the listing cannot drift from the code."""
    rows = describe(cls)
    assert [key for key, _, _, meaning in rows if not meaning] == []
    assert set(_attribute_docs(cls)) == {f.name for f in dataclasses.fields(cls)}


def test_describe_shows_types_and_defaults():
    rows = {key: (kind, default) for key, kind, default, _ in describe(TrainConfig, "train.")}
    assert rows["train.schedule"] == ("constant | linear | cosine | step | plateau", "cosine")
    assert rows["train.max_steps"] == ("int | null", "null")
    assert rows["train.betas"] == ("list of float", "[0.9, 0.999]")
    assert rows["train.compile"] == ("bool", "false")
