"""Personal-data redaction: precision and recall per kind, genloom beside Microsoft Presidio.

    python benchmarks/redact.py [--seed 1] [--per-kind 400]

Generates a labelled set from ``--seed``: sentences from varied templates, each holding personal data of one
kind (e-mail addresses; phone numbers in international and in US, UK, German, French and Indian national
formats; payment cards of six networks, Luhn-valid, grouped or not; IBANs of ten countries, mod-97-valid;
IPv4 and IPv6 addresses; URLs; dates of birth in five formats after words that say so) and sentences of hard
negatives (order and invoice numbers, ISBNs, version strings, Luhn-invalid cards, IBANs with a wrong check,
meeting dates, times, prices, postcodes). A found span counts when it overlaps a labelled span of its kind;
precision, recall and F1 per kind over the whole set.

Presidio runs offline with a blank spaCy pipeline, so only its pattern recognisers fire (its NER-based ones
need a trained spaCy model); its kinds map as EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, IP_ADDRESS,
URL and DATE_TIME (Presidio has no date-of-birth kind: every date it finds counts as one). Both tools see the
same sentences. Target: F1 ≥ 0.95 on every kind and ≥ Presidio's. The set is ours, written from templates:
real text is messier, and a pattern-based redactor misses what its patterns do not foresee (a phone number
spelt out in words, an address, a name).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from genloom.safety import KINDS, find_personal_data  # noqa: E402
from genloom.safety.redact import IBAN_LENGTHS  # noqa: E402

FIRST = ["ann", "bob", "chen", "dana", "eli", "fatima", "gus", "hana", "ivan", "jo", "kofi", "lena", "maria", "nils"]
LAST = ["lee", "smith", "wang", "garcia", "okafor", "novak", "muller", "dubois", "kumar", "rossi", "silva"]
DOMAINS = ["example.com", "mail.example.org", "uni-hamburg.de", "example.co.uk", "corp.example.net", "ex.io"]
TEMPLATES = {
    "EMAIL": ["Please write to {} if anything changes.", "Contact: {}", "My address is {}, not the old one.",
              "Send the slides to {} by Friday.", "cc {} on the reply"],
    "PHONE": ["Call me on {} after six.", "Tel. {}", "You can reach the office at {} or by mail.",
              "Her number is {} but she rarely answers.", "Phone: {} (mobile)"],
    "CARD": ["Charge it to {} please.", "card number {}, expires 09/27", "I paid with {} yesterday.",
             "The card {} was declined."],
    "IBAN": ["Transfer the deposit to {} by Monday.", "IBAN: {}", "Our account is {} at the local bank."],
    "IP": ["The request came from {} at noon.", "Server address {} is down.", "Block {} in the firewall."],
    "URL": ["See {} for the details.", "The form is at {}.", "Read more: {}"],
    "DOB": ["He was born on {} in Leeds.", "Date of birth: {}", "DOB {}, place of birth Lyon.",
            "She was born {} and raised in Porto.", "Patient, born {}, was admitted."],
}
NEGATIVES = [
    "Your order {order} has shipped.", "Invoice no. {order} is due.", "ISBN {isbn} is the second edition.",
    "Upgrade to version {version} before the release.", "Running v{version} on all nodes.",
    "The card {badcard} was typed wrong.", "IBAN {badiban} failed the check.", "The meeting is on {date} at 10:30.",
    "It costs $1,234.56 including tax.", "Postcode {postcode} is in the north.", "Train 1215 leaves at 14:05:30.",
    "Ticket #{order} was closed.", "The ratio was 3.14159 over {order} trials.", "Room 4.12, building 7.",
]


def luhn_complete(partial: str) -> str:
    """``partial`` with the check digit that makes it Luhn-valid."""
    for digit in "0123456789":
        number = partial + digit
        total = sum((d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d
                    for i, d in enumerate(int(c) for c in reversed(number)))
        if total % 10 == 0:
            return number
    raise AssertionError("unreachable")


def card(rng: random.Random, valid: bool = True) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15),
                                 ("6011", 16), ("3530", 16), ("36", 14)])
    number = luhn_complete(prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1)))
    if not valid:
        number = number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)
    if length == 15:
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i:i + 4] for i in range(0, length, 4)]
    return rng.choice([" ", "-", ""]).join(groups)


def iban(rng: random.Random, valid: bool = True) -> str:
    country = rng.choice(["DE", "GB", "FR", "NL", "ES", "IT", "BE", "CH", "AT", "PL"])
    body_length = IBAN_LENGTHS[country] - 4
    if country in ("GB", "NL"):
        body = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
        body += "".join(rng.choice("0123456789") for _ in range(body_length - 4))
    else:
        body = "".join(rng.choice("0123456789") for _ in range(body_length))
    numeric = int("".join(str(int(c, 36)) for c in body + country + "00"))
    check = 98 - numeric % 97
    if not valid:
        check = (check + rng.randint(1, 90)) % 97 + 2
    code = f"{country}{check:02d}{body}"
    return " ".join(code[i:i + 4] for i in range(0, len(code), 4)) if rng.random() < 0.6 else code


def phone(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    area = rng.choice(["212", "415", "617", "312", "206"])
    return rng.choice([
        f"+1 {area} 555 {rng.randint(100, 199):04d}", f"({area}) 555-{rng.randint(100, 199):04d}",
        f"{area}-555-{rng.randint(100, 199):04d}", f"+44 20 7946 0{d(3)}", f"020 7946 0{d(3)}",
        f"+44 7700 900{d(3)}", f"+49 30 {rng.randint(2, 9)}{d(7)}", f"030 {rng.randint(2, 9)}{d(6)}",
        f"+33 1 {rng.randint(40, 49)} {d(2)} {d(2)} {d(2)}", f"01 {rng.randint(40, 49)} {d(2)} {d(2)} {d(2)}",
        f"+91 98{d(3)} {d(5)}", f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}"])


def ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    groups = [f"{rng.randint(0, 65535):x}" for _ in range(8)]
    if rng.random() < 0.5:
        return ":".join(groups)
    return f"2001:db8:{groups[2]}::{groups[7]}"


def url(rng: random.Random) -> str:
    scheme = rng.choice(["https://", "http://", "www."])
    host = rng.choice(["example.org", "docs.example.com", "shop.example.net", "example.io"])
    path = rng.choice(["", "/", "/help", "/a/b?id=42", "/report-2024.pdf", "/#top"])
    return scheme + host + path


def date(rng: random.Random) -> str:
    y, m, day = rng.randint(1940, 2010), rng.randint(1, 12), rng.randint(1, 28)
    months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December"]
    return rng.choice([f"{day:02d}/{m:02d}/{y}", f"{y}-{m:02d}-{day:02d}", f"{day} {months[m - 1]} {y}",
                       f"{months[m - 1]} {day}, {y}", f"{day}.{m}.{y}"])


def make(kind: str, rng: random.Random) -> str:
    if kind == "EMAIL":
        return f"{rng.choice(FIRST)}{rng.choice(['.', '_', ''])}{rng.choice(LAST)}{rng.choice(['', '42', '+news'])}" \
               f"@{rng.choice(DOMAINS)}"
    return {"PHONE": phone, "CARD": card, "IBAN": iban, "IP": ip, "URL": url, "DOB": date}[kind](rng)


def labelled_set(seed: int, per_kind: int) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """(sentence, [(kind, start, end)]) pairs: ``per_kind`` with personal data of each kind, as many negatives."""
    rng = random.Random(seed)
    rows = []
    for kind in KINDS:
        for _ in range(per_kind):
            value = make(kind, rng)
            template = rng.choice(TEMPLATES[kind])
            start = template.index("{}")
            rows.append((template.format(value), [(kind, start, start + len(value))]))
    for _ in range(per_kind * 2):
        template = rng.choice(NEGATIVES)
        filled = template.format(order=str(rng.randint(10**9, 10**10 - 1)), isbn=f"978-{rng.randint(0, 9)}-"
                                 f"{rng.randint(10, 99)}-{rng.randint(100000, 999999)}-{rng.randint(0, 9)}",
                                 version=".".join(str(rng.randint(0, 20)) for _ in range(rng.choice([3, 4]))),
                                 badcard=card(rng, valid=False), badiban=iban(rng, valid=False),
                                 date=f"{rng.randint(1, 28)} March {rng.randint(2020, 2030)}",
                                 postcode=str(rng.randint(10000, 99999)))
        rows.append((filled, []))
    rng.shuffle(rows)
    return rows


def presidio_finder():
    """Presidio's analyzer with a blank spaCy pipeline (offline: only pattern recognisers), and its kind names."""
    import spacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())  # the bundled list, offline
    folder = tempfile.mkdtemp(prefix="blank-spacy-")
    spacy.blank("en").to_disk(folder)
    provider = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy",
                                                    "models": [{"lang_code": "en", "model_name": folder}]})
    engine = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    names = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CARD", "IBAN_CODE": "IBAN",
             "IP_ADDRESS": "IP", "URL": "URL", "DATE_TIME": "DOB"}

    def find(text: str) -> list[tuple[str, int, int]]:
        return [(names[r.entity_type], r.start, r.end) for r in engine.analyze(text=text, language="en")
                if r.entity_type in names]
    return find


