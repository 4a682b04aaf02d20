"""Adversarial text generation, by two routes around the discrete sampling step.

- ``objective: seqgan`` (Yu et al. 2017): the generator is a policy; each token's
  reward is the discriminator's probability of "real" for Monte-Carlo rollouts
  that complete the prefix, drawn from a rollout copy of the generator; REINFORCE.
- ``objective: gumbel`` (the Gumbel-softmax route of RelGAN, Nie et al. 2019): the
  generator's tokens are relaxed to softmax(β (logits + Gumbel noise)), with the
  inverse temperature β rising from 1 to ``gumbel_temperature_max`` over the
  adversarial updates, and both players use the relativistic standard GAN loss.

The generator is the RNN language model (``models/rnnlm.py``); the discriminator
is Kim 2014's CNN (``nn/cnn.py``). The recipe (``train/gan.py``) runs three
phases through the shared loop: MLE pretraining of the generator, pretraining of
the discriminator, adversarial updates. ``phase`` chooses what ``loss`` trains;
in evaluation ``loss`` is always the generator's NLL of real text (NLL-test).
Counters and the rollout copy are part of the state dict and change only between
optimizer steps (``after_update``), so every phase resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genloom.config import require_at_least, require_fraction
from genloom.data.batching import Batch
from genloom.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from genloom.errors import UserError
from genloom.models.rnnlm import RNNLM, RNNLMConfig
from genloom.nn.cnn import TextCNN
from genloom.nn.losses import LossOutput, masked_cross_entropy
from genloom.nn.rnn import RNNState, reorder_state
from genloom.nn.state import join_rnn_states
from genloom.nn.sampling import draw

BATCHING = "sentences"
PHASES = ("mle", "discriminator", "adversarial")


@dataclass
class GANConfig:
    """The generator, the discriminator, and the adversarial schedule. ``vocab_size`` comes from the tokenizer.

    Sequences hold at most ``max_length`` tokens before the end-of-sentence token
    (the recipe's ``data.max_length`` must match); ``min_length`` forbids an
    earlier end (the SeqGAN oracle's sequences are always 20 tokens).
    Discriminator defaults are SeqGAN's: 64-d embeddings, widths 1–10, 15, 20
    with 100–200 filters each, dropout 0.25. ``disc_lr``: the discriminator's
    learning rate (SeqGAN: 1e-4, while the generator's is ``train.lr``, 1e-2).
    ``adversarial_lr``: the generator's learning rate in the adversarial phase
    (default ``train.lr``; RelGAN uses 1e-4 for both players). ``disc_l2``: λ of an
    L2 penalty λ (‖w‖² + b²) / 2 on the discriminator's output layer, added to its
    loss. SeqGAN's ``l2_reg_lambda`` is 0.2 on a two-class softmax layer W; our
    single logit's weights are w = W_real − W_fake, and the smallest penalty of the
    W giving a w is 0.2 ‖w‖² / 4, so 0.1 here matches it. The recipe: MLE
    pretraining for the recipe's ``train.epochs`` (or ``train.max_steps``); then
    ``disc_pretrain_epochs`` epochs of discriminator training on real text against
    fresh samples; then ``adversarial_rounds`` rounds of ``generator_steps``
    generator updates followed by ``disc_steps`` discriminator minibatches.
    ``mle_weights``: the pretrained generator that the later phases start from,
    ``best`` (lowest validation loss) or ``last`` (after the last MLE epoch, as
    SeqGAN and Texygen pretrain: a fixed number of epochs, no early stopping).
    ``rollout_update_rate`` ρ: after each generator update the rollout copy moves
    to ρ θ_rollout + (1 − ρ) θ_generator. The SeqGAN and Texygen code pass 0.8, but
    their rollout graph reads the generator's live variables and is never rebuilt,
    so their results come from ρ = 0 (the current generator); the recipes use 0.
    ``pg_reduction``: the policy-gradient loss is the ``mean`` over the batch's tokens
    or their ``sum``, as the SeqGAN and Texygen code. Adam is blind to the loss's
    scale except where gradients are near its ε (1e-8), and a strong discriminator's
    rewards are tiny (a mean of 0.005): most per-token-mean gradients then fall
    below ε, and the generator's entropy climbs; the sum's, B·L times larger, do not
    (it delays that climb, it does not end the oracle drift: docs/gan.md). With the sum, generator steps also log the summed loss.
    ``init_range``: the generator's weights start uniform in ±init_range, as the RNN LM's (0: PyTorch's
    defaults); SeqGAN draws every generator weight from N(0, 0.1), the s.d. of ±0.173.

    Attributes:
        vocab_size: set from the tokenizer.
        objective: seqgan (policy gradient with rollouts) or gumbel (Gumbel-softmax relaxation).
        cell: the generator's recurrent cell: lstm or gru.
        embed_dim: the generator's embedding size.
        hidden_dim: the generator's state size.
        num_layers: the generator's recurrent layers.
        max_length: tokens per sequence before the end token (data.max_length must match).
        min_length: forbid the end token before this many tokens.
        disc_embed_dim: the discriminator's embedding size.
        filter_sizes: the discriminator's convolution widths.
        num_filters: filters of each width.
        disc_dropout: dropout before the discriminator's output layer.
        disc_lr: the discriminator's learning rate.
        disc_l2: the L2 penalty on the discriminator's output layer.
        adversarial_lr: the generator's learning rate in the adversarial phase (unset: train.lr).
        rollouts: Monte Carlo rollouts per token for the rewards (seqgan).
        rollout_update_rate: how slowly the rollout copy follows the generator (0: the current generator).
        pg_reduction: the policy-gradient loss is the mean or the sum over the batch's tokens.
        gumbel_temperature_max: gumbel: the Gumbel-softmax temperature's final value.
        disc_pretrain_epochs: epochs of discriminator pretraining.
        adversarial_rounds: rounds of adversarial training.
        generator_steps: generator updates per round.
        disc_steps: discriminator minibatches per round.
        mle_weights: the pretrained generator the adversarial phase starts from: best or last.
        init_range: the generator's weights start uniform in ±init_range (0: PyTorch's defaults).
    """

    vocab_size: int = 0
    objective: Literal["seqgan", "gumbel"] = "seqgan"
    cell: Literal["lstm", "gru"] = "lstm"
    embed_dim: int = 32
    hidden_dim: int = 32
    num_layers: int = 1
    max_length: int = 20
    min_length: int = 0
    disc_embed_dim: int = 64
    filter_sizes: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20])
    num_filters: list[int] = field(default_factory=lambda: [100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160])
    disc_dropout: float = 0.25
    disc_lr: float = 1e-4
    disc_l2: float = 0.0
    adversarial_lr: float | None = None
    rollouts: int = 16
    rollout_update_rate: float = 0.8
    pg_reduction: Literal["mean", "sum"] = "mean"
    gumbel_temperature_max: float = 100.0
    disc_pretrain_epochs: int = 10
    adversarial_rounds: int = 200
    generator_steps: int = 1
    disc_steps: int = 5
    mle_weights: Literal["best", "last"] = "best"
    init_range: float = 0.1


def gumbel_softmax(logits: Tensor, beta: float, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Relaxed one-hot samples: softmax(β (logits + g)), g ~ Gumbel(0, 1), and the hard tokens argmax(logits + g).

    As β grows the relaxed sample approaches the one-hot of the hard token.
    (…, V) → (…, V) probabilities and (…) token ids.
    """
    uniform = torch.rand(logits.shape, device=logits.device, generator=generator).clamp(1e-10, 1 - 1e-10)
    perturbed = logits - torch.log(-torch.log(uniform))
    return torch.softmax(beta * perturbed, dim=-1), perturbed.argmax(-1)


def inverse_temperature(config: GANConfig, update: int, total: int) -> float:
    """RelGAN's exponential schedule: β = β_max ** (update / total), from 1 to β_max."""
    return config.gumbel_temperature_max ** (min(update, total) / max(total, 1))


class TextGAN(nn.Module):
    """Generator and discriminator together; the generator honours the decoding step contract."""

    conditional = False

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = c = config
        lm = RNNLMConfig(vocab_size=c.vocab_size, cell=c.cell, embed_dim=c.embed_dim, hidden_dim=c.hidden_dim,
                         num_layers=c.num_layers, dropout=0.0, init_range=c.init_range)
        self.generator = RNNLM(lm)
        self.rollout = RNNLM(lm)  # the copy of the generator that draws the rollouts, never trained
        self.rollout.load_state_dict(self.generator.state_dict())
        self.rollout.requires_grad_(False)
        self.discriminator = TextCNN(c.vocab_size, c.disc_embed_dim, c.filter_sizes, c.num_filters, c.disc_dropout)
        self.register_buffer("adversarial_updates", torch.zeros((), dtype=torch.long))
        self.phase: str = "mle"
        self.phase_lr = 1.0  # the generator's LR in the current phase; the recipe sets it
        self.total_generator_updates = c.adversarial_rounds * c.generator_steps

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multipliers by parameter-name prefix (the loop's optimizer reads them): the
        discriminator learns at ``disc_lr`` while the phase's LR is the generator's."""
        return {"discriminator.": self.config.disc_lr / self.phase_lr}

    # Sampling.

    def _allowed(self, logits: Tensor, position: int) -> Tensor:
        """Mask tokens a sequence may not hold at ``position``: padding, BOS and <unk> always (a generated
        <unk> is never useful text), EOS before ``min_length``."""
        logits = logits.clone()
        logits[:, [PAD_ID, BOS_ID, UNK_ID]] = float("-inf")
        if position < self.config.min_length:
            logits[:, EOS_ID] = float("-inf")
        return logits

    @torch.no_grad()
    def sample(self, count: int, lm: RNNLM | None = None, prefix: Tensor | None = None,
               rng: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """Sequences of ``max_length`` + 1 positions drawn from ``lm`` (the generator unless given) at
        ``temperature``, each continuing ``prefix`` (count, t) when given; after the first EOS come padding
        ids. → (count, L+1)."""
        lm = lm or self.generator
        start = torch.full((count, 1), BOS_ID, dtype=torch.long, device=self.discriminator.classify.weight.device)
        known = prefix if prefix is not None else start[:, :0]
        logits, state = lm(torch.cat([start, known], 1))  # (B, t+1, V)
        return self._complete(lm, known, logits[:, -1], state, rng, temperature)

    def _complete(self, lm: RNNLM, known: Tensor, logits: Tensor, state: RNNState, rng: torch.Generator | None,
                  temperature: float) -> Tensor:
        """Draw positions t … L of sequences whose first t tokens are ``known`` (B, t), from ``lm`` in
        ``state`` (having read BOS and them) with next-token ``logits`` (B, V). → (B, L+1), padded after EOS."""
        length = self.config.max_length + 1
        tokens = [known]
        for position in range(known.size(1), length):
            if position == length - 1:
                choice = torch.full((known.size(0),), EOS_ID, dtype=torch.long, device=known.device)
            else:
                scaled = self._allowed(logits, position).float()
                if temperature != 1.0:
                    scaled /= temperature
                choice = draw(torch.softmax(scaled, -1), rng)  # (B,)
            tokens.append(choice[:, None])
            if position < length - 1:
                logits, state = lm(choice[:, None], state)
                logits = logits[:, -1]
        return pad_after_eos(torch.cat(tokens, 1))

    # Losses of the three phases.

    def mle_loss(self, batch: Batch) -> LossOutput:
        logits, _ = self.generator(batch.inputs)
        return LossOutput(masked_cross_entropy(logits, batch.targets, batch.mask), batch.num_tokens)

    def real_sequences(self, batch: Batch) -> Tensor:
        """The batch's target sequences padded (or cut) to the width the discriminator sees: (B, L+1)."""
        width = self.config.max_length + 1
        targets = batch.targets.masked_fill(~batch.mask, PAD_ID)[:, :width]
        return F.pad(targets, (0, width - targets.size(1)), value=PAD_ID)

    def discriminator_loss(self, batch: Batch) -> LossOutput:
        """Real text against as many fresh generator samples (hard tokens), binary cross-entropy (standard or
        relativistic, as the objective says)."""
        real = self.real_sequences(batch)
        fake = self.sample(real.size(0))
        real_logits, fake_logits = self.discriminator(real), self.discriminator(fake)
        if self.config.objective == "gumbel":
            loss = F.binary_cross_entropy_with_logits(real_logits - fake_logits, torch.ones_like(real_logits))
        else:
            loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                          + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        if self.config.disc_l2 > 0:
            output = self.discriminator.classify
            loss = loss + self.config.disc_l2 * 0.5 * (output.weight.square().sum() + output.bias.square().sum())
        return LossOutput(loss, 2 * real.size(0))

    @torch.no_grad()
    def rollout_rewards(self, samples: Tensor) -> Tensor:
        """SeqGAN's rewards (B, L): for each prefix length t < L the mean of D's P(real) over ``rollouts``
        completions by the rollout copy; for the whole sequence D's P(real) of it. All in [0, 1].

        The rollout copy reads each sample once, a token at a time; the completions of prefix t start from
        its state after t tokens, copied ``rollouts`` times, instead of re-reading the prefix for each t."""
        count, length = samples.shape
        rewards = torch.zeros(count, length, device=samples.device)
        was_training = self.discriminator.training
        self.discriminator.eval()  # the judge scores without dropout (SeqGAN feeds keep probability 1)
        copies = torch.arange(count, device=samples.device).repeat(self.config.rollouts)  # (R*B,) row r*B+i: sample i
        inputs = torch.cat([torch.full_like(samples[:, :1], BOS_ID), samples], 1)  # (B, L+1)
        _, state = self.rollout(inputs[:, :1])  # BOS read; the prefixes then grow one token at a time
        for t in range(1, length):
            logits, state = self.rollout(inputs[:, t : t + 1], state)  # (B, 1, V): read sample token t-1
            completions = self._complete(self.rollout, samples[:, :t].index_select(0, copies),
                                         logits[:, -1].index_select(0, copies), reorder_state(state, copies),
                                         rng=None, temperature=1.0)
            scores = torch.sigmoid(self.discriminator(completions)).view(self.config.rollouts, count)
            rewards[:, t - 1] = scores.mean(0)
        rewards[:, -1] = torch.sigmoid(self.discriminator(samples))
        self.discriminator.train(was_training)
        return rewards

    def policy_gradient_loss(self, samples: Tensor, rewards: Tensor) -> Tensor:
        """REINFORCE: −Σ_t log π(y_t | y_<t) · R_t over real (non-padding) positions, summed or per token
        (``pg_reduction``)."""
        inputs = torch.cat([torch.full_like(samples[:, :1], BOS_ID), samples[:, :-1]], 1)  # (B, L)
        logits, _ = self.generator(inputs)  # (B, L, V)
        log_probs = torch.log_softmax(logits.float(), -1).gather(2, samples[:, :, None]).squeeze(2)  # (B, L)
        mask = samples != PAD_ID
        total = -(log_probs * rewards * mask).sum()
        return total if self.config.pg_reduction == "sum" else total / mask.sum()

    def gumbel_generator_loss(self, batch: Batch) -> Tensor:
        """The relativistic generator loss on relaxed samples: BCE(D(fake) − D(real), 1), gradients through
        the Gumbel-softmax into the generator."""
        count, length = batch.inputs.size(0), self.config.max_length + 1
        beta = inverse_temperature(self.config, int(self.adversarial_updates), self.total_generator_updates)
        token = torch.full((count, 1), BOS_ID, dtype=torch.long, device=batch.inputs.device)
        state: RNNState | None = None
        soft = []
        for position in range(length):
            logits, state = self.generator(token, state)
            probs, hard = gumbel_softmax(self._allowed(logits[:, -1], position), beta)
            soft.append(probs)
            token = hard[:, None]
        fake = torch.stack(soft, 1)  # (B, L, V)
        real_logits = self.discriminator(self.real_sequences(batch))
        fake_logits = self.discriminator(fake)
        return F.binary_cross_entropy_with_logits(fake_logits - real_logits, torch.ones_like(fake_logits))

    def _generator_turn(self) -> bool:
        """In the adversarial phase, each round is ``generator_steps`` generator updates, then ``disc_steps``
        discriminator updates (the update counter says where in the round we are)."""
        round_length = self.config.generator_steps + self.config.disc_steps
        return int(self.adversarial_updates) % round_length < self.config.generator_steps

    def adversarial_loss(self, batch: Batch) -> LossOutput:
        if not self._generator_turn():
            return self.discriminator_loss(batch)
        if self.config.objective == "gumbel":
            return LossOutput(self.gumbel_generator_loss(batch), batch.inputs.size(0))
        samples = self.sample(batch.inputs.size(0))
        return LossOutput(self.policy_gradient_loss(samples, self.rollout_rewards(samples)), int((samples != PAD_ID).sum()))

    @torch.no_grad()
    def after_update(self) -> None:
        """Called by the training loop after each optimizer step: after a SeqGAN generator update the rollout
        copy follows the generator (SeqGAN's order); the adversarial counter moves on."""
        if self.phase != "adversarial":
            return
        if self.config.objective == "seqgan" and self._generator_turn():
            self.update_rollout()
        self.adversarial_updates += 1

    @torch.no_grad()
    def update_rollout(self) -> None:
        """Move the rollout copy toward the generator: θ_r ← ρ θ_r + (1 − ρ) θ_g (ρ = 0: a copy)."""
        rate = self.config.rollout_update_rate
        for mine, theirs in zip(self.rollout.parameters(), self.generator.parameters()):
            mine.mul_(rate).add_(theirs.detach(), alpha=1 - rate)

    def loss(self, batch: Batch, carry: Any = None) -> LossOutput:
        """What the current ``phase`` trains; in evaluation, the generator's NLL of the real batch."""
        if not self.training or self.phase == "mle":
            return self.mle_loss(batch)
        if self.phase == "discriminator":
            return self.discriminator_loss(batch)
        return self.adversarial_loss(batch)

    # The decoding step contract: the generator's.

    def init_state(self, batch_size: int, context: Any = None) -> RNNState | None:
        return None

    def step(self, tokens: Tensor, state: RNNState | None) -> tuple[Tensor, RNNState]:
        return self.generator.step(tokens, state)

    def reorder_state(self, state: RNNState | None, index: Tensor) -> RNNState | None:
        return self.generator.reorder_state(state, index)

    def merge_states(self, states: list[RNNState]) -> RNNState:
        return join_rnn_states(states)

    @property
    def max_context(self) -> int | None:
        return None


def pad_after_eos(tokens: Tensor) -> Tensor:
    """Replace everything after each row's first EOS by padding: (B, L) → (B, L)."""
    is_eos = tokens == EOS_ID
    after = (is_eos.cumsum(1) - is_eos.long()) > 0  # positions strictly after the first EOS
    return tokens.masked_fill(after, PAD_ID)


def check_config(config: GANConfig) -> None:
    """Invariants with messages that say what was expected and what was given."""
    require_at_least(config, ("embed_dim", "hidden_dim", "num_layers", "max_length", "disc_embed_dim", "rollouts",
                              "generator_steps"))
    require_at_least(config, ("min_length", "disc_pretrain_epochs", "adversarial_rounds",
                              "disc_steps", "disc_l2", "init_range"), minimum=0)
    require_fraction(config, ("disc_dropout", "rollout_update_rate"))
    if len(config.filter_sizes) != len(config.num_filters) or not config.filter_sizes:
        raise UserError(f"model.filter_sizes and model.num_filters must be non-empty lists of the same length, got "
                        f"{len(config.filter_sizes)} and {len(config.num_filters)}.")
    if min(config.filter_sizes) < 1 or min(config.num_filters) < 1:
        raise UserError("model.filter_sizes and model.num_filters must hold positive integers.")
    if config.min_length > config.max_length:
        raise UserError(f"model.min_length ({config.min_length}) cannot exceed model.max_length ({config.max_length}).")
    if config.gumbel_temperature_max < 1 or config.disc_lr <= 0 or (config.adversarial_lr or 1) <= 0:
        raise UserError("model.gumbel_temperature_max must be ≥ 1, and model.disc_lr and model.adversarial_lr > 0.")


def build(config: GANConfig) -> TextGAN:
    check_config(config)
    if config.vocab_size < 1:
        raise UserError("the GAN needs model.vocab_size ≥ 1; it is normally taken from the tokenizer.")
    return TextGAN(config)


CONFIG = GANConfig
MASK_TOKEN = False
