"""The Python API: ``load`` a checkpoint to generate and evaluate, ``train`` a recipe."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from genloom.checkpoint import load_tensors, read_checkpoint_config
from genloom.config import RunConfig, from_dict, load_run_config, parse_run_config
from genloom.data.readers import read_corpus
from genloom.data.tokenizers import Tokenizer
from genloom.decoding.generate import GenerationConfig, beam_search, generate
from genloom.errors import UserError
from genloom.models import FAMILIES
from genloom.train.loop import resolve_device


class LoadedModel:
    """A trained model with its tokenizer, ready to generate text and score data.

    Example:
        >>> lm = load("runs/demo")  # doctest: +SKIP
        >>> "".join(lm.generate("the cat", max_new_tokens=10))  # doctest: +SKIP
    """

    def __init__(self, path: Path, config: dict[str, Any], model: torch.nn.Module, tokenizer: Tokenizer,
                 device: torch.device):
        self.path, self.config, self.model, self.tokenizer, self.device = path, config, model, tokenizer, device
        self.family = config["family"]
        self.recipe = config.get("recipe", {})
        batching = self.recipe.get("data", {}).get("batching", "sentences")
        # A stream-trained LM saw every text start right after EOS; a sentence-trained one after BOS.
        self.start_id = tokenizer.eos_id if batching == "stream" else tokenizer.bos_id

    def _prompt_ids(self, prompt: str) -> list[int]:
        return [self.start_id] + (self.tokenizer.encode(prompt) if prompt else [])

    def _new_text(self, prompt_ids: list[int], new_ids: list[int]) -> str:
        """The text that ``new_ids`` add after the prompt, spacing included."""
        before = self.tokenizer.decode(prompt_ids)
        after = self.tokenizer.decode(prompt_ids + new_ids)
        return after[len(before):] if after.startswith(before) else self.tokenizer.decode(new_ids)

    def _options(self, options: dict[str, Any]) -> GenerationConfig:
        known = {f.name for f in fields(GenerationConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UserError(f"unknown generation option '{unknown[0]}'; known options: {', '.join(sorted(known))}.")
        return GenerationConfig(**options)

    def generate(self, prompt: str = "", **options: Any) -> Iterator[str]:
        """Stream the continuation of ``prompt`` as text pieces, as the tokens are chosen.

        Args:
            prompt: the text to continue; empty starts from scratch.
            **options: any ``GenerationConfig`` field (method, max_new_tokens, temperature, top_k,
                top_p, num_beams, length_penalty, repetition_penalty, no_repeat_ngram_size,
                min_new_tokens, stop_strings, seed).

        Yields:
            Text pieces whose concatenation is the continuation (cut before any stop string).
        """
        cfg = self._options(options)
        prompt_ids = self._prompt_ids(prompt)
        new_ids: list[int] = []
        emitted_text = ""
        for step in generate(self.model, [prompt_ids], cfg, self.tokenizer.eos_id,
                             max_context=getattr(self.model, "max_context", None), detokenize=self.tokenizer.decode):
            if not bool(step.emitted[0]):
                continue
            new_ids.append(int(step.tokens[0]))
            text = _cut_at_stop(self._new_text(prompt_ids, new_ids), cfg.stop_strings)
            if text.endswith("\ufffd"):  # a multi-byte character is still incomplete
                continue
            if text.startswith(emitted_text) and len(text) > len(emitted_text):
                yield text[len(emitted_text):]
                emitted_text = text

    def complete(self, prompts: list[str], **options: Any) -> list[list[str]]:
        """Continue a batch of prompts at once; returns ``num_return_sequences`` texts for each.

        Greedy and sampling use the same streaming engine as ``generate``; beam
        search returns its n-best list, best first.
        """
        cfg = self._options(options)
        ids = [self._prompt_ids(p) for p in prompts]
        max_context = getattr(self.model, "max_context", None)
        if cfg.method == "beam":
            nbest = beam_search(self.model, ids, cfg, self.tokenizer.eos_id, max_context=max_context,
                                detokenize=self.tokenizer.decode)
            return [[_cut_at_stop(self._new_text(p, h.tokens), cfg.stop_strings) for h in hyps]
                    for p, hyps in zip(ids, nbest)]
        new_ids: list[list[int]] = [[] for _ in prompts]
        for step in generate(self.model, ids, cfg, self.tokenizer.eos_id, max_context=max_context,
                             detokenize=self.tokenizer.decode):
            for row in step.emitted.nonzero().flatten().tolist():
                new_ids[row].append(int(step.tokens[row]))
        return [[_cut_at_stop(self._new_text(p, n), cfg.stop_strings)] for p, n in zip(ids, new_ids)]

    def evaluate(self, data: str | Path | list[str]) -> dict[str, float]:
        """Loss (nats per token, EOS included), perplexity and token count on a file or a list of texts."""
        from genloom.train.lm import evaluate_texts

        if isinstance(data, (str, Path)):
            recipe_data = self.recipe.get("data", {})
            texts = read_corpus(data, recipe_data.get("format", "lines"), recipe_data.get("field"),
                                recipe_data.get("lowercase", False))
        else:
            texts = [t for t in data if t.strip()]
            if not texts:
                raise UserError("there is no text to evaluate.")
        return evaluate_texts(self.model, self.tokenizer, self.recipe, texts, self.device)


def _cut_at_stop(text: str, stop_strings: list[str]) -> str:
    cuts = [text.index(s) for s in stop_strings if s and s in text]
    return text[: min(cuts)] if cuts else text


def load(path: str | Path, device: str | None = None, family: str | None = None) -> LoadedModel:
    """Load a genloom checkpoint directory.

    Args:
        path: the run directory (holding config.json, model.safetensors, tokenizer.json).
        device: ``cpu``, ``cuda``, … (default: CUDA when present).
        family: when given, the checkpoint must be of this family.

    Returns:
        A ``LoadedModel`` in evaluation mode.
    """
    path = Path(path)
    config = read_checkpoint_config(path)
    if family is not None and config["family"] != family:
        raise UserError(f"{path} holds a '{config['family']}' checkpoint, but this command needs a '{family}' one.")
    module = FAMILIES.get(config["family"])
    if module is None:
        raise UserError(f"{path} holds an unknown model family '{config['family']}'; known: {', '.join(FAMILIES)}.")
    model_config = from_dict(module.CONFIG, config["model"], "model")
    tokenizer = Tokenizer.load(path / "tokenizer.json")
    torch_device = resolve_device(device or "auto")
    model = module.build(model_config)
    weights = load_tensors(path / "model.safetensors")
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise UserError(f"the weights in {path / 'model.safetensors'} do not fit the model in its config.json "
                        f"({str(error).splitlines()[0]}).") from None
    model.to(torch_device).eval()
    return LoadedModel(path, config, model, tokenizer, torch_device)


def train(config: str | Path | RunConfig | dict, overrides: list[str] | None = None, resume: bool = False,
          device: str | None = None) -> dict[str, Any]:
    """Run a recipe: a YAML path, a recipe dict or a ``RunConfig``; returns the run's summary."""
    from genloom.train.recipes import RECIPES

    if isinstance(config, (str, Path)):
        run = load_run_config(config, overrides)
    elif isinstance(config, dict):
        from genloom.config import apply_overrides

        run = parse_run_config(apply_overrides(config, overrides or []))
    else:
        run = config
    recipe = RECIPES.get(run.family)
    if recipe is None:
        raise UserError(f"unknown model family '{run.family}'; known families: {', '.join(RECIPES)}.")
    return recipe(run, resume=resume, device=device)


__all__ = ["LoadedModel", "load", "train", "RunConfig"]
