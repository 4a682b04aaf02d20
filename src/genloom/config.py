"""Run configuration: flat, typed dataclasses read from YAML, with strict checks.

This module imports no torch, so tools can read and validate recipes cheaply.
Model configs live beside their models (``genloom/models/<family>.py``); they are
checked with the same ``from_dict`` as the dataclasses here.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from genloom.errors import UserError


@dataclass
class DataConfig:
    """Where the text comes from and how it is cut into batches.

    ``format``: ``lines`` (one text per line, ``.txt`` or ``.txt.gz``), ``text``
    (the whole file as one text, newlines kept: for character-level streams), ``jsonl``
    (one JSON object per line; ``field`` names the text) or ``tsv`` (``field`` is
    the column index). ``batching``: ``stream`` concatenates all texts (each
    ending in EOS) and cuts the stream into ``bptt``-long windows whose recurrent
    state carries over between batches (truncated back-propagation through time,
    the classic LM protocol); ``sentences`` keeps each text whole, groups texts of
    similar length (length bucketing) and pads them with a mask.

    ``valid_fraction`` > 0 (with no ``valid`` file) holds out the last part of
    the training data for validation: the last texts, or for a single text (a
    ``text``-format file) its last tokens, as nanoGPT does.

    ``random_offset`` (stream batching) starts each training epoch's stream at a
    random token below ``bptt``, so windows fall at new places every epoch.
    ``shuffle_windows`` (stream batching) batches each training epoch's windows in
    a random order instead of as parallel streams: no recurrent state carries
    over, which suits a GPT (nanoGPT's random windows); validation stays in order.

    Sequence-to-sequence data is either two line-aligned files per split
    (``train`` the sources, ``train_target`` the targets; likewise valid, test),
    a two-column TSV, or JSONL with ``source_field`` and ``target_field``.
    Sources are cut to ``max_source_length`` tokens, targets to ``max_length``.

    Attributes:
        train: the training data file (for seq2seq from two files: the sources).
        valid: the validation data file (optional).
        test: the test data file, scored after training (optional).
        format: how a file holds texts: lines, text (one whole text), jsonl or tsv.
        field: the JSONL field (default "text") or TSV column index (default 0) that holds the text.
        batching: stream (one token stream cut into bptt windows) or sentences (whole texts, length-bucketed).
        max_length: the longest text (seq2seq: target) in tokens; longer ones are cut.
        lowercase: lowercase every text, in training and at inference alike.
        valid_fraction: hold out this last fraction of the training data for validation (0: off).
        random_offset: stream batching: start each epoch's stream at a random offset below bptt.
        shuffle_windows: stream batching: batch the windows in random order, no state carried over.
        train_target: seq2seq: the training targets, line-aligned with train.
        valid_target: seq2seq: the validation targets, line-aligned with valid.
        test_target: seq2seq: the test targets, line-aligned with test.
        source_field: seq2seq JSONL: the field that holds the source.
        target_field: seq2seq JSONL: the field that holds the target.
        max_source_length: seq2seq: the longest source in tokens; longer ones are cut.
    """

    train: str = ""
    valid: str | None = None
    test: str | None = None
    format: Literal["lines", "text", "jsonl", "tsv"] = "lines"
    field: str | None = None
    batching: Literal["stream", "sentences"] = "sentences"
    max_length: int = 256
    lowercase: bool = False
    valid_fraction: float = 0.0
    random_offset: bool = False
    shuffle_windows: bool = False
    train_target: str | None = None
    valid_target: str | None = None
    test_target: str | None = None
    source_field: str = "source"
    target_field: str = "target"
    max_source_length: int = 400


@dataclass
class TokenizerConfig:
    """How text becomes token ids; the trained tokenizer is saved as ``tokenizer.json``.

    ``kind``: ``char``, ``word``, ``bpe`` (byte-level BPE) or ``unigram``
    (SentencePiece-style unigram), all through Hugging Face ``tokenizers``.
    ``vocab_size`` is the maximum size, special tokens included; ``min_frequency``
    drops rarer units (char, word and bpe). ``split`` (word only): ``punctuation``
    (the default) cuts at whitespace and sets punctuation and symbols apart
    ("smith." is "smith" "."; "don't", "e-mail" and "3.5" stay whole);
    ``whitespace`` cuts at whitespace only, for text that is tokenized already.

    Attributes:
        kind: char, word, bpe (byte-level BPE) or unigram (SentencePiece-style).
        vocab_size: the most tokens the vocabulary may hold, special tokens included.
        min_frequency: leave out units seen fewer times (char, word, bpe).
        split: word only: punctuation (default; punctuation set apart) or whitespace (pre-tokenized text).
        path: reuse this tokenizer instead of training one: a tokenizer.json or a run folder.
        cache: keep trained tokenizers in the cache folder, keyed by their texts and settings, and reuse them.
    """

    kind: Literal["char", "word", "bpe", "unigram"] = "word"
    vocab_size: int = 10000
    min_frequency: int = 1
    split: Literal["punctuation", "whitespace"] | None = None
    path: str | None = None
    cache: bool = True


@dataclass
class TrainConfig:
    """The one training loop's settings, shared by every model family.

    Length: ``epochs`` or ``max_steps`` (whichever ends first; at least one is
    needed). LR schedule: ``warmup_steps`` of linear warm-up, then ``constant``,
    ``linear`` or ``cosine`` decay to ``min_lr_ratio * lr``, or ``step``: multiply
    the LR by ``lr_decay`` at the start of every epoch after ``lr_decay_start``
    epochs (the Zaremba et al. recipe), or ``plateau``: multiply it by ``lr_decay``
    whenever ``plateau_patience`` evaluations in a row bring no improvement
    (PyTorch's ReduceLROnPlateau; Texar's VAE recipe); ``max_plateaus`` ends the
    run at that many cuts. ``grad_accum`` micro-batches make one
    optimizer step. Evaluation on the validation split every ``eval_every`` steps
    (unset: at each epoch end) and after the last step. ``patience``: an evaluation that does not improve on the
    best validation loss so far, when it is the ``patience``-th such evaluation in a row, stops the run (as
    Keras' EarlyStopping: 0 and 1 both stop at the first evaluation without improvement; an improving run is
    never stopped; unset: never stop early). ``device: auto`` picks CUDA when present; ``precision: auto`` uses
    bf16 autocast on CUDA and fp32 elsewhere. ``compile`` runs the training
    step through ``torch.compile`` (worth it for Transformers on a GPU; the first
    steps are slow while it compiles).

    Attributes:
        optimizer: adamw, adam or sgd.
        lr: the peak learning rate.
        weight_decay: decoupled weight decay on matrices and embeddings (never biases or norms).
        betas: Adam's (beta1, beta2).
        momentum: SGD's momentum.
        schedule: the learning-rate curve after warm-up: constant, linear, cosine, step or plateau.
        warmup_steps: optimizer steps of linear warm-up from 0 to lr.
        min_lr_ratio: linear and cosine decay end at this fraction of lr.
        lr_decay: step and plateau schedules: multiply the LR by this at each cut.
        lr_decay_start: step schedule: the first epoch whose start cuts the LR.
        plateau_patience: plateau schedule: evaluations without improvement before a cut.
        max_plateaus: plateau schedule: end the run at this many cuts (unset: never).
        epochs: passes over the training data (with max_steps: whichever ends first).
        max_steps: optimizer steps (with epochs: whichever ends first).
        max_time: a wall-clock budget for this invocation, e.g. 90s, 30m, 2h or 1h30m; the run then stops with a snapshot.
        batch_size: texts (or windows) per micro-batch.
        eval_batch_size: texts (or windows) per validation batch.
        bptt: stream batching: tokens per window (truncated back-propagation through time).
        grad_clip: clip the gradient's global norm to this (null: no clipping).
        grad_accum: micro-batches per optimizer step.
        eval_every: evaluate every this many steps (unset: at each epoch end).
        patience: stop after this many evaluations in a row without improvement (unset: never).
        log_every: log the training loss to metrics.jsonl every this many steps.
        progress_every: without a terminal, print a progress line at most every this many seconds (0: every logged step).
        seed: the random seed (initialisation, shuffling, dropout).
        device: auto, cpu, cuda or cuda:N.
        precision: auto (bf16 autocast on CUDA, else fp32), fp32 or bf16.
        compile: run the training step through torch.compile.
    """

    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.0
    schedule: Literal["constant", "linear", "cosine", "step", "plateau"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    lr_decay: float = 0.5
    lr_decay_start: int = 4
    plateau_patience: int = 2
    max_plateaus: int | None = None
    epochs: int | None = None
    max_steps: int | None = None
    max_time: float | str | None = None
    batch_size: int = 32
    eval_batch_size: int = 32
    bptt: int = 35
    grad_clip: float | None = 1.0
    grad_accum: int = 1
    eval_every: int | None = None
    patience: int | None = None
    log_every: int = 50
    progress_every: float = 30.0
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False


@dataclass
class RunConfig:
    """A whole recipe: which family, its model, data, tokenizer and training.

    ``init_from`` fine-tunes: a genloom checkpoint or a local Hugging Face GPT-2
    folder of the same family gives the starting weights, the tokenizer and the
    model shape; keys under ``model`` then override that shape's settings (for
    example dropout), and the ``tokenizer`` section is not used.

    Attributes:
        family: the model family: rnnlm, gpt, bert, seq2seq, transformer_seq2seq, vae or gan.
        out_dir: the run folder: the checkpoint, its metrics and its snapshots.
        init_from: fine-tune from this genloom checkpoint or local Hugging Face folder (same family).
        model: the family's model settings (listed under model.*).
        data: where the text comes from and how it is batched (data.*).
        tokenizer: how text becomes token ids (tokenizer.*).
        train: the training loop's settings (train.*).
    """

    family: str = ""
    out_dir: str = "runs/default"
    init_from: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def word_split(tokenizer: TokenizerConfig) -> str:
    """How the recipe's word tokenizer finds words: ``tokenizer.split``, by default ``punctuation``."""
    return tokenizer.split or "punctuation"


