"""Every mistake a user can make on the command line is one clear line and exit 2, and destroys nothing.

One table of bad inputs across every command. Each case runs ``genloom`` in-process (so over a hundred of them
stay fast) and must: exit with status 2, print exactly one line on stderr that contains the expected words,
raise no exception past ``main`` (no traceback), and leave every file that existed before byte-identical.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from genloom.cli import main
from genloom.device import cpu_supports_bf16
from tests.conftest import tiny_recipe

TRUNCATE = "truncated"  # a placeholder, turned into a copy of the trained run with a damaged file


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, trained_run):
    """A folder of inputs: a good recipe, its data, broken files of every kind, and damaged checkpoints."""
    root = tmp_path_factory.mktemp("bad_inputs")
    recipe = tiny_recipe(root)
    recipe["out_dir"] = str(root / "new_run")
    (root / "recipe.yaml").write_text("# a test recipe\n" + yaml.safe_dump(recipe), encoding="utf-8")
    (root / "empty.txt").write_text("", encoding="utf-8")
    (root / "blank.txt").write_text("\n  \n", encoding="utf-8")
    (root / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    (root / "list.yaml").write_text("- a\n- b\n", encoding="utf-8")
    (root / "broken.yaml").write_text("family: [rnnlm\n", encoding="utf-8")
    (root / "a_file").write_text("not a folder", encoding="utf-8")
    (root / "folder").mkdir()
    (root / "foreign").mkdir()
    (root / "foreign" / "model.safetensors").write_bytes(b"someone else's weights")
    (root / "full").mkdir()
    (root / "full" / "keep.txt").write_text("keep", encoding="utf-8")
    (root / "prompts.txt").write_text("the cat\n", encoding="utf-8")
    (root / "no_group.txt").write_text("the cat sees a dog\n", encoding="utf-8")
    (root / "templates.txt").write_text("the {group} sees a dog\n", encoding="utf-8")
    (root / "not_crows.csv").write_text("sent_more,sent_less\na,b\n", encoding="utf-8")
    (root / "long.txt").write_text("the cat " * 400 + "\n", encoding="utf-8")
    damaged = {
        "weights": lambda run: (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:64]),
        "config": lambda run: (run / "config.json").write_text("{not json", encoding="utf-8"),
        "family": lambda run: (run / "config.json").write_text(
            json.dumps({**json.loads((run / "config.json").read_text()), "family": "diffusion"}), encoding="utf-8"),
        "tokenizer": lambda run: (run / "tokenizer.json").unlink(),
        "latest": lambda run: (run / "state" / "latest.json").write_text('{"path": "../../elsewhere"}'),
        "nan": lambda run: _poison(run),
        "vocabulary": lambda run: _other_tokenizer(run),
    }
    for name, damage in damaged.items():
        shutil.copytree(trained_run, root / f"ckpt_{name}")
        damage(root / f"ckpt_{name}")
    shutil.copytree(trained_run, root / "lm")
    return root


def _other_tokenizer(run: Path) -> None:
    from genloom.data.tokenizers import Tokenizer

    other = Tokenizer.train("char", ["a different corpus altogether"], vocab_size=100)
    other.save(run)


def _poison(run: Path) -> None:
    from genloom.checkpoint import load_tensors, save_tensors

    tensors = load_tensors(run / "model.safetensors")
    name = next(iter(tensors))
    tensors[name][0] = float("nan")
    save_tensors(run / "model.safetensors", tensors)


R, LM = "{root}/recipe.yaml", "{root}/lm"
CASES = [
    # the command line itself
    (["frobnicate"], "invalid choice"),
    (["train"], "the following arguments are required"),
    (["generate"], "the following arguments are required"),
    (["generate", LM, "--max-new-tokens", "many"], "invalid int value"),
    (["generate", LM, "--method", "telepathy"], "invalid choice"),
    (["vae"], "the following arguments are required"),
    (["vae", "interpolate", LM, "only one"], "the following arguments are required"),
    (["fill-mask", LM], "the following arguments are required"),
    (["train", R, "--no-such-flag"], "unrecognized arguments"),
    # recipes: files
    (["train", "{root}/missing.yaml"], "config file not found"),
    (["train", "{root}/empty.txt"], "is empty"),
    (["train", "{root}/folder"], "folder"),
    (["train", "{root}/latin1.txt"], "UTF-8"),
    (["train", "{root}/broken.yaml"], "YAML"),
    (["train", "{root}/list.yaml"], "mapping"),
    # recipes: keys, types and ranges
    (["train", R, "train.lrate=0.1"], "unknown config key 'train.lrate'"),
    (["train", R, "colour=blue"], "unknown config key"),
    (["train", R, "model.hidden_size=8"], "unknown config key 'model.hidden_size'"),
    (["train", R, "train.lr=fast"], "'train.lr' must be a float"),
    (["train", R, "train.lr=.nan"], "'train.lr' must be a finite number"),
    (["train", R, "train.lr=.inf"], "'train.lr' must be a finite number"),
    (["train", R, "train.lr=-1"], "'train.lr' must be positive"),
    (["train", R, "train.lr=0"], "'train.lr' must be positive"),
    (["train", R, "train.max_steps=0"], "'train.max_steps' must be at least 1"),
    (["train", R, "train.max_steps=-5"], "'train.max_steps' must be at least 1"),
    (["train", R, "train.epochs=0"], "'train.epochs' must be at least 1"),
    (["train", R, "train.max_steps=null"], "'train.epochs' or 'train.max_steps'"),
    (["train", R, "train.eval_every=-1"], "'train.eval_every' must be at least 1"),
    (["train", R, "train.eval_every=0"], "'train.eval_every' must be at least 1"),
    (["train", R, "train.warmup_steps=-10"], "'train.warmup_steps' must be at least 0"),
    (["train", R, "train.patience=-1"], "'train.patience' must be at least 0"),
    (["train", R, "train.batch_size=0"], "'train.batch_size' must be at least 1"),
    (["train", R, "train.batch_size=2.5"], "must be a int"),
    (["train", R, "train.batch_size=true"], "must be a int"),
    (["train", R, "train.grad_clip=0"], "'train.grad_clip' must be positive"),
    (["train", R, "train.grad_clip=-1"], "'train.grad_clip' must be positive"),
    (["train", R, "train.weight_decay=-0.1"], "'train.weight_decay' must be at least 0"),
    (["train", R, "train.momentum=1.5"], "'train.momentum' must lie in"),
    (["train", R, "train.betas=[0.9]"], "'train.betas' must be two numbers"),
    (["train", R, "train.lr_decay=2"], "'train.lr_decay' must lie in"),
    (["train", R, "train.min_lr_ratio=2"], "'train.min_lr_ratio' must lie in"),
    (["train", R, "train.grad_accum=0"], "'train.grad_accum' must be at least 1"),
    (["train", R, "train.schedule=exponential"], "'train.schedule' must be one of"),
    (["train", R, "train.optimizer=lion"], "'train.optimizer' must be one of"),
    (["train", R, "train.precision=fp8"], "'train.precision' must be one of"),
    (["train", R, "train.device=tpu"], "unknown device"),
    (["train", R, "train.device=cuda:99"], "no CUDA GPU"),
    (["train", R, "family=diffusion"], "unknown model family 'diffusion'"),
    (["train", R, "family="], "must name a model 'family'"),
    (["train", R, "model.hidden_dim=0"], "'model.hidden_dim' must be at least 1"),
    (["train", R, "model.num_layers=-1"], "'model.num_layers' must be at least 1"),
    (["train", R, "model.dropout=1.5"], "'model.dropout' must lie in"),
    (["train", R, "model.hidden_dim=3000000"], "GiB"),
    (["train", R, "tokenizer.kind=sentencepiece"], "'tokenizer.kind' must be one of"),
    (["train", R, "tokenizer.vocab_size=abc"], "must be a int"),
    (["train", R, "tokenizer.path={root}/nowhere.json"], "tokenizer file not found"),
    (["train", R, "tokenizer.path={root}/latin1.txt"], "not a valid tokenizer file"),
    (["train", R, "tokenizer.kind=char", "tokenizer.split=whitespace"], "applies to the word tokenizer only"),
    (["train", R, "train.max_time=soon"], "must be a duration such as 90s"),
    (["train", R, "train.progress_every=-1"], "'train.progress_every' must be at least 0"),
    (["config", "diffusion"], "unknown model family 'diffusion'"),
    (["bias", LM, "--templates", "{root}/no_group.txt", "--groups", "cat,dog"], "has no {{group}} to fill"),
    (["bias", LM, "--templates", "{root}/templates.txt", "--groups", "cat"], "at least two groups"),
    (["bias", LM, "--templates", "{root}/templates.txt"], "at least two groups"),
    (["bias", LM, "--probe", "crows-pairs", "--data", "{root}/not_crows.csv"], "is not a CrowS-Pairs CSV"),
    (["bias", LM, "--probe", "crows-pairs", "--data", "{root}/missing.csv"], "data file not found"),
    (["bias", LM, "--probe", "crows-pairs", "--data", "{root}/empty.txt"], "data file is empty"),
    (["bias", LM], "one of the arguments --probe --templates is required"),
    (["redact", "{root}/latin1.txt"], "is not valid UTF-8"),
    (["redact", "--kinds", "FAX", "{root}/prompts.txt"], "unknown kind of personal data 'FAX'"),
    (["generate", LM, "--safety", "shout"], "invalid choice"),
    (["train", R, "data.format=xml"], "'data.format' must be one of"),
    (["train", R, "data.batching=random"], "'data.batching' must be one of"),
    (["train", R, "data.valid_fraction=1.5"], "'data.valid_fraction' must lie in"),
    (["train", R, "data.valid_fraction=0.1"], "either data.valid or data.valid_fraction"),
    (["train", R, "data.max_length=0"], "'data.max_length' must be at least 1"),
    (["train", R, "data.train=null"], "'data.train'"),
    (["train", R, "data.train={root}/nowhere.txt"], "data file not found"),
    (["train", R, "data.train={root}/empty.txt"], "empty"),
    (["train", R, "data.train={root}/blank.txt"], "empty"),
    (["train", R, "data.train={root}/latin1.txt"], "UTF-8"),
    (["train", R, "data.valid={root}/nowhere.txt"], "data file not found"),
    (["train", R, "data.valid={root}/latin1.txt"], "UTF-8"),
    (["train", R, "family=vae", "data.batching=stream", "model={{}}"], "data.batching: sentences"),
    (["train", R, "family=bert", "data.batching=stream", "model={{}}"], "data.batching: sentences"),
    (["train", R, "train.lr"], "key=value"),
    (["train", R, "init_from={root}/nowhere"], "checkpoint not found"),
    (["train", R, "init_from={root}/a_file"], "must be a directory"),
    # run folders
    (["train", R, "out_dir={root}/a_file"], "is a file"),
    (["train", R, "out_dir={root}/foreign"], "genloom did not write"),
    (["train", R, f"out_dir={LM}"], "already holds a checkpoint"),
    (["train", R, "out_dir={root}/nowhere_run", "--resume"], "holds no checkpoint"),
    (["train", R, "out_dir={root}/ckpt_latest", "--resume"], "settings differ from this config's"),
    # validate runs the same checks
    (["validate", "{root}/missing.yaml"], "config file not found"),
    (["validate", R, "train.lr=.nan"], "'train.lr' must be a finite number"),
    (["validate", R, "train.max_steps=0"], "'train.max_steps' must be at least 1"),
    (["validate", R, "data.train={root}/latin1.txt"], "UTF-8"),
    (["validate", R, "data.valid={root}/empty.txt"], "empty"),
    (["validate", R, "model.hidden_dim=3000000"], "GiB"),
    (["validate", R, "out_dir={root}/foreign"], "genloom did not write"),
    (["validate", R, "train.device=cuda:99"], "no CUDA GPU"),
    # checkpoints
    (["generate", "{root}/nowhere"], "checkpoint not found"),
    (["generate", "{root}/a_file"], "must be a directory"),
    (["generate", "{root}/folder"], "config.json"),
    (["generate", "{root}/ckpt_weights"], "truncated or corrupt"),
    (["generate", "{root}/ckpt_config"], "truncated or corrupt"),
    (["generate", "{root}/ckpt_family"], "unknown model family 'diffusion'"),
    (["generate", "{root}/ckpt_tokenizer"], "tokenizer file not found"),
    (["generate", "{root}/ckpt_nan"], "NaN or infinite"),
    (["generate", "{root}/ckpt_vocabulary"], "tokenizer.json belongs to another model"),
    (["evaluate", "{root}/ckpt_weights", "--data", "{root}/prompts.txt"], "truncated or corrupt"),
    (["export", "{root}/ckpt_config", "{root}/export_new"], "truncated or corrupt"),
    # decoding options
    (["generate", LM, "--max-new-tokens", "0"], "max_new_tokens must be at least 1"),
    (["generate", LM, "--ban-words", "the zebra"], "has no token for 'zebra'"),
    (["generate", LM, "--ban-words", "  "], "ban_words holds an empty phrase"),
    (["generate", LM, "--ban-words-file", "{root}/blank.txt"], "data file is empty"),
    (["generate", LM, "--ban-words-file", "{root}/missing.txt"], "data file not found"),
    (["generate", LM, "--bias", "the cat"], "must look like PHRASE=VALUE"),
    (["generate", LM, "--bias", "the=lots"], "must look like PHRASE=VALUE"),
    (["generate", LM, "--bias", "=2"], "bias needs a non-empty phrase"),
    (["generate", LM, "--min-new-tokens", "60"], "min_new_tokens must lie in"),
    (["generate", LM, "--min-new-tokens", "-1"], "min_new_tokens must lie in"),
    (["generate", LM, "--method", "sample", "--temperature", "0"], "temperature must be positive"),
    (["generate", LM, "--temperature", "-1"], "temperature must be positive"),
    (["generate", LM, "--top-p", "0"], "top_p must lie in"),
    (["generate", LM, "--top-p", "1.5"], "top_p must lie in"),
    (["generate", LM, "--top-k", "-3"], "top_k must be"),
    (["generate", LM, "--repetition-penalty", "0"], "repetition_penalty must be positive"),
    (["generate", LM, "--no-repeat-ngram", "-1"], "no_repeat_ngram_size must be"),
    (["generate", LM, "--beam", "0"], "num_beams must be at least 1"),
    (["generate", LM, "--beam", "-2"], "num_beams must be at least 1"),
    (["generate", LM, "--beam", "2", "--n-best", "3"], "num_return_sequences must lie in"),
    (["generate", LM, "--n-best", "2"], "num_return_sequences must lie in"),
    (["generate", LM, "--coverage-penalty", "-1"], "coverage_penalty must be"),
    (["generate", LM, "--num-samples", "0"], "--num-samples must be at least 1"),
    (["generate", LM, "--device", "cuda:99"], "no CUDA GPU"),
    # inputs
    (["generate", LM, "--input", "{root}/nowhere.txt"], "not found"),
    (["generate", LM, "--input", "{root}/empty.txt"], "empty"),
    (["generate", LM, "--input", "{root}/latin1.txt"], "UTF-8"),
    (["generate", LM, "--input", "{root}/folder"], "folder"),
    (["evaluate", LM, "--data", "{root}/nowhere.txt"], "not found"),
    (["evaluate", LM, "--data", "{root}/empty.txt"], "empty"),
    (["evaluate", LM, "--data", "{root}/latin1.txt"], "UTF-8"),
    (["evaluate", LM, "--data", "{root}/blank.txt"], "empty"),
    # commands on the wrong family
    (["translate", LM], "needs a seq2seq checkpoint"),
    (["summarize", LM], "needs a seq2seq checkpoint"),
    (["translate", LM, "--batch-size", "0"], "--batch-size must be at least 1"),
    (["translate", LM, "--output", "{root}/folder"], "--output {root}/folder is a folder"),
    (["translate", LM, "--output", "{root}/a_file/out.txt"], "is a file, not a folder"),
    (["translate", LM, "--attention-plot", "{root}/folder"], "--attention-plot {root}/folder is a folder"),
    (["fill-mask", LM, "the [MASK] sat"], "needs a masked LM"),
    (["vae", "sample", LM], "has no latent space"),
    (["vae", "reconstruct", LM, "--input", "{root}/prompts.txt"], "has no latent space"),
    (["vae", "interpolate", LM, "a cat", "a dog"], "has no latent space"),
    (["vae", "plot", LM, "--data", "{root}/prompts.txt"], "has no latent space"),
    (["vae", "plot", LM, "--data", "{root}/prompts.txt", "--out", "{root}/folder"], "has no latent space"),
    (["export", LM, "{root}/export_new"], "only GPT checkpoints export"),
    (["export", LM, "{root}/a_file"], "is a file"),
    (["export", LM, "{root}/a_file/sub"], "is a file, not a folder"),
    (["export", LM, "{root}/full"], "only GPT checkpoints export"),
    # the demo never overwrites what it did not write
    (["demo", "--out-dir", "{root}/full"], "is not a demo run"),
    (["demo", "--out-dir", "{root}/a_file"], "is not a demo run"),
]
if not cpu_supports_bf16():
    CASES.append((["train", R, "train.precision=bf16"], "no bf16 kernels"))


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None), so a folder left behind shows too."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def test_the_table_is_large_and_covers_every_command():
    commands = {argv[0] for argv, _ in CASES}
    assert len(CASES) >= 100
    assert commands >= {"train", "validate", "generate", "translate", "summarize", "evaluate", "vae", "fill-mask",
                        "export", "demo"}


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a)[:70] for a, _ in CASES])
def test_a_bad_input_is_one_line_exit_2_and_changes_nothing(workspace, capsys, argv, message):
    root = str(workspace)
    argv = [a.format(root=root) for a in argv]
    before = snapshot(workspace)
    try:
        status = main(argv)
    except SystemExit as exit:  # argparse's own usage errors
        status = exit.code
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert message.format(root=root) in lines[0], lines[0]
    assert snapshot(workspace) == before
