"""Round trips for every tokenizer kind (property tests), special ids, and save/load."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import json

from genloom.data.tokenizers import Tokenizer
from genloom.errors import UserError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


def plain(text: str) -> bool:
    """No special-token text inside: "<bos>" in the input is read as the special token (a test below)."""
    return not any(special in text for special in SPECIALS)


# Words from several scripts; no special-token text.
WORD = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S")), min_size=1, max_size=8).filter(
    plain)
TEXTS = st.lists(st.lists(WORD, min_size=1, max_size=6).map(" ".join), min_size=1, max_size=5)


@SETTINGS
@given(texts=TEXTS)
def test_whitespace_word_round_trip(texts):
    tok = Tokenizer.train("word", texts, vocab_size=10_000, split="whitespace")
    for text in texts:
        assert tok.decode(tok.encode(text)) == text


@SETTINGS
@given(texts=TEXTS)
def test_punctuation_word_round_trip_keeps_every_character(texts):
    """The punctuation split only adds spaces: the decoded text, spaces aside, is the text; its words are the
    text's pieces (``spans``)."""
    tok = Tokenizer.train("word", texts, vocab_size=10_000)
    for text in texts:
        decoded = tok.decode(tok.encode(text))
        assert "".join(decoded.split()) == "".join(text.split())
        assert decoded.split() == tok.spans(text)


def test_punctuation_split_sets_punctuation_apart_and_keeps_words_whole():
    """The newcomer's bug: with a whitespace split "smith." never matched "smith", and "#person1#:" never matched
    "#person1#", so a summarizer trained on dialogues output mostly <unk>."""
    tok = Tokenizer.train("word", ["#Person1#: Mr. Smith's e-mail, don't lose it; it costs 3.50 or 1,000 yen."], 100)
    assert tok.spans("#Person1#: Mr. Smith's e-mail, don't lose 3.50 (1,000 yen).") == [
        "#", "Person1", "#", ":", "Mr", ".", "Smith's", "e-mail", ",", "don't", "lose", "3.50", "(", "1,000", "yen",
        ")", "."]
    assert tok.encode("#Person1#") == tok.encode("#Person1#:")[:3]
    assert tok.unk_id not in tok.encode("lose it, Mr. yen.")
    whitespace = Tokenizer.train("word", ["Mr. Smith."], 100, split="whitespace")
    assert whitespace.spans("Mr. Smith.") == ["Mr.", "Smith."]


@pytest.mark.parametrize("kind", ["char", "word", "bpe", "unigram"])
def test_saved_tokenizer_loads_in_hugging_face_tokenizers(kind, tmp_path):
    """The README promises tokenizer.json loads in Hugging Face ``tokenizers``: genloom_* keys inside it made
    ``Tokenizer.from_file`` fail; genloom's settings now live in tokenizer_config.json beside it."""
    from tokenizers import Tokenizer as HFTokenizer

    texts = ["the cat sat on the mat.", "a dog ran!"]
    tok = Tokenizer.train(kind, texts, vocab_size=120, mask_token=kind == "word")
    tok.save(tmp_path)
    theirs = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert theirs.encode(texts[0], add_special_tokens=False).ids == tok.encode(texts[0])
    settings = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert settings["genloom_kind"] == kind and settings["eos_token"] == "<eos>" and settings["pad_token"] == "<pad>"
    again = Tokenizer.load(tmp_path)
    assert (again.kind, again.specials, again.mask_id) == (tok.kind, tok.specials, tok.mask_id)


def test_a_tokenizer_json_with_genloom_keys_inside_still_loads(tmp_path):
    """Checkpoints written before tokenizer_config.json kept genloom's kind and roles in tokenizer.json."""
    tok = Tokenizer.train("word", ["a b c"], vocab_size=50, mask_token=True)
    data = json.loads(tok.hf.to_str())
    data.update(genloom_kind="word", genloom_specials=tok.specials)
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    again = Tokenizer.load(tmp_path / "tokenizer.json")
    assert (again.kind, again.mask_id, again.encode("a c")) == ("word", tok.mask_id, tok.encode("a c"))


