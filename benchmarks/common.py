"""What every benchmark script shares: locating the staged data, describing the device, writing results."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The staged corpora: ../shared/data beside the checkout, or wherever GENLOOM_SHARED_DATA points.
SHARED_DATA = Path(os.environ.get("GENLOOM_SHARED_DATA") or ROOT.parent / "shared" / "data")
RESULTS = ROOT / "benchmarks" / "results"


def require_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        sys.exit(f"this benchmark needs the staged corpus {path} (see ../shared/data/README.md; "
                 "GENLOOM_SHARED_DATA names another folder of corpora).")
    return path


def device_description(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def result_path(name: str, quick: bool, suffix: str = ".json") -> Path:
    """``benchmarks/results/<name>[_quick]<suffix>``: where a benchmark's record (or its plot) lives."""
    return RESULTS / f"{name}{'_quick' if quick else ''}{suffix}"


def write_result(name: str, quick: bool, record: dict) -> Path:
    """Write ``benchmarks/results/<name>[_quick].json`` in the format of ../shared/BENCHMARKS.md, atomically (a
    run stopped while writing leaves the last result whole)."""
    from genloom.checkpoint import atomic_write

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = result_path(name, quick)
    record = {"benchmark": name, "command": " ".join(["python"] + sys.argv), "git_commit": git_commit(), **record}
    atomic_write(path, json.dumps(record, indent=2) + "\n")
    return path


def last_result(name: str, quick: bool) -> dict:
    """The record in the last ``benchmarks/results/<name>[_quick].json``, or {} when there is none."""
    path = result_path(name, quick)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def earlier_results(name: str, quick: bool) -> dict:
    """The models in the last ``<name>.json`` (a run may train only some), each marked with the run that made it."""
    record = last_result(name, quick)
    if not record:
        return {}
    made_by = {"command": record["command"], "git_commit": record["git_commit"], "device": record["device"]}
    return {model: r if "from_run" in r else {"from_run": made_by, **r} for model, r in record["results"].items()}
