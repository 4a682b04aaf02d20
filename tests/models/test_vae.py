"""The text VAE: the KL and its floor, the reparameterisation, the importance-weighted bound, the schedules,
aggressive updates, the step contract, and the latent-space uses on a tiny trained checkpoint."""

import json

import pytest
import torch

import genloom
from genloom.apps import latent
from genloom.checkpoint import load_tensors, save_tensors
from genloom.data.batching import sentence_batches
from genloom.errors import UserError
from genloom.models.vae import (VAEConfig, build, free_bits_kl, gaussian_kl, importance_weighted_log_likelihood,
                                kl_weight, latent_report)
from genloom.recipes.vae import collapse_warning
from tests.conftest import tiny_recipe

V = 30


def tiny_vae(**changes):
    torch.manual_seed(0)
    settings = {"vocab_size": V, "embed_dim": 12, "hidden_dim": 16, "latent_dim": 4, "dropout": 0.0, **changes}
    config = VAEConfig(**settings)
    return build(config)


def random_batch(rows=6, seed=1):
    generator = torch.Generator().manual_seed(seed)
    texts = [torch.randint(4, V, (int(n),), generator=generator).tolist()
             for n in torch.randint(2, 9, (rows,), generator=generator)]
    return next(sentence_batches(texts, rows, bos_id=1, eos_id=2, pad_id=0))


def vae_recipe(folder, **train):
    recipe = tiny_recipe(folder, **{"max_steps": 2, "eval_every": 2, **train})
    recipe["family"] = "vae"
    recipe["model"] = {"embed_dim": 16, "hidden_dim": 24, "latent_dim": 4, "kl_anneal_steps": 20, "dropout": 0.1,
                       "word_dropout": 0.2, "free_bits": 0.05}
    return recipe


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae")
    genloom.train(vae_recipe(folder, max_steps=60, eval_every=30, lr=0.02))
    return genloom.load(folder / "run", device="cpu")


def test_kl_of_identical_gaussians_is_zero_and_never_negative():
    assert torch.equal(gaussian_kl(torch.zeros(3, 5), torch.zeros(3, 5)), torch.zeros(3, 5))
    generator = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(1000, 8, generator=generator) * 3, torch.randn(1000, 8, generator=generator) * 3
    assert (gaussian_kl(mean, logvar) >= 0).all()
    # the closed form agrees with a Monte-Carlo estimate of E_q[log q − log p]
    m, lv = torch.tensor([0.7]), torch.tensor([-0.4])
    z = m + torch.randn(200_000, generator=generator) * (0.5 * lv).exp()
    log_q = -0.5 * ((z - m) ** 2 / lv.exp() + lv)
    log_p = -0.5 * z**2
    assert float(gaussian_kl(m, lv)) == pytest.approx(float((log_q - log_p).mean()), abs=0.01)


def test_free_bits_floor_the_kl_and_stop_its_gradient_below_the_floor():
    kl = torch.tensor([[0.01, 0.5], [0.03, 0.7]], requires_grad=True)  # (B, Z)
    per_dim = free_bits_kl(kl, 0.1, "dimension")  # means: 0.02 → 0.1, 0.6 stays
    assert float(per_dim.detach()) == pytest.approx(2 * (0.1 + 0.6))
    per_dim.backward()
    assert kl.grad[:, 0].abs().sum() == 0 and (kl.grad[:, 1] > 0).all()
    with torch.no_grad():
        assert float(free_bits_kl(kl, 1.0, "total")) == pytest.approx(2 * 1.0)
        assert float(free_bits_kl(kl, 0.0, "total")) == pytest.approx(float(kl.sum()))


def test_kl_annealing_schedules():
    linear = VAEConfig(kl_anneal="linear", kl_anneal_steps=100)
    assert [kl_weight(linear, u) for u in (0, 50, 100, 500)] == [0.0, 0.5, 1.0, 1.0]
    sigmoid = VAEConfig(kl_anneal="sigmoid", kl_anneal_steps=100)
    assert kl_weight(sigmoid, 0) < 0.01 and kl_weight(sigmoid, 50) == 0.5 and kl_weight(sigmoid, 100) > 0.99
    cyclical = VAEConfig(kl_anneal="cyclical", kl_anneal_steps=100, kl_cycle_ratio=0.5)
    assert [kl_weight(cyclical, u) for u in (0, 25, 50, 99, 100, 125)] == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5]
    assert kl_weight(VAEConfig(kl_anneal="none"), 0) == 1.0
    texar = VAEConfig(kl_anneal="linear", kl_anneal_steps=100, kl_anneal_start=0.1)  # Texar's 0.1 → 1
    assert [kl_weight(texar, u) for u in (0, 50, 100, 500)] == pytest.approx([0.1, 0.55, 1.0, 1.0])


def test_the_encoder_can_have_its_own_dropout():
    assert tiny_vae(dropout=0.5).encoder.drop.p == 0.5
    model = tiny_vae(dropout=0.5, encoder_dropout=0.0)
    assert model.encoder.drop.p == 0.0 and model.drop.p == 0.5


