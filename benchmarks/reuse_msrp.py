"""Paraphrase identification on the Microsoft Research Paraphrase Corpus with genloom reuse's measures.

    python benchmarks/reuse_msrp.py [--encoder minilm] [--finetune-seeds 4] [--workers 2] [--seed-cache DIR]

For each single measure of ``genloom reuse`` (word n-gram containment n = 1..5 and the LCS ratio, each taken
symmetric as the mean of both directions; winnowing coverage; the encoder's cosine) the threshold that gives the
best training accuracy is applied to the 1,725 test pairs. The combined classifier is ``genloom reuse-train``'s
logistic regression over the features of both directions, fitted on the 4,076 training pairs; a second combined
classifier adds the encoder's pair features as SentEval does ([|u − v|, u ⊙ v], Conneau et al. 2017). Last, the
encoder fine-tuned as a cross-encoder (``[CLS] a [SEP] b [SEP]`` with token types, the mean of the last states → a
linear layer): a seeded 10 % of the training pairs is held out (dev) and the rest fine-tunes ``--finetune-seeds``
cross-encoders (AdamW, lr 5e-5, batch 16, 4 epochs, 10 % warm-up then linear decay, the checkpoint's dropout of 0.1;
each pair in a random order of its texts, scored as the mean of both orders), whose mean log-odds decide. With
``--seed-cache DIR`` each seed's dev and test probabilities are kept there (named by encoder, lr, epochs and seed)
and reused by a later run, so more seeds can be added to an ensemble; empty it after changing the code. The learning
rate and epochs come from one run's dev accuracy by epoch (docs/reuse.md); nothing was chosen on test. Accuracy and
F1 of the paraphrase class on test; published figures on the same split.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_description, require_data, write_result  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from genloom.apps.reuse import FEATURES, Document, fit_verdict, load_encoder, pair_features  # noqa: E402
from genloom.data.batching import pad  # noqa: E402

PUBLISHED = {
    "majority_class": {"accuracy": 66.5, "f1": 79.9, "source": "Dolan & Brockett 2005 (all pairs 'paraphrase')"},
    "mihalcea2006": {"accuracy": 70.3, "f1": 81.3, "source": "Mihalcea, Corley & Strapparava, AAAI 2006"},
    "madnani2012": {"accuracy": 77.4, "f1": 84.1, "source": "Madnani, Tetreault & Chodorow, NAACL 2012"},
    "ji_eisenstein2013": {"accuracy": 80.4, "f1": 85.9, "source": "Ji & Eisenstein, EMNLP 2013"},
}


def read_pairs(path: Path) -> tuple[list[tuple[str, str]], np.ndarray]:
    pairs, labels = [], []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        quality, _, _, first, second = line.split("\t")
        pairs.append((first, second))
        labels.append(int(quality))
    return pairs, np.array(labels)


def features(pairs: list[tuple[str, str]], encoder) -> tuple[list[dict[str, float]], np.ndarray | None]:
    """Per pair: each measure in both directions (suffix _ab, _ba) and symmetric (their mean); the encoder's
    [|u − v|, u ⊙ v] rows."""
    rows, senteval = [], []
    vectors = encoder.vectors([text for pair in pairs for text in pair]) if encoder else None  # (2N, C)
    for i, (first, second) in enumerate(pairs):
        a, b = Document("a", first), Document("b", second)
        u, v = (vectors[2 * i:2 * i + 1], vectors[2 * i + 1:2 * i + 2]) if vectors is not None else (None, None)
        ab = pair_features(a, b, (u, v) if u is not None else None)[0][0]
        ba = pair_features(b, a, (v, u) if u is not None else None)[0][0]
        row = {}
        for name in ab:
            row[name] = (ab[name] + ba[name]) / 2
            row[f"{name}_ab"], row[f"{name}_ba"] = ab[name], ba[name]
        row["length_ratio"] = min(len(a.words), len(b.words)) / max(len(a.words), len(b.words), 1)
        rows.append(row)
        if u is not None:
            senteval.append(torch.cat([(u - v).abs(), u * v], 1)[0].numpy())
    return rows, (np.array(senteval) if senteval else None)


def scores(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    tp = int(((predicted == 1) & (gold == 1)).sum())
    precision = tp / max(int((predicted == 1).sum()), 1)
    recall = tp / max(int((gold == 1).sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": round(100 * float((predicted == gold).mean()), 1), "f1": round(100 * f1, 1)}


def best_threshold(values: np.ndarray, labels: np.ndarray) -> float:
    candidates = np.unique(values)
    accuracy = [((values >= t) == labels).mean() for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


class CrossEncoder(torch.nn.Module):
    """A BERT reading both texts at once; the mean of its last states → paraphrase / not."""

    def __init__(self, bert: torch.nn.Module):
        super().__init__()
        self.bert = bert
        self.drop = torch.nn.Dropout(0.1)
        self.head = torch.nn.Linear(bert.config.dim, 2)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        states = self.bert.encode(tokens, mask, segments)  # (B, T, C)
        pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, C)
        return self.head(self.drop(pooled))  # (B, 2)


def pair_batch(model, pairs: list[tuple[str, str]], limit: int = 64) -> tuple[torch.Tensor, ...]:
    """[CLS] a [SEP] b [SEP], each text cut at ``limit`` tokens; token types 0 then 1."""
    tok = model.tokenizer
    rows, types = [], []
    for a, b in pairs:
        ids_a = tok.encode(model.prepare(a))[:limit]
        ids_b = tok.encode(model.prepare(b))[:limit]
        rows.append([tok.bos_id] + ids_a + [tok.eos_id] + ids_b + [tok.eos_id])
        types.append([0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1))
    tokens, mask = pad(rows, tok.pad_id)
    segments, _ = pad(types, 0)
    return tokens, mask, segments


def finetune(encoder_name: str, train_pairs, train_y, evaluated: dict[str, list], epochs: int, lr: float,
             seed: int) -> dict[str, np.ndarray]:
    """Fine-tune the encoder as a cross-encoder on the training pairs, each pair shown in a random order of its two
    texts (paraphrase is symmetric); returns, for each set of ``evaluated`` pairs, the paraphrase probabilities,
    the mean of both orders."""
    import genloom

    torch.manual_seed(seed)
    model = genloom.load(encoder_name, device="cpu")
    net = CrossEncoder(model.model)
    batch, steps = 16, epochs * ((len(train_pairs) + 15) // 16)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    warmup = steps // 10
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / (steps - warmup)))
    rng = np.random.default_rng(seed)
    step, started = 0, time.time()
    for epoch in range(epochs):
        net.train()
        order = rng.permutation(len(train_pairs))
        for start in range(0, len(order), batch):
            chosen = order[start:start + batch]
            pairs = [train_pairs[i][::-1] if rng.random() < 0.5 else train_pairs[i] for i in chosen]
            loss = torch.nn.functional.cross_entropy(net(*pair_batch(model, pairs)), torch.tensor(train_y[chosen]))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            if step % 100 == 0:
                print(f"seed {seed}: step {step}/{steps}, loss {loss.item():.3f}, {time.time() - started:.0f} s",
                      file=sys.stderr, flush=True)
    net.eval()

    @torch.no_grad()
    def probabilities(pairs: list[tuple[str, str]]) -> np.ndarray:
        out = [torch.softmax(net(*pair_batch(model, pairs[s:s + 64])), 1)[:, 1] for s in range(0, len(pairs), 64)]
        return torch.cat(out).numpy()

    return {name: (probabilities(pairs) + probabilities([(b, a) for a, b in pairs])) / 2
            for name, pairs in evaluated.items()}


def held_out(count: int, share: float = 0.1, seed: int = 123) -> tuple[np.ndarray, np.ndarray]:
    """(fine-tuning rows, development rows) of the training pairs: a seeded 10 % held out to choose settings on."""
    order = np.random.default_rng(seed).permutation(count)
    cut = int(round(share * count))
    return np.sort(order[cut:]), np.sort(order[:cut])


def finetuned_ensemble(args, train_pairs, train_y, test_pairs, test_y) -> dict:
    """Cross-encoders fine-tuned with ``--finetune-seeds`` seeds (each in its own process, ``--workers`` at once)
    on 90 % of the training pairs; their mean log-odds decide. Scores on the held-out 10 % and on test."""
    tune, dev = held_out(len(train_pairs))
    seeds = list(range(args.finetune_seeds))
    workers = max(1, min(args.workers, len(seeds)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    started = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.seed_cache or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        setting = f"{Path(args.encoder).name}-lr{args.finetune_lr:g}-e{args.finetune_epochs}"
        kept = {seed: folder / f"{setting}-seed{seed}.npz" for seed in seeds}
        done = {seed: dict(np.load(path)) for seed, path in kept.items() if path.exists()}
        waiting, running = [seed for seed in seeds if seed not in done], []
        cached = set(done)
        if cached:
            print(f"seeds {sorted(cached)} read from {folder}", file=sys.stderr)
        while waiting or running:
            while waiting and len(running) < workers:
                seed = waiting.pop(0)
                out = kept[seed]
                command = [sys.executable, __file__, "--finetune-worker", str(seed), "--worker-out", str(out),
                           "--threads", str(threads), "--encoder", args.encoder,
                           "--finetune-epochs", str(args.finetune_epochs), "--finetune-lr", str(args.finetune_lr)]
                running.append((seed, subprocess.Popen(command), out))
            seed, process, out = running.pop(0)
            if process.wait() != 0:
                for _, other, _ in running:
                    other.kill()
                sys.exit(f"the fine-tuning worker of seed {seed} failed (exit status {process.returncode})")
            done[seed] = dict(np.load(out))
    dev_y = train_y[dev]
    per_seed = {str(seed): {"dev": scores((d["dev"] >= 0.5).astype(int), dev_y),
                            "test": scores((d["test"] >= 0.5).astype(int), test_y)} for seed, d in done.items()}

    def log_odds(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    dev_votes = np.mean([log_odds(d["dev"]) for d in done.values()], 0)
    test_votes = np.mean([log_odds(d["test"]) for d in done.values()], 0)
    return {**scores((test_votes >= 0).astype(int), test_y),
            "dev": scores((dev_votes >= 0).astype(int), dev_y), "seeds": per_seed,
            "epochs": args.finetune_epochs, "lr": args.finetune_lr, "fine_tuning_pairs": len(tune),
            "dev_pairs": len(dev), "seconds": round(time.time() - started, 1),
            "seeds_trained_in_this_run": sorted(set(seeds) - cached)}


def finetune_worker(args) -> None:
    """One seed's fine-tuning (a process of ``finetuned_ensemble``): probabilities on dev and test to a .npz."""
    torch.set_num_threads(args.threads)
    folder = require_data("msrp")
    train_pairs, train_y = read_pairs(folder / "msr_paraphrase_train.txt")
    test_pairs, _ = read_pairs(folder / "msr_paraphrase_test.txt")
    tune, dev = held_out(len(train_pairs))
    out = finetune(args.encoder, [train_pairs[i] for i in tune], train_y[tune],
                   {"dev": [train_pairs[i] for i in dev], "test": test_pairs},
                   args.finetune_epochs, args.finetune_lr, args.finetune_worker)
    partial = Path(args.worker_out).with_suffix(".partial.npz")  # a killed worker leaves no file a cache would read
    np.savez(partial, **out)
    os.replace(partial, args.worker_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="minilm", help="minilm, a BERT/VAE checkpoint, or none")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--finetune-seeds", type=int, default=4, help="cross-encoders in the ensemble (0: none)")
    parser.add_argument("--finetune-epochs", type=int, default=4)
    parser.add_argument("--finetune-lr", type=float, default=5e-5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="seeds fine-tuned at once")
    parser.add_argument("--seed-cache", default=None, help="keep and reuse each seed's probabilities in this folder")
    parser.add_argument("--finetune-worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.finetune_worker is not None:
        finetune_worker(args)
        return
    started = time.time()
    folder = require_data("msrp")
    train_pairs, train_y = read_pairs(folder / "msr_paraphrase_train.txt")
    test_pairs, test_y = read_pairs(folder / "msr_paraphrase_test.txt")
    encoder = load_encoder(args.encoder, args.device)
    train_rows, train_se = features(train_pairs, encoder)
    test_rows, test_se = features(test_pairs, encoder)
    results = {}
    for name in [f for f in FEATURES if f in train_rows[0]]:
        values = np.array([r[name] for r in train_rows])
        threshold = best_threshold(values, train_y)
        predicted = (np.array([r[name] for r in test_rows]) >= threshold).astype(int)
        shown = "cosine_" + args.encoder if name == "semantic" else name
        results[shown] = {**scores(predicted, test_y), "threshold": round(threshold, 4)}
    names = sorted(train_rows[0])
    model = fit_verdict(train_rows, [str(y) for y in train_y], names)
    predicted = model.probabilities(model.rows(test_rows)).argmax(1)
    results["combined"] = {**scores(predicted, test_y), "features": len(names),
                           "train_cv_accuracy": round(100 * model.about["cv_accuracy"], 1)}
    if train_se is not None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_score
        from sklearn.preprocessing import StandardScaler

        lexical = np.array([[r[n] for n in names] for r in train_rows])
        x_train = np.concatenate([lexical, train_se], 1)
        x_test = np.concatenate([np.array([[r[n] for n in names] for r in test_rows]), test_se], 1)
        scaler = StandardScaler().fit(x_train)
        best = None
        for c in (0.01, 0.03, 0.1, 0.3, 1.0):  # chosen by 5-fold accuracy on train
            cv = cross_val_score(LogisticRegression(C=c, max_iter=3000), scaler.transform(x_train), train_y, cv=5)
            if best is None or cv.mean() > best[1]:
                best = (c, cv.mean())
        regression = LogisticRegression(C=best[0], max_iter=3000).fit(scaler.transform(x_train), train_y)
        predicted = regression.predict(scaler.transform(x_test))
        results["combined_with_senteval_features"] = {**scores(predicted, test_y), "features": x_train.shape[1],
                                                      "c": best[0], "train_cv_accuracy": round(100 * best[1], 1)}
    if args.finetune_seeds and args.encoder != "none":
        results[f"{args.encoder}_finetuned_cross_encoders"] = finetuned_ensemble(args, train_pairs, train_y,
                                                                               test_pairs, test_y)
    print(f"{'measure':<34} {'accuracy':>8} {'F1':>6}")
    for name, figures in results.items():
        print(f"{name:<34} {figures['accuracy']:>8.1f} {figures['f1']:>6.1f}")
    for name, figures in PUBLISHED.items():
        print(f"{'published: ' + name:<34} {figures['accuracy']:>8.1f} {figures['f1']:>6.1f}")
    target = PUBLISHED["ji_eisenstein2013"]
    best_name = max(results, key=lambda n: results[n]["accuracy"])
    met = results[best_name]["accuracy"] >= target["accuracy"] and results[best_name]["f1"] >= target["f1"]
    print(f"best: {best_name}; target ≥ {target['accuracy']} accuracy and ≥ {target['f1']} F1: "
          f"{'met' if met else 'not met'}")
    write_result("reuse_msrp", False, {
        "benchmark": "reuse_msrp",
        "command": "python benchmarks/reuse_msrp.py" + (f" --encoder {args.encoder}" if args.encoder != "minilm"
                                                         else ""),
        "device": device_description(args.device), "wall_s": round(time.time() - started, 1),
        "protocol": "MSRP 4,076 train / 1,725 test pairs; single measures: the threshold of best train accuracy; "
                    "combined: logistic regression fitted on train; accuracy and F1 (paraphrase class) on test, %",
        "results": results, "published": PUBLISHED, "target_met": met})


if __name__ == "__main__":
    main()
