"""Training and generation speed of the genloom GPT against transformers' GPT2LMHeadModel, same config and weights.

    python benchmarks/lm_speed.py [--device cpu|cuda] [--train-batch 8] [--quick]

Both models are built in this process from one random GPT-2 configuration (6 layers, width 384,
6 heads, context 512, vocabulary 8,192) and hold the same weights (ours are exported to the
GPT-2 layout and loaded by transformers). Training: tokens/s of forward + backward + AdamW steps
on batches of 8 × 256 tokens (``--train-batch`` sets the 8). Generation: tokens/s of greedy
decoding of 256 new tokens after a 16-token prompt, batch 1 and batch 32, each with its KV cache
(ours through genloom's decoding engine, theirs through ``generate``). Each ratio is ours over
theirs (higher is better); targets on CPU: training ≥ 1.0×, generation ≥ 2×. On a GPU it also
prints model FLOPs utilisation (6N + 12·L·H·Q·T FLOPs a token over the chip's bf16 dense peak,
given by --peak-tflops).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_description, write_result  # noqa: E402

import torch  # noqa: E402

from genloom.decoding.generate import GenerationConfig, generate  # noqa: E402
from genloom.models import gpt  # noqa: E402
from genloom.models.huggingface import gpt_config_to_hf, gpt_state_to_hf  # noqa: E402
from genloom.device import resolve_device  # noqa: E402

CONFIG = gpt.GPTConfig(vocab_size=8192, context_length=512, dim=384, num_layers=6, num_heads=6, dropout=0.0)


def build_pair(device: torch.device):
    """Our GPT and transformers' GPT2LMHeadModel with identical weights."""
    import transformers
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ours = gpt.build(CONFIG)
    with tempfile.TemporaryDirectory() as folder:
        import json

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


@torch.no_grad()
def generation_speed(generate_fn, device, batch: int, new_tokens: int = 256, repeats: int = 2) -> float:
    prompt = torch.randint(3, CONFIG.vocab_size, (batch, 16), device=device)
    generate_fn(prompt, 8)  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        generate_fn(prompt, new_tokens)
    sync(device)
    return repeats * batch * new_tokens / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda (default: CUDA when present)")
    parser.add_argument("--quick", action="store_true", help="fewer steps; writes lm_speed_quick.json")
    parser.add_argument("--train-batch", type=int, default=8, help="sequences of 256 tokens a training step")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H100/H200: 989)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    started = time.time()
    ours, theirs = build_pair(device)
    ours.eval(), theirs.eval()
    steps = 3 if args.quick else 10

    def ours_generate(prompt, count):
        cfg = GenerationConfig(max_new_tokens=count, min_new_tokens=count)
        for _ in generate(ours, prompt.tolist(), cfg, eos_id=2, max_context=CONFIG.context_length):
            pass

    def theirs_generate(prompt, count):
        theirs.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=count,
                        min_new_tokens=count, pad_token_id=0, eos_token_id=2, use_cache=True)

    results = {}
    for name, model, forward in (("genloom", ours, ours_forward), ("transformers", theirs, theirs_forward)):
        speed = training_speed(model, forward, device, steps, args.train_batch)
        results[name] = {"train_tokens_per_s": round(speed, 1)}
        model.eval()
    for batch in (1, 32):
        for name, fn in (("genloom", ours_generate), ("transformers", theirs_generate)):
            results[name][f"generate_b{batch}_tokens_per_s"] = round(generation_speed(fn, device, batch,
                                                                                      64 if args.quick else 256), 1)
    ratios = {key.replace("_tokens_per_s", ""): round(results["genloom"][key] / results["transformers"][key], 3)
              for key in results["genloom"]}
    results["ratio"] = ratios
    if device.type == "cuda":
        params = sum(p.numel() for p in ours.parameters())
        flops_per_token = 6 * params + 12 * CONFIG.num_layers * CONFIG.num_heads * (CONFIG.dim // CONFIG.num_heads) * 256
        results["genloom"]["mfu"] = round(results["genloom"]["train_tokens_per_s"] * flops_per_token
                                          / (args.peak_tflops * 1e12), 4)
    protocol = ("same config and weights in one process; training fwd+bwd+AdamW on "
                f"{args.train_batch}x256 tokens "
                f"({steps} timed steps after 2 warm-up); greedy generation of 256 new tokens after 16, KV cache, "
                "batch 1 and 32; ratio = genloom / transformers")
    if args.quick:
        protocol = "QUICK RUN (3 training steps, 64 new tokens): " + protocol
    # CPU and GPU figures are kept side by side: lm_speed.json and lm_speed_cuda.json.
    name = "lm_speed" if device.type == "cpu" else f"lm_speed_{device.type}"
    path = write_result(name, args.quick, {"device": device_description(str(device)),
                                           "wall_s": round(time.time() - started, 1), "protocol": protocol,
                                           "results": results, "published": {},
                                           "target": {"cpu": "train ratio >= 1.0, generation ratios >= 2.0"}})
    print(f"\n{'':<22}{'genloom':>12}{'transformers':>14}{'ratio':>8}")
    for key in results["genloom"]:
        if key in results["transformers"]:
            print(f"{key:<22}{results['genloom'][key]:>12,.0f}{results['transformers'][key]:>14,.0f}"
                  f"{ratios[key.replace('_tokens_per_s', '')]:>8.2f}")
    if "mfu" in results["genloom"]:
        print(f"model FLOPs utilisation (training, bf16, peak {args.peak_tflops:g} TFLOP/s): "
              f"{100 * results['genloom']['mfu']:.1f}%")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
