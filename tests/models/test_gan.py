"""Text GANs: rollout rewards, the policy gradient, the discriminator, Gumbel-softmax, and the phased recipe
(stored losses, resuming in the middle of the adversarial phase, generate/evaluate on the checkpoint)."""

import signal

import pytest
import torch

import genloom
import genloom.training.loop as loop
from genloom.apps.toy_grammar import corpus
from genloom.cli import main
from genloom.data.batching import pad
from genloom.data.tokenizers import EOS_ID, PAD_ID, Tokenizer
from genloom.errors import UserError
from genloom.models.gan import GANConfig, build, gumbel_softmax, inverse_temperature, pad_after_eos
from genloom.nn.cnn import TextCNN
from genloom.recipes.gan import finished_phases
from tests.conftest import SHARED_DATA, logged, signal_during_step, tiny_recipe

V = 40


def tiny_gan(**changes):
    torch.manual_seed(0)
    settings = {"vocab_size": V, "embed_dim": 16, "hidden_dim": 16, "max_length": 8, "disc_embed_dim": 12,
                "filter_sizes": [1, 2, 3], "num_filters": [8, 8, 8], "rollouts": 3, **changes}
    return build(GANConfig(**settings))


def gan_recipe(folder, **model):
    recipe = tiny_recipe(folder, **{"lr": 0.01, "batch_size": 64, "eval_every": None, "schedule": "constant",
                                    "max_steps": None, "epochs": 1})
    recipe["family"] = "gan"
    recipe["data"]["max_length"] = 12
    recipe["model"] = {"embed_dim": 16, "hidden_dim": 16, "max_length": 12, "disc_embed_dim": 12,
                       "filter_sizes": [1, 2, 3], "num_filters": [8, 8, 8], "rollouts": 2,
                       "disc_pretrain_epochs": 1, "adversarial_rounds": 2, "generator_steps": 1, "disc_steps": 1,
                       "disc_lr": 0.001, **model}
    return recipe


def test_samples_have_the_fixed_width_and_padding_after_the_first_eos():
    model = tiny_gan(min_length=3)
    samples = model.sample(32, rng=torch.Generator().manual_seed(0))
    assert samples.shape == (32, 9)
    assert ((samples[:, :3] != EOS_ID) & (samples[:, :3] != PAD_ID)).all()  # no end before min_length
    for row in samples.tolist():
        end = row.index(EOS_ID)
        assert all(t == PAD_ID for t in row[end + 1 :]) and PAD_ID not in row[:end]
    assert pad_after_eos(torch.tensor([[5, 2, 7, 2]])).tolist() == [[5, 2, 0, 0]]


def test_rollout_rewards_have_the_sequence_shape_and_lie_in_0_1():
    model = tiny_gan()
    samples = model.sample(5)
    rewards = model.rollout_rewards(samples)
    assert rewards.shape == samples.shape
    assert (rewards >= 0).all() and (rewards <= 1).all()


def test_the_policy_gradient_raises_the_log_probability_of_a_rewarded_sequence():
    model = tiny_gan()
    sequence = model.sample(1)
    rewards = torch.ones(sequence.shape)

    def log_prob():
        with torch.no_grad():
            return -float(model.policy_gradient_loss(sequence, rewards)) * int((sequence != PAD_ID).sum())

    before = log_prob()
    optimizer = torch.optim.SGD(model.generator.parameters(), lr=0.5)
    model.policy_gradient_loss(sequence, rewards).backward()
    optimizer.step()
    assert log_prob() > before
    # a zero reward gives no gradient at all
    model.zero_grad()
    model.policy_gradient_loss(sequence, torch.zeros(sequence.shape)).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.generator.parameters())


def test_the_summed_policy_gradient_is_the_per_token_mean_times_the_tokens():
    mean, summed = tiny_gan(), tiny_gan(pg_reduction="sum")
    samples = mean.sample(4)
    rewards = torch.rand(samples.shape, generator=torch.Generator().manual_seed(1))
    tokens = int((samples != PAD_ID).sum())
    assert tokens > 4
    with torch.no_grad():
        assert float(summed.policy_gradient_loss(samples, rewards)) == pytest.approx(
            float(mean.policy_gradient_loss(samples, rewards)) * tokens, rel=1e-5)


