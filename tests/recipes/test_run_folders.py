"""Run folders are never lost, stolen or stuck (issue 24, point 4): each rule of ``recipes.runs._claim_run_dir``
and of ``checkpoint.load_snapshot``, with a regression named for the bug it fixes."""

import json

import pytest

import genloom
import genloom.training.loop as loop
from genloom.checkpoint import lock_run
from genloom.errors import UserError
from tests.conftest import tiny_recipe


def files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_holding_someone_elses_model_files_is_refused_and_left_byte_identical(tmp_path):
    """Regression: such a folder was overwritten and its metrics.jsonl appended to."""
    recipe = tiny_recipe(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"someone's weights")
    (run / "tokenizer.json").write_text('{"theirs": true}')
    (run / "metrics.jsonl").write_text('{"their": "log"}\n')
    before = files(run)
    with pytest.raises(UserError, match="genloom did not write"):
        genloom.train(recipe)
    assert files(run) == before


def test_other_files_in_a_new_run_folder_do_not_block_it_and_stay(tmp_path):
    recipe = tiny_recipe(tmp_path, max_steps=2, eval_every=2)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    genloom.train(recipe)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_a_run_that_failed_before_its_first_snapshot_does_not_block_the_corrected_command(tmp_path, monkeypatch):
    """Regression: a failure before the first snapshot left a folder that train and --resume both refused."""
    failing = tiny_recipe(tmp_path)

    def fails(*args, **kwargs):
        raise UserError("the first step failed")

    monkeypatch.setattr(loop, "optimizer_step", fails)
    with pytest.raises(UserError, match="the first step failed"):
        genloom.train(failing)
    monkeypatch.undo()
    assert (tmp_path / "run" / "config.json").is_file()
    with pytest.raises(UserError, match="stopped before its first snapshot, so there is nothing to resume"):
        genloom.train(failing, resume=True)
    summary = genloom.train(tiny_recipe(tmp_path, max_steps=4, eval_every=2))
    assert summary["steps"] == 4
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[0] == 1  # the failed run's lines went with it


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    recipe = tiny_recipe(tmp_path)
    (tmp_path / "run").write_text("a file")
    with pytest.raises(UserError, match="is a file; out_dir must name a folder"):
        genloom.train(recipe)
    assert (tmp_path / "run").read_text() == "a file"


def test_a_second_training_into_a_locked_folder_is_refused(tmp_path):
    """Regression: two trainings into one out_dir both wrote, interleaving metrics.jsonl."""
    recipe = tiny_recipe(tmp_path)
    holder = lock_run(tmp_path / "run")
    try:
        with pytest.raises(UserError, match="is being trained by process"):
            genloom.train(recipe)
    finally:
        holder.close()
    assert genloom.train(tiny_recipe(tmp_path, max_steps=2, eval_every=2))["steps"] == 2  # free once released


def test_resume_removes_half_written_snapshots_and_survives_a_torn_metrics_line(tmp_path):
    """Regression: half-written snapshot folders piled up (81 MB in one test), and a torn last metrics line
    stopped --resume with a traceback."""
    recipe = tiny_recipe(tmp_path, max_steps=4, eval_every=2)
    recipe["train"]["max_steps"] = 2
    genloom.train(recipe)
    run = tmp_path / "run"
    partial = run / "state" / ".step-00000003.x1y2"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\0" * 1000)
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 3, "split": "tra')
    recipe["train"]["max_steps"] = 4
    assert genloom.train(recipe, resume=True)["steps"] == 4
    assert not partial.exists()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4]


