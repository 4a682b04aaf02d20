"""Labelled text-reuse pairs for the verdict classifier (``genloom reuse-train``), built from Multi30k's English
validation and test captions, in four classes of Clough & Stevenson's kind:

- ``near_copy``: the source passage with at most one small edit per sentence (a dropped word, changed case or
  punctuation);
- ``light_revision``: 20–40 % of the words edited (deleted, swapped with a neighbour, or replaced by another word
  of the corpus);
- ``heavy_revision``: a machine paraphrase, genloom's Multi30k German→English Transformer translating the German
  side of the same captions (a rewording of the English source by a model that never saw it), in shuffled
  sentence order;
- ``none``: a passage of other captions (the same domain and vocabulary, so not trivially different).

A passage is three consecutive captions; every passage is used once, in one class.

    python benchmarks/reuse_pairs.py --out runs/reuse_pairs.tsv [--passages 660]
    genloom reuse-train runs/reuse_pairs.tsv src/genloom/apps/reuse_verdict_minilm.json
    genloom reuse-train runs/reuse_pairs.tsv src/genloom/apps/reuse_verdict_lexical.json --encoder none
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, require_data  # noqa: E402

import genloom  # noqa: E402
from genloom.checkpoint import atomic_write  # noqa: E402
from genloom.data.readers import read_lines  # noqa: E402

TRANSLATOR = ROOT / "runs" / "seq2seq_multi30k_gru"  # genloom train configs/seq2seq_multi30k_gru.yaml


def small_edit(sentence: str, rng: random.Random) -> str:
    words = sentence.split()
    roll = rng.random()
    if roll < 0.3 and len(words) > 4:
        del words[rng.randrange(1, len(words))]
    elif roll < 0.5:
        words[0] = words[0].lower() if words[0][:1].isupper() else words[0].capitalize()
    elif roll < 0.7:
        words[-1] = words[-1].rstrip(".") + ("" if words[-1].endswith(".") else ".")
    return " ".join(words)


def word_edits(sentence: str, rate: float, vocabulary: list[str], rng: random.Random) -> str:
    """Edit about ``rate`` of the words: delete, swap with the next word, or replace by a corpus word."""
    words = sentence.split()
    out, i = [], 0
    while i < len(words):
        if rng.random() >= rate:
            out.append(words[i])
        else:
            roll = rng.random()
            if roll < 0.33 and i + 1 < len(words):
                out += [words[i + 1], words[i]]
                i += 1
            elif roll < 0.66:
                out.append(rng.choice(vocabulary))
            # else: deleted
        i += 1
    return " ".join(out) or sentence


def paraphrases(german: list[str], batch: int = 64) -> list[str]:
    model = genloom.load(TRANSLATOR, device="cpu")
    out = []
    for start in range(0, len(german), batch):
        rows = model.transduce(german[start:start + batch], method="greedy", max_new_tokens=60)
        out += [row.text for row in rows]
        print(f"translated {len(out)}/{len(german)}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "reuse_pairs.tsv"))
    parser.add_argument("--passages", type=int, default=660, help="passages (of 3 captions) in all")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = require_data("multi30k") / "raw"
    english = read_lines(data / "val.en.gz") + read_lines(data / "test_2016_flickr.en.gz")
    german = read_lines(data / "val.de.gz") + read_lines(data / "test_2016_flickr.de.gz")
    count = min(args.passages, len(english) // 3)
    rng = random.Random(args.seed)
    order = list(range(count))
    rng.shuffle(order)
    classes = ["near_copy", "light_revision", "heavy_revision", "none"]
    plan = {p: classes[i % 4] for i, p in enumerate(order)}
    heavy = [p for p in range(count) if plan[p] == "heavy_revision"]
    machine = paraphrases([german[3 * p + j] for p in heavy for j in range(3)])
    machine_of = {p: machine[3 * i:3 * i + 3] for i, p in enumerate(heavy)}
    vocabulary = sorted({w for line in english for w in line.split()})
    rows = []
    for p in range(count):
        source = english[3 * p:3 * p + 3]
        label = plan[p]
        if label == "near_copy":
            suspect = [small_edit(s, rng) for s in source]
        elif label == "light_revision":
            rate = rng.uniform(0.2, 0.4)
            suspect = [word_edits(s, rate, vocabulary, rng) for s in source]
        elif label == "heavy_revision":
            suspect = list(machine_of[p])
            rng.shuffle(suspect)
        else:
            other = rng.choice([q for q in range(count) if abs(q - p) > 1])
            suspect = english[3 * other:3 * other + 3]
        rows.append("\t".join([" ".join(suspect), " ".join(source), label]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, "\n".join(rows) + "\n")
    print(f"wrote {len(rows)} labelled pairs to {args.out}")


if __name__ == "__main__":
    main()
