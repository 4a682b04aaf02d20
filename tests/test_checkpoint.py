import os

import pytest
import torch

from genloom.checkpoint import (
    atomic_write,
    flatten_state,
    load_snapshot,
    load_tensors,
    save_snapshot,
    save_tensors,
    unflatten_state,
)
from genloom.errors import UserError


def test_atomic_write_replaces_whole_files_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a" / "f.json"
    atomic_write(path, "one")
    atomic_write(path, "two")
    assert path.read_text() == "two"
    assert os.listdir(path.parent) == ["f.json"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_tensors(path, {"w": torch.ones(2)})

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(UserError, match="cannot write .*model.safetensors: disk full; what it held before is kept"):
        save_tensors(path, {"w": torch.zeros(2)})
    monkeypatch.undo()
    assert torch.equal(load_tensors(path)["w"], torch.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]


def test_optimizer_state_round_trips_without_pickle():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    tree = {"optimizer": optimizer.state_dict(), "carry": (torch.ones(2), torch.zeros(1)), "best": None, "step": 3}
    tensors = {}
    flat = flatten_state(tree, tensors)
    back = unflatten_state(flat, tensors)
    assert back["step"] == 3 and back["best"] is None and isinstance(back["carry"], tuple)
    fresh = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters())
    fresh.load_state_dict(back["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_snapshots_point_to_the_newest_complete_one(tmp_path):
    save_snapshot(tmp_path, 1, {"w": torch.ones(1)}, {"step": 1})
    save_snapshot(tmp_path, 2, {"w": torch.full((1,), 2.0)}, {"step": 2})
    model, state = load_snapshot(tmp_path)
    assert state["step"] == 2 and model["w"].item() == 2.0
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["latest.json", "step-00000002"]


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    path = tmp_path / "model.safetensors"
    save_tensors(path, {"w": torch.ones(100)})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_tensors(path)


def test_a_folder_to_write_into_may_hold_any_subfolder(tmp_path):
    """Regression: the folder check went through a child named "x", so a folder holding a subfolder "x" was
    refused as "is a folder"."""
    from genloom.checkpoint import check_writable_folder

    (tmp_path / "out" / "x").mkdir(parents=True)
    assert check_writable_folder(tmp_path / "out") == tmp_path / "out"
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match="is a file; give the name of a folder"):
        check_writable_folder(tmp_path / "a_file")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_writable_folder(tmp_path / "a_file" / "sub")
