"""The GPT: cached generation equals full recomputation token for token; padding of the vocabulary; limits."""

import pytest
import torch

from genloom.decoding.generate import GenerationConfig, beam_search, generate
from genloom.errors import UserError
from genloom.models.gpt import GPTConfig, build


def tiny(**changes):
    config = dict(vocab_size=50, context_length=32, dim=16, num_layers=2, num_heads=2)
    config.update(changes)
    torch.manual_seed(0)
    return build(GPTConfig(**config)).eval()


def test_vocabulary_is_padded_to_64_and_tied():
    model = tiny()
    assert model.embed.weight.shape == (64, 16) and model.output.weight is model.embed.weight
    logits, _ = model(torch.zeros(2, 5, dtype=torch.long))
    assert logits.shape == (2, 5, 50)


def test_cached_generation_equals_full_recomputation_token_for_token():
    model = tiny()
    prompt = [1, 7, 9, 11]
    cfg = GenerationConfig(max_new_tokens=12)
    cached = [int(s.tokens[0]) for s in generate(model, [prompt], cfg, eos_id=2) if s.emitted[0]]
    sequence = list(prompt)
    for _ in range(len(cached)):
        logits, _ = model(torch.tensor([sequence]))  # no cache: the whole sequence every time
        sequence.append(int(logits[0, -1].argmax()))
    assert cached == sequence[len(prompt):]
    state = model.init_state(1)
    steps = []
    for token in sequence:
        logits, state = model.step(torch.tensor([[token]]), state)
        steps.append(logits)
    full, _ = model(torch.tensor([sequence]))
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 3])
def test_the_decode_plan_gives_the_tokens_and_scores_of_the_modules(rows):
    """One-token steps under no_grad go through ``decode_plan`` (fused QKV, packed weights); with gradients on,
    the same steps go through the modules, as before the plan existed. Same greedy tokens, scores within 1e-5."""
    model = tiny(dim=64, num_heads=4, vocab_size=300)
    prompts = [[1, 7 + row, 9, 11] for row in range(rows)]
    cfg = GenerationConfig(max_new_tokens=20, min_new_tokens=20)
    planned = [s.tokens.tolist() for s in generate(model, prompts, cfg, eos_id=2)]
    with torch.enable_grad():
        modules = [s.tokens.tolist() for s in generate.__wrapped__(model, prompts, cfg, eos_id=2)]
    assert planned == modules
    state = model.init_state(rows)
    logits, state = model.step(torch.tensor(prompts), state)
    token = logits.argmax(-1)[:, None]
    with torch.no_grad():
        fast, _ = model.step(token, state)
    with torch.enable_grad():
        slow, _ = model.step(token, state)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_the_decode_plan_follows_a_change_of_the_weights():
    model = tiny()
    with torch.no_grad():
        before, _ = model.step(torch.tensor([[4]]), model.step(torch.tensor([[1, 5]]), model.init_state(1))[1])
        model.layers[0].feed_forward.up.weight.mul_(3.0)  # an optimizer step writes in place like this
        after, state = model.step(torch.tensor([[4]]), model.step(torch.tensor([[1, 5]]), model.init_state(1))[1])
        reference, _ = model(torch.tensor([[1, 5, 4]]))
    assert not torch.allclose(before, after) and torch.allclose(after, reference[:, -1], atol=1e-5)


def test_beam_search_runs_on_the_cache():
    model = tiny()
    (hyps,) = beam_search(model, [[1, 5]], GenerationConfig(method="beam", num_beams=3, num_return_sequences=3,
                                                            max_new_tokens=6), eos_id=2)
    assert len(hyps) == 3 and hyps[0].score >= hyps[-1].score


