"""The LSTM sentence VAE on Penn Treebank, next to the RNN language model of the same size.

    python benchmarks/vae_ptb.py [--device cuda] [--iw-samples 500] [--batch-size 64] [--models vae lstm_lm] [--quick]
                                 [--resume] [KEY=VALUE ...]

Trains configs/vae_ptb.yaml, then the same recipe as a plain LSTM language model
(family rnnlm, as many layers as the VAE's decoder, the same embedding and hidden
sizes, dropout, weight drop, data, batching and optimizer), and scores both on the test split
with one protocol:
NLL in nats per sentence, summed over its words and the end-of-sentence token
(the VAE's by the importance-weighted estimate with ``--iw-samples`` samples,
the LM's exactly), perplexity = exp(total NLL / total tokens), and for the VAE
the KL, the mutual information I(x; z) and the active units (posterior-mean
variance > 0.01). Published: Texar-PyTorch LSTM VAE NLL 102.54 (PPL 107.64);
Sentence-VAE (timbmg) NLL 103.97 with KL 7.27; Bowman et al. a VAE about 1 nat
behind their LSTM LM with KL ≈ 2. Target: VAE test NLL ≤ 102 with KL ≥ 2 and at
least 5 active units. ``--quick`` trains 2 epochs each with 50 IW samples and
writes vae_ptb_quick.json. KEY=VALUE overrides change the VAE recipe before the
LM is derived from it (as for ``genloom train``, e.g. ``train.epochs=10``); the
results then go to studies/vae_ptb_variant.json (``--name NAME``: studies/vae_ptb_NAME.json), with the overrides
in the protocol.
``--resume`` continues each model's stopped run from its last snapshot (saved at
every evaluation) instead of starting afresh, so a CPU run can span sessions; the
row then says ``resumed`` and its train_wall_s counts the last process only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ROOT, check_name, device_description, earlier_results, last_result, require_data, study_name,  # noqa: E402
                    variant_suffix, write_result)

import genloom  # noqa: E402
from genloom.config import apply_overrides  # noqa: E402
from genloom.data.readers import read_lines  # noqa: E402
from genloom.models.rnnlm import RNNLMConfig  # noqa: E402
from genloom.models.vae import VAEConfig  # noqa: E402
from genloom.device import resolve_device  # noqa: E402
from genloom.errors import TrainingInterrupted  # noqa: E402

PUBLISHED = {
    "texar_lstm_vae": {"nll": 102.54, "perplexity": 107.64, "source": "Texar-PyTorch examples/vae_text, PTB, LSTM decoder"},
    "sentence_vae_timbmg": {"nll": 103.97, "kl": 7.27, "source": "timbmg/Sentence-VAE README, PTB"},
    "bowman2016": {"kl": 2.0, "note": "VAE about 1 nat per sentence behind the LSTM LM", "source": "Bowman et al. 2016, Table 1"},
}


def recipes(data: Path, quick: bool, batch_size: int | None, precision: str, variant: list[str],
            suffix: str) -> dict[str, dict]:
    """The VAE recipe (with the ``variant``'s overrides) and the language model of the same size, on the same
    data and optimizer.

    ``batch_size`` replaces the recipe's 32 (a GPU is idle at 32); the KL annealing then still spans the
    same number of epochs, since its length is counted in updates.
    """
    vae = yaml.safe_load((ROOT / "configs" / "vae_ptb.yaml").read_text(encoding="utf-8"))
    vae = apply_overrides(vae, variant)
    overrides = [f"data.train={data / 'ptb.train.txt.gz'}", f"data.valid={data / 'ptb.valid.txt.gz'}",
                 f"train.precision={precision}"]
    anneal = vae["model"]["kl_anneal_steps"] // (10 if quick else 1)  # quick: over 1 of its 2 epochs
    if quick:
        overrides += ["train.epochs=2"]
    if batch_size:
        anneal = anneal * vae["train"]["batch_size"] // batch_size
        overrides += [f"train.batch_size={batch_size}"]
    overrides += [f"model.kl_anneal_steps={anneal}"]
    vae = apply_overrides(vae, overrides)
    model = vae["model"]
    lm = {**vae, "family": "rnnlm", "model": {"cell": model["cell"], "embed_dim": model["embed_dim"],
                                               "hidden_dim": model["hidden_dim"],
                                               "num_layers": model.get("decoder_layers", 1),
                                               "dropout": model["dropout"],
                                               "weight_drop": model.get("weight_drop", 0.0),
                                               "tie_embeddings": model.get("tie_embeddings", False)}}
    for name, recipe in (("vae", vae), ("lstm_lm", lm)):
        recipe["out_dir"] = str(ROOT / "runs" / f"bench_vae_ptb{suffix}_{name}")
    return {"vae": vae, "lstm_lm": lm}


def signature(name: str, model: dict, epochs: int | None) -> dict:
    """What a result row must share with this run's recipe to stand beside it: the sizes, the number of (decoder)
    layers, the initialisation, the weight drop and the epochs. A row written before rows recorded one of these
    had the value every run then had: one layer, its family's default initialisation, no weight drop, 10 epochs."""
    default = (RNNLMConfig if name == "lstm_lm" else VAEConfig)().init_range
    layers = model.get("layers", model.get("num_layers" if name == "lstm_lm" else "decoder_layers", 1))
    return {"embed_dim": model.get("embed_dim"), "hidden_dim": model.get("hidden_dim"), "layers": layers,
            "init_range": model.get("init_range", default), "weight_drop": model.get("weight_drop", 0.0),
            "epochs": epochs or 10}


def set_aside(stem: str, quick: bool) -> list[dict]:
    """The rows that earlier runs set aside as another recipe's, carried from run to run (an older file holds them
    as a dict by model name)."""
    rows = last_result(stem, quick).get("superseded", [])
    return [{"model": name, **row} for name, row in rows.items()] if isinstance(rows, dict) else rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda (default: CUDA when present)")
    parser.add_argument("--iw-samples", type=int, default=None, help="importance samples (default 500; quick 50)")
    parser.add_argument("--quick", action="store_true", help="2 epochs each, 50 IW samples; writes vae_ptb_quick.json")
    parser.add_argument("--models", nargs="+", choices=["vae", "lstm_lm"], default=["vae", "lstm_lm"],
                        help="train these; the other's figures are kept from the last run's results")
    parser.add_argument("--batch-size", type=int, default=None, help="instead of the recipe's 32 (e.g. 64 on a GPU)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="auto: bf16 autocast on CUDA, fp32 on CPU")
    parser.add_argument("--resume", action="store_true",
                        help="continue each model's stopped run from its last snapshot instead of starting afresh")
    parser.add_argument("--name", default=None, help="the variant's name in its result and run folders' names "
                        "(default: 'variant' when there are overrides)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides (a variant of the recipe)")
    args = parser.parse_args()
    check_name(parser, args.name)
    stem = study_name("vae_ptb", args.name, args.overrides)
    data = require_data("ptb")
    device = str(resolve_device(args.device))
    samples = args.iw_samples or (50 if args.quick else 500)
    test = data / "ptb.test.txt.gz"
    start = time.time()
    results = {}
    models = recipes(data, args.quick, args.batch_size, args.precision, args.overrides,
                     variant_suffix(args.name, args.overrides))
    for name, recipe in models.items():
        if name not in args.models:
            continue
        resume = args.resume and (Path(recipe["out_dir"]) / "state" / "latest.json").is_file()  # else afresh
        if Path(recipe["out_dir"]).exists() and not resume:
            shutil.rmtree(recipe["out_dir"])
        began = time.time()
        try:
            summary = genloom.train(recipe, device=device, resume=resume)
        except TrainingInterrupted:
            print(f"\ninterrupted: {name} is saved in {recipe['out_dir']}; run the same command with --resume "
                  "(and the same KEY=VALUE overrides) to continue it.", file=sys.stderr)
            return 130
        trained = time.time() - began
        model = genloom.load(recipe["out_dir"], device=device)
        if name == "vae":
            scores = model.evaluate(test, iw_samples=samples)
            figures = {key: scores[key] for key in ("nll", "perplexity", "kl", "mutual_info", "active_units", "elbo",
                                                    "reconstruction")}
            figures["iw_samples"] = samples
        else:
            scores = model.evaluate(test)
            sentences = len(read_lines(test))
            figures = {"nll": scores["loss"] * scores["tokens"] / sentences, "perplexity": scores["perplexity"],
                       "kl": 0.0, "mutual_info": 0.0, "active_units": 0}
        results[name] = {key: round(value, 3) if isinstance(value, float) else value for key, value in figures.items()}
        results[name].update(train_wall_s=round(trained, 1), eval_wall_s=round(time.time() - began - trained, 1),
                             steps=summary["steps"], batch_size=recipe["train"]["batch_size"],
                             **signature(name, recipe["model"], recipe["train"]["epochs"]),
                             device=device_description(device), **({"resumed": True} if resume else {}))
    superseded = set_aside(stem, args.quick)
    for name, earlier in earlier_results(stem, args.quick).items():
        if name in results or (name == "vae_partial" and "vae" in results):  # a VAE stopped early: replaced
            continue
        current = models["lstm_lm" if name == "lstm_lm" else "vae"]
        if signature(name, earlier, earlier.get("epochs")) == signature(name, current["model"],
                                                                         current["train"]["epochs"]):
            results[name] = earlier
        else:  # another size, initialisation or schedule is no longer "the same recipe": kept aside, not compared
            superseded.append({"model": name, **earlier})
    protocol = ("Penn Treebank (Mikolov 10k vocabulary), test split (3,761 sentences); NLL in nats per sentence summed "
                "over its words and <eos>: the VAE's by the importance-weighted estimate with k samples from q(z|x) "
                "(k: the row's iw_samples), the LM's exact; perplexity = exp(total NLL / total tokens incl. <eos>); KL "
                "per sentence; mutual information per batch of 64 (He et al. 2019), averaged; active units: "
                "posterior-mean variance > 0.01; best-validation-ELBO weights")
    if args.overrides:
        protocol = f"RECIPE VARIANT ({' '.join(args.overrides)}): " + protocol
    if args.quick:
        protocol = "QUICK RUN (2 epochs each, not the full recipe): " + protocol
    vae = results.get("vae")
    met = vae is not None and vae["nll"] <= 102 and vae["kl"] >= 2 and vae["active_units"] >= 5
    path = write_result(stem, args.quick, {
        "device": device_description(device), "wall_s": round(time.time() - start, 1), "protocol": protocol,
        "results": results, "published": PUBLISHED,
        "target": {"vae": "nll <= 102 with kl >= 2 and active_units >= 5", "met": met},
        **({"superseded": superseded} if superseded else {}),
    })
    print(f"\n{'model':<12}{'NLL':>9}{'PPL':>9}{'KL':>7}{'MI':>7}{'AU':>4}{'train s':>9}")
    for name, r in results.items():
        print(f"{name:<12}{r['nll']:>9.2f}{r['perplexity']:>9.2f}{r['kl']:>7.2f}{r['mutual_info']:>7.2f}"
              f"{r['active_units']:>4}{r.get('train_wall_s', float('nan')):>9.0f}")
    print(f"target (VAE NLL ≤ 102, KL ≥ 2, ≥ 5 active units): {'met' if met else 'NOT met'}\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