def require_at_least(config: Any, keys: tuple[str, ...], minimum: int = 1, section: str = "model") -> None:
    """Raise a ``UserError`` naming the first of ``keys`` whose value is below ``minimum``."""
    for key in keys:
        value = getattr(config, key)
        if value < minimum:
            raise UserError(f"config key '{section}.{key}' must be at least {minimum}, got {value}.")


def require_fraction(config: Any, keys: tuple[str, ...], section: str = "model") -> None:
    """Raise a ``UserError`` naming the first of ``keys`` whose value is outside [0, 1)."""
    for key in keys:
        value = getattr(config, key)
        if not 0.0 <= value < 1.0:
            raise UserError(f"config key '{section}.{key}' must lie in [0, 1), got {value}.")


def from_dict(cls: type, values: Any, where: str) -> Any:
    """Build dataclass ``cls`` from ``values``, rejecting unknown keys and wrong types.

    Args:
        cls: a dataclass type whose annotations give the expected types.
        values: a mapping from a YAML or JSON file.
        where: the dotted path of ``values`` in the recipe, for messages.

    Returns:
        An instance of ``cls``.

    Raises:
        UserError: on an unknown key (with the nearest known one) or a wrong type.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise UserError(f"{where or 'the config'} must be a mapping of keys to values, got {_type_name(values)}.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(known))}."
            raise UserError(f"unknown config key '{path}'{hint} ('genloom config FAMILY' lists every key with its "
                            "meaning.)")
        kwargs[key] = _coerce(hints[key], value, path)
    return cls(**kwargs)


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Every key of config dataclass ``cls``: (dotted key, type, default, one-line meaning), the meaning taken
    from the ``Attributes:`` section of its docstring (a test checks that every field has one); what
    ``genloom config`` prints."""
    meanings = _attribute_docs(cls)
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        shown = "(section)" if dataclasses.is_dataclass(default) or isinstance(default, dict) else _shown(default)
        rows.append((prefix + f.name, _type_text(hints[f.name]), shown, meanings.get(f.name, "")))
    return rows