def test_tied_embeddings_share_one_matrix_through_a_saved_checkpoint(tmp_path):
    model = tiny_vae(tie_embeddings=True)  # hidden 16 ≠ embed 12: a projection to the embedding size
    assert model.output.weight is model.embed.weight and model.project.weight.shape == (12, 16)
    assert isinstance(tiny_vae(tie_embeddings=True, hidden_dim=12).project, torch.nn.Identity)
    model.loss(random_batch()).loss.backward()
    assert model.embed.weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.embed.weight.add_(1.0)  # away from the fresh model's initial weights
    path = tmp_path / "weights.safetensors"
    save_tensors(path, model.state_dict())  # the shared matrix is written under both names
    reloaded = tiny_vae(tie_embeddings=True)
    reloaded.load_state_dict(load_tensors(path))
    assert reloaded.output.weight is reloaded.embed.weight
    assert torch.equal(reloaded.embed.weight, model.embed.weight)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in tiny_vae().parameters())


def test_gradients_flow_through_the_reparameterisation():
    model = tiny_vae(kl_anneal="none")
    model.loss(random_batch()).loss.backward()
    for name in ("posterior_head.weight", "encoder.rnn.weight_ih_l0", "encoder.embed.weight", "decoder.weight_ih_l0"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    # the reconstruction term alone reaches the encoder only through z
    model.zero_grad()
    batch = random_batch()
    reconstruction, *_ = model.elbo_terms(batch)
    reconstruction.sum().backward()
    assert model.posterior_head.weight.grad.abs().sum() > 0


def test_the_importance_weighted_bound_is_above_the_elbo_and_tightens_with_k():
    model = tiny_vae().eval()
    with torch.no_grad():  # a narrow posterior away from the prior: a loose ELBO, so the gap is plain to see
        model.posterior_head.bias.copy_(torch.tensor([1.5] * 4 + [-2.0] * 4))
    batch = random_batch(rows=16)
    torch.manual_seed(0)

    def expected_bound(k, repeats):  # (B,) E[IW_k], averaged over repeats
        return torch.stack([importance_weighted_log_likelihood(model, batch, k) for _ in range(repeats)]).mean(0)

    with torch.no_grad():
        elbo = torch.stack([-(r + kl.sum(-1)) for r, kl, *_ in (model.elbo_terms(batch) for _ in range(400))]).mean(0)
    bounds = {1: expected_bound(1, 400), 10: expected_bound(10, 40), 100: expected_bound(100, 4),
              1000: expected_bound(1000, 1)}
    assert float(bounds[1].mean()) == pytest.approx(float(elbo.mean()), abs=0.2)  # k = 1 is the ELBO
    assert (bounds[1000] >= elbo).all()
    means = [float(bounds[k].mean()) for k in (1, 10, 100, 1000)]
    assert means == sorted(means) and means[-1] > means[0] + 1.0


def test_aggressive_phase_updates_the_encoder_alone_between_joint_updates():
    model = tiny_vae(aggressive=True, aggressive_encoder_steps=2)
    batch = random_batch()
    seen = []
    for _ in range(3):
        model.zero_grad(set_to_none=True)
        model.loss(batch).loss.backward()
        model.after_update()  # what the training loop does after each optimizer step
        seen.append((model.decoder.weight_ih_l0.grad is not None, model.encoder.rnn.weight_ih_l0.grad is not None))
    assert seen == [(False, True), (False, True), (True, True)]
    assert all(p.requires_grad for p in model.parameters())
    model.aggressive_phase.fill_(False)
    model.zero_grad(set_to_none=True)
    model.loss(batch).loss.backward()
    assert model.decoder.weight_ih_l0.grad is not None


@pytest.mark.parametrize("latent_to", ["init", "input", "both"])
def test_incremental_decoding_equals_full_recomputation(latent_to):
    model = tiny_vae(latent_to=latent_to, cell="gru" if latent_to == "input" else "lstm").eval()
    tokens = torch.randint(4, V, (3, 7))
    z = torch.randn(3, 4)
    full, _ = model.decode(tokens, z, model.initial_state(z))  # (B, T, V)
    state = model.init_state(3, z)
    for t in range(7):
        logits, state = model.step(tokens[:, t : t + 1], state)
        assert torch.allclose(logits, full[:, t], atol=1e-5)
    index = torch.tensor([2, 0])
    reordered = model.reorder_state(state, index)
    assert torch.equal(reordered["z"], z[index])


def test_collapse_warning_in_plain_words():
    assert "posterior collapse" in collapse_warning({"kl": 0.05, "active_units": 0})
    assert collapse_warning({"kl": 0.05, "active_units": 1}) is None
    assert collapse_warning({"kl": 3.0, "active_units": 0}) is None


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="latent_dim"):
        tiny_vae(latent_dim=0)
    with pytest.raises(UserError, match="kl_cycle_ratio"):
        tiny_vae(kl_cycle_ratio=0.0)
    with pytest.raises(UserError, match="free_bits"):
        tiny_vae(free_bits=-1.0)
    with pytest.raises(UserError, match="init_range"):
        tiny_vae(init_range=-0.1)
    with pytest.raises(UserError, match="weight_drop"):
        tiny_vae(weight_drop=1.5)


