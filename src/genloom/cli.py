"""The ``genloom`` command line: train, generate, translate, summarize, evaluate, vae, fill-mask, export,
validate, demo.

Errors a user can fix print one line on stderr and exit with status 2; an
interrupted training run saves itself and exits with 130.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genloom import __version__
from genloom.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit 2), like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"genloom: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def _add_decoding_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding")
    group.add_argument("--method", choices=["greedy", "sample", "beam"], default=None,
                       help="greedy: the most likely token each step; sample: draw from the (shaped) distribution; "
                            "beam: beam search. Default: greedy, or beam when --beam is given.")
    group.add_argument("--beam", type=int, metavar="K", default=None,
                       help="beam search with K beams (implies --method beam).")
    group.add_argument("--max-new-tokens", type=int, default=50, help="stop after this many new tokens (default 50).")
    group.add_argument("--min-new-tokens", type=int, default=0, help="forbid EOS before this many new tokens (default 0).")
    group.add_argument("--temperature", type=float, default=1.0,
                       help="sampling: divide logits by this; <1 sharper, >1 flatter (default 1.0).")
    group.add_argument("--top-k", type=int, default=0, help="sampling: keep only the K most likely tokens (0 = all).")
    group.add_argument("--top-p", type=float, default=1.0,
                       help="sampling: keep the smallest set of tokens with probability mass ≥ P (default 1.0 = all).")
    group.add_argument("--repetition-penalty", type=float, default=1.0,
                       help="divide positive (multiply negative) logits of already-seen tokens by this (default 1.0 = off).")
    group.add_argument("--no-repeat-ngram", type=int, default=0, metavar="N",
                       help="never repeat an n-gram of this size (default 0 = off).")
    group.add_argument("--length-penalty", type=float, default=1.0,
                       help="beam: rank hypotheses by log-prob / length**this (default 1.0).")
    group.add_argument("--coverage-penalty", type=float, default=0.0, metavar="BETA",
                       help="beam, attending models: add BETA × Σ log min(attention received, 1) per source word "
                            "(GNMT), favouring outputs that cover the whole source (default 0 = off).")
    group.add_argument("--n-best", type=int, default=1, help="beam: print this many hypotheses per input (default 1).")
    group.add_argument("--stop", action="append", default=[], metavar="TEXT",
                       help="end a sequence when this text appears (repeatable); the text is cut before it.")
    group.add_argument("--seed", type=int, default=None, help="random seed for sampling, for repeatable output.")


def _generation_options(args: argparse.Namespace) -> dict:
    method = args.method or ("beam" if args.beam else "greedy")
    return dict(method=method, max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens,
                temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                repetition_penalty=args.repetition_penalty, no_repeat_ngram_size=args.no_repeat_ngram,
                num_beams=args.beam or 4, length_penalty=args.length_penalty, coverage_penalty=args.coverage_penalty,
                num_return_sequences=args.n_best,
                stop_strings=args.stop, seed=args.seed)


def build_parser() -> Parser:
    parser = Parser(prog="genloom", description="Train, evaluate and use neural text generation models.")
    parser.add_argument("--version", action="version", version=f"genloom {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    train = commands.add_parser("train", help="train a model from a YAML recipe",
                                description="Train a model from a YAML recipe; the run directory (out_dir) becomes "
                                            "a checkpoint that generate/evaluate load.")
    train.add_argument("config", help="the YAML recipe, e.g. configs/rnnlm_ptb_small.yaml")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="override recipe values, e.g. train.lr=0.5 out_dir=runs/try2 model.dropout=0.2")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in out_dir from its newest snapshot, exactly where it stopped")
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: the recipe's train.device, auto = CUDA when present)")

    gen = commands.add_parser("generate", help="generate text from a checkpoint",
                              description="Continue prompts (or generate from scratch) with a trained model.")
    gen.add_argument("checkpoint", help="a run directory written by 'genloom train'")
    source = gen.add_mutually_exclusive_group()
    source.add_argument("--prompt", default=None, help="the text to continue (default: generate from scratch)")
    source.add_argument("--input", default=None, metavar="FILE", help="continue every line of FILE; one output line each")
    gen.add_argument("--num-samples", type=int, default=1, help="outputs per prompt for --method sample (default 1)")
    gen.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    gen.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")
    _add_decoding_options(gen)

    for name, what in (("translate", "translate"), ("summarize", "summarize")):
        app = commands.add_parser(name, help=f"{what} text with a seq2seq checkpoint",
                                  description=f"{what.capitalize()} each input line (stdin or --input) with a seq2seq "
                                              "model; one output line per input line.")
        app.add_argument("checkpoint", help="a seq2seq run directory written by 'genloom train'")
        app.add_argument("--input", default=None, metavar="FILE", help="read inputs from FILE (default: stdin)")
        app.add_argument("--output", default=None, metavar="FILE", help="write outputs to FILE (default: stdout)")
        app.add_argument("--batch-size", type=int, default=32, help="inputs decoded together (default 32)")
        app.add_argument("--attention-plot", default=None, metavar="FILE.png",
                         help="draw the source–output attention heatmap; with several inputs, FILE-1.png, FILE-2.png, …")
        app.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")
        _add_decoding_options(app)

    ev = commands.add_parser("evaluate", help="score a checkpoint on data",
                             description="Report loss (nats per token, EOS included) and perplexity on a data file; "
                                         "for seq2seq also BLEU and chrF of beam-search output (sacrebleu).")
    ev.add_argument("checkpoint", help="a run directory written by 'genloom train'")
    ev.add_argument("--data", required=True, help="the text file to score, in the format the model was trained on "
                                                  "(seq2seq: the sources, or a source–target TSV/JSONL)")
    ev.add_argument("--target", default=None, help="seq2seq: the reference file line-aligned with --data")
    ev.add_argument("--iw-samples", type=int, default=500, metavar="K",
                    help="vae: samples of the importance-weighted NLL estimate (default 500)")
    ev.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ev.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")

    fill = commands.add_parser("fill-mask", help="list the likeliest fillers of [MASK] with a BERT checkpoint",
                               description="For each [MASK] in the text, print the top-k tokens a masked language "
                                           "model (bert) predicts there, with their probabilities.")
    fill.add_argument("checkpoint", help="a bert run directory, or a local Hugging Face BERT folder")
    fill.add_argument("text", help='the text, e.g. "the cat sat on the [MASK] ."')
    fill.add_argument("--top-k", type=int, default=5, help="fillers per [MASK] (default 5)")
    fill.add_argument("--score", action="store_true",
                      help="also print the text's pseudo-log-likelihood (each token masked in turn; nats)")
    fill.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")

    vae = commands.add_parser("vae", help="sample, reconstruct, interpolate and map sentences with a VAE",
                              description="Use a VAE checkpoint's latent space; every decode takes the usual "
                                          "decoding options (greedy by default).")
    uses = vae.add_subparsers(dest="use", metavar="USE", parser_class=Parser, required=True,
                              help="sample, reconstruct, interpolate or plot")

    def latent_use(name: str, help: str, decodes: bool = True) -> argparse.ArgumentParser:
        use = uses.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        use.add_argument("checkpoint", help="a vae run directory written by 'genloom train'")
        use.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")
        if decodes:
            _add_decoding_options(use)
        return use

    latent_use("sample", "decode codes drawn from the prior N(0, I)").add_argument(
        "-n", "--num-samples", type=int, default=10, help="how many sentences (default 10)")
    latent_use("reconstruct", "encode each input line and decode it again").add_argument(
        "--input", default=None, metavar="FILE", help="read sentences from FILE (default: stdin)")
    interpolate = latent_use("interpolate", "decode points on the line between two sentences' codes")
    interpolate.add_argument("first", help="the sentence at t = 0")
    interpolate.add_argument("last", help="the sentence at t = 1")
    interpolate.add_argument("--steps", type=int, default=8, help="points, both ends included (default 8)")
    plot = latent_use("plot", "a PNG of encoded sentences projected to 2-D (PCA)", decodes=False)
    plot.add_argument("--data", required=True, help="a file of sentences, one per line")
    plot.add_argument("--out", default=None, metavar="FILE.png",
                      help="where the PNG goes (default: latent.png in the checkpoint directory)")

    export = commands.add_parser("export", help="write a GPT checkpoint in the Hugging Face GPT-2 layout",
                                 description="Write config.json, model.safetensors and tokenizer.json that "
                                             "transformers' GPT2LMHeadModel.from_pretrained loads (offline).")
    export.add_argument("checkpoint", help="a GPT run directory (or a Hugging Face GPT-2 directory)")
    export.add_argument("out_dir", help="a new or empty folder to write into")

    val = commands.add_parser("validate", help="check a recipe without training",
                              description="Check a recipe's keys, types, model settings and data paths; train nothing.")
    val.add_argument("config", help="the YAML recipe")
    val.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, as for train")

    demo = commands.add_parser("demo", help="train a small model on built-in data and show what it does",
                               description="Build a small corpus, train on it (about two minutes on a laptop CPU), "
                                           "and print samples and metrics; output goes to runs/demo.")
    demo.add_argument("--out-dir", default="runs/demo", help="where the demo run goes (default runs/demo)")
    demo.add_argument("--device", default=None, help="cpu, cuda (default: CUDA when present)")
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from genloom.api import train

    from genloom.train import distributed

    summary = train(args.config, overrides=args.overrides, resume=args.resume, device=args.device)
    if distributed.rank() != 0:
        return 0
    figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())
    print(f"done: {figures}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from genloom.api import load
    from genloom.data.readers import read_lines

    options = _generation_options(args)
    if args.num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {args.num_samples}.")
    model = load(args.checkpoint, device=args.device)
    prompts = read_lines(args.input) if args.input else [args.prompt or ""]
    if args.stream:
        for prompt in prompts:
            for sample in range(args.num_samples):
                options_for = dict(options, seed=None if options["seed"] is None else options["seed"] + sample)
                if prompt:
                    print(prompt, end="", flush=True)
                for piece in model.generate(prompt, **options_for):
                    print(piece, end="", flush=True)
                print(flush=True)
        return 0
    batch = [p for p in prompts for _ in range(args.num_samples)]
    for prompt, outputs in zip(batch, model.complete(batch, **options)):
        for text in outputs:
            print(prompt + text)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from genloom.api import load

    result = load(args.checkpoint, device=args.device).evaluate(args.data, target=args.target,
                                                                iw_samples=args.iw_samples)
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
    print(f"loss {result['loss']:.4f} nats/token, perplexity {result['perplexity']:.2f}, "
          f"{result['tokens']:,} tokens (EOS included)")
    if "bleu" in result:
        print(f"BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}  ({result['signature']})")
    return 0


def cmd_transduce(args: argparse.Namespace) -> int:
    from genloom.api import load
    from genloom.apps.attention_plot import plot_attention
    from genloom.data.readers import read_lines

    options = _generation_options(args)
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}.")
    model = load(args.checkpoint, device=args.device)
    if not model.conditional:
        raise UserError(f"{args.checkpoint} holds a '{model.family}' model; '{args.command}' needs a seq2seq checkpoint.")
    if args.input:
        inputs = read_lines(args.input)
    else:
        inputs = [line.strip() for line in sys.stdin if line.strip()]
        if not inputs:
            raise UserError("no input: give --input FILE or lines on stdin.")
    results = []
    for start in range(0, len(inputs), args.batch_size):
        results += model.transduce(inputs[start : start + args.batch_size], **options)
    text = "".join(r.text.strip() + "\n" for r in results)
    if args.output:
        from genloom.checkpoint import atomic_write

        atomic_write(args.output, text)
    else:
        sys.stdout.write(text)
    if args.attention_plot:
        plot = Path(args.attention_plot)
        for number, result in enumerate(results, start=1):
            if result.attention is None:
                raise UserError("this model has no attention to plot (model.attention is none).")
            path = plot if len(results) == 1 else plot.with_name(f"{plot.stem}-{number}{plot.suffix}")
            plot_attention(result.attention, result.source_tokens, result.target_tokens, path,
                           title=f"{args.command}: input {number}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from genloom.config import load_run_config
    from genloom.models import FAMILIES

    run = load_run_config(args.config, args.overrides)
    module = FAMILIES.get(run.family)
    if module is None:
        raise UserError(f"unknown model family '{run.family}'; known families: {', '.join(FAMILIES)}.")
    from genloom.config import from_dict

    module.check_config(from_dict(module.CONFIG, run.model, "model"))
    for key in ("train", "valid", "test", "train_target", "valid_target", "test_target"):
        value = getattr(run.data, key)
        if value and not Path(value).is_file():
            raise UserError(f"data.{key} names a file that does not exist: {value}")
    print(f"{args.config}: OK ({run.family}, {run.tokenizer.kind} tokenizer, {run.train.optimizer} "
          f"lr {run.train.lr}, out_dir {run.out_dir})")
    return 0


def cmd_fill_mask(args: argparse.Namespace) -> int:
    from genloom.api import load

    model = load(args.checkpoint, device=args.device)
    for number, fillers in enumerate(model.fill_mask(args.text, args.top_k), start=1):
        print(f"[MASK] {number}:")
        for token, probability in fillers:
            print(f"  {probability:7.4f}  {token}")
    if args.score:
        print(f"pseudo-log-likelihood: {model.pseudo_log_likelihood(args.text.replace('[MASK]', '')):.3f} nats")
    return 0


def cmd_vae(args: argparse.Namespace) -> int:
    from genloom.api import load
    from genloom.apps import latent
    from genloom.data.readers import read_lines

    model = load(args.checkpoint, device=args.device)
    model.latent_model()
    if args.use == "plot":
        path = latent.plot_latent(model, read_lines(args.data), args.out or Path(args.checkpoint) / "latent.png")
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
    from genloom.api import export_huggingface, load

    path = export_huggingface(load(args.checkpoint, device="cpu"), args.out_dir)
    print(f"wrote {path} (Hugging Face GPT-2 layout)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from genloom.apps.demo import run_demo

    run_demo(Path(args.out_dir), device=args.device)
    return 0


COMMANDS = {"train": cmd_train, "generate": cmd_generate, "translate": cmd_transduce, "summarize": cmd_transduce,
            "evaluate": cmd_evaluate, "vae": cmd_vae, "fill-mask": cmd_fill_mask, "export": cmd_export, "validate": cmd_validate,
            "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from genloom.train.loop import TrainingInterrupted

    try:
        return COMMANDS[args.command](args)
    except UserError as error:
        print(f"genloom: error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as error:
        print(f"genloom: {error}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("genloom: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
