import pytest
import torch

from genloom.data.batching import Batch
from genloom.errors import UserError
from genloom.models.rnnlm import RNNLMConfig, build


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_shapes_and_incremental_steps_equal_full_recomputation(cell):
    torch.manual_seed(0)
    model = build(RNNLMConfig(vocab_size=20, cell=cell, embed_dim=8, hidden_dim=12, num_layers=2)).eval()
    tokens = torch.randint(0, 20, (3, 7))
    logits, _ = model(tokens)
    assert logits.shape == (3, 7, 20)
    state = model.init_state(3)
    step_logits = []
    for t in range(7):
        out, state = model.step(tokens[:, t : t + 1], state)
        step_logits.append(out)
    torch.testing.assert_close(torch.stack(step_logits, 1), logits, rtol=1e-5, atol=1e-5)


def test_tied_embeddings_share_the_weight_and_project_when_sizes_differ():
    model = build(RNNLMConfig(vocab_size=20, embed_dim=8, hidden_dim=12, tie_embeddings=True))
    assert model.output.weight is model.embed.weight
    assert isinstance(model.project, torch.nn.Linear)
    logits, _ = model(torch.zeros(2, 3, dtype=torch.long))
    assert logits.shape == (2, 3, 20)


def test_loss_ignores_padding_and_uses_carry_only_for_continuing_batches():
    torch.manual_seed(0)
    model = build(RNNLMConfig(vocab_size=10, embed_dim=4, hidden_dim=4, num_layers=1)).eval()
    inputs = torch.tensor([[1, 4, 5], [1, 6, 0]])
    targets = torch.tensor([[4, 5, 2], [6, 2, 0]])
    mask = targets != 0
    out = model.loss(Batch(inputs, targets, mask))
    assert out.n_tokens == 5
    changed = targets.clone()
    changed[1, 2] = 7  # a padded target must not matter
    assert torch.equal(model.loss(Batch(inputs, changed, mask)).loss, out.loss)
    carry = model.loss(Batch(inputs, targets, mask)).carry
    fresh = model.loss(Batch(inputs, targets, mask, continues=False), carry).loss
    assert torch.equal(fresh, out.loss)
    assert not torch.equal(model.loss(Batch(inputs, targets, mask, continues=True), carry).loss, out.loss)


def test_reorder_state_selects_rows():
    model = build(RNNLMConfig(vocab_size=10, embed_dim=4, hidden_dim=4, num_layers=2))
    _, state = model.step(torch.tensor([[1], [2], [3]]), model.init_state(3))
    h, c = model.reorder_state(state, torch.tensor([2, 0]))
    assert torch.equal(h[:, 0], state[0][:, 2]) and torch.equal(c[:, 1], state[1][:, 0])


def test_bad_model_settings_are_user_errors():
    with pytest.raises(UserError, match="model.dropout"):
        build(RNNLMConfig(vocab_size=10, dropout=1.5))
    with pytest.raises(UserError, match="model.weight_drop"):
        build(RNNLMConfig(vocab_size=10, weight_drop=-0.1))
    with pytest.raises(UserError, match="model.hidden_dim"):
        build(RNNLMConfig(vocab_size=10, hidden_dim=0))
    with pytest.raises(UserError, match="model.init_range"):
        build(RNNLMConfig(vocab_size=10, init_range=-0.1))
