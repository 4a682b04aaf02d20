"""What every benchmark script shares: locating the staged data, describing the device, writing results, and
running a recipe's variants and seed studies the same way.

``benchmarks/results/<name>.json`` is a benchmark's current result on one kind of device; variants of its recipe
(``KEY=VALUE`` overrides, ``--name``) and seed studies (``--seeds``) go to ``benchmarks/results/studies/``, listed
in its README.md. ``--quick`` results are smoke tests and are not committed (.gitignore).
"""

from __future__ import annotations

import argparse
import json
import math
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
    """``benchmarks/results/<name>[_quick]<suffix>``: where a benchmark's record (or its plot) lives; a variant's
    or seed study's name (``study_name``) starts with ``studies/``."""
    return RESULTS / f"{name}{'_quick' if quick else ''}{suffix}"


def write_result(name: str, quick: bool, record: dict) -> Path:
    """Write ``benchmarks/results/<name>[_quick].json`` in the format of ../shared/BENCHMARKS.md, atomically (a
    run stopped while writing leaves the last result whole)."""
    from genloom.checkpoint import atomic_write

    path = result_path(name, quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": Path(name).name, "command": " ".join(["python"] + sys.argv), "git_commit": git_commit(), **record}
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


# Variants and seed studies, the same way for every benchmark.

STUDY_PREFIX = "studies/"


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """``--name``, ``--seeds S …``, ``--add`` and ``KEY=VALUE`` recipe overrides."""
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                        help="train once per training seed and report the mean and s.d. over seeds; writes "
                             "studies/<name>_seeds.json (KEY=VALUE overrides go before --seeds)")
    parser.add_argument("--add", action="store_true", help="with --seeds: keep the seeds already in the last "
                        "studies/<name>_seeds.json (the same overrides) and report the mean and s.d. over all of them")
    parser.add_argument("--name", default=None, help="the variant's name in its result and run folder's names "
                        "(default: 'variant' when there are overrides)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides (a variant of the recipe)")


def check_study_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.add and not args.seeds:
        parser.error("--add adds seeds to a seed study: give --seeds")
    check_name(parser, args.name)


def check_name(parser: argparse.ArgumentParser, name: str | None) -> None:
    """A variant's name goes into file names: letters, digits and underscores only."""
    if name is not None and not name.isidentifier():
        parser.error(f"--name must be letters, digits and underscores, got {name!r}")


def variant_suffix(name: str | None, overrides: list[str]) -> str:
    """``_NAME`` for a named variant, ``_variant`` for unnamed overrides, '' for the recipe itself."""
    return f"_{name}" if name else "_variant" if overrides else ""


def study_name(stem: str, name: str | None, overrides: list[str], seeds: list[int] | None = None) -> str:
    """The result name of a run: the benchmark's own (``stem``), or under studies/ for a variant or seed study."""
    suffix = variant_suffix(name, overrides)
    result = stem + suffix + ("_seeds" if seeds else "")
    return STUDY_PREFIX + result if seeds or suffix else result


def earlier_seeds(name: str, args: argparse.Namespace) -> tuple[dict[str, dict[int, dict]], dict[int, list], list]:
    """For ``--add``: the per-seed rows of the last ``name`` seed study (figure → seed → row), its curves
    (seed → rows) and the runs that made it (nothing when there is no such file yet). The study must have the
    same recipe overrides and none of the seeds this one trains, else the script stops with a sentence."""
    record = last_result(name, args.quick)
    file = result_path(name, args.quick).name  # for the messages
    if not record:
        print(f"--add: there is no {file} yet; this study's seeds stand alone")
        return {}, {}, []
    if record.get("overrides") != args.overrides:
        sys.exit(f"--add: {file} was made with the overrides {record.get('overrides')}, not "
                 f"{args.overrides}; a seed study only adds runs of the same recipe.")
    rows = {figure: {int(seed): row for seed, row in r["per_seed"].items()}
            for figure, r in record["results"].items() if figure != "curves"}
    seeds = sorted(next(iter(rows.values())))
    if overlap := sorted(set(seeds) & set(args.seeds)):
        sys.exit(f"--add: {file} already holds seed(s) {overlap}; leave them out of --seeds.")
    curves = {seed: record["results"].get("curves", {}).get(f"seed {seed}", []) for seed in seeds}
    made_by = {key: record[key] for key in ("command", "git_commit", "device", "wall_s")}
    made_by["trained_seeds"] = record.get("trained_seeds", seeds)
    return rows, curves, record.get("earlier_runs", []) + [made_by]


def seed_summary(rows: dict[str, dict[int, dict]], metric: str, digits: dict[str, int]) -> dict[str, dict]:
    """Per figure: the mean and sample s.d. over seeds of its ``metric`` (s.d. None for one seed: JSON null, not
    NaN), with every seed's row, its values rounded to ``digits`` (key → decimals) once the mean is taken."""
    summary = {}
    for figure, per_seed in rows.items():
        values = [per_seed[seed][metric] for seed in sorted(per_seed)]
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
        shown = {str(seed): {key: round(value, digits.get(key, 4)) for key, value in per_seed[seed].items()}
                 for seed in sorted(per_seed)}
        summary[figure] = {f"{metric}_mean": round(mean, 4), f"{metric}_sd": None if sd is None else round(sd, 4),
                           "per_seed": shown}
    return summary
