"""The Python API: ``load`` a checkpoint and use it (generate, translate, score), ``train`` a recipe."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from genloom.config import DataConfig, RunConfig, apply_overrides, from_dict, load_run_config, parse_run_config
from genloom.data.batching import pad
from genloom.data.readers import read_corpus, transform_text
from genloom.decoding.generate import GenerationConfig, TokenRules, beam_search, generate
from genloom.errors import UserError
from genloom.metrics import bleu, chrf, rouge, rouge_signature
from genloom.models.huggingface import export_gpt2
from genloom.models.loading import Checkpoint, load_checkpoint
from genloom.recipes import RECIPES, lm, seq2seq, vae
from genloom.recipes.runs import family_module
from genloom.safety import StreamRedactor, StreamScreen, redact, screen
from genloom.training import distributed


@dataclass
class Transduction:
    """One source's output: the text, the tokens on each side, the (T, S) attention between them, and the
    offensive words the safety screen found in it (``safety``)."""

    text: str
    source_tokens: list[str]
    target_tokens: list[str]
    attention: torch.Tensor | None
    flagged: list[str] = field(default_factory=list)


class TextStream:
    """The text of one output row as its tokens arrive: each ``feed`` returns the text that is new and safe to
    show (cut before any stop string, a multi-byte character only once whole, personal data and offensive words
    held back until the ``redact`` and ``safety`` filters have decided), ``finish`` the rest."""

    def __init__(self, model: LoadedModel, prompt_ids: list[int], oov: list[str], cfg: GenerationConfig):
        self.model, self.prompt_ids, self.oov, self.cfg = model, prompt_ids, oov, cfg
        self.filters = (([StreamRedactor(cfg.redact)] if cfg.redact else [])
                        + ([StreamScreen(cfg.safety)] if cfg.safety else []))
        self.new_ids: list[int] = []
        self.text = ""  # the text so far before the filters

    def feed(self, token: int) -> str:
        self.new_ids.append(token)
        text = _cut_at_stop(self.model._new_text(self.prompt_ids, self.new_ids, self.oov), self.cfg.stop_strings)
        if text.endswith("\ufffd") or not (text.startswith(self.text) and len(text) > len(self.text)):
            return ""  # a multi-byte character is still incomplete, or nothing new
        piece, self.text = text[len(self.text):], text
        for stream_filter in self.filters:
            piece = stream_filter.feed(piece)
        return piece

    def finish(self) -> str:
        rest = ""
        for stream_filter in self.filters:  # each passes on what the one before it still held
            rest = stream_filter.feed(rest) + stream_filter.finish()
        return rest

    @property
    def flagged(self) -> list[str]:
        """The offensive words the safety screen found so far."""
        return [word for f in self.filters if isinstance(f, StreamScreen) for word in f.found]


@dataclass
class DecodeRequest:
    """Prompts ready for the engine: each row's ids, the engine's keyword arguments (``context``, ``max_context``,
    ``detokenize``, ``start_token``, ``rules``), and each row's ``TextStream``."""

    ids: list[list[int]]
    engine: dict[str, Any]
    streams: list[TextStream]


