"""Beam search and greedy search checked exactly against a scripted decoder."""

import math

import pytest
import torch

from genloom.decoding.generate import GenerationConfig, beam_search, generate
from genloom.errors import UserError
from tests.decoding.fakes import BOS, EOS, TABLE, A, B, ScriptedDecoder


def test_beam_search_finds_the_more_likely_short_sequence_exactly():
    cfg = GenerationConfig(method="beam", num_beams=2, num_return_sequences=2, max_new_tokens=5)
    (nbest,) = beam_search(ScriptedDecoder(TABLE), [[BOS]], cfg, eos_id=EOS)
    assert [h.tokens for h in nbest] == [[B], [A, A]]
    # scores: summed log-prob of the new tokens, EOS included, over length ** 1.0
    assert nbest[0].score == pytest.approx(math.log(0.4 * 0.9) / 2)
    assert nbest[1].score == pytest.approx(math.log(0.6 * 0.36 * 0.98) / 3)


def test_length_penalty_zero_ranks_by_raw_log_probability():
    cfg = GenerationConfig(method="beam", num_beams=2, num_return_sequences=2, length_penalty=0.0)
    (nbest,) = beam_search(ScriptedDecoder(TABLE), [[BOS]], cfg, eos_id=EOS)
    assert nbest[0].score == pytest.approx(math.log(0.36))
    assert nbest[1].score == pytest.approx(math.log(0.6 * 0.36 * 0.98))


def test_greedy_takes_the_locally_best_token():
    steps = list(generate(ScriptedDecoder(TABLE), [[BOS]], GenerationConfig(), eos_id=EOS))
    assert [int(s.tokens[0]) for s in steps] == [A, A, EOS]
    assert [bool(s.emitted[0]) for s in steps] == [True, True, False]


def test_beam_through_generate_streams_the_best_hypothesis():
    cfg = GenerationConfig(method="beam", num_beams=2)
    steps = list(generate(ScriptedDecoder(TABLE), [[BOS]], cfg, eos_id=EOS))
    assert [int(s.tokens[0]) for s in steps if s.emitted[0]] == [B]


def test_max_new_tokens_closes_open_beams():
    cfg = GenerationConfig(method="beam", num_beams=2, num_return_sequences=2, max_new_tokens=1)
    (nbest,) = beam_search(ScriptedDecoder(TABLE), [[BOS]], cfg, eos_id=EOS)
    assert sorted(h.tokens for h in nbest) == [[A], [B]]


def test_prompts_of_different_lengths_decode_as_if_alone():
    """The engine forces the rest of a longer prompt; a batched row equals the row decoded alone."""
    torch.manual_seed(0)
    from genloom.models.rnnlm import RNNLM, RNNLMConfig

    model = RNNLM(RNNLMConfig(vocab_size=12, embed_dim=8, hidden_dim=8, num_layers=2)).eval()
    prompts = [[1, 5, 6, 7, 8], [1, 9]]
    for method in ("greedy", "beam"):
        cfg = GenerationConfig(method=method, max_new_tokens=6, num_beams=3)
        together = beam_search(model, prompts, cfg, 2) if method == "beam" else None
        for row, prompt in enumerate(prompts):
            if method == "beam":
                alone = beam_search(model, [prompt], cfg, 2)[0][0]
                assert together[0 if row == 0 else 1][0].tokens == alone.tokens
                assert together[row][0].score == pytest.approx(alone.score, abs=1e-5)
            else:
                batched = [s for s in generate(model, prompts, cfg, 2)]
                batched_row = [int(s.tokens[row]) for s in batched if s.emitted[row]]
                single = [int(s.tokens[0]) for s in generate(model, [prompt], cfg, 2) if s.emitted[0]]
                assert batched_row == single


def test_sampling_is_repeatable_with_a_seed():
    torch.manual_seed(0)
    from genloom.models.rnnlm import RNNLM, RNNLMConfig

    model = RNNLM(RNNLMConfig(vocab_size=30, embed_dim=8, hidden_dim=8, num_layers=1)).eval()
    cfg = GenerationConfig(method="sample", seed=3, max_new_tokens=10, top_k=10, top_p=0.9, temperature=1.3)
    first = [s.tokens.tolist() for s in generate(model, [[1], [1]], cfg, 2)]
    second = [s.tokens.tolist() for s in generate(model, [[1], [1]], cfg, 2)]
    assert first == second


def test_min_new_tokens_and_stop_strings():
    cfg = GenerationConfig(min_new_tokens=3, max_new_tokens=5)
    steps = list(generate(ScriptedDecoder(TABLE), [[BOS]], cfg, eos_id=EOS))
    emitted = [int(s.tokens[0]) for s in steps if s.emitted[0]]
    assert len(emitted) >= 3 and EOS not in emitted
    names = {A: "a", B: "b"}
    cfg = GenerationConfig(stop_strings=["aa"], max_new_tokens=5)
    table = [{None: {A: 1.0}}]
    steps = list(generate(ScriptedDecoder(table), [[BOS]], cfg, eos_id=EOS,
                          detokenize=lambda ids: "".join(names[i] for i in ids)))
    assert [int(s.tokens[0]) for s in steps if s.emitted[0]] == [A, A]


