"""Personal-data redaction: e-mail addresses, phone numbers, payment cards, IBANs, IP addresses, URLs and dates
of birth, found in text and replaced by typed placeholders (``<EMAIL>``) or masks.

Each kind is a pattern that proposes candidates and a check that keeps only real ones: a payment card must
pass the Luhn check and start like a card (an issuer prefix), an IBAN the ISO 13616 mod-97 check with its
country's length, an IP address must parse (``ipaddress``), a phone number must be a valid number for its
country (Google's libphonenumber metadata through ``phonenumbers``: international ``+CC`` numbers anywhere,
national formats for ``PHONE_REGIONS``), a date counts as a date of birth only after words that say so.
``StreamRedactor`` redacts text that arrives in pieces without ever letting out part of a match.
"""

from __future__ import annotations

import ipaddress
import re

import phonenumbers

from genloom.errors import UserError
from genloom.safety.stream import Finding, StreamFilter, replace_spans

KINDS = ("EMAIL", "URL", "IBAN", "CARD", "IP", "DOB", "PHONE")  # earlier kinds win overlaps
STYLES = ("placeholder", "mask")
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "AU", "BR")  # national formats recognised

# IBAN lengths by country (ISO 13616 registry, the countries most often met).
IBAN_LENGTHS = {"AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
                "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27,
                "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
                "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26, "AE": 23, "BR": 29, "IL": 23}

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![\w-])")
_URL = re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"']+", re.IGNORECASE)
_CARD = re.compile(r"(?<![\d.-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")
_VERSION_BEFORE = re.compile(r"(?:\bv|version\s*|release\s*)$", re.IGNORECASE)
_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
          r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_DATE = re.compile(r"\b(?:\d{1,2}[./-]\d{1,2}[./-](?:19|20)?\d{2}|(?:19|20)\d{2}-\d{1,2}-\d{1,2}|"
                   rf"\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+(?:19|20)\d{{2}}|"
                   rf"{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:19|20)\d{{2}})\b", re.IGNORECASE)
_BIRTH_CONTEXT = re.compile(r"(?:\bborn\b|\bbirth|\bd\.?o\.?b\b|\bbirthday\b|\bnée?\b|\bgeboren\b)[^.\n]{0,25}$",
                            re.IGNORECASE)
# Numbers that phone metadata accepts but whose label says what they are: order, invoice and account numbers.
_CARD_SHAPED = re.compile(r"\d{4}(?:[ -]\d{4}){3}")
_PHONE_CONTEXT = re.compile(r"(?:\bcall|\bphone|\btel\b|\btel\.|\bmobile|\bcell|\bnumber|\breach|\bcontact|\bfax|"
                            r"\bwhatsapp|\bsms|\btext)\b[^.\n]{0,20}$", re.IGNORECASE)
_NOT_PHONE_BEFORE = re.compile(r"(?:\bISBN(?:-1[03])?|\border|\binvoice|\bref(?:erence)?|\baccount|\bacct|\btracking|"
                               r"\bcustomer|\bticket|\bcase)\s*(?:no\b|number\b|id\b)?[\s:#.]*$|#\s*$", re.IGNORECASE)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only): every second digit from the right doubled."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def card_issuer(digits: str) -> bool:
    """Whether ``digits`` start and measure as a card of a major network (Visa, Mastercard, American Express,
    Discover, JCB, Diners Club, UnionPay, Maestro)."""
    n, two, four = len(digits), int(digits[:2]), int(digits[:4])
    return ((digits[0] == "4" and n in (13, 16, 19)) or (51 <= two <= 55 and n == 16) or (2221 <= four <= 2720
            and n == 16) or (two in (34, 37) and n == 15) or ((digits.startswith("6011") or two == 65
            or 644 <= int(digits[:3]) <= 649) and n in (16, 19)) or (3528 <= four <= 3589 and 16 <= n <= 19)
            or (two in (30, 36, 38, 39) and 14 <= n <= 19) or (two == 62 and 16 <= n <= 19)
            or (two in (50, 56, 57, 58, 63, 67) and 12 <= n <= 19))


