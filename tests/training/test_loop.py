"""The shared training loop: exact resume, determinism, the NaN guard, early stopping, schedules."""

import json
import signal

import pytest

import genloom
import genloom.training.loop as loop
from genloom.config import TrainConfig
from genloom.errors import UserError
from genloom.models.rnnlm import RNNLM
from genloom.training.optim import learning_rate
from tests.conftest import logged, signal_during_step, tiny_recipe


def train_losses(run_dir):
    return [(r["step"], r["loss"]) for r in logged(run_dir, "train")]


def stream_recipe(folder, **train):
    recipe = tiny_recipe(folder, **{"max_steps": 14, "eval_every": 3, "bptt": 6, "batch_size": 4, **train})
    recipe["data"]["batching"] = "stream"
    recipe["model"].update(dropout=0.3, num_layers=2)
    return recipe


def plateau_recipe(folder):
    """LR cuts before and after the interruption: the resumed run must know how many there were."""
    return tiny_recipe(folder, max_steps=14, eval_every=1, batch_size=64, lr=20.0, optimizer="sgd", grad_clip=None,
                       schedule="plateau", plateau_patience=1, lr_decay=0.5)


@pytest.mark.parametrize("batching, number", [("stream", signal.SIGTERM), ("sentences", signal.SIGINT),
                                              ("plateau", signal.SIGTERM)])
def test_a_run_stopped_by_a_signal_and_resumed_gives_the_same_losses(tmp_path, monkeypatch, batching, number):
    """SIGTERM (a scheduler's or a user's kill) and SIGINT stop a run at the end of the step they arrive in, with
    a snapshot; the resumed run's losses equal an uninterrupted run's."""
    # sentences: the tiny corpus is 5 batches of 64 an epoch, so the 14-step run crosses epochs
    make = {"stream": stream_recipe, "plateau": plateau_recipe,
            "sentences": lambda f: tiny_recipe(f, max_steps=14, eval_every=3, batch_size=64)}[batching]
    reference = make(tmp_path / "a")
    genloom.train(reference)

    interrupted = make(tmp_path / "b")
    before = signal.getsignal(number)  # default, or ignored when the suite runs under nohup
    restore = signal_during_step(monkeypatch, number, at_call=6)
    with pytest.raises(loop.TrainingInterrupted, match=r"stopped by SIG\w+.* at step 6; .*resume it with --resume"):
        genloom.train(interrupted)
    restore()
    assert signal.getsignal(number) == before  # the run put back the handler it found
    genloom.train(interrupted, resume=True)

    expected = train_losses(tmp_path / "a" / "run")
    assert len(expected) == 14
    assert train_losses(tmp_path / "b" / "run") == expected
    if batching == "plateau":
        lrs = [r["lr"] for r in logged(tmp_path / "a" / "run", "train")]
        assert lrs[4] < lrs[0] and lrs[-1] < lrs[4]  # cuts both before and after step 5


def valid_steps(run_dir):
    return [r["step"] for r in logged(run_dir, "valid")]


def test_evaluation_follows_eval_every_and_else_the_epochs(tmp_path):
    # the tiny corpus is 5 batches of 64 an epoch: epoch ends fall at steps 5, 10, 15
    genloom.train(tiny_recipe(tmp_path / "steps", max_steps=14, eval_every=3, batch_size=64))
    assert valid_steps(tmp_path / "steps" / "run") == [3, 6, 9, 12, 14]  # and after the last step
    genloom.train(tiny_recipe(tmp_path / "epochs", max_steps=None, epochs=3, eval_every=None, batch_size=64))
    assert valid_steps(tmp_path / "epochs" / "run") == [5, 10, 15]


def test_same_seed_same_losses(tmp_path):
    genloom.train(tiny_recipe(tmp_path / "a"))
    genloom.train(tiny_recipe(tmp_path / "b"))
    assert train_losses(tmp_path / "a" / "run") == train_losses(tmp_path / "b" / "run")


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    recipe = tiny_recipe(tmp_path, max_steps=20, eval_every=4)
    real_loss = RNNLM.loss
    calls = {"n": 0}

    def loss_that_explodes(self, batch, carry=None):
        out = real_loss(self, batch, carry)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 7:
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(RNNLM, "loss", loss_that_explodes)
    with pytest.raises(UserError, match=r"training stopped at step 6: the loss became nan; the last good checkpoint"):
        genloom.train(recipe)
    run = tmp_path / "run"
    assert json.loads((run / "state" / "latest.json").read_text())["step"] == 4
    genloom.load(run)  # the best weights so far still load


def test_training_into_an_existing_checkpoint_needs_resume_and_destroys_nothing(tmp_path):
    recipe = tiny_recipe(tmp_path, max_steps=4)
    genloom.train(recipe)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(UserError, match="already holds a checkpoint; pass --resume"):
        genloom.train(recipe)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before


