"""Personal-data redaction: every kind found, look-alikes left alone, streams never leak a fragment."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genloom
from genloom.cli import main
from genloom.errors import UserError
from genloom.safety import StreamRedactor, find_personal_data, redact
from genloom.safety.redact import card_issuer, iban_valid, luhn_valid
from tests.conftest import parrot

TEXT = ("Write to ann.lee@example.co.uk or call +1 (212) 555-0187 / 020 7946 0958 (London) / 01 42 68 53 00 (Paris). "
        "Pay with 4111 1111 1111 1111 or into GB82 WEST 1234 5698 7654 32. Logs at https://example.org/logs?id=7, "
        "from 192.168.1.20 and 2001:db8::1. She was born on 12 March 1985.")


def test_every_kind_is_found_with_its_exact_span():
    found = [(f.kind, TEXT[f.start:f.end]) for f in find_personal_data(TEXT)]
    assert found == [("EMAIL", "ann.lee@example.co.uk"), ("PHONE", "+1 (212) 555-0187"), ("PHONE", "020 7946 0958"),
                     ("PHONE", "01 42 68 53 00"), ("CARD", "4111 1111 1111 1111"),
                     ("IBAN", "GB82 WEST 1234 5698 7654 32"), ("URL", "https://example.org/logs?id=7"),
                     ("IP", "192.168.1.20"), ("IP", "2001:db8::1"), ("DOB", "12 March 1985")]


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112",  # fails the Luhn check
    "IBAN GB82 WEST 1234 5698 7654 33",  # fails mod 97
    "release v1.2.3.4 and version 2.0.1.7",  # version strings
    "ISBN 978-3-16-148410-0",
    "order 4831229017, invoice no. 2125550123, ticket #2125550111",
    "the meeting is on 12 March 2024",  # a date, not a birth date
    "999.1.1.1 is no address; 10:30:45 is a time",
    "user@localhost and a@b",  # no domain
])
def test_look_alikes_are_left_alone(text):
    assert find_personal_data(text) == [] and redact(text) == text


def test_the_checksums_on_hand_made_numbers():
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert card_issuer("4111111111111111") and not card_issuer("9111111111111111")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE89 3704 0044 0532 0130 01")
    assert not iban_valid("DE89 3704 0044 0532 0130")  # Germany's IBANs are 22 characters


def test_styles_and_kinds():
    assert redact("ann@example.org, 192.168.0.1", style="mask") == "***@*******.***, ***.***.*.*"
    assert redact("ann@example.org, 192.168.0.1", kinds=("IP",)) == "ann@example.org, <IP>"
    with pytest.raises(UserError, match="unknown redaction style 'blur'"):
        redact("x", style="blur")


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(1, len(TEXT) - 1), max_size=40), hold=st.sampled_from([32, 64, 96]))
def test_a_stream_redacts_as_the_whole_text_and_never_shows_a_fragment(cuts, hold):
    bounds = sorted(set(cuts))
    pieces = [TEXT[a:b] for a, b in zip([0, *bounds], [*bounds, len(TEXT)])]
    stream = StreamRedactor(hold=hold)
    shown = [stream.feed(piece) for piece in pieces] + [stream.finish()]
    assert "".join(shown) == redact(TEXT)
    for secret in ("ann.lee", "555-0187", "4111", "WEST", "192.168", "db8", "1985"):
        assert not any(secret in piece for piece in shown)


@pytest.fixture(scope="module")
def chatty_lm(tmp_path_factory):
    """A character LM that has learnt to continue "contact:" with an e-mail address and a phone number."""
    return parrot(tmp_path_factory.mktemp("chatty"), "contact: ann@example.org or +44 20 7946 0958")


def test_redacted_generation_streams_no_fragment_of_personal_data(chatty_lm):
    lm = genloom.load(chatty_lm, device="cpu")
    assert "ann@example.org" in "".join(lm.generate("contact:", max_new_tokens=40))  # what it would say
    pieces = list(lm.generate("contact:", max_new_tokens=40, redact="placeholder"))
    assert "".join(pieces).strip() == "<EMAIL> or <PHONE>"
    assert not any(c in piece for piece in pieces for c in "@0123456789")
    assert lm.complete(["contact:"], max_new_tokens=40, redact="mask")[0][0].strip() == "***@*******.*** or +** ** **** ****"


def test_the_redact_command_and_the_redact_option(chatty_lm, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("mail ann@example.org\n", encoding="utf-8")
    assert main(["redact", str(tmp_path / "in.txt")]) == 0
    assert capsys.readouterr().out == "mail <EMAIL>\n"
    assert main(["generate", str(chatty_lm), "--prompt", "bob@example.net contact:", "--redact", "--stream",
                 "--max-new-tokens", "40", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<EMAIL> contact:") and "@" not in out


def test_a_translation_model_never_reads_the_personal_data_of_its_source(lowercased_copier):
    model = genloom.load(lowercased_copier, device="cpu")
    (result,) = model.transduce(["Word1 ann@example.org Word2."], redact="placeholder")
    read = model.tokenizer.encode(model.prepare("Word1 <EMAIL> Word2."))  # what the encoder must have read
    assert result.source_tokens == [model.tokenizer.id_to_token(i) for i in read]
    assert "@" not in result.text