def test_inputs_longer_than_the_context_are_refused():
    model = tiny(context_length=8)
    with pytest.raises(UserError, match="the prompt is 9 tokens long, longer than the model's context of 8 tokens"):
        list(generate(model, [list(range(9))], GenerationConfig(), eos_id=2, max_context=model.max_context))
    with pytest.raises(UserError, match="longer than the model's context of 8 tokens"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_generation_past_the_context_slides_the_window_as_nanogpt_does():
    """Regression: a 64-token model could not write past its 64th token. Past the window, each next token must
    be the one nanoGPT's generate picks: the argmax of a full forward over the last context_length tokens."""
    model = tiny(context_length=8)
    prompt = [1, 7, 9]
    cfg = GenerationConfig(max_new_tokens=30, min_new_tokens=30)  # EOS (2) forbidden: 30 tokens every time
    ours = [int(s.tokens[0]) for s in generate(model, [prompt], cfg, eos_id=2) if s.emitted[0]]
    sequence = list(prompt)
    with torch.no_grad():
        for _ in range(30):
            logits, _ = model(torch.tensor([sequence[-8:]]))
            logits[0, -1, 2] = float("-inf")
            sequence.append(int(logits[0, -1].argmax()))
    assert len(ours) == 30 and ours == sequence[3:]
    beams = beam_search(model, [prompt, [1, 3, 4, 5, 6, 7, 8]], GenerationConfig(
        method="beam", num_beams=3, max_new_tokens=20, min_new_tokens=20), eos_id=2)
    assert all(len(row[0].tokens) == 20 for row in beams)


def test_a_prompt_longer_than_the_context_is_named(tmp_path):
    lm = genloom_tiny_checkpoint(tmp_path)
    with pytest.raises(UserError, match=r"the prompt 'the cat the cat the cat the cat the c\.\.\.' is 81 tokens long"):
        list(lm.generate("the cat " * 10))
    assert len("".join(lm.generate("the ", max_new_tokens=40))) > 16  # longer than the 16-token context


def test_sentence_scores_past_the_context_slide_one_token_at_a_time(tmp_path):
    """A char GPT with a 16-token context scores a 40-character text: each token from at most 16 before it."""
    lm = genloom_tiny_checkpoint(tmp_path)
    text = "the cat sees the dog and the dog sees it"
    ids = [lm.start_id] + lm.tokenizer.encode(text) + [lm.tokenizer.eos_id]
    expected = 0.0
    with torch.no_grad():
        for t in range(1, len(ids)):
            window = torch.tensor([ids[max(0, t - 16):t]])
            expected += torch.log_softmax(lm.model(window)[0][0, -1].float(), -1)[ids[t]].item()
    assert lm.sentence_log_probs([text, "the cat"])[0] == pytest.approx(expected, abs=1e-4)


def genloom_tiny_checkpoint(tmp_path):
    import genloom
    from genloom.apps.toy_grammar import corpus

    text = tmp_path / "text.txt"
    text.write_text("\n".join(corpus(200, 0)), encoding="utf-8")
    genloom.train({
        "family": "gpt", "out_dir": str(tmp_path / "run"),
        "data": {"train": str(text), "format": "text", "batching": "stream", "valid_fraction": 0.1},
        "tokenizer": {"kind": "char"},
        "model": {"context_length": 16, "dim": 16, "num_layers": 1, "num_heads": 2},
        "train": {"max_steps": 2, "batch_size": 4, "bptt": 16, "eval_every": 2, "lr": 0.003, "device": "cpu"},
    })
    return genloom.load(tmp_path / "run", device="cpu")


def test_gpt_trains_through_the_lm_recipe_with_a_held_out_tail(tmp_path):
    import genloom
    from genloom.apps.toy_grammar import corpus

    text = tmp_path / "text.txt"
    text.write_text("\n".join(corpus(200, 0)), encoding="utf-8")
    summary = genloom.train({
        "family": "gpt", "out_dir": str(tmp_path / "run"),
        "data": {"train": str(text), "format": "text", "batching": "stream", "valid_fraction": 0.1},
        "tokenizer": {"kind": "char"},
        "model": {"context_length": 16, "dim": 16, "num_layers": 1, "num_heads": 2},
        "train": {"max_steps": 6, "batch_size": 4, "bptt": 16, "eval_every": 3, "lr": 0.003, "device": "cpu"},
    })
    assert summary["steps"] == 6 and summary["best_valid_loss"] < 5
    lm = genloom.load(tmp_path / "run", device="cpu")
    assert len("".join(lm.generate("the ", max_new_tokens=8))) > 0