def genloom_finder(text: str) -> list[tuple[str, int, int]]:
    return [(f.kind, f.start, f.end) for f in find_personal_data(text)]


def score(rows, find) -> dict[str, dict[str, float]]:
    """Per kind: precision, recall, F1 (a found span is right when it overlaps a labelled span of its kind)."""
    counts = {kind: {"tp": 0, "fp": 0, "fn": 0} for kind in KINDS}
    for text, gold in rows:
        found = find(text)
        for kind, start, end in found:
            hit = any(k == kind and start < e and s < end for k, s, e in gold)
            counts[kind]["tp" if hit else "fp"] += 1
        for kind, start, end in gold:
            if not any(k == kind and s < end and start < e for k, s, e in found):
                counts[kind]["fn"] += 1
    table = {}
    for kind, c in counts.items():
        precision = c["tp"] / max(c["tp"] + c["fp"], 1)
        recall = c["tp"] / max(c["tp"] + c["fn"], 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-9)
        table[kind] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1,
                        help="the set's seed (default 1; the rules were written looking at seed 0)")
    parser.add_argument("--per-kind", type=int, default=400, help="sentences with each kind (default 400)")
    args = parser.parse_args()
    rows = labelled_set(args.seed, args.per_kind)
    results, timing = {}, {}
    tools = {"genloom": genloom_finder}
    try:
        tools["presidio"] = presidio_finder()
    except ImportError as error:
        print(f"presidio: skipped ({error}); pip install presidio-analyzer to compare")
    for name, find in tools.items():
        started = time.time()
        results[name] = score(rows, find)
        timing[name] = round(len(rows) / (time.time() - started), 1)
    print(f"{len(rows)} sentences ({args.per_kind} per kind, {2 * args.per_kind} hard negatives), seed {args.seed}")
    print(f"{'kind':6} " + "  ".join(f"{name:>24}" for name in results))
    for kind in KINDS:
        print(f"{kind:6} " + "  ".join(f"P {r[kind]['precision']:.3f} R {r[kind]['recall']:.3f} F1 {r[kind]['f1']:.3f}"
                                        for r in results.values()))
    print("sentences/s: " + ", ".join(f"{name} {value}" for name, value in timing.items()))
    record = {
        "device": "cpu",
        "protocol": f"generated labelled set, seed {args.seed}, {args.per_kind} sentences per kind and "
                    f"{2 * args.per_kind} hard negatives; a found span counts when it overlaps a labelled span of "
                    "its kind; Presidio offline with a blank spaCy pipeline (pattern recognisers only; DATE_TIME "
                    "counted as date of birth)",
        "results": {name: {**{f"{kind.lower()}_{m}": v for kind, r in table.items() for m, v in r.items()},
                           "sentences_per_s": timing[name]} for name, table in results.items()},
        "published": {"target": "F1 >= 0.95 on every kind and >= Presidio's"},
    }
    print(f"wrote {write_result('redact', False, record)}")


if __name__ == "__main__":
    main()
