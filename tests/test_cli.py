"""The command line: each command works, and every kind of bad input is one line on stderr with exit 2."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from genloom.cli import main
from genloom.device import cpu_supports_bf16
from tests.conftest import tiny_recipe


def run_cli(*args):
    """Run ``python -m genloom`` in a fresh process: what a user sees, tracebacks included."""
    return subprocess.run([sys.executable, "-m", "genloom", *map(str, args)], capture_output=True, text=True)


def write_recipe(tmp_path, **changes):
    recipe = tiny_recipe(tmp_path)
    for key, value in changes.items():
        section, name = key.split(".")
        recipe[section][name] = value
    path = tmp_path / "recipe.yaml"
    path.write_text("# a tiny test recipe\n" + yaml.safe_dump(recipe), encoding="utf-8")
    return path


def empty_file(path):
    path.write_text("", encoding="utf-8")
    return path


def assert_one_line_error(result, pattern):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert pattern in lines[0], lines[0]


def test_train_generate_evaluate_end_to_end(tmp_path, cli):
    recipe = write_recipe(tmp_path)
    result = run_cli("train", recipe, "train.max_steps=6")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    result = run_cli("generate", run, "--prompt", "the cat", "--stream", "--max-new-tokens", "5")
    assert result.returncode == 0 and result.stdout.startswith("the cat")
    result = cli("evaluate", run, "--data", tmp_path / "data" / "test.txt", "--json")  # in this process: faster
    assert result.returncode == 0 and json.loads(result.stdout)["perplexity"] > 1


def test_generate_methods_and_input_file(trained_run, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the cat\ntwo dogs\n", encoding="utf-8")
    assert main(["generate", str(trained_run), "--input", str(prompts), "--beam", "3", "--n-best", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].startswith("the cat") and lines[2].startswith("two dogs")
    assert main(["generate", str(trained_run), "--method", "sample", "--num-samples", "3", "--seed", "1",
                 "--top-p", "0.9", "--max-new-tokens", "8"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_validate_accepts_a_good_recipe_and_names_a_missing_file(tmp_path, capsys):
    recipe = write_recipe(tmp_path)
    assert main(["validate", str(recipe)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["validate", str(recipe), "data.valid=nowhere.txt"]) == 2
    assert "data file not found: nowhere.txt" in capsys.readouterr().err


@pytest.mark.parametrize("override", [
    "data.valid=nowhere.txt", "data.batching=stream model.kind=x", "train.precision=bf16", "train.device=cuda:99",
    "model.hidden_dim=0", "model.hidden_dim=2000000", "data.lowercase=maybe", "family=bert data.batching=stream",
])
def test_validate_rejects_what_train_rejects_with_the_same_sentence(tmp_path, capsys, override):
    """Regression: validate ran a copy of train's checks and accepted recipes that train then refused."""
    if override == "train.precision=bf16" and cpu_supports_bf16():
        pytest.skip("this CPU has bf16 kernels, so train accepts bf16 here")
    recipe = write_recipe(tmp_path)
    overrides = override.split()
    validated = main(["validate", str(recipe), *overrides])
    said = capsys.readouterr().err
    trained = main(["train", str(recipe), *overrides])
    assert (validated, trained) == (2, 2)
    assert said == capsys.readouterr().err and said.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("make, pattern", [
    (lambda p: p / "missing.yaml", "config file not found"),
    (lambda p: empty_file(p / "empty.yaml"), "is empty"),
    (lambda p: write_recipe(p, **{"train.lrate": 0.1}), "unknown config key 'train.lrate'; did you mean 'lr'?"),
    (lambda p: write_recipe(p, **{"train.lr": "fast"}), "'train.lr' must be a float, got a string 'fast'"),
    (lambda p: write_recipe(p, **{"data.train": str(p / "none.txt")}), "data file not found"),
])
def test_bad_recipes_are_one_line_errors(cli, tmp_path, make, pattern):
    assert_one_line_error(cli("train", make(tmp_path)), pattern)


