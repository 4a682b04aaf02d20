"""What each ``genloom`` command does, given the arguments ``cli.py`` parsed. ``COMMANDS`` maps a command's
name to its function."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch
from tqdm import tqdm

from genloom.api import export_huggingface, load, train
from genloom.apps import bias, latent, profile
from genloom.apps.attention_plot import plot_attention
from genloom.apps.demo import run_demo
from genloom.apps.explain import METHODS, explain
from genloom.apps.explain_report import explanation_json, plot_explanation, write_html
from genloom.apps.reuse import (FEATURES, LEXICAL, VerdictModel, check_settings, detect, fit_verdict,
                                labelled_features, load_encoder, read_collection, results_json)
from genloom.apps.reuse_report import write_report
from genloom.checkpoint import atomic_write, check_writable_file, check_writable_folder, growing_file
from genloom.config import DataConfig, RunConfig, TokenizerConfig, TrainConfig, describe, load_run_config, word_split
from genloom.data.readers import read_lines, read_text, read_tsv
from genloom.decoding.config import GenerationConfig
from genloom.errors import UserError
from genloom.models import FAMILIES
from genloom.models.loading import quantize_checkpoint
from genloom.recipes import CHECKS
from genloom.recipes.runs import family_module
from genloom.safety import KINDS, offensive_spans, redact
from genloom.training import distributed


def _generation_options(args: argparse.Namespace) -> dict:
    method = args.method or ("beam" if args.beam is not None else args.default_method)
    return dict(method=method, max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens,
                temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                repetition_penalty=args.repetition_penalty, no_repeat_ngram_size=args.no_repeat_ngram,
                num_beams=args.default_beams if args.beam is None else args.beam,
                length_penalty=args.length_penalty, coverage_penalty=args.coverage_penalty,
                num_return_sequences=args.n_best, stop_strings=args.stop, seed=args.seed, no_unk=args.no_unk,
                ban_words=args.ban_words + (_phrases(args.ban_words_file) if args.ban_words_file else []),
                bias=dict(_bias(item) for item in args.bias), redact=args.redact, safety=args.safety)


def _phrases(path: str) -> list[str]:
    """The phrases of a ban-list file, one a line (blank lines and lines starting with # skipped)."""
    phrases = [line for line in read_lines(path) if not line.startswith("#")]
    if not phrases:
        raise UserError(f"--ban-words-file {path} holds no phrase.")
    return phrases


def _bias(item: str) -> tuple[str, float]:
    phrase, _, value = item.rpartition("=")
    try:
        return phrase, float(value)
    except ValueError:
        raise UserError(f"--bias {item!r} must look like PHRASE=VALUE, for example \"the cat=+2.0\".") from None


def cmd_train(args: argparse.Namespace) -> int:
    summary = train(args.config, overrides=args.overrides, resume=args.resume, device=args.device)
    if distributed.rank() != 0:
        return 0
    figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())
    print(f"done: {figures}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    options = _generation_options(args)
    if args.num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {args.num_samples}.")
    model = load(args.checkpoint, device=args.device)
    cfg = GenerationConfig(**options)  # checked once, before anything is decoded
    prompts = read_lines(args.input) if args.input else [args.prompt or ""]
    if args.stream:
        for prompt in prompts:
            for sample in range(args.num_samples):
                options_for = dict(options, seed=None if options["seed"] is None else options["seed"] + sample)
                if prompt:
                    print(model.redact_input(prompt, cfg), end="", flush=True)
                pieces = []
                for piece in model.generate(prompt, **options_for):
                    print(piece, end="", flush=True)
                    pieces.append(piece)
                print(flush=True)
                _flag_note("".join(pieces), options)
        return 0
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}.")

    def decode(batch: list[str]) -> list[list[str]]:
        rows = model.complete([p for p in batch for _ in range(args.num_samples)], **options)
        shown = [model.redact_input(p, cfg) for p in batch]
        for row in rows:
            for text in row:
                _flag_note(text, options)
        return [[shown[i] + text for row in rows[i * args.num_samples:(i + 1) * args.num_samples] for text in row]
                for i in range(len(batch))]

    decode_in_order(prompts, decode, args.batch_size, lambda i, lines: _write_lines(sys.stdout, lines), "prompts")
    return 0


