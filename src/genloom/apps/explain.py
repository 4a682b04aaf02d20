"""Explain a generation: how much each input token (and each earlier generated token) drove each generated token.

For every generated token y_i, its log-probability log P(y_i | context) is attributed to the context's tokens by:

- ``gradient_x_input``: the gradient of log P(y_i) with respect to each token's embedding, times the embedding,
  summed over its dimensions (Shrikumar et al. 2017; captum's ``InputXGradient``);
- ``integrated_gradients``: Sundararajan et al. 2017 (captum's ``IntegratedGradients``): the path integral of the
  gradient from a baseline of all-zero embeddings to the real ones, ``steps`` points (Gauss–Legendre); the
  attributions add up to log P(y_i) at the input minus log P(y_i) at the baseline (completeness), and
  ``Explanation.completeness_error`` says how closely;
- ``attention``: for a seq2seq model the cross-attention of the step that chose y_i over the source; for a GPT,
  attention rollout (Abnar & Zuidema 2020: the product over layers of 0.5·A + 0.5·I, heads averaged); recurrent
  LMs have no attention;
- ``occlusion``: log P(y_i) minus log P(y_i) with that one token removed from the context (the rest re-scored).

Context tokens are, for a language model, its start token, the prompt and the generated tokens; for a seq2seq model
(or a VAE, whose source is encoded to its posterior mean), the source tokens, then the decoder's start token and the
generated tokens. Token y_i can depend only on the context before it: later cells hold NaN.

Attributions are computed at the embedding layer's output, where each family's embedding module is swapped, call
by call, for the tensor being attributed (``_EmbeddingSwap``): that works for decoders that embed a whole prefix at
once (GPT, Transformer) and for those that embed one token a step (the RNN seq2seq decoder), which captum's layer
methods cannot follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from genloom.api import LoadedModel
from genloom.decoding.generate import generate
from genloom.errors import UserError

METHODS = ("gradient_x_input", "integrated_gradients", "attention", "occlusion")


@dataclass
class Explanation:
    """Attributions of a generation.

    Attributes:
        context: the tokens attributed to (see the module's docstring for their order).
        generated: the generated tokens.
        first: the index in ``context`` of the token that predicts ``generated[0]`` is ``first - 1``; token i sees
            ``context[: first + i]``.
        log_probs: log P of each generated token, as the model scored it.
        attributions: method → (len(generated), len(context)) array; NaN where a token cannot matter.
        completeness_error: integrated gradients only: per generated token, |Σ attributions − (log P(input) −
            log P(baseline))| / |log P(input) − log P(baseline)|.
        settings: how each method was run (baseline, steps).
        context_ids, generated_ids: the same tokens as ids.
    """

    context: list[str]
    generated: list[str]
    first: int
    log_probs: list[float]
    context_ids: list[int] = field(default_factory=list)
    generated_ids: list[int] = field(default_factory=list)
    attributions: dict[str, np.ndarray] = field(default_factory=dict)
    completeness_error: list[float] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)


class _EmbeddingSwap:
    """While active, each call of the ``modules`` returns the next positions of ``embedded`` (M, L, C) instead of its
    own output, in call order: a call on (M, T) ids takes T positions, a call on (M,) ids takes one."""

    def __init__(self, modules: list[nn.Embedding], embedded: Tensor):
        self.embedded, self.cursor = embedded, 0
        self.handles = [module.register_forward_hook(self._swap) for module in modules]

    def _swap(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        ids = inputs[0]
        width = ids.size(1) if ids.dim() == 2 else 1
        taken = self.embedded[:, self.cursor : self.cursor + width]  # (M, width, C)
        self.cursor += width
        return taken.reshape(output.shape)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class _Scorer:
    """log P(y | context) for one family, from token ids or from their embeddings."""

    def __init__(self, loaded: LoadedModel):
        self.loaded, self.model = loaded, loaded.model
        self.family = loaded.family
        decoder = getattr(self.model, "embed", None) or self.model.generator.embed
        encoder = getattr(getattr(self.model, "encoder", None), "embed", None)  # an RNN encoder's own, if any
        self.source_embedding: nn.Embedding = encoder if isinstance(encoder, nn.Embedding) else decoder
        self.decoder_embedding: nn.Embedding = decoder
        self.with_source = loaded.conditional or self.family == "vae"

    def ids(self, source: list[int], decoder: list[int]) -> list[int]:
        """Every embedded position in call order: the source's (seq2seq, VAE), then the decoder's."""
        return (source if self.with_source else []) + decoder

    def log_prob(self, source: Tensor, decoder: Tensor, target: int, embedded: Tensor | None = None) -> Tensor:
        """(M,) log P(target | source, decoder prefix) for M rows of ids (source (M, S), decoder (M, T)); with
        ``embedded`` (M, S+T, C), those embeddings stand in for the ids' own."""
        modules = list({id(m): m for m in (self.source_embedding, self.decoder_embedding)}.values())
        swap = _EmbeddingSwap(modules, embedded) if embedded is not None else None
        try:
            state = self._start(source, decoder.size(0))
            scores, _ = self.model.step(decoder, state)  # (M, V)
        finally:
            if swap is not None:
                swap.close()
        return torch.log_softmax(scores.float(), dim=-1)[:, target]

    def _start(self, source: Tensor, rows: int) -> Any:
        if self.family == "vae":
            mean, _ = self.model.posterior(source, torch.ones_like(source, dtype=torch.bool))  # (M, Z)
            return self.model.init_state(rows, mean)
        if self.loaded.conditional:
            mask = torch.ones_like(source, dtype=torch.bool)
            return self.model.init_state(rows, {"source": source, "source_mask": mask, "source_extended": source})
        return self.model.init_state(rows, None)

    def embed(self, source: Tensor, decoder: Tensor) -> Tensor:
        """(1, S+T, C) the embeddings of the source (1, S) and decoder (1, T) ids, detached: what is attributed."""
        parts = [self.source_embedding(source)] if self.with_source else []
        return torch.cat(parts + [self.decoder_embedding(decoder)], dim=1).detach()


def explain(loaded: LoadedModel, text: str, methods: tuple[str, ...] = METHODS, steps: int = 32,
            **options: Any) -> Explanation:
    """Generate from ``text`` (a prompt, or a seq2seq model's or VAE's source) and attribute each generated token.

    Args:
        loaded: the model.
        text: the prompt or source.
        methods: any of ``METHODS``.
        steps: integrated gradients' number of points on the path from the baseline.
        **options: decoding options (``GenerationConfig`` fields; beam search explains the best hypothesis).

    Returns:
        The ``Explanation``.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown explanation method '{unknown[0]}'; known: {', '.join(METHODS)}.")
    if not hasattr(loaded.model, "step"):
        raise UserError(f"{loaded.path} holds a '{loaded.family}' model, which does not generate; explain needs a "
                        "generator.")
    if steps < 2:
        raise UserError(f"--steps must be at least 2, got {steps}.")
    scorer = _Scorer(loaded)
    source, decoder, generated = _generation(loaded, scorer, text, options)
    if not generated:
        raise UserError("the model generated nothing to explain (it ended at once); try other decoding options.")
    limit = getattr(loaded.model, "max_context", None)
    if limit is not None and len(decoder) + len(generated) - 1 > limit:
        raise UserError(f"the prompt and the output take {len(decoder) + len(generated) - 1} tokens, more than the "
                        f"model's context of {limit}; explain needs them within it (lower --max-new-tokens).")
    tokenizer = loaded.tokenizer
    context_ids = scorer.ids(source, decoder + generated[:-1])
    first = len(scorer.ids(source, decoder))
    result = Explanation([tokenizer.id_to_token(i) for i in context_ids], [tokenizer.id_to_token(i) for i in generated],
                         first, [], context_ids=context_ids, generated_ids=generated)
    rows = {m: np.full((len(generated), len(context_ids)), np.nan) for m in methods}
    device = loaded.device
    for i, target in enumerate(generated):
        prefix = decoder + generated[:i]
        src = torch.tensor([source], device=device) if scorer.with_source else torch.zeros((1, 0), dtype=torch.long,
                                                                                              device=device)
        dec = torch.tensor([prefix], device=device)
        visible = first + i  # context columns token i can see
        with torch.no_grad():
            result.log_probs.append(float(scorer.log_prob(src, dec, target)))
        for method in methods:
            rows[method][i, :visible] = METHOD_FUNCTIONS[method](scorer, src, dec, target, steps, result)
    result.attributions = rows
    result.settings = {"integrated_gradients": f"baseline: all-zero embeddings; {steps} steps (Gauss-Legendre)",
                       "occlusion": "log P minus log P with the token removed",
                       "attention": "seq2seq: cross-attention; GPT: attention rollout (0.5 A + 0.5 I, heads "
                                    "averaged); recurrent LMs: none",
                       "gradient_x_input": "gradient times embedding, summed over dimensions"}
    return result


def _generation(loaded: LoadedModel, scorer: _Scorer, text: str, options: dict[str, Any]):
    """The source ids, the decoder's prompt ids and the generated ids (greedy unless ``options`` say otherwise)."""
    cfg = loaded._options(options)
    request = loaded.request([text], cfg)  # the prompt (or source) prepared as generate() prepares it
    engine, prompt, source = request.engine, request.ids[0], []
    if scorer.with_source:
        source = loaded.tokenizer.encode(loaded.prepare(text)) or [loaded.tokenizer.eos_id]
        prompt = [loaded.start_id]
        if loaded.family == "vae":  # the VAE decodes from the source's posterior mean
            engine = dict(engine, context=loaded.to_latent([text])[0].to(loaded.device))
    steps = generate(loaded.model, [prompt], cfg, loaded.tokenizer.eos_id, **engine)
    generated = [int(s.tokens[0]) for s in steps if bool(s.emitted[0])]
    return source, prompt, [g for g in generated if g < loaded.tokenizer.vocab_size]


def _embedded_function(scorer: _Scorer, src: Tensor, dec: Tensor, target: int) -> Callable[[Tensor], Tensor]:
    def forward(embedded: Tensor) -> Tensor:  # (M, L, C) → (M,)
        rows = embedded.size(0)
        return scorer.log_prob(src.expand(rows, -1), dec.expand(rows, -1), target, embedded)
    return forward


def _gradient_x_input(scorer: _Scorer, src: Tensor, dec: Tensor, target: int, steps: int,
                      result: Explanation) -> np.ndarray:
    from captum.attr import InputXGradient  # imported here, as below: captum pulls in matplotlib and scipy (1 s)

    embedded = scorer.embed(src, dec).requires_grad_()
    with torch.enable_grad():
        attribution = InputXGradient(_embedded_function(scorer, src, dec, target)).attribute(embedded)
    return attribution.sum(-1)[0].detach().cpu().numpy()


def _integrated_gradients(scorer: _Scorer, src: Tensor, dec: Tensor, target: int, steps: int,
                          result: Explanation) -> np.ndarray:
    from captum.attr import IntegratedGradients

    embedded = scorer.embed(src, dec)
    forward = _embedded_function(scorer, src, dec, target)
    with torch.enable_grad():
        attribution, delta = IntegratedGradients(forward).attribute(
            embedded, baselines=torch.zeros_like(embedded), n_steps=steps, return_convergence_delta=True,
            internal_batch_size=steps)
    with torch.no_grad():
        gap = float(forward(embedded)[0] - forward(torch.zeros_like(embedded))[0])
    result.completeness_error.append(abs(float(delta[0])) / max(abs(gap), 1e-12))
    return attribution.sum(-1)[0].detach().cpu().numpy()


def _occlusion(scorer: _Scorer, src: Tensor, dec: Tensor, target: int, steps: int,
               result: Explanation) -> np.ndarray:
    """One re-scoring per context token, batched: the source (or the prefix) without that token."""
    with torch.no_grad():
        full = float(scorer.log_prob(src, dec, target)[0])
        parts = []
        if src.size(1) > 1:  # a source of one token cannot lose it
            without = torch.stack([torch.cat([src[0, :j], src[0, j + 1 :]]) for j in range(src.size(1))])
            parts.append(full - scorer.log_prob(without, dec.expand(src.size(1), -1), target))
        elif src.size(1) == 1:
            parts.append(torch.full((1,), float("nan")))
        # The decoder's own start token stays: without it the model reads a prefix it never saw.
        positions = range(1, dec.size(1))
        if positions:
            without = torch.stack([torch.cat([dec[0, :j], dec[0, j + 1 :]]) for j in positions])
            scores = scorer.log_prob(src.expand(len(positions), -1), without, target)
            parts.append(torch.cat([torch.full((1,), float("nan")), full - scores]))
        else:
            parts.append(torch.full((1,), float("nan")))
    return torch.cat([p.float().cpu() for p in parts]).numpy()


def _attention(scorer: _Scorer, src: Tensor, dec: Tensor, target: int, steps: int,
               result: Explanation) -> np.ndarray:
    width = src.size(1) + dec.size(1) if scorer.with_source else dec.size(1)
    row = np.full(width, np.nan)
    model = scorer.model
    with torch.no_grad():
        if scorer.loaded.conditional:
            state = scorer._start(src, 1)
            _, state = model.step(dec, state)
            row[: src.size(1)] = model.attention_weights(state)[0, : src.size(1)].float().cpu().numpy()
        elif scorer.family == "gpt":
            row[:] = _rollout(model, dec)
    return row


def _rollout(model: nn.Module, tokens: Tensor) -> np.ndarray:
    """Attention rollout of a GPT over ``tokens`` (1, T), for the prediction after the last token: (T,)."""
    maps: list[Tensor] = []

    def record(module: nn.Module, inputs: tuple, output: Any) -> None:
        x = inputs[0]  # (1, T, C), the layer's normalised input
        q = module._heads(module.query(x))  # (1, H, T, D)
        k, _ = (module._heads(t) for t in module.key_value(x).chunk(2, dim=-1))
        scores = q @ k.transpose(-2, -1) / module.head_dim ** 0.5  # (1, H, T, T)
        causal = torch.ones(x.size(1), x.size(1), dtype=torch.bool, device=x.device).tril()
        maps.append(torch.softmax(scores.masked_fill(~causal, float("-inf")), -1).mean(1)[0])  # (T, T)

    handles = [layer.self_attention.register_forward_hook(record) for layer in model.layers]
    try:
        model(tokens)
    finally:
        for handle in handles:
            handle.remove()
    eye = torch.eye(tokens.size(1), device=tokens.device)
    rollout = eye
    for attention in maps:
        mixed = 0.5 * attention + 0.5 * eye
        rollout = (mixed / mixed.sum(-1, keepdim=True)) @ rollout
    return rollout[-1].float().cpu().numpy()


METHOD_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "gradient_x_input": _gradient_x_input,
    "integrated_gradients": _integrated_gradients,
    "attention": _attention,
    "occlusion": _occlusion,
}
