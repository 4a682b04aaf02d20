"""``genloom profile``: the analytic FLOPs of each family equal torch.utils.flop_counter's count of a decoding step,
and the command reports, writes JSON and a PNG, and refuses bad options in one line."""

import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import genloom
from genloom.models import gpt, rnnlm, transformer_seq2seq


def counted(fn) -> int:
    """FLOPs the counter sees; attention through SDPA's math backend, whose matrix products it counts (it counts
    nothing for the fused CPU kernel)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("position", [0, 9])
def test_gpt_flops_per_token_equal_the_flop_counter(position):
    config = gpt.GPTConfig(vocab_size=70, context_length=32, dim=32, num_layers=2, num_heads=4)
    model = gpt.build(config).eval()
    caches = [{} for _ in model.layers]
    with torch.no_grad():
        if position:
            _, caches = model(torch.randint(0, 70, (1, position)), caches, 0)
        # forward, not step: step's decode plan calls oneDNN/MKL kernels the counter does not know
        flops = counted(lambda: model(torch.tensor([[5]]), caches, position))
    assert flops == gpt.flops_per_token(config, position)


def test_rnnlm_flops_per_token_equal_the_flop_counter():
    """A GRU (the counter sees its matrix products; PyTorch's fused CPU LSTM kernel is opaque to it), tied with a
    projection, two layers."""
    config = rnnlm.RNNLMConfig(vocab_size=50, cell="gru", embed_dim=12, hidden_dim=20, num_layers=2,
                               tie_embeddings=True)
    model = rnnlm.build(config).eval()
    with torch.no_grad():
        flops = counted(lambda: model(torch.tensor([[3]])))
    assert flops == rnnlm.flops_per_token(config)


def test_transformer_seq2seq_flops_per_token_equal_the_flop_counter():
    config = transformer_seq2seq.TransformerSeq2SeqConfig(vocab_size=60, dim=32, num_heads=4, encoder_layers=1,
                                                          decoder_layers=2, ff_dim=48)
    model = transformer_seq2seq.build(config).eval()
    source = torch.randint(4, 60, (1, 7))
    with torch.no_grad():
        state = model.init_state(1, {"source": source, "source_mask": torch.ones_like(source, dtype=torch.bool)})
        _, state = model.step(torch.tensor([[1, 8, 9]]), state)  # the cross-attention keys are cached now
        flops = counted(lambda: model.step(torch.tensor([[5]]), state))
    assert flops == transformer_seq2seq.flops_per_token(config, 3, 7)


def test_profile_reports_every_batch_size_as_a_table_json_and_a_plot(cli, trained_gpt, tmp_path):
    result = cli("profile", trained_gpt, "--batch-sizes", "1,3", "--new-tokens", "6", "--prompt-tokens", "4",
                 "--json", tmp_path / "p.json", "--plot", tmp_path / "p.png", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "FLOPs per token" in result.stdout and "p99 ms" in result.stdout
    report = json.loads((tmp_path / "p.json").read_text())
    assert [row["batch"] for row in report["batches"]] == [1, 3]
    assert report["parameters"] == sum(p.numel() for p in genloom.load(trained_gpt, device="cpu").model.parameters())
    assert report["flops"]["per_token_at_average_position"] > report["flops"]["per_token_at_position_0"]
    for row in report["batches"]:
        assert row["tokens_per_s"] > 0 and 0 < row["latency_p50_ms"] <= row["latency_p99_ms"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, said", [
    (["--batch-sizes", "1,x"], "--batch-sizes must be comma-separated whole numbers"),
    (["--new-tokens", "0"], "--new-tokens must be at least 1"),
    (["--new-tokens", "60"], "pass the model's context of 48 tokens"),
])
def test_profile_refuses_bad_options_in_one_line(cli, trained_gpt, args, said):
    result = cli("profile", trained_gpt, *args, "--device", "cpu")
    assert result.returncode == 2 and said in result.stderr and result.stderr.count("\n") == 1