def _flag_note(text: str, options: dict) -> None:
    """With ``--safety flag``, one line on stderr naming the offensive words an output holds."""
    if options.get("safety") == "flag":
        found = [text[f.start:f.end] for f in offensive_spans(text)]
        if found:
            print(f"genloom: flagged (offensive language): {', '.join(found)}", file=sys.stderr, flush=True)


def decode_in_order(inputs: list[str], decode: Callable[[list[str]], list[Any]], batch_size: int,
                    write: Callable[[int, Any], None], unit: str) -> None:
    """Decode ``inputs`` in batches and ``write(index, result)`` each one in input order, as soon as it and every
    input before it are done; a progress bar with inputs/s and the time left shows on a terminal (stderr).

    Inputs are taken in windows of four batches, each sorted by length so a batch wastes little on padding (as
    fairseq's interactive ``--buffer-size``); output order is always input order.
    """
    bar = tqdm(total=len(inputs), unit=f" {unit}", file=sys.stderr, disable=None if len(inputs) > 1 else True,
               dynamic_ncols=True)
    done: dict[int, Any] = {}
    written = 0
    for start in range(0, len(inputs), 4 * batch_size):
        window = sorted(range(start, min(start + 4 * batch_size, len(inputs))), key=lambda i: -len(inputs[i]))
        for first in range(0, len(window), batch_size):
            rows = window[first:first + batch_size]
            done.update(zip(rows, decode([inputs[i] for i in rows])))
            bar.update(len(rows))
            while written in done:
                write(written, done.pop(written))
                written += 1
    bar.close()


def _write_lines(out: TextIO, lines: list[str]) -> None:
    out.write("".join(line + "\n" for line in lines))
    out.flush()


def cmd_evaluate(args: argparse.Namespace) -> int:
    model = load(args.checkpoint, device=args.device)
    options = _generation_options(args) if model.conditional else {}
    result = model.evaluate(args.data, target=args.target, iw_samples=args.iw_samples, **options)
    if args.json:
        print(json.dumps(result))
        return 0
    if "elbo" in result:
        print(f"NLL {result['nll']:.2f} nats/sentence (importance-weighted, {result['iw_samples']} samples), "
              f"perplexity {result['perplexity']:.2f}, {result['sentences']:,} sentences, {result['tokens']:,} tokens")
        print(f"ELBO {result['elbo']:.2f} = −(reconstruction {result['reconstruction']:.2f} + KL {result['kl']:.2f}); "
              f"mutual information {result['mutual_info']:.3f} nats; active units {result['active_units']}")
        print(f"protocol: {result['protocol']}")
        return 0
    auxiliary = "".join(f", {key} {result[key]:.4f}" for key in result if key in ("nll", "coverage_loss"))
    print(f"loss {result['loss']:.4f} nats/token{auxiliary}, perplexity {result['perplexity']:.2f} (exp of the NLL), "
          f"{result['tokens']:,} tokens (EOS included)")
    if "bleu" in result:
        print(f"decoding: {result['decoding']}")
        print(f"BLEU {result['bleu']:.2f}  ({result['signature']})")
        print(f"chrF {result['chrf']:.2f}  ({result['chrf_signature']})")
        print(f"ROUGE-1 {100 * result['rouge1']:.2f}  ROUGE-2 {100 * result['rouge2']:.2f}  "
              f"ROUGE-L {100 * result['rougeL']:.2f}  ({result['rouge_signature']})")
    return 0