def iban_valid(candidate: str) -> bool:
    """ISO 13616: the country's length, and the number (country and check digits moved to the end, letters as
    10–35) leaves 1 modulo 97."""
    iban = candidate.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _ip_valid(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _regex_findings(text: str) -> list[Finding]:
    found = [Finding("EMAIL", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in ".,;:!?)]}'\"":
            end -= 1
        found.append(Finding("URL", m.start(), end))
    found += [Finding("IBAN", m.start(), m.end()) for m in _IBAN.finditer(text) if iban_valid(m.group())]
    for m in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits) and card_issuer(digits):
            found.append(Finding("CARD", m.start(), m.end()))
    for pattern in (_IPV4, _IPV6):
        for m in pattern.finditer(text):
            if _ip_valid(m.group()) and not _VERSION_BEFORE.search(text[max(0, m.start() - 9):m.start()]):
                found.append(Finding("IP", m.start(), m.end()))
    for m in _DATE.finditer(text):
        if _BIRTH_CONTEXT.search(text[max(0, m.start() - 40):m.start()]):
            found.append(Finding("DOB", m.start(), m.end()))
    return found


def _phone_findings(text: str) -> list[Finding]:
    """Numbers that libphonenumber accepts: with a ``+CC`` prefix any possible number of that country, else a
    valid number of one of ``PHONE_REGIONS``. A bare run of digits (no separators) counts only after words that
    say it is a phone number, a card-shaped 4-4-4-4 group never, nor a number labelled as something else."""
    found: dict[tuple[int, int], Finding] = {}
    if sum(c.isdigit() for c in text) < 7:  # no phone number is shorter
        return []
    passes = [(region, phonenumbers.Leniency.VALID) for region in PHONE_REGIONS]
    passes.append((PHONE_REGIONS[0], phonenumbers.Leniency.POSSIBLE))  # +CC numbers: the region does not matter
    for region, leniency in passes:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=leniency):
            raw, before = match.raw_string, text[max(0, match.start - 32):match.start]
            if leniency == phonenumbers.Leniency.POSSIBLE and not raw.startswith("+"):
                continue
            if _NOT_PHONE_BEFORE.search(before) or _CARD_SHAPED.fullmatch(raw):
                continue
            if raw.isdigit() and not _PHONE_CONTEXT.search(before):
                continue
            found.setdefault((match.start, match.end), Finding("PHONE", match.start, match.end))
    return list(found.values())


def find_personal_data(text: str, kinds: tuple[str, ...] = KINDS) -> list[Finding]:
    """The personal data in ``text``, in order and never overlapping (where two candidates overlap, the earlier
    kind of ``KINDS`` wins, then the longer one).

    Example:
        >>> [(f.kind, "mail me at ann@example.org"[f.start:f.end]) for f in find_personal_data(
        ...     "mail me at ann@example.org")]
        [('EMAIL', 'ann@example.org')]
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise UserError(f"unknown kind of personal data '{unknown[0]}'; known kinds: {', '.join(KINDS)}.")
    candidates = [f for f in _regex_findings(text) + _phone_findings(text) if f.kind in kinds and f.end > f.start]
    candidates.sort(key=lambda f: (KINDS.index(f.kind), f.start - f.end))
    kept: list[Finding] = []
    for finding in candidates:
        if all(finding.end <= k.start or finding.start >= k.end for k in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)


def replacement(kind: str, original: str, style: str) -> str:
    """``<KIND>`` for ``placeholder``; for ``mask``, every letter and digit turned into ``*`` (separators kept)."""
    if style == "mask":
        return re.sub(r"[A-Za-z0-9]", "*", original)
    return f"<{kind}>"


def redact(text: str, style: str = "placeholder", kinds: tuple[str, ...] = KINDS) -> str:
    """``text`` with its personal data replaced (``style``: ``placeholder`` or ``mask``).

    Example:
        >>> redact("card 4111 1111 1111 1111, call +44 20 7946 0958")
        'card <CARD>, call <PHONE>'
    """
    if style not in STYLES:
        raise UserError(f"unknown redaction style '{style}'; expected {' or '.join(STYLES)}.")
    return replace_spans(text, find_personal_data(text, kinds),
                         lambda finding, original: replacement(finding.kind, original, style))


class StreamRedactor(StreamFilter):
    """Redacts text that arrives in pieces (a model's stream): ``feed`` returns what is safe to show and
    ``finish`` the rest; concatenated, the outputs equal ``redact`` of the whole text, and no piece ever holds a
    fragment of personal data (``StreamFilter``).

    Example:
        >>> stream = StreamRedactor()
        >>> stream.feed("write to ann@exa") + stream.feed("mple.org today") + stream.finish()
        'write to <EMAIL> today'
    """

    def __init__(self, style: str = "placeholder", kinds: tuple[str, ...] = KINDS, hold: int = 96):
        if style not in STYLES:
            raise UserError(f"unknown redaction style '{style}'; expected {' or '.join(STYLES)}.")
        super().__init__(lambda text: find_personal_data(text, kinds),
                         lambda finding, original: replacement(finding.kind, original, style), hold)
