"""Text GANs on Image COCO captions (Texygen's files): BLEU, self-BLEU and NLL-gen for MLE, SeqGAN and the
Gumbel-softmax GAN, with a quality–diversity curve over sampling temperatures.

    python benchmarks/gan_coco.py [--device cuda] [--quick] [--mle-only] [--models seqgan gumbel]

Trains configs/gan_coco.yaml with ``objective: seqgan`` and then with
``objective: gumbel`` (the Gumbel run reuses the SeqGAN run's MLE phase, which is
the same computation); the MLE model is the generator at the end of that phase.
``--models`` trains only some of the GANs (each needs its MLE phase then); the
other's figures are kept from the last run's results, marked with that run.
Protocol, the same for every model: 1,000 sentences sampled at temperature 1
(seeded); BLEU-n = the mean over them of each sentence's BLEU against all 10,000
test captions (NLTK word tokens as Texygen's nltk.word_tokenize, uniform n-gram
weights, zero counts floored at 0.1 as NLTK's method1 that Texygen uses);
self-BLEU-n = the same with the other 499 of the first 500 samples as references
(a sentence is never its own reference); NLL-gen = the generator's NLL of the
test captions, nats per token with the end token. The curve samples at temperatures 0.6–1.4 and plots BLEU-4
against self-BLEU-4 (Caccia et al. 2020). Published (Texygen, Zhu et al. 2018, on
these files): MLE BLEU-2 .731, self-BLEU-2 .916; SeqGAN BLEU-2 .745, self-BLEU-2
.950. ``--quick`` trains 2 MLE epochs, 1 discriminator epoch and 3 rounds.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, device_description, earlier_results, require_data, write_result  # noqa: E402

import genloom  # noqa: E402
from genloom.checkpoint import load_tensors  # noqa: E402
from genloom.data.readers import read_lines  # noqa: E402
from genloom.metrics import reference_bleu, self_bleu  # noqa: E402
from genloom.device import resolve_device  # noqa: E402
from genloom.plot import pyplot, save_png  # noqa: E402

PUBLISHED = {"texygen": {"mle": {"bleu2": 0.731, "self_bleu2": 0.916}, "seqgan": {"bleu2": 0.745, "self_bleu2": 0.950},
                         "source": "Texygen (Zhu et al. 2018), Image COCO table"}}
TEMPERATURES = [0.6, 0.8, 1.0, 1.2, 1.4]


def samples(loaded, count: int, temperature: float, seed: int) -> list[str]:
    torch.manual_seed(seed)
    ids = loaded.model.sample(count, temperature=temperature).cpu().tolist()
    return [loaded.tokenizer.decode(row) for row in ids]


def text_scores(texts: list[str], test: list[str], orders: range) -> dict[str, float]:
    """BLEU-n of ``texts`` against the test captions and self-BLEU-n of their first 500."""
    result = {f"bleu{n}": round(reference_bleu(texts, test, n), 4) for n in orders}
    result.update({f"self_bleu{n}": round(self_bleu(texts[:500], n, max_hypotheses=None), 4) for n in orders})
    return result


def scores(loaded, test: list[str], test_file: Path, orders: range) -> dict[str, float]:
    result = text_scores(samples(loaded, 1000, 1.0, seed=1), test, orders)
    result["nll_gen"] = round(loaded.evaluate(test_file)["loss"], 4)
    return result


def curve(loaded, test: list[str]) -> list[dict[str, float]]:
    points = []
    for temperature in TEMPERATURES:
        texts = samples(loaded, 500, temperature, seed=2)
        points.append({"temperature": temperature, "bleu4": round(reference_bleu(texts, test, 4), 4),
                       "self_bleu4": round(self_bleu(texts, 4, max_hypotheses=None), 4)})
    return points


def plot(curves: dict[str, list[dict[str, float]]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=110)
    for name, points in curves.items():
        ax.plot([p["self_bleu4"] for p in points], [p["bleu4"] for p in points], marker="o", label=name)
        for p in points:
            ax.annotate(f"T={p['temperature']}", (p["self_bleu4"], p["bleu4"]), fontsize=6, alpha=0.7)
    ax.set_xlabel("self-BLEU-4 (lower: more diverse)")
    ax.set_ylabel("BLEU-4 against the test captions (higher: closer to real text)")
    ax.set_title("Image COCO: quality–diversity over sampling temperature")
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda (default: CUDA when present)")
    parser.add_argument("--quick", action="store_true", help="2 MLE epochs, 1 discriminator epoch, 3 rounds; _quick.json")
    parser.add_argument("--mle-only", action="store_true", help="MLE pretraining alone; writes gan_coco_mle.json")
    parser.add_argument("--models", nargs="+", choices=["seqgan", "gumbel"], default=["seqgan", "gumbel"],
                        help="the GANs to train; the other's figures are kept from the last run's results")
    args = parser.parse_args()
    data = require_data("textgan_bench") / "coco"
    device = str(resolve_device(args.device))
    test_file = data / "test_coco.txt"
    test = read_lines(test_file)
    base = yaml.safe_load((ROOT / "configs" / "gan_coco.yaml").read_text(encoding="utf-8"))
    overrides = [f"data.train={data / 'image_coco.txt'}"]
    if args.quick:
        overrides += ["train.epochs=2", "model.disc_pretrain_epochs=1", "model.adversarial_rounds=3"]
    if args.mle_only:
        overrides += ["model.disc_pretrain_epochs=0", "model.adversarial_rounds=0"]
    start = time.time()
    runs, walls = {}, {}
    objectives = ["seqgan"] if args.mle_only else [o for o in ("seqgan", "gumbel") if o in args.models]
    for objective in objectives:
        out_dir = ROOT / "runs" / f"bench_gan_coco_{objective}"
        if out_dir.exists():
            shutil.rmtree(out_dir)
        if objective == "gumbel" and "seqgan" in runs:  # the same MLE computation: take the SeqGAN run's
            shutil.copytree(runs["seqgan"] / "phases" / "mle", out_dir / "phases" / "mle")
        began = time.time()
        settings = [f"out_dir={out_dir}", f"model.objective={objective}"]
        if objective == "gumbel":  # RelGAN's adversarial learning rates: 1e-4 for both players
            settings += ["model.adversarial_lr=0.0001"]
        genloom.train(base, overrides=overrides + settings, device=device)
        runs[objective], walls[objective] = out_dir, round(time.time() - began, 1)
    # Real captions scored the same way (1,000 training captions drawn with seed 0): where a perfect generator lands.
    real = random.Random(0).sample(read_lines(data / "image_coco.txt"), 1000)
    results, curves = {"real_captions": text_scores(real, test, range(2, 6))}, {}
    gans = [] if args.mle_only else objectives  # an MLE-only run's "seqgan" run holds just its MLE phase
    models = [("mle", runs[objectives[0]])] + [({"gumbel": "gumbel_gan"}.get(o, o), runs[o]) for o in gans]
    stem = f"gan_coco{'_mle' if args.mle_only else ''}{'_quick' if args.quick else ''}"
    for name, path in models:
        loaded = genloom.load(path, device=device)
        if name == "mle":
            loaded.model.load_state_dict(load_tensors(path / "phases" / "mle" / "final.safetensors"))
        results[name] = scores(loaded, test, test_file, range(2, 6))
        curves[name] = curve(loaded, test)
        results[name]["temperature_curve"] = curves[name]
    if not args.mle_only:  # the GANs this run did not train, from the last full results
        for name, earlier in earlier_results("gan_coco", args.quick).items():
            if name not in results:
                results[name] = earlier
                curves[name] = earlier["temperature_curve"]
    picture = RESULTS / f"{stem}.png"
    plot(curves, picture)
    protocol = ("Image COCO (Texygen files): train image_coco.txt (5% held out for validation), references "
                "test_coco.txt (10,000); MLE = the generator that pretraining leaves (configs/gan_coco.yaml "
                "model.mle_weights), which the GANs also start from; 1,000 samples at temperature 1; BLEU-n: mean "
                "sentence BLEU of each sample against all test captions (NLTK word tokens as Texygen's "
                "nltk.word_tokenize, uniform weights, zero counts floored at 0.1 = NLTK method1); self-BLEU-n: the "
                "first 500 samples, each against the other 499 (never itself); NLL-gen: generator NLL of the test "
                "captions, nats per token incl. the end token; curve: 500 samples per temperature, BLEU-4 vs "
                "self-BLEU-4; real_captions: 1,000 training captions (seed 0) scored alike. Self-BLEU grows with the "
                "pool of texts (real captions: 0.686 among 500, 0.891 among 10,000), so Texygen's figures are "
                "comparable only at its sample count")
    if args.mle_only:
        protocol = "MLE PRETRAINING ONLY: " + protocol
    if args.quick:
        protocol = "QUICK RUN (2 MLE epochs, 1 discriminator epoch, 3 rounds; not the recipe): " + protocol
    path = write_result(stem.removesuffix("_quick"), args.quick, {
        "device": device_description(device), "wall_s": round(time.time() - start, 1), "protocol": protocol,
        "results": results, "published": PUBLISHED, "train_wall_s": walls,
    })
    print(f"\n{'model':<14}" + "".join(f"{'BLEU-' + str(n):>8}" for n in range(2, 6))
          + "".join(f"{'sBLEU-' + str(n):>8}" for n in range(2, 6)) + f"{'NLL-gen':>9}")
    for name, r in results.items():
        r = {"nll_gen": float("nan"), **r}
        print(f"{name:<14}" + "".join(f"{r[f'bleu{n}']:>8.3f}" for n in range(2, 6))
              + "".join(f"{r[f'self_bleu{n}']:>8.3f}" for n in range(2, 6)) + f"{r['nll_gen']:>9.3f}")
    print(f"written: {path} and {picture}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
