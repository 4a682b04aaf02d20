"""SeqGAN's synthetic experiment with its exact oracle: NLL-oracle of MLE and of SeqGAN, with curves.

    python benchmarks/gan_oracle.py [--device cuda] [--quick] [--mle-only] [--seeds S ... [--add]] [--name NAME]
                                    [KEY=VALUE ...]

Samples 10,000 training and 1,000 validation sequences of 20 tokens from the
oracle LSTM (../shared/data/seqgan_oracle, seed 0), trains configs/seqgan_oracle.yaml
(MLE pretraining, discriminator pretraining, adversarial rounds), and measures
NLL-oracle, the oracle's mean NLL per token of sequences the generator samples:
on 2,000 samples at every evaluation (the curves) and on 10,000 at the end of MLE
and at the end of SeqGAN, with a standard error (about 0.007 nats: differences
smaller than that are the sampler's noise). SeqGAN is also scored early-stopped:
the adversarial evaluation with the lowest 2,000-sample NLL-oracle picks the
generator, which is then scored on 10,000 fresh samples (other draws than those
that picked it, so the figure carries no selection bias of its own) and saved
to out_dir/phases/adversarial/selected.safetensors. Also reported: the oracle's own samples (5.75 in
SOURCE.md) and a uniform random generator. Published (Yu et al. 2017, Table 1):
random 10.310, MLE 9.038, SeqGAN 8.736. Targets: MLE ≤ 9.04, SeqGAN ≤ 8.73.
``--quick`` runs 5 MLE epochs, 1 discriminator epoch and 5 adversarial rounds.
KEY=VALUE overrides change the recipe (as for ``genloom train``, e.g.
``model.disc_steps=235``); the results then go to studies/gan_oracle_variant.json,
with the overrides in the protocol, and the recipe's own results stay. ``--name lr02``
names a variant instead (studies/gan_oracle_lr02.json, runs/bench_gan_oracle_lr02),
so that several variants keep their results and can run side by side.
``--seeds 0 1 2`` trains once per training seed (initialisation and batch order;
the oracle's data do not change) and writes each seed's figures with their mean
and standard deviation to studies/<name>_seeds.json and a PNG of their curves
(``--add`` adds seeds to that file's; see benchmarks/common.py).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ROOT, add_study_arguments, check_study_arguments, device_description, earlier_seeds,  # noqa: E402
                    require_data, result_path, seed_summary, study_name, variant_suffix, write_result)

from genloom.apps.seqgan_oracle import Oracle, as_text, from_words  # noqa: E402
from genloom.checkpoint import atomic_write, load_tensors, save_tensors  # noqa: E402
from genloom.config import apply_overrides, parse_run_config  # noqa: E402
from genloom.data.tokenizers import Tokenizer  # noqa: E402
from genloom.device import resolve_device  # noqa: E402
from genloom.models.gan import TextGAN  # noqa: E402
from genloom.models.loading import load_checkpoint  # noqa: E402
from genloom.plot import pyplot, save_png  # noqa: E402
from genloom.recipes import gan  # noqa: E402

PUBLISHED = {"yu2017": {"random": 10.310, "mle": 9.038, "scheduled_sampling": 8.985, "pg_bleu": 8.946,
                        "seqgan": 8.736, "source": "Yu et al. 2017, SeqGAN, Table 1 (NLL-oracle)"}}
TARGETS = {"mle": 9.04, "seqgan": 8.73, "seqgan_selected": 8.73}
TARGET_TEXT = {name: f"nll_oracle <= {value}" for name, value in TARGETS.items()}


def oracle_scores(model: TextGAN, tokenizer: Tokenizer, oracle: Oracle, count: int) -> torch.Tensor:
    """The oracle's NLL per token of each of ``count`` sequences sampled from the generator (20 tokens each,
    ``w<id>`` words): (count,). Their mean is NLL-oracle."""
    was_training = model.training
    model.eval()
    rows = []
    for start in range(0, count, 1000):
        samples = model.sample(min(1000, count - start))[:, : oracle.length].cpu()  # (n, 20)
        rows += [[tokenizer.id_to_token(i) for i in row] for row in samples.tolist()]
    model.train(was_training)
    return oracle.sequence_nll(from_words(rows))


def curve_rows(points: list[tuple[str, float, float]]) -> list[dict]:
    """A run's curve [(phase, x, NLL-oracle)] as JSON rows."""
    return [{"phase": p, "x": round(x, 2), "nll_oracle": round(y, 3)} for p, x, y in points]