def test_the_discriminator_separates_real_from_shuffled_text():
    texts = corpus(600, seed=0)
    tokenizer = Tokenizer.train("word", texts, 100)
    generator = torch.Generator().manual_seed(0)

    def batch(sentences):
        ids = [tokenizer.encode(t) for t in sentences]
        shuffled = [[s[i] for i in torch.randperm(len(s), generator=generator).tolist()] for s in ids]
        tokens, _ = pad(ids + shuffled, PAD_ID)
        return tokens, torch.cat([torch.ones(len(ids)), torch.zeros(len(ids))])

    torch.manual_seed(0)
    cnn = TextCNN(tokenizer.vocab_size, 16, [2, 3], [16, 16], dropout=0.1)
    optimizer = torch.optim.Adam(cnn.parameters(), lr=0.01)
    for step in range(60):
        tokens, labels = batch(texts[(step * 32) % 500 : (step * 32) % 500 + 32])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(cnn(tokens), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    cnn.eval()
    tokens, labels = batch(texts[500:])
    accuracy = float(((cnn(tokens) > 0).float() == labels).float().mean())
    assert accuracy > 0.85


def test_gumbel_softmax_approaches_one_hot_as_the_temperature_falls():
    logits = torch.randn(2000, 10, generator=torch.Generator().manual_seed(0))
    peaks = []
    for beta in (1.0, 10.0, 100.0, 1000.0):
        probs, hard = gumbel_softmax(logits, beta, torch.Generator().manual_seed(1))
        assert torch.allclose(probs.sum(-1), torch.ones(2000))
        assert torch.equal(probs.argmax(-1), hard)
        peaks.append(float(probs.max(-1).values.mean()))
    assert peaks == sorted(peaks) and peaks[-1] > 0.99
    config = GANConfig(gumbel_temperature_max=100.0)
    assert [inverse_temperature(config, u, 10) for u in (0, 5, 10)] == pytest.approx([1.0, 10.0, 100.0])


def test_the_gumbel_generator_loss_reaches_the_generator_through_the_relaxation():
    model = tiny_gan(objective="gumbel")
    texts = torch.randint(4, V, (4, 6))
    batch = genloom.data.batching.Batch(texts, texts, torch.ones_like(texts, dtype=torch.bool))
    model.gumbel_generator_loss(batch).backward()
    assert model.generator.output.weight.grad.abs().sum() > 0


def test_disc_l2_adds_the_penalty_on_the_output_layer_to_the_discriminator_loss():
    texts = torch.randint(4, V, (4, 6))
    batch = genloom.data.batching.Batch(texts, texts, torch.ones_like(texts, dtype=torch.bool))
    losses = []
    for l2 in (0.0, 0.5):
        model = tiny_gan(disc_l2=l2)
        torch.manual_seed(3)  # the same fake samples and dropout masks for both
        losses.append(float(model.discriminator_loss(batch).loss.detach()))
    output = model.discriminator.classify
    penalty = 0.5 * 0.5 * float(output.weight.detach().square().sum() + output.bias.detach().square().sum())
    assert losses[1] - losses[0] == pytest.approx(penalty, rel=1e-5)
    with pytest.raises(UserError, match="disc_l2"):
        tiny_gan(disc_l2=-1.0)


def train_losses(run_dir):
    records = []
    for phase in ("mle", "discriminator", "adversarial"):
        records += [(phase, r["step"], r["loss"]) for r in logged(run_dir / "phases" / phase, "train")]
    return records


STORED = [("mle", 1, 3.798513174057007), ("mle", 2, 3.791402816772461), ("mle", 3, 3.7972540855407715),
          ("mle", 4, 3.786785840988159), ("mle", 5, 3.763747215270996),
          ("discriminator", 1, 0.7041167616844177), ("discriminator", 2, 0.712977409362793),
          ("discriminator", 3, 0.7222421765327454), ("discriminator", 4, 0.7175776958465576),
          ("discriminator", 5, 0.7074706554412842),
          ("adversarial", 1, 2.1630659103393555), ("adversarial", 2, 0.702863335609436),
          ("adversarial", 3, 2.1228599548339844), ("adversarial", 4, 0.6954113245010376)]


def test_short_seqgan_recipe_reproduces_stored_losses(tmp_path):
    genloom.train(gan_recipe(tmp_path))
    got = train_losses(tmp_path / "run")
    assert [g[:2] for g in got] == [s[:2] for s in STORED]
    assert [g[2] for g in got] == pytest.approx([s[2] for s in STORED], rel=1e-5, abs=1e-6)
    assert finished_phases(tmp_path / "run") == ["mle", "discriminator", "adversarial"]


def test_a_run_interrupted_in_the_adversarial_phase_resumes_exactly(tmp_path, monkeypatch):
    reference = gan_recipe(tmp_path / "a", adversarial_rounds=3)
    genloom.train(reference)
    interrupted = gan_recipe(tmp_path / "b", adversarial_rounds=3)
    restore = signal_during_step(monkeypatch, signal.SIGTERM, at_call=5 + 5 + 3)  # the third adversarial update
    with pytest.raises(loop.TrainingInterrupted):
        genloom.train(interrupted)
    assert finished_phases(tmp_path / "b" / "run") == ["mle", "discriminator"]
    restore()
    genloom.train(interrupted, resume=True)
    assert train_losses(tmp_path / "b" / "run") == train_losses(tmp_path / "a" / "run")


def test_gumbel_recipe_and_the_usual_commands_on_a_gan_checkpoint(tmp_path, capsys):
    genloom.train(gan_recipe(tmp_path, objective="gumbel"))
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["generate", str(run), "--method", "sample", "--seed", "1", "--num-samples", "2",
                 "--device", "cpu"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["evaluate", str(run), "--data", str(tmp_path / "data" / "test.txt"), "--device", "cpu"]) == 0
    assert "perplexity" in capsys.readouterr().out


def test_init_range_sets_the_generators_initial_weights_only():
    gan = tiny_gan(init_range=0.3)
    weights = torch.cat([p.flatten() for p in gan.generator.parameters()])
    assert 0.25 < weights.abs().max() <= 0.3
    assert torch.equal(weights, torch.cat([p.flatten() for p in gan.rollout.parameters()]))
    disc_default = tiny_gan().discriminator.state_dict()
    assert all(torch.equal(w, disc_default[k]) for k, w in gan.discriminator.state_dict().items())


def test_bad_gan_settings_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="model.init_range"):
        tiny_gan(init_range=-0.1)
    with pytest.raises(UserError, match="same length"):
        tiny_gan(filter_sizes=[1, 2], num_filters=[4])
    with pytest.raises(UserError, match="min_length"):
        tiny_gan(min_length=9)
    recipe = gan_recipe(tmp_path)
    recipe["data"]["max_length"] = 30
    with pytest.raises(UserError, match="must equal model.max_length"):
        genloom.train(recipe)


