"""The offensive-language screen: obfuscations caught, innocent words left alone, the three modes, streams."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genloom
from genloom.cli import main
from genloom.errors import UserError
from genloom.safety import BLOCKED, StreamScreen, offensive_spans, screen
from tests.conftest import parrot


@pytest.mark.parametrize("text, found", [
    ("what a shit day", "shit"), ("this sh1t again", "sh1t"), ("bullsh!t", "bullsh!t"), ("s.h.i.t happens", "s.h.i.t"),
    ("shiiiit", "shiiiit"), ("f*ck it", "f*ck"), ("A$$HOLE", "A$$HOLE"), ("a load of bull shit", "bull shit"),
])
def test_obfuscated_words_are_found(text, found):
    assert [text[f.start:f.end] for f in offensive_spans(text)] == [found]


@pytest.mark.parametrize("text", ["Scunthorpe assessment in Essex", "the cockpit and the class", "shiitake",
                                  "a gay couple and a fat cat, oh my god", "the bass player passed"])
def test_innocent_text_is_left_alone(text):
    assert offensive_spans(text) == []


def test_the_three_modes():
    assert screen("what a shit day", "flag") == ("what a shit day", ["shit"])
    assert screen("what a shit day", "mask") == ("what a **** day", ["shit"])
    assert screen("what a shit day", "block") == (BLOCKED, ["shit"])
    assert screen("a fine day", "block") == ("a fine day", [])
    with pytest.raises(UserError, match="unknown safety mode 'hide'"):
        screen("x", "hide")


TEXT = "well this shit is sh1t, and f.u.c.k that bullshit, said the bastard politely"


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(1, len(TEXT) - 1), max_size=30))
def test_a_masked_stream_never_shows_part_of_a_match(cuts):
    bounds = sorted(set(cuts))
    pieces = [TEXT[a:b] for a, b in zip([0, *bounds], [*bounds, len(TEXT)])]
    stream = StreamScreen("mask")
    shown = [stream.feed(piece) for piece in pieces] + [stream.finish()]
    assert "".join(shown) == screen(TEXT, "mask")[0]
    assert not any(fragment in piece for piece in shown for fragment in ("sh", "f.u", "bast"))
    blocked = StreamScreen("block")
    assert [blocked.feed(piece) for piece in pieces] == [""] * len(pieces) and blocked.finish() == BLOCKED


@pytest.fixture(scope="module")
def rude_lm(tmp_path_factory):
    return parrot(tmp_path_factory.mktemp("rude"), "what a shit day it was")


def test_safety_on_generated_text_and_on_the_command_line(rude_lm, capsys):
    lm = genloom.load(rude_lm, device="cpu")
    assert "shit" in "".join(lm.generate("what a", max_new_tokens=12))
    assert "".join(lm.generate("what a", max_new_tokens=12, safety="mask")).startswith(" **** day")
    assert lm.complete(["what a"], max_new_tokens=12, safety="block") == [[BLOCKED]]
    assert main(["generate", str(rude_lm), "--prompt", "what a", "--max-new-tokens", "12", "--safety", "flag",
                 "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "shit" in captured.out and "flagged (offensive language): shit" in captured.err
