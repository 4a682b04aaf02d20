"""Continuous batching: a request decodes the same tokens alone as when it joins, shares and leaves a running batch
of other requests (each generator family's ``merge_states`` and ``reorder_state`` keep its rows exact)."""

import pytest
import torch

from genloom.decoding.generate import DecodeBatch, GenerationConfig, Joining, generate
from genloom.models.rnnlm import RNNLMConfig
from genloom.models.rnnlm import build as build_rnnlm
from tests.models.test_gan import tiny_gan
from tests.models.test_gpt import tiny as tiny_gpt
from tests.models.test_seq2seq import tiny as tiny_seq2seq
from tests.models.test_transformer_seq2seq import tiny as tiny_transformer
from tests.models.test_vae import tiny_vae

EOS = 2


def rnnlm():
    torch.manual_seed(0)
    return build_rnnlm(RNNLMConfig(vocab_size=30, embed_dim=8, hidden_dim=12, num_layers=2, dropout=0.0))


def source(ids):
    tokens = torch.tensor([ids])
    return {"source": tokens, "source_mask": torch.ones_like(tokens, dtype=torch.bool), "source_extended": tokens}


MODELS = {
    "rnnlm": (rnnlm, lambda i: None),
    "gan": (lambda: tiny_gan(), lambda i: None),
    "vae": (lambda: tiny_vae(), lambda i: torch.full((1, 4), 0.3 * i)),
    "gpt": (lambda: tiny_gpt(), lambda i: None),
    "seq2seq": (lambda: tiny_seq2seq(copy=True), lambda i: source([5 + i, 6, 7, 8, 9][: 2 + i])),
    "transformer_seq2seq": (lambda: tiny_transformer(), lambda i: source([5 + i, 6, 7, 8, 9][: 2 + i])),
}
PROMPTS = [[1, 5, 6], [1], [1, 7, 8, 9, 10], [1, 4]]  # requests 0–3


def vivid(model):
    """Untrained weights of a trained model's scale: with GPT-2's 0.02 init, attention hardly moves the scores, and
    a wrong mask or position would go unseen."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model.eval()


def decode(model, requests, joins):
    """Run ``requests`` ((prompt, cfg, context) each) through one DecodeBatch, request r joining at step
    ``joins[r]``; returns each request's emitted tokens and the scores it chose them from."""
    batch = DecodeBatch(model, EOS)
    tokens, scores, groups = {}, {}, {}
    for step in range(60):
        joining = [r for r, at in enumerate(joins) if at == step]  # joined together: one prefill where they can
        added = batch.join_all([Joining([requests[r][0]], requests[r][1], context=requests[r][2]) for r in joining])
        for r, group in zip(joining, added):
            groups[r], tokens[r], scores[r] = group, [], []
        if not batch.groups and step > max(joins):
            break
        row = 0
        for group, output in zip(list(batch.groups), batch.choose()):
            r = next(r for r, g in groups.items() if g is group)
            scores[r].append(batch.logits[row, : group.width].clone())
            tokens[r] += [int(output.tokens[0])] if bool(output.emitted[0]) else []
            row += group.size
        batch.advance()
    assert batch.rows == 0 and batch.state is None
    return [tokens[r] for r in range(len(requests))], [torch.stack(scores[r]) for r in range(len(requests))]


@pytest.mark.parametrize("family", sorted(MODELS))
def test_requests_joining_and_leaving_decode_as_they_do_alone(family):
    build, context_of = MODELS[family]
    model = vivid(build())
    configs = [GenerationConfig(max_new_tokens=n, method=m, seed=s, temperature=0.7, repetition_penalty=r)
               for n, m, s, r in ((6, "greedy", None, 1.0), (9, "sample", 3, 1.3), (4, "greedy", None, 1.0),
                                  (7, "sample", 11, 1.0))]
    requests = [(p, c, context_of(i)) for i, (p, c) in enumerate(zip(PROMPTS, configs))]
    expected = [decode(model, [request], [0]) for request in requests]
    tokens, scores = decode(model, requests, [0, 0, 2, 3])
    assert tokens == [t[0] for t, _ in expected]
    assert tokens == [[int(s.tokens[0]) for s in generate(model, [p], c, EOS, context=x) if bool(s.emitted[0])]
                      for p, c, x in requests]
    for mine, (_, (theirs,)) in zip(scores, expected):
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)


