"""What ``genloom quantize`` (int8 linear layers) buys and costs: size, decoding speed beside CTranslate2's float32
and int8, and quality on trained models.

    python benchmarks/quantize_int8.py [--new-tokens 128] [--repeats 3] [--skip-quality]

Speed: the ``benchmarks/lm_speed.py`` model (random weights, 6 layers, width 384, vocabulary 8,192), greedy
decoding after 16 prompt tokens at batch 1 and 32, with one thread and with all cores: genloom float32, genloom
int8, CTranslate2 float32 and CTranslate2 int8 (converted from genloom's own export), taking turns, median of
``--repeats``. Size: model.safetensors of each. Quality, each model scored in float32 and after
``genloom quantize``: the validation loss of the Tiny Shakespeare GPT (runs/gpt_shakespeare_char: the last 10 % of
the text in windows of its context, as training validates; target ≤ 1 % relative increase), and BLEU on
Multi30k test_2016_flickr (beam 5) of the Transformer and the GRU (runs/transformer_multi30k,
runs/seq2seq_multi30k_gru; target ≤ 0.5 BLEU lost). A model whose run folder is absent is skipped with a note.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED_DATA, device_description, last_result, write_result  # noqa: E402
from lm_speed import CONFIG, build_pair, ctranslate2_speeds, genloom_generator, generation_speeds  # noqa: E402

import torch  # noqa: E402

import genloom  # noqa: E402
from genloom.checkpoint import save_tensors  # noqa: E402
from genloom.data.readers import read_parallel  # noqa: E402
from genloom.models.loading import quantize_checkpoint  # noqa: E402
from genloom.nn.quantized import quantize_linears  # noqa: E402


def speed(args, folder: Path) -> dict:
    ours, _ = build_pair(torch.device("cpu"))
    ours.eval()
    int8 = copy.deepcopy(ours)
    quantize_linears(int8)
    sizes = {}
    for name, model in (("genloom_float32", ours), ("genloom_int8", int8)):
        save_tensors(folder / f"{name}.safetensors", model.state_dict())
        sizes[name] = (folder / f"{name}.safetensors").stat().st_size
    results: dict = {"model_safetensors_mb": {k: round(v / 2**20, 2) for k, v in sizes.items()},
                     "size_ratio": round(sizes["genloom_int8"] / sizes["genloom_float32"], 3)}
    cores = os.cpu_count() or 1
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        for batch in (1, 32):
            prompt = torch.randint(4, CONFIG.vocab_size, (batch, 16))
            engines = {"genloom_float32": genloom_generator(ours), "genloom_int8": genloom_generator(int8)}
            speeds, _ = generation_speeds(engines, torch.device("cpu"), prompt, args.new_tokens, args.repeats)
            speeds.update(ctranslate2_speeds(ours, threads, folder, prompt, args.new_tokens, args.repeats)[0])
            speeds["int8/float32"] = round(speeds["genloom_int8"] / speeds["genloom_float32"], 3)
            if "ctranslate2_int8" in speeds:
                speeds["genloom_int8/ctranslate2_int8"] = round(speeds["genloom_int8"] / speeds["ctranslate2_int8"], 3)
            results[f"threads_{threads}_batch_{batch}_tokens_per_s"] = speeds
            print(f"threads {threads}, batch {batch}: " + ", ".join(f"{k} {v:,}" for k, v in speeds.items()))
    return results


@torch.no_grad()
def shakespeare_loss(run: Path, text: str) -> float:
    """Mean next-character loss over the last 10 % of the text in windows of the model's context, as training
    validates."""
    model = genloom.load(run, device="cpu")
    ids = model.tokenizer.encode(text)
    valid = torch.tensor(ids[int(len(ids) * 0.9):])
    width = model.model.config.context_length
    windows = valid[: (len(valid) - 1) // width * width + 1]
    inputs = windows[:-1].view(-1, width)
    targets = windows[1:].view(-1, width)
    total = 0.0
    for start in range(0, len(inputs), 32):
        logits, _ = model.model(inputs[start:start + 32])
        total += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets[start:start + 32].flatten(),
                                                         reduction="sum"))
    return total / targets.numel()


def quality(folder: Path) -> dict:
    results = {}
    shakespeare = ROOT / "runs" / "gpt_shakespeare_char"
    text_path = SHARED_DATA / "tinyshakespeare" / "input.txt.gz"
    if shakespeare.is_dir() and text_path.is_file():
        text = gzip.open(text_path, "rt", encoding="utf-8").read()
        quantize_checkpoint(shakespeare, folder / "shakespeare_int8")
        before, after = shakespeare_loss(shakespeare, text), shakespeare_loss(folder / "shakespeare_int8", text)
        results["gpt_shakespeare_char"] = {"valid_loss_float32": round(before, 4), "valid_loss_int8": round(after, 4),
                                           "relative_increase": round(after / before - 1, 5)}
        print(f"Shakespeare GPT validation loss: float32 {before:.4f}, int8 {after:.4f} "
              f"({100 * (after / before - 1):+.2f} %)")
    else:
        print(f"skipped the Shakespeare GPT: {shakespeare} or {text_path} is absent", file=sys.stderr)
    multi30k = SHARED_DATA / "multi30k" / "raw"
    for name in ("transformer_multi30k", "seq2seq_multi30k_gru"):
        run = ROOT / "runs" / name
        if not run.is_dir() or not multi30k.is_dir():
            print(f"skipped {name}: {run} or {multi30k} is absent", file=sys.stderr)
            continue
        pairs = read_parallel(multi30k / "test_2016_flickr.de.gz", multi30k / "test_2016_flickr.en.gz")
        quantize_checkpoint(run, folder / f"{name}_int8")
        scores = {}
        for label, path in (("float32", run), ("int8", folder / f"{name}_int8")):
            started = time.time()
            result = genloom.load(path, device="cpu").evaluate_pairs(pairs, num_beams=5, length_penalty=1.0)
            scores[label] = {"bleu": round(result["bleu"], 2), "decode_wall_s": round(time.time() - started, 1)}
        results[name] = {"bleu_float32": scores["float32"]["bleu"], "bleu_int8": scores["int8"]["bleu"],
                         "bleu_change": round(scores["int8"]["bleu"] - scores["float32"]["bleu"], 2),
                         "decode_wall_s": {k: v["decode_wall_s"] for k, v in scores.items()},
                         "valid_loss_of_the_run": _last_valid_loss(run)}
        print(f"{name} BLEU: float32 {scores['float32']['bleu']:.2f}, int8 {scores['int8']['bleu']:.2f}; "
              f"beam-5 decoding of 1,000 sentences {scores['float32']['decode_wall_s']:.0f} s → "
              f"{scores['int8']['decode_wall_s']:.0f} s")
    return results


def _last_valid_loss(run: Path) -> float | None:
    losses = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [r["loss"] for r in losses if r.get("split") == "valid"]
    return round(min(valid), 4) if valid else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=128, help="greedy tokens per row (default 128)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each engine (median)")
    parser.add_argument("--skip-quality", action="store_true",
                        help="speed and size only; keeps the last run's quality")
    parser.add_argument("--skip-speed", action="store_true", help="quality only; keeps the last run's speed figures")
    args = parser.parse_args()
    started = time.time()
    earlier = last_result("quantize_int8", False).get("results", {})  # what a --skip-* option keeps
    with tempfile.TemporaryDirectory() as folder:
        results = {"speed": earlier.get("speed") if args.skip_speed else speed(args, Path(folder))}
        torch.set_num_threads(os.cpu_count() or 1)
        results["quality"] = earlier.get("quality") if args.skip_quality else quality(Path(folder))
    path = write_result("quantize_int8", False, {
        "device": device_description("cpu"), "wall_s": round(time.time() - started, 1),
        "protocol": (f"genloom quantize (int8 weights per output row, dynamic int8 activations, fbgemm kernels); speed: "
                     f"lm_speed model, greedy {args.new_tokens} new tokens after 16, batch 1 and 32, 1 thread and all "
                     f"cores, median of {args.repeats}, engines taking turns; quality: Shakespeare GPT validation loss "
                     "(last 10 %, windows of the context), Multi30k test_2016_flickr BLEU with beam 5"),
        "results": results, "published": {},
        "target": {"quality": "<= 1 % relative validation-loss increase (Shakespeare GPT); <= 0.5 BLEU lost "
                              "(Multi30k Transformer)"}})
    if results["speed"]:
        print(f"size: model.safetensors {results['speed']['size_ratio']:.2f}x of float32")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
