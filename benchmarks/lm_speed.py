"""Training and generation speed of the genloom GPT against transformers' GPT2LMHeadModel and CTranslate2, same
config and weights.

    python benchmarks/lm_speed.py [--device cpu|cuda] [--train-batch 8] [--no-train] [--repeats 3] [--quick]

Every engine holds the weights of one random GPT-2 configuration (6 layers, width 384, 6 heads, context 512,
vocabulary 8,192): transformers loads genloom's GPT-2 export, and CTranslate2 (float32 and int8; skipped when the
``ctranslate2`` package is absent) converts that export. Training: tokens/s of forward + backward + AdamW steps on
batches of 8 × 256 tokens (``--train-batch`` sets the 8). Generation: tokens/s of greedy decoding of 256 new tokens
after a 16-token prompt, batch 1 and batch 32, with one thread and with all cores; genloom through its decoding
engine, transformers through ``generate``. The greedy tokens of genloom, transformers and CTranslate2 float32 must
be identical (exit status 1 otherwise). Targets on CPU, all float32: training ≥ 1.0× transformers; generation
≥ 2× transformers and ≥ CTranslate2 at batch 1, ≥ both at batch 32. On a GPU it also prints model FLOPs
utilisation (6N + 12·L·H·Q·T FLOPs a token over the chip's bf16 dense peak, given by --peak-tflops).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_description, write_result  # noqa: E402

import torch  # noqa: E402

from genloom.decoding.generate import GenerationConfig, generate  # noqa: E402
from genloom.models import gpt  # noqa: E402
from genloom.data.tokenizers import Tokenizer  # noqa: E402
from genloom.models.huggingface import export_gpt2, gpt_config_to_hf, gpt_state_to_hf  # noqa: E402
from genloom.device import resolve_device  # noqa: E402

CONFIG = gpt.GPTConfig(vocab_size=8192, context_length=512, dim=384, num_layers=6, num_heads=6, dropout=0.0)


def build_pair(device: torch.device):
    """Our GPT and transformers' GPT2LMHeadModel with identical weights."""
    import transformers
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ours = gpt.build(CONFIG)
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "config.json").write_text(json.dumps(gpt_config_to_hf(CONFIG, 1, 2)))
        save_file(gpt_state_to_hf(ours), str(Path(folder, "model.safetensors")), metadata={"format": "pt"})
        theirs = transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="sdpa")
    return ours.to(device), theirs.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def training_speed(model, forward, device, steps: int, batch: int = 8, length: int = 256) -> float:
    """Tokens per second of forward + backward + AdamW."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    data = torch.randint(0, CONFIG.vocab_size, (steps + 2, batch, length + 1), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    model.train()
    for i in range(steps + 2):
        if i == 2:  # two warm-up steps
            sync(device)
            start = time.perf_counter()
        with autocast:
            logits = forward(model, data[i, :, :-1])
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), data[i, :, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(device)
    return steps * batch * length / (time.perf_counter() - start)


def ours_forward(model, tokens):
    return model(tokens)[0]


def theirs_forward(model, tokens):
    return model(tokens).logits


def ctranslate2_generators(model, quantizations: tuple[str, ...], threads: int, folder: Path) -> dict:
    """CTranslate2 generators of ``model``'s weights: genloom's own Hugging Face export (``export_gpt2``), converted
    by ctranslate2's ``TransformersConverter`` (what ``ct2-transformers-converter`` runs), one per quantization.
    Empty when the ``ctranslate2`` package is absent."""
    try:
        import ctranslate2
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        return {}
    hf = folder / "hf"
    tokenizer = Tokenizer.train("word", [" ".join(f"w{i}" for i in range(CONFIG.vocab_size - 4))],
                                vocab_size=CONFIG.vocab_size)  # one word a token id: CTranslate2 speaks tokens
    if not hf.exists():
        export_gpt2(model.cpu(), tokenizer, hf)
        (hf / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<bos>", "eos_token": "<eos>",
             "unk_token": "<unk>", "pad_token": "<pad>"}))
    generators = {}
    for quantization in quantizations:
        out = folder / quantization
        if not out.exists():
            TransformersConverter(str(hf)).convert(str(out), quantization=quantization)
        generators[quantization] = (ctranslate2.Generator(str(out), device="cpu", compute_type=quantization,
                                                          intra_threads=threads), tokenizer)
    return generators


def ctranslate2_generate(generator_and_tokenizer, prompt: torch.Tensor, count: int) -> list[list[int]]:
    generator, tokenizer = generator_and_tokenizer
    words = [[tokenizer.id_to_token(i) for i in row] for row in prompt.tolist()]
    results = generator.generate_batch(words, max_length=count, min_length=count, sampling_topk=1, beam_size=1,
                                       include_prompt_in_result=False)
    return [r.sequences_ids[0] for r in results]


def ctranslate2_speeds(model, threads: int, folder: Path, prompt: torch.Tensor, new_tokens: int,
                       repeats: int) -> tuple[dict, dict]:
    """``generation_speeds`` of CTranslate2 float32 and int8 holding ``model``'s weights (both empty when the package
    is absent), in a turn of their own: the generators are gone before torch runs again, since CTranslate2's OpenMP
    threads and torch's slow each other down on a few cores (genloom 70 → 48 tokens/s with one alive)."""
    device = next(model.parameters()).device
    generators = ctranslate2_generators(model, ("float32", "int8"), threads, folder)
    model.to(device)  # the export went through the CPU
    peers = {f"ctranslate2_{q}": functools.partial(ctranslate2_generate, g) for q, g in generators.items()}
    speeds, tokens = generation_speeds(peers, torch.device("cpu"), prompt.cpu(), new_tokens, repeats)
    del generators, peers
    gc.collect()
    return speeds, tokens


