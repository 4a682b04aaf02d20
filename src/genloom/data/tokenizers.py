"""Tokenizers: character, word, byte-level BPE and unigram, all as Hugging Face ``tokenizers``.

Whatever the kind, the result is one ``tokenizers.Tokenizer`` saved as ``tokenizer.json`` (which
``tokenizers.Tokenizer.from_file`` loads as it is), beside ``tokenizer_config.json``, which names the token
playing each special role as ``transformers`` names them (``bos_token``, ``eos_token``, …) and genloom's
kind. The four special tokens come first, so their ids are fixed: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2,
``<unk>`` 3.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from genloom.checkpoint import atomic_write
from genloom.config import TokenizerConfig, word_split
from genloom.errors import UserError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
MASK = "<mask>"  # added (id 4) only for families that mask inputs (BERT)
KINDS = ("char", "word", "bpe", "unigram")
SPLITS = ("punctuation", "whitespace")  # how the word tokenizer cuts text into words
TOKENIZER_FILE, SETTINGS_FILE = "tokenizer.json", "tokenizer_config.json"

# The word tokenizer's punctuation split (a Moses-like rule, as one pattern): a number with inner '.' or ','
# (3.5, 1,000); a run of letters, digits and marks with inner apostrophes or hyphens (don't, e-mail); otherwise
# one punctuation or symbol character on its own, so "smith." is "smith" "." and "#person1#:" is "#" "person1"
# "#" ":". Applied after splitting on whitespace.
WORD_PATTERN = (r"\p{N}+(?:[.,]\p{N}+)+|[\p{L}\p{M}\p{N}_]+(?:['’-][\p{L}\p{M}\p{N}_]+)*"
                r"|[^\s\p{L}\p{M}\p{N}_]")


DEFAULT_SPECIALS = {"pad": PAD, "bos": BOS, "eos": EOS, "unk": UNK}


class Tokenizer:
    """Text ↔ ids, with the special-token ids every model needs.

    ``specials`` names the token playing each role (pad, bos, eos, unk). genloom's
    own tokenizers use ``<pad> <bos> <eos> <unk>`` at ids 0–3; a Hugging Face GPT-2
    tokenizer plays pad, bos and eos with ``<|endoftext|>`` and has no unk (None).

    Example:
        >>> tok = Tokenizer.train("word", ["a b a", "b c"], vocab_size=100)
        >>> tok.decode(tok.encode("a c"))
        'a c'
    """

    def __init__(self, hf: HFTokenizer, kind: str, specials: dict[str, str | None] | None = None):
        self.hf = hf
        self.kind = kind
        self.specials = dict(specials or DEFAULT_SPECIALS)
        ids = {role: hf.token_to_id(token) if token is not None else None for role, token in self.specials.items()}
        absent = [f"{role} {token!r}" for role, token in self.specials.items() if token is not None and ids[role] is None]
        absent += [role for role in ("pad", "bos", "eos") if self.specials.get(role) is None]
        if absent:
            raise UserError(f"tokenizer lacks the special tokens {', '.join(absent)}.")
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = ids["pad"], ids["bos"], ids["eos"], ids.get("unk")
        self.mask_id = ids.get("mask")

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without BOS/EOS."""
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def spans(self, text: str) -> list[str]:
        """The piece of ``text`` each token of ``encode(text)`` stands for (for a word tokenizer, its words,
        out-of-vocabulary ones included)."""
        return [text[start:end] for start, end in self.hf.encode(text, add_special_tokens=False).offsets]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special tokens other than ``<unk>`` are dropped."""
        keep = [i for i in ids if i not in (self.pad_id, self.bos_id, self.eos_id)]
        return self.hf.decode(keep, skip_special_tokens=False)

    def id_to_token(self, index: int) -> str:
        return self.hf.id_to_token(index)

    def settings(self) -> dict[str, Any]:
        """What ``tokenizer_config.json`` holds: each special role's token under ``transformers``' names, and
        genloom's kind."""
        roles = {f"{role}_token": token for role, token in self.specials.items() if token is not None}
        return {"tokenizer_class": "PreTrainedTokenizerFast", **roles, "genloom_kind": self.kind}

    def save(self, folder: str | Path) -> Path:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``folder``, each atomically; returns the
        first one's path."""
        folder = Path(folder)
        atomic_write(folder / SETTINGS_FILE, json.dumps(self.settings(), ensure_ascii=False, indent=1) + "\n")
        atomic_write(folder / TOKENIZER_FILE, self.hf.to_str())
        return folder / TOKENIZER_FILE

    @classmethod
    def from_json(cls, text: str, source: str = TOKENIZER_FILE, settings: dict[str, Any] | None = None,
                  specials: dict[str, str | None] | None = None) -> "Tokenizer":
        """A tokenizer from ``tokenizer.json``'s text and ``tokenizer_config.json``'s ``settings`` (genloom before
        0.3 kept its kind and roles inside ``tokenizer.json`` as ``genloom_*`` keys; those still load)."""
        try:
            data = json.loads(text)
            settings = dict(settings or {})
            kind = data.pop("genloom_kind", settings.get("genloom_kind", "bpe"))
            roles = {role: settings[f"{role}_token"] for role in ("pad", "bos", "eos", "unk", "mask")
                     if isinstance(settings.get(f"{role}_token"), str)}
            specials = data.pop("genloom_specials", None) or (roles if "pad" in roles else None) or specials
            return cls(HFTokenizer.from_str(json.dumps(data)), kind, specials)
        except (ValueError, Exception) as error:
            if isinstance(error, UserError):
                raise
            raise UserError(f"{source} is not a valid tokenizer file ({str(error).splitlines()[0]}).") from None

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        """Load a run folder's tokenizer, or a ``tokenizer.json`` file (its ``tokenizer_config.json`` read
        from beside it when there is one)."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise UserError(f"tokenizer file not found: {path}")
        settings = None
        if (path.parent / SETTINGS_FILE).is_file():
            try:
                settings = json.loads((path.parent / SETTINGS_FILE).read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as error:
                raise UserError(f"{path.parent / SETTINGS_FILE} is not valid JSON ({error}).") from None
            if not isinstance(settings, dict):
                raise UserError(f"{path.parent / SETTINGS_FILE} must hold a JSON object.")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise UserError(f"{path} is not a valid tokenizer file (not UTF-8 at byte {error.start}).") from None
        return cls.from_json(text, str(path), settings)

    @classmethod
    def train(cls, kind: str, texts: list[str], vocab_size: int = 10000, min_frequency: int = 1,
              mask_token: bool = False, split: str = "punctuation", lowercase: bool = False) -> "Tokenizer":
        """Train a tokenizer of ``kind`` on ``texts`` (with a ``<mask>`` token when ``mask_token``).

        Args:
            kind: ``char``, ``word``, ``bpe`` or ``unigram``.
            texts: the training texts.
            vocab_size: the maximum vocabulary size, special tokens included.
            min_frequency: units seen fewer times are left out (char, word, bpe).
            split: how a word tokenizer finds words: ``punctuation`` (whitespace, then punctuation and
                symbols apart, ``WORD_PATTERN``) or ``whitespace`` (for text that is tokenized already).
            lowercase: the recipe lowercases its text (``data.lowercase``): the tokenizer lowercases too, so that
                ``tokenizer.json`` used on its own (in Hugging Face ``tokenizers``) reads text as training did.
        """
        if kind not in KINDS:
            raise UserError(f"unknown tokenizer kind '{kind}'; expected one of {', '.join(KINDS)}.")
        if split not in SPLITS:
            raise UserError(f"unknown word split '{split}'; expected one of {', '.join(SPLITS)}.")
        if vocab_size <= len(SPECIAL_TOKENS):
            raise UserError(f"tokenizer vocab_size must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}.")
        if not texts:
            raise UserError("cannot train a tokenizer on no text.")
        if kind == "word" and split == "punctuation":
            hf = _train_punctuated_words(texts, vocab_size, min_frequency)
        else:
            build = {"char": _train_char, "word": _train_word, "bpe": _train_bpe, "unigram": _train_unigram}[kind]
            hf = build(texts, vocab_size, min_frequency)
        if lowercase:
            hf.normalizer = (normalizers.Sequence([normalizers.Lowercase(), hf.normalizer]) if hf.normalizer
                             else normalizers.Lowercase())
        if not mask_token:
            return cls(hf, kind)
        hf.add_special_tokens([MASK])
        return cls(hf, kind, {**DEFAULT_SPECIALS, "mask": MASK})


def cache_folder() -> Path:
    """Where trained tokenizers are cached: ``$GENLOOM_CACHE``, else ``$XDG_CACHE_HOME/genloom``, else
    ``~/.cache/genloom``; each under ``tokenizers/<key>/``."""
    root = os.environ.get("GENLOOM_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "genloom"
    return Path(root) / "tokenizers"


def cache_key(cfg: TokenizerConfig, texts: list[str], mask_token: bool, lowercase: bool) -> str:
    """A digest of everything a trained tokenizer depends on: its settings, genloom's way of training that kind,
    the ``tokenizers`` version, and every text (in order)."""
    digest = hashlib.sha256()
    settings = {"kind": cfg.kind, "vocab_size": cfg.vocab_size, "min_frequency": cfg.min_frequency,
                "split": word_split(cfg) if cfg.kind == "word" else None, "mask": mask_token, "lowercase": lowercase, "format": 2,
                "tokenizers": tokenizers.__version__}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8", errors="surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def tokenizer_for(cfg: TokenizerConfig, texts: list[str], mask_token: bool = False,
                  lowercase: bool = False) -> tuple[Tokenizer, str]:
    """The recipe's tokenizer and where it came from: the one ``cfg.path`` names (a ``tokenizer.json`` or a run
    folder), else one trained on ``texts`` with these settings before (the cache, when ``cfg.cache``), else a
    newly trained one (then cached)."""
    if cfg.path:
        tokenizer = Tokenizer.load(cfg.path)
        if mask_token and tokenizer.mask_id is None:
            raise UserError(f"tokenizer.path {cfg.path} has no mask token; this family needs one (train its tokenizer "
                            "with a bert recipe, or leave tokenizer.path unset).")
        return tokenizer, f"reused from {cfg.path}"
    folder = cache_folder() / cache_key(cfg, texts, mask_token, lowercase) if cfg.cache else None
    if folder is not None and (folder / TOKENIZER_FILE).is_file():
        try:
            return Tokenizer.load(folder), f"reused from the cache ({folder})"
        except UserError:
            pass  # a damaged cache entry is trained again and replaced
    tokenizer = Tokenizer.train(cfg.kind, texts, cfg.vocab_size, cfg.min_frequency, mask_token=mask_token,
                                split=word_split(cfg), lowercase=lowercase)
    if folder is None:
        return tokenizer, "trained"
    try:
        tokenizer.save(folder)
    except UserError as error:  # an unwritable cache costs the next run time, never this one
        return tokenizer, f"trained (not cached: {error})"
    return tokenizer, f"trained and cached in {folder}"


def _word_level(counts: Counter, vocab_size: int, min_frequency: int) -> HFTokenizer:
    kept = [unit for unit, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if n >= min_frequency and unit not in SPECIAL_TOKENS]
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + kept[: vocab_size - len(SPECIAL_TOKENS)])}
    hf = HFTokenizer(models.WordLevel(vocab, unk_token=UNK))
    hf.add_special_tokens([PAD, BOS, EOS])
    return hf


def _train_char(texts: list[str], vocab_size: int, min_frequency: int) -> HFTokenizer:
    hf = _word_level(Counter(ch for text in texts for ch in text), vocab_size, min_frequency)
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(".|\n"), "isolated")
    hf.decoder = decoders.Fuse()
    return hf


def _train_word(texts: list[str], vocab_size: int, min_frequency: int) -> HFTokenizer:
    hf = _word_level(Counter(w for text in texts for w in text.split()), vocab_size, min_frequency)
    hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return hf


def _train_punctuated_words(texts: list[str], vocab_size: int, min_frequency: int) -> HFTokenizer:
    hf = HFTokenizer(models.WordLevel(unk_token=UNK))
    hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                pre_tokenizers.Split(Regex(WORD_PATTERN), "isolated")])
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=SPECIAL_TOKENS, show_progress=False)
    hf.train_from_iterator(texts, trainer=trainer)
    hf.add_special_tokens(SPECIAL_TOKENS)  # a literal "<unk>" in the text stays one token
    return hf


def _train_bpe(texts: list[str], vocab_size: int, min_frequency: int) -> HFTokenizer:
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    hf.train_from_iterator(texts, trainer=trainer)
    return hf


def _train_unigram(texts: list[str], vocab_size: int, min_frequency: int) -> HFTokenizer:
    hf = HFTokenizer(models.Unigram())
    # SentencePiece's convention: "▁" (U+2581) marks a space inside pieces, so a literal "▁" in the text
    # can only be read as a space; saying so up front keeps it from becoming <unk> or vanishing. Every text
    # gets one "▁" in front (SentencePiece's dummy prefix), and decoding drops exactly that one: a text that
    # starts with spaces keeps them (with "prepend only when the text does not start with a space" it lost one).
    hf.normalizer = normalizers.Sequence([normalizers.Replace("\u2581", " "), normalizers.Prepend("\u2581")])
    hf.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    hf.decoder = decoders.Metaspace(prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token=UNK, show_progress=False,
        initial_alphabet=sorted(set("".join(texts)))[:1000],
    )
    hf.train_from_iterator(texts, trainer=trainer)
    return hf