def test_latest_json_may_only_name_a_snapshot_of_its_own_run(tmp_path):
    """Regression: a latest.json pointing into another run's folder made --resume continue from that run."""
    for name in ("a", "b"):
        genloom.train(tiny_recipe(tmp_path / name, max_steps=2, eval_every=2))
    latest = tmp_path / "a" / "run" / "state" / "latest.json"
    other = next((tmp_path / "b" / "run" / "state").glob("step-*"))
    for pointer, message in ((f"../../../b/run/state/{other.name}", "must name a snapshot folder"),
                             ("step-00000099", "which is not in"), (None, "must name a snapshot folder")):
        latest.write_text(json.dumps({"step": 2, "path": pointer}))
        recipe = tiny_recipe(tmp_path / "a", max_steps=4, eval_every=2)
        with pytest.raises(UserError, match=message):
            genloom.train(recipe, resume=True)
    latest.write_text("{not json")
    with pytest.raises(UserError, match="truncated or corrupt"):
        genloom.train(tiny_recipe(tmp_path / "a", max_steps=4, eval_every=2), resume=True)


def test_a_damaged_trainer_json_is_one_sentence(tmp_path):
    recipe = tiny_recipe(tmp_path, max_steps=2, eval_every=2)
    genloom.train(recipe)
    trainer = next((tmp_path / "run" / "state").glob("step-*")) / "trainer.json"
    for damage, message in (("{not json", "truncated or corrupt"), ('{"optimizer": {"__tensor__": "gone"}}', "damaged")):
        trainer.write_text(damage)
        recipe["train"]["max_steps"] = 4
        with pytest.raises(UserError, match=message):
            genloom.train(recipe, resume=True)


def test_a_failed_save_during_training_stops_with_a_sentence_and_keeps_the_last_snapshot(tmp_path, monkeypatch):
    """Disk full or a read-only folder during a snapshot: one sentence, and the last complete snapshot still
    resumes."""
    import os

    recipe = tiny_recipe(tmp_path, max_steps=4, eval_every=2)
    real_replace, calls = os.replace, {"n": 0}

    def full_disk_after_the_first_snapshot(src, dst):
        if "state" in str(dst) and calls["n"] >= 1:
            raise OSError(28, "No space left on device")
        calls["n"] += str(dst).endswith("latest.json")  # the first snapshot is complete once latest.json names it
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk_after_the_first_snapshot)
    with pytest.raises(UserError, match="No space left on device"):
        genloom.train(recipe)
    monkeypatch.undo()
    assert not list((tmp_path / "run" / "state").glob(".step-*"))  # no half-written snapshot left
    assert genloom.train(recipe, resume=True)["steps"] == 4


def test_a_trained_tokenizer_is_cached_by_its_texts_and_settings_and_can_be_named(tmp_path, capsys, monkeypatch):
    """Training a tokenizer on a large corpus took minutes on every run: the same texts and settings now reuse
    the cached one, and tokenizer.path reuses any tokenizer.json or run folder."""
    monkeypatch.setenv("GENLOOM_CACHE", str(tmp_path / "cache"))
    genloom.train(tiny_recipe(tmp_path / "a", max_steps=2))
    assert "trained and cached in" in capsys.readouterr().out
    genloom.train(tiny_recipe(tmp_path / "b", max_steps=2))
    assert "reused from the cache" in capsys.readouterr().out
    first, second = (tmp_path / name / "run" / "tokenizer.json" for name in "ab")
    assert first.read_text() == second.read_text()
    other = tiny_recipe(tmp_path / "c", max_steps=2)
    other["tokenizer"]["vocab_size"] = 50
    genloom.train(other)
    assert "trained and cached in" in capsys.readouterr().out
    named = tiny_recipe(tmp_path / "d", max_steps=2)
    named["tokenizer"] = {"kind": "word", "path": str(tmp_path / "c" / "run")}
    genloom.train(named)
    assert f"reused from {tmp_path / 'c' / 'run'}" in capsys.readouterr().out
    assert (tmp_path / "d" / "run" / "tokenizer.json").read_text() == (tmp_path / "c" / "run" / "tokenizer.json").read_text()
    named["tokenizer"]["path"] = str(tmp_path / "nowhere")
    named["out_dir"] = str(tmp_path / "e")
    with pytest.raises(UserError, match="tokenizer file not found"):
        genloom.train(named)