def _attribute_docs(cls: type) -> dict[str, str]:
    """``name: meaning`` lines of the ``Attributes:`` section of ``cls``'s docstring (continuation lines joined)."""
    lines = (cls.__doc__ or "").splitlines()
    meanings: dict[str, str] = {}
    inside, current = False, None
    for line in lines:
        stripped = line.strip()
        if stripped == "Attributes:":
            inside = True
            continue
        if not inside or not stripped:
            continue
        match = re.match(r"(\w+): (.*)", stripped)
        if match and len(line) - len(line.lstrip()) <= 8:
            current = match.group(1)
            meanings[current] = match.group(2)
        elif current is not None:
            meanings[current] += " " + stripped
    return meanings


def _type_text(expected: Any) -> str:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        options = [_type_text(a) for a in args if a is not type(None)]
        return " | ".join(options) + (" | null" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_text(args[0])}" if args else "list"
    if origin is dict or expected is dict:
        return "mapping"
    return getattr(expected, "__name__", str(expected))


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value or '""'
    return str(value)


def to_dict(obj: Any) -> dict[str, Any]:
    """The plain-dict form of a config dataclass, as saved in ``config.json``."""
    return dataclasses.asdict(obj)


def _coerce(expected: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if dataclasses.is_dataclass(expected):
        return from_dict(expected, value, path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, path)
            except UserError as error:
                errors.append(error)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise UserError(f"config key '{path}' must be one of {choices}, got {value!r}.")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"config key '{path}' must be a list, got {_type_name(value)} {value!r}.")
        return [_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict or expected is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key '{path}' must be a mapping, got {_type_name(value)}.")
        return value
    if expected is Any:
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected in (int, float) and isinstance(value, bool):
        raise UserError(f"config key '{path}' must be a {expected.__name__}, got a boolean {value!r}.")
    if not isinstance(value, expected):
        raise UserError(f"config key '{path}' must be a {expected.__name__}, got {_type_name(value)} {value!r}.")
    return value


def _type_name(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
            dict: "a mapping", type(None): "nothing (null)"}.get(type(value), type(value).__name__)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe into a dict, with one clear error for each way it can be wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"config file {path} is not valid UTF-8 (undecodable byte at offset {error.start}).") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"config file {path} is not valid YAML{at}: {getattr(error, 'problem', error)}.") from None
    if values is None:
        raise UserError(f"config file {path} is empty.")
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values, got {_type_name(values)}.")
    return values


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a recipe dict.

    Example:
        >>> apply_overrides({"train": {"lr": 1.0}}, ["train.lr=0.5", "out_dir=runs/x"])
        {'train': {'lr': 0.5}, 'out_dir': 'runs/x'}
    """
    values = _deep_copy(values)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' must look like key=value, for example train.lr=0.001.")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node = values
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override '{item}': '{part}' is not a section of the config.")
        node[parts[-1]] = value
    return values


def _deep_copy(values: Any) -> Any:
    if isinstance(values, dict):
        return {k: _deep_copy(v) for k, v in values.items()}
    if isinstance(values, list):
        return [_deep_copy(v) for v in values]
    return values


def parse_run_config(values: dict[str, Any]) -> RunConfig:
    """Check a recipe dict's sections and types; the model section is checked by its family."""
    run = from_dict(RunConfig, values, "")
    if not run.family:
        raise UserError("the config must name a model 'family' (for example family: rnnlm).")
    if not run.data.train:
        raise UserError("the config must name the training data in 'data.train'.")
    if run.train.epochs is None and run.train.max_steps is None:
        raise UserError("the config must set 'train.epochs' or 'train.max_steps' so training knows when to stop.")
    require_at_least(run.train, ("batch_size", "eval_batch_size", "bptt", "grad_accum", "log_every"), section="train")
    require_at_least(run.data, ("max_length", "max_source_length"), section="data")
    require_fraction(run.data, ("valid_fraction",), section="data")
    if run.tokenizer.split is not None and run.tokenizer.kind != "word":
        raise UserError(f"config key 'tokenizer.split' applies to the word tokenizer only; this recipe's "
                        f"tokenizer.kind is {run.tokenizer.kind}.")
    if run.data.valid and run.data.valid_fraction:
        raise UserError("set either data.valid or data.valid_fraction, not both.")
    check_train_config(run.train)
    return run