@pytest.mark.skipif(not (SHARED_DATA / "seqgan_oracle").is_dir(), reason=f"staged corpora not found at {SHARED_DATA}")
def test_the_seqgan_oracle_scores_its_own_samples_as_documented():
    from genloom.apps.seqgan_oracle import Oracle, as_text, from_words

    oracle = Oracle.load(SHARED_DATA / "seqgan_oracle" / "target_params.npz")
    generator = torch.Generator().manual_seed(0)
    samples = oracle.sample(500, generator)
    assert samples.shape == (500, 20)
    assert oracle.nll(samples) == pytest.approx(5.75, abs=0.15)  # SOURCE.md: 5.75 on 10,000 samples
    per_sequence = oracle.sequence_nll(samples)  # one score a sequence, NLL-oracle their mean
    assert per_sequence.shape == (500,) and float(per_sequence.mean()) == pytest.approx(oracle.nll(samples))
    assert torch.allclose(oracle.sequence_nll(samples[:2]), per_sequence[:2])  # a sequence's score is its own
    assert oracle.nll(torch.randint(0, 5000, (500, 20), generator=generator)) == pytest.approx(11.43, abs=0.15)
    assert torch.equal(from_words([line.split() for line in as_text(samples[:3])]), samples[:3])
    with pytest.raises(ValueError, match="not an oracle token"):
        from_words([["w1", "<unk>"]])


def test_rollout_rewards_are_scored_without_dropout():
    model = tiny_gan(disc_dropout=0.9)
    samples = model.sample(4)
    rewards = model.rollout_rewards(samples)
    assert model.discriminator.training  # the discriminator is left as it was
    model.discriminator.eval()
    with torch.no_grad():
        assert torch.allclose(rewards[:, -1], torch.sigmoid(model.discriminator(samples)))


@pytest.mark.parametrize("rate", [0.0, 0.8])
def test_the_rollout_copy_follows_the_generator_after_generator_updates_only(rate):
    model = tiny_gan(rollout_update_rate=rate, generator_steps=1, disc_steps=2)
    model.phase = "adversarial"
    before = [p.clone() for p in model.rollout.parameters()]
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)  # a generator update
    model.after_update()  # the round's generator step: the copy moves
    for old, mine, theirs in zip(before, model.rollout.parameters(), model.generator.parameters()):
        torch.testing.assert_close(mine, rate * old + (1 - rate) * theirs)
    moved = [p.clone() for p in model.rollout.parameters()]
    model.after_update()  # a discriminator step: the copy stays
    assert all(torch.equal(a, b) for a, b in zip(moved, model.rollout.parameters()))
    assert int(model.adversarial_updates) == 2
