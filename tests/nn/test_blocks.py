"""Shared blocks: attention paths agree, masks hold, the cache extends the sequence exactly."""

import torch

from genloom.nn.attention import AdditiveAttention, MultiplicativeAttention, masked_softmax
from genloom.nn.rnn import make_rnn, run_rnn
from genloom.nn.transformer import MultiHeadAttention


def test_masked_softmax_gives_exact_zeros():
    weights = masked_softmax(torch.randn(2, 4), torch.tensor([[True, True, False, False], [True] * 4]))
    assert torch.all(weights[0, 2:] == 0) and torch.allclose(weights.sum(-1), torch.ones(2))


def test_rnn_attentions_ignore_padding_values():
    torch.manual_seed(0)
    keys = torch.randn(1, 3, 6)
    mask = torch.tensor([[True, True, False]])
    changed = keys.clone()
    changed[0, 2] = 100.0
    for attention in (AdditiveAttention(5, 6, 4, coverage=True), MultiplicativeAttention(5, 6, general=True)):
        query = torch.randn(1, 5)
        a, wa = attention(query, keys, mask, coverage=torch.zeros(1, 3))
        b, wb = attention(query, changed, mask, coverage=torch.zeros(1, 3))
        torch.testing.assert_close(a, b)
        assert wa[0, 2] == 0


def test_weights_path_equals_fused_path_and_cache_equals_full():
    torch.manual_seed(0)
    attention = MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 5, 8)
    fused, _, _ = attention(x, causal=True)
    explicit, _, weights = attention(x, causal=True, need_weights=True)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)
    assert torch.all(weights[:, 0, 1:] == 0)  # causal: the first position sees only itself
    cache, outputs = {}, []
    for t in range(5):
        y, cache, _ = attention(x[:, t : t + 1], causal=True, cache=cache)
        outputs.append(y)
    torch.testing.assert_close(torch.cat(outputs, 1), fused, rtol=1e-5, atol=1e-5)


def test_weight_drop_masks_the_recurrence_only_while_training_and_leaves_the_weights_alone():
    torch.manual_seed(0)
    rnn = make_rnn("lstm", 4, 6, num_layers=2)
    x = torch.randn(3, 5, 4)
    before = {name: p.detach().clone() for name, p in rnn.named_parameters()}
    plain, _ = rnn(x)
    rnn.eval()
    assert torch.equal(run_rnn(rnn, x, None, 0.5)[0], plain)  # evaluation: the full recurrence
    rnn.train()
    assert torch.equal(run_rnn(rnn, x, None, 0.0)[0], plain)  # off
    dropped, _ = run_rnn(rnn, x, None, 1.0)  # every hidden-to-hidden weight dropped
    without_recurrence = make_rnn("lstm", 4, 6, num_layers=2)
    without_recurrence.load_state_dict(rnn.state_dict())
    with torch.no_grad():
        for name, p in without_recurrence.named_parameters():
            if name.startswith("weight_hh"):
                p.zero_()
    assert torch.allclose(dropped, without_recurrence(x)[0])
    masked, _ = run_rnn(rnn, x, None, 0.5)
    assert not torch.allclose(masked, plain)
    masked.sum().backward()
    assert all(rnn.get_parameter(f"weight_hh_l{k}").grad.abs().sum() > 0 for k in range(2))  # trained through
    assert all(torch.equal(p, before[name]) for name, p in rnn.named_parameters())  # the module is unchanged
