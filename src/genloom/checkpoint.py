"""Checkpoints as directories of safetensors and JSON, every file written atomically.

A run directory is itself a loadable checkpoint::

    config.json          family, model config, tokenizer settings, the whole recipe
    tokenizer.json       the trained tokenizer
    model.safetensors    the best weights so far (by validation loss), or the latest
    metrics.jsonl        one JSON object per log line, appended
    curves.png           train/validation curves, drawn at the end
    state/latest.json    names the newest complete trainer snapshot
    state/step-000123/   model.safetensors, trainer.safetensors, trainer.json

Nothing is unpickled: tensors go through safetensors, everything else through
JSON. A snapshot directory is complete before ``latest.json`` names it, so an
interrupted write never leaves a half checkpoint behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor

from genloom.errors import UserError


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def save_tensors(path: str | Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors, atomically (shared storage is copied, as safetensors requires)."""
    payload = save({k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}, metadata=metadata)
    atomic_write(path, payload)


def load_tensors(path: str | Path) -> dict[str, Tensor]:
    """Load a safetensors file; a missing, truncated or corrupt file is a ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"checkpoint file {path} is truncated or corrupt ({str(error).splitlines()[0]}).") from None


def write_json(path: str | Path, value: Any) -> None:
    atomic_write(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"checkpoint file {path} is truncated or corrupt (not valid JSON: {error}).") from None


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint directory, checked to be one of genloom's."""
    directory = Path(directory)
    if not directory.exists():
        raise UserError(f"checkpoint not found: {directory}")
    if not directory.is_dir():
        raise UserError(f"checkpoint must be a directory holding config.json, got the file {directory}.")
    config = read_json(directory / "config.json")
    if not isinstance(config, dict) or "family" not in config or "model" not in config:
        raise UserError(f"{directory / 'config.json'} is not a genloom checkpoint config (no 'family' and 'model').")
    return config


# Trainer state: nested dicts/lists with tensors inside (optimizer state, RNG, carried
# recurrent state) are split into a flat tensor dict for safetensors and a JSON tree
# in which each tensor is replaced by {"__tensor__": key}.

def flatten_state(tree: Any, tensors: dict[str, Tensor], prefix: str = "") -> Any:
    """Move every tensor of ``tree`` into ``tensors``; return the JSON-safe remainder."""
    if isinstance(tree, Tensor):
        tensors[prefix] = tree
        return {"__tensor__": prefix}
    if isinstance(tree, dict):
        for key in tree:
            if not isinstance(key, (str, int)):
                raise TypeError(f"state key {key!r} at '{prefix}' is neither str nor int")
        return {"__dict__": [[k, flatten_state(v, tensors, f"{prefix}.{k}")] for k, v in tree.items()]}
    if isinstance(tree, (list, tuple)):
        kind = "__tuple__" if isinstance(tree, tuple) else "__list__"
        return {kind: [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(tree)]}
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"cannot store a {type(tree).__name__} at '{prefix}' in a checkpoint")


def unflatten_state(tree: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of ``flatten_state``."""
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__dict__" in tree:
            return {k: unflatten_state(v, tensors) for k, v in tree["__dict__"]}
        if "__tuple__" in tree:
            return tuple(unflatten_state(v, tensors) for v in tree["__tuple__"])
        if "__list__" in tree:
            return [unflatten_state(v, tensors) for v in tree["__list__"]]
    return tree


def save_snapshot(run_dir: str | Path, step: int, model_tensors: dict[str, Tensor], trainer_state: dict[str, Any],
                  keep: int = 1) -> Path:
    """Write a complete trainer snapshot, then point ``state/latest.json`` at it, then prune old ones."""
    state_dir = Path(run_dir) / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    final = state_dir / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".step-{step:08d}.", dir=state_dir))
    try:
        tensors: dict[str, Tensor] = {}
        tree = flatten_state(trainer_state, tensors, "state")
        save_tensors(tmp / "model.safetensors", model_tensors)
        save_tensors(tmp / "trainer.safetensors", tensors)
        write_json(tmp / "trainer.json", tree)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(state_dir)
    write_json(state_dir / "latest.json", {"step": step, "path": final.name})
    snapshots = sorted(p for p in state_dir.glob("step-*") if p.is_dir())
    for old in snapshots[:-keep]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_snapshot(run_dir: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """The newest complete snapshot's model tensors and trainer state, or None if the run has none."""
    pointer = Path(run_dir) / "state" / "latest.json"
    if not pointer.is_file():
        return None
    latest = read_json(pointer)
    snapshot = pointer.parent / latest["path"]
    model = load_tensors(snapshot / "model.safetensors")
    tensors = load_tensors(snapshot / "trainer.safetensors")
    return model, unflatten_state(read_json(snapshot / "trainer.json"), tensors)


def rng_state() -> dict[str, Any]:
    """Torch's CPU (and CUDA) generator states, as tensors."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
