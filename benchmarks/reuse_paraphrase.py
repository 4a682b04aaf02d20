"""Does text-reuse detection survive machine paraphrase? Detection recall at a fixed false-positive rate, per
measure and obfuscation strength.

    python benchmarks/reuse_paraphrase.py [--passages 300] [--negatives 1000] [--fpr 0.01]

Sources are passages of three Multi30k English test/validation captions. Each is obfuscated with genloom's own
models and edits, at rising strength:

- ``edits r``: a share r of the words deleted, swapped with a neighbour or replaced by another corpus word
  (r = 0.1, 0.3, 0.5);
- ``machine greedy``: genloom's Multi30k German→English GRU translating the German side of the same captions (a
  rewording by a model that never saw the English), in shuffled sentence order;
- ``machine t=0.7`` / ``t=1.0``: the same model sampling at temperature 0.7 and 1.0 (freer rewordings).

Negatives are (suspect, source) pairs of unrelated passages (different captions of the same domain). For each
measure the threshold that lets through ``--fpr`` of the negatives is applied to every obfuscated pair; recall is
the share detected. Measures: word n-gram containment (1, 3, 5), LCS ratio, winnowing coverage, MiniLM's semantic
similarity and the shipped verdict's reuse score (1 − P(none)). A table, JSON and a PNG.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_description, require_data, result_path, write_result  # noqa: E402
from reuse_pairs import TRANSLATOR, word_edits  # noqa: E402

import numpy as np  # noqa: E402

import genloom  # noqa: E402
from genloom.apps.reuse import default_verdict, labelled_features, load_encoder  # noqa: E402
from genloom.data.readers import read_lines  # noqa: E402
from genloom.plot import pyplot, save_png  # noqa: E402

MEASURES = ["containment_1", "containment_3", "containment_5", "lcs", "coverage", "semantic", "verdict"]


def translations(german: list[str], method: str, temperature: float, seed: int) -> list[str]:
    model = genloom.load(TRANSLATOR, device="cpu")
    out = []
    for start in range(0, len(german), 64):
        rows = model.transduce(german[start:start + 64], method=method, temperature=temperature, seed=seed,
                               max_new_tokens=60)
        out += [row.text for row in rows]
    return out


def scored(pairs: list[tuple[str, str]], encoder, verdict) -> dict[str, np.ndarray]:
    rows = labelled_features(pairs, encoder)
    values = {m: np.array([r[m] for r in rows]) for m in MEASURES if m != "verdict"}
    values["verdict"] = 1.0 - verdict.probabilities(verdict.rows(rows))[:, 0]
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=300)
    parser.add_argument("--negatives", type=int, default=1000)
    parser.add_argument("--fpr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.time()
    data = require_data("multi30k") / "raw"
    english = read_lines(data / "test_2016_flickr.en.gz") + read_lines(data / "val.en.gz")
    german = read_lines(data / "test_2016_flickr.de.gz") + read_lines(data / "val.de.gz")
    rng = random.Random(args.seed)
    count = min(args.passages, len(english) // 3)
    sources = [english[3 * p:3 * p + 3] for p in range(count)]
    vocabulary = sorted({w for line in english for w in line.split()})
    suspects: dict[str, list[str]] = {}
    for rate in (0.1, 0.3, 0.5):
        suspects[f"edits {rate}"] = [" ".join(word_edits(s, rate, vocabulary, rng) for s in passage)
                                     for passage in sources]
    flat_german = [german[3 * p + j] for p in range(count) for j in range(3)]
    for name, method, temperature in (("machine greedy", "greedy", 1.0), ("machine t=0.7", "sample", 0.7),
                                      ("machine t=1.0", "sample", 1.0)):
        out = translations(flat_german, method, temperature, args.seed)
        passages = [out[3 * p:3 * p + 3] for p in range(count)]
        for passage in passages:
            rng.shuffle(passage)
        suspects[name] = [" ".join(p) for p in passages]
        print(f"translated: {name}", flush=True)
    encoder = load_encoder("minilm", "cpu")
    verdict = default_verdict("minilm")
    negatives = []
    while len(negatives) < args.negatives:
        a, b = rng.randrange(len(english) // 3), rng.randrange(len(english) // 3)
        if abs(a - b) > 1:
            negatives.append((" ".join(english[3 * a:3 * a + 3]), " ".join(english[3 * b:3 * b + 3])))
    negative_scores = scored(negatives, encoder, verdict)
    thresholds = {m: float(np.quantile(negative_scores[m], 1 - args.fpr)) for m in MEASURES}
    results: dict[str, dict[str, float]] = {}
    for name, texts in suspects.items():
        values = scored([(t, " ".join(s)) for t, s in zip(texts, sources)], encoder, verdict)
        results[name] = {f"recall_{m}": round(float((values[m] > thresholds[m]).mean()), 4) for m in MEASURES}
    print(f"recall at {args.fpr:.0%} false positives")
    print(f"{'obfuscation':<16}" + "".join(f"{m:>15}" for m in MEASURES))
    for name, row in results.items():
        print(f"{name:<16}" + "".join(f"{row[f'recall_{m}']:>15.3f}" for m in MEASURES))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    names = list(results)
    for m in MEASURES:
        ax.plot(range(len(names)), [results[n][f"recall_{m}"] for n in names], marker="o", label=m)
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_ylabel(f"recall at {args.fpr:.0%} FPR")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("reuse detection under obfuscation (Multi30k passages)")
    fig.tight_layout()
    save_png(fig, result_path("reuse_paraphrase", False, ".png"))
    write_result("reuse_paraphrase", False, {
        "device": device_description("cpu"), "wall_s": round(time.time() - started, 1),
        "protocol": f"{count} Multi30k passages of 3 captions, obfuscated; {len(negatives)} unrelated pairs set "
                    f"each measure's threshold at {args.fpr:.0%} false positives; recall = share detected",
        "thresholds": {m: round(t, 4) for m, t in thresholds.items()}, "results": results})


if __name__ == "__main__":
    main()
