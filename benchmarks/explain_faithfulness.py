"""How far `genloom explain`'s attributions can be trusted: integrated gradients' completeness, and deletion curves
(AOPC) for every method against random deletion, on Multi30k translation (the GRU and Transformer recipes) and an LM.

    python benchmarks/explain_faithfulness.py [--examples 200] [--tokens 3] [--k 5] [--quick]

For each example the model decodes greedily; for each of its first ``--tokens`` generated tokens y, every method
ranks the *input* tokens (the source for translation, the prompt without its start token for the LM) by
attribution. Deleting the k most-attributed ones (k = 1..K, K = min(--k, input length − 1)) and re-scoring y gives
the drop of P(y); AOPC is the mean drop over k (Samek et al. 2017; DeYoung et al. 2020's "comprehensiveness").
Random deletion (the mean over 5 random orders) is the floor a faithful method must beat. Integrated gradients'
completeness error is |Σ attributions − (log P(input) − log P(baseline))| relative to the gap. Time per explained
token is measured for each method on this CPU.

Models: ``runs/seq2seq_multi30k_gru`` and ``runs/transformer_multi30k`` (trained by ``genloom train`` on the
recipes of the same names; this script trains them if they are missing, with ``--train-epochs`` epochs) and the LM
``runs/gpt_ptb`` (configs/gpt_ptb.yaml) on PTB test sentences' first five words.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, device_description, earlier_results, require_data, write_result  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import genloom  # noqa: E402
from genloom.apps.explain import METHODS, _Scorer, explain  # noqa: E402
from genloom.data.readers import read_lines  # noqa: E402
from genloom.errors import UserError  # noqa: E402

MODELS = {
    "gru_multi30k": ("configs/seq2seq_multi30k_gru.yaml", "runs/seq2seq_multi30k_gru"),
    "transformer_multi30k": ("configs/transformer_multi30k.yaml", "runs/transformer_multi30k"),
    "gpt_ptb": ("configs/gpt_ptb.yaml", "runs/gpt_ptb"),
}


def inputs_for(name: str, count: int) -> list[str]:
    if name == "gpt_ptb":
        lines = read_lines(require_data("ptb") / "ptb.test.txt.gz")
        return [" ".join(line.split()[:5]) for line in lines if len(line.split()) >= 8][:count]
    return read_lines(require_data("multi30k") / "raw" / "test_2016_flickr.de.gz")[:count]


def ensure_model(name: str, epochs: int) -> Path:
    config, run = MODELS[name]
    if not (ROOT / run / "model.safetensors").is_file():
        print(f"training {name} ({epochs} epochs) into {run}", flush=True)
        genloom.train(str(ROOT / config), [f"train.epochs={epochs}", f"out_dir={ROOT / run}"])
    return ROOT / run


def deletion_drops(scorer: _Scorer, source: list[int], decoder: list[int], target: int, order: list[int],
                   k_max: int) -> list[float]:
    """P(y) minus P(y) with the first k input positions of ``order`` deleted (from the source, or from the LM's
    context), k = 1..k_max."""
    device = scorer.loaded.device

    def prob(src: list[int], dec: list[int]) -> float:
        s = torch.tensor([src], device=device) if scorer.with_source else torch.zeros((1, 0), dtype=torch.long,
                                                                                       device=device)
        return float(scorer.log_prob(s, torch.tensor([dec], device=device), target).exp()[0])

    with torch.no_grad():
        full = prob(source, decoder)
        drops = []
        for k in range(1, k_max + 1):
            gone = set(order[:k])
            if scorer.with_source:
                drops.append(full - prob([t for j, t in enumerate(source) if j not in gone], decoder))
            else:
                drops.append(full - prob([], [t for j, t in enumerate(decoder) if j not in gone]))
        return drops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=3, help="generated tokens explained per example")
    parser.add_argument("--k", type=int, default=5, help="the most input tokens deleted")
    parser.add_argument("--steps", type=int, default=64, help="integrated gradients' steps")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--train-epochs", type=int, default=4, help="epochs for a Multi30k model this script trains")
    parser.add_argument("--quick", action="store_true", help="10 examples, 1 token each")
    args = parser.parse_args()
    if args.quick:
        args.examples, args.tokens = 10, 1
    started = time.perf_counter()
    rng = random.Random(0)
    results = earlier_results("explain_faithfulness", args.quick)  # the models this run does not redo stay
    for name in args.models:
        loaded = genloom.load(ensure_model(name, args.train_epochs), device="cpu")
        scorer = _Scorer(loaded)
        aopc = {m: [] for m in METHODS + ("random",)}
        seconds = {m: 0.0 for m in METHODS}
        explained_tokens, completeness = 0, []
        skipped = 0
        for text in inputs_for(name, args.examples):
            tick = time.perf_counter()
            try:
                explain(loaded, text, (), args.steps, max_new_tokens=args.tokens)  # generation and scoring alone
            except UserError:  # the model ended at once: nothing to explain
                skipped += 1
                continue
            base = time.perf_counter() - tick
            rows = {}
            for method in METHODS:  # one method at a time, for its cost
                tick = time.perf_counter()
                result = explain(loaded, text, (method,), args.steps, max_new_tokens=args.tokens)
                seconds[method] += max(time.perf_counter() - tick - base, 0.0)
                rows[method] = result.attributions[method]
                if method == "integrated_gradients":
                    completeness += result.completeness_error
            n = len(result.generated)
            explained_tokens += n
            source_len = result.first - 1 if scorer.with_source else 0  # the decoder's start token follows
            inputs = list(range(source_len)) if scorer.with_source else list(range(1, result.first))
            k_max = min(args.k, len(inputs) - 1)
            if k_max < 1:
                continue
            ids = result.context_ids
            source = ids[:source_len]
            for i in range(n):
                decoder = ids[source_len : result.first + i]
                target = result.generated_ids[i]
                for method in METHODS:
                    scores = rows[method][i]
                    if np.isnan(scores[inputs]).all():
                        continue  # no attention in this family
                    order = sorted(inputs, key=lambda j: -np.nan_to_num(scores[j], nan=-np.inf))
                    aopc[method].append(np.mean(deletion_drops(scorer, source, decoder, target, order, k_max)))
                randoms = []
                for _ in range(5):
                    order = inputs[:]
                    rng.shuffle(order)
                    randoms.append(np.mean(deletion_drops(scorer, source, decoder, target, order, k_max)))
                aopc["random"].append(float(np.mean(randoms)))
        row = {f"aopc_{m}": round(float(np.mean(v)), 4) for m, v in aopc.items() if v}
        row.update({f"ms_per_token_{m}": round(1000 * s / max(explained_tokens, 1), 1) for m, s in seconds.items()})
        row.update(ig_completeness_error_mean=round(float(np.mean(completeness)), 5),
                   ig_completeness_error_max=round(float(np.max(completeness)), 5),
                   ig_completeness_within_1pct=round(float(np.mean(np.array(completeness) <= 0.01)), 4),
                   explained_tokens=explained_tokens, examples=args.examples, skipped_empty_outputs=skipped)
        best = max((m for m in METHODS if f"aopc_{m}" in row), key=lambda m: row[f"aopc_{m}"])
        row["most_faithful"] = best
        results[name] = row
        print(name, row, flush=True)
    write_result("explain_faithfulness", args.quick, {
        "device": device_description("cpu"), "wall_s": round(time.perf_counter() - started, 1),
        "protocol": f"{args.examples} examples per model, the first {args.tokens} greedy tokens each; AOPC over "
                    f"k = 1..{args.k} deleted input tokens (probability drop), random = mean of 5 orders; "
                    f"IG: zero-embedding baseline, {args.steps} steps",
        "results": results, "published": {},
        "target": {"any": "every gradient method's AOPC above random; IG completeness within 1 %"}})


if __name__ == "__main__":
    main()