def test_undecodable_and_empty_data_name_the_file(cli, tmp_path):
    recipe = write_recipe(tmp_path)
    bad = tmp_path / "data" / "train.txt"
    bad.write_bytes(b"the cat sees a dog .\n\xc3\x28 oops\n")
    assert_one_line_error(cli("train", recipe), "train.txt is not valid UTF-8: undecodable byte 0xc3 at byte offset 21")
    bad.write_text("\n\n", encoding="utf-8")
    assert_one_line_error(cli("train", recipe), "data file is empty")


def test_unusable_checkpoints_are_one_line_errors_and_stay_untouched(cli, trained_run, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    snapshot = {p.name: p.read_bytes() for p in broken.iterdir() if p.is_file()}
    assert_one_line_error(cli("generate", broken), "is truncated or corrupt")
    assert {p.name: p.read_bytes() for p in broken.iterdir() if p.is_file()} == snapshot

    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    config = json.loads((other / "config.json").read_text())
    config["family"] = "diffusion"
    (other / "config.json").write_text(json.dumps(config))
    assert_one_line_error(cli("generate", other), "unknown model family 'diffusion'")

    (other / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2}))
    assert_one_line_error(cli("evaluate", other, "--data", other / "config.json"), "config.json lacks vocab_size")
    (other / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert_one_line_error(cli("generate", other), "expected a Hugging Face GPT-2 or BERT config")
    (other / "config.json").write_text(json.dumps({"name": "something else"}))
    assert_one_line_error(cli("generate", other), "is not a genloom checkpoint config")
    assert_one_line_error(cli("generate", tmp_path / "nowhere"), "checkpoint not found")


def test_bad_options_are_one_line_errors(cli, trained_run):
    assert_one_line_error(cli("generate", trained_run, "--top-p", "2"), "top_p must lie in (0, 1]")
    assert_one_line_error(cli("generate", trained_run, "--temperature", "abc"), "invalid float value")
    assert_one_line_error(cli("train"), "the following arguments are required: config")


def test_every_command_documents_every_option():
    import argparse

    from genloom.cli import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == {"train", "generate", "translate", "summarize", "evaluate", "vae", "fill-mask",
                                    "export", "validate", "config", "redact", "bias", "serve", "explain", "reuse",
                                    "reuse-train", "demo", "profile", "quantize"}
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help, f"'genloom {name}' option {action.option_strings or action.dest} has no help"
        assert run_cli(name, "--help").returncode == 0


def test_overrides_may_follow_the_options(tmp_path, capsys):
    """Regression: `train cfg.yaml --resume key=value` was refused as unrecognized arguments."""
    recipe = write_recipe(tmp_path)
    assert main(["train", str(recipe), "train.max_steps=2", "train.eval_every=2"]) == 0
    assert main(["train", str(recipe), "--resume", "train.max_steps=4", "train.eval_every=2"]) == 0
    assert "steps 4" in capsys.readouterr().out
    assert main(["validate", str(recipe), "--resume", "train.max_steps=6"]) == 0
    with pytest.raises(SystemExit):
        main(["train", str(recipe), "--resume", "--frobnicate"])
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err


def test_config_lists_every_key_of_every_family(capsys):
    """Every key is discoverable without reading source: 'genloom config FAMILY' lists the shared sections and
    the family's model keys, each with type, default and meaning."""
    import dataclasses

    from genloom.config import DataConfig, TokenizerConfig, TrainConfig
    from genloom.models import FAMILIES

    for name, family in FAMILIES.items():
        assert main(["config", name]) == 0
        listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ") and
                  not line.startswith("      ")}
        expected = {f"{section}.{f.name}" for section, cls in (("data", DataConfig), ("tokenizer", TokenizerConfig),
                                                              ("train", TrainConfig), ("model", family.CONFIG))
                    for f in dataclasses.fields(cls)} | {"family", "out_dir", "init_from"}
        assert listed == expected, name
    assert main(["config"]) == 0
    assert "genloom config FAMILY" in capsys.readouterr().out