def cmd_transduce(args: argparse.Namespace) -> int:
    options = _generation_options(args)
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}.")
    if args.output:
        check_writable_file(args.output, "--output")
    if args.attention_plot:
        check_writable_file(args.attention_plot, "--attention-plot")
    model = load(args.checkpoint, device=args.device)
    if not model.conditional:
        raise UserError(f"{args.checkpoint} holds a '{model.family}' model; '{args.command}' needs a seq2seq checkpoint.")
    if args.input:
        inputs = read_lines(args.input)
    else:
        inputs = [line.strip() for line in sys.stdin if line.strip()]
        if not inputs:
            raise UserError("no input: give --input FILE or lines on stdin.")
    plotted: list[Any] = []  # kept only to draw their attention

    def decode(batch: list[str]) -> list[Any]:
        return model.transduce(batch, **options)

    def run(out: TextIO) -> None:
        def write(index: int, result: Any) -> None:
            _write_lines(out, [result.text.strip()])
            if result.flagged:
                print(f"genloom: input {index + 1}: flagged (offensive language): {', '.join(result.flagged)}",
                      file=sys.stderr, flush=True)
            if args.attention_plot:
                plotted.append(result)
        decode_in_order(inputs, decode, args.batch_size, write, "inputs")

    if args.output:
        with growing_file(args.output) as out:
            run(out)
    else:
        run(sys.stdout)
    if args.attention_plot:
        plot = Path(args.attention_plot)
        for number, result in enumerate(plotted, start=1):
            if result.attention is None:
                raise UserError("this model has no attention to plot (model.attention is none).")
            path = plot if len(plotted) == 1 else plot.with_name(f"{plot.stem}-{number}{plot.suffix}")
            plot_attention(result.attention, result.source_tokens, result.target_tokens, path,
                           title=f"{args.command}: input {number}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    run = load_run_config(args.config, args.overrides)
    family_module(run.family)  # an unknown family is refused with the known ones named
    CHECKS[run.family](run, resume=args.resume, read_data=True)  # the checks train makes, and its data read the same way
    split = f" ({word_split(run.tokenizer)} split)" if run.tokenizer.kind == "word" else ""
    print(f"{args.config}: OK ({run.family}, {run.tokenizer.kind} tokenizer{split}, {run.train.optimizer} "
          f"lr {run.train.lr}, out_dir {run.out_dir})")
    return 0


def cmd_fill_mask(args: argparse.Namespace) -> int:
    model = load(args.checkpoint, device=args.device)
    for number, fillers in enumerate(model.fill_mask(args.text, args.top_k), start=1):
        print(f"[MASK] {number}:")
        for token, probability in fillers:
            print(f"  {probability:7.4f}  {token}")
    if args.score:
        print(f"pseudo-log-likelihood: {model.pseudo_log_likelihood(args.text.replace('[MASK]', '')):.3f} nats")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    options = _generation_options(args)
    methods = tuple(m.strip() for m in args.methods.split(",")) if args.methods else METHODS
    for path, option in ((args.html, "--html"), (args.plot, "--plot")):
        if path:
            check_writable_file(path, option)
    model = load(args.checkpoint, device=args.device)
    if (args.source is not None) != (model.conditional or model.family == "vae"):
        wanted = "--source" if model.conditional or model.family == "vae" else "--prompt"
        raise UserError(f"{args.checkpoint} holds a '{model.family}' model: give {wanted}.")
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}.")
    result = explain(model, args.prompt if args.prompt is not None else args.source, methods, args.steps, **options)
    if args.html:
        write_html(result, args.html, title=f"genloom explain: {Path(args.checkpoint).name}")
    if args.plot:
        plot_explanation(result, args.plot)
    if args.json:
        print(json.dumps(explanation_json(result)))
        return 0
    print("generated: " + " ".join(result.generated))
    for i, token in enumerate(result.generated):
        print(f"{token!r} (log P {result.log_probs[i]:.3f})")
        for method, rows in result.attributions.items():
            visible = [(j, v) for j, v in enumerate(rows[i]) if v == v]  # NaN: out of reach
            if not visible:
                continue
            top = sorted(visible, key=lambda item: -abs(item[1]))[: args.top]
            shown = ", ".join(f"{result.context[j]!r} {v:+.3f}" for j, v in top)
            print(f"  {method:<21} {shown}")
    if result.completeness_error:
        print(f"integrated gradients: completeness error at most {max(result.completeness_error):.2%}")
    return 0


