"""The decoding engine: greedy search, sampling and beam search over any ``StepModel``.

Every generator in genloom (RNN LM, seq2seq decoder, VAE decoder, GAN
generator, GPT) honours ``StepModel``; this module is the only place that turns
scores into tokens, and ``generate`` is the one streaming iterator that the CLI,
the Python API and the server all use.

Prompts may differ in length. The engine feeds the common prefix in one call,
then walks the rest of each prompt as *forced* steps (the row's next token is
its prompt token, not a choice), so the model never sees padding and the history
of every row is real tokens only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from genloom.decoding.config import GenerationConfig
from genloom.decoding.processors import (
    MinNewTokens,
    NoRepeatNGram,
    BanSequences,
    RepetitionPenalty,
    SequenceBias,
    SuppressTokens,
    Temperature,
    TopK,
    TopP,
    process,
)
from genloom.errors import UserError
from genloom.nn.sampling import draw


class StepModel(Protocol):
    """The step contract every generator honours."""

    def init_state(self, batch_size: int, context: Any = None) -> Any:
        """The decoding state before any token, given an optional conditioning ``context``."""

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Feed (B, T) tokens; return the (B, V) logits for the next token and the new state."""

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        """Keep rows ``index`` (B',) of the state, in that order (beam search; rows leaving a joined batch)."""

    def merge_states(self, states: list[Any]) -> Any:
        """The rows of several states (each after at least one step) as one batch, in order: how requests join a
        running decode (``DecodeBatch``)."""


@dataclass
class StepOutput:
    """One decoding step: ``tokens`` (B,) chosen this step; ``emitted`` (B,) is True where that token is
    new text for the row (not a forced prompt token, not EOS, not after the row finished);
    ``attention`` (B, S) is the source attention behind the choice, for models that attend."""

    tokens: Tensor
    emitted: Tensor
    attention: Tensor | None = None


@dataclass
class Hypothesis:
    """A finished beam: its new tokens (EOS excluded), its length-normalised log-probability, and for
    attending models the (len(tokens), S) attention behind each token."""

    tokens: list[int]
    score: float
    attention: Tensor | None = None


def _attention(model: StepModel, state: Any) -> Tensor | None:
    """The (B, S) attention of the step that produced the latest scores, if the model reports one."""
    report = getattr(model, "attention_weights", None)
    return report(state) if report is not None else None


@dataclass
class TokenRules:
    """Token-level rules that callers derive from text-level options (the API, from ``no_unk``, ``ban_words`` and
    ``bias`` through the tokenizer): ids never chosen, token sequences never completed, and sequence biases."""

    suppress: list[int] = field(default_factory=list)
    banned: list[list[int]] = field(default_factory=list)
    bias: list[tuple[list[int], float]] = field(default_factory=list)


def build_processors(cfg: GenerationConfig, eos_id: int, prompt_lengths: Tensor, for_sampling: bool,
                     rules: TokenRules | None = None) -> list:
    """The processor chain in its fixed order (see ``processors.process``): the repetition penalty and sequence
    bias (``penalty_processors``), the bans (``ban_processors``), then, for sampling, top-k, temperature and
    top-p.

    Processors see each row's history without its start token when it has one (BOS, or EOS for a
    stream-trained LM), so a repetition penalty never punishes ending a text; ``prompt_lengths`` count the
    prompt without that token too.
    """
    chain = penalty_processors(cfg, rules) + ban_processors(cfg, eos_id, prompt_lengths, rules)
    if for_sampling:
        chain += [TopK(cfg.top_k), Temperature(cfg.temperature), TopP(cfg.top_p)]
    return chain


def penalty_processors(cfg: GenerationConfig, rules: TokenRules | None = None) -> list:
    """The processors that reweigh scores: the repetition penalty, then the sequence biases, each when it is on."""
    chain: list = [RepetitionPenalty(cfg.repetition_penalty)] if cfg.repetition_penalty != 1.0 else []
    if rules is not None and rules.bias:
        chain.append(SequenceBias(rules.bias))
    return chain


def ban_processors(cfg: GenerationConfig, eos_id: int, prompt_lengths: Tensor, rules: TokenRules | None = None) -> list:
    """The processors that forbid tokens outright (−inf): suppressed ids, banned sequences, no-repeat n-gram,
    then minimum length."""
    chain: list = []
    if rules is not None and rules.suppress:
        chain.append(SuppressTokens(rules.suppress))
    if rules is not None and rules.banned:
        chain.append(BanSequences(rules.banned))
    if cfg.no_repeat_ngram_size > 0:
        chain.append(NoRepeatNGram(cfg.no_repeat_ngram_size))
    if cfg.min_new_tokens > 0:
        chain.append(MinNewTokens(cfg.min_new_tokens, eos_id, prompt_lengths))
    return chain


