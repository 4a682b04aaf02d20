"""How ``genloom reuse`` scales with the collection: 1,000 suspects against 1,000, 3,000 and 10,000 sources.

    python benchmarks/reuse_scale.py [--sizes 1000,3000,10000] [--suspects 1000] [--sample 20]

Sources are documents of four consecutive Penn Treebank sentences (news text, ~85 words); every size's sources
are the first N of the same list. Half the suspects plant a 40-word passage of a random source (of the smallest
size, so every size holds it) among their own words, with 10 % of its words replaced; the other half are PTB
sentences that no source holds. Each size runs in its own process, so peak memory (max RSS) is its own. Planted
recall: the share of planted (suspect, source) pairs reported. The index (winnowing fingerprints → sources,
``SourceIndex``) is compared with exhaustive comparison on the first ``--sample`` suspects: the share of the planted
pairs exhaustive comparison reports that the index reports too. Sources reported beyond the planted one, and
suspects without a planted passage that are reported at all, are the false alarms. The
lexical measures only (``--encoder none``): embedding 10,000 documents with MiniLM is a cost of its own, measured by
``--encoder minilm``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_description, require_data, write_result  # noqa: E402

from genloom.apps.reuse import Document, detect, load_encoder  # noqa: E402
from genloom.data.readers import read_lines  # noqa: E402


def collections(sizes: int, suspects: int, smallest: int,
                seed: int = 0) -> tuple[list[Document], list[Document], dict[str, str]]:
    """Sources, suspects, and which source each planted suspect copies from."""
    ptb = require_data("ptb")
    lines = read_lines(ptb / "ptb.train.txt.gz")
    sources = [Document(f"s{i}", " ".join(lines[4 * i:4 * i + 4])) for i in range(min(sizes, len(lines) // 4))]
    own = read_lines(ptb / "ptb.test.txt.gz") + read_lines(ptb / "ptb.valid.txt.gz")
    rng = random.Random(seed)
    vocabulary = sorted({w for line in own for w in line.split()})
    queries, planted = [], {}
    for i in range(suspects):
        mine = " ".join(own[(7 * i + j) % len(own)] for j in range(4)).split()
        if i % 2 == 0:
            origin = rng.randrange(smallest)
            planted[f"q{i}"] = f"s{origin}"
            words = sources[origin].text.split()
            start = rng.randrange(max(1, len(words) - 40))
            passage = [rng.choice(vocabulary) if rng.random() < 0.1 else w for w in words[start:start + 40]]
            cut = rng.randrange(len(mine) + 1)
            mine = mine[:cut] + passage + mine[cut:]
        queries.append(Document(f"q{i}", " ".join(mine)))
    return sources, queries, planted


def run_size(size: int, suspects: int, smallest: int, sample: int, encoder_name: str) -> dict:
    sources, queries, planted = collections(size, suspects, smallest)
    encoder = load_encoder(encoder_name, "cpu")
    started = time.perf_counter()
    indexed = detect(queries, sources, encoder)
    seconds = time.perf_counter() - started
    probe = queries[:sample]
    everything = detect(probe, sources, encoder, exhaustive=True)
    found = {(r.suspect.name, m.source.name) for r in indexed for m in r.matches}
    truth = set(planted.items())
    in_sample = {(r.suspect.name, m.source.name) for r in everything for m in r.matches} & truth
    own = [r for r in indexed if r.suspect.name not in planted]
    return {"sources": len(sources), "suspects": len(queries), "seconds": round(seconds, 2),
            "suspects_per_s": round(len(queries) / seconds, 1),
            "candidates_per_suspect": round(sum(r.candidates for r in indexed) / len(indexed), 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "planted_recall": round(len(found & truth) / len(truth), 4),
            "index_recall_vs_exhaustive": round(len(found & in_sample) / len(in_sample), 4) if in_sample else None,
            "exhaustive_planted_found_in_sample": len(in_sample), "sample": len(probe),
            "false_sources_per_suspect": round(len(found - truth) / len(queries), 3),
            "own_suspects_flagged": round(sum(1 for r in own if r.matches) / len(own), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,3000,10000")
    parser.add_argument("--suspects", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=20, help="suspects also compared exhaustively")
    parser.add_argument("--encoder", default="none")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.worker is not None:
        print(json.dumps(run_size(args.worker, args.suspects, min(sizes), args.sample, args.encoder)))
        return
    started = time.time()
    rows = {}
    for size in sizes:
        out = subprocess.run([sys.executable, __file__, "--worker", str(size), "--sizes", args.sizes,
                              "--suspects", str(args.suspects), "--sample", str(args.sample),
                              "--encoder", args.encoder], capture_output=True, text=True, check=True)
        rows[str(size)] = json.loads(out.stdout.strip().splitlines()[-1])
        r = rows[str(size)]
        print(f"{r['sources']:>6} sources: {r['seconds']:>7.1f} s, {r['suspects_per_s']:>6.1f} suspects/s, "
              f"{r['candidates_per_suspect']:.1f} candidates each, peak {r['peak_rss_mb']:.0f} MB, planted recall "
              f"{r['planted_recall']:.1%} (index vs exhaustive on {r['sample']}: {r['index_recall_vs_exhaustive']}), "
              f"{r['false_sources_per_suspect']:.2f} other sources a suspect, own suspects flagged "
              f"{r['own_suspects_flagged']:.1%}", flush=True)
    first, last = rows[str(sizes[0])], rows[str(sizes[-1])]
    growth = math.log(last["seconds"] / first["seconds"]) / math.log(last["sources"] / first["sources"])
    print(f"time grows as sources^{growth:.2f} (1 = linear, 2 = all pairs)")
    write_result("reuse_scale", args.suspects < 1000, {
        "device": device_description("cpu"), "wall_s": round(time.time() - started, 1),
        "protocol": f"{args.suspects} suspects (half with a planted, 10 %-edited 40-word passage) against PTB "
                    f"documents of 4 sentences; encoder {args.encoder}; index recall against exhaustive comparison "
                    f"on {args.sample} suspects; time excludes reading the corpus",
        "results": rows, "growth_exponent": round(growth, 3)})


if __name__ == "__main__":
    main()