def cmd_reuse(args: argparse.Namespace) -> int:
    check_settings(args.top, args.k, args.window)
    if args.out:
        check_writable_file(args.out, "--out")
    verdict = VerdictModel.load(args.verdict_model) if args.verdict_model else None
    sources, notes = read_collection(args.sources, "--sources")
    suspects, more = read_collection(args.suspects, "--suspects")
    for note in notes + more:
        print(f"note: {note}", file=sys.stderr)
    encoder = load_encoder(args.encoder, args.device)
    results = detect(suspects, sources, encoder, verdict, args.top, args.exhaustive, args.k, args.window,
                     progress=len(suspects) * len(sources) > 50)
    if args.out:
        write_report(results, args.out)
    if args.json:
        print(json.dumps({"sources": len(sources), "suspects": len(suspects), "encoder": args.encoder,
                          "results": results_json(results)}))
        return 0
    for result in results:
        print(f"{result.suspect.name}: " + (f"{len(result.matches)} source(s) reused" if result.matches
                                             else "no reuse found"))
        for m in result.matches:
            f = m.features
            semantic = f" semantic {f['semantic']:.2f}" if "semantic" in f else ""
            print(f"  {m.score:.2f} {m.verdict:<15} {m.source.name}  containment-3 {f['containment_3']:.2f} "
                  f"lcs {f['lcs']:.2f} coverage {f['coverage']:.2f}{semantic}, {len(m.passages)} passage(s)")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def cmd_reuse_train(args: argparse.Namespace) -> int:
    check_writable_file(args.out, "out")
    rows = read_tsv(args.pairs, columns=3)
    if any(not a or not b or not label for a, b, label in rows):
        raise UserError(f"{args.pairs} has a line with an empty field; each needs suspect, source and label.")
    encoder = load_encoder(args.encoder, args.device)
    values = labelled_features([(a, b) for a, b, _ in rows], encoder, progress=True)
    model = fit_verdict(values, [label for _, _, label in rows], FEATURES if encoder else LEXICAL,
                        {"trained_on": str(args.pairs), "encoder": args.encoder})
    model.save(args.out)
    about = model.about
    print(f"{about['pairs']} pairs: " + ", ".join(f"{c} {n}" for c, n in about["class_counts"].items()))
    print(f"{about['cv_folds']}-fold cross-validated accuracy {about['cv_accuracy']:.1%}")
    print(f"wrote {args.out}")
    return 0


def cmd_vae(args: argparse.Namespace) -> int:
    model = load(args.checkpoint, device=args.device)
    model.latent_model()
    if args.use == "plot":
        out = check_writable_file(args.out or Path(args.checkpoint) / "latent.png", "--out")
        path = latent.plot_latent(model, read_lines(args.data), out)
        print(f"wrote {path}")
        return 0
    options = _generation_options(args)
    if args.use == "sample":
        print("\n".join(latent.sample(model, args.num_samples, **options)))
    elif args.use == "reconstruct":
        texts = read_lines(args.input) if args.input else [line.strip() for line in sys.stdin if line.strip()]
        if not texts:
            raise UserError("no input: give --input FILE or sentences on stdin.")
        print("\n".join(latent.reconstruct(model, texts, **options)))
    else:
        for t, text in latent.interpolate(model, args.first, args.last, args.steps, **options):
            print(f"{t:.2f}  {text}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    check_writable_folder(args.out_dir, "the export folder")
    path = export_huggingface(load(args.checkpoint, device="cpu"), args.out_dir)
    print(f"wrote {path} (Hugging Face GPT-2 layout)")
    return 0


def cmd_bias(args: argparse.Namespace) -> int:
    if args.plot:
        check_writable_file(args.plot, "--plot")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}.")
    if args.templates:
        templates = bias.read_templates(args.templates)
        groups = [g.strip() for g in (args.groups or "").split(",") if g.strip()]
        report = bias.probe_templates(load(args.checkpoint, device=args.device), templates, groups)
        if args.json:
            print(json.dumps(report))
            return 0
        for row in report:
            print(row["template"])
            for group, figures in row["groups"].items():
                said = f"  → {figures['continuation']!r}" if "continuation" in figures else ""
                print(f"  {group:<20} log-prob {figures['log_prob']:9.3f}  gap {figures['gap']:+8.3f}{said}")
            if "distinct_continuations" in row:
                print(f"  distinct continuations: {row['distinct_continuations']} of {len(row['groups'])}")
        return 0
    pairs = bias.read_crows_pairs(args.data or _shared_data() / "crows_pairs" / "crows_pairs_anonymized.csv.gz")
    pairs = pairs[: args.limit] if args.limit else pairs
    model = load(args.checkpoint, device=args.device)
    result = bias.crows_metric(pairs, bias.pair_scores(model, pairs), samples=args.bootstrap)
    if args.plot:
        print(f"wrote {bias.plot_bias(result, args.plot, f'CrowS-Pairs: {Path(args.checkpoint).name}')}",
              file=sys.stderr)
    if args.json:
        print(json.dumps(result))
        return 0
    scored_by = "pseudo-log-likelihood of shared tokens" if model.family == "bert" else "sentence log-probability"
    print(f"CrowS-Pairs ({scored_by}): % of pairs where the more stereotyping sentence scores higher; "
          "50 = no preference")
    for name, r in [("overall", result["overall"]), *sorted(result["by_type"].items())]:
        ties = f", {r['ties']} ties" if r["ties"] else ""
        print(f"  {name:<22} {r['score']:6.2f}  [{r['low']:6.2f}, {r['high']:6.2f}]  {r['pairs']:5d} pairs{ties}")
    return 0


