"""Checkpoints as directories of safetensors and JSON, every file written atomically.

A run directory is itself a loadable checkpoint::

    config.json          family, model config, tokenizer settings, the whole recipe
    tokenizer.json       the trained tokenizer
    model.safetensors    the best weights so far (by validation loss), or the latest
    metrics.jsonl        one JSON object per log line, appended
    curves.png           train/validation curves, drawn at the end
    state/latest.json    names the newest complete trainer snapshot
    state/step-000123/   model.safetensors, trainer.safetensors, trainer.json
    .genloom.lock        held (flock) by the process that trains into the folder

Nothing is unpickled: tensors go through safetensors, everything else through
JSON. A snapshot directory is complete before ``latest.json`` names it, so an
interrupted write never leaves a half checkpoint behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

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
    """Write ``data`` to ``path`` through a temp file in the same folder, fsync, then rename.

    A folder where the file should go, a file where a folder should be, or a failed write (disk full, a
    read-only folder) is one ``UserError``; whatever ``path`` held before stays as it was.
    """
    path = Path(path)
    check_writable_file(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}.") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {error.strerror or error}; what it held before is kept.") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def growing_file(path: str | Path) -> Iterator[TextIO]:
    """A text file written piece by piece into ``PATH.partial`` (readable while it grows, with ``tail -f``), then
    fsynced and renamed to ``path`` once whole. If the writer stops first, ``path`` keeps what it held and the
    partial file keeps what was written."""
    path = check_writable_file(path)
    partial = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(partial, "w", encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot write {partial}: {error.strerror or error}.") from None
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}; what it held before is kept.") from None
    _fsync_dir(path.parent)


def check_writable_file(path: str | Path, option: str | None = None) -> Path:
    """Refuse a file path that is a folder, or whose parent path runs through a file (``option``: the command
    line option that named it, for the message)."""
    path = Path(path)
    named = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise UserError(f"{named} is a folder; give the name of a file to write.")
    _check_parents(path, named)
    return path


def check_writable_folder(path: str | Path, option: str | None = None) -> Path:
    """Refuse a folder path that is a file, or that runs through one."""
    path = Path(path)
    named = f"{option} {path}" if option else str(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{named} is a file; give the name of a folder.")
    _check_parents(path, named)
    return path


def check_new_folder(path: str | Path, action: str) -> Path:
    """A folder to write a new checkpoint into: not a file, and absent or empty, so nothing is overwritten;
    ``action`` names what the user asked for ("export", "quantize")."""
    path = check_writable_folder(path)
    if path.exists() and any(path.iterdir()):
        raise UserError(f"{path} is not empty; {action} into a new folder so nothing is overwritten.")
    return path


def _check_parents(path: Path, named: str) -> None:
    """The nearest existing parent of ``path`` must be a folder."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{named} cannot be written: {parent} is a file, not a folder.")
            return


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
    final = state_dir / f"step-{step:08d}"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".step-{step:08d}.", dir=state_dir))
    except OSError as error:
        raise UserError(f"cannot write a snapshot into {state_dir}: {error.strerror or error}; the last complete "
                        "snapshot is kept.") from None
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
    """The newest complete snapshot's model tensors and trainer state, or None if the run has none.

    Half-written snapshot folders (a save that was killed) are removed first; ``latest.json`` may only name a
    snapshot folder inside this run's own ``state/``.
    """
    state_dir = Path(run_dir) / "state"
    remove_partial_snapshots(state_dir)
    pointer = state_dir / "latest.json"
    if not pointer.is_file():
        return None
    latest = read_json(pointer)
    name = latest.get("path") if isinstance(latest, dict) else None
    if not isinstance(name, str) or not SNAPSHOT_NAME.fullmatch(name):
        raise UserError(f"{pointer} is damaged: it must name a snapshot folder step-NNNNNNNN of this run, "
                        f"got {name!r}.")
    snapshot = state_dir / name
    if not snapshot.is_dir():
        raise UserError(f"{pointer} names {name}, which is not in {state_dir}.")
    model = load_tensors(snapshot / "model.safetensors")
    tensors = load_tensors(snapshot / "trainer.safetensors")
    tree = read_json(snapshot / "trainer.json")
    try:
        return model, unflatten_state(tree, tensors)
    except (KeyError, TypeError, AttributeError):
        raise UserError(f"{snapshot / 'trainer.json'} is damaged: it does not match trainer.safetensors.") from None


SNAPSHOT_NAME = re.compile(r"step-\d{8}")


def remove_partial_snapshots(state_dir: Path) -> None:
    """Delete the temporary folders of snapshots whose save never finished (``state/.step-….tmp``)."""
    if state_dir.is_dir():
        for partial in state_dir.glob(".step-*"):
            shutil.rmtree(partial, ignore_errors=True)


# What genloom writes into a run folder; a folder holding any of these names without a genloom config.json
# holds someone else's files, which genloom refuses to overwrite.
LOCK_FILE = ".genloom.lock"
RUN_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors", "metrics.jsonl", "curves.png",
             "state", "phases", LOCK_FILE)


def is_genloom_run(run_dir: Path) -> bool:
    """Whether ``run_dir/config.json`` is a genloom checkpoint config (not another program's)."""
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "family" in config and "genloom_version" in config


def has_progress(run_dir: Path) -> bool:
    """Whether a run folder holds trained weights or a trainer snapshot (its own or a GAN phase's)."""
    return ((run_dir / "model.safetensors").exists() or (run_dir / "state" / "latest.json").exists()
            or any(run_dir.glob("phases/*/state/latest.json")))


def clear_run(run_dir: Path) -> None:
    """Remove what a genloom run wrote into ``run_dir`` but its lock (other files stay)."""
    for name in RUN_FILES:
        if name == LOCK_FILE:
            continue
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def lock_run(run_dir: Path) -> Any:
    """Hold an exclusive lock on ``run_dir`` for as long as the returned file stays open; a second process
    that trains into the same folder is refused with a sentence instead of interleaving its writes."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_FILE, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(f"{run_dir} is being trained by {holder}; wait for it to finish, or train into another "
                        "out_dir.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()}\n")
    handle.flush()
    return handle


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