@SETTINGS
@given(texts=st.lists(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r"), min_size=1,
                              max_size=30).filter(plain), min_size=1, max_size=5))
def test_char_round_trip_keeps_every_character(texts):
    tok = Tokenizer.train("char", texts, vocab_size=10_000)
    for text in texts:
        assert tok.decode(tok.encode(text)) == text


@SETTINGS
@given(texts=st.lists(st.text(min_size=1, max_size=40).filter(plain), min_size=1, max_size=5),
       probe=st.text(max_size=40).filter(plain))
def test_bpe_round_trip_is_exact_even_for_unseen_text(texts, probe):
    tok = Tokenizer.train("bpe", texts, vocab_size=300)
    for text in texts + [probe]:
        assert tok.decode(tok.encode(text)) == text


SPACED = st.tuples(st.text(" ", max_size=3), st.lists(WORD, min_size=1, max_size=6).map("  ".join),
                   st.text(" ", max_size=2)).map("".join)


@SETTINGS
@given(texts=st.lists(SPACED, min_size=1, max_size=5).filter(lambda texts: not any("\u2581" in t for t in texts)))
def test_unigram_round_trip_keeps_leading_and_repeated_spaces(texts):
    # Texts without "▁" (U+2581): the unigram tokenizer reads it as a space (next test).
    tok = Tokenizer.train("unigram", texts, vocab_size=200)
    for text in texts:
        assert tok.decode(tok.encode(text)) == text


def test_unigram_keeps_a_leading_space():
    """Regression: " lead" decoded as "lead" (the dummy "▁" was only added when no space led the text)."""
    tok = Tokenizer.train("unigram", ["hello world", " lead"], vocab_size=40)
    assert [tok.decode(tok.encode(t)) for t in (" lead", "  held", "hello")] == [" lead", "  held", "hello"]


def test_unigram_reads_the_metaspace_character_as_a_space():
    """A known limitation, kept on purpose: SentencePiece's "▁" (U+2581) marks spaces inside pieces, so a literal
    "▁" cannot be told from a space; it is read as one (README), never turned into <unk>."""
    tok = Tokenizer.train("unigram", ["a\u2581b c", "q\u2581"], vocab_size=60)
    assert tok.decode(tok.encode("a\u2581b c")) == "a b c"
    assert tok.unk_id not in tok.encode("q\u2581")


@pytest.mark.parametrize("kind", ["char", "word", "bpe", "unigram"])
def test_special_token_text_in_the_input_is_read_as_the_special_token(kind):
    tok = Tokenizer.train(kind, ["the cat sat on the mat", "a dog ran"], vocab_size=120)
    assert tok.eos_id in tok.encode("a <eos> dog")


@pytest.mark.parametrize("kind", ["char", "word", "bpe", "unigram"])
def test_special_ids_are_fixed_and_save_load_keeps_everything(kind):
    texts = ["the cat sat on the mat", "a dog ran"]
    tok = Tokenizer.train(kind, texts, vocab_size=120)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    again = Tokenizer.from_json(tok.hf.to_str(), settings=tok.settings())
    assert again.kind == kind
    assert again.encode(texts[0]) == tok.encode(texts[0])
    assert tok.decode([tok.bos_id] + tok.encode("a dog") + [tok.eos_id, tok.pad_id]) == "a dog"


def test_word_frequency_cutoff_and_max_size():
    texts = ["a a a b b c"]
    assert Tokenizer.train("word", texts, vocab_size=100, min_frequency=2).decode(
        Tokenizer.train("word", texts, vocab_size=100, min_frequency=2).encode("a b c")) == "a b <unk>"
    small = Tokenizer.train("word", texts, vocab_size=5)  # four specials + the most frequent word
    assert small.vocab_size == 5 and small.decode(small.encode("a b")) == "a <unk>"


def test_bad_kind_and_corrupt_file():
    with pytest.raises(UserError, match="unknown tokenizer kind 'wordpiece'"):
        Tokenizer.train("wordpiece", ["x"])
    with pytest.raises(UserError, match="not a valid tokenizer file"):
        Tokenizer.from_json('{"model": ')
