"""Seq2seq end to end through the command line: train (a real ``python -m genloom`` process), translate (with
attention plot), summarize, evaluate."""

import json

import yaml

from genloom.apps.toy_dates import pairs


def write_tsv(path, rows):
    path.write_text("".join(f"{s}\t{t}\n" for s, t in rows), encoding="utf-8")


def test_train_translate_plot_evaluate(tmp_path, cli):
    write_tsv(tmp_path / "train.tsv", pairs(300, 1))
    write_tsv(tmp_path / "valid.tsv", pairs(40, 2))
    recipe = {
        "family": "seq2seq", "out_dir": str(tmp_path / "run"),
        "data": {"train": str(tmp_path / "train.tsv"), "valid": str(tmp_path / "valid.tsv"), "format": "tsv"},
        "tokenizer": {"kind": "char", "vocab_size": 100},
        "model": {"cell": "gru", "embed_dim": 16, "hidden_dim": 24, "attention_dim": 16, "dropout": 0.0},
        "train": {"max_steps": 8, "batch_size": 32, "lr": 0.01, "eval_every": 4, "log_every": 2, "device": "cpu"},
    }
    (tmp_path / "recipe.yaml").write_text("# toy dates\n" + yaml.safe_dump(recipe), encoding="utf-8")
    result = cli("train", tmp_path / "recipe.yaml")
    assert result.returncode == 0, result.stderr

    inputs = "March 5, 2021\n12.11.1999\n"
    result = cli("translate", tmp_path / "run", "--beam", "3", "--max-new-tokens", "12",
                     "--attention-plot", tmp_path / "attn.png", stdin=inputs)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert (tmp_path / "attn-1.png").stat().st_size > 1000 and (tmp_path / "attn-2.png").is_file()

    (tmp_path / "in.txt").write_text("the 3rd of May 1970\n", encoding="utf-8")
    result = cli("summarize", tmp_path / "run", "--input", tmp_path / "in.txt", "--output", tmp_path / "out.txt",
                     "--max-new-tokens", "12")
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "out.txt").read_text().splitlines()) == 1

    result = cli("evaluate", tmp_path / "run", "--data", tmp_path / "valid.tsv", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert {"loss", "perplexity", "bleu", "chrf", "signature"} <= set(figures)


def test_translate_refuses_a_language_model(trained_run, cli):
    result = cli("translate", trained_run, stdin="hello\n")
    assert result.returncode == 2
    assert "needs a seq2seq checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_beam_hypotheses_carry_attention_rows_that_sum_to_one():
    import torch

    from genloom.decoding.generate import GenerationConfig, beam_search
    from genloom.models.seq2seq import Seq2SeqConfig, build

    torch.manual_seed(0)
    model = build(Seq2SeqConfig(vocab_size=12, embed_dim=8, hidden_dim=8, attention_dim=8, dropout=0.0)).eval()
    source = torch.tensor([[4, 5, 6, 0], [7, 8, 9, 10]])
    context = {"source": source, "source_mask": source != 0}
    cfg = GenerationConfig(method="beam", num_beams=3, num_return_sequences=2, max_new_tokens=5)
    for row, hyps in enumerate(beam_search(model, [[1], [1]], cfg, 2, context=context)):
        for hyp in hyps:
            assert hyp.attention.shape == (len(hyp.tokens), 4)
            torch.testing.assert_close(hyp.attention.sum(-1), torch.ones(len(hyp.tokens)))
            if row == 0:
                assert torch.all(hyp.attention[:, 3] == 0)
