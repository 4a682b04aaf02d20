"""``genloom profile``: what a checkpoint costs to run. Parameters, size on disk, analytic FLOPs per token, memory,
and decoding throughput and per-token latency (p50/p99) across batch sizes, as a table, JSON and a PNG.

Throughput is greedy decoding through the one engine every command uses (``decoding.generate``), from prompts (or
sources) of random vocabulary tokens, with ``min_new_tokens`` so that every row runs its full length. A token's
latency is the wall time of the engine step that chose it; the first step (the prompt's prefill) is reported apart.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from genloom.api import LoadedModel
from genloom.decoding.generate import GenerationConfig, generate
from genloom.errors import UserError
from genloom.models import gpt, rnnlm, transformer_seq2seq
from genloom.plot import pyplot, save_png

# Families with an analytic count of forward FLOPs per generated token (each module's ``flops_per_token``).
FLOPS = {"gpt": gpt.flops_per_token, "rnnlm": rnnlm.flops_per_token,
         "transformer_seq2seq": transformer_seq2seq.flops_per_token}
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def size_on_disk(path: Path) -> tuple[int, int]:
    """Bytes of the checkpoint's weights file (``model.safetensors``) and of the whole folder (config, tokenizer
    and, in a run folder, the optimizer state kept for resuming)."""
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    weights = [f for f in files if f.name == "model.safetensors" and f.parent == path] or files
    return sum(f.stat().st_size for f in weights), sum(f.stat().st_size for f in files)


def model_size(model: torch.nn.Module) -> tuple[int, int]:
    """The model's weights: how many values, and their bytes in memory. int8 layers (``nn.quantized``) keep their
    weights as buffers, which count; a tensor shared by two layers (a tied embedding) counts once."""
    tensors = {t.data_ptr(): t for t in model.parameters()}
    tensors.update({t.data_ptr(): t for name, t in model.named_buffers() if name.endswith("weight_int8")})
    return sum(t.numel() for t in tensors.values()), sum(t.numel() * t.element_size() for t in tensors.values())


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _prompts(model: LoadedModel, batch: int, prompt_tokens: int, generator: torch.Generator) -> tuple[list, Any]:
    """Prompt ids and the context for ``batch`` rows of ``prompt_tokens`` random vocabulary tokens (for a
    seq2seq model, a source of that length and the start token)."""
    tokenizer = model.tokenizer
    specials = {tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id, tokenizer.mask_id}
    words = torch.tensor([i for i in range(tokenizer.vocab_size) if i not in specials])
    if len(words) == 0:
        raise UserError(f"{model.path}: the tokenizer has no ordinary tokens to build prompts from.")
    texts = [tokenizer.decode(words[torch.randint(len(words), (prompt_tokens,), generator=generator)].tolist())
             for _ in range(batch)]
    ids, context, _ = model._inputs(texts)
    return ids, context


def measure(model: LoadedModel, batch: int, new_tokens: int, prompt_tokens: int, seed: int = 0) -> dict[str, Any]:
    """Greedy decoding of ``batch`` rows, ``new_tokens`` each: tokens/s and per-token latency percentiles (ms)."""
    ids, context = _prompts(model, batch, prompt_tokens, torch.Generator().manual_seed(seed))
    cfg = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    args = model._engine_args(cfg, context, [])
    device = model.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in generate(model.model, ids, GenerationConfig(max_new_tokens=2, min_new_tokens=2),
                      model.tokenizer.eos_id, **args):  # warm-up: lazily built plans, allocator
        pass
    steps: list[float] = []
    started = last = time.perf_counter()
    for _ in generate(model.model, ids, cfg, model.tokenizer.eos_id, **args):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        steps.append(now - last)
        last = now
    total = last - started
    decode = sorted(steps[1:]) or steps  # the first step holds the prompt's prefill
    record = {"batch": batch, "tokens_per_s": round(batch * len(steps) / total, 1),
              "prefill_ms": round(1000 * steps[0], 2),
              "latency_p50_ms": round(1000 * statistics.median(decode), 3),
              "latency_p99_ms": round(1000 * decode[min(len(decode) - 1, int(0.99 * len(decode)))], 3)}
    if device.type == "cuda":
        record["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    else:
        record["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return record


def profile(model: LoadedModel, batch_sizes: tuple[int, ...] = BATCH_SIZES, new_tokens: int = 64,
            prompt_tokens: int = 16, progress=None) -> dict[str, Any]:
    """Everything ``genloom profile`` reports, as a JSON-ready dict."""
    parameters, weight_bytes = model_size(model.model)
    config = model.model.config  # the family's config dataclass
    flops = None
    if model.family in FLOPS:
        middle = prompt_tokens + new_tokens // 2  # the average position of a generated token
        source = prompt_tokens if model.conditional else 0
        flops = {"per_token_at_average_position": FLOPS[model.family](config, middle, source),
                 "average_position": middle, "source_length": source,
                 "per_token_at_position_0": FLOPS[model.family](config, 0, source)}
    weights_file, folder = size_on_disk(Path(model.path))
    rows = []
    with torch.inference_mode():
        for batch in batch_sizes:
            rows.append(measure(model, batch, new_tokens, prompt_tokens))
            if progress is not None:
                progress(rows[-1])
    if flops is not None:
        for row in rows:
            row["gflop_per_s"] = round(row["tokens_per_s"] * flops["per_token_at_average_position"] / 1e9, 2)
    return {"checkpoint": str(model.path), "family": model.family, "device": str(model.device),
            "threads": torch.get_num_threads() if model.device.type == "cpu" else None,
            "parameters": parameters, "weights_mb": round(weight_bytes / 2**20, 2),
            "weights_file_mb": round(weights_file / 2**20, 2), "folder_mb": round(folder / 2**20, 2),
            "flops": flops if flops is not None else f"no analytic count for the {model.family} family",
            "protocol": f"greedy decoding of {new_tokens} new tokens after {prompt_tokens} random vocabulary tokens "
                        "(a source of that length for seq2seq), min_new_tokens = max_new_tokens, one warm-up; "
                        "latency = wall time of each engine step after the first (the prefill)",
            "batches": rows}


def table(report: dict[str, Any]) -> str:
    """The report as lines of text for a terminal."""
    flops = report["flops"]
    lines = [f"{report['checkpoint']}: {report['family']}, {report['parameters']:,} parameters, "
             f"{report['weights_mb']:.1f} MB of weights in memory; on disk {report['weights_file_mb']:.1f} MB of "
             f"safetensors, {report['folder_mb']:.1f} MB in the folder",
             (f"FLOPs per token: {flops['per_token_at_average_position'] / 1e6:,.2f} M at position "
              f"{flops['average_position']} ({flops['per_token_at_position_0'] / 1e6:,.2f} M at position 0)"
              if isinstance(flops, dict) else f"FLOPs per token: {flops}"),
             f"device {report['device']}" + (f", {report['threads']} threads" if report["threads"] else ""), ""]
    memory = "peak_memory_mb" if report["batches"] and "peak_memory_mb" in report["batches"][0] else "peak_rss_mb"
    lines.append(f"{'batch':>6}{'tokens/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'prefill ms':>12}{'GFLOP/s':>10}"
                 f"{'peak MB':>10}")
    for row in report["batches"]:
        lines.append(f"{row['batch']:>6}{row['tokens_per_s']:>12,.1f}{row['latency_p50_ms']:>10.2f}"
                     f"{row['latency_p99_ms']:>10.2f}{row['prefill_ms']:>12.1f}"
                     f"{row.get('gflop_per_s', float('nan')):>10.2f}"
                     f"{row[memory]:>10,.0f}")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """Throughput and per-token latency (p50 and p99) against the batch size, both axes logarithmic."""
    plt = pyplot()
    batches = [row["batch"] for row in report["batches"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    left.plot(batches, [row["tokens_per_s"] for row in report["batches"]], marker="o")
    left.set_ylabel("tokens / s")
    right.plot(batches, [row["latency_p50_ms"] for row in report["batches"]], marker="o", label="p50")
    right.plot(batches, [row["latency_p99_ms"] for row in report["batches"]], marker="s", label="p99")
    right.set_ylabel("ms per token (one engine step)")
    right.legend()
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"{Path(report['checkpoint']).name}: {report['family']}, {report['parameters']:,} parameters, "
                 f"{report['device']}")
    fig.tight_layout()
    return save_png(fig, path)