def genloom_generator(model):
    """(prompt (B, 16), count) → the B rows of ``count`` greedy tokens, through genloom's decoding engine."""
    def run(prompt: torch.Tensor, count: int) -> list[list[int]]:
        cfg = GenerationConfig(max_new_tokens=count, min_new_tokens=count)
        steps = list(generate(model, prompt.tolist(), cfg, eos_id=2, max_context=CONFIG.context_length))
        return torch.stack([s.tokens for s in steps], 1).tolist()
    return run


@torch.no_grad()
def generation_speeds(engines: dict, device, prompt: torch.Tensor, new_tokens: int,
                      repeats: int) -> tuple[dict, dict]:
    """Tokens/s of each engine from ``prompt`` (B, 16) (the median of ``repeats`` runs, the engines taking turns, so
    that a slow minute of a shared machine hits them all) and the tokens each generated."""
    batch = prompt.size(0)
    for fn in engines.values():
        fn(prompt, 8)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in engines}
    tokens = {}
    for _ in range(repeats):
        for name, fn in engines.items():
            sync(device)
            start = time.perf_counter()
            tokens[name] = fn(prompt, new_tokens)
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: round(batch * new_tokens / statistics.median(t), 1) for name, t in times.items()}, tokens


def first_difference(a: list[list[int]], b: list[list[int]]) -> str | None:
    for row, (x, y) in enumerate(zip(a, b)):
        if x != y:
            position = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            return f"row {row} differs from position {position}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda (default: CUDA when present)")
    parser.add_argument("--quick", action="store_true", help="fewer steps; writes lm_speed_quick.json")
    parser.add_argument("--train-batch", type=int, default=8, help="sequences of 256 tokens a training step")
    parser.add_argument("--no-train", action="store_true", help="generation only")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each generation (median)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H100/H200: 989)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    started = time.time()
    ours, theirs = build_pair(device)
    ours.eval(), theirs.eval()
    steps = 3 if args.quick else 10
    new_tokens = 64 if args.quick else 256
    cores = os.cpu_count() or 1

    ours_generate = genloom_generator(ours)

    def theirs_generate(prompt, count):
        out = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=count,
                              min_new_tokens=count, pad_token_id=0, eos_token_id=2, use_cache=True)
        return out[:, prompt.size(1):].tolist()

    results: dict = {}
    generation: dict = {}
    identical = True
    with tempfile.TemporaryDirectory() as folder:
        for threads in sorted({1, cores}) if device.type == "cpu" else [None]:
            if threads is not None:
                torch.set_num_threads(threads)
            for batch in (1, 32):
                prompt = torch.randint(4, CONFIG.vocab_size, (batch, 16), device=device)
                speeds, tokens = generation_speeds({"genloom": ours_generate, "transformers": theirs_generate},
                                                   device, prompt, new_tokens, args.repeats)
                if device.type == "cpu":
                    more_speeds, more_tokens = ctranslate2_speeds(ours, threads, Path(folder), prompt, new_tokens,
                                                                  args.repeats)
                    speeds.update(more_speeds)
                    tokens.update(more_tokens)
                for peer in ("transformers", "ctranslate2_float32"):
                    if peer in tokens and (difference := first_difference(tokens["genloom"], tokens[peer])):
                        identical = False
                        print(f"greedy tokens of genloom and {peer} differ (threads {threads}, batch {batch}): "
                              f"{difference}", file=sys.stderr)
                for peer in ("transformers", "ctranslate2_float32", "ctranslate2_int8"):
                    if peer in speeds:
                        speeds[f"genloom/{peer}"] = round(speeds["genloom"] / speeds[peer], 3)
                generation[f"threads_{threads or 'gpu'}_batch_{batch}"] = speeds
                print(f"threads {threads}, batch {batch}: " + ", ".join(f"{k} {v:,}" for k, v in speeds.items()))
    results["generate_tokens_per_s"] = generation
    results["greedy_tokens_identical"] = identical
    # training last: each model's optimizer moves its own weights, and the generation above compares equal ones
    if not args.no_train:
        torch.set_num_threads(cores)
        training = {}
        for name, model, forward in (("genloom", ours, ours_forward), ("transformers", theirs, theirs_forward)):
            training[name] = round(training_speed(model, forward, device, steps, args.train_batch), 1)
            model.eval()
        training["ratio"] = round(training["genloom"] / training["transformers"], 3)
        results["train_tokens_per_s"] = training
    if device.type == "cuda" and "train_tokens_per_s" in results:
        params = sum(p.numel() for p in ours.parameters())
        flops_per_token = 6 * params + 12 * CONFIG.num_layers * CONFIG.num_heads * (CONFIG.dim // CONFIG.num_heads) * 256
        results["train_mfu"] = round(results["train_tokens_per_s"]["genloom"] * flops_per_token
                                     / (args.peak_tflops * 1e12), 4)
    protocol = ("same config and weights in one process; training fwd+bwd+AdamW on "
                f"{args.train_batch}x256 tokens ({steps} timed steps after 2 warm-up, all cores); greedy generation "
                f"of {new_tokens} new tokens after 16 (min_new_tokens = max_new_tokens), KV cache, batch 1 and 32, "
                "with 1 thread and with all cores; CTranslate2 converted from genloom's own Hugging Face export; "
                f"median of {args.repeats} runs, engines taking turns (CTranslate2's two after the torch engines, in "
                "their own turn: two OpenMP runtimes in one process slow each other); greedy tokens compared with "
                "transformers and CTranslate2 float32 (int8 is not expected to match)")
    if args.quick:
        protocol = "QUICK RUN (3 training steps, 64 new tokens): " + protocol
    # CPU and GPU figures are kept side by side: lm_speed.json and lm_speed_cuda.json.
    name = "lm_speed" if device.type == "cpu" else f"lm_speed_{device.type}"
    path = write_result(name, args.quick, {"device": device_description(str(device)),
                                           "wall_s": round(time.time() - started, 1), "protocol": protocol,
                                           "results": results, "published": {},
                                           "target": {"cpu": "training >= 1.0x transformers; generation in float32 "
                                                             ">= 2x transformers and >= CTranslate2 float32 at batch 1, "
                                                             ">= both at batch 32"}})
    if "train_tokens_per_s" in results:
        training = results["train_tokens_per_s"]
        print(f"training tokens/s: genloom {training['genloom']:,}, transformers {training['transformers']:,} "
              f"({training['ratio']:.2f}x)")
    if "train_mfu" in results:
        print(f"model FLOPs utilisation (training, bf16, peak {args.peak_tflops:g} TFLOP/s): "
              f"{100 * results['train_mfu']:.1f}%")
    print(f"greedy tokens identical: {identical}")
    print(f"written: {path}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