def test_decode_in_order_batches_by_length_and_writes_in_input_order_as_soon_as_it_can():
    from genloom.commands import decode_in_order

    inputs = ["a" * n for n in (3, 1, 4, 1, 5, 9, 2, 6, 5)]
    batches, written = [], []

    def decode(batch):
        batches.append([len(text) for text in batch])
        return [text.upper() for text in batch]

    decode_in_order(inputs, decode, 2, lambda i, out: written.append((i, out, len(batches))), "inputs")
    assert [out for _, out, _ in written] == [text.upper() for text in inputs]
    assert batches == [[9, 6], [5, 4], [3, 2], [1, 1], [5]]  # windows of 4 batches of 2, longest first
    # each output goes out as soon as every one before it is done
    assert [(i, after) for i, _, after in written] == [(0, 3)] + [(i, 4) for i in range(1, 8)] + [(8, 5)]


def test_translate_streams_lines_in_order_from_cased_input(lowercased_copier, tmp_path, capsys):
    import genloom

    sources = ["Word1 Word2.", "Word3 Word4 Word5 Word6.", "Word7.", "Word2 Word1 Word0."]
    (tmp_path / "in.txt").write_text("\n".join(sources) + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    assert main(["translate", str(lowercased_copier), "--input", str(tmp_path / "in.txt"), "--output", str(out),
                 "--batch-size", "2", "--device", "cpu"]) == 0
    expected = [r.text.strip() for r in genloom.load(lowercased_copier, device="cpu").transduce(
        [s.lower() for s in sources])]
    assert out.read_text(encoding="utf-8").splitlines() == expected
    assert not (tmp_path / "out.txt.partial").exists()
    assert main(["generate", str(lowercased_copier), "--input", str(tmp_path / "in.txt"), "--batch-size", "3",
                 "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[: len(s)] for line, s in zip(lines, sources)] == sources and "<unk>" not in "".join(lines)


def test_evaluate_states_its_decoding_and_reports_rouge_with_signatures(lowercased_copier, tmp_path, capsys):
    """Regression (newcomer report): evaluate did not say how it decoded, could not be told, and gave a
    summarizer BLEU and chrF only."""
    data = tmp_path / "pairs.tsv"
    data.write_text("Word1 Word2.\tword1 word2.\nWord3 Word1.\tword3 word1.\n", encoding="utf-8")
    assert main(["evaluate", str(lowercased_copier), "--data", str(data), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "decoding: beam search, 5 beams, length_penalty 1.0, max_new_tokens 100, <unk> suppressed" in out
    assert "BLEU" in out and "nrefs:1" in out and "chrF" in out and "ROUGE-L" in out and "rouge-score" in out
    assert main(["evaluate", str(lowercased_copier), "--data", str(data), "--beam", "2", "--length-penalty",
                 "0.6", "--allow-unk", "--device", "cpu"]) == 0
    assert "decoding: beam search, 2 beams, length_penalty 0.6, max_new_tokens 100, <unk> allowed" in \
        capsys.readouterr().out
    assert main(["evaluate", str(lowercased_copier), "--data", str(data), "--method", "greedy", "--json",
                 "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["decoding"].startswith("greedy search") and {"rouge1", "rouge2", "rougeL"} <= set(result)


def test_ban_words_and_bias_from_the_command_line(trained_run, tmp_path, capsys):
    assert main(["generate", str(trained_run), "--prompt", "the", "--max-new-tokens", "12"]) == 0
    word = capsys.readouterr().out.split()[1]  # the first word the model adds
    (tmp_path / "ban.txt").write_text(f"# banned\n{word}\n", encoding="utf-8")
    for option in (["--ban-words", word], ["--ban-words-file", str(tmp_path / "ban.txt")], ["--bias", f"{word}=-80"]):
        assert main(["generate", str(trained_run), "--prompt", "the", "--max-new-tokens", "12", *option]) == 0
        assert word not in capsys.readouterr().out.split()[1:]
