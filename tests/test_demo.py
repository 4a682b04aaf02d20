"""``genloom demo``, the main job of ``make demo``, end to end."""

from genloom.apps.demo import MARKER, run_demo
from genloom.errors import UserError

import pytest


def test_demo_trains_shows_and_leaves_its_files(tmp_path, capsys, cli):
    """The demo end to end on 4,000 of its 10,000 training dates and 300 of its 1,000 test dates (half the time;
    89 % exact greedy at seed 0)."""
    out_dir = tmp_path / "demo"
    figures = run_demo(out_dir, device="cpu", train_pairs=4000, test_pairs=300)
    printed = capsys.readouterr().out
    assert "exact match, greedy" in printed and "beam 1st" in printed and "from 4,000 generated examples" in printed
    assert figures["exact_match_greedy"] > 0.8  # a sanity floor; `genloom demo`'s 99.9 % is measured by running it
    for name in ("config.json", "model.safetensors", "tokenizer.json", "curves.png", "attention.png", MARKER):
        assert (out_dir / name).is_file(), name
    explained = cli("explain", out_dir, "--source", "5 May 1970", "--methods", "integrated_gradients,occlusion",
                    "--steps", "8", "--html", tmp_path / "why.html")  # the README's explain line, on this checkpoint
    assert explained.returncode == 0, explained.stderr
    assert "integrated_gradients" in explained.stdout and (tmp_path / "why.html").stat().st_size > 2000


def test_demo_never_overwrites_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(UserError, match="is not a demo run"):
        run_demo(tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "precious"