def test_resume_refuses_a_changed_model(tmp_path):
    recipe = tiny_recipe(tmp_path, max_steps=4)
    genloom.train(recipe)
    recipe["model"]["hidden_dim"] = 32
    with pytest.raises(UserError, match="its 'model' settings differ"):
        genloom.train(recipe, resume=True)


def test_early_stopping_and_outputs(tmp_path):
    recipe = tiny_recipe(tmp_path, max_steps=200, eval_every=1, patience=2, lr=1.0, optimizer="sgd",
                         schedule="constant", grad_clip=None)
    summary = genloom.train(recipe)
    run = tmp_path / "run"
    assert summary["steps"] < 200
    records = logged(run)
    assert {"train", "valid"} <= {r["split"] for r in records}
    assert "tokens_per_s" in records[0] and (run / "curves.png").stat().st_size > 1000
    assert "test_perplexity" in summary


def test_patience_zero_never_stops_an_improving_run_and_stops_at_the_first_evaluation_without_improvement(tmp_path):
    """Regression: train.patience 0 stopped a run at its first evaluation although it was improving."""
    improving = tiny_recipe(tmp_path / "a", max_steps=6, eval_every=2, patience=0)
    summary = genloom.train(improving)
    valid = [r["loss"] for r in logged(tmp_path / "a" / "run", "valid")]
    assert valid == sorted(valid, reverse=True) and summary["steps"] == 6
    bouncing = tiny_recipe(tmp_path / "b", max_steps=200, eval_every=1, patience=0, lr=1.0, optimizer="sgd",
                           schedule="constant", grad_clip=None)
    genloom.train(bouncing)
    valid = [r["loss"] for r in logged(tmp_path / "b" / "run", "valid")]
    assert valid[-1] >= min(valid[:-1]) and all(b < a for a, b in zip(valid[:-2], valid[1:-1]))


def test_gradient_accumulation_counts_optimizer_steps(tmp_path):
    summary = genloom.train(tiny_recipe(tmp_path, max_steps=3, grad_accum=2, log_every=1))
    assert summary["steps"] == 3


def test_learning_rate_schedules():
    assert [learning_rate(TrainConfig(lr=1.0, schedule="constant", warmup_steps=4), s, 10, 0) for s in (0, 3, 9)] == \
        [0.25, 1.0, 1.0]
    cosine = TrainConfig(lr=1.0, schedule="cosine", min_lr_ratio=0.1)
    assert learning_rate(cosine, 0, 10, 0) == 1.0 and learning_rate(cosine, 10, 10, 0) == pytest.approx(0.1)
    assert learning_rate(cosine, 5, 10, 0) == pytest.approx(0.55)
    step = TrainConfig(lr=20.0, schedule="step", lr_decay=0.5, lr_decay_start=4)
    assert [learning_rate(step, 0, 100, e) for e in range(6)] == [20.0, 20.0, 20.0, 20.0, 10.0, 5.0]
    plateau = TrainConfig(lr=0.001, schedule="plateau", lr_decay=0.5)
    assert [learning_rate(plateau, 50, 100, 3, cuts) for cuts in range(3)] == [0.001, 0.0005, 0.00025]


def test_the_plateau_schedule_cuts_the_lr_after_evaluations_without_improvement(tmp_path):
    recipe = tiny_recipe(tmp_path, max_steps=40, eval_every=1, log_every=1, lr=2.0, optimizer="sgd", grad_clip=None,
                         schedule="plateau", plateau_patience=2, lr_decay=0.5)
    genloom.train(recipe)
    records = logged(tmp_path / "run")
    best, since, cuts, expected = float("inf"), 0, 0, {}
    for r in records:  # replay the rule on the logged validation losses
        if r["split"] == "valid":
            best, since = (r["loss"], 0) if r["loss"] < best else (best, since + 1)
            if since >= 2:
                cuts, since = cuts + 1, 0
            expected[r["step"] + 1] = 2.0 * 0.5 ** cuts  # the LR of the next step
    lrs = {r["step"]: r["lr"] for r in records if r["split"] == "train"}
    assert cuts > 0 and all(lrs[step] == pytest.approx(lr) for step, lr in expected.items() if step in lrs)
    recipe = tiny_recipe(tmp_path / "capped", max_steps=40, eval_every=1, lr=2.0, optimizer="sgd", grad_clip=None,
                         schedule="plateau", plateau_patience=2, lr_decay=0.5, max_plateaus=1)
    assert genloom.train(recipe)["steps"] < 40  # stops at the first plateau


