"""The Transformer encoder–decoder: cached decoding equals full recomputation, masks, overfitting one batch."""

import torch

from genloom.decoding.generate import GenerationConfig, beam_search, generate
from genloom.models.transformer_seq2seq import TransformerSeq2SeqConfig, build
from tests.models.test_seq2seq import BATCH, BOS, EOS


def tiny(**changes):
    config = dict(vocab_size=20, dim=16, num_heads=2, encoder_layers=2, decoder_layers=2, ff_dim=32, dropout=0.0,
                  label_smoothing=0.0)
    config.update(changes)
    torch.manual_seed(0)
    return build(TransformerSeq2SeqConfig(**config))


def test_cached_incremental_decoding_equals_full_recomputation_token_for_token():
    model = tiny().eval()
    full, weights = model(BATCH, need_weights=True)
    state = model.init_state(2, {"source": BATCH.source, "source_mask": BATCH.source_mask})
    steps, attention = [], []
    for t in range(BATCH.inputs.size(1)):
        logits, state = model.step(BATCH.inputs[:, t : t + 1], state)
        steps.append(logits)
        attention.append(model.attention_weights(state))
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.stack(attention, 1), weights, rtol=1e-5, atol=1e-5)
    assert torch.all(weights[1, :, 2:] == 0)  # padded source positions get no attention


def test_padding_does_not_change_the_encoding():
    model = tiny().eval()
    memory, _ = model.encode(BATCH.source, BATCH.source_mask)
    alone, _ = model.encode(BATCH.source[1:, :2], BATCH.source_mask[1:, :2])
    torch.testing.assert_close(memory[1, :2], alone[0], rtol=1e-5, atol=1e-5)


def test_overfits_one_batch_and_decodes_it():
    model = tiny()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(200):
        out = model.loss(BATCH)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert float(out.loss.detach()) < 0.05
    model.eval()
    context = {"source": BATCH.source, "source_mask": BATCH.source_mask}
    hyps = beam_search(model, [[BOS], [BOS]], GenerationConfig(method="beam", num_beams=3), EOS, context=context)
    assert [h[0].tokens for h in hyps] == [[11, 12, 13], [14, 15, 16, 17]]
    greedy = [s.tokens.tolist() for s in generate(model, [[BOS], [BOS]], GenerationConfig(max_new_tokens=6), EOS,
                                                  context=context)]
    assert [row[0] for row in greedy[:4]] == [11, 12, 13, EOS]
