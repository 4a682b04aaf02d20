"""The attention encoder–decoder: masks, shapes, overfitting one batch, incremental = full, copying."""

import pytest
import torch

from genloom.data.batching import Batch, pad
from genloom.decoding.generate import GenerationConfig, beam_search
from genloom.models.seq2seq import Seq2SeqConfig, build

BOS, EOS = 1, 2


def make_batch(sources, targets, extended=None):
    source, source_mask = pad(sources, 0)
    inputs, mask = pad([[BOS] + t for t in targets], 0)
    outputs, _ = pad([t + [EOS] for t in targets], 0)
    batch = Batch(inputs, outputs, mask, source=source, source_mask=source_mask)
    if extended is not None:
        batch.source_extended, _ = pad(extended[0], 0)
        batch.targets_extended, _ = pad([t + [EOS] for t in extended[1]], 0)
    return batch


def tiny(**changes):
    config = dict(vocab_size=20, embed_dim=16, hidden_dim=16, attention_dim=16, dropout=0.0)
    config.update(changes)
    torch.manual_seed(0)
    return build(Seq2SeqConfig(**config))


BATCH = make_batch([[5, 6, 7, 8], [9, 10]], [[11, 12, 13], [14, 15, 16, 17]])


@pytest.mark.parametrize("attention", ["additive", "general", "dot"])
def test_padding_never_receives_attention(attention):
    model = tiny(attention=attention, bidirectional=attention != "dot").eval()
    scores, _, weights = model(BATCH)
    assert scores.shape == (2, 5, 20) and weights.shape == (2, 5, 4)
    assert torch.all(weights[1, :, 2:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5))


def test_padding_does_not_change_the_encoding():
    model = tiny().eval()
    alone, _, _ = model(make_batch([[9, 10]], [[14, 15, 16, 17]]))
    batched, _, _ = model(BATCH)
    torch.testing.assert_close(batched[1], alone[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention, extra", [("none", {}), ("additive", {}), ("general", {}),
                                              ("dot", {"bidirectional": False}), ("additive", {"cell": "gru"}),
                                              ("additive", {"copy": True, "coverage": True})])
def test_each_attention_type_overfits_one_batch(attention, extra):
    model = tiny(attention=attention, **extra)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    batch = BATCH
    if extra.get("copy"):
        batch = make_batch(BATCH.source.tolist(), [[11, 12, 13], [14, 15, 16, 17]],
                           extended=([[5, 6, 7, 8], [9, 10]], [[11, 12, 13], [14, 15, 16, 17]]))
        batch.source, batch.source_mask = BATCH.source, BATCH.source_mask
    for _ in range(150):
        out = model.loss(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    final = model.loss(batch)
    nll = final.stats["nll"] / final.n_tokens if "nll" in final.stats else float(final.loss.detach())
    assert nll < 0.05  # with coverage the total keeps the coverage term: short sources force re-attending
    model.eval()
    cfg = GenerationConfig(method="beam", num_beams=2, max_new_tokens=8)
    context = {"source": batch.source, "source_mask": batch.source_mask, "source_extended": batch.source_extended}
    hyps = beam_search(model, [[BOS], [BOS]], cfg, EOS, context=context)
    assert [h[0].tokens for h in hyps] == [[11, 12, 13], [14, 15, 16, 17]]


@pytest.mark.parametrize("extra", [{}, {"copy": True, "coverage": True}, {"attention": "none", "cell": "gru"}])
def test_incremental_decoding_equals_teacher_forced_recomputation(extra):
    model = tiny(**extra).eval()
    batch = BATCH
    if extra.get("copy"):
        batch.source_extended = BATCH.source
    full, _, _ = model(batch)
    state = model.init_state(2, {"source": batch.source, "source_mask": batch.source_mask,
                                 "source_extended": batch.source_extended})
    steps = []
    for t in range(batch.inputs.size(1)):
        scores, state = model.step(batch.inputs[:, t : t + 1], state)
        steps.append(scores)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-5, atol=1e-5)


def test_copy_emits_a_source_word_outside_the_target_vocabulary():
    """Source word 20 (the first OOV: V = 20) has no embedding or output row; only copying can emit it."""
    model = tiny(copy=True)
    unk = 3
    sources = [[5, unk, 7], [unk, 9, 10]]
    extended = [[5, 20, 7], [20, 9, 10]]
    targets = [[11, unk], [unk, 12]]
    targets_ext = [[11, 20], [20, 12]]
    batch = make_batch(sources, targets, extended=(extended, targets_ext))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        out = model.loss(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    model.eval()
    context = {"source": batch.source, "source_mask": batch.source_mask, "source_extended": batch.source_extended}
    hyps = beam_search(model, [[BOS], [BOS]], GenerationConfig(method="beam", num_beams=2), EOS, context=context)
    assert [h[0].tokens for h in hyps] == [[11, 20], [20, 12]]


def test_scheduled_sampling_feeds_predictions_in_training_only():
    model = tiny(scheduled_sampling=1.0)
    model.train()
    torch.manual_seed(0)
    trained = model.loss(BATCH).loss
    model.eval()
    assert not torch.equal(trained, model.loss(BATCH).loss)


def test_perplexity_is_exp_of_the_nll_without_the_coverage_penalty():
    """Regression (newcomer report): the pointer-generator's perplexity was exp of the loss with its coverage
    penalty ("perplexity 1002" where the NLL alone gave 388)."""
    import math

    from genloom.training.loop import evaluate

    model = tiny(copy=True, coverage=True, coverage_weight=5.0)
    batch = make_batch(BATCH.source.tolist(), [[11, 12, 13], [14, 15, 16, 17]],
                       extended=([[5, 6, 7, 8], [9, 10]], [[11, 12, 13], [14, 15, 16, 17]]))
    batch.source, batch.source_mask = BATCH.source, BATCH.source_mask
    result = evaluate(model, [batch], torch.device("cpu"))
    assert result["loss"] > result["nll"] + 0.1 and result["coverage_loss"] > 0
    assert result["perplexity"] == pytest.approx(math.exp(result["nll"]))