def check_train_config(train: TrainConfig) -> None:
    """The ``train`` section's ranges, each refused with the key, the rule and the value given."""
    for key in ("epochs", "max_steps", "eval_every"):
        value = getattr(train, key)
        if value is not None and value < 1:
            raise UserError(f"config key 'train.{key}' must be at least 1 (or left unset), got {value}.")
    require_at_least(train, ("warmup_steps", "lr_decay_start", "seed"), minimum=0, section="train")
    require_at_least(train, ("plateau_patience",), section="train")
    for key in ("patience", "max_plateaus"):
        value = getattr(train, key)
        if value is not None and value < 0:
            raise UserError(f"config key 'train.{key}' must be at least 0 (or left unset), got {value}.")
    for key in ("lr", "weight_decay", "momentum", "min_lr_ratio", "lr_decay", *(["grad_clip"] if train.grad_clip
                                                                                  is not None else [])):
        value = getattr(train, key)
        if not math.isfinite(value):
            raise UserError(f"config key 'train.{key}' must be a finite number, got {value}.")
    if train.lr <= 0:
        raise UserError(f"config key 'train.lr' must be positive, got {train.lr}.")
    if train.grad_clip is not None and train.grad_clip <= 0:
        raise UserError(f"config key 'train.grad_clip' must be positive (or null for no clipping), got {train.grad_clip}.")
    if train.weight_decay < 0:
        raise UserError(f"config key 'train.weight_decay' must be at least 0, got {train.weight_decay}.")
    require_fraction(train, ("momentum",), section="train")
    if not 0.0 <= train.min_lr_ratio <= 1.0:
        raise UserError(f"config key 'train.min_lr_ratio' must lie in [0, 1], got {train.min_lr_ratio}.")
    if not 0.0 < train.lr_decay <= 1.0:
        raise UserError(f"config key 'train.lr_decay' must lie in (0, 1], got {train.lr_decay}.")
    if len(train.betas) != 2 or not all(0.0 <= b < 1.0 for b in train.betas):
        raise UserError(f"config key 'train.betas' must be two numbers in [0, 1), got {train.betas}.")
    if train.max_time is not None:
        parse_duration(train.max_time, "train.max_time")
    if not train.progress_every >= 0:
        raise UserError(f"config key 'train.progress_every' must be at least 0 seconds, got {train.progress_every}.")