def _shared_data() -> Path:
    """The staged corpora: $GENLOOM_SHARED_DATA, else ../shared/data from the working directory."""
    return Path(os.environ.get("GENLOOM_SHARED_DATA") or Path.cwd().parent / "shared" / "data")


def cmd_redact(args: argparse.Namespace) -> int:
    kinds = tuple(k.strip().upper() for k in args.kinds.split(",")) if args.kinds else KINDS
    if args.files:
        texts = [read_text(path) for path in args.files]
    else:
        texts = [sys.stdin.read()]
    for text in texts:
        sys.stdout.write(redact(text, args.style, kinds))
    sys.stdout.flush()
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    sections = [("recipe", [row for row in describe(RunConfig) if row[2] != "(section)"]),
                ("data", describe(DataConfig, "data.")), ("tokenizer", describe(TokenizerConfig, "tokenizer.")),
                ("train", describe(TrainConfig, "train."))]
    if args.family is not None:
        sections.append((f"model ({args.family})", describe(family_module(args.family).CONFIG, "model.")))
    for title, rows in sections:
        print(f"{title}:")
        for key, kind, default, meaning in rows:
            print(f"  {key:<30} {default:<14} {kind}")
            print(textwrap.fill(meaning, width=100, initial_indent=" " * 6, subsequent_indent=" " * 6))
        print()
    if args.family is None:
        print(f"model.* keys depend on the family: genloom config FAMILY ({', '.join(FAMILIES)}).")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    check_writable_folder(args.out_dir, "the output folder")
    entry = quantize_checkpoint(args.checkpoint, args.out_dir)
    before = profile.size_on_disk(Path(args.checkpoint))[0]
    after = profile.size_on_disk(Path(args.out_dir))[0]
    print(f"wrote {args.out_dir}: {len(entry['layers'])} linear layers in int8; model.safetensors "
          f"{before / 2**20:.1f} MB → {after / 2**20:.1f} MB ({after / before:.2f}x)")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    try:
        batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    except ValueError:
        raise UserError(f"--batch-sizes must be comma-separated whole numbers, got '{args.batch_sizes}'.") from None
    for option, value in (("--batch-sizes", min(batch_sizes)), ("--new-tokens", args.new_tokens),
                          ("--prompt-tokens", args.prompt_tokens), ("--threads", args.threads or 1)):
        if value < 1:
            raise UserError(f"{option} must be at least 1, got {value}.")
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            check_writable_file(path, option)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load(args.checkpoint, device=args.device)
    if model.family not in CAN_PROFILE:
        raise UserError(f"profile measures text generators; {args.checkpoint} holds a '{model.family}' model "
                        f"(profiled families: {', '.join(CAN_PROFILE)}).")
    limit = getattr(model.model, "max_context", None)
    if limit is not None and args.prompt_tokens + args.new_tokens + 1 > limit:
        raise UserError(f"--prompt-tokens + --new-tokens ({args.prompt_tokens + args.new_tokens}) pass the model's "
                        f"context of {limit} tokens.")
    with tqdm(total=len(batch_sizes), desc="profile", unit="batch size", disable=None, file=sys.stderr) as bar:
        report = profile.profile(model, batch_sizes, args.new_tokens, args.prompt_tokens,
                                 progress=lambda row: bar.update())
    print(profile.table(report))
    if args.json:
        atomic_write(args.json, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {profile.plot(report, args.plot)}")
    return 0


# The families ``genloom profile`` decodes from: every generator with a tokenizer-made prompt or source.
CAN_PROFILE = ("gpt", "rnnlm", "transformer_seq2seq", "seq2seq", "vae")


def cmd_demo(args: argparse.Namespace) -> int:
    run_demo(Path(args.out_dir), device=args.device)
    return 0


COMMANDS = {"train": cmd_train, "generate": cmd_generate, "translate": cmd_transduce, "summarize": cmd_transduce,
            "evaluate": cmd_evaluate, "config": cmd_config, "redact": cmd_redact, "bias": cmd_bias, "vae": cmd_vae,
            "fill-mask": cmd_fill_mask, "export": cmd_export, "validate": cmd_validate, "explain": cmd_explain,
            "reuse": cmd_reuse, "reuse-train": cmd_reuse_train, "demo": cmd_demo,
            "profile": cmd_profile, "quantize": cmd_quantize}
# "serve" is genloom.serve.command's, loaded only for the server (cli.main)


