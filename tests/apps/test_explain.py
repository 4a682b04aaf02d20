"""Explanations: each attribution method against a hand computation or its defining property, the report in a real
browser, and the command line."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import genloom
from genloom.apps.explain import _gradient_x_input, _occlusion, _Scorer, explain
from genloom.apps.explain_report import write_html
from genloom.errors import UserError


class Bigram(nn.Module):
    """log P(y | prefix) = log_softmax(W e(last token)): a model whose attributions are computed by hand."""

    conditional = False

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(6, 3)
        self.output = nn.Linear(3, 6, bias=False)

    def init_state(self, batch_size, context=None):
        return None

    def step(self, tokens, state):
        return self.output(self.embed(tokens)[:, -1]), state  # (B, V): only the last token matters


def scorer_of(model):
    return _Scorer(SimpleNamespace(model=model, family="rnnlm", conditional=False, device=torch.device("cpu")))


def test_gradient_x_input_equals_the_hand_computed_value():
    model = Bigram()
    tokens = torch.tensor([[1, 4, 2]])
    target = 5
    got = _gradient_x_input(scorer_of(model), torch.zeros((1, 0), dtype=torch.long), tokens, target, 2, None)
    e = model.embed.weight[2].detach()  # only the last token's embedding reaches the scores
    w = model.output.weight.detach()  # (V, C)
    p = torch.softmax(w @ e, 0)
    expected_last = float(e @ (w[target] - p @ w))  # e · ∂/∂e [ (W e)_y − logsumexp(W e) ]
    assert got[:2].tolist() == [0.0, 0.0]
    assert got[2] == pytest.approx(expected_last, rel=1e-5)


def test_occlusion_removes_exactly_one_token_per_rescoring(monkeypatch):
    scorer = scorer_of(Bigram())
    seen = []
    real = scorer.log_prob

    def record(source, decoder, target, embedded=None):
        seen.append(decoder.tolist())
        return real(source, decoder, target, embedded)

    monkeypatch.setattr(scorer, "log_prob", record)
    tokens = torch.tensor([[1, 4, 2, 3]])
    scores = _occlusion(scorer, torch.zeros((1, 0), dtype=torch.long), tokens, 5, 2, None)
    assert seen[0] == [[1, 4, 2, 3]]  # the whole context first
    assert seen[1] == [[1, 2, 3], [1, 4, 3], [1, 4, 2]]  # then each token but the start token left out once
    assert np.isnan(scores[0]) and scores[1] == 0.0 == scores[2]  # the bigram reads only the last token
    assert scores[3] != 0.0


@pytest.fixture(scope="module")
def explained(trained_run, lowercased_copier):
    lm = explain(genloom.load(trained_run, device="cpu"), "the cat", max_new_tokens=4)
    seq2seq = explain(genloom.load(lowercased_copier, device="cpu"), "Word1 Word2 Word3.", max_new_tokens=4)
    return lm, seq2seq


def test_integrated_gradients_are_complete_and_every_method_fills_what_the_token_could_see(explained):
    for result in explained:
        assert max(result.completeness_error) < 0.01  # Σ attributions = log P(input) − log P(baseline), within 1 %
        for method, rows in result.attributions.items():
            assert rows.shape == (len(result.generated), len(result.context))
            for i, row in enumerate(rows):
                assert np.isnan(row[result.first + i :]).all(), method  # tokens after the predicted position
    lm, seq2seq = explained
    assert np.isnan(lm.attributions["attention"]).all()  # an RNN LM has no attention
    source = seq2seq.first - 1  # the source tokens, before the decoder's start token
    attention = seq2seq.attributions["attention"][:, :source]
    assert np.allclose(attention.sum(1), 1.0, atol=1e-4)  # cross-attention over the source


def test_the_report_shows_a_tokens_attributions_in_a_browser(explained, tmp_path, browser):
    _, result = explained
    page_path = write_html(result, tmp_path / "explain.html")
    assert "http" not in page_path.read_text().split("<script>")[0].replace("http://", "")  # nothing from outside
    page = browser.new_page()
    page.goto(page_path.as_uri())
    page.hover(".gen >> nth=1")
    scores = page.eval_on_selector_all(".ctx", "spans => spans.map(s => s.dataset.score)")
    expected = result.attributions["gradient_x_input"][1]
    assert [float(s) if s else None for s in scores] == pytest.approx(
        [None if np.isnan(v) else float(v) for v in expected], abs=1e-5)
    page.select_option("#method", "attention")
    coloured = page.eval_on_selector_all(".ctx", "spans => spans.map(s => s.style.background)")
    assert sum(c not in ("", "transparent") for c in coloured) >= 2
    page.screenshot(path=str(tmp_path / "explain.png"), full_page=True)
    assert (tmp_path / "explain.png").stat().st_size > 5000


def test_the_command_line_explains_the_seq2seq_model(cli, lowercased_copier, trained_run, tmp_path):
    result = cli("explain", lowercased_copier, "--source", "Word1 Word2.", "--max-new-tokens", "3",
                 "--methods", "gradient_x_input,occlusion", "--json", "--plot", tmp_path / "e.png")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["attributions"]) == {"gradient_x_input", "occlusion"} and data["generated"]
    assert (tmp_path / "e.png").stat().st_size > 1000
    assert cli("explain", trained_run, "--source", "the").returncode == 2  # an LM takes --prompt
    bad = cli("explain", trained_run, "--prompt", "the", "--methods", "shap")
    assert bad.returncode == 2 and "unknown explanation method 'shap'" in bad.stderr


def test_bad_settings_are_refused_in_one_sentence(trained_run):
    model = genloom.load(trained_run, device="cpu")
    with pytest.raises(UserError, match="steps must be at least 2"):
        explain(model, "the", steps=1)
    with pytest.raises(UserError, match="unknown explanation method 'lime'"):
        explain(model, "the", methods=("lime",))


def test_a_vae_decoder_is_explained_through_its_posterior_mean(tmp_path):
    from tests.models.test_vae import vae_recipe

    genloom.train(vae_recipe(tmp_path, max_steps=4))
    result = explain(genloom.load(tmp_path / "run", device="cpu"), "the cat sees a dog .",
                     methods=("gradient_x_input", "occlusion"), max_new_tokens=3)
    source = result.first - 1  # the source's tokens (encoded to z), then the decoder's start token
    assert result.context[:source] == ["the", "cat", "sees", "a", "dog", "."]
    assert not np.isnan(result.attributions["gradient_x_input"][0, :source]).any()  # the source reaches y through z
