"""Each logits processor on hand-made logits, and none modifies its input."""

import pytest
import torch

from genloom.decoding.generate import sample_choice
from genloom.decoding.processors import (BanSequences, MinNewTokens, NoRepeatNGram, RepetitionPenalty, SequenceBias,
                                         SuppressTokens, Temperature, TopK, TopP)

INF = float("-inf")


def applied(processor, tokens, logits):
    before = logits.clone()
    out = processor(tokens, logits)
    assert torch.equal(logits, before), f"{type(processor).__name__} modified its input"
    return out


def test_repetition_penalty_divides_positive_and_multiplies_negative_scores():
    logits = torch.tensor([[2.0, -2.0, 1.0, 3.0]])
    out = applied(RepetitionPenalty(2.0), torch.tensor([[0, 1, 1]]), logits)
    assert out.tolist() == [[1.0, -4.0, 1.0, 3.0]]


def test_no_repeat_ngram_bans_completions_of_seen_ngrams():
    tokens = torch.tensor([[5, 6, 7, 5, 6], [1, 2, 3, 4, 5]])
    out = applied(NoRepeatNGram(3), tokens, torch.zeros(2, 8))
    assert out[0].tolist() == [0, 0, 0, 0, 0, 0, 0, INF]  # (5, 6) was followed by 7 before
    assert torch.isfinite(out[1]).all()
    unigram = applied(NoRepeatNGram(1), torch.tensor([[3, 4]]), torch.zeros(1, 6))
    assert unigram.tolist() == [[0, 0, 0, INF, INF, 0]]


def test_min_new_tokens_masks_eos_per_row():
    tokens = torch.zeros(2, 4, dtype=torch.long)
    out = applied(MinNewTokens(2, eos_id=1, prompt_lengths=torch.tensor([1, 3])), tokens, torch.zeros(2, 3))
    assert out.tolist() == [[0, 0, 0], [0, INF, 0]]  # row 0 has 3 new tokens, row 1 only 1


def test_suppress_tokens_bans_them_in_every_row():
    out = applied(SuppressTokens([3, 1, 3]), None, torch.zeros(2, 5))
    assert out.tolist() == [[0, INF, 0, INF, 0]] * 2


def test_ban_sequences_bans_the_last_token_only_after_the_rest():
    tokens = torch.tensor([[5, 1, 2], [1, 2, 1], [7, 7, 7]])
    out = applied(BanSequences([[1, 2, 3], [4]]), tokens, torch.zeros(3, 6))
    assert out.tolist() == [[0, 0, 0, INF, INF, 0], [0, 0, 0, 0, INF, 0], [0, 0, 0, 0, INF, 0]]
    assert applied(BanSequences([[9, 3]]), torch.tensor([[9]]), torch.zeros(1, 3)).tolist() == [[0, 0, 0]]  # 3 ≥ V


def test_sequence_bias_adds_to_the_last_token_after_the_rest():
    tokens = torch.tensor([[5, 1], [1, 5]])
    out = applied(SequenceBias([([1, 2], 3.0), ([4], -1.0), ([0, 4], 0.5)]), tokens, torch.zeros(2, 5))
    assert out.tolist() == [[0, 0, 3.0, 0, -1.0], [0, 0, 0, 0, -1.0]]


def test_top_k_keeps_k_best():
    out = applied(TopK(2), None, torch.tensor([[1.0, 4.0, 3.0, 2.0]]))
    assert out.tolist() == [[INF, 4.0, 3.0, INF]]
    assert applied(TopK(0), None, torch.tensor([[1.0, 2.0]])).tolist() == [[1.0, 2.0]]


def test_temperature_scales_the_gaps_to_the_best_logit():
    assert applied(Temperature(0.5), None, torch.tensor([[1.0, -2.0]])).tolist() == [[0.0, -6.0]]


def test_a_tiny_temperature_samples_the_best_token_instead_of_failing():
    """Regression: temperature 1e-300 (valid: positive) divided finite logits into inf and the softmax into nan."""
    scaled = applied(Temperature(1e-300), None, torch.tensor([[1.0, 3.0, 2.0], [float("-inf"), 0.5, 0.5]]))
    assert scaled.tolist() == [[float("-inf"), 0.0, float("-inf")], [float("-inf"), 0.0, 0.0]]
    assert sample_choice(scaled).tolist()[0] == 1


@pytest.mark.parametrize("p, kept", [(0.5, [True, False, False]), (0.8, [True, True, False]),
                                     (0.81, [True, True, True]), (0.3, [True, False, False])])
def test_top_p_keeps_the_smallest_set_with_mass_at_least_p(p, kept):
    logits = torch.tensor([[0.3, 0.5, 0.2]]).log()  # sorted: 0.5, 0.3, 0.2
    out = applied(TopP(p), None, logits)
    assert torch.isfinite(out)[0].tolist() == [kept[1], kept[0], kept[2]]


@pytest.mark.parametrize("make", [lambda: RepetitionPenalty(0), lambda: NoRepeatNGram(0), lambda: TopK(-1),
                                  lambda: Temperature(0), lambda: TopP(0), lambda: TopP(1.1),
                                  lambda: SuppressTokens([-1]), lambda: BanSequences([[]]),
                                  lambda: SequenceBias([([-2], 1.0)])])
def test_arguments_are_checked_at_construction(make):
    with pytest.raises(ValueError):
        make()


def test_top_p_keeps_the_best_token_even_when_p_rounds_to_zero():
    """Regression (found by Schemathesis through the server): top_p = 2.2e-309 is positive but 0 in float32, and
    every token was dropped, so sampling failed."""
    assert applied(TopP(2.2e-309), None, torch.tensor([[0.1, 2.0, 0.5]])).tolist() == [[INF, 2.0, INF]]