def test_weight_drop_regularises_the_decoder_in_training_only():
    model, batch = tiny_vae(weight_drop=0.5), random_batch()
    z = torch.randn(batch.inputs.size(0), 4)
    model.eval()
    scored = model.log_likelihood(batch.inputs, batch.targets, batch.mask, z)
    assert torch.equal(scored, tiny_vae().eval().log_likelihood(batch.inputs, batch.targets, batch.mask, z))
    model.train()
    assert not torch.allclose(model.log_likelihood(batch.inputs, batch.targets, batch.mask, z), scored)


def test_init_range_bounds_every_weight_and_zero_keeps_the_defaults():
    weights = torch.cat([p.detach().flatten() for p in tiny_vae(init_range=0.05).parameters()])
    assert float(weights.abs().max()) <= 0.05
    assert float(tiny_vae().embed.weight.detach().std()) > 0.5  # PyTorch's N(0, 1) embeddings


STORED = {"train": [3.7618536949157715, 3.7719342708587646], "valid": [3.755886002310685]}


def test_two_step_vae_recipe_reproduces_stored_losses(tmp_path):
    genloom.train(vae_recipe(tmp_path))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for split, expected in STORED.items():
        got = [r["loss"] for r in records if r["split"] == split]
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6), split
    (valid,) = [r for r in records if r["split"] == "valid"]
    assert {"sentence_kl", "mutual_info", "active_units", "sentence_elbo"} <= set(valid)


def test_interpolation_endpoints_decode_the_endpoint_codes(trained_vae):
    first, last = "the cat sees a dog", "a small bird sleeps"
    path = latent.interpolate(trained_vae, first, last, steps=5)
    assert [t for t, _ in path] == [0.0, 0.25, 0.5, 0.75, 1.0]
    mean, _ = trained_vae.to_latent([first, last])
    assert path[0][1] == trained_vae.from_latent(mean[:1])[0]
    assert path[-1][1] == trained_vae.from_latent(mean[1:])[0]
    with pytest.raises(UserError, match="at least 2 steps"):
        latent.interpolate(trained_vae, first, last, steps=1)


def test_sampling_reconstruction_and_the_latent_map(trained_vae, tmp_path):
    samples = latent.sample(trained_vae, 4, seed=3)
    assert len(samples) == 4 and samples == latent.sample(trained_vae, 4, seed=3)
    assert len(latent.sample(trained_vae, 3, seed=1, method="beam", num_beams=3)) == 3
    assert len(latent.sample(trained_vae, 3, seed=1, method="sample", top_k=5)) == 3
    assert len(latent.reconstruct(trained_vae, ["the cat sees a dog", "a bird sleeps"])) == 2
    png = latent.plot_latent(trained_vae, [f"the cat sees {n} dogs" for n in range(20)], tmp_path / "map.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_reports_the_latent_figures(trained_vae, tmp_path):
    data = tmp_path / "eval.txt"
    data.write_text("the cat sees a dog\na small bird sleeps\n", encoding="utf-8")
    result = trained_vae.evaluate(data, iw_samples=20)
    assert set(result) >= {"nll", "perplexity", "elbo", "reconstruction", "kl", "mutual_info", "active_units"}
    assert result["nll"] <= -result["elbo"] + 1.0  # the IW bound is the tighter one (up to sampling noise)
    assert "nats per sentence" in result["protocol"]
    with pytest.raises(UserError, match="no sentences"):
        latent_report(trained_vae.model, [], torch.device("cpu"))


def test_the_vae_commands(trained_vae, tmp_path, capsys, monkeypatch):
    import io

    from genloom.cli import main

    checkpoint = str(trained_vae.path)
    assert main(["vae", "sample", checkpoint, "-n", "3", "--seed", "1", "--device", "cpu"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["vae", "interpolate", checkpoint, "the cat sees a dog", "a bird sleeps", "--steps", "4",
                 "--beam", "2", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["0.00", "0.33", "0.67", "1.00"]
    monkeypatch.setattr("sys.stdin", io.StringIO("the cat sees a dog\n\na bird sleeps\n"))
    assert main(["vae", "reconstruct", checkpoint, "--device", "cpu"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    data = tmp_path / "sentences.txt"
    data.write_text("\n".join(f"the cat sees {n} dogs" for n in range(10)) + "\n", encoding="utf-8")
    assert main(["vae", "plot", checkpoint, "--data", str(data), "--out", str(tmp_path / "map.png")]) == 0
    assert (tmp_path / "map.png").is_file()
    assert main(["evaluate", checkpoint, "--data", str(data), "--iw-samples", "5", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "importance-weighted, 5 samples" in out and "active units" in out and "protocol:" in out


def test_latent_uses_of_another_family_are_one_line_errors(trained_run, capsys):
    from genloom.cli import main

    assert main(["vae", "sample", str(trained_run), "-n", "2", "--device", "cpu"]) == 2
    assert "has no latent space" in capsys.readouterr().err