def sample_choice(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """(B, V) processed logits → (B,) one token per row drawn from their softmax."""
    return draw(torch.softmax(logits.float(), dim=-1), generator)


def _device(model: StepModel) -> torch.device:
    """Where the model's parameters live (CPU for a parameter-free model)."""
    return next(iter(model.parameters())).device if hasattr(model, "parameters") else torch.device("cpu")


def check_prompts(prompts: list[list[int]], max_context: int | None) -> None:
    """Every prompt holds a token and fits the model's context, or a ``UserError`` says which does not."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise UserError("every prompt must hold at least one token (the model's start token).")
    longest = max(len(p) for p in prompts)
    if max_context is not None and longest > max_context:
        raise UserError(f"the prompt is {longest} tokens long, longer than the model's context of {max_context} tokens.")


def _prepare(model: StepModel, prompts: list[list[int]], context: Any, max_context: int | None):
    """Check prompts, feed their common prefix, and return what the search loops need."""
    check_prompts(prompts, max_context)
    longest = max(len(p) for p in prompts)
    device = _device(model)
    lengths = torch.tensor([len(p) for p in prompts], device=device)  # (B,)
    padded = torch.zeros((len(prompts), longest), dtype=torch.long, device=device)  # (B, L)
    for row, prompt in enumerate(prompts):
        padded[row, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
    common = int(lengths.min())
    state = model.init_state(len(prompts), context)
    return device, lengths, padded, common, state


def _seeded_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)


def _stop_hit(stop_strings: list[str], detokenize: Callable[[list[int]], str] | None, new_tokens: list[int]) -> bool:
    if not stop_strings or detokenize is None:
        return False
    text = detokenize(new_tokens)
    return any(s in text for s in stop_strings)


@torch.no_grad()
def generate(
    model: StepModel,
    prompts: list[list[int]],
    cfg: GenerationConfig,
    eos_id: int,
    context: Any = None,
    max_context: int | None = None,
    detokenize: Callable[[list[int]], str] | None = None,
    start_token: bool = True,
    rules: TokenRules | None = None,
) -> Iterator[StepOutput]:
    """Decode a batch of prompts, yielding one ``StepOutput`` per step as tokens are chosen.

    Greedy and sampling stream as they go. Beam search can only know its best
    sequence at the end, so it runs ``beam_search`` first and then yields the
    best hypothesis of each row token by token, through the same iterator.

    Args:
        model: any ``StepModel``.
        prompts: B prompts of token ids, each starting with the model's start token.
        cfg: the decoding settings.
        eos_id: generation of a row ends at this token.
        context: conditioning passed to ``model.init_state`` (an encoder output, a latent code).
        max_context: the longest prompt the model accepts, or None.
        detokenize: ids → text, needed for ``cfg.stop_strings``.
        start_token: each prompt begins with the model's start token, which the processors do not see
            (False for prompts made as a Hugging Face tokenizer makes them, which the processors see whole).
        rules: token-level rules (suppressed ids, banned sequences, sequence biases; see ``TokenRules``).

    Yields:
        StepOutput with (B,) tokens and (B,) emitted flags.

    Example:
        >>> import genloom
        >>> lm = genloom.load("runs/demo")  # doctest: +SKIP
        >>> steps = generate(lm.model, [[lm.start_id]], GenerationConfig(max_new_tokens=5), lm.tokenizer.eos_id)  # doctest: +SKIP
        >>> [int(s.tokens[0]) for s in steps]  # doctest: +SKIP
    """
    if cfg.method == "beam":
        best = [hyps[0] for hyps in beam_search(model, prompts, cfg, eos_id, context, max_context, detokenize,
                                                start_token, rules)]
        device = _device(model)
        for position in range(max((len(b.tokens) for b in best), default=0)):
            tokens = torch.tensor([b.tokens[position] if position < len(b.tokens) else eos_id for b in best], device=device)
            emitted = torch.tensor([position < len(b.tokens) for b in best], device=device)
            attention = None
            if best[0].attention is not None:
                attention = torch.stack([b.attention[min(position, len(b.attention) - 1)] for b in best])
            yield StepOutput(tokens, emitted, attention)
        return

    batch = DecodeBatch(model, eos_id, max_context)
    group = batch.join(prompts, cfg, context, detokenize, start_token, rules)
    while True:
        (output,) = batch.choose()
        if group.error is not None:
            raise group.error
        yield output
        if group.done:
            return
        batch.advance()


@dataclass
class Joining:
    """A request about to join a ``DecodeBatch``: its prompts and how to decode them (as ``generate`` takes them)."""

    prompts: list[list[int]]
    cfg: GenerationConfig
    context: Any = None
    detokenize: Callable[[list[int]], str] | None = None
    start_token: bool = True
    rules: TokenRules | None = None


class Group:
    """The rows of one request in a ``DecodeBatch``: prompts decoded together under one ``GenerationConfig``,
    with their own processors, random generator, history and finished flags."""

    def __init__(self, prompts: list[list[int]], cfg: GenerationConfig, eos_id: int, device: torch.device,
                 lengths: Tensor, padded: Tensor, common: int, detokenize: Callable[[list[int]], str] | None,
                 start_token: bool, rules: TokenRules | None, width: int, source_length: int | None):
        self.size, self.cfg, self.eos_id, self.detokenize = len(prompts), cfg, eos_id, detokenize
        self.sampling = cfg.method == "sample"
        self.skip = int(start_token)  # the start token is not text: processors never see it
        self.processors = build_processors(cfg, eos_id, lengths - self.skip, for_sampling=self.sampling, rules=rules)
        self.generator = _seeded_generator(cfg.seed, device)
        self.history = padded[:, :common]  # (n, T)
        self.position = common
        # Each row's bookkeeping in Python: a step reads one list of chosen tokens instead of some twenty small
        # tensor operations (0.4 ms a step at batch 1 on a CPU, a launch each on a GPU).
        self.prompt_rows = padded.tolist()  # (n, L) the prompts, right-padded
        self.prompt_lengths = lengths.tolist()
        self.finished = [False] * self.size
        self.new_count = [0] * self.size
        self.new_tokens: list[list[int]] = [[] for _ in prompts]
        self.width, self.source_length = width, source_length  # the group's own score and source widths
        self.cancelled = False
        self.error: UserError | None = None  # why the group stopped, when its options left no token to choose
        self.last: Tensor | None = None  # (n,) the tokens chosen at the latest step
        self.reasons: list[str | None] = [None] * self.size  # why each row ended: "stop" (EOS, stop string), "length"
        self.shared = _shared_settings(cfg, rules, width)

    @property
    def done(self) -> bool:
        """Every row has finished, or the request was cancelled: the group leaves at the next step boundary."""
        return self.cancelled or all(self.finished)

    def choose(self, logits: Tensor, attention: Tensor | None) -> StepOutput:
        """One step: (n, V) scores → the rows' tokens (forced inside a prompt, EOS once finished)."""
        return self.take(self.pick(logits), attention)

    def pick(self, logits: Tensor) -> Tensor:
        """(n, V) scores → (n,) the token each row would choose, shaped by this group's processors."""
        scores = process(self.processors, self.history[:, self.skip:], logits.float())
        if not self.sampling:
            return _greedy(scores)
        return sample_choice(_choosable(scores), self.generator)

    def take(self, chosen: Tensor, attention: Tensor | None) -> StepOutput:
        """Apply the step: (n,) chosen tokens, except where a row is still inside its prompt (its prompt token) or
        has finished (EOS)."""
        tokens, emitted = chosen.tolist(), [False] * self.size
        for row in range(self.size):
            if self.position < self.prompt_lengths[row]:
                tokens[row] = self.prompt_rows[row][self.position]
            elif self.finished[row]:
                tokens[row] = self.eos_id
            else:
                self.new_count[row] += 1
                ended = tokens[row] == self.eos_id
                emitted[row] = not ended
                if emitted[row] and self.cfg.stop_strings:
                    self.new_tokens[row].append(tokens[row])
                    ended = _stop_hit(self.cfg.stop_strings, self.detokenize, self.new_tokens[row])
                if ended or self.new_count[row] >= self.cfg.max_new_tokens:
                    self.finished[row], self.reasons[row] = True, "stop" if ended else "length"
        tokens = torch.tensor(tokens, dtype=torch.long, device=chosen.device)  # (n,)
        self.history = torch.cat([self.history, tokens[:, None]], dim=1)  # (n, T+1)
        self.position += 1
        self.last = tokens
        return StepOutput(tokens, torch.tensor(emitted, device=chosen.device), attention)


class DecodeBatch:
    """Rows decoded together by greedy search or sampling, one step at a time, where requests (``Group``) join
    and leave at step boundaries: continuous batching, as vLLM and TGI schedule requests.

    A joining request's prompts are fed on their own (their prefill), then its state is merged into the running
    batch (``StepModel.merge_states``); a finished or cancelled request's rows are dropped
    (``StepModel.reorder_state``). One model call per step serves every request, each with its own decoding
    settings, processors and seeded generator, so a request decodes the same tokens alone or joined.

    Example:
        >>> # batch = DecodeBatch(lm.model, eos_id)
        >>> # a = batch.join([[bos]], GenerationConfig(max_new_tokens=5))
        >>> # while batch.groups: outputs = batch.choose(); batch.advance()
    """

    def __init__(self, model: StepModel, eos_id: int, max_context: int | None = None):
        self.model, self.eos_id, self.max_context = model, eos_id, max_context
        self.groups: list[Group] = []
        self.state: Any = None
        self.logits: Tensor | None = None  # (B, V) the scores for every row's next token

    def join(self, prompts: list[list[int]], cfg: GenerationConfig, context: Any = None,
             detokenize: Callable[[list[int]], str] | None = None, start_token: bool = True,
             rules: TokenRules | None = None) -> Group:
        """Add a request (arguments as ``generate``'s): prefill its prompts and merge it into the batch."""
        return self.join_all([Joining(prompts, cfg, context, detokenize, start_token, rules)])[0]

    @torch.no_grad()
    def join_all(self, requests: list[Joining]) -> list[Group]:
        """Add requests at once. Those without a context whose prompts share their shortest length are prefilled in
        one model call (a forward pass costs about as much for one row as for several); the others one by one."""
        for request in requests:
            if request.cfg.method == "beam":
                raise ValueError("beam search keeps its own batch (beam_search); only greedy and sampling join one")
            check_prompts(request.prompts, self.max_context)
        prefills: dict[Any, list[int]] = {}
        for number, request in enumerate(requests):
            shortest = min(len(p) for p in request.prompts)
            prefills.setdefault(shortest if request.context is None else ("alone", number), []).append(number)
        groups: list[Group | None] = [None] * len(requests)
        for numbers in prefills.values():
            for number, group in zip(numbers, self._prefill([requests[n] for n in numbers])):
                groups[number] = group
        return groups  # in the order of ``requests`` (their rows are in the batch in prefill order)

    def _prefill(self, requests: list[Joining]) -> list[Group]:
        prompts = [prompt for request in requests for prompt in request.prompts]
        context = requests[0].context  # None, or the one request's
        device, lengths, padded, common, state = _prepare(self.model, prompts, context, self.max_context)
        logits, state = self.model.step(padded[:, :common], state)  # (n, V)
        source = context.get("source") if isinstance(context, dict) else None
        groups, row = [], 0
        for request in requests:
            rows = slice(row, row + len(request.prompts))
            groups.append(Group(request.prompts, request.cfg, self.eos_id, device, lengths[rows], padded[rows], common,
                                request.detokenize, request.start_token, request.rules, logits.size(1),
                                source.size(1) if source is not None else None))
            row += len(request.prompts)
        if self.groups:
            self.state = self.model.merge_states([self.state, state])
            self.logits = _cat_scores([self.logits, logits])
        else:
            self.state, self.logits = state, logits
        self.groups += groups
        return groups

    @torch.no_grad()
    def choose(self) -> list[StepOutput]:
        """Choose every row's next token; one ``StepOutput`` per group, in the order they joined.

        Neighbouring groups with the same history-free settings (``_shared_settings``) are shaped and drawn in one
        go, each row with its own group's generator, so the tokens are those each group would choose alone.
        """
        attention = _attention(self.model, self.state)  # (B, S) or None
        outputs, row = [], 0
        for run in self._runs():
            size = sum(group.size for group in run)
            logits = self.logits[row : row + size, : run[0].width]
            chosen = self._pick(run, logits)
            offset = 0
            for group in run:
                rows = slice(row + offset, row + offset + group.size)
                seen = attention[rows, : group.source_length] if attention is not None else None
                outputs.append(group.take(chosen[offset : offset + group.size], seen))
                offset += group.size
            row += size
        return outputs

    def _pick(self, run: list[Group], logits: Tensor) -> Tensor:
        """The run's tokens; a group whose options forbid every token gets its ``error`` and leaves, alone."""
        if len(run) > 1:
            try:
                return _pick_together(run, logits)
            except UserError:
                pass  # find the group at fault, below
        chosen, offset = [], 0
        for group in run:
            try:
                chosen.append(group.pick(logits[offset : offset + group.size]))
            except UserError as error:
                group.error, group.cancelled = error, True
                chosen.append(torch.full((group.size,), self.eos_id, dtype=torch.long, device=logits.device))
            offset += group.size
        return torch.cat(chosen)

    def _runs(self) -> list[list[Group]]:
        """The groups in order, neighbours with equal shared settings together."""
        runs: list[list[Group]] = []
        for group in self.groups:
            if runs and group.shared is not None and runs[-1][-1].shared == group.shared:
                runs[-1].append(group)
            else:
                runs.append([group])
        return runs

    @torch.no_grad()
    def advance(self) -> None:
        """Drop the groups that are done and feed the others' chosen tokens to the model."""
        keep, live, row = [], [], 0
        for group in self.groups:
            if not group.done:
                keep.extend(range(row, row + group.size))
                live.append(group)
            row += group.size
        if not live:
            self.groups, self.state, self.logits = [], None, None
            return
        if len(live) < len(self.groups):
            self.state = self.model.reorder_state(self.state, torch.tensor(keep, device=self.logits.device))
        self.groups = live
        tokens = torch.cat([group.last for group in live]) if len(live) > 1 else live[0].last  # (B,)
        self.logits, self.state = self.model.step(tokens[:, None], self.state)

    @property
    def rows(self) -> int:
        return sum(group.size for group in self.groups)


NOTHING_TO_CHOOSE = ("the decoding options forbid every token at some step (ban_words, min_new_tokens, "
                     "no_repeat_ngram_size and no_unk together leave nothing to choose); loosen them.")


def _choosable(scores: Tensor) -> Tensor:
    """``scores`` (B, V), once every row is known to leave some token allowed, with +inf (an extreme penalty's
    overflow) brought down to the largest finite score so that the softmax stays a distribution."""
    if not bool(torch.isfinite(scores).any(dim=-1).all()):
        raise UserError(NOTHING_TO_CHOOSE)
    return _capped(scores)


def _greedy(scores: Tensor) -> Tensor:
    """(B, V) processed scores → (B,) each row's best token (the first of equal ones, as ``argmax``), in one pass
    that also finds a row with every token forbidden (its best is −inf or NaN)."""
    best, chosen = scores.max(dim=-1)
    if not bool((best > float("-inf")).all()):
        raise UserError(NOTHING_TO_CHOOSE)
    return chosen


def _capped(scores: Tensor) -> Tensor:
    """+inf scores (an extreme penalty's overflow) brought down to the largest finite float."""
    return scores.clamp(max=torch.finfo(scores.dtype).max)


def _shared_settings(cfg: GenerationConfig, rules: TokenRules | None, width: int) -> tuple | None:
    """What decides how a group shapes its scores, when none of its processors reads the rows' history
    (suppressed ids, top-k, temperature, top-p only); None otherwise."""
    rules = rules or TokenRules()
    if cfg.repetition_penalty != 1.0 or cfg.no_repeat_ngram_size or cfg.min_new_tokens or rules.banned or rules.bias:
        return None
    sampling = cfg.method == "sample"
    return (cfg.method, width, tuple(rules.suppress), cfg.top_k if sampling else None,
            cfg.temperature if sampling else None, cfg.top_p if sampling else None)


def _pick_together(run: list[Group], logits: Tensor) -> Tensor:
    """(ΣB, V) scores of neighbouring groups with equal shared settings → (ΣB,) tokens: shaped once, drawn with one
    uniform number per row from the row's own group's generator (as ``draw`` would draw for that group alone)."""
    scores = process(run[0].processors, None, logits.float())  # their processors read no history
    if not run[0].sampling:
        return _greedy(scores)
    scores = _choosable(scores)
    uniforms = torch.cat([torch.rand((g.size, 1), generator=g.generator, device=scores.device) for g in run])
    return draw(torch.softmax(scores, dim=-1), uniforms=uniforms)


def _cat_scores(scores: list[Tensor]) -> Tensor:
    """(B_i, V_i) scores as one (ΣB_i, max V_i) batch; a pointer-generator's extended vocabularies differ in width,
    and each group reads only its own columns."""
    width = max(s.size(1) for s in scores)
    return torch.cat([torch.nn.functional.pad(s, (0, width - s.size(1)), value=float("-inf")) for s in scores])


# Beam search, in named helpers (fairseq's BeamSearch.step, split up).

def _expand(model: StepModel, state: Any, batch: int, beams: int, device: torch.device) -> Any:
    """Repeat each row's state ``beams`` times: rows b*K … b*K+K-1 belong to prompt b."""
    return model.reorder_state(state, torch.arange(batch, device=device).repeat_interleave(beams))


def _normalised(score: float, length: int, length_penalty: float) -> float:
    """Length-normalised score: log-probability / length ** length_penalty (fairseq's convention)."""
    return score / max(length, 1) ** length_penalty


def _force(lprobs: Tensor, forced: Tensor, forced_tokens: Tensor) -> Tensor:
    """Rows still inside their prompt may only take their prompt token, at no cost to the score.

    Args:
        lprobs: (B, K, V). forced: (B,) bool. forced_tokens: (B,) ids.
    """
    if not bool(forced.any()):
        return lprobs
    only = torch.full_like(lprobs, float("-inf"))
    only.scatter_(2, forced_tokens[:, None, None].expand(-1, lprobs.size(1), 1), 0.0)
    return torch.where(forced[:, None, None], only, lprobs)


@torch.no_grad()
def beam_search(
    model: StepModel,
    prompts: list[list[int]],
    cfg: GenerationConfig,
    eos_id: int,
    context: Any = None,
    max_context: int | None = None,
    detokenize: Callable[[list[int]], str] | None = None,
    start_token: bool = True,
    rules: TokenRules | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search; returns the ``cfg.num_return_sequences`` best hypotheses of each prompt.

    The search of ``transformers``' ``generate`` (``early_stopping=False``), which fairseq's shares where the two
    agree: each step takes the 2K best one-token extensions; of those, only the K best may finish a hypothesis
    (an EOS or a completed stop string), and at ``max_new_tokens`` all K best finish as they are; the first K
    that do not finish stay open. Each row keeps its K best finished hypotheses and stops when the best open beam,
    scored at its current length, is no better than the worst of them (``_cannot_improve``). Scores are summed
    log-probabilities of the new tokens (EOS included) divided by length ** ``length_penalty``, plus GNMT's
    coverage penalty for attending models when ``coverage_penalty`` > 0. Bans (suppressed ids, banned sequences,
    no-repeat n-gram, minimum length) put −inf on the normalised log-probabilities; the repetition penalty and
    sequence biases, a deliberate difference, act on the logits before they are normalised, as they do in greedy
    search and sampling (``transformers`` applies the penalty to the log-probabilities in beam search).

    Example:
        >>> # hyps = beam_search(lm.model, [[lm.start_id]], GenerationConfig(method="beam"), eos_id)
        >>> # hyps[0][0].tokens, hyps[0][0].score
    """
    device, lengths, padded, common, state = _prepare(model, prompts, context, max_context)
    batch, beams = len(prompts), cfg.num_beams
    skip = int(start_token)  # the start token is not text: processors never see it
    penalty = penalty_processors(cfg, rules)
    bans = ban_processors(cfg, eos_id, lengths.repeat_interleave(beams) - skip, rules)
    logits, state = model.step(padded[:, :common], state)  # (B, V)
    state = _expand(model, state, batch, beams, device)
    logits = logits.repeat_interleave(beams, dim=0)  # (B*K, V)
    beam = BeamState(history=padded[:, :common].repeat_interleave(beams, dim=0), prompt_lengths=lengths)
    scores = torch.full((batch, beams), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: only the first one is live
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    new_count = torch.zeros(batch, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)
    for position in range(common, int(lengths.max()) + cfg.max_new_tokens):
        forced = position < lengths  # (B,)
        beam.step_attention = _attention(model, state)  # (B*K, S) or None
        text = beam.history[:, skip:]  # (B*K, T)
        lprobs = process(bans, text, torch.log_softmax(_capped(process(penalty, text, logits.float())), dim=-1))
        lprobs = _force(lprobs.view(batch, beams, -1), forced, padded[:, min(position, padded.size(1) - 1)])
        cand = _candidates(scores, lprobs, 2 * beams)
        new_count += (~forced).long()
        last_step = new_count >= cfg.max_new_tokens  # (B,)
        ends = _ends(cand, forced, beam, eos_id, cfg.stop_strings, detokenize)  # (B, 2K)
        ending, kept = _select(cand.scores, ends | last_step[:, None], done, beams)  # (B, 2K) each
        _finalise(finished, ending, cand, new_count, beam, cfg, eos_id)
        scores, keep_beams, keep_tokens = _kept(cand, kept, beams, eos_id)  # (B, K) each
        done |= last_step | (kept.sum(1) == 0)
        done |= _cannot_improve(finished, scores[:, 0], new_count, ~forced & ~done, beams, cfg.length_penalty)
        if bool(done.all()):
            break
        order = (rows[:, None] * beams + keep_beams).flatten()  # (B*K,) parent row of each kept beam
        beam.advance(order, keep_tokens.flatten())
        state = model.reorder_state(state, order)
        logits, state = model.step(keep_tokens.flatten()[:, None], state)
    return [sorted(hyps, key=lambda h: h.score, reverse=True)[: cfg.num_return_sequences] for hyps in finished]


@dataclass
class Candidates:
    """The 2K best one-token extensions of each prompt's beams, best first: (B, 2K) each."""

    scores: Tensor  # running log-probability with the token
    beams: Tensor  # which of the prompt's K beams it extends
    tokens: Tensor  # the token


@dataclass
class BeamState:
    """What beam search keeps besides the model's state: every beam's tokens (B*K, T), prompt included, the
    attention behind each new token (B*K, T_new, S) and this step's (B*K, S), for attending models."""

    history: Tensor
    prompt_lengths: Tensor  # (B,)
    attended: Tensor | None = None
    step_attention: Tensor | None = None

    def new_tokens(self, flat_row: int, prompt_row: int) -> list[int]:
        """The new (non-prompt) tokens of beam ``flat_row`` so far."""
        return self.history[flat_row, int(self.prompt_lengths[prompt_row]) :].tolist()

    def attention(self, row: int, keep: int, length: int) -> Tensor | None:
        """The (keep, S) attention of beam ``row`` extended by this step's, for a hypothesis of ``length``
        tokens."""
        if self.step_attention is None:
            return None
        rows = self.step_attention[row][None]  # (1, S)
        if self.attended is not None:
            rows = torch.cat([self.attended[row, -(length - 1) :] if length > 1 else self.attended[row, :0], rows], 0)
        return rows[:keep]

    def advance(self, order: Tensor, tokens: Tensor) -> None:
        """Keep beams ``order`` (B*K,) and append their ``tokens`` (B*K,)."""
        self.history = torch.cat([self.history.index_select(0, order), tokens[:, None]], dim=1)
        if self.step_attention is not None:
            new_rows = self.step_attention.index_select(0, order)[:, None]  # (B*K, 1, S)
            self.attended = new_rows if self.attended is None else torch.cat(
                [self.attended.index_select(0, order), new_rows], 1)


def _candidates(scores: Tensor, lprobs: Tensor, count: int) -> Candidates:
    """The ``count`` best one-token extensions of each row's beams.

    Args:
        scores: (B, K) running log-probabilities of the beams (-inf for unused beams).
        lprobs: (B, K, V) next-token log-probabilities.
        count: how many candidates per row (2K, so K survive even if K end in EOS).

    Returns:
        Candidates with (B, count) scores, beams and tokens, best first.
    """
    batch, beams, vocab = lprobs.shape
    total = (scores[:, :, None] + lprobs).view(batch, beams * vocab)  # (B, K*V)
    cand_scores, flat = torch.topk(total, min(count, beams * vocab), dim=1)  # (B, 2K)
    return Candidates(cand_scores, torch.div(flat, vocab, rounding_mode="floor"), flat % vocab)


def _ends(cand: Candidates, forced: Tensor, beam: BeamState, eos_id: int, stop_strings: list[str],
          detokenize: Callable[[list[int]], str] | None) -> Tensor:
    """(B, 2K) True where a candidate finishes its hypothesis: EOS, or a stop string completed, outside
    the prompt."""
    ends = cand.tokens == eos_id
    if stop_strings and detokenize is not None:
        beams = beam.history.size(0) // cand.tokens.size(0)
        for b, j in torch.isfinite(cand.scores).nonzero().tolist():
            new = beam.new_tokens(b * beams + int(cand.beams[b, j]), b) + [int(cand.tokens[b, j])]
            ends[b, j] |= _stop_hit(stop_strings, detokenize, new)
    return ends & ~forced[:, None]


def _select(cand_scores: Tensor, ends: Tensor, done: Tensor, beams: int) -> tuple[Tensor, Tensor]:
    """Which candidates finish a hypothesis and which stay open, (B, 2K) masks each.

    A candidate that ends (EOS, a stop string, the length limit) finishes only if it ranks among the K best
    (as in ``transformers`` and fairseq); the first K candidates that do not end stay open. Rows already done
    take nothing.
    """
    live = torch.isfinite(cand_scores) & ~done[:, None]
    top = torch.arange(cand_scores.size(1), device=cand_scores.device) < beams  # (2K,)
    open_ = live & ~ends
    return live & ends & top, open_ & (open_.long().cumsum(1) <= beams)


def _kept(cand: Candidates, kept: Tensor, beams: int, eos_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """The open candidates packed into K beams per row, best first: (B, K) scores, parent beams, tokens.
    Unfilled beams score -inf."""
    batch = kept.size(0)
    scores = torch.full((batch, beams), float("-inf"), device=kept.device)
    parents = torch.zeros((batch, beams), dtype=torch.long, device=kept.device)
    tokens = torch.full((batch, beams), eos_id, dtype=torch.long, device=kept.device)
    rows, columns = kept.nonzero(as_tuple=True)
    slots = (kept.long().cumsum(1) - 1)[rows, columns]
    scores[rows, slots] = cand.scores[rows, columns]
    parents[rows, slots] = cand.beams[rows, columns]
    tokens[rows, slots] = cand.tokens[rows, columns]
    return scores, parents, tokens


def _finalise(finished: list[list[Hypothesis]], mask: Tensor, cand: Candidates, new_count: Tensor,
              beam: BeamState, cfg: GenerationConfig, eos_id: int) -> None:
    """Turn the candidates of ``mask`` (B, 2K) into finished hypotheses of their rows.

    Args:
        finished: each row's finished hypotheses (at most K kept, see ``_add_finished``).
        mask: (B, 2K) the candidates that finish now (an EOS, a stop string, or the length limit).
        cand: this step's candidates.
        new_count: (B,) new tokens per row including this step's, the hypothesis length.
        beam: the beams' tokens and attention.
        cfg: for ``length_penalty`` and ``coverage_penalty``.
        eos_id: a candidate whose token is EOS finishes without it (EOS is not text).
    """
    if not bool(mask.any()):
        return
    beams = beam.history.size(0) // mask.size(0)
    for b, j in mask.nonzero().tolist():
        row, length = b * beams + int(cand.beams[b, j]), int(new_count[b])
        tokens = beam.new_tokens(row, b) + [int(cand.tokens[b, j])]  # length tokens, this step's last
        text = tokens[:-1] if tokens[-1] == eos_id else tokens
        score = _normalised(float(cand.scores[b, j]), length, cfg.length_penalty) + _coverage(
            beam.attention(row, length, length), cfg.coverage_penalty)
        _add_finished(finished[b], Hypothesis(text, score, beam.attention(row, len(text), length)), beams)


def _coverage(attention: Tensor | None, beta: float) -> float:
    """GNMT's coverage penalty (Wu et al. 2016): β Σ_i log(min(Σ_t a_ti, 1)) over the source positions.

    Positions with exactly zero total attention are padding (softmax gives
    every real position some weight) and are left out. The term is ≤ 0, so
    hypotheses that leave source words unattended rank lower.
    """
    if beta == 0.0 or attention is None:
        return 0.0
    coverage = attention.float().sum(0)  # (S,)
    real = coverage > 0
    return beta * float(torch.log(coverage[real].clamp(max=1.0)).sum())


def _add_finished(finished: list[Hypothesis], hypothesis: Hypothesis, capacity: int) -> None:
    """Keep the ``capacity`` best finished hypotheses of a row (a better one evicts the worst)."""
    finished.append(hypothesis)
    if len(finished) > capacity:
        finished.remove(min(finished, key=lambda h: h.score))


def _cannot_improve(finished: list[list[Hypothesis]], best_open: Tensor, length: Tensor, check: Tensor,
                    beams: int, length_penalty: float) -> Tensor:
    """(B,) True where a row's best open beam, scored at its current length, is no better than the worst of its
    K finished hypotheses (rows not in ``check`` or with fewer than K finished: False).

    Log-probabilities only fall as a beam grows, so this is exact for ``length_penalty`` 0 and the usual
    heuristic otherwise (``transformers``' ``early_stopping=False``).
    """
    result = torch.zeros_like(check)
    for b in check.nonzero().flatten().tolist():
        if len(finished[b]) == beams:
            worst = min(h.score for h in finished[b])
            result[b] = _normalised(float(best_open[b]), int(length[b]), length_penalty) <= worst
    return result
