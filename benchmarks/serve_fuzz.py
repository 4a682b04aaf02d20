"""Fuzzing `genloom serve` with Schemathesis: requests generated from the server's own /openapi.json, valid and
invalid, must never get a 5xx answer.

    python benchmarks/serve_fuzz.py [--examples 100] [--seed 0] [--max-time 180]

The server (its own process, loopback) holds four tiny models trained here on the toy grammar in seconds: an RNN
LM, a GPT (context 48), a BERT and a seq2seq, so every endpoint has a model to reach (the schema lists the served
names as the values of ``model``).
Schemathesis runs its examples, coverage and fuzzing phases with the ``not_a_server_error`` check, up to
``--examples`` cases per operation; the script reports how many requests it sent and what statuses came back.
Target: at least 500 requests, no 5xx.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write_result  # noqa: E402
from serve_load import Server  # noqa: E402

import genloom  # noqa: E402
from genloom.apps.toy_grammar import corpus  # noqa: E402

MODELS = {
    "rnn": ("rnnlm", {"embed_dim": 16, "hidden_dim": 24}, "sentences"),
    "gpt": ("gpt", {"dim": 16, "num_layers": 1, "num_heads": 2, "context_length": 48}, "stream"),
    "bert": ("bert", {"dim": 16, "num_layers": 1, "num_heads": 2, "ff_dim": 32, "context_length": 48}, "sentences"),
}


def train_models(folder: Path) -> dict[str, Path]:
    text = folder / "train.txt"
    text.write_text("\n".join(corpus(300, 1)) + "\n", encoding="utf-8")
    pairs = folder / "pairs.tsv"
    pairs.write_text("".join(f"{line}\t{line}\n" for line in corpus(300, 2)), encoding="utf-8")
    runs = {}
    train = {"max_steps": 20, "lr": 0.01, "batch_size": 16, "device": "cpu", "log_every": 100, "eval_every": None}
    for name, (family, model, batching) in MODELS.items():
        genloom.train({"family": family, "out_dir": str(folder / name), "model": model, "train": train,
                       "data": {"train": str(text), "batching": batching}, "tokenizer": {"kind": "word",
                                                                                          "vocab_size": 100}})
        runs[name] = folder / name
    genloom.train({"family": "seq2seq", "out_dir": str(folder / "copier"), "train": train,
                   "data": {"train": str(pairs), "format": "tsv"}, "tokenizer": {"kind": "word", "vocab_size": 100},
                   "model": {"embed_dim": 16, "hidden_dim": 16, "attention_dim": 16}})
    runs["copier"] = folder / "copier"
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100, help="the most test cases per operation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-time", type=int, default=180, help="the most seconds the fuzzing may take")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        runs = train_models(Path(folder))
        checkpoints = [f"{name}={path}" for name, path in runs.items()]
        server = Server(checkpoints, "cpu", "--max-tokens", "64")
        try:
            report = Path(folder, "events.ndjson")
            command = [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
                       "--checks", "not_a_server_error", "--max-examples", str(args.examples), "--seed",
                       str(args.seed), "--max-time", str(args.max_time), "--generation-database", "none",
                       "--workers", "2", "--report", "ndjson", "--report-ndjson-path", str(report), "--no-color"]
            finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            print(finished.stdout[-3000:])
            statuses = Counter(status_codes(report))
        finally:
            server.stop()
    total = sum(statuses.values())
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    print(f"{total} requests; statuses {dict(sorted(statuses.items()))}; 5xx: {server_errors}; "
          f"schemathesis exit {finished.returncode}")
    write_result("serve_fuzz", False, {
        "device": "cpu", "wall_s": round(time.perf_counter() - started, 1),
        "protocol": f"Schemathesis {schemathesis_version()} against /openapi.json of genloom serve (4 tiny models), "
                    f"phases examples+coverage+fuzzing, check not_a_server_error, max {args.examples} cases per "
                    f"operation, seed {args.seed}",
        "results": {"serve": {"requests": total, "server_errors": server_errors,
                              "statuses": {str(k): v for k, v in sorted(statuses.items())},
                              "schemathesis_exit": finished.returncode}},
        "published": {}, "target": {"any": "≥ 500 requests, 0 answers with a 5xx status"}})
    if server_errors or total < 500:
        sys.exit(1)


def status_codes(report: Path) -> list[int]:
    """Every response status in Schemathesis' NDJSON event stream."""
    codes = []
    for line in report.read_text(encoding="utf-8").splitlines():
        find_statuses(json.loads(line), codes)
    return codes


def find_statuses(node, codes: list[int]) -> None:
    if isinstance(node, dict):
        response = node.get("response")
        if isinstance(response, dict) and isinstance(response.get("status_code"), int):
            codes.append(response["status_code"])
        for value in node.values():
            find_statuses(value, codes)
    elif isinstance(node, list):
        for value in node:
            find_statuses(value, codes)


def schemathesis_version() -> str:
    from importlib.metadata import version

    return version("schemathesis")


if __name__ == "__main__":
    main()