class LoadedModel:
    """A trained model with its tokenizer, ready to generate text and score data.

    For a language model a prompt is text to continue; for a conditional model
    (seq2seq) it is the source to translate or summarize.

    Example:
        >>> lm = load("runs/demo")  # doctest: +SKIP
        >>> "".join(lm.generate("the cat", max_new_tokens=10))  # doctest: +SKIP
    """

    def __init__(self, checkpoint: Checkpoint):
        self.checkpoint = checkpoint
        self.path, self.config, self.model = checkpoint.path, checkpoint.config, checkpoint.model
        self.tokenizer, self.device, self.family = checkpoint.tokenizer, checkpoint.device, checkpoint.family
        self.recipe = self.config.get("recipe", {})
        self.lowercase = bool(self.recipe.get("data", {}).get("lowercase", False))
        self.conditional = self.family in CONDITIONAL_FAMILIES
        # A Hugging Face LM reads prompts as its own tokenizer makes them (GPT-2's adds no start token); only an
        # empty prompt starts from its bos_token_id, as transformers' generate does.
        self.huggingface_prompts = self.config.get("source") == "huggingface" and not self.conditional
        # A stream-trained LM saw every text start right after EOS; a sentence-trained one after BOS.
        stream = self.recipe.get("data", {}).get("batching", "sentences") == "stream"
        self.start_id = (self.tokenizer.eos_id if stream and not self.conditional and not self.huggingface_prompts
                         else self.tokenizer.bos_id)

    def prepare(self, text: str) -> str:
        """``text`` transformed as the recipe transformed its training data (``data.lowercase``)."""
        return transform_text(text, self.lowercase)

    def _inputs(self, prompts: list[str]) -> tuple[list[list[int]], dict[str, torch.Tensor] | None, list[list[str]]]:
        """Decoder prompts, the conditioning context, and each row's out-of-vocabulary source words."""
        prompts = [self.prepare(p) for p in prompts]
        if self.huggingface_prompts:
            ids = [self.tokenizer.hf.encode(p).ids if p else [self.start_id] for p in prompts]
            self._check_prompt_lengths(prompts, ids)
            return ids, None, [[] for _ in prompts]
        if not self.conditional:
            ids = [[self.start_id] + (self.tokenizer.encode(p) if p else []) for p in prompts]
            self._check_prompt_lengths(prompts, ids)
            return ids, None, [[] for _ in prompts]
        max_source = self.recipe.get("data", {}).get("max_source_length", 400)
        sources = [self.tokenizer.encode(p)[:max_source] or [self.tokenizer.eos_id] for p in prompts]
        extended = [seq2seq.extend_source(p, ids, self.tokenizer) for p, ids in zip(prompts, sources)]
        source, source_mask = pad(sources, self.tokenizer.pad_id)
        source_extended, _ = pad([e for e, _ in extended], self.tokenizer.pad_id)
        context = {"source": source.to(self.device), "source_mask": source_mask.to(self.device),
                   "source_extended": source_extended.to(self.device)}
        return [[self.start_id] for _ in prompts], context, [oov for _, oov in extended]

    def _check_prompt_lengths(self, prompts: list[str], ids: list[list[int]]) -> None:
        """A prompt longer than the model's context is refused, named (generation itself may run past it)."""
        limit = getattr(self.model, "max_context", None)
        for number, (prompt, row) in enumerate(zip(prompts, ids), start=1):
            if limit is not None and len(row) > limit:
                shown = prompt if len(prompt) <= 40 else prompt[:37] + "..."
                which = f"prompt {number} " if len(prompts) > 1 else "the prompt "
                raise UserError(f"{which}{shown!r} is {len(row)} tokens long, longer than the model's context of "
                                f"{limit} tokens; shorten it (generation may run past the context: it slides).")

    def _decode(self, ids: list[int], oov: list[str]) -> str:
        vocab = self.tokenizer.vocab_size
        if all(i < vocab for i in ids):
            return self.tokenizer.decode(ids)
        special = {self.tokenizer.pad_id, self.tokenizer.bos_id, self.tokenizer.eos_id}
        words = [(oov[i - vocab] if i - vocab < len(oov) else "<unk>") if i >= vocab else self.tokenizer.id_to_token(i)
                 for i in ids if i not in special]
        return " ".join(words)

    def _new_text(self, prompt_ids: list[int], new_ids: list[int], oov: list[str]) -> str:
        """The text that ``new_ids`` add after the prompt, spacing included."""
        before = self._decode(prompt_ids, oov)
        after = self._decode(prompt_ids + new_ids, oov)
        return after[len(before):] if after.startswith(before) else self._decode(new_ids, oov)

    def _options(self, options: dict[str, Any]) -> GenerationConfig:
        if not hasattr(self.model, "step"):
            raise UserError(f"{self.path} holds a '{self.family}' model, which does not generate text; "
                            "use fill-mask or evaluate.")
        known = {f.name for f in fields(GenerationConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UserError(f"unknown generation option '{unknown[0]}'; known options: {', '.join(sorted(known))}.")
        return GenerationConfig(**options)

    def _engine_args(self, cfg: GenerationConfig, context: Any, oov: list[str]) -> dict[str, Any]:
        return dict(context=context, max_context=getattr(self.model, "max_context", None),
                    detokenize=lambda ids: self._decode(ids, oov), start_token=not self.huggingface_prompts,
                    rules=self.token_rules(cfg))

    def token_rules(self, cfg: GenerationConfig) -> TokenRules:
        """``cfg``'s text-level rules as token ids: the padding, start and mask tokens suppressed (they are never
        text), ``<unk>`` too (``no_unk``), the ``ban_words`` and ``bias`` phrases as every token sequence this
        tokenizer writes them with (alone and after a space)."""
        t = self.tokenizer
        never = [t.pad_id, t.bos_id, t.mask_id] + ([t.unk_id] if cfg.no_unk else [])
        suppress = sorted({i for i in never if i is not None and i != t.eos_id and i < t.vocab_size})
        return TokenRules(suppress=suppress,
                          banned=[ids for phrase in cfg.ban_words for ids in self.phrase_ids(phrase, "ban_words")],
                          bias=[(ids, value) for phrase, value in cfg.bias.items()
                                for ids in self.phrase_ids(phrase, "bias")])

    def phrase_ids(self, phrase: str, option: str) -> list[list[int]]:
        """The distinct token sequences of ``phrase`` as it would be generated: on its own and after a space
        (byte-level BPE and unigram write a word differently there), transformed as the recipe's text is."""
        variants: list[list[int]] = []
        for text in (self.prepare(phrase.strip()), " " + self.prepare(phrase.strip())):
            ids = self.tokenizer.encode(text)
            if self.tokenizer.unk_id is not None and self.tokenizer.unk_id in ids:
                unknown = [w for w, i in zip(self.tokenizer.spans(text), ids) if i == self.tokenizer.unk_id]
                raise UserError(f"{option}: the tokenizer of {self.path} has no token for {unknown[0]!r} in "
                                f"{phrase!r}, so the phrase cannot be expressed (the model cannot write it either).")
            if ids and ids not in variants:
                variants.append(ids)
        return variants

    def generate(self, prompt: str = "", **options: Any) -> Iterator[str]:
        """Stream the output for ``prompt`` as text pieces, as the tokens are chosen.

        Args:
            prompt: for a language model the text to continue (empty starts from scratch);
                for a seq2seq model the source text.
            **options: any ``GenerationConfig`` field (method, max_new_tokens, temperature, top_k,
                top_p, num_beams, length_penalty, repetition_penalty, no_repeat_ngram_size,
                min_new_tokens, stop_strings, seed, no_unk, ban_words, bias, redact, safety).

        Yields:
            Text pieces whose concatenation is the output (cut before any stop string); with ``redact`` (or
            ``safety`` mask), personal data (or an offensive word) never shows, not even in part: pieces are held
            back until it is safe; ``safety`` block holds everything back to the end.
        """
        cfg = self._options(options)
        request = self.request([prompt], cfg)
        (text,) = request.streams
        for step in generate(self.model, request.ids, cfg, self.tokenizer.eos_id, **request.engine):
            piece = text.feed(int(step.tokens[0])) if bool(step.emitted[0]) else ""
            if piece:
                yield piece
        rest = text.finish()
        if rest:
            yield rest

    def request(self, prompts: list[str], cfg: GenerationConfig, copies: int = 1) -> DecodeRequest:
        """What the decoding engine needs to decode ``prompts`` (each ``copies`` times, rows prompt-major) under
        ``cfg``, with a ``TextStream`` per row that turns its tokens into text: the one preparation that
        ``generate``, the server and its batches share."""
        ids, context, oovs = self._inputs([self.redact_input(p, cfg) for p in prompts])
        rows = [row for row in range(len(prompts)) for _ in range(copies)]
        ids, oovs = [ids[row] for row in rows], [oovs[row] for row in rows]
        if isinstance(context, dict) and copies > 1:
            index = torch.tensor(rows, device=self.device)
            context = {name: value.index_select(0, index) for name, value in context.items()}
        engine = self._engine_args(cfg, context, oovs[0] if len(oovs) == 1 else [])
        return DecodeRequest(ids, engine, [TextStream(self, row_ids, oov, cfg) for row_ids, oov in zip(ids, oovs)])

    @staticmethod
    def redact_input(text: str, cfg: GenerationConfig) -> str:
        """``text`` with its personal data replaced when ``cfg.redact`` asks, before the model reads it."""
        return redact(text, cfg.redact) if cfg.redact else text

    def complete(self, prompts: list[str], **options: Any) -> list[list[str]]:
        """Decode a batch of prompts (or sources) at once; returns ``num_return_sequences`` texts for each.

        Greedy and sampling use the same streaming engine as ``generate``; beam
        search returns its n-best list, best first.
        """
        return [[r.text for r in row] for row in self.outputs(prompts, **options)]

    def transduce(self, sources: list[str], **options: Any) -> list[Transduction]:
        """Translate or summarize ``sources``: the best output of each with its tokens and attention."""
        if not self.conditional:
            raise UserError(f"{self.path} holds a '{self.family}' model, which has no source to translate from.")
        return [row[0] for row in self.outputs(sources, **options)]

    def outputs(self, prompts: list[str], **options: Any) -> list[list[Transduction]]:
        """Decode a batch of prompts (or sources): ``num_return_sequences`` outputs of each, with their tokens,
        attention and safety findings; ``complete`` and ``transduce`` are views of this."""
        cfg = self._options(options)
        ids, context, oovs = self._inputs([self.redact_input(p, cfg) for p in prompts])
        return self._decode_ids(ids, context, oovs, cfg)

    @torch.no_grad()
    def sentence_log_probs(self, texts: list[str], batch_size: int = 64) -> list[float]:
        """log P(text) of each text in nats under a generator: the sum, over its tokens and the end token, of
        log P(token | the start token and the tokens before it). A seq2seq model's decoder reads an empty source;
        past a GPT's context each token is scored from the last ``context_length`` tokens (the window slides one
        token at a time, the most exact form of sliding-window scoring).
        """
        if not hasattr(self.model, "step"):
            raise UserError(f"{self.path} holds a '{self.family}' model, which does not score sentences left to "
                            "right; use pseudo_log_likelihood.")
        scores: list[float] = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            rows = [[self.start_id] + self.tokenizer.encode(self.prepare(t)) + [self.tokenizer.eos_id] for t in chunk]
            context = self._inputs([""] * len(chunk))[1] if self.conditional else None
            tokens, _ = pad(rows, self.tokenizer.eos_id)  # (B, T)
            tokens = tokens.to(self.device)
            lengths = torch.tensor([len(r) for r in rows], device=self.device)  # (B,)
            total = torch.zeros(len(rows), device=self.device)
            logits, state = self.model.step(tokens[:, :1], self.model.init_state(len(rows), context))
            for t in range(1, tokens.size(1)):
                gained = torch.log_softmax(logits.float(), -1).gather(1, tokens[:, t:t + 1]).squeeze(1)  # (B,)
                total += torch.where(t < lengths, gained, torch.zeros_like(gained))
                if t + 1 < tokens.size(1):
                    logits, state = self.model.step(tokens[:, t:t + 1], state)
            scores += total.tolist()
        return scores

    def latent_model(self):
        """The VAE itself, or a clear error when this checkpoint has no latent space."""
        if self.family != "vae":
            raise UserError(f"{self.path} holds a '{self.family}' model, which has no latent space (train a vae).")
        return self.model

    @torch.no_grad()
    def to_latent(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z|x) of each text under a VAE: mean (N, Z) and log-variance (N, Z)."""
        model = self.latent_model()
        data = self.recipe.get("data", {})
        texts = [self.prepare(t) for t in texts]
        ids = [self.tokenizer.encode(t)[: data.get("max_length", 10**9)] + [self.tokenizer.eos_id] for t in texts]
        if not ids:
            raise UserError("there is no text to encode.")
        tokens, mask = pad(ids, self.tokenizer.pad_id)
        return model.posterior(tokens.to(self.device), mask.to(self.device))

    def from_latent(self, z: torch.Tensor, **options: Any) -> list[str]:
        """Decode latent codes z (N, Z) of a VAE into sentences (greedy unless ``options`` say otherwise)."""
        self.latent_model()
        if z.dim() != 2 or z.size(1) != self.model.config.latent_dim:
            raise UserError(f"latent codes must be (N, {self.model.config.latent_dim}), got {tuple(z.shape)}.")
        ids = [[self.start_id] for _ in range(z.size(0))]
        rows = self._decode_ids(ids, z.to(self.device), [[] for _ in ids], self._options(options))
        return [row[0].text.strip() for row in rows]

    def _decode_ids(self, ids: list[list[int]], context: Any, oovs: list[list[str]],
                    cfg: GenerationConfig) -> list[list[Transduction]]:
        source_tokens = self.source_tokens(context) if self.conditional else [[] for _ in ids]

        def result(row: int, new: list[int], attention: torch.Tensor | None) -> Transduction:
            text = _cut_at_stop(self._new_text(ids[row], new, oovs[row]), cfg.stop_strings)
            if cfg.redact:
                text = redact(text, cfg.redact)
            flagged: list[str] = []
            if cfg.safety:
                text, flagged = screen(text, cfg.safety)
            return Transduction(text, source_tokens[row], self.shown_tokens(new, oovs[row], cfg), attention, flagged)

        if cfg.method == "beam":
            nbest = beam_search(self.model, ids, cfg, self.tokenizer.eos_id, **self._engine_args(cfg, context, []))
            return [[result(row, h.tokens, h.attention) for h in hyps] for row, hyps in enumerate(nbest)]
        new_ids: list[list[int]] = [[] for _ in ids]
        attention: list[list[torch.Tensor]] = [[] for _ in ids]
        for step in generate(self.model, ids, cfg, self.tokenizer.eos_id, **self._engine_args(cfg, context, [])):
            for row in step.emitted.nonzero().flatten().tolist():
                new_ids[row].append(int(step.tokens[row]))
                if step.attention is not None:
                    attention[row].append(step.attention[row])
        return [[result(row, new_ids[row], torch.stack(attention[row]) if attention[row] else None)]
                for row in range(len(ids))]

    def source_tokens(self, context: dict[str, torch.Tensor]) -> list[list[str]]:
        """Each row's source tokens (padding left out), as a seq2seq model read them."""
        return [[self.tokenizer.id_to_token(int(i)) for i in row[mask]]
                for row, mask in zip(context["source"].cpu(), context["source_mask"].cpu())]

    def shown_tokens(self, new_ids: list[int], oov: list[str], cfg: GenerationConfig) -> list[str]:
        """The output tokens as an attention plot shows them: copied words by name, each token redacted and masked
        on its own as ``cfg`` asks."""
        vocab = self.tokenizer.vocab_size
        tokens = [oov[i - vocab] if i >= vocab else self.tokenizer.id_to_token(i) for i in new_ids]
        if cfg.redact:
            tokens = [redact(t, cfg.redact) for t in tokens]
        if cfg.safety and cfg.safety != "flag":
            tokens = [screen(t, "mask")[0] for t in tokens]
        return tokens

    def _masked_model(self):
        if self.family != "bert":
            raise UserError(f"{self.path} holds a '{self.family}' model; this needs a masked LM (bert).")
        return self.model

    def _wrap(self, text: str) -> list[int]:
        return [self.tokenizer.bos_id] + self.tokenizer.encode(self.prepare(text)) + [self.tokenizer.eos_id]

    def fill_mask(self, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """For each ``[MASK]`` in ``text``, the ``top_k`` most likely fillers and their probabilities."""
        model = self._masked_model()
        if not 1 <= top_k <= self.tokenizer.vocab_size:
            raise UserError(f"top_k must lie in [1, {self.tokenizer.vocab_size}] (the vocabulary's size), got {top_k}.")
        mask_token = self.tokenizer.id_to_token(self.tokenizer.mask_id)
        if "[MASK]" not in text and mask_token not in text:
            raise UserError("the text has no [MASK] to fill.")
        ids = torch.tensor(self._wrap(text.replace("[MASK]", mask_token)), device=self.device)
        return [[(self.tokenizer.id_to_token(i), p) for i, p in position]
                for position in model.fill_mask(ids, top_k)]

    @torch.no_grad()
    def embed(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """(N, C) sentence embeddings from a BERT: by default the mean of the last layer's states over each text's
        tokens ([CLS] and [SEP] included, as sentence-transformers pools), scaled to length 1 (as OpenAI's are)."""
        model = self._masked_model()
        rows = [self._wrap(t) for t in texts]
        limit = model.config.context_length
        too_long = [i for i, r in enumerate(rows) if len(r) > limit]
        if too_long:
            raise UserError(f"input {too_long[0] + 1} is {len(rows[too_long[0]])} tokens long, longer than the "
                            f"model's context of {limit} tokens.")
        pooled = []
        for start in range(0, len(rows), batch_size):
            tokens, mask = pad(rows[start:start + batch_size], self.tokenizer.pad_id)  # (B, T) each
            pooled.append(model.embed_sentences(tokens.to(self.device), mask.to(self.device)))  # (B, C)
        return torch.cat(pooled).cpu()

    def pseudo_log_likelihood(self, text: str) -> float:
        """Salazar et al. 2020: Σ_i log P(w_i | the text with w_i masked), over the text's tokens, in nats."""
        model = self._masked_model()
        ids = self._wrap(text)
        if len(ids) <= 2:
            raise UserError("there is no text to score.")
        return model.pseudo_log_likelihood(torch.tensor(ids, device=self.device), list(range(1, len(ids) - 1)))

    def evaluate(self, data: str | Path | list[str], target: str | Path | None = None,
                 iw_samples: int = 500, **options: Any) -> dict[str, Any]:
        """Score a file (or a list of texts for a language model); what is measured depends on the family
        (``EVALUATIONS``).

        Language model: loss (nats per token, EOS included), perplexity, tokens.
        VAE: ELBO, reconstruction, KL, importance-weighted NLL with ``iw_samples``
        samples and its perplexity, mutual information and active units.
        Seq2seq: ``data`` holds sources (or source–target TSV/JSONL), ``target``
        the references; loss and perplexity of the references, and BLEU, chrF and
        ROUGE of decoded output against them (``options``: how to decode, by
        default beam search with 5 beams; see ``evaluate_pairs``).
        """
        return EVALUATIONS[self.family](self, data, target, iw_samples, options)

    def texts(self, data: str | Path | list[str]) -> list[str]:
        """The texts of a file read as the recipe read its training data, or a list's non-blank texts."""
        if isinstance(data, (str, Path)):
            recipe_data = self.recipe.get("data", {})
            return read_corpus(data, recipe_data.get("format", "lines"), recipe_data.get("field"),
                               recipe_data.get("lowercase", False))
        texts = [self.prepare(t) for t in data if t.strip()]
        if not texts:
            raise UserError("there is no text to evaluate.")
        return texts

    def evaluate_pairs(self, pairs: list[tuple[str, str]], batch_size: int = 64, **options: Any) -> dict[str, Any]:
        """Loss and perplexity (exp of the NLL alone) of the references, and BLEU, chrF and ROUGE-1/2/L of decoded
        outputs against them, each with its signature, and ``decoding``: how the outputs were decoded
        (``options``; by default beam search, 5 beams, up to 100 new tokens). Sources are decoded in batches of
        ``batch_size``, sorted by length."""
        pairs = [(self.prepare(s), self.prepare(t)) for s, t in pairs]
        result = seq2seq.pair_loss(self.model, self.tokenizer, self.recipe, pairs, self.device)
        cfg = self._options({**EVALUATION_DECODING, **options})
        order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]))
        outputs = [""] * len(pairs)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            for i, row in zip(rows, self.complete([pairs[i][0] for i in rows], **asdict(cfg))):
                outputs[i] = row[0].strip()
        references = [t for _, t in pairs]
        scored, chr_f = bleu(outputs, [references]), chrf(outputs, [references])
        result.update(bleu=scored["bleu"], chrf=chr_f["chrf"], **rouge(outputs, references),
                      decoding=describe_decoding(cfg), signature=scored["signature"], chrf_signature=chr_f["signature"],
                      rouge_signature=rouge_signature())
        return result


def _cut_at_stop(text: str, stop_strings: list[str]) -> str:
    cuts = [text.index(s) for s in stop_strings if s and s in text]
    return text[: min(cuts)] if cuts else text


def describe_decoding(cfg: GenerationConfig) -> str:
    """How outputs were decoded, in words: ``beam search, 5 beams, length_penalty 1.0, max_new_tokens 100``."""
    how = {"greedy": "greedy search", "sample": f"sampling (temperature {cfg.temperature}, top_k {cfg.top_k}, "
                                                f"top_p {cfg.top_p}, seed {cfg.seed})",
           "beam": f"beam search, {cfg.num_beams} beams, length_penalty {cfg.length_penalty}"}[cfg.method]
    extra = [f"{name} {value}" for name, value in (("coverage_penalty", cfg.coverage_penalty),
                                                   ("repetition_penalty", cfg.repetition_penalty),
                                                   ("no_repeat_ngram_size", cfg.no_repeat_ngram_size),
                                                   ("min_new_tokens", cfg.min_new_tokens))
             if value != getattr(GenerationConfig, name)]
    unk = "<unk> suppressed" if cfg.no_unk else "<unk> allowed"
    return ", ".join([how, *extra, f"max_new_tokens {cfg.max_new_tokens}", unk])


# How ``evaluate`` decodes a seq2seq model unless told otherwise.
EVALUATION_DECODING = {"method": "beam", "num_beams": 5, "max_new_tokens": 100}


def _evaluate_lm(model: LoadedModel, data: str | Path | list[str], target: Any, iw_samples: int,
                 options: dict[str, Any]) -> dict[str, Any]:
    return lm.evaluate_texts(model.model, model.tokenizer, model.recipe, model.texts(data), model.device)


def _evaluate_vae(model: LoadedModel, data: str | Path | list[str], target: Any, iw_samples: int,
                  options: dict[str, Any]) -> dict[str, Any]:
    return vae.evaluate_texts(model.model, model.tokenizer, model.recipe, model.texts(data), model.device, iw_samples)


def _evaluate_seq2seq(model: LoadedModel, data: str | Path | list[str], target: str | Path | None,
                      iw_samples: int, options: dict[str, Any]) -> dict[str, Any]:
    recipe_data = from_dict(DataConfig, model.recipe.get("data", {}), "data")
    recipe_data.test, recipe_data.test_target = str(data), str(target) if target else None
    return model.evaluate_pairs(seq2seq.read_pairs(recipe_data, "test"), **options)


# What ``evaluate`` measures for each family (a GAN's generator is scored as a language model).
EVALUATIONS: dict[str, Callable[[LoadedModel, Any, Any, int, dict[str, Any]], dict[str, Any]]] = {
    "rnnlm": _evaluate_lm,
    "gpt": _evaluate_lm,
    "bert": _evaluate_lm,
    "gan": _evaluate_lm,
    "vae": _evaluate_vae,
    "seq2seq": _evaluate_seq2seq,
    "transformer_seq2seq": _evaluate_seq2seq,
}
CONDITIONAL_FAMILIES = ("seq2seq", "transformer_seq2seq")  # a prompt is a source to translate or summarize


def load(path: str | Path, device: str | None = None, family: str | None = None) -> LoadedModel:
    """Load a genloom checkpoint folder (or a local Hugging Face GPT-2 / BERT folder).

    Args:
        path: the run directory (holding config.json, model.safetensors, tokenizer.json).
        device: ``cpu``, ``cuda``, … (default: CUDA when present).
        family: when given, the checkpoint must be of this family.

    Returns:
        A ``LoadedModel`` in evaluation mode.
    """
    return LoadedModel(load_checkpoint(path, device=device, family=family))


def export_huggingface(model: LoadedModel, out_dir: str | Path) -> Path:
    """Write a genloom GPT as a Hugging Face GPT-2 directory (config.json, model.safetensors, tokenizer.json)."""
    if model.family != "gpt":
        raise UserError(f"only GPT checkpoints export to the GPT-2 layout; {model.path} holds a '{model.family}' model.")
    return export_gpt2(model.model, model.tokenizer, out_dir)


def train(config: str | Path | RunConfig | dict, overrides: list[str] | None = None, resume: bool = False,
          device: str | None = None) -> dict[str, Any]:
    """Run a recipe (a YAML path, a recipe dict or a ``RunConfig``) and, when it names ``data.test``, score the
    trained model on it; returns the run's summary with the test figures as ``test_*``."""
    if isinstance(config, (str, Path)):
        run = load_run_config(config, overrides)
    elif isinstance(config, dict):
        run = parse_run_config(apply_overrides(config, overrides or []))
    else:
        run = config
    family_module(run.family)  # an unknown family is refused with the known ones named
    summary = RECIPES[run.family](run, resume=resume, device=device)
    if run.data.test and run.family in TEST_FIGURES and distributed.rank() == 0:
        trained = load(run.out_dir, device=device or run.train.device)
        result = trained.evaluate(run.data.test, target=run.data.test_target)
        summary.update({f"test_{key}": result[key] for key in TEST_FIGURES[run.family] or result
                        if key not in ("protocol", "decoding") and not key.endswith("signature")})
    return summary


# The test-split figures ``train`` adds to a family's summary (None: every figure ``evaluate`` returns).
TEST_FIGURES: dict[str, tuple[str, ...] | None] = {
    "rnnlm": ("loss", "perplexity"),
    "gpt": ("loss", "perplexity"),
    "bert": ("loss", "perplexity"),
    "vae": None,
    "seq2seq": None,
    "transformer_seq2seq": None,
}


__all__ = ["LoadedModel", "load", "train", "export_huggingface", "RunConfig"]