def test_prompt_longer_than_the_context_is_refused():
    with pytest.raises(UserError, match="the prompt is 4 tokens long, longer than the model's context of 3 tokens"):
        list(generate(ScriptedDecoder(TABLE), [[BOS, A, A, A]], GenerationConfig(), eos_id=EOS, max_context=3))


@pytest.mark.parametrize("options, message", [
    ({"temperature": 0}, "temperature must be positive"),
    ({"top_p": 1.5}, "top_p must lie in"),
    ({"method": "nucleus"}, "greedy, sample or beam"),
    ({"num_return_sequences": 2}, "num_return_sequences"),
])
def test_bad_generation_options_are_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        GenerationConfig(**options)


def test_repetition_penalty_never_punishes_the_start_token():
    """Regression: a stream-trained LM starts from EOS; penalising that start token made texts never end."""
    table = [{None: {EOS: 0.5, A: 0.3, B: 0.2}}]
    cfg = GenerationConfig(repetition_penalty=10.0, max_new_tokens=3)
    steps = list(generate(ScriptedDecoder(table), [[EOS]], cfg, eos_id=EOS))
    assert int(steps[0].tokens[0]) == EOS


def test_early_poor_hypotheses_do_not_crowd_out_the_best_one():
    """Regression: a row stopped once it had num_beams finished hypotheses, even when those were short,
    poor ones finished early and a far better beam was still open; now the best K are kept and the row
    goes on while an open beam can still beat them."""
    table = [
        {None: {A: 0.9, EOS: 0.05, B: 0.05}},
        {A: {A: 0.98, EOS: 0.01, B: 0.01}, B: {EOS: 1.0}, None: {EOS: 1.0}},
        {None: {EOS: 1.0}},
    ]
    cfg = GenerationConfig(method="beam", num_beams=2, num_return_sequences=2, max_new_tokens=5)
    (nbest,) = beam_search(ScriptedDecoder(table), [[BOS]], cfg, eos_id=EOS)
    assert nbest[0].tokens == [A, A]
    assert nbest[0].score == pytest.approx(math.log(0.9 * 0.98) / 3)


def test_coverage_penalty_is_gnmt_and_skips_padding():
    from genloom.decoding.generate import _coverage

    attention = torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.25, 0.0]])  # column 2 is padding
    assert _coverage(attention, 0.0) == 0.0
    assert _coverage(attention, 2.0) == pytest.approx(2.0 * 2 * math.log(0.75))
    assert _coverage(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), 1.0) == 0.0  # over-attended words are capped at 1


def test_an_end_below_the_top_num_beams_candidates_does_not_finish_a_hypothesis():
    """Regression: EOS finished a hypothesis whenever it came before the K-th open candidate, even from rank
    K … 2K-1; in transformers and fairseq only the K best candidates may finish. Here b·EOS ranks third of four
    with K = 2, so it is dropped and the second hypothesis is b b (0.125), not b (0.20)."""
    table = [
        {None: {A: 0.5, B: 0.5}},
        {A: {EOS: 0.6, A: 0.25, B: 0.15}, B: {B: 0.5, EOS: 0.4, A: 0.1}},
        {B: {EOS: 0.5, A: 0.3, B: 0.2}, A: {EOS: 0.44, A: 0.28, B: 0.28}, None: {EOS: 1.0}},
        {None: {EOS: 1.0}},
    ]
    cfg = GenerationConfig(method="beam", num_beams=2, num_return_sequences=2, length_penalty=0.0, max_new_tokens=5)
    (nbest,) = beam_search(ScriptedDecoder(table), [[BOS]], cfg, eos_id=EOS)
    assert [h.tokens for h in nbest] == [[A], [B, B]]
    assert [h.score for h in nbest] == pytest.approx([math.log(0.30), math.log(0.125)])


def test_bans_act_on_normalised_log_probabilities_without_renormalising():
    """Regression: min_new_tokens renormalised after banning EOS, which inflated the filler that remained; the
    score of a continuation must be its model log-probability, as in transformers and fairseq."""
    cfg = GenerationConfig(method="beam", num_beams=2, num_return_sequences=1, min_new_tokens=2, max_new_tokens=3)
    (nbest,) = beam_search(ScriptedDecoder(TABLE), [[BOS]], cfg, eos_id=EOS)
    # b then EOS is banned at step 2; b·a and b·b keep their own probabilities (0.4 × 0.05), not 0.4 × 0.5.
    assert nbest[0].tokens == [A, A]
    assert nbest[0].score == pytest.approx(math.log(0.6 * 0.36 * 0.98) / 3)
