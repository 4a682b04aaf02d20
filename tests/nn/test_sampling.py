"""The categorical sampler behind every sampling path (the engine's ``sample`` method, GAN samples and rollouts)."""

import pytest
import torch

from genloom.nn.sampling import draw


def test_draws_follow_the_weights_and_never_pick_a_zero_weight():
    weights = torch.tensor([[0.1, 0.0, 0.6, 0.3, 0.0], [0.0, 0.0, 0.0, 2.0, 2.0]])  # the second unnormalised
    rows = weights.repeat(20_000, 1)  # (40000, 5)
    picks = draw(rows, torch.Generator().manual_seed(0)).view(20_000, 2)
    for row in range(2):
        frequency = torch.bincount(picks[:, row], minlength=5).float() / 20_000
        expected = weights[row] / weights[row].sum()
        assert frequency[expected == 0].sum() == 0
        assert frequency == pytest.approx(expected, abs=0.015)  # 4.5 standard errors at p = 0.5


def test_a_seeded_generator_repeats_its_draws():
    probs = torch.softmax(torch.randn(8, 50), -1)
    first = draw(probs, torch.Generator().manual_seed(3))
    assert torch.equal(first, draw(probs, torch.Generator().manual_seed(3)))
    assert first.shape == (8,) and first.dtype == torch.long


def test_a_certain_entry_is_always_drawn_even_for_the_largest_uniform_number(monkeypatch):
    probs = torch.tensor([[0.0, 1.0, 0.0]])
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.full((1, 1), 1.0))  # beyond any real draw
    assert draw(probs).tolist() == [1]


@pytest.mark.parametrize("bad", [[0.0, 0.0], [float("nan"), 1.0], [float("inf"), 1.0]])
def test_rows_that_cannot_be_sampled_are_refused(bad):
    with pytest.raises(ValueError, match="cannot sample"):
        draw(torch.tensor([bad]))
