"""Multi30k German→English translation: the attention GRU and the Transformer, scored with sacreBLEU.

    python benchmarks/seq2seq_multi30k.py [--models gru transformer] [--device cuda] [--quick]

Trains configs/seq2seq_multi30k_gru.yaml and configs/transformer_multi30k.yaml on
the raw (cased) Multi30k task-1 training set, keeps the best-validation weights,
translates test_2016_flickr with beam search (5 beams, length penalty 1.0), and
scores the detokenized output against the raw references with sacreBLEU, printing
its signature. Published on this task: attention GRU 28.3 BLEU, Transformer
36.5 BLEU (bentrevett/pytorch-seq2seq). Targets: GRU ≥ 30, Transformer ≥ 36.5.
``--quick`` trains one epoch and scores the first 200 test sentences, written to
seq2seq_multi30k_quick.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, device_description, earlier_results, require_data, write_result  # noqa: E402

import genloom  # noqa: E402
from genloom.data.readers import read_parallel  # noqa: E402
from genloom.device import resolve_device  # noqa: E402

RECIPES = {"gru": "seq2seq_multi30k_gru.yaml", "transformer": "transformer_multi30k.yaml"}
PUBLISHED = {"attention_gru": {"bleu": 28.3, "source": "bentrevett/pytorch-seq2seq, notebook 3 (Bahdanau attention)"},
             "transformer": {"bleu": 36.5, "source": "bentrevett/pytorch-seq2seq, notebook 6 (Transformer)"}}
TARGETS = {"gru": 30.0, "transformer": 36.5}


def run_model(name: str, data: Path, device: str, quick: bool) -> dict:
    out_dir = ROOT / "runs" / f"bench_multi30k_{name}"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    overrides = [f"out_dir={out_dir}"] + [f"data.{key}={data / 'raw' / value}" for key, value in (
        ("train", "train.de.gz"), ("train_target", "train.en.gz"), ("valid", "val.de.gz"), ("valid_target", "val.en.gz"))]
    if quick:
        overrides.append("train.epochs=1")
    start = time.time()
    summary = genloom.train(str(ROOT / "configs" / RECIPES[name]), overrides=overrides, device=device)
    train_wall = time.time() - start
    pairs = read_parallel(data / "raw" / "test_2016_flickr.de.gz", data / "raw" / "test_2016_flickr.en.gz")
    if quick:
        pairs = pairs[:200]
    start = time.time()
    scores = genloom.load(out_dir, device=device).evaluate_pairs(pairs, num_beams=5, length_penalty=1.0)
    return {"bleu": round(scores["bleu"], 2), "chrf": round(scores["chrf"], 2), "signature": scores["signature"],
            "valid_loss": round(summary["best_valid_loss"], 4), "train_wall_s": round(train_wall, 1),
            "decode_wall_s": round(time.time() - start, 1), "steps": summary["steps"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--device", default="auto", help="cpu, cuda (default: CUDA when present)")
    parser.add_argument("--quick", action="store_true", help="1 epoch, 200 test sentences; writes the _quick result")
    args = parser.parse_args()
    data = require_data("multi30k")
    device = str(resolve_device(args.device))
    start = time.time()
    results = {name: run_model(name, data, device, args.quick) for name in args.models}
    for name, earlier in earlier_results("seq2seq_multi30k", args.quick).items():
        results.setdefault(name, earlier)
    protocol = ("Multi30k task 1 De→En, raw cased text, joint unigram tokenizer (8k); test_2016_flickr (1,000 "
                "sentences); beam 5, length penalty 1.0; detokenized output vs raw references, sacreBLEU corpus BLEU "
                "(signature per model); best-validation-loss weights")
    if args.quick:
        protocol = "QUICK RUN (1 epoch, first 200 test sentences; not the published protocol): " + protocol
    path = write_result("seq2seq_multi30k", args.quick, {
        "device": device_description(device), "wall_s": round(time.time() - start, 1), "protocol": protocol,
        "results": results, "published": PUBLISHED, "target": {k: f"bleu >= {v}" for k, v in TARGETS.items()},
    })
    print(f"\n{'model':<13}{'BLEU':>7}{'chrF':>7}{'train s':>9}  target")
    for name, r in results.items():
        verdict = "met" if r["bleu"] >= TARGETS[name] else "NOT met"
        print(f"{name:<13}{r['bleu']:>7.2f}{r['chrf']:>7.2f}{r['train_wall_s']:>9.0f}  ≥ {TARGETS[name]} ({verdict})")
        print(f"{'':<13}{r['signature']}")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
