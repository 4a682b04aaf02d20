"""CrowS-Pairs bias scores of the English models genloom's recipes train.

    python benchmarks/bias_crows.py [--models bert_ptb gpt_ptb gpt_shakespeare_char] [--bootstrap 1000]

For each model: its run folder runs/<model> is used when it holds a finished run, else configs/<model>.yaml is
trained first. Then all 1,508 pairs of ../shared/data/crows_pairs are scored as ``genloom bias --probe
crows-pairs`` does (masked LM: pseudo-log-likelihood of the shared tokens, each masked in turn, as the paper's
metric.py; causal LM: sentence log-probability): the percentage of pairs whose more stereotyping sentence scores
higher, overall and per bias type, with bootstrap 95 % intervals; one bar chart per model beside the JSON.
Published for orientation (Nangia et al. 2020): BERT-base 60.5, RoBERTa-large 64.1, ALBERT-xxlarge-v2 67.0; 50
means no preference. The models here are small and trained on little text (Penn Treebank's million words of
1989 news, lowercased, with a 10,000-word vocabulary; Shakespeare's plays, by character), so many CrowS words are
<unk> to the word models and pairs whose differing words are both <unk> tie. The pretrained all-MiniLM-L6-v2
encoder is not probed: its weights hold no masked-LM head (no ``cls.predictions``), and the metric needs one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, require_data, result_path, write_result  # noqa: E402

import genloom  # noqa: E402
from genloom.apps import bias  # noqa: E402
from genloom.checkpoint import read_json  # noqa: E402

PUBLISHED = {"bert_base_nangia2020": {"score": 60.5}, "roberta_large_nangia2020": {"score": 64.1},
             "albert_xxlarge_v2_nangia2020": {"score": 67.0}}


def trained(name: str) -> Path:
    """runs/<name>, trained from configs/<name>.yaml first unless it holds a finished run."""
    run_dir = ROOT / "runs" / name
    finished = (run_dir / "model.safetensors").is_file() and (run_dir / "state" / "latest.json").is_file()
    if finished:
        latest = read_json(run_dir / "state" / "latest.json")
        print(f"{name}: using {run_dir} ({latest})")
        return run_dir
    print(f"{name}: training configs/{name}.yaml")
    genloom.train(ROOT / "configs" / f"{name}.yaml", overrides=[f"out_dir={run_dir}"], resume=run_dir.is_dir())
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["bert_ptb", "gpt_ptb", "gpt_shakespeare_char"])
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    pairs = bias.read_crows_pairs(require_data("crows_pairs") / "crows_pairs_anonymized.csv.gz")
    results, started = {}, time.time()
    for name in args.models:
        model = genloom.load(trained(name), device="cpu")
        began = time.time()
        result = bias.crows_metric(pairs, bias.pair_scores(model, pairs), samples=args.bootstrap)
        overall = result["overall"]
        print(f"{name} ({model.family}): {overall['score']:.2f} [{overall['low']:.2f}, {overall['high']:.2f}], "
              f"{overall['ties']} ties of {overall['pairs']} pairs, {time.time() - began:.0f} s")
        for kind, r in sorted(result["by_type"].items()):
            print(f"    {kind:<22} {r['score']:6.2f} [{r['low']:6.2f}, {r['high']:6.2f}]  ties {r['ties']}")
        bias.plot_bias(result, result_path(f"bias_crows_{name}", False, ".png"), f"CrowS-Pairs: {name}")
        results[name] = {"family": model.family, "score": overall["score"], "low": overall["low"],
                         "high": overall["high"], "ties": overall["ties"], "pairs": overall["pairs"],
                         "by_type": {k: r["score"] for k, r in result["by_type"].items()}}
    record = {"device": "cpu", "wall_s": round(time.time() - started, 1),
              "protocol": "CrowS-Pairs, all 1,508 pairs: % of pairs whose more stereotyping sentence scores higher "
                          "(ties after rounding to 3 decimals count as neither, as metric.py); masked LMs by the "
                          "pseudo-log-likelihood of the shared tokens, causal LMs by sentence log-probability; "
                          f"bootstrap 95% intervals over pairs ({args.bootstrap} samples)",
              "results": results, "published": PUBLISHED}
    print(f"wrote {write_result('bias_crows', False, record)}")


if __name__ == "__main__":
    main()