def test_fine_tuning_starts_from_the_source_weights_and_tokenizer(trained_run, tmp_path):
    fresh = tiny_recipe(tmp_path / "fresh", max_steps=2, log_every=1)
    genloom.train(fresh)
    tuned = tiny_recipe(tmp_path / "tuned", max_steps=2, log_every=1)
    tuned["init_from"] = str(trained_run)
    tuned["model"] = {"dropout": 0.1}  # shape settings come from the source; this one is overridden
    genloom.train(tuned)
    fresh_first = train_losses(tmp_path / "fresh" / "run")[0][1]
    tuned_first = train_losses(tmp_path / "tuned" / "run")[0][1]
    assert tuned_first < fresh_first - 0.5
    config = json.loads((tmp_path / "tuned" / "run" / "config.json").read_text())
    assert config["model"]["dropout"] == 0.1 and config["model"]["hidden_dim"] == 24
    assert (tmp_path / "tuned" / "run" / "tokenizer.json").read_text() == (trained_run / "tokenizer.json").read_text()


def test_fine_tuning_refuses_another_family(trained_run, tmp_path):
    recipe = tiny_recipe(tmp_path, max_steps=2)
    recipe.update(family="gpt", init_from=str(trained_run), model={})
    with pytest.raises(UserError, match="holds a 'rnnlm' model, but this recipe trains 'gpt'"):
        genloom.train(recipe)


def test_compile_runs_the_training_step_through_torch_compile(tmp_path, monkeypatch):
    import torch

    compiled = []
    real_compile = torch.compile

    def eager_compile(module, **kwargs):  # the real inductor takes minutes on two cores; the wiring is the point
        compiled.append(module)
        return real_compile(module, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", eager_compile)
    recipe = tiny_recipe(tmp_path, max_steps=2, compile=True)
    recipe.update(family="gpt", model={"context_length": 64, "dim": 16, "num_layers": 1, "num_heads": 2})
    summary = genloom.train(recipe)
    assert summary["steps"] == 2 and len(compiled) == 1


def test_sigint_stops_gracefully_even_when_the_shell_ignored_it(tmp_path, monkeypatch):
    """`nohup genloom train … &` starts the run with SIGINT ignored; it must still stop with a snapshot."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        signal_during_step(monkeypatch, signal.SIGINT, at_call=3)
        with pytest.raises(loop.TrainingInterrupted, match="stopped by SIGINT"):
            genloom.train(tiny_recipe(tmp_path, max_steps=10, eval_every=5))
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the shell's choice comes back afterwards
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (tmp_path / "run" / "state" / "latest.json").is_file()


def test_max_time_stops_cleanly_with_a_snapshot_and_says_the_schedule_is_longer(tmp_path, monkeypatch, capsys):
    clock = {"now": 1000.0}
    monkeypatch.setattr(loop.time, "time", lambda: clock["now"])
    real_step = loop.optimizer_step

    def slow_step(*args, **kwargs):
        clock["now"] += 20.0  # every step takes 20 s of wall-clock time
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "optimizer_step", slow_step)
    summary = genloom.train(tiny_recipe(tmp_path, max_steps=12, eval_every=50, max_time="1m"))
    out = capsys.readouterr().out
    assert summary["steps"] == 3 and summary["stopped"] == "max_time"
    assert "cosine learning-rate schedule spans 12 steps (train.max_steps)" in out
    assert "stopped at step 3 of 12: train.max_time 1m is spent" in out
    assert valid_steps(tmp_path / "run") == [3]  # evaluated before stopping, so model.safetensors is current
    monkeypatch.setattr(loop, "optimizer_step", real_step)
    assert genloom.train(tiny_recipe(tmp_path, max_steps=12, eval_every=50), resume=True)["steps"] == 12


def test_without_a_terminal_training_prints_plain_progress_lines(tmp_path, capsys):
    """Under nohup, CI or `> log`, stdout is no terminal and the bar is silent: plain lines say how it goes."""
    genloom.train(tiny_recipe(tmp_path, max_steps=6, eval_every=50, log_every=2, progress_every=0))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ") and "/6" in line]
    assert [line.split(",")[0] for line in lines] == ["step 2/6 (33%)", "step 4/6 (67%)", "step 6/6 (100%)"]
    for part in ("epoch 1/1", "loss ", "tokens/s", "lr ", "elapsed ", "remaining "):
        assert part in lines[0]


def test_resume_says_what_a_changed_schedule_does_and_refuses_what_cannot_change(tmp_path, capsys):
    """Regression: resuming with a new max_steps silently recomputed the cosine horizon and the LR jumped up."""
    genloom.train(tiny_recipe(tmp_path, max_steps=8, eval_every=4))
    capsys.readouterr()
    with pytest.raises(UserError, match=r"cannot resume with train.batch_size 8 \(the run was trained with 16\)"):
        genloom.train(tiny_recipe(tmp_path, max_steps=16, eval_every=4, batch_size=8), resume=True)
    genloom.train(tiny_recipe(tmp_path, max_steps=16, eval_every=4), resume=True)
    out = capsys.readouterr().out
    assert "resuming with changed settings: train.max_steps 8 → 16." in out
    assert "The learning rate at step 8 jumps up: 0 on the old schedule, 0.005 on the new one, which runs " \
           "to step 16 (it ran to 8)." in out
