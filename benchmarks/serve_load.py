"""Load on `genloom serve`: concurrent streaming clients on loopback, with and without continuous batching.

    python benchmarks/serve_load.py [--device cpu] [--new-tokens 64] [--requests 2] [--quick]

The server is `genloom serve` in its own process, serving a GPT of the size benchmarks/lm_speed.py uses (6 layers,
width 384, 6 heads, context 512, a BPE vocabulary of 8,192 trained on Tiny Shakespeare; weights after one training
step, since speed does not depend on them). Each client sends ``--requests`` streaming completions one after the
other (a 16-token prompt, up to ``--new-tokens`` new tokens by sampling; the barely trained model seldom ends a
text early) and measures
the time to the first token and between tokens. Rounds: 1, 8, 32 and 64 clients with batching (max batch 64);
32 clients without batching (max batch 1, the others wait in the queue) for the batching gain (target ≥ 4× on
CPU); 64 clients against a capacity of 16 rows + 16 waiting, where the only errors may be 429s; then 100 clients
that disconnect mid-stream, after which the server's active requests must return to 0 and its memory to its
baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, device_description, require_data, write_result  # noqa: E402

import httpx  # noqa: E402

import genloom  # noqa: E402

MODEL = {"dim": 384, "num_layers": 6, "num_heads": 6, "context_length": 512, "dropout": 0.0}  # lm_speed's GPT


def make_checkpoint(folder: Path, device: str) -> Path:
    """A GPT of lm_speed's size with a BPE-8192 tokenizer, after one training step."""
    text = gzip.decompress((require_data("tinyshakespeare") / "input.txt.gz").read_bytes()).decode("utf-8")
    corpus = folder / "shakespeare.txt"
    corpus.write_text(text, encoding="utf-8")
    genloom.train({"family": "gpt", "out_dir": str(folder / "gpt"),
                   "data": {"train": str(corpus), "batching": "stream"},
                   "tokenizer": {"kind": "bpe", "vocab_size": 8192}, "model": MODEL,
                   "train": {"max_steps": 1, "batch_size": 2, "bptt": 64, "device": device, "log_every": 100,
                             "eval_every": None}})
    return folder / "gpt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`genloom serve` in a child process, serving ``checkpoints`` (``NAME=PATH`` each)."""

    def __init__(self, checkpoints: list[str], device: str, *options: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "genloom", "serve", *checkpoints, "--port", str(self.port),
                   "--device", device, *options]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {self.process.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def active(self) -> int:
        return sum(m["active_requests"] for m in httpx.get(f"{self.url}/health").json()["models"].values())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def one_stream(client: httpx.AsyncClient, url: str, body: dict, record: dict, cut_after: int | None = None):
    """One streamed completion: time to first token, gaps between tokens, and its status."""
    started = time.perf_counter()
    last = None
    async with client.stream("POST", f"{url}/v1/completions", json=body) as answer:
        record["status"].append(answer.status_code)
        if answer.status_code != 200:
            await answer.aread()
            return
        pieces = 0
        async for line in answer.aiter_lines():
            if not line.startswith("data: {"):
                continue
            now = time.perf_counter()
            if last is None:
                record["ttft"].append(now - started)
            else:
                record["gaps"].append(now - last)
            last = now
            pieces += 1
            if cut_after is not None and pieces >= cut_after:
                return  # leaving the block closes the connection mid-stream


async def round_of(url: str, clients: int, requests: int, body: dict, seconds: float) -> dict:
    """``clients`` concurrent clients, each sending ``requests`` streams one after the other (stopping early past
    ``seconds``)."""
    record = {"ttft": [], "gaps": [], "status": []}
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0), limits=limits) as client:
        async def client_loop(index: int) -> None:
            for r in range(requests):
                if time.monotonic() > deadline:
                    return
                await one_stream(client, url, dict(body, seed=index * 1000 + r), record)
        await asyncio.gather(*(client_loop(i) for i in range(clients)))
    return record


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)  # ms


