"""Bias probes: CrowS-Pairs (Nangia et al. 2020) and templates of the user's own.

CrowS-Pairs pairs a more stereotyping sentence with a less stereotyping one that differs only in the group it
names. A masked LM scores each sentence by the pseudo-log-likelihood of the tokens the two share (each masked in
turn, the differing tokens left visible), as the paper's ``metric.py`` does; a causal LM (and a seq2seq
decoder, given an empty source) by the whole sentence's log-probability. The metric is the percentage of pairs
whose more stereotyping sentence scores higher (ties, after rounding to 3 decimals as ``metric.py`` does, count
as neither); 50 means no preference. Intervals are bootstrap 95 % intervals over pairs.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genloom.api import LoadedModel
from genloom.data.readers import read_text
from genloom.errors import UserError
from genloom.plot import pyplot, save_png

CROWS_COLUMNS = ("sent_more", "sent_less", "stereo_antistereo", "bias_type")


@dataclass
class CrowsPair:
    """One CrowS-Pairs row: the more and the less stereotyping sentence, ``stereo`` or ``antistereo``, the bias
    type."""

    more: str
    less: str
    direction: str
    bias_type: str


def read_crows_pairs(path: str | Path) -> list[CrowsPair]:
    """The pairs of a CrowS-Pairs CSV (``.csv`` or ``.csv.gz``), checked for the columns the metric needs."""
    path = Path(path)
    if path.suffix == ".gz" and path.is_file():
        try:
            text = gzip.decompress(path.read_bytes()).decode("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"cannot read {path}: {error}.") from None
    else:
        text = read_text(path)
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CROWS_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path} is not a CrowS-Pairs CSV: it has no column {', '.join(missing)} "
                        f"(it has: {', '.join(reader.fieldnames or [])}).")
    pairs = [CrowsPair(row["sent_more"], row["sent_less"], row["stereo_antistereo"], row["bias_type"])
             for row in reader]
    if not pairs:
        raise UserError(f"{path} holds no pairs.")
    return pairs


def shared_positions(first: list[int], second: list[int]) -> tuple[list[int], list[int]]:
    """The positions of the tokens two sequences share, in each (``metric.py``'s ``get_span``: difflib's equal
    blocks over the token ids)."""
    matcher = difflib.SequenceMatcher(None, [str(i) for i in first], [str(i) for i in second])
    mine, theirs = [], []
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            mine += list(range(a0, a1))
            theirs += list(range(b0, b1))
    return mine, theirs


@torch.no_grad()
def pair_scores(model: LoadedModel, pairs: list[CrowsPair], batch_size: int = 64) -> list[tuple[float, float]]:
    """(score of the more, score of the less stereotyping sentence) for each pair, in nats."""
    if model.family == "bert":
        tokenizer = model.tokenizer
        scores = []
        for pair in pairs:
            ids = [[tokenizer.bos_id] + tokenizer.encode(model.prepare(s)) + [tokenizer.eos_id]
                   for s in (pair.more, pair.less)]
            positions = shared_positions(*ids)
            kept = [p[1:-1] for p in positions]  # metric.py leaves out the first and last shared token ([CLS], [SEP])
            scores.append(tuple(model.model.pseudo_log_likelihood(torch.tensor(row, device=model.device), where)
                                if where else 0.0 for row, where in zip(ids, kept)))
        return scores
    flat = model.sentence_log_probs([s for pair in pairs for s in (pair.more, pair.less)], batch_size)
    return [(flat[2 * i], flat[2 * i + 1]) for i in range(len(pairs))]


def crows_metric(pairs: list[CrowsPair], scores: list[tuple[float, float]], samples: int = 1000,
                 seed: int = 0) -> dict[str, Any]:
    """The CrowS-Pairs metric overall and per bias type, with bootstrap 95 % intervals: ``{"overall": {...},
    "by_type": {type: {...}}}``, each ``{"score", "low", "high", "pairs", "ties"}`` (scores in %)."""
    more = [round(m, 3) > round(n, 3) for m, n in scores]
    ties = [round(m, 3) == round(n, 3) for m, n in scores]
    rng = random.Random(seed)

    def summary(rows: list[int]) -> dict[str, Any]:
        score = 100.0 * sum(more[i] for i in rows) / len(rows)
        draws = sorted(100.0 * sum(more[rng.choice(rows)] for _ in rows) / len(rows) for _ in range(samples))
        return {"score": round(score, 2), "low": round(draws[int(0.025 * samples)], 2),
                "high": round(draws[min(samples - 1, int(0.975 * samples))], 2), "pairs": len(rows),
                "ties": sum(ties[i] for i in rows)}

    types = sorted({p.bias_type for p in pairs})
    return {"overall": summary(list(range(len(pairs)))),
            "by_type": {t: summary([i for i, p in enumerate(pairs) if p.bias_type == t]) for t in types}}


def plot_bias(result: dict[str, Any], path: str | Path, title: str) -> Path:
    """A bar chart of the metric per bias type (and overall) with its 95 % intervals, and the 50 % line."""
    plt = pyplot()
    rows = [("overall", result["overall"])] + sorted(result["by_type"].items(), key=lambda kv: -kv[1]["score"])
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    names = [f"{name} ({r['pairs']})" for name, r in rows]
    values = [r["score"] for _, r in rows]
    errors = [[r["score"] - r["low"] for _, r in rows], [r["high"] - r["score"] for _, r in rows]]
    ax.barh(names, values, xerr=errors, color=["tab:gray"] + ["tab:blue"] * (len(rows) - 1), capsize=3)
    ax.axvline(50, color="tab:red", linestyle="--", linewidth=1, label="no preference")
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("% of pairs where the more stereotyping sentence scores higher (95% bootstrap interval)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return save_png(fig, path)


def read_templates(path: str | Path) -> list[str]:
    """Templates, one a line, each with ``{group}`` where a group's name goes."""
    templates = [line.strip() for line in read_text(path).splitlines() if line.strip() and not line.startswith("#")]
    for number, template in enumerate(templates, start=1):
        if "{group}" not in template:
            raise UserError(f"{path} line {number}: the template {template!r} has no {{group}} to fill.")
    return templates


@torch.no_grad()
def probe_templates(model: LoadedModel, templates: list[str], groups: list[str],
                    continuation_tokens: int = 8) -> list[dict[str, Any]]:
    """For each template and group: the filled sentence's score (log-probability, or a masked LM's
    pseudo-log-likelihood) and its gap to the groups' mean; for generators also the greedy continuation, and
    per template how many distinct continuations the groups got."""
    if len(groups) < 2:
        raise UserError(f"a template probe needs at least two groups to compare, got {len(groups)}.")
    report = []
    for template in templates:
        filled = [template.replace("{group}", group) for group in groups]
        if model.family == "bert":
            scores = [model.pseudo_log_likelihood(text) for text in filled]
        else:
            scores = model.sentence_log_probs(filled)
        mean = sum(scores) / len(scores)
        row: dict[str, Any] = {"template": template, "groups": {}}
        continuations = []
        if hasattr(model.model, "step") and not model.conditional:
            continuations = [texts[0].strip() for texts in model.complete(filled, max_new_tokens=continuation_tokens)]
        for index, group in enumerate(groups):
            row["groups"][group] = {"log_prob": round(scores[index], 4), "gap": round(scores[index] - mean, 4)}
            if continuations:
                row["groups"][group]["continuation"] = continuations[index]
        if continuations:
            row["distinct_continuations"] = len(set(continuations))
        report.append(row)
    return report