def parse_duration(value: float | str, key: str = "train.max_time") -> float:
    """Seconds in a duration: a number of seconds, or a text such as ``90s``, ``30m``, ``2h``, ``1h30m``, ``1.5h``.

    Example:
        >>> parse_duration("1h30m"), parse_duration(45)
        (5400.0, 45.0)
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        parts = re.findall(r"(\d+(?:\.\d+)?)([dhms])", text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise UserError(f"config key '{key}' must be a duration such as 90s, 30m, 2h or 1h30m (or a number of "
                            f"seconds), got {value!r}.")
        seconds = sum(float(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"config key '{key}' must be a positive duration, got {value!r}.")
    return seconds


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and check a YAML recipe; relative data paths (and ``tokenizer.path``) resolve against the
    recipe's folder when they exist there, else against the working directory."""
    values = apply_overrides(read_yaml(path), overrides or [])
    run = parse_run_config(values)
    base = Path(path).resolve().parent
    for key in ("train", "valid", "test", "train_target", "valid_target", "test_target"):
        value = getattr(run.data, key)
        if value and not Path(value).is_absolute() and not Path(value).exists() and (base / value).exists():
            setattr(run.data, key, str(base / value))
    value = run.tokenizer.path
    if value and not Path(value).is_absolute() and not Path(value).exists() and (base / value).exists():
        run.tokenizer.path = str(base / value)
    return run