def plot_curves(curves: dict[str, list[tuple[str, float, float]]], path: Path, pretrain_epochs: int,
                selected: float | None = None) -> None:
    """One line a phase of each run in ``curves`` ({label: [(phase, x, NLL-oracle)]}; one run: label ""), with a
    star on the adversarial point at round ``selected`` (the early-stopped generator)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, points in curves.items():
        for phase, colour in (("mle", "tab:blue"), ("adversarial", "tab:red")):
            xs = [x for p, x, _ in points if p == phase]
            ys = [y for p, _, y in points if p == phase]
            if xs:
                name = {"mle": "MLE pretraining", "adversarial": "SeqGAN adversarial"}[phase]
                ax.plot(xs, ys, color=None if len(curves) > 1 else colour, marker=".",
                        label=f"{label}: {name}" if label else name)
    ax.axvline(pretrain_epochs, color="grey", linestyle=":", linewidth=1)
    for points in curves.values():
        for phase, x, y in points:
            if selected is not None and phase == "adversarial" and math.isclose(x, pretrain_epochs + selected):
                ax.plot([x], [y], marker="*", markersize=12, color="black", linestyle="none",
                        label=f"early-stopped (round {selected:.4g})")
    for name, value in (("published MLE", 9.038), ("published SeqGAN", 8.736)):
        ax.axhline(value, linestyle="--", linewidth=0.8, color="grey")
        ax.text(0, value, name, fontsize=7, va="bottom")
    ax.set_xlabel("epoch (pretraining), then pretraining epochs + adversarial round")
    ax.set_ylabel("NLL-oracle (nats per token, 2,000 samples)")
    ax.set_title("SeqGAN oracle experiment")
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)


def marked(protocol: str, args: argparse.Namespace) -> str:
    """``protocol`` headed by what sets this run apart from the published protocol."""
    if args.overrides:
        protocol = f"RECIPE VARIANT ({' '.join(args.overrides)}): " + protocol
    if args.mle_only:
        protocol = "MLE PRETRAINING ONLY: " + protocol
    if args.quick:
        protocol = "QUICK RUN (5 MLE epochs, 1 discriminator epoch, 5 rounds; not the published protocol): " + protocol
    return protocol


def train_and_score(recipe: dict, out_dir: Path, device: str, oracle: Oracle, mle_only: bool) -> dict:
    """Train ``recipe`` afresh into ``out_dir``, with NLL-oracle on 2,000 samples at every evaluation (the curve),
    then score the MLE generator (the weights ``model.mle_weights`` picks) and, unless ``mle_only``, the SeqGAN
    generator on 10,000 samples each: the last adversarial weights ("seqgan") and the early-stopped ones
    ("seqgan_selected": the evaluation with the lowest curve point). → scores {name: (mean, standard error)}, the
    curve's points, the selected round, the run config, the model (SeqGAN's config), wall seconds and each phase's."""
    recipe = apply_overrides(recipe, [f"out_dir={out_dir}"])
    if out_dir.exists():
        shutil.rmtree(out_dir)
    run = parse_run_config(recipe)
    points: list[tuple[str, float, float]] = []
    calls = {"mle": 0}
    tokenizer: list[Tokenizer] = []  # read once the recipe has written it
    selected: dict = {}  # the adversarial evaluation with the lowest NLL-oracle: value, round, weights

    def report(model: TextGAN) -> dict[str, float]:
        if model.phase == "discriminator":
            return {}
        if not tokenizer:
            tokenizer.append(Tokenizer.load(out_dir / "tokenizer.json"))
        if model.phase == "mle":
            calls["mle"] += 1
            x = float(calls["mle"])
        else:
            round_length = model.config.generator_steps + model.config.disc_steps
            x = run.train.epochs + int(model.adversarial_updates) / round_length
        value = float(oracle_scores(model, tokenizer[0], oracle, 2_000).mean())
        points.append((model.phase, x, value))
        if model.phase == "adversarial" and value < selected.get("value", float("inf")):
            state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            selected.update(value=value, round=x - run.train.epochs, state=state)
        return {"nll_oracle": value}

    start = time.time()
    summary = gan.train(run, device=device, report=report)
    wall = time.time() - start
    loaded = load_checkpoint(out_dir, device=device)
    model = loaded.model
    scores = {}
    generators = [("mle", out_dir / "phases" / "mle" / "final.safetensors")]
    if selected:
        path = out_dir / "phases" / "adversarial" / "selected.safetensors"
        save_tensors(path, selected["state"], {"round": f"{selected['round']:.2f}"})
        generators.insert(0, ("seqgan_selected", path))
    if not mle_only:
        generators.insert(0, ("seqgan", None))  # the loaded run's own weights, before the others replace them
    for name, weights in generators:
        if weights is not None:
            model.load_state_dict(load_tensors(weights))
        torch.manual_seed(1)
        per_sequence = oracle_scores(model, loaded.tokenizer, oracle, 10_000)
        scores[name] = float(per_sequence.mean()), float(per_sequence.std() / len(per_sequence) ** 0.5)
    return {"scores": scores, "points": points, "selected_round": selected.get("round"), "run": run, "model": model,
            "wall_s": wall,
            "phases_wall_s": {k: round(v["wall_s"], 1) for k, v in summary["phases"].items()}}


