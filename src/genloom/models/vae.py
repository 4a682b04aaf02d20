"""The text variational autoencoder (Bowman et al. 2016, "Generating Sentences from a Continuous Space").

An RNN encoder maps a sentence x to a diagonal Gaussian q(z|x); z is drawn by the
reparameterisation trick; an RNN decoder generates x from z (z sets the decoder's
initial state and/or is fed with every input word). Training maximises the
evidence lower bound, log p(x) ≥ E_q[log p(x|z)] − KL(q(z|x) ‖ N(0, I)), with the
usual remedies for posterior collapse, each a config option: KL annealing
(linear, sigmoid, cyclical), word dropout on the decoder inputs, free bits, and
aggressive encoder updates (He et al. 2019).

The schedules need the number of training updates (counted by ``after_update``,
which the loop calls between steps) and whether the aggressive phase is still on;
both are buffers, so they are saved with the weights and a resumed run continues
them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genloom.config import require_at_least, require_fraction
from genloom.data.batching import Batch
from genloom.data.tokenizers import UNK_ID
from genloom.errors import UserError
from genloom.nn.losses import LossOutput
from genloom.nn.rnn import RNNEncoder, RNNState, init_and_tie, make_rnn, output_head, reorder_state, run_rnn
from genloom.nn.state import join_rnn_states

BATCHING = "sentences"  # one latent code per sentence: the recipe batches whole sentences
LOG_2PI = math.log(2 * math.pi)


@dataclass
class VAEConfig:
    """The VAE's shape and its anti-collapse settings. ``vocab_size`` comes from the tokenizer.

    ``latent_to``: where z enters the decoder: ``init`` (its initial state),
    ``input`` (concatenated to every input embedding) or ``both``.
    ``word_dropout``: the probability of replacing each decoder input word by
    ``<unk>`` in training (Bowman et al.), so the decoder must lean on z.
    ``encoder_dropout``: dropout on the encoder's embeddings (and between its
    layers); default ``dropout``, which always applies to the decoder (Texar's PTB
    recipe: 0 on the encoder, 0.5 on the decoder).
    ``weight_drop``: DropConnect on the decoder's hidden-to-hidden weights in
    training (Merity et al. 2018's weight drop): one mask per batch, shared by every
    time step; 0 is off.
    ``kl_anneal``: the KL weight β over training updates: ``none`` (1 throughout),
    ``linear`` (``kl_anneal_start`` → 1 over ``kl_anneal_steps``; Texar starts at
    0.1), ``sigmoid`` (a logistic curve centred at half of ``kl_anneal_steps``,
    Bowman et al.), ``cyclical`` (Fu et al.
    2019: cycles of ``kl_anneal_steps`` updates, rising linearly over the first
    ``kl_cycle_ratio`` of each, then 1).
    ``free_bits``: a KL floor λ in nats (Kingma et al. 2016): the objective's KL
    is Σ_d max(λ, KL_d) over latent dimensions (``free_bits_per: dimension``, KL_d
    averaged over the batch) or max(λ, KL) in total (``total``); 0 is off.
    ``aggressive``: He et al. 2019's aggressive training: ``aggressive_encoder_steps``
    encoder-only updates before each joint update, until the mutual information
    I(x; z) on the validation data stops rising (checked at every evaluation).
    ``tie_embeddings`` shares the decoder's input embedding with its output layer
    (Press & Wolf 2017), through a projection of the hidden state to ``embed_dim``
    when the sizes differ. ``init_range`` > 0 initialises every weight uniformly in
    [-init_range, init_range], as the RNN LM does (Zaremba et al.); 0 keeps
    PyTorch's defaults (N(0, 1) embeddings, ±1/√H in the LSTMs and layers).

    Attributes:
        vocab_size: set from the tokenizer.
        cell: the recurrent cell: lstm or gru.
        embed_dim: the token embedding's size.
        hidden_dim: the recurrent state's size.
        encoder_layers: stacked encoder layers.
        decoder_layers: stacked decoder layers.
        bidirectional: a bidirectional encoder.
        latent_dim: the size of z.
        latent_to: where z enters the decoder: init, input or both.
        dropout: dropout in the decoder.
        encoder_dropout: dropout in the encoder (unset: dropout).
        word_dropout: in training, the probability of replacing each decoder input word by <unk>.
        weight_drop: DropConnect on the decoder's hidden-to-hidden weights in training (0: off).
        kl_anneal: the KL weight's schedule: none, linear, sigmoid or cyclical.
        kl_anneal_steps: updates over which the KL weight rises (cyclical: one cycle's length).
        kl_anneal_start: linear: the KL weight at the first update.
        kl_cycle_ratio: cyclical: the fraction of each cycle over which the weight rises.
        free_bits: a KL floor in nats (0: off).
        free_bits_per: the floor applies per latent dimension or to the total KL.
        aggressive: He et al.'s aggressive encoder updates until the mutual information stops rising.
        aggressive_encoder_steps: encoder-only updates before each joint update, while aggressive.
        tie_embeddings: share the decoder's input embedding with its output layer.
        init_range: initialise every weight uniformly in ±init_range (0: PyTorch's defaults).
    """

    vocab_size: int = 0
    cell: Literal["lstm", "gru"] = "lstm"
    embed_dim: int = 256
    hidden_dim: int = 256
    encoder_layers: int = 1
    decoder_layers: int = 1
    bidirectional: bool = False
    latent_dim: int = 32
    latent_to: Literal["init", "input", "both"] = "both"
    dropout: float = 0.3
    encoder_dropout: float | None = None
    word_dropout: float = 0.0
    weight_drop: float = 0.0
    kl_anneal: Literal["none", "linear", "sigmoid", "cyclical"] = "linear"
    kl_anneal_steps: int = 10_000
    kl_anneal_start: float = 0.0
    kl_cycle_ratio: float = 0.5
    free_bits: float = 0.0
    free_bits_per: Literal["dimension", "total"] = "dimension"
    aggressive: bool = False
    aggressive_encoder_steps: int = 5
    tie_embeddings: bool = False
    init_range: float = 0.0


def kl_weight(config: VAEConfig, updates: int) -> float:
    """β, the weight of the KL term after ``updates`` training updates (a pure function of the count)."""
    steps = config.kl_anneal_steps
    if config.kl_anneal == "none":
        return 1.0
    if config.kl_anneal == "linear":
        start = config.kl_anneal_start
        return start + (1.0 - start) * min(1.0, updates / steps)
    if config.kl_anneal == "sigmoid":
        return 1.0 / (1.0 + math.exp(-10.0 * (updates / steps - 0.5)))
    position = (updates % steps) / steps  # cyclical
    return min(1.0, position / config.kl_cycle_ratio)


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) ‖ N(0, I)) per dimension: (…, Z) → (…, Z), never negative."""
    return 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1.0).clamp(min=0.0)


def free_bits_kl(kl: Tensor, floor: float, per: str) -> Tensor:
    """The KL the objective sees, summed over a batch: (B, Z) per-dimension KL → a scalar.

    Below the floor the gradient of the KL vanishes, so the encoder is free to
    use that much information without being pulled back to the prior.
    """
    batch = kl.size(0)
    if floor <= 0:
        return kl.sum()
    if per == "dimension":
        return batch * kl.mean(0).clamp(min=floor).sum()
    return batch * kl.sum(-1).mean().clamp(min=floor)


@contextmanager
def frozen(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Run a forward pass that builds no gradient for ``modules``' parameters (they keep ``grad`` None)."""
    params = [p for module in modules for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class TextVAE(nn.Module):
    """The sentence VAE; its decoder honours the decoding step contract with z as the context."""

    conditional = False  # text generation needs no source: z comes from the prior unless given
    latent = True

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = c = config
        # Separate embeddings, so an encoder-only (aggressive) update leaves the decoder untouched.
        encoder_dropout = c.dropout if c.encoder_dropout is None else c.encoder_dropout
        self.encoder = RNNEncoder(nn.Embedding(c.vocab_size, c.embed_dim), c.cell, c.hidden_dim, c.encoder_layers,
                                  c.bidirectional, encoder_dropout)
        self.posterior_head = nn.Linear(c.hidden_dim * (2 if c.bidirectional else 1), 2 * c.latent_dim)
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        self.state_parts = 2 if c.cell == "lstm" else 1
        use_init, use_input = c.latent_to in ("init", "both"), c.latent_to in ("input", "both")
        self.latent_init = nn.Linear(c.latent_dim, self.state_parts * c.decoder_layers * c.hidden_dim) if use_init else None
        self.decoder = make_rnn(c.cell, c.embed_dim + (c.latent_dim if use_input else 0), c.hidden_dim,
                                c.decoder_layers, c.dropout)
        self.drop = nn.Dropout(c.dropout)
        self.project, self.output = output_head(c.hidden_dim, c.embed_dim, c.vocab_size, c.tie_embeddings)
        init_and_tie(self, c.init_range, self.embed, self.output, c.tie_embeddings)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("aggressive_phase", torch.tensor(bool(c.aggressive)))
        self.register_buffer("last_mutual_info", torch.tensor(float("-inf")))

    def decoder_modules(self) -> list[nn.Module]:
        return [m for m in (self.embed, self.latent_init, self.decoder, self.project, self.output) if m is not None]

    # q(z|x) and p(x|z).

    def posterior(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """tokens (B, T), mask (B, T) → mean (B, Z), log-variance (B, Z) of q(z|x)."""
        _, final, _ = self.encoder(tokens, mask)  # (B, D·H)
        mean, logvar = self.posterior_head(final).chunk(2, dim=-1)
        return mean, logvar

    def initial_state(self, z: Tensor) -> RNNState | None:
        """z (B, Z) → the decoder's initial state, or None when z only enters through the inputs."""
        if self.latent_init is None:
            return None
        layers, hidden = self.config.decoder_layers, self.config.hidden_dim
        parts = torch.tanh(self.latent_init(z)).view(z.size(0), self.state_parts, layers, hidden)  # (B, P, L, H)
        parts = parts.permute(1, 2, 0, 3).contiguous()  # (P, L, B, H)
        return (parts[0], parts[1]) if self.state_parts == 2 else parts[0]

    def decode(self, tokens: Tensor, z: Tensor, state: RNNState | None) -> tuple[Tensor, RNNState]:
        """tokens (B, T), z (B, Z) → logits (B, T, V) and the decoder state after the last token."""
        x = self.drop(self.embed(tokens))  # (B, T, E)
        if self.config.latent_to != "init":
            x = torch.cat([x, z[:, None].expand(-1, tokens.size(1), -1)], -1)  # (B, T, E+Z)
        hidden, state = run_rnn(self.decoder, x, state, self.config.weight_drop)  # (B, T, H)
        return self.output(self.project(self.drop(hidden))), state

    def log_likelihood(self, inputs: Tensor, targets: Tensor, mask: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) per sentence, summed over its tokens (EOS included): (B, T)… and z (B, Z) → (B,)."""
        logits, _ = self.decode(inputs, z, self.initial_state(z))  # (B, T, V)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none").view(targets.shape)
        return -(nll * mask).sum(1)

    # Training.

    def _word_dropout(self, inputs: Tensor) -> Tensor:
        rate = self.config.word_dropout
        if not self.training or rate <= 0:
            return inputs
        drop = torch.rand(inputs.shape, device=inputs.device) < rate
        drop[:, 0] = False  # the start token stays
        return inputs.masked_fill(drop, UNK_ID)

    def _encoder_only_update(self) -> bool:
        """In the aggressive phase, all but every (k+1)-th update train the encoder alone."""
        k = self.config.aggressive_encoder_steps
        return self.training and bool(self.aggressive_phase) and int(self.updates) % (k + 1) != k

    def elbo_terms(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One z per sentence from q(z|x): reconstruction NLL (B,), per-dimension KL (B, Z), and the posterior's
        mean (B, Z) and log-variance (B, Z)."""
        mean, logvar = self.posterior(batch.targets, batch.mask)  # (B, Z) each
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()  # (B, Z)
        inputs = self._word_dropout(batch.inputs)
        if self._encoder_only_update():
            with frozen(self.decoder_modules()):
                reconstruction = -self.log_likelihood(inputs, batch.targets, batch.mask, z)
        else:
            reconstruction = -self.log_likelihood(inputs, batch.targets, batch.mask, z)
        return reconstruction, gaussian_kl(mean, logvar), mean, logvar

    def loss(self, batch: Batch, carry: Any = None) -> LossOutput:
        """−ELBO per token: (Σ reconstruction NLL + β·KL) / tokens; in evaluation β = 1 and no free bits."""
        reconstruction, kl, _, _ = self.elbo_terms(batch)
        if self.training:
            beta = kl_weight(self.config, int(self.updates))
            objective_kl = free_bits_kl(kl, self.config.free_bits, self.config.free_bits_per)
        else:
            beta, objective_kl = 1.0, kl.sum()
        return LossOutput(loss=(reconstruction.sum() + beta * objective_kl) / batch.num_tokens, n_tokens=batch.num_tokens)

    @torch.no_grad()
    def after_update(self) -> None:
        """The training loop calls this after each optimizer step: the count the schedules read."""
        self.updates += 1

    # The decoding step contract: the context is z (B, Z); without one, z is drawn from the prior.

    def init_state(self, batch_size: int, context: Tensor | None = None) -> dict[str, Any]:
        if context is None:
            context = torch.randn(batch_size, self.config.latent_dim, device=self.output.weight.device)
        return {"z": context, "rnn": self.initial_state(context)}

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """(B, T) new tokens → logits (B, V) at the last one, and the advanced state."""
        logits, rnn = self.decode(tokens, state["z"], state["rnn"])
        return logits[:, -1], {"z": state["z"], "rnn": rnn}

    def reorder_state(self, state: dict[str, Any], index: Tensor) -> dict[str, Any]:
        return {"z": state["z"].index_select(0, index), "rnn": reorder_state(state["rnn"], index)}

    def merge_states(self, states: list[dict[str, Any]]) -> dict[str, Any]:
        return {"z": torch.cat([s["z"] for s in states]), "rnn": join_rnn_states([s["rnn"] for s in states])}

    @property
    def max_context(self) -> int | None:
        return None


# Measures of a trained VAE over a data set (He et al. 2019's protocol).


@torch.no_grad()
def importance_weighted_log_likelihood(model: TextVAE, batch: Batch, samples: int, chunk: int = 50) -> Tensor:
    """log p(x) ≈ log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x) (Burda et al. 2016), per sentence (B,).

    A lower bound of log p(x) that tightens as ``samples`` (k) grows; with k = 1 its
    expectation is the ELBO.
    """
    mean, logvar = model.posterior(batch.targets, batch.mask)  # (B, Z)
    std = (0.5 * logvar).exp()
    weights = []
    for start in range(0, samples, chunk):
        k = min(chunk, samples - start)
        eps = torch.randn(mean.size(0), k, mean.size(1), device=mean.device)  # (B, k, Z)
        z = mean[:, None] + eps * std[:, None]  # (B, k, Z)
        log_prior = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)  # (B, k)
        log_posterior = -0.5 * (eps.pow(2) + LOG_2PI + logvar[:, None]).sum(-1)  # (B, k)
        repeat = lambda t: t.repeat_interleave(k, dim=0)  # noqa: E731  (B, T) → (B·k, T)
        log_px_z = model.log_likelihood(repeat(batch.inputs), repeat(batch.targets), repeat(batch.mask),
                                        z.flatten(0, 1)).view(mean.size(0), k)  # (B, k)
        weights.append(log_px_z + log_prior - log_posterior)
    return torch.logsumexp(torch.cat(weights, 1), dim=1) - math.log(samples)


@torch.no_grad()
def mutual_information(mean: Tensor, logvar: Tensor) -> float:
    """I(x; z) under q, estimated on one batch of posteriors, mean and log-variance (B, Z) each (He et al.
    2019): E_x E_q[log q(z|x)] − E_z[log q(z)], with the aggregate posterior q(z) approximated by the
    batch's mixture."""
    size, dims = mean.shape
    neg_entropy = (-0.5 * dims * LOG_2PI - 0.5 * (1 + logvar).sum(-1)).mean()
    z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()  # (B, Z)
    deviation = z[:, None] - mean[None]  # (B z's, B posteriors, Z)
    log_density = -0.5 * (deviation.pow(2) / logvar.exp()[None]).sum(-1) - 0.5 * (dims * LOG_2PI + logvar.sum(-1)[None])
    log_qz = torch.logsumexp(log_density, dim=1) - math.log(size)  # (B,)
    return float(neg_entropy - log_qz.mean())


@torch.no_grad()
def latent_report(model: TextVAE, batches: Iterable[Batch], device: torch.device, iw_samples: int = 0,
                  threshold: float = 0.01) -> dict[str, float]:
    """Per-sentence figures over ``batches``: ELBO, reconstruction, KL, mutual information, active units
    (dimensions whose posterior mean varies across sentences by more than ``threshold``), and with
    ``iw_samples`` > 0 the importance-weighted NLL and the perplexity derived from it.

    NLL is in nats per sentence, summed over its words and the end-of-sentence token.
    """
    was_training = model.training
    model.eval()
    sentences, tokens, reconstruction, kl, mi_weighted, nll = 0, 0, 0.0, 0.0, 0.0, 0.0
    means = []
    for batch in batches:
        batch = batch.to(device)
        batch_reconstruction, batch_kl, mean, logvar = model.elbo_terms(batch)
        sentences += mean.size(0)
        tokens += batch.num_tokens
        reconstruction += float(batch_reconstruction.sum())
        kl += float(batch_kl.sum())
        mi_weighted += mutual_information(mean, logvar) * mean.size(0)
        means.append(mean.float().cpu())
        if iw_samples > 0:
            nll -= float(importance_weighted_log_likelihood(model, batch, iw_samples).sum())
    model.train(was_training)
    if sentences == 0:
        raise UserError("the evaluation data holds no sentences.")
    variance = torch.cat(means).var(dim=0, unbiased=False)  # (Z,)
    result = {"elbo": -(reconstruction + kl) / sentences, "reconstruction": reconstruction / sentences,
              "kl": kl / sentences, "mutual_info": mi_weighted / sentences,
              "active_units": int((variance > threshold).sum()), "sentences": sentences, "tokens": tokens}
    if iw_samples > 0:
        result.update(nll=nll / sentences, perplexity=math.exp(nll / tokens), iw_samples=iw_samples)
    return result


def check_config(config: VAEConfig) -> None:
    """Invariants with messages that say what was expected and what was given."""
    require_at_least(config, ("embed_dim", "hidden_dim", "encoder_layers", "decoder_layers", "latent_dim",
                              "kl_anneal_steps", "aggressive_encoder_steps"))
    require_fraction(config, ("dropout", "word_dropout", "weight_drop", "kl_anneal_start"))
    if config.encoder_dropout is not None:
        require_fraction(config, ("encoder_dropout",))
    if not 0.0 < config.kl_cycle_ratio <= 1.0:
        raise UserError(f"model.kl_cycle_ratio must be in (0, 1], got {config.kl_cycle_ratio}.")
    if config.init_range < 0:
        raise UserError(f"model.init_range is a weight range and cannot be negative, got {config.init_range}.")
    if config.free_bits < 0:
        raise UserError(f"model.free_bits is a KL floor in nats and cannot be negative, got {config.free_bits}.")


def build(config: VAEConfig) -> TextVAE:
    check_config(config)
    if config.vocab_size < 1:
        raise UserError("the VAE needs model.vocab_size ≥ 1; it is normally taken from the tokenizer.")
    return TextVAE(config)


CONFIG = VAEConfig
MASK_TOKEN = False
