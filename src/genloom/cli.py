"""The ``genloom`` command line: train, generate, translate, summarize, evaluate, vae, fill-mask, export,
validate, demo.

This module is the parser; what each command does is in ``commands.py``, imported once the arguments are
parsed, so that ``--help`` and usage errors answer at once instead of after torch has loaded. Errors a user
can fix print one line on stderr and exit with status 2; an interrupted training run saves itself and exits
with 130.
"""

from __future__ import annotations

import argparse
import sys

from genloom import __version__
from genloom.decoding.config import GenerationConfig
from genloom.errors import TrainingInterrupted, UserError

DECODING = GenerationConfig()  # the defaults every decoding option starts from


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit 2), like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"genloom: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def _add_decoding_options(parser: argparse.ArgumentParser, d: GenerationConfig = DECODING) -> None:
    """The decoding options, with ``d``'s values as their defaults (``evaluate`` decodes by beam search)."""
    parser.set_defaults(default_method=d.method, default_beams=d.num_beams)
    group = parser.add_argument_group("decoding")
    group.add_argument("--method", choices=["greedy", "sample", "beam"], default=None,
                       help=f"greedy: the most likely token each step; sample: draw from the (shaped) distribution; "
                            f"beam: beam search. Default: {d.method}" + (", or beam when --beam is given."
                                                                         if d.method != "beam" else "."))
    group.add_argument("--beam", type=int, metavar="K", default=None,
                       help=f"beam search with K beams (implies --method beam; default K {d.num_beams}).")
    group.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens,
                       help=f"stop after this many new tokens (default {d.max_new_tokens}).")
    group.add_argument("--min-new-tokens", type=int, default=d.min_new_tokens,
                       help=f"forbid EOS before this many new tokens (default {d.min_new_tokens}).")
    group.add_argument("--temperature", type=float, default=d.temperature,
                       help=f"sampling: divide logits by this; <1 sharper, >1 flatter (default {d.temperature}).")
    group.add_argument("--top-k", type=int, default=d.top_k,
                       help=f"sampling: keep only the K most likely tokens (default {d.top_k}; 0 = all).")
    group.add_argument("--top-p", type=float, default=d.top_p,
                       help=f"sampling: keep the smallest set of tokens with probability mass ≥ P "
                            f"(default {d.top_p}; 1.0 = all).")
    group.add_argument("--repetition-penalty", type=float, default=d.repetition_penalty,
                       help=f"divide positive (multiply negative) logits of already-seen tokens by this "
                            f"(default {d.repetition_penalty}; 1.0 = off).")
    group.add_argument("--no-repeat-ngram", type=int, default=d.no_repeat_ngram_size, metavar="N",
                       help=f"never repeat an n-gram of this size (default {d.no_repeat_ngram_size}; 0 = off).")
    group.add_argument("--length-penalty", type=float, default=d.length_penalty,
                       help=f"beam: rank hypotheses by log-prob / length**this (default {d.length_penalty}).")
    group.add_argument("--coverage-penalty", type=float, default=d.coverage_penalty, metavar="BETA",
                       help=f"beam, attending models: add BETA × Σ log min(attention received, 1) per source word "
                            f"(GNMT), favouring outputs that cover the whole source (default {d.coverage_penalty}; "
                            "0 = off).")
    group.add_argument("--n-best", type=int, default=d.num_return_sequences,
                       help=f"beam: print this many hypotheses per input (default {d.num_return_sequences}).")
    group.add_argument("--stop", action="append", default=[], metavar="TEXT",
                       help="end a sequence when this text appears (repeatable); the text is cut before it.")
    group.add_argument("--seed", type=int, default=d.seed, help="random seed for sampling, for repeatable output.")
    group.add_argument("--ban-words", action="append", default=[], metavar="PHRASE",
                       help="never generate this word or phrase (repeatable; multi-token phrases are banned at their "
                            "last token, as transformers' bad_words_ids)")
    group.add_argument("--ban-words-file", default=None, metavar="FILE",
                       help="never generate any phrase of FILE (one a line)")
    group.add_argument("--bias", action="append", default=[], metavar="PHRASE=VALUE",
                       help='add VALUE to the score of PHRASE when it may come next, e.g. --bias "the cat=+2.0" '
                            "(repeatable; negative values discourage)")
    group.add_argument("--redact", nargs="?", const="placeholder", choices=["placeholder", "mask"], default=None,
                       help="replace personal data (e-mail, phone, card, IBAN, IP, URL, date of birth) in the inputs "
                            "before the model reads them and in the outputs before they are shown: by <EMAIL>-style "
                            "placeholders (the default) or by masks")
    group.add_argument("--safety", choices=["flag", "mask", "block"], default=None,
                       help="screen outputs for offensive language (an offline word list, obfuscations included): "
                            "flag (keep the text, note it on stderr), mask (hide each match) or block (replace the "
                            "output)")
    unk = group.add_mutually_exclusive_group()
    unk.add_argument("--no-unk", dest="no_unk", action="store_true", default=d.no_unk,
                     help="never output the unknown-word token <unk> (the default, where the tokenizer has one).")
    unk.add_argument("--allow-unk", dest="no_unk", action="store_false",
                     help="let <unk> be chosen like any other token.")


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
    gen.add_argument("--batch-size", type=int, default=32,
                     help="prompts decoded together (default 32); each line is printed as soon as it and those "
                          "before it are done")
    gen.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")
    _add_decoding_options(gen)

    for name, what in (("translate", "translate"), ("summarize", "summarize")):
        app = commands.add_parser(name, help=f"{what} text with a seq2seq checkpoint",
                                  description=f"{what.capitalize()} each input line (stdin or --input) with a seq2seq "
                                              "model; one output line per input line.")
        app.add_argument("checkpoint", help="a seq2seq run directory written by 'genloom train'")
        app.add_argument("--input", default=None, metavar="FILE", help="read inputs from FILE (default: stdin)")
        app.add_argument("--output", default=None, metavar="FILE",
                         help="write outputs to FILE (default: stdout); it grows as FILE.partial and takes its name "
                              "once whole")
        app.add_argument("--batch-size", type=int, default=32,
                         help="inputs decoded together (default 32); each output line is written as soon as it and "
                              "those before it are done, with a progress bar on a terminal")
        app.add_argument("--attention-plot", default=None, metavar="FILE.png",
                         help="draw the source–output attention heatmap; with several inputs, FILE-1.png, FILE-2.png, …")
        app.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")
        _add_decoding_options(app)

    ev = commands.add_parser("evaluate", help="score a checkpoint on data",
                             description="Report loss (nats per token, EOS included) and perplexity (exp of the NLL "
                                         "per token) on a data file; for seq2seq also BLEU and chrF (sacrebleu) and "
                                         "ROUGE-1/2/L of decoded output, with each metric's signature and the "
                                         "decoding used (beam search, 5 beams by default; the decoding options "
                                         "change it).")
    ev.add_argument("checkpoint", help="a run directory written by 'genloom train'")
    ev.add_argument("--data", required=True, help="the text file to score, in the format the model was trained on "
                                                  "(seq2seq: the sources, or a source–target TSV/JSONL)")
    ev.add_argument("--target", default=None, help="seq2seq: the reference file line-aligned with --data")
    ev.add_argument("--iw-samples", type=int, default=500, metavar="K",
                    help="vae: samples of the importance-weighted NLL estimate (default 500)")
    ev.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ev.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")
    _add_decoding_options(ev, GenerationConfig(method="beam", num_beams=5, max_new_tokens=100))

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

    quant = commands.add_parser("quantize", help="write a checkpoint with int8 linear layers",
                                description="Store every linear layer's weight as int8 with one float32 scale per "
                                            "output row; activations are quantized at each product (dynamic int8). "
                                            "The result is a genloom checkpoint that every command loads.")
    quant.add_argument("checkpoint", help="a genloom run directory (float32)")
    quant.add_argument("out_dir", help="a new or empty folder to write into")

    prof = commands.add_parser("profile", help="what a checkpoint costs: size, FLOPs, memory, speed by batch size",
                               description="Parameters, size on disk, analytic FLOPs per token, peak memory, and "
                                           "greedy decoding tokens/s and per-token latency (p50/p99) for each batch "
                                           "size; printed as a table, written as JSON and a PNG.")
    prof.add_argument("checkpoint", help="a run directory or a local Hugging Face folder")
    prof.add_argument("--batch-sizes", default="1,2,4,8,16,32,64", help="comma-separated (default 1,2,4,8,16,32,64)")
    prof.add_argument("--new-tokens", type=int, default=64, help="tokens generated per row (default 64)")
    prof.add_argument("--prompt-tokens", type=int, default=16, help="random prompt (or source) tokens (default 16)")
    prof.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's, all cores)")
    prof.add_argument("--json", default=None, metavar="FILE", help="write the report here (default: none)")
    prof.add_argument("--plot", default=None, metavar="PNG", help="draw tokens/s and latency by batch size here")
    prof.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")

    val = commands.add_parser("validate", help="check a recipe without training",
                              description="Run the checks 'genloom train' makes before training (keys, types, model settings and "
                                         "size, device, the run folder, the data read as training reads it); "
                                         "train nothing.")
    val.add_argument("config", help="the YAML recipe")
    val.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, as for train")
    val.add_argument("--resume", action="store_true", help="check the recipe as 'train --resume' would")

    red = commands.add_parser("redact", help="replace personal data in text",
                              description="Replace e-mail addresses, phone numbers, payment cards (Luhn-valid), IBANs "
                                          "(mod-97-valid), IP addresses, URLs and dates of birth in the files (or "
                                          "stdin) with typed placeholders or masks; write the result to stdout.")
    red.add_argument("files", nargs="*", metavar="FILE", help="text files (default: stdin)")
    red.add_argument("--style", choices=["placeholder", "mask"], default="placeholder",
                     help="placeholder: <EMAIL>, <PHONE>, …; mask: letters and digits as * (default placeholder)")
    red.add_argument("--kinds", default=None, metavar="KIND,…",
                     help="only these kinds: EMAIL, URL, IBAN, CARD, IP, PHONE, DOB (default: all)")

    bias = commands.add_parser("bias", help="measure a model's social bias (CrowS-Pairs, or your templates)",
                               description="Probe a checkpoint for social bias. --probe crows-pairs: the percentage "
                                           "of CrowS-Pairs pairs whose more stereotyping sentence the model scores "
                                           "higher (masked LMs: pseudo-log-likelihood of the shared tokens; causal "
                                           "LMs: sentence log-probability), overall and per bias type with bootstrap "
                                           "95%% intervals, as a table and a bar chart; 50 means no preference. "
                                           "--templates: likelihood gaps (and, for generators, continuations) "
                                           "between --groups in your own templates.")
    bias.add_argument("checkpoint", help="a run directory or a local Hugging Face GPT-2/BERT folder")
    probe = bias.add_mutually_exclusive_group(required=True)
    probe.add_argument("--probe", choices=["crows-pairs"], help="a published probe")
    probe.add_argument("--templates", metavar="FILE", help="templates, one a line, each with {group}")
    bias.add_argument("--groups", default=None, metavar="A,B,…", help="with --templates: the groups to compare")
    bias.add_argument("--data", default=None, metavar="CSV",
                      help="the CrowS-Pairs CSV (default: crows_pairs/crows_pairs_anonymized.csv.gz under "
                           "$GENLOOM_SHARED_DATA, else ../shared/data)")
    bias.add_argument("--limit", type=int, default=None, metavar="N", help="score only the first N pairs")
    bias.add_argument("--plot", default=None, metavar="FILE.png", help="write the bar chart here")
    bias.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap samples (default 1000)")
    bias.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    bias.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")

    config = commands.add_parser("config", help="list every recipe key with its type, default and meaning",
                                 description="List every key a recipe may set (the shared data, tokenizer and train "
                                             "sections, and the family's model section) with its type, default and "
                                             "meaning, read from the config classes themselves.")
    config.add_argument("family", nargs="?", default=None,
                        help="the model family whose model.* keys to list (rnnlm, gpt, bert, seq2seq, "
                             "transformer_seq2seq, vae, gan); without it, the shared sections only")

    exp = commands.add_parser("explain", help="attribute each generated token to the input tokens",
                              description="Generate from a prompt (LMs) or a source (seq2seq, VAE) and attribute "
                                          "each generated token's log-probability to the input tokens and the "
                                          "earlier generated ones by gradient x input, integrated gradients, "
                                          "attention (cross-attention or GPT attention rollout) and occlusion.")
    exp.add_argument("checkpoint", help="a run directory or a local Hugging Face GPT-2 folder")
    text = exp.add_mutually_exclusive_group(required=True)
    text.add_argument("--prompt", default=None, help="the text an LM continues")
    text.add_argument("--source", default=None, help="the source a seq2seq model (or a VAE) decodes from")
    exp.add_argument("--methods", default=None, metavar="M,…",
                     help="gradient_x_input, integrated_gradients, attention, occlusion (default: all)")
    exp.add_argument("--steps", type=int, default=32, help="integrated gradients' points on the path (default 32)")
    exp.add_argument("--top", type=int, default=3, help="context tokens shown per generated token and method")
    exp.add_argument("--html", default=None, metavar="FILE.html", help="write the interactive page here")
    exp.add_argument("--plot", default=None, metavar="FILE.png", help="write a heatmap per method here")
    exp.add_argument("--json", action="store_true", help="print every attribution as one JSON object")
    exp.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")
    _add_decoding_options(exp)

    reuse = commands.add_parser("reuse", help="find which sources each suspect document reuses (plagiarism)",
                                description="For every suspect document, the source documents it reuses, ranked, "
                                            "with word n-gram containment, LCS ratio, winnowing-located passages, "
                                            "semantic similarity from a sentence encoder and a verdict (none, "
                                            "heavy revision, light revision, near copy).")
    reuse.add_argument("--sources", required=True, metavar="PATH", help="a text file or a folder of them")
    reuse.add_argument("--suspects", required=True, metavar="PATH", help="a text file or a folder of them")
    reuse.add_argument("--encoder", default="minilm", metavar="NAME|CKPT",
                       help="minilm (all-MiniLM-L6-v2, installed with genloom; the default), a BERT or VAE "
                            "checkpoint, or none (lexical measures only)")
    reuse.add_argument("--verdict-model", default=None, metavar="FILE.json",
                       help="a verdict model from genloom reuse-train (default: the one shipped for the encoder)")
    reuse.add_argument("--top", type=int, default=5, help="sources shown per suspect (default 5)")
    reuse.add_argument("--exhaustive", action="store_true",
                       help="compare every pair instead of the index's candidates (slow on large collections)")
    reuse.add_argument("--k", type=int, default=5, help="words per fingerprinted k-gram (default 5)")
    reuse.add_argument("--window", type=int, default=4, help="winnowing window in k-grams (default 4)")
    reuse.add_argument("--out", default=None, metavar="FILE.html", help="write the side-by-side report here")
    reuse.add_argument("--json", action="store_true", help="print the results as one JSON object")
    reuse.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")

    reuse_train = commands.add_parser("reuse-train", help="train the reuse verdict classifier on labelled pairs",
                                      description="Fit the verdict classifier (logistic regression over the reuse "
                                                  "measures) on labelled pairs and report its cross-validated "
                                                  "accuracy.")
    reuse_train.add_argument("pairs", help="a TSV file: suspect text, source text, label per line (labels: none, "
                                           "heavy_revision, light_revision, near_copy, or your own)")
    reuse_train.add_argument("out", help="where to write the model (JSON)")
    reuse_train.add_argument("--encoder", default="minilm", metavar="NAME|CKPT",
                             help="the encoder of the semantic feature (minilm, a checkpoint, or none)")
    reuse_train.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")

    serve = commands.add_parser("serve", help="serve checkpoints over HTTP (OpenAI-compatible API, playground)",
                                description="Serve checkpoints behind an OpenAI-compatible HTTP API (completions with "
                                            "streaming, models, embeddings) and genloom's translate, summarize and "
                                            "fill-mask, with continuous batching, /health, /metrics (Prometheus) and "
                                            "a playground page at /. Binds to 127.0.0.1 unless --host says "
                                            "otherwise.")
    serve.add_argument("checkpoints", nargs="+", metavar="[NAME=]CKPT",
                       help="run directories or local Hugging Face folders; each is served under NAME (default: "
                            "its folder's name)")
    serve.add_argument("--host", default="127.0.0.1", help="the address to bind (default 127.0.0.1: this machine "
                                                          "only; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=8000, help="the port (default 8000)")
    serve.add_argument("--api-key", default=None,
                       help="require 'Authorization: Bearer KEY' on /v1 and /metrics (default: $GENLOOM_API_KEY, "
                            "else no key)")
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="let browser pages from ORIGIN call the API (repeatable; default: CORS off)")
    serve.add_argument("--max-batch", type=int, default=64, help="rows decoded together per model (default 64)")
    serve.add_argument("--max-waiting", type=int, default=256,
                       help="requests that may wait for room in a batch before new ones get 429 (default 256)")
    serve.add_argument("--max-tokens", type=int, default=2048, help="the most new tokens per output (default 2048)")
    serve.add_argument("--max-body-bytes", type=int, default=1 << 20, help="the largest request body (default 1 MiB)")
    serve.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")

    demo = commands.add_parser("demo", help="train a small model on built-in data and show what it does",
                               description="Build a small corpus, train on it (about two minutes on a laptop CPU), "
                                           "and print samples and metrics; output goes to runs/demo.")
    demo.add_argument("--out-dir", default="runs/demo", help="where the demo run goes (default runs/demo)")
    demo.add_argument("--device", default=None, help="cpu, cuda (default: CUDA when present)")
    return parser


def parse(parser: Parser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; for ``train`` and ``validate``, KEY=VALUE overrides may also come after the options
    (``train cfg.yaml --resume train.max_steps=4``), which argparse alone would call unrecognized."""
    args, rest = parser.parse_known_args(argv)
    if rest and args.command in ("train", "validate") and all("=" in word and not word.startswith("-") for word in rest):
        args.overrides = list(args.overrides) + rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    if args.command is None:
        parser.print_help()
        return 2
    # torch and the models load here, after --help and usage errors; FastAPI and uvicorn only for the server.
    if args.command == "serve":
        from genloom.serve.command import cmd_serve as run
    else:
        from genloom.commands import COMMANDS

        run = COMMANDS[args.command]
    try:
        return run(args)
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
