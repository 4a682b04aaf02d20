"""int8 linear layers (``nn.quantized``) and ``genloom quantize``: the weights round to within half a step, the
fbgemm kernel computes what the dequantized weight computes, and a quantized checkpoint is a checkpoint every
command loads."""

import json

import pytest
import torch
import torch.nn.functional as F

import genloom
from genloom.apps.profile import model_size
from genloom.decoding.generate import GenerationConfig, generate
from genloom.models.gpt import GPTConfig, build
from genloom.nn.quantized import Int8Linear, cat_int8, fbgemm_available, quantize_linears, quantize_weight


def test_int8_weights_are_within_half_a_step_and_each_row_reaches_127():
    torch.manual_seed(0)
    weight = torch.randn(6, 10)
    weight[3] = 0.0  # a zero row keeps scale 1 and stays zero
    q, scale = quantize_weight(weight)
    assert q.dtype == torch.int8 and scale.shape == (6,)
    assert ((q.float() * scale[:, None] - weight).abs() <= scale[:, None] / 2 + 1e-7).all()
    assert q.abs().amax(1).tolist() == [127, 127, 127, 0, 127, 127]


def test_the_int8_layer_computes_what_its_dequantized_weight_computes():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    layer = Int8Linear.from_linear(linear)
    x = torch.randn(5, 3, 64)
    reference = F.linear(x, layer.dequantized(), layer.bias)
    got = layer(x)
    assert got.shape == (5, 3, 48)
    # fbgemm also quantizes the activations (per tensor, 8 bits): a few per cent, not more
    assert (got - reference).norm() / reference.norm() < (0.05 if fbgemm_available() else 1e-6)
    assert (reference - linear(x)).norm() / linear(x).norm() < 0.02
    stacked = cat_int8([layer, Int8Linear.from_linear(torch.nn.Linear(64, 16))])
    assert torch.equal(stacked(x.view(15, 64))[:, :48], layer(x.view(15, 64)))  # per-row scales: stacking is exact


def test_an_int8_gpt_decodes_the_same_tokens_through_its_plan_and_its_modules():
    torch.manual_seed(0)
    model = build(GPTConfig(vocab_size=300, context_length=64, dim=64, num_layers=2, num_heads=4)).eval()
    quantize_linears(model)
    prompts = [[1, 7, 9, 11], [1, 8, 9, 12]]
    cfg = GenerationConfig(max_new_tokens=20, min_new_tokens=20)
    planned = [s.tokens.tolist() for s in generate(model, prompts, cfg, eos_id=2)]
    assert model.decode_plan(2) is not None
    with torch.enable_grad():
        modules = [s.tokens.tolist() for s in generate.__wrapped__(model, prompts, cfg, eos_id=2)]
    assert planned == modules


@pytest.mark.parametrize("fixture", ["trained_run", "trained_gpt"])
def test_a_quantized_checkpoint_is_smaller_and_every_command_loads_it(cli, request, tmp_path, fixture):
    run = request.getfixturevalue(fixture)
    result = cli("quantize", run, tmp_path / "int8")
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "int8" / "config.json").read_text())
    assert "output" in config["quantization"]["layers"]
    float_model, int8_model = genloom.load(run, device="cpu"), genloom.load(tmp_path / "int8", device="cpu")
    assert isinstance(int8_model.model.output, Int8Linear)
    (values, float_bytes), (int8_values, int8_bytes) = (model_size(m.model) for m in (float_model, int8_model))
    tied = float_model.model.output.weight is float_model.model.embed.weight
    assert int8_values == values + (float_model.model.output.weight.numel() if tied else 0)  # its own int8 copy
    assert int8_bytes < float_bytes
    data = run.parent / "data" / "valid.txt"
    scores = [m.evaluate(str(data))["loss"] for m in (float_model, int8_model)]
    assert abs(scores[1] - scores[0]) < 0.02 * scores[0]
    generated = cli("generate", tmp_path / "int8", "--prompt", "the", "--max-new-tokens", "5", "--device", "cpu")
    assert generated.returncode == 0 and generated.stdout.startswith("the")
    assert cli("evaluate", tmp_path / "int8", "--data", data, "--device", "cpu").returncode == 0
    again = cli("quantize", tmp_path / "int8", tmp_path / "twice")
    assert again.returncode == 2 and "already quantized" in again.stderr
    taken = cli("quantize", run, tmp_path / "int8")
    assert taken.returncode == 2 and "is not empty; quantize into a new folder" in taken.stderr