def seed_study(recipe: dict, args: argparse.Namespace, name: str, run_stem: str, device: str, oracle: Oracle) -> int:
    """Train the recipe once per ``args.seeds`` (``train.seed``: the generator's and discriminator's initialisation
    and the batch order; the oracle's data stay those of seed 0) and write each seed's NLL-oracle with their mean
    and standard deviation to ``studies/<name>_seeds.json``: how far the figure moves with training noise alone."""
    start = time.time()
    if args.add:
        earlier_seeds(name, args)  # a mismatch stops the study before it trains; the seeds are read after it
    rows: dict[str, dict[int, dict]] = {}
    curves: dict[int, list] = {}
    for seed in args.seeds:
        trained = train_and_score(apply_overrides(recipe, [f"train.seed={seed}"]),
                                  ROOT / "runs" / f"{run_stem}_seed{seed}", device, oracle, args.mle_only)
        for figure, (mean, error) in trained["scores"].items():
            row = {"nll_oracle": mean, "standard_error": error}
            if figure == "seqgan_selected":
                row["round"] = trained["selected_round"]
            rows.setdefault(figure, {})[seed] = row
        curves[seed] = curve_rows(trained["points"])
        pretrain_epochs = trained["run"].train.epochs
        print(f"seed {seed}: " + ", ".join(f"{figure} {mean:.3f} ± {error:.3f}"
                                          for figure, (mean, error) in trained["scores"].items()))
    earlier_runs: list = []
    if args.add:  # read now: a study running beside this one may have written its seeds meanwhile
        rows_before, curves_before, earlier_runs = earlier_seeds(name, args)
        rows = {figure: rows_before.get(figure, {}) | per_seed for figure, per_seed in rows.items()}
        curves = curves_before | curves
    results = seed_summary(rows, "nll_oracle", {"nll_oracle": 3, "standard_error": 4, "round": 2})
    for figure, summary in results.items():
        spread = summary["nll_oracle_sd"]
        shown = "–" if spread is None else f"{spread:.3f}"
        print(f"{figure:<8} mean {summary['nll_oracle_mean']:.3f}, s.d. over seeds {shown} "
              f"(target ≤ {TARGETS[figure]})")
    seeds = sorted(curves)
    protocol = (f"SEED STUDY (train.seed = {', '.join(map(str, seeds))}; the oracle's 10,000 training sequences "
                "are those of seed 0 for every run): NLL-oracle = the oracle's mean NLL per token (nats) of 10,000 "
                "generator samples (multinomial, 20 tokens), its standard error within a run, and the mean and "
                "sample standard deviation of the runs' figures; recipe configs/seqgan_oracle.yaml")
    protocol = marked(protocol, args)
    results["curves"] = {f"seed {seed}": curves[seed] for seed in seeds}
    plot = result_path(name, args.quick, ".png")
    plot_curves({f"seed {seed}": [(r["phase"], r["x"], r["nll_oracle"]) for r in curves[seed]] for seed in seeds},
                plot, pretrain_epochs)
    path = write_result(name, args.quick, {
        "device": device_description(device), "wall_s": round(time.time() - start, 1), "protocol": protocol,
        "overrides": args.overrides, "trained_seeds": args.seeds, "earlier_runs": earlier_runs,
        "results": results, "published": PUBLISHED,
        "target": TARGET_TEXT,
    })
    print(f"written: {path} and {plot}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda (default: CUDA when present)")
    parser.add_argument("--quick", action="store_true", help="a few epochs and rounds; writes gan_oracle_quick.json")
    parser.add_argument("--mle-only", action="store_true",
                        help="MLE pretraining alone (no discriminator, no SeqGAN); writes gan_oracle_mle.json")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="auto: bf16 autocast on CUDA, fp32 on CPU")
    add_study_arguments(parser)
    args = parser.parse_args()
    check_study_arguments(parser, args)
    data = require_data("seqgan_oracle")
    device = str(resolve_device(args.device))
    oracle = Oracle.load(data / "target_params.npz")
    generator = torch.Generator().manual_seed(0)
    prepared = ROOT / "runs" / "gan_oracle_data"
    prepared.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", 10_000), ("valid", 1_000)):
        # atomically: a run starting beside this one reads the same sequences whole, never a half-written file
        atomic_write(prepared / f"{name}.txt", "\n".join(as_text(oracle.sample(count, generator))) + "\n")
    own = oracle.nll(oracle.sample(10_000, generator))
    uniform = oracle.nll(torch.randint(0, oracle.vocab_size, (10_000, 20), generator=generator))

    recipe = yaml.safe_load((ROOT / "configs" / "seqgan_oracle.yaml").read_text(encoding="utf-8"))
    overrides = [f"data.train={prepared / 'train.txt'}", f"data.valid={prepared / 'valid.txt'}",
                 f"train.precision={args.precision}"]
    if args.quick:
        overrides += ["train.epochs=5", "model.disc_pretrain_epochs=1", "model.adversarial_rounds=5"]
    if args.mle_only:
        overrides += ["model.disc_pretrain_epochs=0", "model.adversarial_rounds=0"]
    recipe = apply_overrides(recipe, overrides + args.overrides)
    stem = study_name(f"gan_oracle{'_mle' if args.mle_only else ''}", args.name, args.overrides, args.seeds)
    run_stem = f"bench_gan_oracle{variant_suffix(args.name, args.overrides)}"
    if args.seeds:
        return seed_study(recipe, args, stem, run_stem, device, oracle)
    out_dir = ROOT / "runs" / run_stem
    trained = train_and_score(recipe, out_dir, device, oracle, args.mle_only)
    scores, points, run, model = trained["scores"], trained["points"], trained["run"], trained["model"]
    plot = result_path(stem, args.quick, ".png")
    plot_curves({"": points}, plot, run.train.epochs, trained["selected_round"])
    results = {"oracle_samples": {"nll_oracle": round(own, 3)}, "uniform_random": {"nll_oracle": round(uniform, 3)},
               "mle": {"nll_oracle": round(scores["mle"][0], 3), "standard_error": round(scores["mle"][1], 4),
                       "epochs": run.train.epochs}}
    if "seqgan" in scores:
        results["seqgan"] = {"nll_oracle": round(scores["seqgan"][0], 3),
                             "standard_error": round(scores["seqgan"][1], 4), "rounds": model.config.adversarial_rounds}
        results["seqgan_selected"] = {"nll_oracle": round(scores["seqgan_selected"][0], 3),
                                      "standard_error": round(scores["seqgan_selected"][1], 4),
                                      "round": round(trained["selected_round"], 2)}
    results["curve"] = curve_rows(points)
    protocol = ("SeqGAN synthetic data: 10,000 training sequences of 20 tokens from the original oracle LSTM (seed 0); "
                "NLL-oracle = the oracle's mean NLL per token (nats) of 10,000 generator samples (multinomial, 20 "
                "tokens, no end token before 20), with its standard error (the per-sequence scores' standard "
                "deviation / 100: the figure moves by about that with the random stream); "
                f"MLE = the {model.config.mle_weights} weights of pretraining "
                f"({run.train.epochs} epochs, {run.train.schedule} LR from {run.train.lr:g}); curves on 2,000 samples; "
                "SeqGAN = the weights after the last round, and early-stopped (seqgan_selected): the weights of the "
                "adversarial evaluation with the lowest curve point, scored on 10,000 other samples; "
                f"recipe configs/seqgan_oracle.yaml (discriminator steps per round: {model.config.disc_steps})")
    protocol = marked(protocol, args)
    path = write_result(stem, args.quick, {
        "device": device_description(device), "wall_s": round(trained["wall_s"], 1), "protocol": protocol,
        "results": results,
        "published": PUBLISHED, "target": TARGET_TEXT,
        "phases_wall_s": trained["phases_wall_s"],
    })
    print(f"\nNLL-oracle: oracle's own samples {own:.3f}, uniform {uniform:.3f}")
    for name, (value, error) in scores.items():
        verdict = "met" if value <= TARGETS[name] else "NOT met"
        label = f"{name} (round {trained['selected_round']:.4g})" if name == "seqgan_selected" else name
        print(f"{label:<26}{value:8.3f} ± {error:.3f} (s.e.)   published "
              f"{PUBLISHED['yu2017'][name.removesuffix('_selected')]}, target ≤ {TARGETS[name]} ({verdict})")
    print(f"written: {path} and {plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
