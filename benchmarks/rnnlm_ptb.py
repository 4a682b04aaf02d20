"""Reproduce the small LSTM LM of Zaremba et al. 2014 on Penn Treebank (published test perplexity 114.5).

    python benchmarks/rnnlm_ptb.py [--device cpu] [--quick]

Trains configs/rnnlm_ptb_small.yaml (2×200 LSTM, no dropout, 13 epochs of SGD
over 20-token TBPTT windows, batch 20) and reports test and validation
perplexity, exp(mean NLL per token with one <eos> per sentence), evaluated with
batch size 1 and the state carried through the whole split, plus wall time.
``--quick`` trains 2 epochs and writes rnnlm_ptb_quick.json instead.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, device_description, require_data, write_result  # noqa: E402

import genloom  # noqa: E402
from genloom.device import resolve_device  # noqa: E402

PUBLISHED = {"zaremba2014_small": {"test_perplexity": 114.5, "valid_perplexity": 120.7,
                                   "source": "Zaremba, Sutskever, Vinyals 2014, Table 1 (non-regularized LSTM)"}}
TARGET = 115.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda (default: CUDA when present)")
    parser.add_argument("--quick", action="store_true", help="2 epochs only; results go to rnnlm_ptb_quick.json")
    parser.add_argument("--out-dir", default=str(ROOT / "runs" / "bench_rnnlm_ptb"), help="run directory (replaced)")
    args = parser.parse_args()
    data = require_data("ptb")
    device = str(resolve_device(args.device))
    out_dir = Path(args.out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    overrides = [f"out_dir={out_dir}", f"data.train={data / 'ptb.train.txt.gz'}",
                 f"data.valid={data / 'ptb.valid.txt.gz'}", f"data.test={data / 'ptb.test.txt.gz'}"]
    if args.quick:
        overrides.append("train.epochs=2")
    start = time.time()
    summary = genloom.train(str(ROOT / "configs" / "rnnlm_ptb_small.yaml"), overrides=overrides, device=device)
    wall = time.time() - start
    result = {"test_perplexity": round(summary["test_perplexity"], 2),
              "valid_perplexity": round(summary["best_valid_perplexity"], 2),
              "train_wall_s": round(summary["wall_s"], 1)}
    protocol = ("Penn Treebank (Mikolov 10k vocabulary), test split; perplexity = exp(mean NLL per token, one <eos> "
                "per sentence), batch size 1 with the LSTM state carried through the split; best-validation weights; "
                "2x200 LSTM, no dropout, SGD lr 20 on the per-token mean loss (= lr 1 on the paper's loss summed over "
                "20 steps), clip 0.25, halved every epoch after epoch 4, 13 epochs, batch 20, BPTT 20")
    if args.quick:
        protocol = "QUICK RUN (2 epochs, not the published protocol): " + protocol
    path = write_result("rnnlm_ptb", args.quick, {
        "device": device_description(device), "wall_s": round(wall, 1), "protocol": protocol,
        "results": {"lstm_small": result}, "published": PUBLISHED, "target": {"test_perplexity": f"<= {TARGET}"},
    })
    print(f"\n{'model':<12}{'test ppl':>10}{'valid ppl':>11}{'wall s':>9}")
    print(f"{'lstm_small':<12}{result['test_perplexity']:>10.2f}{result['valid_perplexity']:>11.2f}{wall:>9.0f}")
    print(f"{'published':<12}{114.5:>10.2f}{120.7:>11.2f}")
    print(f"target test perplexity <= {TARGET}: {'met' if result['test_perplexity'] <= TARGET else 'NOT met'}")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