def test_a_cancelled_request_leaves_at_the_next_step_and_the_others_go_on():
    model = vivid(tiny_gpt())
    cfg = GenerationConfig(max_new_tokens=8)
    (expected,), _ = decode(model, [(PROMPTS[2], cfg, None)], [0])
    batch = DecodeBatch(model, EOS)
    stopped = batch.join([PROMPTS[0]], GenerationConfig(max_new_tokens=30))
    kept = batch.join([PROMPTS[2]], cfg)
    tokens = []
    for step in range(20):
        outputs = batch.choose()
        output = outputs[batch.groups.index(kept)]
        tokens += [int(output.tokens[0])] if bool(output.emitted[0]) else []
        if step == 1:
            stopped.cancelled = True
        batch.advance()
        assert stopped not in batch.groups or step < 1
        if not batch.groups:
            break
    assert tokens == expected


def test_a_joined_gpt_batch_trims_its_cache_when_the_long_rows_leave():
    model = tiny_gpt()
    batch = DecodeBatch(model, EOS)
    long = batch.join([[1] + list(range(5, 25))], GenerationConfig(max_new_tokens=2))
    batch.choose()
    batch.advance()
    batch.join([[1, 5]], GenerationConfig(max_new_tokens=5))
    assert batch.state["start"].tolist() == [0, 20]  # the short row is left-padded to the long one's 22 slots
    batch.choose()  # the long request's last token
    batch.advance()
    assert long not in batch.groups
    assert batch.state["start"] is None and batch.state["offset"] == 3  # only the short row's own slots are left


def test_requests_with_the_same_settings_are_shaped_and_drawn_together_yet_decode_as_alone():
    model = vivid(tiny_gpt())
    sampled = [GenerationConfig(method="sample", max_new_tokens=6 + i, seed=i, temperature=0.9, top_p=0.8)
               for i in range(4)]
    requests = [(PROMPTS[i], cfg, None) for i, cfg in enumerate(sampled)]
    requests += [(PROMPTS[i], GenerationConfig(max_new_tokens=5), None) for i in range(3)]  # greedy ones
    expected = [decode(model, [request], [0])[0][0] for request in requests]
    batch = DecodeBatch(model, EOS)
    for prompt, cfg, _ in requests[:4]:
        batch.join([prompt], cfg)
    assert [len(run) for run in batch._runs()] == [4]
    tokens, _ = decode(model, requests, [0, 1, 1, 3, 0, 2, 2])  # requests 0 and 4 share one prefill
    assert tokens == expected


def test_a_decode_batch_builds_no_autograd_graph():
    """Regression: DecodeBatch's steps ran with gradients on (only generate() was under no_grad), so a server's
    KV caches chained every step's graph and its memory grew by ~100 MB a step."""
    model = tiny_gpt()
    batch = DecodeBatch(model, EOS)
    batch.join([PROMPTS[0]], GenerationConfig(max_new_tokens=4))
    batch.choose()
    batch.advance()
    assert not batch.logits.requires_grad
    assert not any(t.requires_grad for layer in batch.state["caches"] for t in layer["self"].values()
                   if isinstance(t, torch.Tensor))


def test_join_all_answers_in_the_order_of_its_requests_whatever_order_the_prefills_take():
    """Regression: groups came back in prefill order (by shortest prompt), so a server matched requests of
    different prompt lengths to each other's outputs."""
    model = tiny_gpt()
    batch = DecodeBatch(model, EOS)
    prompts = [[1, 5, 6], [1], [1, 7, 8], [1, 4]]
    groups = batch.join_all([Joining([p], GenerationConfig(max_new_tokens=3)) for p in prompts])
    assert [g.prompt_rows[0][: len(p)] for g, p in zip(groups, prompts)] == prompts


def test_options_that_forbid_every_token_are_a_user_error_not_a_crash():
    from genloom.decoding.generate import TokenRules
    from genloom.errors import UserError

    model = tiny_gpt()
    rules = TokenRules(suppress=list(range(50)))
    for method in ("greedy", "sample"):
        with pytest.raises(UserError, match="forbid every token"):
            list(generate(model, [[1]], GenerationConfig(method=method, max_new_tokens=3), EOS, rules=rules))


def test_an_extreme_repetition_penalty_still_samples():
    """Regression (found by Schemathesis through the server): repetition_penalty 5e-324 divided positive logits into
    +inf, the softmax into nan, and sampling failed."""
    model = vivid(tiny_gpt())
    cfg = GenerationConfig(method="sample", repetition_penalty=5e-324, max_new_tokens=4, seed=0)
    assert len([s for s in generate(model, [[1, 5, 6]], cfg, EOS) if bool(s.emitted[0])]) <= 4
    from genloom.decoding.generate import beam_search

    beam = GenerationConfig(method="beam", repetition_penalty=5e-324, max_new_tokens=4)
    assert beam_search(model, [[1, 5, 6]], beam, EOS)[0]  # a hypothesis, not an empty list