def measure(server: Server, clients: int, requests: int, body: dict, seconds: float) -> dict:
    tokens_before = server.metric("genloom_generated_tokens_total")
    started = time.perf_counter()
    record = asyncio.run(round_of(server.url, clients, requests, body, seconds))
    wall = time.perf_counter() - started
    tokens = server.metric("genloom_generated_tokens_total") - tokens_before
    statuses = {str(s): record["status"].count(s) for s in sorted(set(record["status"]))}
    row = {"clients": clients, "requests": len(record["status"]), "statuses": statuses,
           "tokens_per_s": round(tokens / wall, 1), "wall_s": round(wall, 1),
           "ttft_p50_ms": percentile(record["ttft"], 0.5), "ttft_p99_ms": percentile(record["ttft"], 0.99),
           "inter_token_p50_ms": percentile(record["gaps"], 0.5), "inter_token_p99_ms": percentile(record["gaps"], 0.99),
           "errors_other_than_429": sum(n for s, n in statuses.items() if s not in ("200", "429"))}
    print(f"{clients:>3} clients: {row['tokens_per_s']:>8} tokens/s, TTFT p50 {row['ttft_p50_ms']} ms p99 "
          f"{row['ttft_p99_ms']} ms, between tokens p50 {row['inter_token_p50_ms']} ms p99 "
          f"{row['inter_token_p99_ms']} ms, statuses {statuses}", flush=True)
    return row


def disconnects(server: Server, clients: int, body: dict) -> dict:
    """``clients`` streams that each read a few tokens and hang up; then the active requests and memory."""
    before = server.rss_mib()
    record = {"ttft": [], "gaps": [], "status": []}

    async def run() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(300.0),
                                     limits=httpx.Limits(max_connections=clients + 8)) as client:
            await asyncio.gather(*(one_stream(client, server.url, dict(body, seed=i), record, cut_after=3)
                                   for i in range(clients)))
    asyncio.run(run())
    deadline = time.monotonic() + 30
    while server.active() and time.monotonic() < deadline:
        time.sleep(0.05)
    idle_after = time.monotonic() + 30 - deadline
    after = server.rss_mib()
    row = {"clients": clients, "active_after": server.active(), "seconds_to_idle": round(idle_after, 2),
           "rss_before_mib": round(before, 1), "rss_after_mib": round(after, 1),
           "rss_growth_pct": round(100 * (after - before) / before, 1)}
    print(f"{clients} disconnects: active requests {row['active_after']} after {row['seconds_to_idle']} s, RSS "
          f"{row['rss_before_mib']} → {row['rss_after_mib']} MiB", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2, help="streams each client sends, one after the other")
    parser.add_argument("--seconds", type=float, default=240, help="the most time one round may take")
    parser.add_argument("--quick", action="store_true", help="8 new tokens, 1 request per client")
    args = parser.parse_args()
    if args.quick:
        args.new_tokens, args.requests = 8, 1
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = make_checkpoint(Path(folder), args.device)
        prompt = "First Citizen: Before we proceed any further, hear me speak. All: Speak"
        body = {"model": "gpt", "prompt": prompt, "max_tokens": args.new_tokens,
                "temperature": 1.0, "stream": True}
        results: dict[str, dict] = {}
        server = Server([f"gpt={checkpoint}"], args.device)
        try:
            measure(server, 2, 1, dict(body, max_tokens=4), args.seconds)  # warm-up
            for clients in (1, 8, 32, 64):
                results[f"batched_{clients}"] = measure(server, clients, args.requests, body, args.seconds)
            results["disconnect_100"] = disconnects(server, 100, body)
        finally:
            server.stop()
        server = Server([f"gpt={checkpoint}"], args.device, "--max-batch", "1", "--max-waiting", "64")
        try:
            results["unbatched_32"] = measure(server, 32, args.requests, body, args.seconds)
        finally:
            server.stop()
        server = Server([f"gpt={checkpoint}"], args.device, "--max-batch", "16", "--max-waiting", "16")
        try:
            results["over_capacity_64"] = measure(server, 64, args.requests, body, args.seconds)
        finally:
            server.stop()
    gain = results["batched_32"]["tokens_per_s"] / results["unbatched_32"]["tokens_per_s"]
    results["batching_gain_32"] = {"ratio": round(gain, 2)}
    print(f"batching gain at 32 clients: {gain:.2f}× (target ≥ 4× on CPU)")
    write_result("serve_load", args.quick, {
        "device": device_description(args.device), "wall_s": round(time.perf_counter() - started, 1),
        "protocol": f"genloom serve (own process) with a GPT of lm_speed's size (6x384, ctx 512, BPE 8192); loopback "
                    f"streaming clients, {args.requests} completions each of a 16-token prompt and up to "
                    f"{args.new_tokens} sampled tokens; tokens/s from the server's own counter; batched: max batch "
                    f"64; unbatched: max batch 1 (others queue); over capacity: 16 rows + 16 waiting",
        "results": results, "published": {},
        "target": {"cpu": "batching gain at 32 clients >= 4x; no errors below capacity, only 429 above; active "
                          "requests 0 and memory at baseline after 100 disconnects"},
        "threads": os.environ.get("OMP_NUM_THREADS", "default")})


if __name__ == "__main__":
    main()
